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

Running `up` again on a complete, unchanged cluster says it is up to date and uploads
nothing. Ctrl-C stops watching only; `kube-aws status --watch` re-attaches.")]
pub struct UpArgs {
    /// Delete a stack left in ROLLBACK_COMPLETE by a failed creation, then create it again.
    #[arg(long)]
    pub recreate: bool,
    /// Write the rendered assets to DIR and stop, without touching AWS.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
}

/// Loads cluster.yaml and renders it from the directory's templates and credentials.
pub fn load(cli: &Cli) -> Result<(crate::config::Config, Model, crate::render::AssetSet)> {
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    let model = Model::derive(&cfg);
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
    let (cfg, model, assets) = load(cli)?;
    if let Some(dir) = &a.export {
        super::render::export(&assets, &model, dir)?;
        return Ok(());
    }
    runtime()?.block_on(async {
        let sdk = crate::aws::sdk_config(&cfg.region, None).await;
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
