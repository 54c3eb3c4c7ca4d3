//! Command-line interface: argument types (clap derive) and dispatch. One thin file per
//! command; the work happens in the library modules.

mod addons;
mod ami;
mod broker;
mod completion;
mod destroy;
mod diff;
mod etcd;
mod init;
pub mod inputs;
mod node;
mod render;
mod schema;
mod show;
mod status;
mod up;
mod update;
mod validate;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Workflow:
  kube-aws init --cluster-name prod --region us-west-2 --availability-zone us-west-2a \\
      --external-dns-name k8s.example.com --hosted-zone-id Z1D633PJN98FT9 \\
      --kms-key-arn arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab \\
      --s3-uri s3://my-bucket/clusters
  kube-aws validate
  kube-aws render credentials --generate-ca
  kube-aws render stack
  kube-aws validate
  kube-aws up
  kube-aws status
  kube-aws diff                 # after editing cluster.yaml: review the plan (exit 2 = changes)
  kube-aws update               # apply it
  kube-aws show certificates
  kube-aws --dir clusters/prod validate";

#[derive(Debug, Parser)]
#[command(
    name = "kube-aws",
    version,
    about = "Provision Kubernetes clusters on AWS from a reviewed cluster.yaml",
    long_about = "kube-aws turns a cluster.yaml into nested CloudFormation stacks (network, etcd, \
control plane, one per node pool) with KMS-encrypted TLS assets uploaded through S3.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Cluster directory holding cluster.yaml and credentials/.
    #[arg(
        long,
        global = true,
        default_value = ".",
        value_name = "DIR",
        env = "KUBE_AWS_DIR"
    )]
    pub dir: PathBuf,
    /// Print more detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// The kube-aws binary nodes of linux/amd64 run as their agent (default: this
    /// binary, when it is a linux/amd64 one).
    #[arg(long, global = true, value_name = "PATH", env = "KUBE_AWS_NODE_BINARY")]
    pub node_binary: Option<PathBuf>,
    /// The kube-aws binary for linux/arm64 nodes (Graviton instance types).
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "KUBE_AWS_NODE_BINARY_ARM64"
    )]
    pub node_binary_arm64: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a documented cluster.yaml, its JSON Schema and a .gitignore.
    Init(init::InitArgs),
    /// Check cluster.yaml and report every problem with its field and line.
    Validate(validate::ValidateArgs),
    /// Render assets into the cluster directory.
    #[command(subcommand)]
    Render(render::RenderCommand),
    /// Create the cluster: encrypt secrets, upload assets, create the stacks, watch.
    #[command(visible_alias = "apply")]
    Up(up::UpArgs),
    /// etcd recovery: list the snapshots, restore one.
    #[command(subcommand)]
    Etcd(etcd::EtcdCommand),
    /// Show what `update` would change: diffs per stack and cloud-config, then the plan.
    /// Exits 0 with no change, 2 with changes.
    Diff(diff::DiffArgs),
    /// Apply cluster.yaml to a running cluster: upload changed assets, update the stacks.
    Update(update::UpdateArgs),
    /// Show the root and nested stacks with their status, last event and key outputs.
    Status(status::StatusArgs),
    /// Delete the cluster's stacks and uploaded assets, then list leftovers.
    Destroy(destroy::DestroyArgs),
    /// Inspect rendered assets.
    #[command(subcommand)]
    Show(show::ShowCommand),
    /// The cluster add-ons: Service Catalog and AWS service broker manifests.
    #[command(subcommand)]
    Addons(addons::AddonsCommand),
    /// The AWS service broker (Open Service Broker API backed by CloudFormation).
    #[command(subcommand)]
    Broker(broker::BrokerCommand),
    /// The node agent: what runs on every node (bootstrap, plan, drain, CSR approval).
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Print the JSON Schema of cluster.yaml.
    #[command(after_help = "Example:\n  kube-aws schema > cluster.schema.json")]
    Schema,
    /// Print the version and the supported Kubernetes versions.
    Version,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  kube-aws completion bash > /etc/bash_completion.d/kube-aws\n  \
kube-aws completion zsh > \"${fpath[1]}/_kube-aws\"\n  kube-aws completion fish > ~/.config/fish/completions/kube-aws.fish"
    )]
    Completion(completion::CompletionArgs),
}

/// A failure the user can act on: the message says what and how to fix it.
pub type Result<T = ()> = anyhow::Result<T>;

pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Diff(a) => {
            return match diff::run(&cli, a) {
                Ok(false) => ExitCode::SUCCESS,
                Ok(true) => ExitCode::from(2),
                Err(e) => report(e),
            };
        }
        Command::Update(a) => update::run(&cli, a),
        Command::Broker(c) => broker::run(c),
        Command::Node(c) => node::run(&cli, c),
        Command::Addons(c) => addons::run(&cli, c),
        Command::Init(args) => init::run(&cli, args),
        Command::Validate(args) => validate::run(&cli, args),
        Command::Render(cmd) => render::run(&cli, cmd),
        Command::Show(cmd) => show::run(&cli, cmd),
        Command::Up(a) => up::run(&cli, a),
        Command::Status(a) => status::run(&cli, a),
        Command::Destroy(a) => destroy::run(&cli, a),
        Command::Etcd(c) => etcd::run(&cli, c),
        Command::Schema => schema::run(),
        Command::Version => {
            println!("kube-aws {}", env!("CARGO_PKG_VERSION"));
            println!(
                "Kubernetes: {} (default {})",
                crate::config::defaults::SUPPORTED_KUBERNETES_MINORS.join(", "),
                crate::config::defaults::kubernetes_version()
            );
            Ok(())
        }
        Command::Completion(args) => completion::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

/// Prints an error and gives its exit code: 130 when the user detached, else 1.
fn report(e: anyhow::Error) -> ExitCode {
    if e.downcast_ref::<crate::deploy::Detached>().is_some() {
        eprintln!("{e}");
        return ExitCode::from(130);
    }
    eprintln!("error: {}", e.to_string().trim_end());
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    ExitCode::FAILURE
}

/// Path of cluster.yaml in the cluster directory.
pub fn cluster_yaml(cli: &Cli) -> PathBuf {
    cli.dir.join("cluster.yaml")
}
