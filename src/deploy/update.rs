//! Day 2: fetch what is deployed (for `diff`), ask CloudFormation change sets for their
//! verdict, apply an update (optionally restricted to some nested stacks), and recover a
//! stack stuck in UPDATE_ROLLBACK_FAILED.

use super::{Detached, assets_base_url, prepare_uploads, stack, upload, watch};
use crate::aws::{self, describe, s3::Upload};
use crate::config::Config;
use crate::model::Model;
use crate::plan::{self, Deployed, Desired, Plan, Replacement};
use crate::render::{AssetSet, sha256_hex};
use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{Capability, ChangeSetType, Parameter, Tag};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The deployed side of a plan, with the stack ids it came from.
pub struct Fetched {
    pub deployed: Deployed,
    pub root_id: String,
    pub status: String,
    /// Physical stack id of each nested stack, by logical id.
    pub nested_ids: BTreeMap<String, String>,
}

fn parse_template(body: &str, what: &str) -> Result<Value> {
    serde_json::from_str(body)
        .or_else(|_| serde_yaml_ng::from_str(body))
        .with_context(|| format!("the deployed template of {what} is neither JSON nor YAML"))
}

async fn get_template(cfn: &Client, id: &str, what: &str) -> Result<Value> {
    let out = cfn
        .get_template()
        .stack_name(id)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!("reading the deployed template of {what}: {}", describe(&e))
        })?;
    parse_template(out.template_body().unwrap_or("{}"), what)
}

