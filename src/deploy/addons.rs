//! `kube-aws addons apply`: the add-ons bundle (src/addons), its Secrets filled from
//! credentials/, applied to a running cluster by server-side apply with one field
//! manager, in the bundle's stages: namespaces and CRDs, a wait until the CRDs are
//! established, the Secrets, then the rest in order. The controllers' kube-aws-addons
//! unit applies the same bundle the same way with kubectl.

use crate::addons::{Bundle, describe};
use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The field manager of every object kube-aws applies (the controllers use it too).
pub use crate::model::ids::FIELD_MANAGER;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Server-side dry run: the API server validates and admits, nothing is stored.
    pub dry_run: bool,
    /// How long to wait for CRDs to be established and for the catalog's webhook.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        })
    }
}

/// One applied object: `Kind namespace/name` and what happened to it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub object: String,
    pub outcome: Outcome,
    /// Why a dry run could not send it (its kind or namespace is new in this bundle).
    pub note: Option<&'static str>,
}

/// A client for the kubeconfig's current (or named) context, and the server's URL.
pub async fn client(kubeconfig: &Path, context: Option<&str>) -> Result<(kube::Client, String)> {
    let fix = "fix: pass the kubeconfig `kube-aws up` wrote (`--kubeconfig kubeconfig`) or one with admin rights";
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| anyhow!("reading {}: {e}\n  {fix}", kubeconfig.display()))?;
    let opts = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| anyhow!("{}: {e}\n  {fix}", kubeconfig.display()))?;
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow!("{}: {e}\n  {fix}", kubeconfig.display()))?;
    Ok((client, url))
}

/// What the server adds and what apply cannot change: left out when comparing.
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "resourceVersion",
            "managedFields",
            "generation",
            "creationTimestamp",
            "uid",
        ] {
            m.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// Is this failure worth another try: the server, or the Service Catalog's webhook
/// (whose unreadiness the API server reports as a 500), not ready yet?
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

struct Applier<'a> {
    client: kube::Client,
    url: &'a str,
    opts: &'a ApplyOptions,
    kinds: HashMap<String, (ApiResource, bool)>,
    /// Namespaces a dry run found missing: the server cannot admit objects into them.
    new_namespaces: std::collections::HashSet<String>,
    deadline: Instant,
}

