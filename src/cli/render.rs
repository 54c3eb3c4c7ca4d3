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
    /// Copy the stack templates and cloud-configs here for editing, and render them.
    Stack(StackArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws render stack                 # copy stack-templates/ and userdata/ here, then render
  kube-aws render stack --diff          # how your copies differ from this release's built-ins
  kube-aws render stack --export out/   # write every rendered asset for offline review
  kube-aws render stack --force         # replace your edited copies with the built-ins

Rendering reads your copies when present, the built-ins otherwise. Nothing here calls AWS.")]
pub struct StackArgs {
    /// Show how the local copies differ from the built-in templates, and exit.
    #[arg(long, conflicts_with_all = ["force", "export"])]
    pub diff: bool,
    /// Overwrite local copies that differ from the built-ins (each is saved as <file>.orig).
    #[arg(long)]
    pub force: bool,
    /// Write the fully rendered assets (templates as JSON, cloud-configs, stubs) to DIR.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
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
        RenderCommand::Stack(a) => stack(cli, a),
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

/// Where `render stack` records the sha256 of the built-in each local copy came from.
pub const TEMPLATES_RECORD: &str = ".kube-aws-templates";

fn read_record(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(sha, rel)| (rel.trim().to_string(), sha.to_string()))
        .collect()
}

fn write_record(
    path: &std::path::Path,
    record: &std::collections::BTreeMap<String, String>,
) -> Result {
    let mut text = String::from(
        "# sha256 of the kube-aws built-in each local template was copied from (render stack\n# keeps it; a copy that still has this content is replaced by a newer built-in)\n",
    );
    for (rel, sha) in record {
        text.push_str(&format!("{sha} {rel}\n"));
    }
    pki::store::write_atomic(path, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

fn stack(cli: &Cli, a: &StackArgs) -> Result {
    use crate::render::templates::BUILTIN;
    if a.diff {
        let mut differ = 0;
        for (rel, builtin) in BUILTIN {
            let path = cli.dir.join(rel);
            let Ok(mine) = std::fs::read_to_string(&path) else {
                continue;
            };
            if mine != *builtin {
                differ += 1;
                let diff = similar::TextDiff::from_lines(*builtin, mine.as_str());
                print!(
                    "{}",
                    diff.unified_diff()
                        .context_radius(3)
                        .header(&format!("built-in/{rel}"), &path.display().to_string())
                );
            }
        }
        println!(
            "{differ} of {} files differ from the built-in templates of kube-aws {}",
            BUILTIN.len(),
            env!("CARGO_PKG_VERSION")
        );
        return Ok(());
    }
    let cfg = crate::config::read(&cluster_yaml(cli))?;
    let (mut created, mut kept_edits, mut replaced) = (Vec::new(), Vec::new(), Vec::new());
    let mut upgraded = Vec::new();
    // sha256 of the built-in each local copy was made from: a copy that still has it is
    // not an edit, so a new kube-aws replaces it with its own built-in.
    let record_path = cli.dir.join(TEMPLATES_RECORD);
    let mut record = read_record(&record_path);
    for (rel, builtin) in BUILTIN {
        let path = cli.dir.join(rel);
        let builtin_sha = crate::render::sha256_hex(builtin.as_bytes());
        match std::fs::read_to_string(&path) {
            Ok(mine) if mine == *builtin => {}
            Ok(mine)
                if record.get(*rel).map(String::as_str)
                    == Some(crate::render::sha256_hex(mine.as_bytes()).as_str()) =>
            {
                pki::store::write_atomic(&path, builtin.as_bytes(), 0o644)
                    .with_context(|| format!("writing {}", path.display()))?;
                upgraded.push(rel.to_string());
            }
            Ok(mine) if a.force => {
                let orig = path.with_extension(format!(
                    "{}.orig",
                    path.extension().and_then(|e| e.to_str()).unwrap_or("")
                ));
                std::fs::write(&orig, mine)
                    .with_context(|| format!("writing {}", orig.display()))?;
                pki::store::write_atomic(&path, builtin.as_bytes(), 0o644)
                    .with_context(|| format!("writing {}", path.display()))?;
                replaced.push(rel.to_string());
            }
            Ok(_) => kept_edits.push(rel.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                pki::store::write_atomic(&path, builtin.as_bytes(), 0o644)
                    .with_context(|| format!("writing {}", path.display()))?;
                created.push(rel.to_string());
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        // A kept edit keeps the record of the built-in it was made from.
        if !kept_edits.iter().any(|k| k == rel) {
            record.insert(rel.to_string(), builtin_sha);
        }
    }
    // Files a new release no longer has are left alone (nothing reads them any more).
    write_record(&record_path, &record)?;
    for u in &upgraded {
        println!(
            "updated {u} to kube-aws {}'s built-in (you had not edited it)",
            env!("CARGO_PKG_VERSION")
        );
    }
    if !created.is_empty() {
        println!(
            "copied {} built-in template{} into {}",
            created.len(),
            if created.len() == 1 { "" } else { "s" },
            cli.dir.display()
        );
    }
    for r in &replaced {
        println!("replaced your edited {r} with the built-in (yours is saved as {r}.orig)");
    }
    for k in &kept_edits {
        println!("kept your edited {k} (`kube-aws render stack --diff` shows the changes)");
    }

    let model = Model::derive(&cfg);
    let templates = super::inputs::templates(&cli.dir)?;
    let creds = super::inputs::credentials(&cli.dir)?;
    let binaries = super::inputs::node_binaries(cli)?;
    let started = std::time::Instant::now();
    let assets = crate::render::render(&cfg, &model, &templates, &creds, &binaries)?;
    let elapsed = started.elapsed();
    println!(
        "rendered {} assets in {} ms:",
        assets.assets.len(),
        elapsed.as_millis()
    );
    for a in assets.assets.values() {
        println!("  {:<32} {:>8} bytes  {}", a.name, a.body.len(), a.key);
    }
    for b in &assets.binaries {
        println!(
            "  node agent {:<21} {:>8} bytes  {}/{} (uploaded by `up` from {})",
            b.arch,
            b.size,
            model.s3_prefix,
            b.rel_key(),
            b.path.display()
        );
    }
    if let Some(dir) = &a.export {
        export(&assets, &model, dir)?;
    }
    Ok(())
}

/// Writes every rendered asset under `dir`, laid out as in S3 below the cluster prefix.
pub fn export(assets: &crate::render::AssetSet, model: &Model, dir: &std::path::Path) -> Result {
    for asset in assets.assets.values() {
        let rel = asset
            .key
            .strip_prefix(&format!("{}/", model.s3_prefix))
            .unwrap_or(&asset.key);
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &asset.body)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "exported {} assets to {} (no AWS access was needed)",
        assets.assets.len(),
        dir.display()
    );
    Ok(())
}
