//! The thin shell of the node agent: runs the steps `plan` returns. Everything it
//! touches is behind an override, so tests run this code for real: the filesystem root
//! (`--root`), the instance metadata endpoint (`--imds-endpoint`), AWS
//! (`AWS_ENDPOINT_URL`), host names (`--resolve`), and the commands (kubeadm, kubelet,
//! systemctl, apt-get, containerd, modprobe, …), found on PATH.
//!
//! Any failure signals FAILURE to CloudFormation at once, so the stack fails in seconds
//! rather than after its 20-minute CreationPolicy timeout.

use super::etcd as node_etcd;
use super::imds::Imds;
use crate::model::ids;
use crate::node::config::{NodeConfig, Role};
use crate::node::etcd;
use crate::node::kubeadm::Observed;
use crate::node::plan::{self, Action, LockDecision, Phase, Step};
use anyhow::{Context, Result, anyhow, bail};
use aws_config::SdkConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a node waits for what other stacks create at the same time (an etcd quorum,
/// the API endpoint's name): the etcd members boot one after another, several minutes
/// each. Inside the 30-minute signal timeout of the node's group.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(20 * 60);

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
            Role::Etcd => tags.get(ids::tag::ETCD_MEMBER).cloned().ok_or_else(|| {
                anyhow!(
                    "instance {instance_id} has no {} tag",
                    ids::tag::ETCD_MEMBER
                )
            })?,
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

    /// The cluster's etcd, as the API server reaches it: the lock is taken through the
    /// first member that answers, whichever it is.
    fn etcd_cluster(&self) -> Result<node_etcd::Cluster> {
        let k = self
            .cfg
            .kubernetes
            .as_ref()
            .ok_or_else(|| anyhow!("no kubernetes section"))?;
        Ok(node_etcd::Cluster {
            http: self.http(
                Some((
                    "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                    "/etc/kubernetes/pki/apiserver-etcd-client.key",
                )),
                Some("/etc/kubernetes/pki/etcd/ca.crt"),
            )?,
            endpoints: k.etcd_endpoints.clone(),
        })
    }

    /// What the lock decision needs beyond the lock: whether its owner still exists,
    /// and how many other registered controllers do.
    async fn lock_seen(
        &self,
        etcd: &node_etcd::Cluster,
        value: Option<&str>,
    ) -> Result<(Option<bool>, usize)> {
        let Some(v) = value else {
            return Ok((None, 0));
        };
        let (owner, _) = plan::lock_owner(v);
        if owner == self.me.instance_id {
            return Ok((None, 0));
        }
        let alive = crate::aws::node::instance_alive(&self.sdk, owner).await?;
        let mut serving = 0;
        if !alive {
            for key in etcd.keys(plan::CONTROLLERS_PREFIX).await? {
                let id = key.trim_start_matches(plan::CONTROLLERS_PREFIX);
                if id != self.me.instance_id
                    && crate::aws::node::instance_alive(&self.sdk, id).await?
                {
                    serving += 1;
                }
            }
        }
        Ok((Some(alive), serving))
    }

    /// The deadline of the node's own steps (the node config's readyTimeoutSeconds).
    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.cfg.ready_timeout_seconds)
    }

    /// Waits until the API endpoint's name resolves. Nodes boot while the control-plane
    /// stack creates the load balancer and its Route 53 record, and a name looked up
    /// before its record exists is cached as absent (RFC 2308) for up to the zone's SOA
    /// TTL, 900 s in Route 53 (Route 53 Developer Guide, "SOA and NS records"); so each
    /// miss flushes systemd-resolved's cache before the next try.
    async fn wait_resolvable(&self) -> Result<()> {
        let Some(k) = self.cfg.kubernetes.as_ref() else {
            return Ok(());
        };
        let endpoint = k.control_plane_endpoint.clone();
        let host = endpoint
            .rsplit_once(':')
            .map_or(endpoint.as_str(), |(h, _)| h);
        let deadline = Instant::now() + WAIT_FOR_OTHERS;
        let mut said: Option<Instant> = None;
        loop {
            if self.opts.resolve.iter().any(|(h, _)| h == host)
                || tokio::net::lookup_host(endpoint.as_str()).await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the API endpoint {host} did not resolve within {}s\n  fix: check the control-plane stack's load balancer and Route 53 record",
                    WAIT_FOR_OTHERS.as_secs()
                );
            }
            if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                say(Phase::Kubeadm, &format!("waiting for {host} to resolve"));
                said = Some(Instant::now());
            }
            // Best effort: an image without systemd-resolved has no negative cache to flush
            // (`resolvectl flush-caches`, resolvectl(1)).
            let _ = self.run(&argv(&["resolvectl", "flush-caches"]));
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }

    async fn control_plane(&self, key: &str, path: &str, init: &str, join: &str) -> Result<()> {
        // Waiting for etcd has its own deadline: the members boot one after another
        // while this controller boots too.
        let deadline = Instant::now() + WAIT_FOR_OTHERS;
        let etcd = self.etcd_cluster()?;
        let me = &self.me.instance_id;
        let register = format!("{}{me}", plan::CONTROLLERS_PREFIX);
        // The members are created together with the controllers: wait for one that
        // answers healthy (it has a leader, so the cluster has a quorum).
        let mut said: Option<Instant> = None;
        loop {
            let mut up = false;
            for ep in &etcd.endpoints {
                if node_etcd::healthy(&etcd.http, ep).await {
                    up = true;
                    break;
                }
            }
            if up {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "no etcd member of {} answered healthy within {}s",
                    etcd.endpoints.join(", "),
                    WAIT_FOR_OTHERS.as_secs()
                );
            }
            if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                say(Phase::Kubeadm, "waiting for an etcd quorum");
                said = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        self.wait_resolvable().await?;
        let deadline = self.deadline();
        loop {
            let (created, value) = etcd.lock(key, me).await?;
            let (owner_alive, serving) = self.lock_seen(&etcd, value.as_deref()).await?;
            let seen = plan::LockSeen {
                created,
                value: value.as_deref(),
                owner_alive,
                serving,
            };
            match plan::decide(&seen, me) {
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
                    etcd.put(key, &format!("{me}{}", plan::INITIALIZED)).await?;
                    etcd.put(&register, "").await?;
                    return Ok(());
                }
                LockDecision::Join => {
                    say(Phase::Kubeadm, "joining the control plane");
                    self.write(path, 0o600, join.as_bytes())?;
                    self.run(&argv(&["kubeadm", "join", "--config", path]))?;
                    etcd.put(&register, "").await?;
                    return Ok(());
                }
                LockDecision::TakeOver { from } => {
                    let (owner, _) = plan::lock_owner(&from);
                    if etcd.swap(key, &from, me).await? {
                        say(
                            Phase::Kubeadm,
                            &format!(
                                "{owner} holds the init lock but no longer exists: taken over"
                            ),
                        );
                    }
                    // Won or lost, the next pass reads the lock again.
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

    /// The HTTPS client of an etcd host's own calls to the cluster (etcd client cert).
    fn etcd_http(&self) -> Result<reqwest::Client> {
        self.http(
            Some((
                "/etc/kubernetes/pki/etcd/client.crt",
                "/etc/kubernetes/pki/etcd/client.key",
            )),
            Some("/etc/kubernetes/pki/etcd/ca.crt"),
        )
    }

    fn etcd_spec(&self) -> Result<&crate::node::config::EtcdMemberSpec> {
        self.cfg
            .etcd_member
            .as_ref()
            .ok_or_else(|| anyhow!("the etcd node config has no etcdMember section"))
    }

    fn tag(&self, k: &str) -> Result<&str> {
        self.me
            .tags
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("instance {} has no {k} tag", self.me.instance_id))
    }

    /// This member's identity in etcd and the client URLs of the others.
    fn etcd_me(&self) -> Result<(etcd::Me, Vec<String>)> {
        let spec = self.etcd_spec()?;
        let names = etcd::member_names(&spec.initial_cluster);
        let me = etcd::Me {
            name: self.me.node_name.clone(),
            peer_url: format!("https://{}.{}:2380", self.me.node_name, spec.zone),
            first: names.first() == Some(&self.me.node_name),
        };
        let others = names
            .iter()
            .filter(|n| **n != me.name)
            .map(|n| format!("https://{n}.{}:2379", spec.zone))
            .collect();
        Ok((me, others))
    }

    /// Local health, then every member's: a roll moves on only from a whole cluster.
    async fn wait_etcd(&self, url: &str) -> Result<()> {
        let http = self.etcd_http()?;
        let deadline = self.deadline();
        let base = url.trim_end_matches("/health").to_string();
        while !node_etcd::healthy(&http, &base).await {
            if Instant::now() > deadline {
                bail!(
                    "etcd at {url} was not healthy within {}s",
                    self.cfg.ready_timeout_seconds
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let local = node_etcd::Cluster {
            http,
            endpoints: vec![base],
        };
        let n = node_etcd::wait_all_healthy(&local, deadline).await?;
        say(Phase::Etcd, &format!("all {n} members healthy"));
        Ok(())
    }

    /// Attaches the member's own volume (waiting while the instance this one replaces
    /// still holds it) and points the member's DNS name at this instance.
    async fn claim_identity(&self) -> Result<()> {
        let volume = self.tag(ids::tag::ETCD_VOLUME)?.to_string();
        let zone_id = self.tag(ids::tag::ETCD_ZONE_ID)?.to_string();
        let deadline = self.deadline();
        loop {
            let (state, owner) = crate::aws::node::volume_attachment(&self.sdk, &volume).await?;
            match owner {
                Some(o) if o == self.me.instance_id => break,
                Some(o) => say(
                    Phase::Volume,
                    &format!(
                        "{volume} is still attached to {o} (the instance this one replaces); waiting"
                    ),
                ),
                None if state == "available" => {
                    crate::aws::node::attach_volume(
                        &self.sdk,
                        &volume,
                        &self.me.instance_id,
                        etcd::ATTACH_AS,
                    )
                    .await?;
                    say(
                        Phase::Volume,
                        &format!("attaching {volume} as {}", etcd::ATTACH_AS),
                    );
                }
                None => say(Phase::Volume, &format!("{volume} is {state}; waiting")),
            }
            if Instant::now() > deadline {
                bail!(
                    "the member's volume {volume} was not attached to this instance within {}s",
                    self.cfg.ready_timeout_seconds
                );
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let spec = self.etcd_spec()?;
        let dns = format!("{}.{}", self.me.node_name, spec.zone);
        crate::aws::node::claim_name(&self.sdk, &zone_id, &dns, &self.me.ip).await?;
        say(Phase::Volume, &format!("{dns} → {}", self.me.ip));
        Ok(())
    }

    /// Finds the member's volume by its EBS identity (never "the first free disk"),
    /// formats it once, mounts it, checks that it is mounted, and only then creates the
    /// directory the etcd pod needs (see `node::etcd::VOLUME_DIR`).
    async fn data_volume(&self, mount: &str, label: &str) -> Result<()> {
        let volume = self.tag(ids::tag::ETCD_VOLUME)?.to_string();
        let candidates = etcd::volume_devices(&volume, etcd::ATTACH_AS);
        let deadline = self.deadline();
        let dev = loop {
            if let Some(d) = candidates.iter().find(|d| self.path(d).exists()) {
                break d.clone();
            }
            if Instant::now() > deadline {
                bail!(
                    "{volume} did not appear as {} within {}s",
                    candidates.join(" or "),
                    self.cfg.ready_timeout_seconds
                );
            }
            say(Phase::Volume, &format!("waiting for {volume} to appear"));
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        // blkid exits 2 when the device has no filesystem: only then format it.
        let has_fs = self.run(&argv(&["blkid", &dev])).is_ok();
        if !has_fs {
            self.run(&argv(&["mkfs.ext4", "-q", "-L", label, &dev]))?;
        }
        let fstab = self.path("/etc/fstab");
        let current = std::fs::read_to_string(&fstab).unwrap_or_default();
        if !current
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(mount))
        {
            // nofail: a missing volume must not hold the boot in emergency mode; the
            // etcd pod's hostPath then refuses to start instead.
            let line = format!("LABEL={label} {mount} ext4 defaults,nofail 0 2\n");
            self.write("/etc/fstab", 0o644, format!("{current}{line}").as_bytes())?;
        }
        std::fs::create_dir_all(self.path(mount)).with_context(|| format!("creating {mount}"))?;
        self.run(&argv(&["mount", mount]))?;
        self.run(&argv(&["findmnt", "--mountpoint", mount]))
            .with_context(|| {
                format!("{dev} is not mounted at {mount}: etcd will not start on the root disk")
            })?;
        std::fs::create_dir_all(self.path(etcd::VOLUME_DIR))
            .with_context(|| format!("creating {}", etcd::VOLUME_DIR))?;
        say(
            Phase::Volume,
            &format!("{volume} ({dev}) mounted at {mount}"),
        );
        Ok(())
    }

    /// Resume, found, join or restore, then the static pod with the flags of that start.
    async fn etcd_member(&self, manifest: &str, image: &str) -> Result<()> {
        self.etcd_member_with(manifest, image, None).await
    }

    /// The member's start; with `restore`, etcd-0 restores that snapshot (its peers are
    /// stopped: `kube-aws etcd restore`) instead of looking for a cluster.
    async fn etcd_member_with(
        &self,
        manifest: &str,
        image: &str,
        restore: Option<&str>,
    ) -> Result<()> {
        let spec = self.etcd_spec()?.clone();
        let (me, others) = self.etcd_me()?;
        let has_data = self
            .path(&format!("{}/data/member", etcd::VOLUME_DIR))
            .exists();
        if restore.is_some() && (!me.first || has_data) {
            bail!(
                "only etcd-0, with its data moved aside (`kube-aws node etcd stop`), restores a snapshot"
            );
        }
        let snapshot = if let Some(r) = restore {
            Some(r.to_string())
        } else if me.first && !has_data {
            let prefix = format!("{}/{}/", self.cfg.prefix, etcd::SNAPSHOT_PREFIX);
            let keys = crate::aws::node::list_keys(&self.sdk, &self.cfg.bucket, &prefix).await?;
            etcd::latest_restorable(keys.iter().map(String::as_str))
        } else {
            None
        };
        // A peer whose name resolves nowhere has never started: no need to wait for it.
        let mut resolvable = false;
        for ep in &others {
            let host = ep
                .trim_start_matches("https://")
                .split(':')
                .next()
                .unwrap_or_default();
            if self.opts.resolve.iter().any(|(h, _)| h == host)
                || tokio::net::lookup_host((host, 2379)).await.is_ok()
            {
                resolvable = true;
            }
        }
        let grace = if resolvable && restore.is_none() {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        };
        let peers = node_etcd::Cluster {
            http: self.etcd_http()?,
            // A restore founds a new cluster: its stopped peers are not asked.
            endpoints: if restore.is_some() {
                Vec::new()
            } else {
                others
            },
        };
        let (start, cluster, state) =
            node_etcd::prepare(&peers, &me, has_data, snapshot, grace, self.deadline()).await?;
        if let etcd::Start::Restore { snapshot } = &start {
            let body = crate::aws::node::get_object(&self.sdk, &self.cfg.bucket, snapshot).await?;
            let file = format!("{}/restore.db", etcd::VOLUME_DIR);
            self.write(&file, 0o600, &body)?;
            let mut cmd = argv(&[
                "ctr",
                "-n",
                "k8s.io",
                "run",
                "--rm",
                "--mount",
                &format!(
                    "type=bind,src={},dst={},options=rbind:rw",
                    etcd::VOLUME_DIR,
                    etcd::CONTAINER_DIR
                ),
                image,
                "kube-aws-etcd-restore",
                // etcdctl: the Kubernetes etcd image is not known to ship etcdutl, and
                // 3.5's etcdctl still restores (deprecated there, moved to etcdutl in
                // 3.6), with the same flags.
                "etcdctl",
            ]);
            cmd.extend(etcd::restore_args(
                &me,
                etcd::RESTORE_FILE,
                etcd::DATA_DIR,
                &spec.cluster_token,
            ));
            self.run_retrying(&argv(&["ctr", "-n", "k8s.io", "images", "pull", image]))
                .await?;
            self.run(&cmd)?;
            std::fs::remove_file(self.path(&file)).with_context(|| format!("removing {file}"))?;
            say(Phase::Etcd, &format!("restored {snapshot}"));
        }
        let urls = etcd::Urls {
            listen_client: "https://0.0.0.0:2379".into(),
            advertise_client: format!("https://{}.{}:2379", me.name, spec.zone),
            listen_peer: "https://0.0.0.0:2380".into(),
            pki: plan::ETCD_PKI.into(),
        };
        let args = etcd::member_args(
            &me,
            &urls,
            etcd::DATA_DIR,
            &spec.cluster_token,
            (&cluster, state),
        );
        self.write(
            manifest,
            0o644,
            etcd::pod_manifest(image, args, plan::ETCD_PKI).as_bytes(),
        )
    }

    /// `kube-aws node etcd stop`: the static pod's manifest out of kubelet's directory
    /// (kubelet then stops etcd), and the data directory moved aside, never deleted.
    pub async fn etcd_stop(&self) -> Result<()> {
        let kept = "/etc/kubernetes/kube-aws/etcd.yaml.stopped";
        if self.path(plan::ETCD_MANIFEST).exists() {
            std::fs::create_dir_all(self.path("/etc/kubernetes/kube-aws"))
                .context("creating /etc/kubernetes/kube-aws")?;
            std::fs::rename(self.path(plan::ETCD_MANIFEST), self.path(kept))
                .with_context(|| format!("moving {} aside", plan::ETCD_MANIFEST))?;
        }
        let http = self.etcd_http()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while node_etcd::healthy(&http, "https://127.0.0.1:2379").await {
            if Instant::now() > deadline {
                bail!("etcd still answers 120 s after its manifest was removed");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let data = format!("{}/data", etcd::VOLUME_DIR);
        if self.path(&data).exists() {
            let stamp = chrono_stamp();
            let aside = format!("{data}.before-restore-{stamp}");
            std::fs::rename(self.path(&data), self.path(&aside))
                .with_context(|| format!("moving {data} to {aside}"))?;
            say(Phase::Etcd, &format!("stopped; data kept at {aside}"));
        } else {
            say(Phase::Etcd, "stopped; no data directory");
        }
        Ok(())
    }

    /// `kube-aws node etcd restore|start`: the member's start (restore on etcd-0, join on
    /// the others), kubelet starts the pod, and the whole cluster is healthy.
    pub async fn etcd_start(&self, restore: Option<&str>) -> Result<()> {
        let image = self.etcd_spec()?.image.clone();
        self.etcd_member_with(plan::ETCD_MANIFEST, &image, restore)
            .await?;
        self.wait_etcd("https://127.0.0.1:2379/health").await
    }

    async fn signal(&self, success: bool) -> Result<()> {
        let tag = |k: &str| {
            self.me
                .tags
                .get(k)
                .ok_or_else(|| anyhow!("instance {} has no {k} tag", self.me.instance_id))
        };
        let (stack, resource) = (
            tag(ids::tag::SIGNAL_STACK)?,
            tag(ids::tag::SIGNAL_RESOURCE)?,
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
            Action::ClaimIdentity => self.claim_identity().await,
            Action::DataVolume { mount, label } => self.data_volume(mount, label).await,
            Action::EtcdMember { manifest, image } => self.etcd_member(manifest, image).await,
            Action::ControlPlane {
                lock_key,
                path,
                init,
                join,
            } => self.control_plane(lock_key, path, init, join).await,
            Action::Join { path, content } => {
                self.wait_resolvable().await?;
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

/// Seconds since the epoch: a unique suffix for data moved aside.
fn chrono_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
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
