//! The derived model: everything computed from `Config` that later stages share
//! (names, SANs, etcd members, S3 locations). Pure: no I/O.

pub mod ids;
pub mod names;
pub mod stack_id;

use crate::config::Config;
use std::net::Ipv4Addr;

/// Port the API load balancer listens on and the API server serves.
pub const API_PORT: u16 = 6443;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    pub index: usize,
    /// `etcd-0`, `etcd-1`, …
    pub name: String,
    /// Stable private DNS name, `etcd-0.<cluster>.etcd.internal`.
    pub dns_name: String,
    /// Subnet (by name) the member lives in.
    pub subnet: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub cluster_name: String,
    pub region: String,
    pub cluster_domain: String,
    /// Every API endpoint DNS name, in config order.
    pub api_dns_names: Vec<String>,
    /// What kubeconfigs point at: the first endpoint.
    pub api_server_url: String,
    /// First address of the service range: the `kubernetes` Service.
    pub kubernetes_service_ip: Ipv4Addr,
    /// Private Route53 zone of the etcd member names.
    pub etcd_zone: String,
    pub etcd_members: Vec<EtcdMember>,
    pub s3_bucket: String,
    /// Key prefix of every object of this cluster, `<prefix>/<clusterName>` (no slashes
    /// at either end).
    pub s3_prefix: String,
    /// Namespace of the Service Catalog webhook, when the catalog is on.
    pub catalog_namespace: Option<String>,
    /// Namespace of the AWS service broker, when it is on.
    pub broker_namespace: Option<String>,
    /// The AMI pinned in the cluster directory's ami.yaml (config::ami), when there is
    /// one. `derive` leaves it empty: the CLI reads the file and sets it, and
    /// cluster.yaml's `amiId` still wins over it.
    pub ami_pin: Option<String>,
}

impl Model {
    /// Derives the model from a validated config.
    pub fn derive(c: &Config) -> Model {
        let etcd_zone = format!("{}.etcd.internal", c.cluster_name);
        let etcd_subnets: Vec<String> = if c.etcd.subnets.is_empty() {
            let private: Vec<String> = c
                .subnets
                .iter()
                .filter(|s| s.private)
                .map(|s| s.name.clone())
                .collect();
            if private.is_empty() {
                c.subnets.iter().map(|s| s.name.clone()).collect()
            } else {
                private
            }
        } else {
            c.etcd.subnets.clone()
        };
        let etcd_members = (0..c.etcd.count as usize)
            .map(|i| EtcdMember {
                index: i,
                name: format!("etcd-{i}"),
                dns_name: format!("etcd-{i}.{etcd_zone}"),
                subnet: etcd_subnets
                    .get(i % etcd_subnets.len().max(1))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        let api_dns_names: Vec<String> =
            c.api_endpoints.iter().map(|e| e.dns_name.clone()).collect();
        let api_server_url = format!(
            "https://{}:{API_PORT}",
            api_dns_names
                .first()
                .map(String::as_str)
                .unwrap_or("localhost")
        );
        let rest = c.s3_uri.strip_prefix("s3://").unwrap_or(&c.s3_uri);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let s3_prefix = if prefix.is_empty() {
            c.cluster_name.clone()
        } else {
            format!("{prefix}/{}", c.cluster_name)
        };
        Model {
            catalog_namespace: c
                .addons
                .service_catalog
                .enabled
                .then(|| names::CATALOG_NAMESPACE.to_string()),
            broker_namespace: c
                .addons
                .aws_service_broker
                .enabled
                .then(|| c.addons.aws_service_broker.namespace.clone()),
            cluster_name: c.cluster_name.clone(),
            region: c.region.clone(),
            cluster_domain: c.cluster_domain.clone(),
            api_dns_names,
            api_server_url,
            kubernetes_service_ip: c
                .service_cidr
                .hosts()
                .next()
                .unwrap_or(c.service_cidr.network()),
            etcd_zone,
            etcd_members,
            s3_bucket: bucket.to_string(),
            s3_prefix,
            ami_pin: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_names_and_addresses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/ha-multi-az.yaml"
        ))
        .unwrap();
        let cfg = crate::config::parse(&text, "ha").unwrap();
        let m = Model::derive(&cfg);
        assert_eq!(m.kubernetes_service_ip, Ipv4Addr::new(10, 3, 0, 1));
        assert_eq!(m.etcd_members.len(), 3);
        assert_eq!(m.etcd_members[2].dns_name, "etcd-2.prod.etcd.internal");
        assert_eq!(m.etcd_members[2].subnet, "private-c");
        assert_eq!(m.api_server_url, "https://k8s.example.com:6443");
        assert_eq!(
            (m.s3_bucket.as_str(), m.s3_prefix.as_str()),
            ("kube-aws-assets", "clusters/prod")
        );
    }
}
