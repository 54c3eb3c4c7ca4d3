//! Apply: the only place (with `aws`) that talks to AWS. Encrypts the secrets, uploads
//! what is missing, creates, watches, reports and deletes stacks.

pub mod addons;
pub mod broker;
pub mod etcd;
pub mod manifest;
pub mod node;
pub mod stack;
pub mod update;
pub mod watch;

use crate::aws::{self, describe, s3::Upload};
use crate::config::Config;
use crate::model::Model;
use crate::pki::{self, envelope};
use crate::render::{self, AssetSet, Kind};
use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::Capability;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

/// The user pressed Ctrl-C while watching. Not a failure of the operation, which goes on
/// in CloudFormation; the CLI exits 130 on it.
#[derive(Debug, thiserror::Error)]
#[error("stopped watching; CloudFormation carries on. `kube-aws status --watch` re-attaches.")]
pub struct Detached;

/// Where the nested templates are, as the root stack's AssetsBaseUrl parameter: the
/// real S3 URL, or the overridden endpoint (path-style) when one is configured.
pub fn assets_base_url(sdk: &SdkConfig, model: &Model) -> String {
    match sdk.endpoint_url() {
        Some(ep) => format!(
            "{}/{}/{}",
            ep.trim_end_matches('/'),
            model.s3_bucket,
            model.s3_prefix
        ),
        None => render::context::build_base_url(&model.s3_bucket, &model.region, &model.s3_prefix),
    }
}

/// What `up` and `validate --remote` upload: the rendered templates and cloud-configs,
/// and the KMS ciphertext of every secret (under the key rendering referenced).
pub async fn prepare_uploads(
    sdk: &SdkConfig,
    cfg: &Config,
    model: &Model,
    assets: &AssetSet,
    cluster_dir: &Path,
) -> Result<(Vec<Upload>, envelope::EnvelopeReport)> {
    let cdir = cluster_dir.join(pki::CREDENTIALS_DIR);
    let enc = aws::kms::KmsEncryptor {
        client: aws::kms(sdk),
        key_id: cfg.kms_key_arn.clone(),
    };
    let report =
        envelope::encrypt_secrets(&cdir, &cfg.cluster_name, &cfg.kms_key_arn, &enc).await?;
    let mut uploads: Vec<Upload> = assets
        .uploads()
        .into_iter()
        .map(|a| Upload {
            key: a.key.clone(),
            body: a.body.clone(),
            content_type: match a.kind {
                Kind::Template | Kind::AddonBundle | Kind::NodeConfig => "application/json",
                Kind::CloudConfig | Kind::UserDataStub => "text/cloud-config",
            },
        })
        .collect();
    for file in
        envelope::secret_files(&cdir).with_context(|| format!("reading {}", cdir.display()))?
    {
        let plaintext =
            std::fs::read(cdir.join(&file)).with_context(|| format!("reading {file}"))?;
        let body = std::fs::read(envelope::enc_path(&cdir, &file))
            .with_context(|| format!("reading {file}.enc"))?;
        let key = format!(
            "{}/{}",
            model.s3_prefix,
            crate::model::names::secret_key(&file, &envelope::sha256_hex(&plaintext))
        );
        uploads.push(Upload {
            key,
            body,
            content_type: "application/octet-stream",
        });
    }
    // The bootstrap token nodes read: the local one only until the controllers
    // rotate it, so it is written once (sync never replaces a present key).
    let token = crate::pki::spec::BOOTSTRAP_TOKEN;
    let token_enc = envelope::enc_path(&cdir, token);
    if let Some(rel) = render::rotating_key(token)
        && token_enc.exists()
    {
        uploads.push(Upload {
            key: format!("{}/{rel}", model.s3_prefix),
            body: std::fs::read(&token_enc)
                .with_context(|| format!("reading {}", token_enc.display()))?,
            content_type: "application/octet-stream",
        });
    }
    let needles = envelope::secret_needles(&cdir)
        .with_context(|| format!("reading the secrets in {}", cdir.display()))?;
    aws::s3::refuse_secrets(&uploads, &needles)?;
    Ok((uploads, report))
}

