//! The thin shell of the node agent: runs the steps `plan` returns. Everything it
//! touches is behind an override, so tests run this code for real: the filesystem root
//! (`--root`), the instance metadata endpoint (`--imds-endpoint`), AWS
//! (`AWS_ENDPOINT_URL`), host names (`--resolve`), and the commands (kubeadm, kubelet,
//! systemctl, apt-get, containerd, modprobe, …), found on PATH.
//!
//! Any failure signals FAILURE to CloudFormation at once, so the stack fails in seconds
//! rather than after its 20-minute CreationPolicy timeout.

use super::imds::Imds;
use crate::node::config::{NodeConfig, Role};
use crate::node::kubeadm::Observed;
use crate::node::plan::{self, Action, LockDecision, Phase, Step};
use anyhow::{Context, Result, anyhow, bail};
use aws_config::SdkConfig;
use base64::Engine;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub imds: String,
    /// `host=ip:port` overrides for the node's own HTTPS clients (etcd, artifacts).
    pub resolve: Vec<(String, SocketAddr)>,
}

/// What the node learned about itself from the instance metadata service.
#[derive(Debug, Clone)]
pub struct Identity {
    pub instance_id: String,
    /// Private DNS name: the node name of kubelet, the CCM and the drainer.
    pub node_name: String,
    pub ip: String,
    pub region: String,
    /// Its EC2 tags (the resource to signal, the etcd member name).
    pub tags: std::collections::BTreeMap<String, String>,
    /// With the VPC CNI: the pods its ENIs can address.
    pub max_pods: Option<u32>,
}

pub struct Agent {
    pub cfg: NodeConfig,
    pub opts: Options,
    pub imds: Imds,
    pub sdk: SdkConfig,
    pub me: Identity,
}

fn say(phase: Phase, msg: &str) {
    println!("==> {}: {msg}", phase.as_str());
}

impl Agent {
    pub async fn new(cfg: NodeConfig, opts: Options) -> Result<Agent> {
        let imds = Imds::new(&opts.imds)?;
        let region = match imds.get("meta-data/placement/region").await? {
            Some(r) => r,
            None => cfg.region.clone(),
        };
        let instance_id = imds.require("meta-data/instance-id").await?;
        let ip = imds.require("meta-data/local-ipv4").await?;
        // The private DNS name (IP- or resource-based naming): what the AWS
        // cloud-controller-manager looks the instance up by (cloud-provider-aws
        // docs/prerequisites.md). etcd members are named by their instance tag.
        let sdk = crate::aws::node::sdk_config(&region, imds.endpoint()).await?;
        let tags = crate::aws::node::instance_tags(&sdk, &instance_id).await?;
        // The private DNS name (IP- or resource-based naming): what the AWS
        // cloud-controller-manager looks the instance up by (cloud-provider-aws
        // docs/prerequisites.md). etcd members are named by their instance tag.
        let node_name = match cfg.role {
            Role::Etcd => tags
                .get("kube-aws:etcd-member")
                .cloned()
                .ok_or_else(|| anyhow!("instance {instance_id} has no kube-aws:etcd-member tag"))?,
            _ => imds.require("meta-data/local-hostname").await?,
        };
        let vpc_cni = cfg.kubernetes.as_ref().is_some_and(|k| k.vpc_cni.is_some());
        let max_pods = if vpc_cni {
            let t = imds.require("meta-data/instance-type").await?;
            let (enis, ips) = crate::aws::node::eni_limits(&sdk, &t).await?;
            Some(crate::node::manifests::vpc_cni_max_pods(enis, ips))
        } else {
            None
        };
        Ok(Agent {
            cfg,
            opts,
            imds,
            sdk,
            me: Identity {
                instance_id,
                node_name,
                ip,
                region,
                tags,
                max_pods,
            },
        })
    }

    /// A node path under the root.
    pub fn path(&self, p: &str) -> PathBuf {
        self.opts.root.join(p.trim_start_matches('/'))
    }

