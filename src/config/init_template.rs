//! The documented cluster.yaml that `kube-aws init` writes, rendered from a tera
//! template with the values of `defaults`. Pure.

use super::defaults as d;
use serde::Serialize;
use std::collections::HashMap;
use tera::{Context, Tera, Value};

const TEMPLATE: &str = include_str!("cluster.yaml.tera");

/// The `.gitignore` `init` writes: plaintext secrets stay out of git; the `.enc`,
/// `.fingerprint` and certificate files may be committed.
pub const GITIGNORE: &str = "\
# Written by kube-aws init. Plaintext secrets must never be committed.
# Everything under credentials/ is ignored except what is safe to share:
credentials/*
!credentials/*.enc
!credentials/*.fingerprint
!credentials/*.pem
# ...and private keys stay ignored even though they end in .pem:
credentials/*-key.pem
credentials/*.key
# Admin kubeconfig: it embeds a client key.
kubeconfig
# Fully rendered assets exported for review (render stack --export).
exported/
";

/// What `init` was told.
#[derive(Debug, Clone, Default)]
pub struct InitParams {
    pub cluster_name: String,
    pub region: String,
    pub availability_zones: Vec<String>,
    pub hosted_zone_id: Option<String>,
    pub record_set_managed: bool,
    pub external_dns_name: String,
    pub key_name: Option<String>,
    pub kms_key_arn: String,
    pub s3_uri: String,
    pub ami_id: Option<String>,
}

#[derive(Serialize)]
struct SubnetCtx {
    name: String,
    az: String,
    cidr: String,
    private: bool,
    nat: bool,
}

/// One public subnet (with a NAT gateway) and one private subnet per zone, carved
/// from the default VPC range: public 10.0.(2i).0/24, private 10.0.(2i+1).0/24.
fn subnets(azs: &[String]) -> Vec<SubnetCtx> {
    let base = d::vpc_cidr().network().octets();
    let mut out = Vec::new();
    for (i, az) in azs.iter().enumerate() {
        let suffix = az_suffix(az);
        for (private, third) in [(false, 2 * i), (true, 2 * i + 1)] {
            out.push(SubnetCtx {
                name: format!("{}-{suffix}", if private { "private" } else { "public" }),
                az: az.clone(),
                cidr: format!("{}.{}.{third}.0/24", base[0], base[1]),
                private,
                nat: !private,
            });
        }
    }
    out
}

/// `us-west-2a` → `a`; `us-west-2-lax-1a` → `lax-1a`.
fn az_suffix(az: &str) -> String {
    let tail: String = az
        .rsplit_once(|c: char| c.is_ascii_digit())
        .map(|(head, last)| {
            // Local zones: keep what follows the region.
            if head.matches('-').count() > 2 {
                az.splitn(4, '-').nth(3).unwrap_or(last).to_string()
            } else {
                last.to_string()
            }
        })
        .unwrap_or_else(|| az.to_string());
    let cleaned: String = tail
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if cleaned.is_empty() {
        "zone".into()
    } else {
        cleaned
    }
}

/// Quotes a value as a YAML scalar where it needs quoting.
fn yaml_filter(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = serde_yaml_ng::to_string(value).map_err(|e| tera::Error::msg(e.to_string()))?;
    Ok(Value::String(s.trim_end().to_string()))
}

/// Renders the commented cluster.yaml.
pub fn render(p: &InitParams) -> Result<String, tera::Error> {
    let mut tera = Tera::default();
    tera.register_filter("yaml", yaml_filter);
    tera.add_raw_template("cluster.yaml", TEMPLATE)?;
    let mut ctx = Context::new();
    ctx.insert("cluster_name", &p.cluster_name);
    ctx.insert("s3_uri", &p.s3_uri);
    ctx.insert("region", &p.region);
    ctx.insert("kms_key_arn", &p.kms_key_arn);
    ctx.insert("key_name", &p.key_name);
    ctx.insert("hosted_zone_id", &p.hosted_zone_id);
    ctx.insert("ami_id", &p.ami_id);
    ctx.insert("external_dns_name", &p.external_dns_name);
    ctx.insert("record_set_managed", &p.record_set_managed);
    ctx.insert("subnets", &subnets(&p.availability_zones));
    ctx.insert(
        "supported_minors",
        &d::SUPPORTED_KUBERNETES_MINORS.join(", "),
    );
    ctx.insert("kubernetes_version", &d::kubernetes_version());
    ctx.insert("service_cidr", &d::service_cidr().to_string());
    ctx.insert("pod_cidr", &d::pod_cidr().to_string());
    ctx.insert("vpc_cidr", &d::vpc_cidr().to_string());
    ctx.insert("cluster_domain", &d::cluster_domain());
    ctx.insert("etcd_count", &d::etcd_count());
    ctx.insert("etcd_instance_type", &d::etcd_instance_type());
    ctx.insert("etcd_volume_size", &d::etcd_volume_size_gib());
    ctx.insert("etcd_snapshot_schedule", &d::etcd_snapshot_schedule());
    ctx.insert("etcd_retention_days", &d::etcd_snapshot_retention_days());
    ctx.insert("controller_count", &d::controller_count());
    ctx.insert("controller_instance_type", &d::controller_instance_type());
    ctx.insert("root_volume_size", &d::root_volume_size_gib());
    ctx.insert("worker_instance_type", &d::worker_instance_type());
    ctx.insert("pool_min_size", &d::pool_min_size());
    ctx.insert("pool_desired", &d::pool_desired_capacity());
    ctx.insert("pool_max_size", &d::pool_max_size());
    ctx.insert("min_in_service", &d::min_instances_in_service());
    ctx.insert("max_batch_size", &d::max_batch_size());
    ctx.insert("drain_timeout", &d::drain_timeout_seconds());
    ctx.insert("pause_time", &d::pause_time());
    ctx.insert("ca_days", &d::ca_duration_days());
    ctx.insert("cert_days", &d::cert_duration_days());
    ctx.insert("broker_id", &d::broker_id());
    ctx.insert("broker_services", &d::broker_services().join(", "));
    ctx.insert("broker_namespace", &d::broker_namespace());
    ctx.insert("broker_image", &d::broker_image());
    tera.render("cluster.yaml", &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_suffixes() {
        assert_eq!(az_suffix("us-west-2a"), "a");
        assert_eq!(az_suffix("us-west-2-lax-1a"), "lax-1a");
    }

    #[test]
    fn rendered_file_parses_with_every_default() {
        let p = InitParams {
            cluster_name: "demo".into(),
            region: "us-west-2".into(),
            availability_zones: vec!["us-west-2a".into(), "us-west-2b".into()],
            record_set_managed: false,
            external_dns_name: "k8s.example.com".into(),
            kms_key_arn: "arn:aws:kms:us-west-2:123456789012:key/abc".into(),
            s3_uri: "s3://bucket/prefix".into(),
            ..Default::default()
        };
        let text = render(&p).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema="));
        let cfg = crate::config::parse(&text, "cluster.yaml").unwrap();
        assert_eq!(cfg.subnets.len(), 4);
        assert_eq!(cfg.kubernetes_version, d::kubernetes_version());
        assert_eq!(cfg.etcd, crate::config::types::Etcd::default());
        assert_eq!(cfg.tls, crate::config::types::Tls::default());
        assert_eq!(cfg.addons, crate::config::types::Addons::default());
    }
}