/// Uploads what is missing, with a progress bar. Returns (uploaded, already there).
pub async fn upload(
    sdk: &SdkConfig,
    model: &Model,
    uploads: Vec<Upload>,
    binaries: &[render::NodeBinary],
) -> Result<(usize, usize)> {
    let (mut sent, mut kept) = (0, 0);
    // Recorded before anything is written, so no key of this cluster escapes `destroy`.
    let mut keys: Vec<String> = uploads.iter().map(|u| u.key.clone()).collect();
    keys.extend(
        binaries
            .iter()
            .map(|b| format!("{}/{}", model.s3_prefix, b.rel_key())),
    );
    manifest::record(sdk, model, &keys).await?;
    for b in binaries {
        let key = format!("{}/{}", model.s3_prefix, b.rel_key());
        let started = std::time::Instant::now();
        if aws::s3::put_file_if_absent(&aws::s3(sdk), &model.s3_bucket, &key, &b.path).await? {
            eprintln!(
                "uploaded the {} node agent ({:.1} MB) in {:.1}s",
                b.arch,
                b.size as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            sent += 1;
        } else {
            kept += 1;
        }
    }
    let (s, k) = upload_assets(sdk, model, uploads).await?;
    Ok((sent + s, kept + k))
}

async fn upload_assets(
    sdk: &SdkConfig,
    model: &Model,
    uploads: Vec<Upload>,
) -> Result<(usize, usize)> {
    let bar = ProgressBar::new(uploads.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("uploading {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let r = aws::s3::sync(
        &aws::s3(sdk),
        &model.s3_bucket,
        &model.s3_prefix,
        uploads,
        move |_| b.inc(1),
    )
    .await;
    bar.finish_and_clear();
    r
}

/// URL of the rendered root template in S3 (or the emulator).
pub(crate) fn root_url(sdk: &SdkConfig, model: &Model, assets: &AssetSet) -> Result<String> {
    let root = assets.root().context("rendering produced no root stack")?;
    let rel = root
        .key
        .strip_prefix(&format!("{}/", model.s3_prefix))
        .unwrap_or(&root.key);
    Ok(format!("{}/{rel}", assets_base_url(sdk, model)))
}

/// Options of `up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Delete a stack left in ROLLBACK_COMPLETE and create it again.
    pub recreate: bool,
}

/// Whether the root stack exists, in a state other than a failed first creation
/// (ROLLBACK_COMPLETE, which `up --recreate` replaces).
pub async fn exists(sdk: &SdkConfig, name: &str) -> Result<bool> {
    let cfn = aws::cloudformation(sdk);
    Ok(stack::describe_stack(&cfn, name)
        .await?
        .is_some_and(|s| stack::status_of(&s) != "ROLLBACK_COMPLETE"))
}

/// Creates the cluster, or says it is up to date.
pub async fn up(
    sdk: &SdkConfig,
    cfg: &Config,
    model: &Model,
    assets: &AssetSet,
    cluster_dir: &Path,
    opts: &UpOptions,
) -> Result<()> {
    let cfn = aws::cloudformation(sdk);
    let name = &cfg.cluster_name;
    let existing = stack::describe_stack(&cfn, name).await?;
    if let Some(s) = &existing {
        let status = stack::status_of(s);
        let id = s.stack_id().unwrap_or(name).to_string();
        match status.as_str() {
            "ROLLBACK_COMPLETE" if opts.recreate => {
                println!("Deleting {name} (ROLLBACK_COMPLETE) to create it again");
                cfn.delete_stack()
                    .stack_name(&id)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("deleting {name}: {}", describe(&e)))?;
                // Create again only once the old stack is really gone.
                match watch::watch(&cfn, &id).await? {
                    watch::Outcome::Succeeded(_) => {}
                    watch::Outcome::Failed { status, cause } => bail!(
                        "deleting {name} ended in {status}: {}",
                        cause.unwrap_or_default()
                    ),
                    watch::Outcome::Detached => return Err(Detached.into()),
                }
            }
            "ROLLBACK_COMPLETE" => bail!(
                "stack {name} is in ROLLBACK_COMPLETE: its first creation failed and CloudFormation rolled it back; such a stack can only be deleted\n  fix: `kube-aws status` shows why it failed; `kube-aws up --recreate` deletes it and creates it again"
            ),
            s if !stack::is_terminal(s) => {
                println!("Stack {name} is {s}: attaching to it (Ctrl-C stops watching only)");
                return finish(&cfn, cfg, model, cluster_dir, &id).await;
            }
            s if stack::is_success(s) => {
                let deployed = cfn
                    .get_template()
                    .stack_name(&id)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("reading the deployed template of {name}: {}", describe(&e))
                    })?;
                let deployed: serde_json::Value =
                    serde_json::from_str(deployed.template_body().unwrap_or("{}"))
                        .unwrap_or_default();
                let rendered: serde_json::Value = assets
                    .root()
                    .map(|a| serde_json::from_slice(&a.body).unwrap_or_default())
                    .unwrap_or_default();
                if deployed == rendered {
                    println!("{name} is up to date ({s}); nothing to do.");
                    return Ok(());
                }
                bail!(
                    "stack {name} exists ({s}) and differs from cluster.yaml; `up` creates clusters and never changes a running one\n  fix: review the change with `kube-aws render stack --export` and apply it with `kube-aws update` (see README)"
                );
            }
            other => bail!(
                "stack {name} is in {other}\n  fix: `kube-aws status` shows why; resolve it in CloudFormation first"
            ),
        }
    }

    let (uploads, enc) = prepare_uploads(sdk, cfg, model, assets, cluster_dir).await?;
    if !enc.encrypted.is_empty() {
        println!("KMS: encrypted {} secret(s)", enc.encrypted.len());
    }
    let total = uploads.len() + assets.binaries.len();
    let (sent, kept) = upload(sdk, model, uploads, &assets.binaries).await?;
    println!(
        "S3: uploaded {sent} of {total} objects to s3://{}/{}/ ({kept} already there)",
        model.s3_bucket, model.s3_prefix
    );

    // The same parameters and tags `update` sends and `diff` compares.
    let desired = update::desired(sdk, cfg, model);
    let out = cfn
        .create_stack()
        .stack_name(name)
        .template_url(root_url(sdk, model, assets)?)
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .enable_termination_protection(cfg.cloudformation.termination_protection)
        .set_role_arn(cfg.cloudformation.role_arn.clone())
        .set_parameters(Some(update::root_parameters(&desired)))
        .set_tags(Some(update::root_tags(&desired)))
        .send()
        .await.map_err(|e| {
        anyhow::anyhow!("CloudFormation refused to create {name}: {}\n  fix: the message names the template problem; `kube-aws validate --remote` checks every template", describe(&e))
    })?;
    let id = out.stack_id().unwrap_or(name).to_string();
    println!(
        "Creating stack {name} (Ctrl-C stops watching only; `kube-aws status --watch` re-attaches)"
    );
    finish(&cfn, cfg, model, cluster_dir, &id).await
}

