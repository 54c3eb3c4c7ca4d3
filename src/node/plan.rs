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
    /// etcd hosts: attach the member's own EBS volume (tag `kube-aws:etcd-volume`),
    /// waiting while the instance it replaces still holds it, and point the member's
    /// DNS name at this instance.
    ClaimIdentity,
    /// etcd hosts: find the member's volume by its EBS identity, format it when blank,
    /// mount it, and only then create the directory the etcd pod mounts.
    DataVolume { mount: String, label: String },
    /// etcd hosts: resume, found, join or restore (`node::etcd::decide`), then write the
    /// static pod with the flags that start needs.
    EtcdMember { manifest: String, image: String },
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
    /// etcd: wait until the local member, then every member, answers healthy.
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
pub const ETCD_MANIFEST: &str = "/etc/kubernetes/manifests/etcd.yaml";
pub const ETCD_PKI: &str = "/etc/kubernetes/pki/etcd";
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
            v.push(step(Phase::Volume, Action::ClaimIdentity));
            v.push(step(
                Phase::Volume,
                Action::DataVolume {
                    mount: super::etcd::MOUNT.into(),
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
            v.extend(etcd_host(cfg));
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
        Role::Controller => &[
            "kube-aws-addons.timer",
            "kube-aws-csr-approver.service",
            "kube-aws-token.timer",
        ],
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
fn etcd_host(cfg: &NodeConfig) -> Vec<Step> {
    let p = Phase::Etcd;
    let Some(m) = &cfg.etcd_member else {
        return Vec::new();
    };
    let kubelet = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\nstaticPodPath: /etc/kubernetes/manifests\nauthentication:\n  anonymous: {enabled: false}\n  webhook: {enabled: false}\nauthorization: {mode: AlwaysAllow}\nreadOnlyPort: 0\naddress: 127.0.0.1\n";
    let dropin = "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --config=/etc/kubernetes/kubelet-standalone.yaml --container-runtime-endpoint=unix:///run/containerd/containerd.sock\nRestart=always\n";
    vec![
        write(p, "/etc/kubernetes/kubelet-standalone.yaml", 0o644, kubelet),
        write(
            p,
            "/etc/systemd/system/kubelet.service.d/20-standalone.conf",
            0o644,
            dropin,
        ),
        step(
            p,
            Action::EtcdMember {
                manifest: ETCD_MANIFEST.into(),
                image: m.image.clone(),
            },
        ),
        run(p, &["systemctl", "daemon-reload"]),
        run(p, &["systemctl", "enable", "--now", "kubelet"]),
    ]
}

/// Who runs `kubeadm init`: the controller whose instance id the lock holds. The lock
/// is a create-if-absent transaction in etcd; its value is the owner's instance id, and
/// `<id> initialized` once `kubeadm init` has succeeded. A controller that has
/// initialised or joined also registers itself under `CONTROLLERS_PREFIX`.
///
/// The lock goes stale when its owner no longer exists (the shell asks EC2): a lone
/// replacement controller must not wait for an instance that is gone. It takes the lock
/// over (a compare-and-swap on the old value, so one of several racing controllers
/// wins) and runs `kubeadm init` again against the existing etcd data. That is safe:
/// the CA and service-account keys are ours (kube-aws's secrets), and kubeadm's
/// upload phases create or update their objects, the bootstrap token included
/// (`UpdateOrCreateTokens(client, false, …)` in kubeadm's init bootstraptoken phase,
/// kubernetes cmd/kubeadm/app/cmd/phases/init/bootstraptoken.go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDecision {
    /// We created the lock (or hold it from a previous attempt): initialise.
    Init,
    /// The cluster is initialised and a controller serves it: join it.
    Join,
    /// Another controller, still running, is initialising: wait for it.
    Wait { owner: String },
    /// The owner is gone and no registered controller serves the cluster: take the lock
    /// over from this value, then initialise.
    TakeOver { from: String },
}

pub const INITIALIZED: &str = " initialized";
/// `/kube-aws/controllers/<instance id>`: the controllers that have initialised or joined.
pub const CONTROLLERS_PREFIX: &str = "/kube-aws/controllers/";

/// What the controller knows when it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSeen<'a> {
    /// Our create-if-absent succeeded.
    pub created: bool,
    pub value: Option<&'a str>,
    /// Whether the lock's owner still exists (pending or running); None when not asked
    /// (the lock is ours, or absent).
    pub owner_alive: Option<bool>,
    /// Registered controllers other than us that still exist.
    pub serving: usize,
}

/// The owner's instance id and whether it finished `kubeadm init`.
pub fn lock_owner(value: &str) -> (&str, bool) {
    match value.strip_suffix(INITIALIZED) {
        Some(owner) => (owner, true),
        None => (value, false),
    }
}

pub fn decide(seen: &LockSeen, me: &str) -> LockDecision {
    if seen.created {
        return LockDecision::Init;
    }
    let Some(v) = seen.value else {
        return LockDecision::Init;
    };
    let (owner, initialized) = lock_owner(v);
    if owner == me {
        // Our own initialized lock (a re-run after success): we are a member already,
        // and `kubeadm join` is what a replacement would run.
        return if initialized {
            LockDecision::Join
        } else {
            LockDecision::Init
        };
    }
    match (seen.owner_alive, initialized) {
        (Some(false), true) if seen.serving > 0 => LockDecision::Join,
        (Some(false), _) => LockDecision::TakeOver {
            from: v.to_string(),
        },
        (_, true) => LockDecision::Join,
        (_, false) => LockDecision::Wait {
            owner: owner.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(
        created: bool,
        value: Option<&str>,
        alive: Option<bool>,
        serving: usize,
    ) -> LockSeen<'_> {
        LockSeen {
            created,
            value,
            owner_alive: alive,
            serving,
        }
    }

    #[test]
    fn the_lock_decides_init_join_wait_or_take_over() {
        use LockDecision::*;
        assert_eq!(decide(&seen(true, None, None, 0), "i-1"), Init);
        assert_eq!(decide(&seen(false, None, None, 0), "i-1"), Init);
        assert_eq!(decide(&seen(false, Some("i-1"), None, 0), "i-1"), Init);
        assert_eq!(
            decide(&seen(false, Some("i-1 initialized"), None, 0), "i-1"),
            Join
        );
        // A running owner: wait while it initialises, join once it has.
        assert_eq!(
            decide(&seen(false, Some("i-2"), Some(true), 0), "i-1"),
            Wait {
                owner: "i-2".into()
            }
        );
        assert_eq!(
            decide(&seen(false, Some("i-2 initialized"), Some(true), 0), "i-1"),
            Join
        );
        // The owner is gone. Mid-init: take over. Initialised, and another controller
        // serves: join it. Initialised, and none does (the lone controller was
        // replaced): take over and initialise again on the existing etcd data.
        assert_eq!(
            decide(&seen(false, Some("i-2"), Some(false), 1), "i-1"),
            TakeOver { from: "i-2".into() }
        );
        assert_eq!(
            decide(&seen(false, Some("i-2 initialized"), Some(false), 1), "i-1"),
            Join
        );
        assert_eq!(
            decide(&seen(false, Some("i-2 initialized"), Some(false), 0), "i-1"),
            TakeOver {
                from: "i-2 initialized".into()
            }
        );
        assert_eq!(lock_owner("i-2 initialized"), ("i-2", true));
    }

    #[test]
    fn readiness_needs_ready_true() {
        let n = |s: &str| serde_json::json!({"status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": s}]}});
        assert!(node_ready(&n("True")));
        assert!(!node_ready(&n("False")));
        assert!(!node_ready(&n("Unknown")));
        assert!(!node_ready(&serde_json::json!({})));
    }
}
