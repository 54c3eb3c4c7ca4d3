//! What the cluster PKI consists of: the CAs and every leaf certificate with its
//! subject, SANs and usages, derived from the model. Pure.

use crate::model::Model;
use std::net::{IpAddr, Ipv4Addr};

/// The three CAs. etcd has its own so that a certificate from the cluster CA (an
/// admin's, a kubelet's) can never authenticate to etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaId {
    Cluster,
    FrontProxy,
    Etcd,
}

impl CaId {
    pub const ALL: [CaId; 3] = [CaId::Cluster, CaId::FrontProxy, CaId::Etcd];

    /// File stem: `<stem>.pem` and `<stem>-key.pem`.
    pub fn stem(self) -> &'static str {
        match self {
            CaId::Cluster => "ca",
            CaId::FrontProxy => "front-proxy-ca",
            CaId::Etcd => "etcd-ca",
        }
    }

    pub fn common_name(self) -> &'static str {
        match self {
            CaId::Cluster => "kubernetes-ca",
            CaId::FrontProxy => "front-proxy-ca",
            CaId::Etcd => "etcd-ca",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// File stem: `<stem>.pem` and `<stem>-key.pem`.
    pub stem: &'static str,
    pub ca: CaId,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub server_auth: bool,
    pub client_auth: bool,
}

impl LeafSpec {
    fn new(stem: &'static str, ca: CaId, cn: &str) -> Self {
        LeafSpec {
            stem,
            ca,
            common_name: cn.to_string(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            server_auth: false,
            client_auth: false,
        }
    }
    fn org(mut self, o: &str) -> Self {
        self.organizations.push(o.to_string());
        self
    }
    fn server(mut self, dns: Vec<String>, ips: Vec<IpAddr>) -> Self {
        self.server_auth = true;
        self.dns_names = dns;
        self.ip_addresses = ips;
        self
    }
    fn client(mut self) -> Self {
        self.client_auth = true;
        self
    }

    /// The SANs as comparable strings, sorted: `DNS:x`, `IP:y`.
    pub fn san_strings(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .dns_names
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(self.ip_addresses.iter().map(|i| format!("IP:{i}")))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Every leaf certificate of the cluster, in a fixed order.
pub fn leaves(m: &Model) -> Vec<LeafSpec> {
    let mut api_dns = m.api_dns_names.clone();
    api_dns.extend([
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        format!("kubernetes.default.svc.{}", m.cluster_domain),
        "localhost".to_string(),
    ]);
    let api_ips = vec![IpAddr::V4(m.kubernetes_service_ip), LOOPBACK];
    let mut etcd_dns: Vec<String> = m.etcd_members.iter().map(|e| e.dns_name.clone()).collect();
    etcd_dns.push("localhost".to_string());
    let etcd_ips = vec![LOOPBACK];
    let svc = |name: &str, ns: &str| {
        vec![
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.{}", m.cluster_domain),
        ]
    };
    let mut addons = Vec::new();
    if let Some(ns) = &m.catalog_namespace {
        addons.push(
            LeafSpec::new(
                "service-catalog-webhook",
                CaId::Cluster,
                "service-catalog-webhook",
            )
            .server(svc("service-catalog-webhook", ns), Vec::new()),
        );
    }
    if let Some(ns) = &m.broker_namespace {
        addons.push(
            LeafSpec::new("aws-service-broker", CaId::Cluster, "aws-service-broker")
                .server(svc("aws-service-broker", ns), Vec::new()),
        );
    }
    let mut all = vec![
        LeafSpec::new("apiserver", CaId::Cluster, "kube-apiserver").server(api_dns, api_ips),
        LeafSpec::new(
            "apiserver-kubelet-client",
            CaId::Cluster,
            "kube-apiserver-kubelet-client",
        )
        .org("kubeadm:cluster-admins")
        .client(),
        LeafSpec::new(
            "kube-controller-manager",
            CaId::Cluster,
            "system:kube-controller-manager",
        )
        .client(),
        LeafSpec::new("kube-scheduler", CaId::Cluster, "system:kube-scheduler").client(),
        LeafSpec::new("admin", CaId::Cluster, "kubernetes-admin")
            .org("kubeadm:cluster-admins")
            .client(),
        LeafSpec::new("front-proxy-client", CaId::FrontProxy, "front-proxy-client").client(),
        LeafSpec::new("etcd-server", CaId::Etcd, "etcd-server")
            .server(etcd_dns.clone(), etcd_ips.clone())
            .client(),
        LeafSpec::new("etcd-peer", CaId::Etcd, "etcd-peer")
            .server(etcd_dns, etcd_ips)
            .client(),
        LeafSpec::new("etcd-client", CaId::Etcd, "etcd-client").client(),
        LeafSpec::new(
            "apiserver-etcd-client",
            CaId::Etcd,
            "kube-apiserver-etcd-client",
        )
        .client(),
    ];
    // The add-ons' serving certificates, only when they are on.
    all.extend(addons);
    all
}

/// Plaintext secret files besides the private keys: encrypted with KMS like the keys.
pub const BOOTSTRAP_TOKEN: &str = "kubelet-bootstrap-token";
pub const ENCRYPTION_CONFIG: &str = "encryption-config.yaml";
/// The token the Service Catalog presents to the AWS service broker (add-on only).
pub const BROKER_TOKEN: &str = "aws-service-broker-token";
/// The service-account token signing key pair (a key, not a certificate).
pub const SERVICE_ACCOUNT: &str = "service-account";

pub fn cert_file(stem: &str) -> String {
    format!("{stem}.pem")
}

pub fn key_file(stem: &str) -> String {
    format!("{stem}-key.pem")
}