async fn finish(
    cfn: &aws_sdk_cloudformation::Client,
    cfg: &Config,
    model: &Model,
    cluster_dir: &Path,
    id: &str,
) -> Result<()> {
    match watch::watch(cfn, id).await? {
        watch::Outcome::Succeeded(status) => {
            println!("\n{} is {status}.", cfg.cluster_name);
            println!("  API endpoint: {}", model.api_server_url);
            println!(
                "  kubeconfig:   {}",
                cluster_dir.join(pki::KUBECONFIG).display()
            );
            println!(
                "Next: point DNS for {} at the API load balancer if you manage it yourself,",
                model
                    .api_dns_names
                    .first()
                    .map(String::as_str)
                    .unwrap_or("the API")
            );
            println!(
                "  then `kubectl --kubeconfig {} get nodes`, and `kube-aws status`.",
                cluster_dir.join(pki::KUBECONFIG).display()
            );
            Ok(())
        }
        watch::Outcome::Failed { status, cause } => bail!(
            "stack {} ended in {status}\n  root cause: {}",
            cfg.cluster_name,
            cause.unwrap_or_else(|| "CloudFormation gave no failed event".into())
        ),
        watch::Outcome::Detached => Err(Detached.into()),
    }
}

/// Root and nested stacks, or None when the cluster has no stack.
pub async fn status(sdk: &SdkConfig, cfg: &Config) -> Result<Option<Vec<stack::StackView>>> {
    let cfn = aws::cloudformation(sdk);
    match stack::describe_stack(&cfn, &cfg.cluster_name).await? {
        None => Ok(None),
        Some(root) => Ok(Some(stack::view(&cfn, &root).await?)),
    }
}

/// Watches the cluster's stack until it settles.
pub async fn watch_cluster(sdk: &SdkConfig, cfg: &Config) -> Result<watch::Outcome> {
    let cfn = aws::cloudformation(sdk);
    let Some(root) = stack::describe_stack(&cfn, &cfg.cluster_name).await? else {
        bail!(
            "there is no stack {}\n  fix: `kube-aws up` creates it",
            cfg.cluster_name
        );
    };
    watch::watch(&cfn, root.stack_id().unwrap_or(&cfg.cluster_name)).await
}

