use super::{Cli, Result, cluster_yaml};
use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kube-aws validate\n  kube-aws --dir clusters/prod validate\n  \
kube-aws validate --verbose    # also print the effective config, defaults filled in"
)]
pub struct ValidateArgs {}

pub fn run(cli: &Cli, _args: &ValidateArgs) -> Result {
    let path = cluster_yaml(cli);
    let cfg = crate::config::read(&path)?;
    let pools = cfg.worker.node_pools.len();
    println!(
        "{}: valid (cluster {}, region {}, {} subnet{}, {} etcd, {} controller{}, {} node pool{})",
        path.display(),
        cfg.cluster_name,
        cfg.region,
        cfg.subnets.len(),
        if cfg.subnets.len() == 1 { "" } else { "s" },
        cfg.etcd.count,
        cfg.controller.count,
        if cfg.controller.count == 1 { "" } else { "s" },
        pools,
        if pools == 1 { "" } else { "s" },
    );
    if cli.verbose {
        println!("# effective configuration, defaults filled in:");
        print!("{}", serde_yaml_ng::to_string(&cfg)?);
    }
    Ok(())
}
