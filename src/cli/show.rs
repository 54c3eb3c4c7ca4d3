use super::{Cli, Result};
use crate::pki::{self, inspect};
use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

/// Certificates closer than this to expiry get a warning.
pub const WARN_DAYS: i64 = 30;

#[derive(Debug, Subcommand)]
pub enum ShowCommand {
    /// List the certificates in credentials/ with their SANs and expiry.
    Certificates(CertificatesArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws show certificates
  kube-aws show certificates --output json | jq '.[] | select(.days_left < 60) | .file'

Exit status: 0, or 1 when any certificate has expired. Certificates with fewer than 30
days left get a warning; `kube-aws render credentials --rotate` re-issues the leaves.")]
pub struct CertificatesArgs {
    #[arg(long, short, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Serialize)]
struct Row {
    file: String,
    #[serde(flatten)]
    info: inspect::CertInfo,
    days_left: i64,
}

pub fn run(cli: &Cli, cmd: &ShowCommand) -> Result {
    match cmd {
        ShowCommand::Certificates(a) => certificates(cli, a),
    }
}

fn certificates(cli: &Cli, a: &CertificatesArgs) -> Result {
    let dir = cli.dir.join(pki::CREDENTIALS_DIR);
    let entries = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "reading {}\n  fix: run `kube-aws render credentials --generate-ca` first",
            dir.display()
        )
    })?;
    let now = time::OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.ends_with(".pem") || name.ends_with("-key.pem") || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if !text.contains("BEGIN CERTIFICATE") {
            continue; // e.g. the service-account public key
        }
        let info =
            inspect::parse_pem(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let days_left = info.days_left(now);
        rows.push(Row {
            file: name,
            info,
            days_left,
        });
    }
    rows.sort_by(|a, b| a.file.cmp(&b.file));
    if rows.is_empty() {
        bail!(
            "no certificates in {}\n  fix: run `kube-aws render credentials --generate-ca`",
            dir.display()
        );
    }
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => {
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header([
                "FILE",
                "SUBJECT",
                "SANS",
                "ISSUER",
                "NOT AFTER",
                "DAYS LEFT",
            ]);
            for r in &rows {
                t.add_row([
                    r.file.clone(),
                    r.info.subject.clone(),
                    r.info.sans.join("\n"),
                    r.info.issuer.clone(),
                    r.info.not_after.date().to_string(),
                    r.days_left.to_string(),
                ]);
            }
            println!("{t}");
        }
    }
    let expired: Vec<&str> = rows
        .iter()
        .filter(|r| r.info.not_after <= now)
        .map(|r| r.file.as_str())
        .collect();
    for r in rows
        .iter()
        .filter(|r| r.info.not_after > now && r.days_left < WARN_DAYS)
    {
        eprintln!(
            "warning: {} expires in {} days ({})",
            r.file,
            r.days_left,
            r.info.not_after.date()
        );
    }
    if !expired.is_empty() {
        bail!(
            "expired: {}\n  fix: `kube-aws render credentials --rotate` re-issues the leaf certificates{}",
            expired.join(", "),
            if expired.iter().any(|f| f.ends_with("ca.pem")) {
                "; an expired CA needs `--force --generate-ca`"
            } else {
                ""
            }
        );
    }
    Ok(())
}
