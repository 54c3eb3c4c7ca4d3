use super::{Cli, Result, cluster_yaml};
use crate::config::init_template::{GITIGNORE, InitParams, render};
use anyhow::{Context, bail};
use clap::Args;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws init --cluster-name prod --region us-west-2 \\
      --availability-zone us-west-2a,us-west-2b,us-west-2c \\
      --external-dns-name k8s.example.com --hosted-zone-id Z1D633PJN98FT9 \\
      --kms-key-arn arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab \\
      --s3-uri s3://my-bucket/clusters
  # without Route53: create the DNS record yourself
  kube-aws init --cluster-name dev --region eu-west-1 --availability-zone eu-west-1a \\
      --external-dns-name dev.k8s.example.com --no-record-set \\
      --kms-key-arn arn:aws:kms:eu-west-1:123456789012:key/abcd --s3-uri s3://my-bucket")]
pub struct InitArgs {
    /// Name of the cluster (DNS-safe, at most 32 characters).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: String,
    /// AWS region.
    #[arg(long, value_name = "REGION")]
    pub region: String,
    /// Availability zone(s); repeat or separate with commas. One public and one private
    /// subnet is laid out per zone.
    #[arg(
        long = "availability-zone",
        value_name = "AZ",
        value_delimiter = ',',
        required = true
    )]
    pub availability_zones: Vec<String>,
    /// Route53 hosted zone in which to create the API endpoint's DNS record.
    #[arg(long, value_name = "ID", required_unless_present = "no_record_set")]
    pub hosted_zone_id: Option<String>,
    /// Do not create a DNS record for the API endpoint (you create it yourself).
    #[arg(long)]
    pub no_record_set: bool,
    /// DNS name of the Kubernetes API endpoint.
    #[arg(long, value_name = "FQDN")]
    pub external_dns_name: String,
    /// EC2 key pair for SSH access to nodes.
    #[arg(long, value_name = "NAME")]
    pub key_name: Option<String>,
    /// KMS key that encrypts the cluster's secrets.
    #[arg(long, value_name = "ARN")]
    pub kms_key_arn: String,
    /// Bucket and prefix for rendered assets, s3://bucket[/prefix].
    #[arg(long, value_name = "URI")]
    pub s3_uri: String,
    /// Fixed AMI for every node (default: the current Ubuntu LTS, resolved by CloudFormation).
    #[arg(long, value_name = "AMI")]
    pub ami_id: Option<String>,
}

/// The flag a config field came from, for messages about init's own input.
fn flag_for(path: &str) -> Option<&'static str> {
    let top = path.split(['.', '[']).next().unwrap_or(path);
    Some(match top {
        "clusterName" => "--cluster-name",
        "region" => "--region",
        "subnets" => "--availability-zone",
        "hostedZoneId" => "--hosted-zone-id",
        "apiEndpoints" => "--external-dns-name",
        "keyName" => "--key-name",
        "kmsKeyArn" => "--kms-key-arn",
        "s3URI" => "--s3-uri",
        "amiId" => "--ami-id",
        _ => return None,
    })
}

pub fn run(cli: &Cli, a: &InitArgs) -> Result {
    let path = cluster_yaml(cli);
    if path.exists() {
        bail!(
            "{} already exists; init never overwrites it.\n  fix: edit it, or move it away and run init again",
            path.display()
        );
    }
    let params = InitParams {
        cluster_name: a.cluster_name.clone(),
        region: a.region.clone(),
        availability_zones: a.availability_zones.clone(),
        hosted_zone_id: a.hosted_zone_id.clone(),
        record_set_managed: !a.no_record_set,
        external_dns_name: a.external_dns_name.clone(),
        key_name: a.key_name.clone(),
        kms_key_arn: a.kms_key_arn.clone(),
        s3_uri: a.s3_uri.clone(),
        ami_id: a.ami_id.clone(),
    };
    let text = render(&params).context("rendering the cluster.yaml template")?;
    // Check the result before anything is written, and blame the flags.
    if let Err(errors) = crate::config::parse(&text, "cluster.yaml") {
        let mut msg = String::from("the flags do not make a valid cluster:\n");
        for d in &errors.diagnostics {
            let from = flag_for(&d.path)
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            msg.push_str(&format!("  {}{from}: {}\n", d.path, d.message));
            if let Some(fix) = &d.fix {
                msg.push_str(&format!("      fix: {fix}\n"));
            }
        }
        bail!(msg);
    }

    std::fs::create_dir_all(&cli.dir)
        .with_context(|| format!("creating the cluster directory {}", cli.dir.display()))?;
    write_new(&path, &text)?;
    let schema_path = cli.dir.join("cluster.schema.json");
    let schema = crate::config::schema::json_schema_pretty() + "\n";
    std::fs::write(&schema_path, schema)
        .with_context(|| format!("writing {}", schema_path.display()))?;
    let gitignore = cli.dir.join(".gitignore");
    let gitignore_note = merge_gitignore(&gitignore)?;

    println!("Wrote {}", path.display());
    println!(
        "Wrote {} (editor completion and checks)",
        schema_path.display()
    );
    println!("{gitignore_note}");
    println!();
    println!("Next steps:");
    println!(
        "  1. Review and edit {} (every field is documented).",
        path.display()
    );
    println!("  2. kube-aws validate");
    Ok(())
}

/// Creates `path` with `text`, failing if it appeared in the meantime.
fn write_new(path: &Path, text: &str) -> Result {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes the .gitignore, or adds the missing rules to an existing one (kept intact).
fn merge_gitignore(path: &Path) -> Result<String> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let have: std::collections::HashSet<&str> = existing.lines().map(str::trim).collect();
    let missing: Vec<&str> = GITIGNORE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !have.contains(l.trim()))
        .collect();
    if existing.is_empty() {
        std::fs::write(path, GITIGNORE).with_context(|| format!("writing {}", path.display()))?;
        return Ok(format!(
            "Wrote {} (keeps plaintext keys out of git)",
            path.display()
        ));
    }
    if missing.is_empty() {
        return Ok(format!(
            "{} already keeps plaintext keys out of git",
            path.display()
        ));
    }
    // Append the whole block, in order: the rules use negations, so appending only
    // the missing lines could let a later `!credentials/*.pem` re-include a key.
    let mut text = existing;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push('\n');
    text.push_str(GITIGNORE);
    std::fs::write(path, text).with_context(|| format!("updating {}", path.display()))?;
    Ok(format!(
        "Appended the kube-aws rules to {} (keeps plaintext keys out of git)",
        path.display()
    ))
}
