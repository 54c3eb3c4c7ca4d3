//! `kube-aws etcd snapshots | restore`.

use super::{Cli, Result, cluster_yaml};
use crate::deploy;
use crate::model::Model;
use anyhow::bail;
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal, Write};

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// List the etcd snapshots in S3, oldest first.
    #[command(after_help = "Example:\n  kube-aws etcd snapshots")]
    Snapshots,
    /// Restore etcd from a snapshot: every member stops and keeps its data aside,
    /// etcd-0 restores the snapshot, the others join it one at a time.
    #[command(after_help = "Examples:
  kube-aws etcd restore --dry-run                 # the steps, for the newest snapshot
  kube-aws etcd restore                           # asks for the cluster name first
  kube-aws etcd restore --snapshot 20261203T000000Z.db --yes

The members run the node agent's own steps (`kube-aws node etcd stop|restore|start`)
through SSM Run Command. Each member's previous data directory is kept on its volume
as data.before-restore-<seconds>. Everything written after the snapshot is lost: stop
writers (or accept that) first. A member that boots with no data while no member
answers restores the newest snapshot by itself; this command is for a cluster that is
running but wrong.")]
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot: its S3 key or file name, or `latest`.
    #[arg(long, default_value = "latest", value_name = "KEY")]
    pub snapshot: String,
    /// Print the steps and run none.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

pub fn run(cli: &Cli, cmd: &EtcdCommand) -> Result {
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    let model = Model::derive(&cfg);
    super::up::runtime()?.block_on(async {
        let sdk = crate::aws::sdk_config(&cfg.region, None).await;
        let snaps = deploy::etcd::snapshots(&sdk, &model).await?;
        match cmd {
            EtcdCommand::Snapshots => {
                if snaps.is_empty() {
                    println!(
                        "No etcd snapshots under s3://{}/{}/etcd-snapshots/",
                        model.s3_bucket, model.s3_prefix
                    );
                }
                for s in &snaps {
                    println!("{s}");
                }
                Ok(())
            }
            EtcdCommand::Restore(a) => {
                let snapshot = deploy::etcd::choose(&snaps, Some(&a.snapshot))?;
                let members = deploy::etcd::members(&sdk, &cfg.cluster_name).await?;
                if members.is_empty() {
                    bail!(
                        "no running etcd member of {} in {}\n  fix: `kube-aws status`; members that boot with no data restore the newest snapshot themselves",
                        cfg.cluster_name,
                        cfg.region
                    );
                }
                println!("Restore etcd of {} from {snapshot}:", cfg.cluster_name);
                for (i, (name, instance, command)) in
                    deploy::etcd::steps(&members, &snapshot).iter().enumerate()
                {
                    println!("  {}. {name} ({instance}): {command}", i + 1);
                }
                if a.dry_run {
                    return Ok(());
                }
                if !a.yes {
                    if !std::io::stdin().is_terminal() {
                        bail!("restore needs confirmation and there is no terminal to ask on\n  fix: pass --yes");
                    }
                    print!("Type the cluster name to go on: ");
                    std::io::stdout().flush()?;
                    let mut answer = String::new();
                    std::io::stdin().lock().read_line(&mut answer)?;
                    if answer.trim() != cfg.cluster_name {
                        bail!("not confirmed; nothing was changed");
                    }
                }
                deploy::etcd::restore(&sdk, &cfg.cluster_name, &snapshot, &members).await
            }
        }
    })
}
