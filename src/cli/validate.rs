use super::{Cli, Result, cluster_yaml};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kube-aws validate\n  kube-aws --dir clusters/prod validate\n  \
kube-aws validate examples/ha-multi-az.yaml\n  \
kube-aws validate --verbose    # also print the effective config, defaults filled in\n\n\
Exit status: 0 when valid, 1 when any problem is found (all are listed)."
)]
pub struct ValidateArgs {
    /// The file to check (default: cluster.yaml in --dir).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &ValidateArgs) -> Result {
    let path = args.file.clone().unwrap_or_else(|| cluster_yaml(cli));
    let cfg = crate::config::read(&path)?;
    let n =
        |count: usize, what: &str| format!("{count} {what}{}", if count == 1 { "" } else { "s" });
    println!(
        "{}: valid (cluster {}, region {}, {}, {} etcd, {}, {})",
        path.display(),
        cfg.cluster_name,
        cfg.region,
        n(cfg.subnets.len(), "subnet"),
        cfg.etcd.count,
        n(cfg.controller.count as usize, "controller"),
        n(cfg.worker.node_pools.len(), "node pool"),
    );
    if cli.verbose {
        println!("# effective configuration, defaults filled in:");
        print!("{}", serde_yaml_ng::to_string(&cfg)?);
    }
    Ok(())
}