    pub fn write(&self, p: &str, mode: u32, content: &[u8]) -> Result<()> {
        let path = self.path(p);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("kube-aws-tmp");
        std::fs::write(&tmp, content).with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Runs a command of the seam. apt-get is tried three times, 5 s apart: on a fresh
    /// Ubuntu instance apt-daily and unattended-upgrades often hold apt's locks at first
    /// boot (installs also wait up to 10 minutes for the dpkg lock, DPkg::Lock::Timeout).
    async fn run_retrying(&self, argv: &[String]) -> Result<String> {
        let attempts = if argv.first().is_some_and(|c| c == "apt-get") {
            3
        } else {
            1
        };
        let mut last = None;
        for attempt in 1..=attempts {
            match self.run(argv) {
                Ok(out) => return Ok(out),
                Err(e) => {
                    if attempt < attempts {
                        eprintln!("{e:#}\n(attempt {attempt} of {attempts}; retrying in 5s)");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("{} did not run", argv.join(" "))))
    }

    /// Runs a command of the seam; its output goes to the journal (our stdout).
    fn run(&self, argv: &[String]) -> Result<String> {
        let (cmd, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
        let out = std::process::Command::new(cmd)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {cmd}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(15).collect();
            bail!(
                "`{}` failed ({}):\n{}",
                argv.join(" "),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(stdout)
    }

    fn http(&self, identity: Option<(&str, &str)>, ca: Option<&str>) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .use_rustls_tls();
        for (host, addr) in &self.opts.resolve {
            b = b.resolve(host, *addr);
        }
        if let Some(ca) = ca {
            let pem = std::fs::read(self.path(ca)).with_context(|| format!("reading {ca}"))?;
            b = b
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&pem).map_err(|e| anyhow!("{ca}: {e}"))?,
                )
                .tls_built_in_root_certs(false);
        }
        if let Some((cert, key)) = identity {
            let mut pem =
                std::fs::read(self.path(cert)).with_context(|| format!("reading {cert}"))?;
            pem.extend(std::fs::read(self.path(key)).with_context(|| format!("reading {key}"))?);
            b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| anyhow!("{cert}: {e}"))?);
        }
        b.build()
            .map_err(|e| anyhow!("building an HTTPS client: {e}"))
    }

    /// A secret's plaintext, in memory: its ciphertext from S3, decrypted by KMS under
    /// the context `{cluster, file}`.
    pub async fn decrypt(&self, name: &str, key: &str) -> Result<Vec<u8>> {
        let blob = crate::aws::node::get_object(&self.sdk, &self.cfg.bucket, key).await?;
        crate::aws::node::decrypt(&self.sdk, blob, &self.cfg.cluster, name).await
    }

    async fn secret(&self, name: &str, key: &str, path: &str) -> Result<()> {
        let plain = self.decrypt(name, key).await?;
        self.write(path, 0o600, &plain)
    }

    /// What the kubeadm documents need: identity, the bootstrap token, the CA hash.
    pub fn observed(&self) -> Result<Observed> {
        let token = match self.cfg.role {
            Role::Etcd => String::new(),
            _ => std::fs::read_to_string(self.path("/etc/kubernetes/bootstrap-token"))
                .context("reading the bootstrap token (a secret of this role)")?
                .trim()
                .to_string(),
        };
        let ca_cert_hash = match &self.cfg.kubernetes {
            Some(k) => plan::ca_cert_hash(&k.cluster_ca)?,
            None => String::new(),
        };
        Ok(Observed {
            node_name: self.me.node_name.clone(),
            ip: self.me.ip.clone(),
            bootstrap_token: token,
            ca_cert_hash,
            max_pods: self.me.max_pods,
        })
    }

    /// The etcd transaction of the init lock, on the first member that answers.
    async fn etcd_txn(&self, body: serde_json::Value) -> Result<serde_json::Value> {
        let k = self
            .cfg
            .kubernetes
            .as_ref()
            .ok_or_else(|| anyhow!("no kubernetes section"))?;
        let http = self.http(
            Some((
                "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                "/etc/kubernetes/pki/apiserver-etcd-client.key",
            )),
            Some("/etc/kubernetes/pki/etcd/ca.crt"),
        )?;
        let mut last = String::new();
        for ep in &k.etcd_endpoints {
            match http
                .post(format!("{ep}/v3/kv/txn"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    return r.json().await.map_err(|e| anyhow!("etcd {ep}: {e}"));
                }
                Ok(r) => last = format!("{ep}: HTTP {}", r.status()),
                Err(e) => last = format!("{ep}: {e}"),
            }
        }
        bail!("no etcd member answered: {last}")
    }

