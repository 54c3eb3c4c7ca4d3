use super::{Cli, Result, cluster_yaml};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum AddonsCommand {
    /// Print the add-ons' Kubernetes manifests (Service Catalog with v1 CRDs and webhooks,
    /// the AWS service broker and its ClusterServiceBroker) as one YAML stream.
    #[command(after_help = "Examples:
  kube-aws addons render > addons.yaml
  kube-aws addons render | kubectl apply --server-side -f -   # after creating the Secrets (see README)")]
    Render(RenderArgs),
}

#[derive(Debug, Args)]
pub struct RenderArgs {}

pub fn run(cli: &Cli, cmd: &AddonsCommand) -> Result {
    match cmd {
        AddonsCommand::Render(_) => {
            let cfg = crate::config::read(&cluster_yaml(cli))?;
            if !cfg.addons.service_catalog.enabled && !cfg.addons.aws_service_broker.enabled {
                bail!(
                    "no add-on is enabled in {}\n  fix: set addons.serviceCatalog.enabled (and addons.awsServiceBroker.enabled) to true",
                    cluster_yaml(cli).display()
                );
            }
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
    }
}