impl Applier<'_> {
    fn unreachable(&self, e: &kube::Error) -> anyhow::Error {
        let mut why = e.to_string();
        let mut cur = std::error::Error::source(e);
        while let Some(c) = cur {
            let c_text = c.to_string();
            if !why.ends_with(&c_text) {
                why = format!("{why}: {c_text}");
            }
            cur = c.source();
        }
        anyhow!(
            "cannot reach the Kubernetes API at {}: {why}\n  fix: check that the cluster is up (`kube-aws status`) and that this machine can reach its API endpoint",
            self.url
        )
    }

    async fn resource(&mut self, doc: &Value) -> Result<Option<(ApiResource, bool)>> {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let key = format!("{api_version}/{kind}");
        if let Some(r) = self.kinds.get(&key) {
            return Ok(Some(r.clone()));
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((ar, caps)) => {
                let r = (ar, caps.scope == Scope::Namespaced);
                self.kinds.insert(key, r.clone());
                Ok(Some(r))
            }
            // Discovery has not seen the kind: in a dry run its CRD is not stored yet.
            Err(kube::Error::Discovery(_)) if self.opts.dry_run => Ok(None),
            Err(kube::Error::Api(s)) if self.opts.dry_run && s.code == 404 => Ok(None),
            Err(e @ (kube::Error::HyperError(_) | kube::Error::Service(_))) => {
                Err(self.unreachable(&e))
            }
            Err(e) => Err(anyhow!("{}: {e}", describe(doc))),
        }
    }

    async fn apply(&mut self, doc: &Value) -> Result<Applied> {
        let object = describe(doc);
        let not_sent = |note| Applied {
            object: object.clone(),
            outcome: Outcome::Created,
            note: Some(note),
        };
        if let Some(ns) = doc["metadata"]["namespace"].as_str()
            && self.new_namespaces.contains(ns)
        {
            return Ok(not_sent("its namespace is new: not sent in a dry run"));
        }
        let Some((ar, namespaced)) = self.resource(doc).await? else {
            return Ok(not_sent("its kind is new: not sent in a dry run"));
        };
        let name = doc["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow!("{object}: metadata.name is missing"))?;
        let api: Api<DynamicObject> = match (namespaced, doc["metadata"]["namespace"].as_str()) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (true, None) => bail!("{object}: a namespaced kind needs metadata.namespace"),
            (false, _) => Api::all_with(self.client.clone(), &ar),
        };
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = self.opts.dry_run;
        let mut pause = Duration::from_secs(2);
        loop {
            let result = async {
                let before = api.get_opt(name).await?;
                let after = api.patch(name, &params, &Patch::Apply(doc)).await?;
                Ok::<_, kube::Error>((before, after))
            }
            .await;
            match result {
                Ok((before, after)) => {
                    let outcome = match before {
                        None => Outcome::Created,
                        Some(b) => {
                            let same = if self.opts.dry_run {
                                comparable(&serde_json::to_value(&b)?)
                                    == comparable(&serde_json::to_value(&after)?)
                            } else {
                                b.metadata.resource_version == after.metadata.resource_version
                            };
                            if same {
                                Outcome::Unchanged
                            } else {
                                Outcome::Configured
                            }
                        }
                    };
                    if self.opts.dry_run
                        && outcome == Outcome::Created
                        && doc["kind"] == "Namespace"
                    {
                        self.new_namespaces.insert(name.to_string());
                    }
                    return Ok(Applied {
                        object,
                        outcome,
                        note: None,
                    });
                }
                Err(e) if transient(&e) && Instant::now() + pause < self.deadline => {
                    eprintln!("  {object}: {e}; retrying in {}s", pause.as_secs());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(15));
                }
                Err(e @ (kube::Error::HyperError(_) | kube::Error::Service(_))) => {
                    return Err(self.unreachable(&e));
                }
                Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => {
                    return Err(anyhow!(
                        "applying {object}: {} ({})\n  fix: use a kubeconfig with cluster-admin rights, such as the one `kube-aws render credentials` writes",
                        s.message,
                        s.code
                    ));
                }
                Err(e) => return Err(anyhow!("applying {object}: {e}")),
            }
        }
    }

    async fn wait_established(&self, names: &[String]) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for name in names {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let cond = kube::runtime::wait::await_condition(
                api.clone(),
                name,
                kube::runtime::wait::conditions::is_crd_established(),
            );
            match tokio::time::timeout(left, cond).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("waiting for CRD {name}: {e}"),
                Err(_) => bail!(
                    "CRD {name} was not established within {}s\n  fix: `kubectl describe crd {name}` shows why; rerun with a longer --timeout",
                    self.opts.timeout.as_secs()
                ),
            }
        }
        Ok(())
    }
}

/// Applies `bundle` with its Secrets already filled (`secrets`), calling `progress` after
/// each object. Idempotent: a second run reports every object unchanged.
pub async fn apply(
    client: kube::Client,
    url: &str,
    bundle: &Bundle,
    secrets: &[Value],
    opts: &ApplyOptions,
    mut progress: impl FnMut(&Applied),
) -> Result<Vec<Applied>> {
    let mut a = Applier {
        client,
        url,
        opts,
        kinds: HashMap::new(),
        new_namespaces: Default::default(),
        deadline: Instant::now() + opts.timeout,
    };
    let mut done = Vec::new();
    for doc in &bundle.first {
        let r = a.apply(doc).await?;
        progress(&r);
        done.push(r);
    }
    if !opts.dry_run {
        eprintln!(
            "  waiting for {} CRDs to be established (up to {}s)",
            bundle.crd_names().len(),
            opts.timeout.as_secs()
        );
        a.wait_established(&bundle.crd_names())
            .await
            .context("the add-ons' CRDs")?;
    }
    for doc in secrets.iter().chain(&bundle.manifests) {
        let r = a.apply(doc).await?;
        progress(&r);
        done.push(r);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compares_without_server_fields() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1", "managedFields": [1]}, "spec": {"a": 1}, "status": {"s": 1}});
        let b = json!({"metadata": {"name": "x", "resourceVersion": "2"}, "spec": {"a": 1}});
        assert_eq!(comparable(&a), comparable(&b));
        let c = json!({"metadata": {"name": "x"}, "spec": {"a": 2}});
        assert_ne!(comparable(&a), comparable(&c));
    }

    #[test]
    fn retries_only_what_may_pass_later() {
        let status = |code: u16, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.into(),
                ..Default::default()
            }))
        };
        assert!(transient(&status(
            500,
            "Internal error occurred: failed calling webhook \"validating.clusterservicebrokers.servicecatalog.k8s.io\""
        )));
        assert!(transient(&status(503, "the server is currently unable")));
        assert!(transient(&status(429, "too many requests")));
        assert!(!transient(&status(422, "spec.url: Invalid value")));
        assert!(!transient(&status(403, "forbidden")));
    }
}
