//! The pure core of the node agent: node config + what the node observed → the steps of
//! its bootstrap, and the decisions taken on the way (init or join, the disk to use,
//! whether the node is Ready). `agent` runs the steps; `kube-aws node plan` prints them.

use super::config::{NodeConfig, Role};
use super::kubeadm::{self, Observed};
use serde::Serialize;

/// The phases, in the order every node goes through them. The rehearsal asserts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Secrets,
    Volume,
    Runtime,
    Kubeadm,
    Etcd,
    Cni,
    Ready,
    Services,
    Signal,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Secrets => "secrets",
            Phase::Volume => "volume",
            Phase::Runtime => "runtime",
            Phase::Kubeadm => "kubeadm",
            Phase::Etcd => "etcd",
            Phase::Cni => "cni",
            Phase::Ready => "ready",
            Phase::Signal => "signal",
            Phase::Services => "services",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Write a file (parents created), mode in octal.
    Write {
        path: String,
        mode: u32,
        content: String,
    },
    /// Fetch a secret's ciphertext from S3, decrypt it with KMS, write it 0600.
    Secret {
        name: String,
        key: String,
        path: String,
    },
    /// Run a command through the command seam; a non-zero exit fails the bootstrap.
    Run { argv: Vec<String> },
    /// Download an upstream file (the one for this node's CPU architecture), refused
    /// unless its sha256 is the pinned one.
    Fetch {
        by_arch: std::collections::BTreeMap<String, super::config::Artifact>,
        path: String,
        mode: u32,
    },
    /// etcd hosts: find the data volume, format it when blank, mount it.
    DataVolume { mount: String, label: String },
    /// Controllers: take the init lock in etcd, then `kubeadm init` with `init` or
    /// `kubeadm join` with `join`, both written to `path`.
    ControlPlane {
        lock_key: String,
        path: String,
        init: String,
        join: String,
    },
    /// Workers: `kubeadm join` with the file at `path`.
    Join { path: String, content: String },
    /// Controllers: the CNI (fetched, sha256-checked) and the cluster's own objects,
    /// applied server-side.
    ApplyAddons,
    /// Wait until the Node object reports Ready (through `kubeconfig`).
    WaitReady { kubeconfig: String, node: String },
    /// etcd: wait until the local member answers healthy.
    WaitEtcd { url: String },
    /// CloudFormation SignalResource SUCCESS.
    Signal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub phase: Phase,
    #[serde(flatten)]
    pub action: Action,
}

fn step(phase: Phase, action: Action) -> Step {
    Step { phase, action }
}

fn run(phase: Phase, argv: &[&str]) -> Step {
    step(
        phase,
        Action::Run {
            argv: argv.iter().map(|s| s.to_string()).collect(),
        },
    )
}

fn write(phase: Phase, path: &str, mode: u32, content: impl Into<String>) -> Step {
    step(
        phase,
        Action::Write {
            path: path.into(),
            mode,
            content: content.into(),
        },
    )
}

pub const NODE_CONFIG_PATH: &str = "/etc/kube-aws/node.json";
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
pub const INIT_LOCK_KEY: &str = "/kube-aws/kubeadm-init";
pub const KUBEADM_CONFIG: &str = "/etc/kubernetes/kube-aws/kubeadm.yaml";
pub const ETCD_DATA: &str = "/var/lib/etcd";
/// The pause image kubeadm expects per minor (`kubeadm config images list`; 1.34 moved to
/// 3.10.1 and warns in preflight otherwise), so containerd and kubeadm agree.
pub fn pause_image(minor: &str) -> &'static str {
    match minor {
        "1.31" | "1.32" | "1.33" => "registry.k8s.io/pause:3.10",
        _ => "registry.k8s.io/pause:3.10.1",
    }
}

/// containerd's CRI configuration with the systemd cgroup driver, which the kubelet
/// uses too (kubeadm's default from 1.22): both must agree.
/// (https://kubernetes.io/docs/setup/production-environment/container-runtimes/#containerd-systemd)
fn containerd_config(minor: &str) -> String {
    let pause = pause_image(minor);
    format!(
        "# Written by kube-aws node bootstrap.\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{pause}\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n"
    )
}

