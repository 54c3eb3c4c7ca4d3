//! The node config of each role, from the render context: what `kube-aws node
//! bootstrap` reads on the node. Public certificates inline; secrets by the S3 key of
//! their ciphertext only.

use super::context::{Ctx, PoolCtx};
use crate::config::Config;
use crate::config::types::CniProvider;
use crate::node::config::{
    API_VERSION, Artifact, ClusterAddons, Drain, EtcdMemberSpec, KubernetesNode, NodeConfig,
    NodeTaint, PublicFile, Role, SecretRef, VpcCni,
};
use crate::node::manifests;

/// How long a node waits for what it needs (the init lock, Ready, etcd health) before
/// it signals FAILURE: well inside the 30-minute CreationPolicy timeout of controllers and workers (20 minutes for etcd).
pub const READY_TIMEOUT_SECONDS: u64 = 600;

pub(crate) fn build(
    cfg: &Config,
    ctx: &Ctx,
    role: Role,
    files: &super::RoleFiles,
    pool: Option<&PoolCtx>,
) -> NodeConfig {
    let cluster_ca = files
        .public
        .iter()
        .find(|f| f.dest == "ca.crt")
        .map(|f| f.pem.clone())
        .unwrap_or_default();
    let public = files
        .public
        .iter()
        // kubeadm join (worker) fails its preflight when ca.crt exists; it writes the CA
        // it discovered itself (kubernetes/kubernetes cmd/kubeadm/app/preflight/checks.go,
        // RunJoinNodeChecks: FileAvailableCheck on the CA path).
        .filter(|f| !(role == Role::Worker && f.dest == "ca.crt"))
        .map(|f| PublicFile {
            path: format!("/etc/kubernetes/pki/{}", f.dest),
            content: f.pem.clone(),
        })
        .collect();
    let secrets = files
        .secrets
        .iter()
        .map(|s| SecretRef {
            name: s.name.clone(),
            key: s.key.clone(),
            path: s.dest.clone(),
        })
        .collect();
    let (version, minor) = match role {
        // The standalone kubelet of etcd hosts follows etcd, not kubernetesVersion, so a
        // Kubernetes upgrade does not replace etcd members.
        Role::Etcd => (
            ctx.versions.etcd_host_kubelet_minor.clone(),
            ctx.versions.etcd_host_kubelet_minor.clone(),
        ),
        _ => (
            ctx.versions.kubernetes.clone(),
            ctx.versions.kubernetes_minor.clone(),
        ),
    };
    let kubernetes = (role != Role::Etcd).then(|| KubernetesNode {
        control_plane_endpoint: format!("{}:{}", ctx.cluster.api_host, ctx.cluster.api_port),
        cert_sans: ctx.endpoints.iter().map(|e| e.dns_name.clone()).collect(),
        cluster_ca: cluster_ca.clone(),
        service_cidr: ctx.cluster.service_cidr.clone(),
        // With the VPC CNI pods take VPC addresses: the VPC is the cluster's pod range
        // (kube-proxy then does not masquerade pod traffic to Services).
        pod_cidr: if cfg.cni.provider == CniProvider::AmazonVpc {
            ctx.network.vpc_cidr.clone()
        } else {
            ctx.cluster.pod_cidr.clone()
        },
        dns_domain: ctx.cluster.domain.clone(),
        etcd_endpoints: if role == Role::Controller {
            ctx.etcd
                .members
                .iter()
                .map(|m| format!("https://{}:2379", m.dns_name))
                .collect()
        } else {
            Vec::new()
        },
        labels: pool
            .map(|p| p.label_pairs.iter().cloned().collect())
            .unwrap_or_default(),
        taints: pool
            .map(|p| {
                p.taint_list
                    .iter()
                    .map(|t| NodeTaint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: t.effect.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        drain: pool.map(|p| Drain {
            timeout_seconds: p.drain_timeout as u64,
            lifecycle_hook: crate::model::ids::LIFECYCLE_HOOK.into(),
        }),
        cluster_addons: (role == Role::Controller).then(|| ClusterAddons {
            cni: cni(cfg),
            objects: manifests::cluster_objects(
                &ctx.cluster.name,
                &ctx.cluster.region,
                &ctx.versions.kubernetes_minor,
                ctx.controller.count,
            ),
        }),
        addons_parameter: (role == Role::Controller).then(|| ctx.addons.parameter.clone()),
        token_kms_key: (role == Role::Controller).then(|| cfg.kms_key_arn.clone()),
        vpc_cni: (cfg.cni.provider == CniProvider::AmazonVpc).then(|| VpcCni {
            credential_provider: manifests::ECR_PROVIDER
                .iter()
                .map(|(arch, sha)| {
                    (
                        arch.to_string(),
                        Artifact {
                            name: "ecr-credential-provider".into(),
                            version: manifests::ECR_PROVIDER_VERSION.into(),
                            url: manifests::ecr_provider_url(arch),
                            sha256: sha.to_string(),
                        },
                    )
                })
                .collect(),
        }),
    });
    let etcd_member = (role == Role::Etcd).then(|| EtcdMemberSpec {
        zone: ctx.etcd.zone.clone(),
        initial_cluster: ctx.etcd.initial_cluster.clone(),
        image: ctx.versions.etcd_image.clone(),
        cluster_token: ctx.cluster.name.clone(),
    });
    NodeConfig {
        api_version: API_VERSION.into(),
        role,
        pool: pool.map(|p| p.name.clone()),
        cluster: ctx.cluster.name.clone(),
        region: ctx.cluster.region.clone(),
        bucket: ctx.s3.bucket.clone(),
        prefix: ctx.s3.prefix.clone(),
        kubernetes_version: version,
        kubernetes_minor: minor,
        files: public,
        secrets,
        kubernetes,
        etcd_member,
        ready_timeout_seconds: READY_TIMEOUT_SECONDS,
    }
}

/// The pinned CNI manifest, or the user's mirror of it.
pub fn cni(cfg: &Config) -> Artifact {
    let (name, version, url, sha) = match cfg.cni.provider {
        CniProvider::Calico => (
            "calico",
            manifests::CALICO_VERSION,
            manifests::CALICO_URL,
            manifests::CALICO_SHA256,
        ),
        CniProvider::AmazonVpc => (
            "amazon-vpc-cni",
            manifests::VPC_CNI_VERSION,
            manifests::VPC_CNI_URL,
            manifests::VPC_CNI_SHA256,
        ),
    };
    let (url, sha256) = match &cfg.cni.manifest {
        Some(m) => (m.url.clone(), m.sha256.to_ascii_lowercase()),
        None => (url.to_string(), sha.to_string()),
    };
    Artifact {
        name: name.into(),
        version: version.into(),
        url,
        sha256,
    }
}