/// Checks every rendered template with CloudFormation's ValidateTemplate (by URL,
/// after uploading). Returns (stack name, error) for each failure.
pub async fn validate_remote(
    sdk: &SdkConfig,
    cfg: &Config,
    model: &Model,
    assets: &AssetSet,
    cluster_dir: &Path,
) -> Result<Vec<(String, Option<String>)>> {
    let (uploads, _) = prepare_uploads(sdk, cfg, model, assets, cluster_dir).await?;
    upload(sdk, model, uploads, &assets.binaries).await?;
    let cfn = aws::cloudformation(sdk);
    let base = assets_base_url(sdk, model);
    let mut results = Vec::new();
    for a in assets.assets.values().filter(|a| a.kind == Kind::Template) {
        let rel = a
            .key
            .strip_prefix(&format!("{}/", model.s3_prefix))
            .unwrap_or(&a.key);
        let r = cfn
            .validate_template()
            .template_url(format!("{base}/{rel}"))
            .send()
            .await;
        results.push((a.name.clone(), r.err().map(|e| describe(&e))));
    }
    Ok(results)
}

/// Deletes the cluster: its stacks, then the S3 objects it wrote (its manifest, see
/// manifest.rs), keeping its snapshots unless `purge_snapshots`. Refuses, before
/// deleting anything, when the prefix also holds another cluster's objects, unless
/// `shared_prefix`. Returns what Kubernetes left behind.
pub async fn destroy(
    sdk: &SdkConfig,
    cfg: &Config,
    model: &Model,
    purge_snapshots: bool,
    shared_prefix: bool,
) -> Result<Vec<String>> {
    let cfn = aws::cloudformation(sdk);
    let name = &cfg.cluster_name;
    let s3 = aws::s3(sdk);
    let own = manifest::read(sdk, model).await?;
    let listed = aws::s3::list_keys(&s3, &model.s3_bucket, &model.s3_prefix).await?;
    let pre = manifest::plan_deletion(&model.s3_prefix, own.as_ref(), &listed, purge_snapshots);
    if !pre.other_clusters.is_empty() && !shared_prefix {
        bail!(
            "s3://{}/{}/ also holds another cluster's objects ({}); nothing was deleted\n  fix: destroy deletes only the keys this cluster wrote; pass --shared-prefix to go on, and give each cluster its own s3URI",
            model.s3_bucket,
            model.s3_prefix,
            pre.other_clusters
                .iter()
                .map(|k| format!("s3://{}/{k}", model.s3_bucket))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Before the stack goes, so that a destroy detached with Ctrl-C leaves it too.
    if !purge_snapshots && pre.snapshots_kept > 0 {
        destroyed_marker(sdk, model, &listed).await?;
    }
    if own.is_none() && !listed.is_empty() {
        eprintln!(
            "note: s3://{}/{}/ has no {}: deleting by kube-aws's key layout instead",
            model.s3_bucket,
            model.s3_prefix,
            manifest::FILE
        );
    }
    if let Some(root) = stack::describe_stack(&cfn, name).await? {
        let id = root.stack_id().unwrap_or(name).to_string();
        // The members' DNS records are theirs, not the stack's: the zone cannot be
        // deleted while they exist.
        if let Some(zone) = etcd_zone(&cfn, &id).await? {
            let n = aws::route53::delete_member_records(sdk, &zone).await?;
            if n > 0 {
                println!("Deleted {n} etcd member records of zone {zone}");
            }
        }
        cfn.delete_stack().stack_name(&id).send().await.map_err(|e| {
            anyhow::anyhow!("deleting {name}: {}\n  fix: with termination protection on, turn it off in cluster.yaml's cloudformation section or the console first", describe(&e))
        })?;
        println!("Deleting stack {name} (Ctrl-C stops watching only)");
        match watch::watch(&cfn, &id).await? {
            watch::Outcome::Succeeded(_) => println!("Stack {name} deleted."),
            watch::Outcome::Failed { status, cause } => bail!(
                "deleting {name} ended in {status}\n  root cause: {}",
                cause.unwrap_or_default()
            ),
            watch::Outcome::Detached => return Err(Detached.into()),
        }
    } else {
        println!("There is no stack {name}.");
    }
    // Listed again: the last etcd snapshot may have landed while the stack went.
    let listed = aws::s3::list_keys(&s3, &model.s3_bucket, &model.s3_prefix).await?;
    let d = manifest::plan_deletion(&model.s3_prefix, own.as_ref(), &listed, purge_snapshots);
    let n = aws::s3::delete_keys(&s3, &model.s3_bucket, &d.delete).await?;
    // A snapshot that landed while the stack went needs a later marker.
    if d.snapshots_kept > pre.snapshots_kept {
        destroyed_marker(sdk, model, &listed).await?;
    }
    println!(
        "Deleted {n} objects of {name} under s3://{}/{}/{}",
        model.s3_bucket,
        model.s3_prefix,
        if d.snapshots_kept > 0 {
            format!(
                " ({} etcd snapshots kept; --purge-snapshots deletes them)",
                d.snapshots_kept
            )
        } else {
            String::new()
        }
    );
    if !d.not_ours.is_empty() {
        println!(
            "Left {} objects under the prefix that {name} did not write (first: s3://{}/{})",
            d.not_ours.len(),
            model.s3_bucket,
            d.not_ours[0]
        );
    }
    leftovers(sdk, name).await
}

/// Leaves `etcd-snapshots/destroyed-<time>.marker` beside the kept snapshots, so that a
/// cluster created again here never restores them by itself (node::etcd). Its time is
/// the later of now and the newest snapshot's name: snapshot names come from the nodes'
/// clocks, which this machine's may trail.
async fn destroyed_marker(
    sdk: &SdkConfig,
    model: &Model,
    listed: &std::collections::BTreeSet<String>,
) -> Result<()> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::parse(
            "[year][month][day]T[hour][minute][second]Z",
        )?)
        .unwrap_or_default();
    let newest = crate::node::etcd::latest_snapshot(listed.iter().map(String::as_str))
        .and_then(|k| {
            k.rsplit('/')
                .next()
                .map(|b| b.trim_end_matches(".db").to_string())
        })
        .unwrap_or_default();
    let ts = now.max(newest);
    let key = format!(
        "{}/{}/{}",
        model.s3_prefix,
        crate::node::etcd::SNAPSHOT_PREFIX,
        crate::node::etcd::destroyed_marker(&ts)
    );
    aws::node::put_object(
        sdk,
        &model.s3_bucket,
        &key,
        format!(
            "{} was destroyed at {ts}; nodes do not restore older snapshots by themselves\n",
            model.cluster_name
        )
        .into_bytes(),
    )
    .await
}

