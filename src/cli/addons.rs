use super::{Cli, Result, cluster_yaml};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum AddonsCommand {
    /// Print the add-ons' Kubernetes manifests (Service Catalog with v1 CRDs and webhooks,
    /// the AWS service broker and its ClusterServiceBroker) as one YAML stream. No
    /// Secrets: `addons apply` and the controllers create those from credentials.
    #[command(after_help = "Examples:
  kube-aws addons render > addons.yaml
  kube-aws addons render | kubectl diff --server-side -f -   # against the cluster")]
    Render(RenderArgs),
    /// Apply the add-ons to a running cluster by server-side apply (field manager
    /// `kube-aws`): namespaces and CRDs, a wait until the CRDs are established, the
    /// Secrets (TLS keys and the broker's token, from credentials/), then the rest.
    /// Idempotent: a second run reports every object unchanged. The controllers apply
    /// the same objects at boot and whenever `update` changes them, so this is for
    /// clusters you reach first, or to check what a change would do (`--dry-run`).
    #[command(after_help = "Examples:
  kube-aws addons apply             # with ./kubeconfig from `render credentials`
  kube-aws addons apply --kubeconfig ~/.kube/config --context prod
  kube-aws addons apply --dry-run   # the API server checks; nothing is stored")]
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct RenderArgs {}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Kubeconfig with admin rights [default: kubeconfig in the cluster directory]
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use [default: its current context]
    #[arg(long)]
    pub context: Option<String>,
    /// Server-side dry run: show what would be created or changed, store nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for the CRDs to be established and the catalog's webhook to serve
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

fn enabled(cli: &Cli) -> Result<crate::config::Config> {
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    if !cfg.addons.service_catalog.enabled && !cfg.addons.aws_service_broker.enabled {
        bail!(
            "no add-on is enabled in {}\n  fix: set addons.serviceCatalog.enabled (and addons.awsServiceBroker.enabled) to true",
            cluster_yaml(cli).display()
        );
    }
    Ok(cfg)
}

pub fn run(cli: &Cli, cmd: &AddonsCommand) -> Result {
    match cmd {
        AddonsCommand::Render(_) => {
            let cfg = enabled(cli)?;
            let ca = cli.dir.join(crate::pki::CREDENTIALS_DIR).join("ca.pem");
            let ca_pem = std::fs::read_to_string(&ca).with_context(|| {
                format!(
                    "reading {} (the webhooks' and the broker's caBundle)\n  fix: run `kube-aws render credentials` first",
                    ca.display()
                )
            })?;
            print!(
                "{}",
                crate::addons::to_yaml(&crate::addons::manifests(&cfg, &ca_pem))
            );
            Ok(())
        }
        AddonsCommand::Apply(a) => apply(cli, a),
    }
}

fn apply(cli: &Cli, a: &ApplyArgs) -> Result {
    let cfg = enabled(cli)?;
    let model = crate::model::Model::derive(&cfg);
    let creds = super::inputs::credentials(&cli.dir)?;
    let bundle = crate::addons::bundle(&cfg, &creds, &model.s3_prefix)?;
    let cdir = cli.dir.join(crate::pki::CREDENTIALS_DIR);
    let secrets = bundle.filled_secrets(|file| {
        let p = cdir.join(file);
        std::fs::read(&p).with_context(|| {
            format!(
                "reading {}\n  fix: run `kube-aws render credentials` first",
                p.display()
            )
        })
    })?;
    let kubeconfig = a
        .kubeconfig
        .clone()
        .unwrap_or_else(|| cli.dir.join(crate::pki::KUBECONFIG));
    let opts = crate::deploy::addons::ApplyOptions {
        dry_run: a.dry_run,
        timeout: Duration::from_secs(a.timeout),
    };
    let applied = super::up::runtime()?.block_on(async {
        let (client, url) =
            crate::deploy::addons::client(&kubeconfig, a.context.as_deref()).await?;
        println!(
            "applying the add-ons to {url}{}",
            if a.dry_run { " (dry run)" } else { "" }
        );
        crate::deploy::addons::apply(client, &url, &bundle, &secrets, &opts, |r| match r.note {
            Some(note) => println!("  {} {} ({note})", r.object, r.outcome),
            None => println!("  {} {}", r.object, r.outcome),
        })
        .await
    })?;
    let count = |o| applied.iter().filter(|r| r.outcome == o).count();
    use crate::deploy::addons::Outcome;
    println!(
        "{} objects: {} created, {} configured, {} unchanged{}",
        applied.len(),
        count(Outcome::Created),
        count(Outcome::Configured),
        count(Outcome::Unchanged),
        if a.dry_run {
            " (dry run: nothing stored)"
        } else {
            ""
        }
    );
    Ok(())
}
