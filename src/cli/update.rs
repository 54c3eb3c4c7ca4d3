use super::{Cli, Result};
use crate::deploy::update as upd;
use anyhow::bail;
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws diff && kube-aws update              # review, then apply (asks first)
  kube-aws update --targets general --yes       # roll only node pool `general`
  kube-aws update --targets control-plane,etcd
  kube-aws update --refresh-ami                 # pin the newest Ubuntu image: every node rolls
  kube-aws update --continue-rollback           # recover UPDATE_ROLLBACK_FAILED
  kube-aws update --continue-rollback --skip NodePoolGeneral.WorkerGroupUsWest2a

Only changed assets are uploaded (keys are content hashes). With --targets, every other
nested stack keeps its deployed template, even if cluster.yaml changed it.")]
pub struct UpdateArgs {
    /// Update only these stacks: network, etcd, control-plane, node-pool/<pool> or a pool name.
    #[arg(long, value_delimiter = ',', value_name = "STACK,…")]
    pub targets: Vec<String>,
    /// Apply without asking.
    #[arg(long, short)]
    pub yes: bool,
    /// Recover a stack stuck in UPDATE_ROLLBACK_FAILED (ContinueUpdateRollback).
    #[arg(long, conflicts_with = "targets")]
    pub continue_rollback: bool,
    /// With --continue-rollback: resources that cannot roll back, as `Resource` or
    /// `NestedStack.Resource`.
    #[arg(
        long,
        value_delimiter = ',',
        requires = "continue_rollback",
        value_name = "ID,…"
    )]
    pub skip: Vec<String>,
    /// Pin the newest Ubuntu image in ami.yaml (written once the plan is confirmed) and
    /// roll every node onto it. Without it the pinned image stays, whatever is newer.
    /// (Not with --targets: the pin is the whole cluster's, and the stacks left out
    /// would roll at the next update.)
    #[arg(long, conflicts_with_all = ["continue_rollback", "targets"])]
    pub refresh_ami: bool,
}

pub fn run(cli: &Cli, a: &UpdateArgs) -> Result {
    if a.continue_rollback {
        let cfg = crate::config::read(&super::cluster_yaml(cli))?;
        return super::up::runtime()?.block_on(async {
            let sdk = crate::aws::sdk_config(&cfg.region, None).await;
            upd::continue_rollback(&sdk, &cfg, &a.skip).await
        });
    }
    super::up::runtime()?.block_on(async {
        let p = super::diff::planned(cli, &a.targets, 3, a.refresh_ami).await?;
        super::diff::print_summary(&p.plan);
        if !p.plan.changed {
            return Ok(());
        }
        if !a.yes {
            if !std::io::stdin().is_terminal() {
                bail!("update needs confirmation and there is no terminal to ask\n  fix: review `kube-aws diff`, then pass --yes");
            }
            print!("Apply this plan to {}? [y/N] ", p.cfg.cluster_name);
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            if !matches!(line.trim(), "y" | "Y" | "yes") {
                println!("Nothing applied.");
                return Ok(());
            }
        }
        if let Some(pin) = &p.new_pin {
            super::ami::write(&cli.dir, pin)?;
        }
        let mut fetched = p.fetched;
        let network = crate::model::stack_id::StackId::Network;
        let removed = match (
            fetched.deployed.nested.get(&network.logical_id()),
            p.assets
                .assets
                .values()
                .find(|a| a.name == network.asset_name())
                .and_then(|a| serde_json::from_slice(&a.body).ok()),
        ) {
            (Some(old), Some(new)) => crate::plan::removed_outputs(old, &new),
            _ => Vec::new(),
        };
        if !removed.is_empty() && p.plan.core_wave().is_some() {
            println!(
                "One update, not two waves: the network drops {} that deployed pools still read",
                removed.join(", ")
            );
        }
        if let Some(core) = p.plan.core_wave_unless(&removed) {
            println!(
                "Wave 1 of 2: {} (the control plane rolls before the node pools)",
                core.join(", ")
            );
            upd::apply(
                &p.sdk, &p.cfg, &p.model, &p.assets, &cli.dir, &fetched, Some(&core),
            )
            .await?;
            println!("Wave 2 of 2: the node pools");
            fetched = upd::fetch_deployed(&p.sdk, &p.cfg, &p.model).await?;
        }
        upd::apply(
            &p.sdk,
            &p.cfg,
            &p.model,
            &p.assets,
            &cli.dir,
            &fetched,
            p.targets.as_deref(),
        )
        .await
    })
}