/// The etcd stack's private hosted zone (its `EtcdZoneId` output), if the stack exists.
async fn etcd_zone(cfn: &aws_sdk_cloudformation::Client, root: &str) -> Result<Option<String>> {
    let Ok(r) = cfn
        .describe_stack_resource()
        .stack_name(root)
        .logical_resource_id(crate::model::stack_id::StackId::Etcd.logical_id())
        .send()
        .await
    else {
        return Ok(None);
    };
    let Some(etcd) = r
        .stack_resource_detail()
        .and_then(|d| d.physical_resource_id())
        .filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    Ok(stack::describe_stack(cfn, etcd).await?.and_then(|s| {
        s.outputs()
            .iter()
            .find(|o| o.output_key() == Some("EtcdZoneId"))
            .and_then(|o| o.output_value())
            .map(str::to_string)
    }))
}

/// Load balancers and security groups tagged for the cluster that still exist: made by
/// Kubernetes (Services of type LoadBalancer), not by CloudFormation.
async fn leftovers(sdk: &SdkConfig, cluster: &str) -> Result<Vec<String>> {
    let tag = format!("kubernetes.io/cluster/{cluster}");
    let mut out = Vec::new();
    let ec2 = aws::ec2(sdk);
    let sgs = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag-key")
                .values(&tag)
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("listing security groups: {}", describe(&e)))?;
    for g in sgs.security_groups() {
        out.push(format!(
            "security group {} ({}): aws ec2 delete-security-group --group-id {}",
            g.group_id().unwrap_or("?"),
            g.group_name().unwrap_or("?"),
            g.group_id().unwrap_or("?")
        ));
    }
    let elb = aws::elbv2(sdk);
    let lbs = elb
        .describe_load_balancers()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("listing load balancers: {}", describe(&e)))?;
    let arns: Vec<String> = lbs
        .load_balancers()
        .iter()
        .filter_map(|l| l.load_balancer_arn().map(str::to_string))
        .collect();
    for chunk in arns.chunks(20) {
        let tags = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("reading load balancer tags: {}", describe(&e)))?;
        for d in tags.tag_descriptions() {
            if d.tags().iter().any(|t| t.key() == Some(tag.as_str())) {
                let arn = d.resource_arn().unwrap_or("?");
                out.push(format!(
                    "load balancer {arn}: aws elbv2 delete-load-balancer --load-balancer-arn {arn}"
                ));
            }
        }
    }
    Ok(out)
}