/// The container runtime and the pinned Kubernetes packages from pkgs.k8s.io
/// (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/):
/// the kernel modules and sysctls the container-runtimes page lists, containerd from
/// Ubuntu, then kubelet/kubeadm/kubectl of exactly `version`, held.
fn runtime(cfg: &NodeConfig, packages: &[String]) -> Vec<Step> {
    let p = Phase::Runtime;
    let minor = &cfg.kubernetes_minor;
    let key = "/etc/apt/keyrings/kubernetes-apt-keyring.asc";
    let repo = format!("https://pkgs.k8s.io/core:/stable:/v{minor}/deb/");
    let mut v = vec![
        write(
            p,
            "/etc/modules-load.d/kubernetes.conf",
            0o644,
            "overlay\nbr_netfilter\n",
        ),
        run(p, &["modprobe", "overlay"]),
        run(p, &["modprobe", "br_netfilter"]),
        write(
            p,
            "/etc/sysctl.d/90-kubernetes.conf",
            0o644,
            "net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\n",
        ),
        run(p, &["sysctl", "--system"]),
        run(p, &["apt-get", "update", "-q"]),
        run(
            p,
            &[
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "containerd",
            ],
        ),
        write(
            p,
            "/etc/containerd/config.toml",
            0o644,
            containerd_config(minor),
        ),
        run(p, &["systemctl", "restart", "containerd"]),
        // apt reads an ASCII-armoured key from a .asc file named by signed-by.
        run(
            p,
            &[
                "curl",
                "-fsSL",
                "--retry",
                "5",
                "-o",
                key,
                &format!("{repo}Release.key"),
            ],
        ),
        write(
            p,
            "/etc/apt/sources.list.d/kubernetes.list",
            0o644,
            format!("deb [signed-by={key}] {repo} /\n"),
        ),
        run(p, &["apt-get", "update", "-q"]),
    ];
    let mut install: Vec<String> = [
        "apt-get",
        "install",
        "-y",
        "-q",
        "-o",
        "DPkg::Lock::Timeout=600",
        "--no-install-recommends",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    install.extend(packages.iter().cloned());
    v.push(step(p, Action::Run { argv: install }));
    let mut hold: Vec<String> = vec!["apt-mark".into(), "hold".into()];
    hold.extend(
        packages
            .iter()
            .map(|p| p.split('=').next().unwrap_or(p).to_string()),
    );
    v.push(step(p, Action::Run { argv: hold }));
    v
}

fn secrets(cfg: &NodeConfig) -> Vec<Step> {
    let mut v: Vec<Step> = cfg
        .files
        .iter()
        .map(|f| write(Phase::Secrets, &f.path, 0o644, f.content.clone()))
        .collect();
    v.extend(cfg.secrets.iter().map(|s| {
        step(
            Phase::Secrets,
            Action::Secret {
                name: s.name.clone(),
                key: s.key.clone(),
                path: s.path.clone(),
            },
        )
    }));
    v
}

/// Every step of the bootstrap, in order.
pub fn plan(cfg: &NodeConfig, obs: &Observed) -> Vec<Step> {
    let mut v = secrets(cfg);
    match cfg.role {
        Role::Etcd => {
            v.push(step(
                Phase::Volume,
                Action::DataVolume {
                    mount: ETCD_DATA.into(),
                    label: "etcd-data".into(),
                },
            ));
            v.extend(runtime(
                cfg,
                &[
                    format!("kubelet={}.*", cfg.kubernetes_minor),
                    "cri-tools".into(),
                ],
            ));
            v.extend(etcd_host(cfg, obs));
            v.push(step(
                Phase::Etcd,
                Action::WaitEtcd {
                    url: "https://127.0.0.1:2379/health".into(),
                },
            ));
        }
        Role::Controller | Role::Worker => {
            let version = &cfg.kubernetes_version;
            v.extend(runtime(
                cfg,
                &[
                    format!("kubelet={version}-*"),
                    format!("kubeadm={version}-*"),
                    format!("kubectl={version}-*"),
                ],
            ));
            if let Some(k) = &cfg.kubernetes {
                if let Some(vpc) = &k.vpc_cni {
                    v.push(step(
                        Phase::Runtime,
                        Action::Fetch {
                            by_arch: vpc.credential_provider.clone(),
                            path: format!("{}/ecr-credential-provider", kubeadm::ECR_PROVIDER_DIR),
                            mode: 0o755,
                        },
                    ));
                    v.push(write(
                        Phase::Runtime,
                        kubeadm::ECR_PROVIDER_CONFIG,
                        0o644,
                        super::manifests::ecr_provider_config(&cfg.region),
                    ));
                }
                let controller = cfg.role == Role::Controller;
                if controller {
                    v.push(step(
                        Phase::Kubeadm,
                        Action::ControlPlane {
                            lock_key: INIT_LOCK_KEY.into(),
                            path: KUBEADM_CONFIG.into(),
                            init: kubeadm::init_file(cfg, k, obs),
                            join: kubeadm::join_file(k, obs, true),
                        },
                    ));
                    v.push(step(Phase::Cni, Action::ApplyAddons));
                } else {
                    v.push(step(
                        Phase::Kubeadm,
                        Action::Join {
                            path: KUBEADM_CONFIG.into(),
                            content: kubeadm::join_file(k, obs, false),
                        },
                    ));
                }
                v.push(step(
                    Phase::Ready,
                    Action::WaitReady {
                        kubeconfig: if controller {
                            ADMIN_KUBECONFIG
                        } else {
                            KUBELET_KUBECONFIG
                        }
                        .into(),
                        node: obs.node_name.clone(),
                    },
                ));
            }
        }
    }
    // The agent's own units, defined in the role's cloud-config.
    let units: &[&str] = match cfg.role {
        Role::Controller => &["kube-aws-addons.timer", "kube-aws-csr-approver.service"],
        Role::Worker => &["kube-aws-node-watch.service"],
        Role::Etcd => &[],
    };
    if !units.is_empty() {
        v.push(run(Phase::Services, &["systemctl", "daemon-reload"]));
        let mut enable = vec!["systemctl", "enable", "--now"];
        enable.extend_from_slice(units);
        v.push(run(Phase::Services, &enable));
    }
    v.push(step(Phase::Signal, Action::Signal));
    v
}

/// The standalone kubelet and the etcd static pod of an etcd host.
fn etcd_host(cfg: &NodeConfig, obs: &Observed) -> Vec<Step> {
    let p = Phase::Etcd;
    let Some(m) = &cfg.etcd_member else {
        return Vec::new();
    };
    let name = &obs.node_name;
    let dns = format!("{name}.{}", m.zone);
    let kubelet = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\nstaticPodPath: /etc/kubernetes/manifests\nauthentication:\n  anonymous: {enabled: false}\n  webhook: {enabled: false}\nauthorization: {mode: AlwaysAllow}\nreadOnlyPort: 0\naddress: 127.0.0.1\n";
    let dropin = "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --config=/etc/kubernetes/kubelet-standalone.yaml --container-runtime-endpoint=unix:///run/containerd/containerd.sock\nRestart=always\n";
    let pki = "/etc/kubernetes/pki/etcd";
    let command: Vec<String> = vec![
        "etcd".into(),
        format!("--name={name}"),
        "--data-dir=/var/lib/etcd/data".into(),
        "--listen-client-urls=https://0.0.0.0:2379".into(),
        format!("--advertise-client-urls=https://{dns}:2379"),
        "--listen-peer-urls=https://0.0.0.0:2380".into(),
        format!("--initial-advertise-peer-urls=https://{dns}:2380"),
        format!("--initial-cluster={}", m.initial_cluster),
        "--initial-cluster-state=new".into(),
        format!("--initial-cluster-token={}", m.cluster_token),
        format!("--cert-file={pki}/server.crt"),
        format!("--key-file={pki}/server.key"),
        format!("--trusted-ca-file={pki}/ca.crt"),
        "--client-cert-auth=true".into(),
        format!("--peer-cert-file={pki}/peer.crt"),
        format!("--peer-key-file={pki}/peer.key"),
        format!("--peer-trusted-ca-file={pki}/ca.crt"),
        "--peer-client-cert-auth=true".into(),
        "--snapshot-count=10000".into(),
    ];
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "etcd", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "containers": [{
                "name": "etcd",
                "image": m.image,
                "command": command,
                "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/etcd"},
                    {"name": "pki", "mountPath": pki, "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "data", "hostPath": {"path": "/var/lib/etcd", "type": "Directory"}},
                {"name": "pki", "hostPath": {"path": pki, "type": "Directory"}},
            ],
        },
    });
    vec![
        write(p, "/etc/kubernetes/kubelet-standalone.yaml", 0o644, kubelet),
        write(
            p,
            "/etc/systemd/system/kubelet.service.d/20-standalone.conf",
            0o644,
            dropin,
        ),
        write(
            p,
            "/etc/kubernetes/manifests/etcd.yaml",
            0o644,
            serde_yaml_ng::to_string(&pod).unwrap_or_default(),
        ),
        run(p, &["systemctl", "daemon-reload"]),
        run(p, &["systemctl", "enable", "--now", "kubelet"]),
    ]
}

