use super::Result;
use crate::broker::{self, Auth, ServeOptions, StateLocation};
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
bearer, KUBE_AWS_BROKER_PASSWORD for basic. Instance stacks are named
<broker-id>-<service>-i-<instance>, binding stacks <broker-id>-<service>-b<n>-<instance>-<binding>
(n: the instance id's length). Every binding's IAM user gets --permissions-boundary; the
add-on passes its boundary policy. GET /healthz answers without authentication.")]
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
    /// ARN of the IAM policy that bounds every binding's IAM user (the add-on's
    /// `kube-aws-<cluster>-<broker-id>-boundary`); the broker role may create users only
    /// with it.
    #[arg(long, env = "KUBE_AWS_BROKER_PERMISSIONS_BOUNDARY", value_name = "ARN")]
    pub permissions_boundary: Option<String>,
    /// The IAM principal the broker runs as (its role ARN), which resource policies it
    /// writes name (a KMS key's); default: asked of STS at start.
    #[arg(long, env = "KUBE_AWS_BROKER_PRINCIPAL", value_name = "ARN")]
    pub principal: Option<String>,
    /// Seconds a client has to send a request's headers.
    #[arg(long, default_value_t = 10, hide = true)]
    pub header_read_timeout: u64,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, default_value_t = 120, hide = true)]
    pub idle_timeout: u64,
    /// Seconds a request may take (synchronous binds wait for their stack within it).
    #[arg(long, default_value_t = 90, hide = true)]
    pub request_timeout: u64,
    /// Connections served at once; more are closed on accept.
    #[arg(long, default_value_t = 512, hide = true)]
    pub max_connections: usize,
    /// Seconds a synchronous bind or unbind waits for its stack before answering 504 (the
    /// platform then unbinds).
    /// (Under the platforms' own request timeout: "typically 60 seconds", OSB 2.17
    /// Orphan Mitigation.)
    #[arg(long, default_value_t = 40, hide = true)]
    pub settle_timeout: u64,
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
            let c = crate::broker_catalog::Catalog::load(a.catalog.as_deref())
                .map_err(anyhow::Error::msg)?;
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
            if let Some(b) = &a.permissions_boundary
                && !(b.starts_with("arn:") && b.contains(":iam::") && b.contains(":policy/"))
            {
                bail!(
                    "--permissions-boundary {b}: not an IAM policy ARN\n  fix: pass arn:<partition>:iam::<account>:policy/<name>"
                );
            }
            if a.max_connections == 0 || a.header_read_timeout == 0 || a.idle_timeout == 0 {
                bail!(
                    "--max-connections, --header-read-timeout and --idle-timeout must be positive"
                );
            }
            if a.request_timeout <= a.settle_timeout {
                bail!(
                    "--request-timeout ({}) must exceed --settle-timeout ({}): a synchronous bind waits within the request",
                    a.request_timeout,
                    a.settle_timeout
                );
            }
            let tls = a.tls_cert.clone().zip(a.tls_key.clone());
            let secs = std::time::Duration::from_secs;
            super::up::runtime()?.block_on(broker::serve(ServeOptions {
                listen: a.listen,
                tls,
                auth,
                broker_id: a.broker_id.clone(),
                catalog_dir: a.catalog.clone(),
                services: a.services.clone(),
                state,
                region: a.region.clone(),
                permissions_boundary: a.permissions_boundary.clone(),
                principal: a.principal.clone(),
                timeouts: broker::http::Timeouts {
                    header_read: secs(a.header_read_timeout),
                    idle: secs(a.idle_timeout),
                    request: secs(a.request_timeout),
                    max_connections: a.max_connections,
                },
                limits: broker::app::Limits {
                    settle: secs(a.settle_timeout),
                },
            }))
        }
    }
}
