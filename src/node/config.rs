//! The node config: everything a node of one role needs to bootstrap, rendered by
//! `render` (pure) and uploaded under a content-hashed key. It holds no secret: private
//! keys and tokens appear only as the S3 key of their KMS ciphertext.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "node.kube-aws.io/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Etcd,
    Controller,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Etcd => "etcd",
            Role::Controller => "controller",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    pub api_version: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    pub cluster: String,
    pub region: String,
    /// Bucket and key prefix (`<prefix>/<cluster>`) of the cluster's objects.
    pub bucket: String,
    pub prefix: String,
    /// Kubernetes `MAJOR.MINOR.PATCH` of the packages installed, and its minor for the
    /// package repository. On etcd hosts: the standalone kubelet's minor.
    pub kubernetes_version: String,
    pub kubernetes_minor: String,
    /// Public certificates, written as they are.
    pub files: Vec<PublicFile>,
    /// Secrets: fetched from S3 as KMS ciphertext, decrypted under the context
    /// `{cluster, file}` with the instance role, written 0600.
    pub secrets: Vec<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_member: Option<EtcdMemberSpec>,
    /// How long a node waits to be Ready in the API before it gives up (and signals
    /// FAILURE).
    pub ready_timeout_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublicFile {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The credentials file name; also the `file` of the KMS encryption context.
    pub name: String,
    /// Full S3 key of its ciphertext.
    pub key: String,
    pub path: String,
}

/// What a Kubernetes node (controller or worker) needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesNode {
    /// `host:port` of the API endpoint nodes join through (the internal one if any).
    pub control_plane_endpoint: String,
    /// Every API endpoint DNS name: `apiServer.certSANs`.
    pub cert_sans: Vec<String>,
    /// The cluster CA (PEM), whose public key pins token discovery (`caCertHashes`).
    /// Workers do not write it: `kubeadm join` of a worker refuses to start when
    /// /etc/kubernetes/pki/ca.crt exists (preflight FileAvailable check).
    pub cluster_ca: String,
    pub service_cidr: String,
    pub pod_cidr: String,
    pub dns_domain: String,
    /// etcd client URLs (controllers), `https://etcd-0.<zone>:2379`, …
    pub etcd_endpoints: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<NodeTaint>,
    /// Workers: how long the drainer waits for evictions, and the lifecycle hook it
    /// completes afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,
    /// Controllers: the cluster's own objects, applied server-side after kubeadm (the
    /// CNI first, fetched from its pinned URL and checked against its sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_addons: Option<ClusterAddons>,
    /// With the AWS VPC CNI: the kubelet's ECR credential provider (its images are in
    /// ECR), and `--max-pods` from the instance type's ENI limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_cni: Option<VpcCni>,
    /// Controllers: the SSM parameter through which the add-ons stack says where the
    /// add-ons bundle is (`<s3 key> <sha256>`; absent when no add-on is on). Its name
    /// does not depend on the add-ons, so switching them rolls no node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addons_parameter: Option<String>,
    /// Controllers: the KMS key that encrypts a rotated bootstrap token before it is
    /// published at `model::ids::BOOTSTRAP_TOKEN_CURRENT` (node::token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_kms_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeTaint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Drain {
    pub timeout_seconds: u64,
    pub lifecycle_hook: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterAddons {
    pub cni: Artifact,
    /// Objects kube-aws writes itself (cloud-controller-manager, EBS CSI driver, RBAC of
    /// the drainer), as Kubernetes JSON.
    pub objects: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VpcCni {
    /// `ecr-credential-provider`, by architecture (`amd64`, `arm64`).
    pub credential_provider: BTreeMap<String, Artifact>,
}

/// An upstream file fetched at boot, accepted only with this sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Artifact {
    pub name: String,
    pub version: String,
    pub url: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdMemberSpec {
    /// Zone of the member DNS names: the member's own is `<name>.<zone>`.
    pub zone: String,
    /// `etcd-0=https://etcd-0.<zone>:2380,…`
    pub initial_cluster: String,
    pub image: String,
    pub cluster_token: String,
}

impl NodeConfig {
    /// Parses a node config, naming the file on error.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<NodeConfig> {
        let c: NodeConfig = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{origin}: not a kube-aws node config: {e}\n  fix: use the node config `kube-aws render stack` wrote for this role"
            )
        })?;
        if c.api_version != API_VERSION {
            anyhow::bail!(
                "{origin}: apiVersion {} is not {API_VERSION}\n  fix: run a kube-aws node binary of the release that rendered it",
                c.api_version
            );
        }
        Ok(c)
    }
}