/// Who runs `kubeadm init`: the controller whose instance id the lock holds. The lock
/// is a create-if-absent transaction in etcd; its value is the owner's instance id, and
/// `<id> initialized` once `kubeadm init` has succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDecision {
    /// We created the lock (or hold it from a previous attempt): initialise.
    Init,
    /// Another controller initialised the cluster: join it.
    Join,
    /// Another controller is initialising: wait for it.
    Wait { owner: String },
}

pub const INITIALIZED: &str = " initialized";

pub fn decide(created: bool, value: Option<&str>, me: &str) -> LockDecision {
    if created {
        return LockDecision::Init;
    }
    match value {
        None => LockDecision::Init,
        Some(v) if v.ends_with(INITIALIZED) => LockDecision::Join,
        Some(v) if v == me => LockDecision::Init,
        Some(v) => LockDecision::Wait {
            owner: v.to_string(),
        },
    }
}

/// `sha256:<hex>` of the CA certificate's SubjectPublicKeyInfo (DER): the form of
/// `discovery.bootstrapToken.caCertHashes`, as `kubeadm token create
/// --print-join-command` prints it.
pub fn ca_cert_hash(pem_text: &str) -> anyhow::Result<String> {
    let block = pem::parse(pem_text.as_bytes())
        .map_err(|e| anyhow::anyhow!("the cluster CA is not PEM: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents())
        .map_err(|e| anyhow::anyhow!("the cluster CA is not a certificate: {e}"))?;
    Ok(format!(
        "sha256:{}",
        crate::pki::envelope::sha256_hex(cert.tbs_certificate.subject_pki.raw)
    ))
}

/// Whether a Node object (as JSON) has condition Ready=True.
pub fn node_ready(node: &serde_json::Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(|t| t.as_str()) == Some("Ready")
                    && c.get("status").and_then(|s| s.as_str()) == Some("True")
            })
        })
}

