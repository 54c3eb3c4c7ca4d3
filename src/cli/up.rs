use super::{Cli, Result, cluster_yaml};
use crate::deploy::{self, UpOptions};
use crate::model::Model;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws up                     # encrypt secrets, upload assets, create the stacks, watch
  kube-aws up --recreate          # a stack left in ROLLBACK_COMPLETE: delete it, create again
  kube-aws up --export out/       # write the rendered assets and stop, no AWS access
  kube-aws up --refresh-ami       # creating again after destroy: pin the newest image, not the old one

Creating a cluster pins the newest Ubuntu LTS image in ami.yaml (unless cluster.yaml sets
amiId); commit it with cluster.yaml. `kube-aws update --refresh-ami` moves to a newer one.
Running `up` again on a complete, unchanged cluster says it is up to date and uploads
nothing. Ctrl-C stops watching only; `kube-aws status --watch` re-attaches.")]
pub struct UpArgs {
    /// Delete a stack left in ROLLBACK_COMPLETE by a failed creation, then create it again.
    #[arg(long)]
    pub recreate: bool,
    /// Write the rendered assets to DIR and stop, without touching AWS.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Pin the newest Ubuntu image in ami.yaml even though one is pinned (for a cluster
    /// that is created again; a running one refreshes with `update --refresh-ami`).
    #[arg(long, conflicts_with = "export")]
    pub refresh_ami: bool,
}

/// Loads cluster.yaml and renders it from the directory's templates and credentials.
pub fn load(cli: &Cli) -> Result<(crate::config::Config, Model, crate::render::AssetSet)> {
    load_pinned(cli, None)
}

/// `load` with the AMI of `pin` instead of the one in ami.yaml (a refresh not yet written).
pub fn load_pinned(
    cli: &Cli,
    pin: Option<&crate::config::ami::AmiPin>,
) -> Result<(crate::config::Config, Model, crate::render::AssetSet)> {
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    let mut model = Model::derive(&cfg);
    model.ami_pin = match pin {
        Some(p) => Some(p.image_id.clone()),
        None => super::ami::read_pin(&cli.dir, &cfg)?,
    };
    let templates = super::inputs::templates(&cli.dir)?;
    let creds = super::inputs::credentials(&cli.dir)?;
    let binaries = super::inputs::node_binaries(cli)?;
    let assets = crate::render::render(&cfg, &model, &templates, &creds, &binaries)?;
    Ok((cfg, model, assets))
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

pub fn run(cli: &Cli, a: &UpArgs) -> Result {
    if let Some(dir) = &a.export {
        let (_, model, assets) = load(cli)?;
        super::render::export(&assets, &model, dir)?;
        return Ok(());
    }
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    runtime()?.block_on(async {
        let sdk = crate::aws::sdk_config(&cfg.region, None).await;
        // The image is resolved once, when the cluster is created; a running cluster
        // keeps what it has until `update --refresh-ami` (config::ami says why).
        let exists = deploy::exists(&sdk, &cfg.cluster_name).await?;
        if exists && a.refresh_ami {
            anyhow::bail!(
                "stack {} exists: `up` creates clusters and never changes a running one\n  fix: `kube-aws diff --refresh-ami`, then `kube-aws update --refresh-ami`",
                cfg.cluster_name
            );
        }
        if !exists
            && let Some(pin) = super::ami::to_pin(&sdk, &cfg, &cli.dir, a.refresh_ami).await?
        {
            super::ami::write(&cli.dir, &pin)?;
        }
        let (cfg, model, assets) = load(cli)?;
        deploy::up(
            &sdk,
            &cfg,
            &model,
            &assets,
            &cli.dir,
            &UpOptions {
                recreate: a.recreate,
            },
        )
        .await
    })
}
