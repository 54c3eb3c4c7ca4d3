//! kubeadm's configuration as typed structs, with the field names of the
//! `kubeadm.k8s.io/v1beta4` reference
//! (https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4/; v1beta4 is
//! the default from Kubernetes 1.31, the oldest version kube-aws supports), and the
//! `kubelet.config.k8s.io/v1beta1` KubeletConfiguration
//! (https://kubernetes.io/docs/reference/config-api/kubelet-config.v1beta1/).
//! Builders are pure: the node config and what the node observed in, documents out.

use super::config::{KubernetesNode, NodeConfig};
use serde::Serialize;

pub const KUBEADM_API: &str = "kubeadm.k8s.io/v1beta4";

/// v1beta4 turned every `extraArgs` map into a list of `{name, value}` (the reference's
/// `Arg` type), so that a flag can repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

fn arg(name: &str, value: &str) -> Arg {
    Arg {
        name: name.into(),
        value: value.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taint {
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRegistration {
    /// Set explicitly: kubeadm would take the short hostname, while the AWS
    /// cloud-controller-manager and the drainer need the private DNS name.
    pub name: String,
    pub cri_socket: String,
    /// An empty list is kept: it means "no taint" (kubeadm would taint control-plane
    /// nodes by default only when the field is absent).
    pub taints: Vec<Taint>,
    pub kubelet_extra_args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapToken {
    pub token: String,
    pub ttl: String,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint {
    pub advertise_address: String,
    pub bind_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitConfiguration {
    pub api_version: String,
    pub kind: String,
    pub bootstrap_tokens: Vec<BootstrapToken>,
    pub node_registration: NodeRegistration,
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
    /// Certificates are distributed by kube-aws (KMS), not through the cluster.
    pub skip_phases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    pub service_subnet: String,
    pub pod_subnet: String,
    pub dns_domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Etcd {
    pub external: ExternalEtcd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPathMount {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    pub read_only: bool,
    pub path_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    #[serde(rename = "certSANs")]
    pub cert_sans: Vec<String>,
    pub extra_args: Vec<Arg>,
    pub extra_volumes: Vec<HostPathMount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub extra_args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfiguration {
    pub api_version: String,
    pub kind: String,
    pub cluster_name: String,
    pub kubernetes_version: String,
    pub control_plane_endpoint: String,
    pub networking: Networking,
    pub etcd: Etcd,
    pub api_server: ApiServer,
    pub controller_manager: Component,
    pub scheduler: Component,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapTokenDiscovery {
    pub api_server_endpoint: String,
    pub token: String,
    pub ca_cert_hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    pub bootstrap_token: BootstrapTokenDiscovery,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinControlPlane {
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinConfiguration {
    pub api_version: String,
    pub kind: String,
    pub discovery: Discovery,
    pub node_registration: NodeRegistration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<JoinControlPlane>,
    pub timeouts: JoinTimeouts,
}

/// How long `kubeadm join` keeps trying discovery. Token discovery retries fetching the
/// cluster-info ConfigMap until this timeout (kubernetes/kubernetes#60983: "kubeadm will
/// try to join as many times as possible"; v1beta4 moved it to `timeouts.discovery`,
/// default 5m, kubernetes/kubernetes#122529). Nodes are created together with the
/// control plane, so a worker may boot minutes before the first API server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinTimeouts {
    pub discovery: String,
}

/// The discovery timeout: longer than etcd plus the first controller take to boot, and
/// shorter than the 30-minute signal timeout of the node's group.
pub const DISCOVERY_TIMEOUT: &str = "15m0s";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    pub api_version: String,
    pub kind: String,
    pub cgroup_driver: String,
    /// The kubelet asks for a serving certificate signed by the cluster CA
    /// (`kubernetes.io/kubelet-serving`); the controllers' approver checks and approves
    /// it (see `approve`).
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: bool,
    pub rotate_certificates: bool,
}

/// What the node observed and the secrets it decrypted: the inputs of the documents
/// beside the node config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The private DNS name (IMDS `local-hostname`).
    pub node_name: String,
    /// IMDS `local-ipv4`.
    pub ip: String,
    pub bootstrap_token: String,
    /// `sha256:<hex>` of the cluster CA's public key (SubjectPublicKeyInfo, DER).
    pub ca_cert_hash: String,
    /// With the VPC CNI: the pods this instance type's ENIs can address.
    pub max_pods: Option<u32>,
}

pub const ECR_PROVIDER_CONFIG: &str = "/var/lib/kubelet/credential-provider.conf";
pub const ECR_PROVIDER_DIR: &str = "/usr/local/bin";
pub const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";
pub const API_BIND_PORT: u16 = 6443;
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

fn registration(k: &KubernetesNode, obs: &Observed, control_plane: bool) -> NodeRegistration {
    let mut taints: Vec<Taint> = k
        .taints
        .iter()
        .map(|t| Taint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
        })
        .collect();
    if control_plane {
        taints.push(Taint {
            key: CONTROL_PLANE_TAINT.into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
    }
    // The AWS cloud-controller-manager initialises the node (providerID, addresses,
    // zone labels) only when the kubelet runs with --cloud-provider=external; until then
    // the node carries the node.cloudprovider.kubernetes.io/uninitialized taint.
    // (https://kubernetes.io/docs/tasks/administer-cluster/running-cloud-controller/)
    let mut extra = vec![arg("cloud-provider", "external"), arg("node-ip", &obs.ip)];
    if !k.labels.is_empty() {
        let labels: Vec<String> = k.labels.iter().map(|(a, b)| format!("{a}={b}")).collect();
        extra.push(arg("node-labels", &labels.join(",")));
    }
    if k.vpc_cni.is_some() {
        // The VPC CNI's images are in ECR: the kubelet asks the credential provider
        // (https://kubernetes.io/docs/tasks/administer-cluster/kubelet-credential-provider/).
        extra.push(arg("image-credential-provider-config", ECR_PROVIDER_CONFIG));
        extra.push(arg("image-credential-provider-bin-dir", ECR_PROVIDER_DIR));
        if let Some(n) = obs.max_pods {
            extra.push(arg("max-pods", &n.to_string()));
        }
    }
    NodeRegistration {
        name: obs.node_name.clone(),
        cri_socket: CRI_SOCKET.into(),
        taints,
        kubelet_extra_args: extra,
    }
}

fn discovery(k: &KubernetesNode, obs: &Observed) -> Discovery {
    Discovery {
        bootstrap_token: BootstrapTokenDiscovery {
            api_server_endpoint: k.control_plane_endpoint.clone(),
            token: obs.bootstrap_token.clone(),
            ca_cert_hashes: vec![obs.ca_cert_hash.clone()],
        },
    }
}

pub fn kubelet() -> KubeletConfiguration {
    KubeletConfiguration {
        api_version: "kubelet.config.k8s.io/v1beta1".into(),
        kind: "KubeletConfiguration".into(),
        cgroup_driver: "systemd".into(),
        server_tls_bootstrap: true,
        rotate_certificates: true,
    }
}

pub fn cluster(cfg: &NodeConfig, k: &KubernetesNode) -> ClusterConfiguration {
    ClusterConfiguration {
        api_version: KUBEADM_API.into(),
        kind: "ClusterConfiguration".into(),
        cluster_name: cfg.cluster.clone(),
        kubernetes_version: format!("v{}", cfg.kubernetes_version),
        control_plane_endpoint: k.control_plane_endpoint.clone(),
        networking: Networking {
            service_subnet: k.service_cidr.clone(),
            pod_subnet: k.pod_cidr.clone(),
            dns_domain: k.dns_domain.clone(),
        },
        etcd: Etcd {
            external: ExternalEtcd {
                endpoints: k.etcd_endpoints.clone(),
                ca_file: "/etc/kubernetes/pki/etcd/ca.crt".into(),
                cert_file: "/etc/kubernetes/pki/apiserver-etcd-client.crt".into(),
                key_file: "/etc/kubernetes/pki/apiserver-etcd-client.key".into(),
            },
        },
        api_server: ApiServer {
            // kubeadm signs each controller's own apiserver.crt for its node name and
            // address plus these names (the pre-generated one would fail kubeadm's check
            // of an existing certificate on every controller but the one it was made for).
            cert_sans: k.cert_sans.clone(),
            // No --anonymous-auth=false: kubeadm leaves anonymous requests on, and its
            // RBAC lets them read only what must be public: /healthz, /livez, /readyz
            // and /version (system:public-info-viewer) and the cluster-info ConfigMap that
            // token discovery reads (kubeadm:bootstrap-signer-clusterinfo). The kubelet's
            // probes of the API server and the NLB's HTTPS /readyz check need exactly that.
            // (https://kubernetes.io/docs/reference/setup-tools/kubeadm/implementation-details/)
            extra_args: vec![
                arg(
                    "encryption-provider-config",
                    "/etc/kubernetes/encryption-config.yaml",
                ),
                arg("profiling", "false"),
            ],
            extra_volumes: vec![HostPathMount {
                name: "encryption-config".into(),
                host_path: "/etc/kubernetes/encryption-config.yaml".into(),
                mount_path: "/etc/kubernetes/encryption-config.yaml".into(),
                read_only: true,
                path_type: "File".into(),
            }],
        },
        controller_manager: Component {
            // The cloud-controller-manager runs the cloud loops (external provider).
            extra_args: vec![arg("profiling", "false"), arg("cloud-provider", "external")],
        },
        scheduler: Component {
            extra_args: vec![arg("profiling", "false")],
        },
    }
}

pub fn init(k: &KubernetesNode, obs: &Observed) -> InitConfiguration {
    InitConfiguration {
        api_version: KUBEADM_API.into(),
        kind: "InitConfiguration".into(),
        bootstrap_tokens: vec![BootstrapToken {
            token: obs.bootstrap_token.clone(),
            // A lifetime, not forever: the controllers rotate it (node::token).
            ttl: super::token::INIT_TTL.into(),
            usages: vec!["signing".into(), "authentication".into()],
            groups: vec![super::token::NODE_GROUP.into()],
            description: "kube-aws: nodes join with it (credentials/kubelet-bootstrap-token)"
                .into(),
        }],
        node_registration: registration(k, obs, true),
        local_api_endpoint: ApiEndpoint {
            advertise_address: obs.ip.clone(),
            bind_port: API_BIND_PORT,
        },
        skip_phases: vec!["upload-certs".into()],
    }
}

pub fn join(k: &KubernetesNode, obs: &Observed, control_plane: bool) -> JoinConfiguration {
    JoinConfiguration {
        api_version: KUBEADM_API.into(),
        kind: "JoinConfiguration".into(),
        discovery: discovery(k, obs),
        node_registration: registration(k, obs, control_plane),
        control_plane: control_plane.then(|| JoinControlPlane {
            local_api_endpoint: ApiEndpoint {
                advertise_address: obs.ip.clone(),
                bind_port: API_BIND_PORT,
            },
        }),
        timeouts: JoinTimeouts {
            discovery: DISCOVERY_TIMEOUT.into(),
        },
    }
}

/// Documents as one multi-document YAML file, as `kubeadm --config` reads it.
pub fn yaml_documents(docs: &[serde_json::Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The file `kubeadm init --config` reads on the controller that initialises.
pub fn init_file(cfg: &NodeConfig, k: &KubernetesNode, obs: &Observed) -> String {
    yaml_documents(&[
        serde_json::to_value(init(k, obs)).unwrap_or_default(),
        serde_json::to_value(cluster(cfg, k)).unwrap_or_default(),
        serde_json::to_value(kubelet()).unwrap_or_default(),
    ])
}

/// The file `kubeadm join --config` reads. kubeadm takes the cluster and kubelet
/// configuration from the cluster when it joins.
pub fn join_file(k: &KubernetesNode, obs: &Observed, control_plane: bool) -> String {
    yaml_documents(&[serde_json::to_value(join(k, obs, control_plane)).unwrap_or_default()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::config::{KubernetesNode, NodeTaint};

    fn node() -> KubernetesNode {
        KubernetesNode {
            control_plane_endpoint: "api.internal:6443".into(),
            cert_sans: vec!["k8s.example.com".into(), "api.internal".into()],
            cluster_ca: String::new(),
            service_cidr: "10.3.0.0/24".into(),
            pod_cidr: "10.2.0.0/16".into(),
            dns_domain: "cluster.local".into(),
            etcd_endpoints: vec!["https://etcd-0.x:2379".into()],
            labels: [("tier".to_string(), "web".to_string())].into(),
            taints: vec![NodeTaint {
                key: "dedicated".into(),
                value: "web".into(),
                effect: "NoSchedule".into(),
            }],
            drain: None,
            cluster_addons: None,
            vpc_cni: None,
            addons_parameter: None,
            token_kms_key: None,
        }
    }

    fn obs() -> Observed {
        Observed {
            node_name: "ip-10-0-1-5.ec2.internal".into(),
            ip: "10.0.1.5".into(),
            bootstrap_token: "abcdef.0123456789abcdef".into(),
            ca_cert_hash: "sha256:ab".into(),
            max_pods: None,
        }
    }

    #[test]
    fn join_documents_name_the_node_and_pin_the_ca() {
        let worker = serde_json::to_value(join(&node(), &obs(), false)).expect("json");
        assert_eq!(
            worker["nodeRegistration"]["name"],
            "ip-10-0-1-5.ec2.internal"
        );
        assert_eq!(
            worker["discovery"]["bootstrapToken"]["caCertHashes"][0],
            "sha256:ab"
        );
        assert!(worker.get("controlPlane").is_none());
        // The pool's taint only: a worker is not tainted as control plane.
        assert_eq!(
            worker["nodeRegistration"]["taints"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        let args = &worker["nodeRegistration"]["kubeletExtraArgs"];
        assert!(
            args.as_array()
                .expect("args")
                .iter()
                .any(|a| a["name"] == "cloud-provider" && a["value"] == "external")
        );
        assert!(
            args.as_array()
                .expect("args")
                .iter()
                .any(|a| a["name"] == "node-labels" && a["value"] == "tier=web")
        );
        let cp = serde_json::to_value(join(&node(), &obs(), true)).expect("json");
        assert_eq!(
            cp["controlPlane"]["localAPIEndpoint"]["advertiseAddress"],
            "10.0.1.5"
        );
        assert!(
            cp["nodeRegistration"]["taints"]
                .as_array()
                .expect("taints")
                .iter()
                .any(|t| t["key"] == CONTROL_PLANE_TAINT)
        );
    }

    #[test]
    fn init_documents_are_v1beta4_with_external_etcd_and_no_anonymous_auth_flag() {
        let cfg: NodeConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "node.kube-aws.io/v1", "role": "controller", "cluster": "demo",
            "region": "us-east-1", "bucket": "b", "prefix": "p/demo", "kubernetesVersion": "1.34.2",
            "kubernetesMinor": "1.34", "files": [], "secrets": [], "readyTimeoutSeconds": 600
        }))
        .expect("node config");
        let text = init_file(&cfg, &node(), &obs());
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).expect("yaml"))
            .collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["kind"], "InitConfiguration");
        assert_eq!(docs[0]["apiVersion"], KUBEADM_API);
        assert_eq!(
            docs[0]["bootstrapTokens"][0]["token"],
            "abcdef.0123456789abcdef"
        );
        assert_eq!(docs[1]["kind"], "ClusterConfiguration");
        assert_eq!(docs[1]["kubernetesVersion"], "v1.34.2");
        assert_eq!(docs[1]["apiServer"]["certSANs"][0], "k8s.example.com");
        assert_eq!(
            docs[1]["etcd"]["external"]["endpoints"][0],
            "https://etcd-0.x:2379"
        );
        assert!(!text.contains("anonymous-auth"));
        assert_eq!(docs[2]["kind"], "KubeletConfiguration");
        assert_eq!(docs[2]["serverTLSBootstrap"], true);
    }
}