/// Reads the deployed root and nested templates, parameters, tags and cloud-configs.
/// Nested templates and cloud-configs are fetched concurrently.
pub async fn fetch_deployed(sdk: &SdkConfig, cfg: &Config, model: &Model) -> Result<Fetched> {
    let cfn = aws::cloudformation(sdk);
    let name = &cfg.cluster_name;
    let Some(root) = stack::describe_stack(&cfn, name).await? else {
        bail!("there is no stack {name} to compare with\n  fix: `kube-aws up` creates the cluster");
    };
    let root_id = root.stack_id().unwrap_or(name).to_string();
    let status = stack::status_of(&root);
    let mut d = Deployed {
        parameters: root
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_string(),
                    p.parameter_value()?.to_string(),
                ))
            })
            .collect(),
        tags: root
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect(),
        ..Deployed::default()
    };
    let (root_t, nested) = tokio::try_join!(
        get_template(&cfn, &root_id, name),
        stack::nested(&cfn, &root_id)
    )?;
    d.root = root_t;
    let mut tasks = tokio::task::JoinSet::new();
    for (logical, id) in nested.iter().cloned() {
        let cfn = cfn.clone();
        tasks.spawn(async move {
            let t = get_template(&cfn, &id, &logical).await;
            (logical, t)
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (logical, t) = r.context("a template fetch failed")?;
        d.nested.insert(logical, t?);
    }
    let keys: Vec<String> = d
        .nested
        .values()
        .flat_map(plan::userdata_keys)
        // The node agent binaries are compared by key (a content hash), never fetched.
        .filter(|k| !k.starts_with("bin/"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let s3 = aws::s3(sdk);
    let mut tasks = tokio::task::JoinSet::new();
    for rel in keys {
        let s3 = s3.clone();
        let bucket = model.s3_bucket.clone();
        let key = format!("{}/{rel}", model.s3_prefix);
        tasks.spawn(async move {
            let body = aws::s3::get(&s3, &bucket, &key)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            (rel, body)
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let (rel, Some(body)) = r.context("a cloud-config fetch failed")? {
            d.cloud_configs.insert(rel, body);
        }
    }
    // The add-ons bundle the deployed `addons` stack points to.
    if let Some(key) = d
        .nested
        .values()
        .find_map(|t| t.pointer("/Resources/BundlePointer/Properties/Value"))
        .and_then(Value::as_str)
        .and_then(|v| v.split_whitespace().next())
    {
        let body = aws::s3::get(&s3, &model.s3_bucket, key).await;
        d.addons_bundle = Some((key.to_string(), body));
    }
    Ok(Fetched {
        deployed: d,
        root_id,
        status,
        nested_ids: nested.into_iter().collect(),
    })
}

/// `desired`'s parameters as CloudFormation takes them.
pub fn root_parameters(d: &Desired) -> Vec<Parameter> {
    d.parameters
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

/// `desired`'s tags as CloudFormation takes them.
pub fn root_tags(d: &Desired) -> Vec<Tag> {
    d.tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The root parameters and tags `up` and `update` send.
pub fn desired(sdk: &SdkConfig, cfg: &Config, model: &Model) -> Desired {
    let mut tags: BTreeMap<String, String> = cfg.stack_tags.clone().into_iter().collect();
    tags.insert(
        crate::model::ids::tag::CLUSTER.into(),
        cfg.cluster_name.clone(),
    );
    Desired {
        parameters: [("AssetsBaseUrl".to_string(), assets_base_url(sdk, model))].into(),
        tags,
    }
}

/// Every stack name a target may be: those rendered and those deployed.
pub fn known_stacks(assets: &AssetSet, deployed: &Deployed) -> Vec<String> {
    let rendered: Value = assets
        .root()
        .and_then(|a| serde_json::from_slice(&a.body).ok())
        .unwrap_or(Value::Null);
    let mut v: Vec<String> = plan::nested_refs(&rendered)
        .into_iter()
        .chain(plan::nested_refs(&deployed.root))
        .map(|r| r.name)
        .collect();
    v.sort();
    v.dedup();
    v
}

fn template_upload(model: &Model, rel: &str, body: Vec<u8>) -> Upload {
    Upload {
        key: format!("{}/{rel}", model.s3_prefix),
        body,
        content_type: "application/json",
    }
}

/// Asks CloudFormation for a change set (type UPDATE) of every modified nested stack,
/// records its verdicts in the plan, and deletes it. Never executes one. Uploads the
/// changed templates (content-hashed keys: nothing deployed reads them).
pub async fn annotate_with_change_sets(
    sdk: &SdkConfig,
    model: &Model,
    assets: &AssetSet,
    fetched: &Fetched,
    plan: &mut Plan,
) -> Result<Vec<String>> {
    let cfn = aws::cloudformation(sdk);
    let base = assets_base_url(sdk, model);
    let rendered_root: Value = assets
        .root()
        .and_then(|a| serde_json::from_slice(&a.body).ok())
        .unwrap_or(Value::Null);
    let refs = plan::nested_refs(&rendered_root);
    let mut notes = Vec::new();
    for sp in plan.stacks.iter_mut() {
        if sp.action != plan::Action::Modify || sp.name == "root" {
            continue;
        }
        let (Some(r), Some(id)) = (
            refs.iter().find(|r| r.logical_id == sp.logical_id),
            fetched.nested_ids.get(&sp.logical_id),
        ) else {
            continue;
        };
        let Some(asset) = assets
            .assets
            .values()
            .find(|a| a.key.ends_with(&format!("/{}", r.rel_key)))
        else {
            continue;
        };
        let new_t: Value = serde_json::from_slice(&asset.body).unwrap_or(Value::Null);
        let new_params: Vec<String> = new_t
            .get("Parameters")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let old_params: Vec<String> = fetched
            .deployed
            .nested
            .get(&sp.logical_id)
            .and_then(|t| t.get("Parameters"))
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        if new_params.iter().any(|p| !old_params.contains(p)) {
            notes.push(format!(
                "{}: no change set (the new template has new parameters only the root can supply)",
                sp.name
            ));
            continue;
        }
        let up = template_upload(model, &r.rel_key, asset.body.clone());
        super::manifest::record(sdk, model, std::slice::from_ref(&up.key)).await?;
        aws::s3::sync(
            &aws::s3(sdk),
            &model.s3_bucket,
            &model.s3_prefix,
            vec![up],
            |_| {},
        )
        .await?;
        let cs_name = format!("kube-aws-diff-{}", &asset.sha256[..12]);
        let mut req = cfn
            .create_change_set()
            .stack_name(id)
            .change_set_name(&cs_name)
            .change_set_type(ChangeSetType::Update)
            .template_url(format!("{base}/{}", r.rel_key))
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .description("kube-aws diff: for review only, deleted after reading");
        for p in &new_params {
            req = req.parameters(
                Parameter::builder()
                    .parameter_key(p)
                    .use_previous_value(true)
                    .build(),
            );
        }
        let created = match req.send().await {
            Ok(c) => c,
            Err(e) => {
                notes.push(format!("{}: no change set: {}", sp.name, describe(&e)));
                continue;
            }
        };
        let cs_id = created.id().unwrap_or(&cs_name).to_string();
        let mut verdicts: BTreeMap<String, Replacement> = BTreeMap::new();
        let mut listed = 0usize;
        for attempt in 0..60 {
            let d = cfn
                .describe_change_set()
                .change_set_name(&cs_id)
                .stack_name(id)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("describing change set of {}: {}", sp.name, describe(&e))
                })?;
            let st = d
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if st.ends_with("IN_PROGRESS") || st.ends_with("PENDING") {
                tokio::time::sleep(Duration::from_millis(200 + 100 * attempt.min(20))).await;
                continue;
            }
            for c in d.changes() {
                if let Some(rc) = c.resource_change() {
                    listed += 1;
                    let verdict = match rc.replacement().map(|r| r.as_str()) {
                        Some("True") => Some(Replacement::True),
                        Some("False") => Some(Replacement::False),
                        Some("Conditional") => Some(Replacement::Conditional),
                        _ => None,
                    };
                    if let (Some(l), Some(v)) = (rc.logical_resource_id(), verdict) {
                        verdicts.insert(l.to_string(), v);
                    }
                }
            }
            if st == "FAILED" {
                notes.push(format!(
                    "{}: change set failed: {}",
                    sp.name,
                    d.status_reason().unwrap_or("no reason given")
                ));
            }
            break;
        }
        let _ = cfn
            .delete_change_set()
            .change_set_name(&cs_id)
            .stack_name(id)
            .send()
            .await;
        for rc in sp.resources.iter_mut() {
            if let Some(v) = verdicts.get(&rc.logical_id) {
                rc.replacement = Some(*v);
                rc.verdict_from = "change-set";
            }
        }
        notes.push(format!(
            "{}: change set listed {listed} resource change(s), {} with a replacement verdict",
            sp.name,
            verdicts.len()
        ));
    }
    Ok(notes)
}

/// Applies the plan: encrypts and uploads what is missing, then updates the root stack
/// with the rendered root (or, with targets, the root that touches only those).
pub async fn apply(
    sdk: &SdkConfig,
    cfg: &Config,
    model: &Model,
    assets: &AssetSet,
    cluster_dir: &Path,
    fetched: &Fetched,
    targets: Option<&[String]>,
) -> Result<()> {
    let cfn = aws::cloudformation(sdk);
    let name = &cfg.cluster_name;
    if !stack::is_terminal(&fetched.status) {
        bail!(
            "stack {name} is {}; wait for it to settle\n  fix: `kube-aws status --watch`",
            fetched.status
        );
    }
    if fetched.status == "UPDATE_ROLLBACK_FAILED" {
        bail!(
            "stack {name} is UPDATE_ROLLBACK_FAILED: CloudFormation could not roll back the last update\n  fix: `kube-aws update --continue-rollback` (add `--skip Stack.Resource` for resources that cannot roll back)"
        );
    }
    if matches!(
        fetched.status.as_str(),
        "ROLLBACK_COMPLETE" | "CREATE_FAILED" | "DELETE_FAILED"
    ) {
        bail!(
            "stack {name} is {}: it cannot be updated\n  fix: `kube-aws status` shows why; `kube-aws up --recreate` replaces a ROLLBACK_COMPLETE stack",
            fetched.status
        );
    }
    let (mut uploads, enc) = prepare_uploads(sdk, cfg, model, assets, cluster_dir).await?;
    if !enc.encrypted.is_empty() {
        println!("KMS: encrypted {} secret(s)", enc.encrypted.len());
    }
    let rendered_root: Value = assets
        .root()
        .and_then(|a| serde_json::from_slice(&a.body).ok())
        .context("rendering produced no root stack")?;
    let root_url = match targets {
        None => super::root_url(sdk, model, assets)?,
        Some(t) => {
            let refs = plan::nested_refs(&rendered_root);
            let root =
                plan::targets::targeted_root(&rendered_root, &fetched.deployed.root, &refs, t);
            let body = serde_json::to_vec(&root).context("serialising the targeted root")?;
            let rel = format!("stacks/root-targeted-{}.json", &sha256_hex(&body)[..16]);
            uploads.push(template_upload(model, &rel, body));
            format!("{}/{rel}", assets_base_url(sdk, model))
        }
    };
    // The targeted root is built here from the rendered and the deployed roots: it is
    // checked like every rendered asset (prepare_uploads).
    let cdir = cluster_dir.join(crate::pki::CREDENTIALS_DIR);
    let needles = crate::pki::envelope::secret_needles(&cdir)
        .with_context(|| format!("reading the secrets in {}", cdir.display()))?;
    aws::s3::refuse_secrets(&uploads, &needles)?;
    let total = uploads.len() + assets.binaries.len();
    let (sent, kept) = upload(sdk, model, uploads, &assets.binaries).await?;
    println!("S3: uploaded {sent} changed object(s) of {total} ({kept} already there)");
    let d = desired(sdk, cfg, model);
    let req = cfn
        .update_stack()
        .stack_name(&fetched.root_id)
        .template_url(root_url)
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .set_role_arn(cfg.cloudformation.role_arn.clone())
        .set_parameters(Some(root_parameters(&d)))
        .set_tags(Some(root_tags(&d)));
    if let Err(e) = req.send().await {
        let msg = describe(&e);
        if msg.contains("No updates are to be performed") {
            println!("{name}: CloudFormation found nothing to update.");
            return Ok(());
        }
        bail!(
            "CloudFormation refused to update {name}: {msg}\n  fix: the message names the problem; `kube-aws validate --remote` checks every template"
        );
    }
    println!(
        "Updating stack {name} (Ctrl-C stops watching only; `kube-aws status --watch` re-attaches)"
    );
    match watch::watch(&cfn, &fetched.root_id).await? {
        watch::Outcome::Succeeded(s) => {
            println!("\n{name} is {s}.");
            Ok(())
        }
        watch::Outcome::Failed { status, cause } => bail!(
            "updating {name} ended in {status}\n  root cause: {}{}",
            cause.unwrap_or_else(|| "CloudFormation gave no failed event".into()),
            if status == "UPDATE_ROLLBACK_FAILED" {
                "\n  fix: `kube-aws update --continue-rollback`"
            } else {
                ""
            }
        ),
        watch::Outcome::Detached => Err(Detached.into()),
    }
}

/// A ContinueUpdateRollback request, checked before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueRollback {
    pub stack: String,
    /// `Resource` in the root, or `NestedLogicalId.Resource` in a nested stack.
    pub resources_to_skip: Vec<String>,
    pub role_arn: Option<String>,
}

/// Builds the request for a stack in `status`; refuses any other state, and skip entries
/// that are not `Resource` or `Nested.Resource`.
pub fn continue_rollback_request(
    stack: &str,
    status: &str,
    skip: &[String],
    role_arn: Option<String>,
) -> Result<ContinueRollback> {
    if status != "UPDATE_ROLLBACK_FAILED" {
        bail!(
            "stack {stack} is {status}; --continue-rollback only helps a stack in UPDATE_ROLLBACK_FAILED"
        );
    }
    let re = regex::Regex::new(r"^[A-Za-z0-9]+(\.[A-Za-z0-9]+)?$").context("pattern")?;
    let mut resources_to_skip = Vec::new();
    for s in skip
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !re.is_match(s) {
            bail!(
                "--skip {s}: expected a logical id, `Resource` in the root or `NestedStack.Resource` in a nested stack (e.g. NodePoolGeneral.WorkerGroupUsWest2a)"
            );
        }
        resources_to_skip.push(s.to_string());
    }
    Ok(ContinueRollback {
        stack: stack.to_string(),
        resources_to_skip,
        role_arn,
    })
}

/// Recovers a stack stuck in UPDATE_ROLLBACK_FAILED and watches it to UPDATE_ROLLBACK_COMPLETE.
pub async fn continue_rollback(sdk: &SdkConfig, cfg: &Config, skip: &[String]) -> Result<()> {
    let cfn = aws::cloudformation(sdk);
    let name = &cfg.cluster_name;
    let Some(root) = stack::describe_stack(&cfn, name).await? else {
        bail!("there is no stack {name}");
    };
    let id = root.stack_id().unwrap_or(name).to_string();
    let r = continue_rollback_request(
        &id,
        &stack::status_of(&root),
        skip,
        cfg.cloudformation.role_arn.clone(),
    )?;
    cfn.continue_update_rollback()
        .stack_name(&r.stack)
        .set_resources_to_skip(Some(r.resources_to_skip.clone()).filter(|v| !v.is_empty()))
        .set_role_arn(r.role_arn.clone())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("ContinueUpdateRollback on {name}: {}", describe(&e)))?;
    println!("Continuing the rollback of {name}");
    match watch::watch(&cfn, &id).await? {
        watch::Outcome::Succeeded(s) | watch::Outcome::Failed { status: s, .. }
            if s == "UPDATE_ROLLBACK_COMPLETE" =>
        {
            println!("{name} is UPDATE_ROLLBACK_COMPLETE: back on its previous template.");
            Ok(())
        }
        watch::Outcome::Succeeded(s) => {
            println!("{name} is {s}.");
            Ok(())
        }
        watch::Outcome::Failed { status, cause } => bail!(
            "the rollback of {name} ended in {status}\n  root cause: {}\n  fix: skip the resources that cannot roll back with --skip",
            cause.unwrap_or_default()
        ),
        watch::Outcome::Detached => Err(Detached.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_rollback_builds_a_checked_request() {
        let r = continue_rollback_request(
            "arn:stack/prod",
            "UPDATE_ROLLBACK_FAILED",
            &["NodePoolGeneral.WorkerGroupA, ControlPlane".into()],
            None,
        )
        .unwrap();
        assert_eq!(
            r.resources_to_skip,
            vec![
                "NodePoolGeneral.WorkerGroupA".to_string(),
                "ControlPlane".into()
            ]
        );
        assert!(continue_rollback_request("s", "UPDATE_COMPLETE", &[], None).is_err());
        let e = continue_rollback_request("s", "UPDATE_ROLLBACK_FAILED", &["a/b".into()], None)
            .unwrap_err();
        assert!(e.to_string().contains("NestedStack.Resource"));
    }

    #[test]
    fn parses_json_and_yaml_templates() {
        assert_eq!(parse_template("{\"a\": 1}", "x").unwrap()["a"], 1);
        assert_eq!(parse_template("a: 1\n", "x").unwrap()["a"], 1);
    }
}
