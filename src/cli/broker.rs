use super::Result;
use crate::broker::{self, ServeOptions, StateLocation, server::Auth};
use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Serve the Open Service Broker API (v2.13–v2.17) backed by CloudFormation.
    Serve(Box<ServeArgs>),
    /// Print the catalog (GET /v2/catalog) as JSON and check every template.
    Catalog(CatalogArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthMode {
    Basic,
    Bearer,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  KUBE_AWS_BROKER_TOKEN=$(openssl rand -hex 32) \\
    kube-aws broker serve --listen 127.0.0.1:8080 --auth bearer --region us-west-2
  KUBE_AWS_BROKER_PASSWORD=secret kube-aws broker serve --listen 0.0.0.0:8443 \\
    --tls-cert broker.pem --tls-key broker-key.pem --auth basic --username catalog \\
    --state dynamodb:kube-aws-broker --services s3,sqs,dynamodb

Secrets come from the environment, never the command line: KUBE_AWS_BROKER_TOKEN for
bearer, KUBE_AWS_BROKER_PASSWORD for basic. Stacks are named <broker-id>-<service>-<instance>.
GET /healthz answers without authentication.")]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PEM certificate (chain) for HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How the platform authenticates.
    #[arg(long, value_enum, default_value = "bearer")]
    pub auth: AuthMode,
    /// User name for --auth basic.
    #[arg(long, default_value = "kube-aws")]
    pub username: String,
    /// Prefix of every stack the broker creates; DNS-safe.
    #[arg(long, default_value = "kube-aws-broker")]
    pub broker_id: String,
    /// Extra or replacement service templates (*.yaml).
    #[arg(long, value_name = "DIR")]
    pub catalog: Option<PathBuf>,
    /// Offer only these services.
    #[arg(long, value_delimiter = ',')]
    pub services: Vec<String>,
    /// Where state lives: a directory, or `dynamodb:TABLE`.
    #[arg(long, default_value = ".kube-aws-broker")]
    pub state: String,
    /// AWS region of the stacks.
    #[arg(long, env = "AWS_REGION")]
    pub region: String,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws broker catalog | jq -r '.services[] | [.name, (.plans | map(.name) | join(\",\"))] | @tsv'
  kube-aws broker catalog --catalog my-services/   # check your own templates before serving them")]
pub struct CatalogArgs {
    /// Extra or replacement service templates (*.yaml).
    #[arg(long, value_name = "DIR")]
    pub catalog: Option<PathBuf>,
}

pub fn run(cmd: &BrokerCommand) -> Result {
    match cmd {
        BrokerCommand::Catalog(a) => {
            let c =
                broker::catalog::Catalog::load(a.catalog.as_deref()).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&c.osb())?);
            Ok(())
        }
        BrokerCommand::Serve(a) => {
            let auth = match a.auth {
                AuthMode::Bearer => match std::env::var("KUBE_AWS_BROKER_TOKEN") {
                    Ok(t) if t.len() >= 16 => Auth::Bearer { token: t },
                    _ => bail!(
                        "--auth bearer needs KUBE_AWS_BROKER_TOKEN (at least 16 characters) in the environment\n  fix: export KUBE_AWS_BROKER_TOKEN=$(openssl rand -hex 32)"
                    ),
                },
                AuthMode::Basic => match std::env::var("KUBE_AWS_BROKER_PASSWORD") {
                    Ok(p) if p.len() >= 8 => Auth::Basic {
                        username: a.username.clone(),
                        password: p,
                    },
                    _ => bail!(
                        "--auth basic needs KUBE_AWS_BROKER_PASSWORD (at least 8 characters) in the environment"
                    ),
                },
            };
            if a.broker_id.is_empty()
                || a.broker_id.len() > 20
                || !a
                    .broker_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                || !a.broker_id.starts_with(|c: char| c.is_ascii_alphabetic())
            {
                bail!(
                    "--broker-id {}: use 1–20 letters, digits or hyphens, starting with a letter (it prefixes stack names)",
                    a.broker_id
                );
            }
            let state = match a.state.strip_prefix("dynamodb:") {
                Some(t) if !t.is_empty() => StateLocation::DynamoDb(t.to_string()),
                Some(_) => bail!("--state dynamodb:TABLE needs a table name"),
                None => StateLocation::Dir(PathBuf::from(&a.state)),
            };
            let tls = a.tls_cert.clone().zip(a.tls_key.clone());
            super::up::runtime()?.block_on(broker::serve(ServeOptions {
                listen: a.listen,
                tls,
                auth,
                broker_id: a.broker_id.clone(),
                catalog_dir: a.catalog.clone(),
                services: a.services.clone(),
                state,
                region: a.region.clone(),
            }))
        }
    }
}
