//! `kube-aws node …`: the node agent, and `node plan` for reviews.

use super::{Cli, Result};
use crate::deploy::node::agent::{self, Agent, Options};
use crate::node::config::{NodeConfig, Role};
use crate::node::plan::{self, Action};
use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Bootstrap this node from its node config (run by cloud-init on every node).
    #[command(after_help = "Examples:
  kube-aws node bootstrap                      # as cloud-init runs it
  kube-aws node bootstrap --root /tmp/node --imds-endpoint http://127.0.0.1:8111

Steps, in order: secrets (S3 + KMS with the instance role), runtime (containerd and
the pinned Kubernetes packages), kubeadm (init or join), the CNI and the cluster's own
objects (controllers), Ready in the API, then CloudFormation SUCCESS. Any failure sends
FAILURE at once and exits 1.")]
    Bootstrap(NodeArgs),
    /// Print the steps a node of a role would take and every file it would write,
    /// from the rendered cluster directory, with no AWS access.
    #[command(after_help = "Examples:
  kube-aws node plan --role controller
  kube-aws node plan --role worker --pool general --output json | jq '.steps[].phase'

Secrets are shown by the S3 key of their ciphertext; the bootstrap token as a placeholder.")]
    Plan(PlanArgs),
    /// Approve kubelet serving certificates of this cluster's own instances (controllers).
    #[command(after_help = "Example:\n  kube-aws node approve-csrs --once")]
    ApproveCsrs(LoopArgs),
    /// Drain this node on a spot interruption notice or before Auto Scaling terminates
    /// it, then complete the lifecycle action (workers).
    #[command(
        after_help = "Example:\n  kube-aws node watch            # as kube-aws-node-watch.service runs it"
    )]
    Watch(LoopArgs),
    /// Apply the add-ons bundle the add-ons stack points at (controllers; run by
    /// kube-aws-addons.timer).
    #[command(
        after_help = "Example:\n  kube-aws node addons            # as kube-aws-addons.service runs it"
    )]
    Addons(TimeoutArgs),
    /// Create a fresh bootstrap token before the published one nears its expiry, and
    /// publish it KMS-encrypted for joining nodes (controllers; run by kube-aws-token.timer).
    #[command(
        after_help = "Example:\n  kube-aws node rotate-token      # as kube-aws-token.service runs it"
    )]
    RotateToken(TimeoutArgs),
    /// etcd members: the steps of `kube-aws etcd restore` (run through SSM).
    #[command(subcommand)]
    Etcd(NodeEtcdCommand),
    /// Cordon and drain this node now.
    #[command(after_help = "Example:\n  kube-aws node drain --timeout 300")]
    Drain(DrainArgs),
}

#[derive(Debug, Subcommand)]
pub enum NodeEtcdCommand {
    /// Stop etcd (its manifest out of kubelet's directory) and move its data aside.
    #[command(after_help = "Example:\n  kube-aws node etcd stop")]
    Stop(NodeArgs),
    /// etcd-0: restore a snapshot into a cluster of one, then wait until healthy.
    #[command(
        after_help = "Example:\n  kube-aws node etcd restore --snapshot clusters/prod/etcd-snapshots/20261203T000000Z.db"
    )]
    Restore(NodeRestoreArgs),
    /// Start etcd as at boot (join the running cluster), then wait until all are healthy.
    #[command(after_help = "Example:\n  kube-aws node etcd start")]
    Start(NodeArgs),
}

#[derive(Debug, Args)]
pub struct NodeRestoreArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The snapshot's S3 key.
    #[arg(long, value_name = "KEY")]
    pub snapshot: String,
}

