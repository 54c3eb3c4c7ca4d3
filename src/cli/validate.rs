use super::{Cli, Result, cluster_yaml};
use crate::render::{self, Kind};
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
    /// Also upload the assets and have CloudFormation validate every template by URL.
    #[arg(long, conflicts_with = "file")]
    pub remote: bool,
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
    if args.file.is_some() {
        return Ok(());
    }
    if !cli.dir.join(crate::pki::CREDENTIALS_DIR).exists() {
        println!(
            "templates: not checked (no credentials yet; run `kube-aws render credentials --generate-ca`)"
        );
        return Ok(());
    }
    let (cfg, model, assets) = super::up::load(cli)?;
    let mut stacks = 0;
    let (mut largest, mut most, mut stub) = (0usize, 0usize, 0usize);
    for a in assets.assets.values() {
        match a.kind {
            Kind::Template => {
                stacks += 1;
                largest = largest.max(a.body.len());
                let t: serde_json::Value = serde_json::from_slice(&a.body)?;
                most = most.max(t["Resources"].as_object().map(|r| r.len()).unwrap_or(0));
            }
            Kind::UserDataStub => stub = stub.max(a.body.len()),
            Kind::CloudConfig | Kind::AddonBundle | Kind::NodeConfig => {}
        }
    }
    println!(
        "templates: {stacks} stacks valid JSON; largest {largest} bytes (limit {}), most resources {most} (limit {}); user data stubs at most {stub} bytes (limit {})",
        render::MAX_TEMPLATE_BYTES,
        render::MAX_RESOURCES,
        render::MAX_USER_DATA_BYTES
    );
    if args.remote {
        let results = super::up::runtime()?.block_on(async {
            let sdk = crate::aws::sdk_config(&cfg.region, None).await;
            crate::deploy::validate_remote(&sdk, &cfg, &model, &assets, &cli.dir).await
        })?;
        let mut failed = 0;
        for (name, err) in &results {
            match err {
                None => println!("  {name}: valid (CloudFormation ValidateTemplate)"),
                Some(e) => {
                    failed += 1;
                    println!("  {name}: INVALID: {e}");
                }
            }
        }
        if failed > 0 {
            anyhow::bail!(
                "{failed} of {} templates were rejected by CloudFormation",
                results.len()
            );
        }
    }
    Ok(())
}
