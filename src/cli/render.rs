use super::{Cli, Result, cluster_yaml};
use crate::model::Model;
use crate::pki::{self, CaSource, Options, Outcome};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// Generate the cluster PKI, secrets and admin kubeconfig in credentials/.
    Credentials(CredentialsArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws render credentials --generate-ca          # first time: a new cluster CA
  kube-aws render credentials                        # after editing cluster.yaml: re-issues only what changed
  kube-aws render credentials --ca-cert-path ca.pem --ca-key-path ca-key.pem   # bring your own CA
  kube-aws render credentials --rotate               # new leaf certificates and keys, same CAs
  kube-aws render credentials --encrypt              # also encrypt the secrets with KMS now

Writes credentials/ (keys 0600, certificates 0644) and kubeconfig. Existing files are
kept unless they no longer match cluster.yaml; --force and --rotate back up first to
credentials/backup-<time>/.")]
pub struct CredentialsArgs {
    /// Generate a cluster CA if there is none (an existing one is kept unless --force).
    #[arg(long, conflicts_with_all = ["ca_cert_path", "ca_key_path"])]
    pub generate_ca: bool,
    /// Your own CA certificate (PEM); checked, then copied into credentials/.
    #[arg(long, value_name = "FILE", requires = "ca_key_path")]
    pub ca_cert_path: Option<PathBuf>,
    /// The private key of --ca-cert-path (PEM).
    #[arg(long, value_name = "FILE", requires = "ca_cert_path")]
    pub ca_key_path: Option<PathBuf>,
    /// Replace every existing asset except the encryption-at-rest key, after a backup.
    #[arg(long, conflicts_with = "rotate")]
    pub force: bool,
    /// Re-issue every leaf certificate with a new key, keeping the CAs, after a backup.
    #[arg(long)]
    pub rotate: bool,
    /// Encrypt the secrets with the cluster's KMS key now (validate/up do it anyway).
    #[arg(long)]
    pub encrypt: bool,
}

pub fn run(cli: &Cli, cmd: &RenderCommand) -> Result {
    match cmd {
        RenderCommand::Credentials(a) => credentials(cli, a),
    }
}

fn credentials(cli: &Cli, a: &CredentialsArgs) -> Result {
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    let model = Model::derive(&cfg);
    let ca = match (&a.ca_cert_path, &a.ca_key_path) {
        (Some(cert), Some(key)) => CaSource::Provided {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ if a.generate_ca => CaSource::Generate,
        _ => CaSource::Existing,
    };
    let opts = Options {
        ca,
        force: a.force,
        rotate: a.rotate,
    };
    let started = std::time::Instant::now();
    let report = pki::render(
        &model,
        &cfg.tls,
        &cli.dir,
        &opts,
        time::OffsetDateTime::now_utc(),
    )?;
    let elapsed = started.elapsed();

    if let Some(b) = &report.backup {
        println!("Backed up the previous credentials to {}", b.display());
    }
    let (mut created, mut kept) = (Vec::new(), 0usize);
    for (file, outcome) in &report.files {
        match outcome {
            Outcome::Created => created.push(file.as_str()),
            Outcome::Kept => kept += 1,
            Outcome::Replaced(why) => println!("replaced {file}: {why}"),
        }
    }
    if !created.is_empty() {
        println!("created {}", created.join(", "));
    }
    if kept > 0 {
        println!(
            "kept {kept} unchanged file{}",
            if kept == 1 { "" } else { "s" }
        );
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    let dir = cli.dir.join(pki::CREDENTIALS_DIR);
    if cli.verbose {
        println!("({} ms)", elapsed.as_millis());
    }

    if a.encrypt {
        let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        let rep = rt.block_on(async {
            let sdk = crate::aws::sdk_config(&cfg.region, None).await;
            let enc = crate::aws::kms::KmsEncryptor {
                client: crate::aws::kms(&sdk),
                key_id: cfg.kms_key_arn.clone(),
            };
            pki::envelope::encrypt_secrets(&dir, &cfg.cluster_name, &cfg.kms_key_arn, &enc).await
        })?;
        println!(
            "KMS: encrypted {} secret{}, {} unchanged (their .enc files are kept byte for byte)",
            rep.encrypted.len(),
            if rep.encrypted.len() == 1 { "" } else { "s" },
            rep.unchanged.len()
        );
    }
    println!(
        "Credentials are in {}; the admin kubeconfig is {}.",
        dir.display(),
        cli.dir.join(pki::KUBECONFIG).display()
    );
    println!(
        "Plaintext keys stay local: .gitignore keeps them out of git; only KMS-encrypted copies are uploaded."
    );
    Ok(())
}