#[derive(Debug, Args, Clone)]
pub struct NodeArgs {
    /// The node config the user-data stub fetched.
    #[arg(long, default_value = plan::NODE_CONFIG_PATH, value_name = "FILE")]
    pub config: PathBuf,
    /// Filesystem root every node path is under (tests, chroots).
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// The instance metadata service.
    #[arg(long, default_value = crate::deploy::node::imds::DEFAULT_ENDPOINT, env = "KUBE_AWS_IMDS_ENDPOINT", value_name = "URL")]
    pub imds_endpoint: String,
    /// Resolve HOST to ADDR in the agent's own HTTPS clients (like curl --resolve; the
    /// port is the URL's, so ADDR's is ignored).
    #[arg(long, value_name = "HOST=ADDR:PORT")]
    pub resolve: Vec<String>,
    /// Seconds to wait for the init lock, Ready or etcd health (default: the node
    /// config's, 600).
    #[arg(long, value_name = "SECONDS")]
    pub ready_timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct LoopArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// One pass, then exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct TimeoutArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Seconds to wait for the API server, the CRDs and the webhook.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Seconds to wait for evictions.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[arg(long, value_enum)]
    pub role: Role,
    /// The node pool (workers).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

fn options(a: &NodeArgs) -> Result<Options> {
    let mut resolve = Vec::new();
    for r in &a.resolve {
        let (host, addr) = r
            .split_once('=')
            .ok_or_else(|| anyhow!("--resolve {r}: expected HOST=ADDR:PORT"))?;
        let addr = addr.parse().map_err(|e| {
            anyhow!("--resolve {r}: {e}\n  fix: give an address and port, e.g. 127.0.0.1:2379")
        })?;
        resolve.push((host.to_string(), addr));
    }
    Ok(Options {
        root: a.root.clone(),
        imds: a.imds_endpoint.clone(),
        resolve,
    })
}

async fn agent(a: &NodeArgs) -> Result<Agent> {
    let mut cfg =
        agent::read_config(&a.root.join(a.config.strip_prefix("/").unwrap_or(&a.config)))?;
    if let Some(t) = a.ready_timeout {
        cfg.ready_timeout_seconds = t;
    }
    Agent::new(cfg, options(a)?).await
}

pub fn run(cli: &Cli, cmd: &NodeCommand) -> Result {
    match cmd {
        NodeCommand::Plan(p) => plan_cmd(cli, p),
        NodeCommand::Etcd(c) => super::up::runtime()?.block_on(async {
            match c {
                NodeEtcdCommand::Stop(a) => agent(a).await?.etcd_stop().await,
                NodeEtcdCommand::Restore(r) => {
                    agent(&r.node).await?.etcd_start(Some(&r.snapshot)).await
                }
                NodeEtcdCommand::Start(a) => agent(a).await?.etcd_start(None).await,
            }
        }),
        NodeCommand::Bootstrap(a) => super::up::runtime()?.block_on(async {
            let agent = agent(a).await.context("the node agent could not start")?;
            agent.bootstrap().await
        }),
        NodeCommand::ApproveCsrs(l) => super::up::runtime()?.block_on(async {
            let agent = agent(&l.node).await?;
            if l.once {
                let (ok, no) = agent.approve_pending(plan::ADMIN_KUBECONFIG).await?;
                println!("{ok} approved, {no} refused");
                Ok(())
            } else {
                agent.approve_loop(Duration::from_secs(10)).await
            }
        }),
        NodeCommand::Watch(l) => super::up::runtime()?.block_on(async {
            let agent = agent(&l.node).await?;
            match agent.watch(Duration::from_secs(5), l.once).await? {
                Some(t) => println!("drained after {t:?}"),
                None => println!("no interruption notice and no termination"),
            }
            Ok(())
        }),
        NodeCommand::Addons(t) => super::up::runtime()?.block_on(async {
            let agent = agent(&t.node).await?;
            let said = agent
                .apply_addons_bundle(Duration::from_secs(t.timeout))
                .await?;
            println!("{said}");
            Ok(())
        }),
        NodeCommand::RotateToken(t) => super::up::runtime()?.block_on(async {
            let agent = agent(&t.node).await?;
            println!("{}", agent.rotate_token().await?);
            Ok(())
        }),
        NodeCommand::Drain(d) => super::up::runtime()?.block_on(async {
            let agent = agent(&d.node).await?;
            agent
                .drain(plan::KUBELET_KUBECONFIG, Duration::from_secs(d.timeout))
                .await
                .map(|_| ())
        }),
    }
}

/// The node config `render` produced for the role.
pub fn rendered_config(
    assets: &crate::render::AssetSet,
    role: Role,
    pool: Option<&str>,
) -> Result<NodeConfig> {
    let name = match (role, pool) {
        (Role::Worker, Some(p)) => format!("nodeconfig/worker-{p}"),
        (Role::Worker, None) => bail!("--role worker needs --pool NAME"),
        (r, _) => format!("nodeconfig/{}", r.as_str()),
    };
    let a = assets.assets.get(&name).ok_or_else(|| {
        let pools: Vec<&str> = assets
            .assets
            .keys()
            .filter_map(|k| k.strip_prefix("nodeconfig/worker-"))
            .collect();
        anyhow!(
            "no node config {name}\n  fix: the pools of cluster.yaml are: {}",
            pools.join(", ")
        )
    })?;
    NodeConfig::parse(&String::from_utf8_lossy(&a.body), &name)
}

fn plan_cmd(cli: &Cli, p: &PlanArgs) -> Result {
    let (_, _, assets) = super::up::load(cli)?;
    let cfg = rendered_config(&assets, p.role, p.pool.as_deref())?;
    let ca = cfg
        .kubernetes
        .as_ref()
        .map(|k| plan::ca_cert_hash(&k.cluster_ca))
        .transpose()?
        .unwrap_or_default();
    let obs = crate::node::kubeadm::Observed {
        node_name: match p.role {
            Role::Etcd => "etcd-0".into(),
            _ => "ip-10-0-1-23.<region>.compute.internal".into(),
        },
        ip: "10.0.1.23".into(),
        bootstrap_token: "<credentials/kubelet-bootstrap-token>".into(),
        ca_cert_hash: ca,
        max_pods: cfg
            .kubernetes
            .as_ref()
            .and_then(|k| k.vpc_cni.as_ref())
            .map(|_| 17),
    };
    let steps = plan::plan(&cfg, &obs);
    if p.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "role": cfg.role, "pool": cfg.pool, "observed": {
                    "nodeName": obs.node_name, "ip": obs.ip}, "steps": steps}))?
        );
        return Ok(());
    }
    println!(
        "# kube-aws node plan: {}{} of {} (Kubernetes {}), as on node {} ({})",
        cfg.role.as_str(),
        cfg.pool
            .as_deref()
            .map(|p| format!(" of pool {p}"))
            .unwrap_or_default(),
        cfg.cluster,
        cfg.kubernetes_version,
        obs.node_name,
        obs.ip
    );
    for (i, s) in steps.iter().enumerate() {
        let n = i + 1;
        let phase = s.phase.as_str();
        match &s.action {
            Action::Write {
                path,
                mode,
                content,
            } => {
                println!(
                    "{n:>3}. [{phase}] write {path} ({mode:o}, {} bytes)",
                    content.len()
                );
                if !content.contains("-----BEGIN") {
                    for l in content.lines() {
                        println!("       | {l}");
                    }
                }
            }
            Action::Secret { name, key, path } => {
                println!(
                    "{n:>3}. [{phase}] secret {path} (0600) ← KMS-decrypt s3://{}/{key} (context file={name})",
                    cfg.bucket
                )
            }
            Action::Run { argv } => println!("{n:>3}. [{phase}] run {}", argv.join(" ")),
            Action::Fetch {
                by_arch,
                path,
                mode,
            } => {
                println!(
                    "{n:>3}. [{phase}] fetch {path} ({mode:o}), the node's architecture's of:"
                );
                for (arch, a) in by_arch {
                    println!("       {arch}: {} {} sha256 {}", a.url, a.version, a.sha256);
                }
            }
            Action::ClaimIdentity => println!(
                "{n:>3}. [{phase}] attach the member's EBS volume (tag kube-aws:etcd-volume), waiting while the instance it replaces holds it; point {}.<zone> at this instance (Route 53 UPSERT)",
                obs.node_name
            ),
            Action::DataVolume { mount, label } => println!(
                "{n:>3}. [{phase}] data volume: that volume by its EBS identity (/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_<id>), formatted ext4 ({label}) if blank, mounted at {mount}; {} created only once mounted",
                crate::node::etcd::VOLUME_DIR
            ),
            Action::EtcdMember { manifest, image } => println!(
                "{n:>3}. [{phase}] etcd member: resume from its data; else join the running cluster (member remove of its stale entry, member add, --initial-cluster-state=existing); else, for the first member, restore the newest snapshot or found a cluster of one. Then write {manifest} ({image})"
            ),
            Action::ControlPlane {
                lock_key,
                path,
                init,
                join,
            } => {
                println!(
                    "{n:>3}. [{phase}] take the init lock {lock_key} in etcd; the holder runs `kubeadm init --config {path}` with:"
                );
                for l in init.lines() {
                    println!("       | {l}");
                }
                println!("     the others run `kubeadm join --config {path}` with:");
                for l in join.lines() {
                    println!("       | {l}");
                }
            }
            Action::Join { path, content } => {
                println!("{n:>3}. [{phase}] run kubeadm join --config {path}, with:");
                for l in content.lines() {
                    println!("       | {l}");
                }
            }
            Action::ApplyAddons => {
                let add = cfg
                    .kubernetes
                    .as_ref()
                    .and_then(|k| k.cluster_addons.as_ref());
                if let Some(a) = add {
                    println!(
                        "{n:>3}. [{phase}] fetch {} {} from {} (sha256 {}), then apply it and {} objects server-side:",
                        a.cni.name,
                        a.cni.version,
                        a.cni.url,
                        a.cni.sha256,
                        a.objects.len()
                    );
                    for o in &a.objects {
                        println!("       - {}", crate::addons::describe(o));
                    }
                }
            }
            Action::WaitReady { kubeconfig, node } => {
                println!("{n:>3}. [{phase}] wait until node {node} is Ready (through {kubeconfig})")
            }
            Action::WaitEtcd { url } => println!("{n:>3}. [{phase}] wait until {url} is healthy"),
            Action::Signal => println!("{n:>3}. [{phase}] CloudFormation SignalResource SUCCESS"),
        }
    }
    Ok(())
}
