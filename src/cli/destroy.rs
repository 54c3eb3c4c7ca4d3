use super::{Cli, Result, cluster_yaml};
use crate::deploy;
use crate::model::Model;
use anyhow::bail;
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws destroy                # asks for the cluster name first
  kube-aws destroy --force        # no question (CI)
  kube-aws destroy --shared-prefix   # another cluster lives under this one's s3URI: delete only ours

Deletes the root stack (and so every nested stack) and the S3 objects this cluster wrote
(listed in <prefix>/kube-aws-manifest.json; other objects under the prefix stay); etcd
snapshots are kept unless --purge-snapshots. Refuses, before deleting anything, while the
prefix also holds another cluster (one whose s3URI lies inside this one's). Then lists load balancers and security groups that
Kubernetes created for the cluster, which CloudFormation cannot delete, with the command
to remove each.")]
pub struct DestroyArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub force: bool,
    /// Also delete the etcd snapshots in S3.
    #[arg(long)]
    pub purge_snapshots: bool,
    /// Go on although another cluster's objects lie under this cluster's prefix (only
    /// this cluster's own keys are deleted either way).
    #[arg(long)]
    pub shared_prefix: bool,
}

pub fn run(cli: &Cli, a: &DestroyArgs) -> Result {
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    if !a.force {
        if !std::io::stdin().is_terminal() {
            bail!(
                "destroy needs confirmation and there is no terminal to ask on\n  fix: pass --force"
            );
        }
        print!(
            "This deletes cluster {} in {} and all its stacks. Type the cluster name to go on: ",
            cfg.cluster_name, cfg.region
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != cfg.cluster_name {
            bail!("not confirmed; nothing was deleted");
        }
    }
    let model = Model::derive(&cfg);
    let left = super::up::runtime()?.block_on(async {
        let sdk = crate::aws::sdk_config(&cfg.region, None).await;
        deploy::destroy(&sdk, &cfg, &model, a.purge_snapshots, a.shared_prefix).await
    })?;
    if left.is_empty() {
        println!(
            "No load balancers or security groups tagged for {} remain.",
            cfg.cluster_name
        );
    } else {
        println!(
            "Left over, created by Kubernetes for {} (delete them to stop paying):",
            cfg.cluster_name
        );
        for l in left {
            println!("  {l}");
        }
    }
    Ok(())
}