    /// Takes (or reads) the init lock: (created, current value).
    async fn lock(&self, key: &str, value: &str) -> Result<(bool, Option<String>)> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let k = b64(key);
        let body = serde_json::json!({
            "compare": [{"key": k, "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": k, "value": b64(value)}}],
            "failure": [{"request_range": {"key": k}}]
        });
        let a = self.etcd_txn(body).await?;
        if a["succeeded"].as_bool() == Some(true) {
            return Ok((true, Some(value.to_string())));
        }
        let v = a
            .pointer("/responses/0/response_range/kvs/0/value")
            .and_then(|v| v.as_str())
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok((false, v))
    }

    async fn mark_initialized(&self, key: &str) -> Result<()> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let body = serde_json::json!({
            "compare": [],
            "success": [{"request_put": {"key": b64(key),
                "value": b64(&format!("{}{}", self.me.instance_id, plan::INITIALIZED))}}],
            "failure": []
        });
        self.etcd_txn(body).await.map(|_| ())
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.cfg.ready_timeout_seconds)
    }

    async fn control_plane(&self, key: &str, path: &str, init: &str, join: &str) -> Result<()> {
        let deadline = self.deadline();
        loop {
            let (created, value) = self.lock(key, &self.me.instance_id).await?;
            match plan::decide(created, value.as_deref(), &self.me.instance_id) {
                LockDecision::Init => {
                    say(Phase::Kubeadm, "this controller initialises the cluster");
                    self.write(path, 0o600, init.as_bytes())?;
                    self.run(&argv(&[
                        "kubeadm",
                        "init",
                        "--config",
                        path,
                        "--skip-token-print",
                    ]))?;
                    self.mark_initialized(key).await?;
                    return Ok(());
                }
                LockDecision::Join => {
                    say(Phase::Kubeadm, "joining the control plane");
                    self.write(path, 0o600, join.as_bytes())?;
                    self.run(&argv(&["kubeadm", "join", "--config", path]))?;
                    return Ok(());
                }
                LockDecision::Wait { owner } => {
                    if Instant::now() > deadline {
                        bail!(
                            "{owner} holds the kubeadm init lock and has not finished within {}s",
                            self.cfg.ready_timeout_seconds
                        );
                    }
                    say(
                        Phase::Kubeadm,
                        &format!("waiting for {owner} to initialise"),
                    );
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
            }
        }
    }

    async fn kube(&self, kubeconfig: &str) -> Result<kube::Client> {
        let (client, _) = crate::deploy::addons::client(&self.path(kubeconfig), None).await?;
        Ok(client)
    }

    async fn fetch_artifact(&self, a: &crate::node::config::Artifact) -> Result<Vec<u8>> {
        let http = self.http(None, None)?;
        let mut last = String::new();
        for attempt in 0..5u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(2 * attempt)).await;
            }
            match http.get(&a.url).send().await {
                Ok(r) if r.status().is_success() => {
                    let body = r
                        .bytes()
                        .await
                        .map_err(|e| anyhow!("{}: {e}", a.url))?
                        .to_vec();
                    let sha = crate::pki::envelope::sha256_hex(&body);
                    if sha != a.sha256 {
                        bail!(
                            "{} {} from {} has sha256 {sha}, not the pinned {}: refusing to apply it",
                            a.name,
                            a.version,
                            a.url,
                            a.sha256
                        );
                    }
                    return Ok(body);
                }
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        bail!("fetching {} {} from {}: {last}", a.name, a.version, a.url)
    }

    async fn apply_addons(&self) -> Result<()> {
        let k = self
            .cfg
            .kubernetes
            .as_ref()
            .ok_or_else(|| anyhow!("no kubernetes section"))?;
        let Some(add) = &k.cluster_addons else {
            return Ok(());
        };
        let body = self.fetch_artifact(&add.cni).await?;
        let text = String::from_utf8(body).map_err(|_| anyhow!("{} is not UTF-8", add.cni.url))?;
        let mut docs: Vec<serde_json::Value> = Vec::new();
        for d in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = <serde_json::Value as serde::Deserialize>::deserialize(d)
                .map_err(|e| anyhow!("{}: {e}", add.cni.url))?;
            if v.is_object() {
                docs.push(v);
            }
        }
        say(
            Phase::Cni,
            &format!(
                "{} {}: {} objects, sha256 verified",
                add.cni.name,
                add.cni.version,
                docs.len()
            ),
        );
        docs.extend(add.objects.iter().cloned());
        let bundle = crate::addons::Bundle::from_objects(docs);
        let client = self.kube(plan::ADMIN_KUBECONFIG).await?;
        let opts = crate::deploy::addons::ApplyOptions {
            dry_run: false,
            timeout: Duration::from_secs(self.cfg.ready_timeout_seconds),
        };
        let done = crate::deploy::addons::apply(
            client,
            "the local API server",
            &bundle,
            &[],
            &opts,
            |_| {},
        )
        .await?;
        say(
            Phase::Cni,
            &format!("{} objects applied server-side", done.len()),
        );
        Ok(())
    }

    async fn wait_ready(&self, kubeconfig: &str, node: &str) -> Result<()> {
        let client = self.kube(kubeconfig).await?;
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
        let deadline = self.deadline();
        loop {
            match api.get_opt(node).await {
                Ok(Some(n)) => {
                    if plan::node_ready(&serde_json::to_value(&n)?) {
                        return Ok(());
                    }
                }
                Ok(None) => {}
                Err(e) => say(Phase::Ready, &format!("asking for node {node}: {e}")),
            }
            if Instant::now() > deadline {
                bail!(
                    "node {node} was not Ready within {}s (is the pod network up? `kubectl describe node {node}`)",
                    self.cfg.ready_timeout_seconds
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn wait_etcd(&self, url: &str) -> Result<()> {
        let http = self.http(
            Some((
                "/etc/kubernetes/pki/etcd/client.crt",
                "/etc/kubernetes/pki/etcd/client.key",
            )),
            Some("/etc/kubernetes/pki/etcd/ca.crt"),
        )?;
        let deadline = self.deadline();
        loop {
            if let Ok(r) = http.get(url).send().await
                && let Ok(t) = r.text().await
                && t.contains("\"health\":\"true\"")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd at {url} was not healthy within {}s",
                    self.cfg.ready_timeout_seconds
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// The data volume is attached by CloudFormation after the instance starts: wait for
    /// it (as long as for Ready), then format it once and mount it.
    async fn data_volume(&self, mount: &str, label: &str) -> Result<()> {
        let deadline = self.deadline();
        let dev = loop {
            let out = self.run(&argv(&["lsblk", "--json", "-o", "NAME,TYPE,MOUNTPOINTS"]))?;
            let v: serde_json::Value = serde_json::from_str(&out).context("lsblk --json")?;
            if let Some(d) = plan::data_disk(&v) {
                break d;
            }
            if Instant::now() > deadline {
                bail!(
                    "no etcd data volume was attached within {}s",
                    self.cfg.ready_timeout_seconds
                );
            }
            say(Phase::Volume, "waiting for the data volume to be attached");
            tokio::time::sleep(Duration::from_secs(5)).await;
        };
        // blkid exits 2 when the device has no filesystem: only then format it.
        let has_fs = std::process::Command::new("blkid")
            .arg(&dev)
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .context("running blkid")?;
        if !has_fs {
            self.run(&argv(&["mkfs.ext4", "-q", "-L", label, &dev]))?;
        }
        let fstab = self.path("/etc/fstab");
        let current = std::fs::read_to_string(&fstab).unwrap_or_default();
        if !current
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(mount))
        {
            let line = format!("LABEL={label} {mount} ext4 defaults,nofail 0 2\n");
            self.write("/etc/fstab", 0o644, format!("{current}{line}").as_bytes())?;
        }
        std::fs::create_dir_all(self.path(mount)).with_context(|| format!("creating {mount}"))?;
        self.run(&argv(&["mount", mount]))?;
        Ok(())
    }

    async fn signal(&self, success: bool) -> Result<()> {
        let tag = |k: &str| {
            self.me
                .tags
                .get(k)
                .ok_or_else(|| anyhow!("instance {} has no {k} tag", self.me.instance_id))
        };
        let (stack, resource) = (
            tag("kube-aws:signal-stack")?,
            tag("kube-aws:signal-resource")?,
        );
        crate::aws::node::signal(&self.sdk, stack, resource, &self.me.instance_id, success).await
    }

    async fn execute(&self, s: &Step) -> Result<()> {
        match &s.action {
            Action::Write {
                path,
                mode,
                content,
            } => self.write(path, *mode, content.as_bytes()),
            Action::Secret { name, key, path } => self.secret(name, key, path).await,
            Action::Run { argv } => self.run_retrying(argv).await.map(|_| ()),
            Action::Fetch {
                by_arch,
                path,
                mode,
            } => {
                let arch = match std::env::consts::ARCH {
                    "aarch64" => "arm64",
                    _ => "amd64",
                };
                let a = by_arch
                    .get(arch)
                    .ok_or_else(|| anyhow!("no {path} is pinned for {arch}"))?;
                let body = self.fetch_artifact(a).await?;
                self.write(path, *mode, &body)
            }
            Action::DataVolume { mount, label } => self.data_volume(mount, label).await,
            Action::ControlPlane {
                lock_key,
                path,
                init,
                join,
            } => self.control_plane(lock_key, path, init, join).await,
            Action::Join { path, content } => {
                self.write(path, 0o600, content.as_bytes())?;
                self.run(&argv(&["kubeadm", "join", "--config", path]))
                    .map(|_| ())
            }
            Action::ApplyAddons => self.apply_addons().await,
            Action::WaitReady { kubeconfig, node } => self.wait_ready(kubeconfig, node).await,
            Action::WaitEtcd { url } => self.wait_etcd(url).await,
            Action::Signal => self.signal(true).await,
        }
    }

    async fn steps(&self) -> Result<()> {
        // Secrets first: the kubeadm documents need the bootstrap token.
        let placeholder = Observed {
            node_name: self.me.node_name.clone(),
            ip: self.me.ip.clone(),
            bootstrap_token: String::new(),
            ca_cert_hash: String::new(),
            max_pods: self.me.max_pods,
        };
        let first = plan::plan(&self.cfg, &placeholder);
        let secrets: Vec<&Step> = first.iter().filter(|s| s.phase == Phase::Secrets).collect();
        say(
            Phase::Secrets,
            &format!(
                "{} files, {} secrets",
                self.cfg.files.len(),
                self.cfg.secrets.len()
            ),
        );
        for s in secrets {
            self.execute(s).await?;
        }
        let steps = plan::plan(&self.cfg, &self.observed()?);
        let mut phase = Phase::Secrets;
        for s in steps.iter().filter(|s| s.phase != Phase::Secrets) {
            if s.phase != phase {
                phase = s.phase;
                say(phase, "start");
            }
            self.execute(s)
                .await
                .with_context(|| format!("{} step failed", s.phase.as_str()))?;
        }
        Ok(())
    }

    /// The whole bootstrap. On failure, FAILURE is signalled before the error returns.
    pub async fn bootstrap(&self) -> Result<()> {
        println!(
            "kube-aws node bootstrap: {} {} ({}, {}), Kubernetes {}",
            self.cfg.role.as_str(),
            self.me.node_name,
            self.me.instance_id,
            self.me.ip,
            self.cfg.kubernetes_version
        );
        let started = Instant::now();
        match self.steps().await {
            Ok(()) => {
                println!("==> done in {:.1}s", started.elapsed().as_secs_f64());
                Ok(())
            }
            Err(e) => {
                eprintln!("bootstrap failed: {e:#}");
                match self.signal(false).await {
                    Ok(()) => println!("==> signal: FAILURE sent"),
                    Err(se) => eprintln!("could not signal FAILURE: {se:#}"),
                }
                Err(e)
            }
        }
    }
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Reads the node config a bootstrap runs from.
pub fn read_config(path: &Path) -> Result<NodeConfig> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {}\n  fix: the user-data stub writes it; pass --config with the node config of this role",
            path.display()
        )
    })?;
    NodeConfig::parse(&text, &path.display().to_string())
}
