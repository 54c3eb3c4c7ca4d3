use super::{Cli, Result, cluster_yaml};
use crate::deploy;
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws status
  kube-aws status --output json | jq '.[] | {logical_id, status}'
  kube-aws status --watch         # follow a running operation until it settles")]
pub struct StatusArgs {
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Output,
    /// Follow the stacks until the running operation settles.
    #[arg(long)]
    pub watch: bool,
}

/// Outputs worth showing in the tree.
const KEY_OUTPUTS: &[&str] = &[
    "ApiEndpoint",
    "VpcId",
    "ControllerGroup",
    "Groups",
    "EtcdZoneId",
    "Endpoints",
];

pub fn run(cli: &Cli, a: &StatusArgs) -> Result {
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    super::up::runtime()?.block_on(async {
        let sdk = crate::aws::sdk_config(&cfg.region, None).await;
        if a.watch {
            match deploy::watch_cluster(&sdk, &cfg).await? {
                deploy::watch::Outcome::Failed { status, cause } => {
                    anyhow::bail!(
                        "{} ended in {status}\n  root cause: {}",
                        cfg.cluster_name,
                        cause.unwrap_or_default()
                    )
                }
                deploy::watch::Outcome::Detached => return Ok(()),
                deploy::watch::Outcome::Succeeded(_) => {}
            }
        }
        let Some(stacks) = deploy::status(&sdk, &cfg).await? else {
            anyhow::bail!(
                "there is no stack {} in {}\n  fix: `kube-aws up` creates it",
                cfg.cluster_name,
                cfg.region
            );
        };
        match a.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&stacks)?),
            Output::Text => {
                let n = stacks.len();
                for (i, s) in stacks.iter().enumerate() {
                    let branch = if i == 0 {
                        ""
                    } else if i + 1 == n {
                        "└─ "
                    } else {
                        "├─ "
                    };
                    let pad = if i == 0 {
                        ""
                    } else if i + 1 == n {
                        "   "
                    } else {
                        "│  "
                    };
                    let title = if i == 0 {
                        s.name.clone()
                    } else {
                        s.logical_id.clone()
                    };
                    println!(
                        "{branch}{:<width$} {}",
                        title,
                        s.status,
                        width = 30 - branch.chars().count()
                    );
                    for (k, v) in s
                        .outputs
                        .iter()
                        .filter(|(k, _)| KEY_OUTPUTS.contains(&k.as_str()) || k.ends_with("Groups"))
                    {
                        println!("{pad}    {k}: {v}");
                    }
                    if let Some(e) = &s.last_event {
                        println!("{pad}    last event: {e}");
                    }
                }
            }
        }
        Ok(())
    })
}