/// The etcd data volume from `lsblk --json -o NAME,TYPE,MOUNTPOINTS`: the one disk that
/// neither is nor holds a mounted filesystem (the root disk holds `/`).
pub fn data_disk(lsblk: &serde_json::Value) -> Option<String> {
    fn mounted(d: &serde_json::Value) -> bool {
        let own = d
            .get("mountpoints")
            .and_then(|m| m.as_array())
            .is_some_and(|m| m.iter().any(|p| p.as_str().is_some_and(|s| !s.is_empty())));
        own || d
            .get("children")
            .and_then(|c| c.as_array())
            .is_some_and(|c| c.iter().any(mounted))
    }
    lsblk
        .get("blockdevices")?
        .as_array()?
        .iter()
        .filter(|d| d.get("type").and_then(|t| t.as_str()) == Some("disk"))
        .find(|d| !mounted(d))
        .and_then(|d| d.get("name").and_then(|n| n.as_str()))
        .map(|n| format!("/dev/{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_decides_init_join_or_wait() {
        assert_eq!(decide(true, None, "i-1"), LockDecision::Init);
        assert_eq!(decide(false, Some("i-1"), "i-1"), LockDecision::Init);
        assert_eq!(
            decide(false, Some("i-2"), "i-1"),
            LockDecision::Wait {
                owner: "i-2".into()
            }
        );
        assert_eq!(
            decide(false, Some("i-2 initialized"), "i-1"),
            LockDecision::Join
        );
        // Our own initialized lock (a re-run after success) joins nothing new: it is
        // already a member, and `kubeadm join` is what a replacement would run.
        assert_eq!(
            decide(false, Some("i-1 initialized"), "i-1"),
            LockDecision::Join
        );
    }

    #[test]
    fn readiness_needs_ready_true() {
        let n = |s: &str| serde_json::json!({"status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": s}]}});
        assert!(node_ready(&n("True")));
        assert!(!node_ready(&n("False")));
        assert!(!node_ready(&n("Unknown")));
        assert!(!node_ready(&serde_json::json!({})));
    }

    #[test]
    fn the_data_disk_is_the_unmounted_one() {
        let v = serde_json::json!({"blockdevices": [
            {"name": "nvme0n1", "type": "disk", "mountpoints": [null], "children": [
                {"name": "nvme0n1p1", "type": "part", "mountpoints": ["/"]},
                {"name": "nvme0n1p15", "type": "part", "mountpoints": ["/boot/efi"]}]},
            {"name": "nvme1n1", "type": "disk", "mountpoints": [null]}
        ]});
        assert_eq!(data_disk(&v).as_deref(), Some("/dev/nvme1n1"));
        let none = serde_json::json!({"blockdevices": [
            {"name": "nvme0n1", "type": "disk", "children": [{"name": "p1", "type": "part", "mountpoints": ["/"]}]}]});
        assert_eq!(data_disk(&none), None);
    }
}
