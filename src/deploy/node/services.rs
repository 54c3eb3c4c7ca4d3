//! The node agent's long-running duties, run by systemd units the cloud-configs define:
//! `kube-aws node approve-csrs` on the controllers and `kube-aws node watch` (the
//! drainer) on the workers.

use super::agent::Agent;
use crate::node::approve;
use crate::node::drain::{self, Trigger};
use crate::node::plan;
use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use std::time::{Duration, Instant};

impl Agent {
    /// One pass over the pending kubelet-serving CSRs: approve what `approve::check`
    /// accepts, log the rest (a refused request stays pending; the kubelet retries).
    pub async fn approve_pending(&self, kubeconfig: &str) -> Result<(usize, usize)> {
        let (client, _) = crate::deploy::addons::client(&self.path(kubeconfig), None).await?;
        let api: Api<CertificateSigningRequest> = Api::all(client);
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing CSRs")?;
        let (mut approved, mut refused) = (0, 0);
        for csr in list.items {
            let v = serde_json::to_value(&csr)?;
            let decided = v
                .pointer("/status/conditions")
                .and_then(|c| c.as_array())
                .is_some_and(|c| !c.is_empty());
            let (Some(node), false) = (approve::node_of(&v), decided) else {
                continue;
            };
            let name = csr.metadata.name.clone().unwrap_or_default();
            let verdict =
                match crate::aws::node::instance_addresses(&self.sdk, &self.cfg.cluster, &node)
                    .await?
                {
                    None => Err(format!(
                        "no running instance of cluster {} is named {node}",
                        self.cfg.cluster
                    )),
                    Some((dns, ips)) => {
                        approve::check(&v, &node, &approve::InstanceAddresses { dns, ips })
                    }
                };
            match verdict {
                Ok(()) => {
                    let patch = serde_json::json!({"status": {"conditions": [{
                        "type": "Approved", "status": "True", "reason": "KubeAwsApproved",
                        "message": "kube-aws: the names and addresses are the node's own instance's"}]}});
                    api.patch_approval(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .with_context(|| format!("approving {name}"))?;
                    println!("approved {name} for {node}");
                    approved += 1;
                }
                Err(why) => {
                    println!("not approving {name} for {node}: {why}");
                    refused += 1;
                }
            }
        }
        Ok((approved, refused))
    }

    pub async fn approve_loop(&self, every: Duration) -> Result<()> {
        loop {
            if let Err(e) = self.approve_pending(plan::ADMIN_KUBECONFIG).await {
                eprintln!("approve-csrs: {e:#}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Cordons this node and evicts its pods (PodDisruptionBudgets respected), until
    /// they are gone or `timeout` passes. Returns how many pods were evicted.
    pub async fn drain(&self, kubeconfig: &str, timeout: Duration) -> Result<usize> {
        let (client, _) = crate::deploy::addons::client(&self.path(kubeconfig), None).await?;
        let node = &self.me.node_name;
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"unschedulable": true}})),
            )
            .await
            .with_context(|| format!("cordoning {node}"))?;
        println!("cordoned {node}");
        let pods: Api<Pod> = Api::all(client.clone());
        let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let deadline = Instant::now() + timeout;
        let mut evicted = 0;
        loop {
            let list = pods.list(&lp).await.context("listing the node's pods")?;
            let values: Vec<serde_json::Value> = list
                .items
                .iter()
                .filter_map(|p| serde_json::to_value(p).ok())
                .collect();
            let todo = drain::evictable(&values);
            if todo.is_empty() {
                println!("drained {node}: {evicted} pods evicted");
                return Ok(evicted);
            }
            for (ns, name) in &todo {
                let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                match api.evict(name, &EvictParams::default()).await {
                    Ok(_) => {
                        evicted += 1;
                        println!("evicted {ns}/{name}");
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    // 429: a PodDisruptionBudget does not allow it yet.
                    Err(kube::Error::Api(s)) if s.code == 429 => {
                        println!("{ns}/{name}: {} (will retry)", s.message);
                    }
                    Err(e) => eprintln!("evicting {ns}/{name}: {e}"),
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} pods still on {node} after {}s",
                    todo.len(),
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    /// Polls the metadata service; on a spot notice or the lifecycle state Terminated,
    /// drains, and (lifecycle) completes the action only after the drain, so Auto
    /// Scaling terminates the instance only then. `once`: one poll (tests, debugging).
    pub async fn watch(&self, every: Duration, once: bool) -> Result<Option<Trigger>> {
        let Some(d) = self.cfg.kubernetes.as_ref().and_then(|k| k.drain.clone()) else {
            bail!("this node config has no drain section: `kube-aws node watch` runs on workers");
        };
        loop {
            let spot = self.imds.get("meta-data/spot/instance-action").await?;
            let state = self
                .imds
                .get("meta-data/autoscaling/target-lifecycle-state")
                .await?;
            if let Some(t) = drain::trigger(spot.as_deref(), state.as_deref()) {
                println!("{t:?}: draining {}", self.me.node_name);
                let timeout = Duration::from_secs(d.timeout_seconds);
                if let Err(e) = self.drain(plan::KUBELET_KUBECONFIG, timeout).await {
                    eprintln!("drain did not finish: {e:#}");
                }
                if t == Trigger::Terminating {
                    let group = crate::aws::node::instance_group(&self.sdk, &self.me.instance_id)
                        .await?
                        .ok_or_else(|| {
                            anyhow!("{} is in no auto scaling group", self.me.instance_id)
                        })?;
                    crate::aws::node::complete_lifecycle(
                        &self.sdk,
                        &group,
                        &d.lifecycle_hook,
                        &self.me.instance_id,
                    )
                    .await?;
                    println!("lifecycle action {} of {group} completed", d.lifecycle_hook);
                }
                return Ok(Some(t));
            }
            if once {
                return Ok(None);
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Where a controller records the add-ons pointer it applied, and when.
pub const ADDONS_STAMP: &str = "/run/kube-aws/addons.applied";

impl Agent {
    /// The controllers' add-ons unit (`kube-aws-addons.timer`): reads the pointer the
    /// add-ons stack publishes, fetches the bundle and checks its sha256, completes its
    /// Secrets in memory (each private part decrypted by KMS under its own file's
    /// context, never written to disk) and applies it with the code `kube-aws addons
    /// apply` uses: server-side, field manager `kube-aws`, in the bundle's stages. Applied
    /// within the hour with the same pointer: nothing to do; hourly, the same objects
    /// again, which undoes hand edits to fields kube-aws manages.
    /// Rotates the bootstrap token (node::token): if the published one has no Secret or
    /// expires within RENEW_BELOW_HOURS, creates a new token Secret, then publishes the
    /// token KMS-encrypted at the fixed key joining nodes read. In that order, so the
    /// published token always exists in the API.
    pub async fn rotate_token(&self) -> Result<String> {
        use crate::node::token;
        use k8s_openapi::api::core::v1::Secret;
        let kms_key = self
            .cfg
            .kubernetes
            .as_ref()
            .and_then(|k| k.token_kms_key.clone())
            .ok_or_else(|| anyhow!("this node config has no token KMS key: `kube-aws node rotate-token` runs on controllers"))?;
        let file = crate::pki::spec::BOOTSTRAP_TOKEN;
        let key = format!(
            "{}/{}",
            self.cfg.prefix,
            crate::model::ids::BOOTSTRAP_TOKEN_CURRENT
        );
        // An unreadable published token (missing, or encrypted under a key since
        // replaced) is replaced, or joins would stop working once it expires.
        let published = match self.decrypt(file, &key).await {
            Ok(b) => String::from_utf8(b).unwrap_or_default(),
            Err(e) => {
                eprintln!("the published bootstrap token cannot be read ({e:#}): replacing it");
                String::new()
            }
        };
        let (client, _) =
            crate::deploy::addons::client(&self.path(plan::ADMIN_KUBECONFIG), None).await?;
        let secrets: Api<Secret> = Api::namespaced(client, "kube-system");
        let expiration = match token::token_id(&published) {
            Some(id) => secrets
                .get_opt(&format!("bootstrap-token-{id}"))
                .await
                .with_context(|| format!("reading the Secret of bootstrap token {id}"))?
                .and_then(|s| s.data)
                .and_then(|d| d.get("expiration").cloned())
                .and_then(|b| String::from_utf8(b.0).ok()),
            None => None,
        };
        let now = time::OffsetDateTime::now_utc();
        if !token::needs_new(expiration.as_deref(), now) {
            return Ok(format!(
                "bootstrap token {} is valid until {}",
                token::token_id(&published).unwrap_or("?"),
                expiration.unwrap_or_default()
            ));
        }
        let fresh = crate::pki::generate::bootstrap_token()
            .map_err(|e| anyhow!("generating a bootstrap token: {e}"))?;
        let body = token::secret(&fresh, now)
            .ok_or_else(|| anyhow!("generated a malformed bootstrap token"))?;
        let id = token::token_id(&fresh).unwrap_or_default().to_string();
        secrets
            .patch(
                &format!("bootstrap-token-{id}"),
                &PatchParams::apply(crate::model::ids::FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .with_context(|| format!("creating the Secret of bootstrap token {id}"))?;
        let blob = crate::aws::node::encrypt(
            &self.sdk,
            &kms_key,
            fresh.as_bytes(),
            &self.cfg.cluster,
            file,
        )
        .await?;
        crate::aws::node::put_object(&self.sdk, &self.cfg.bucket, &key, blob).await?;
        // A token from before rotation (kube-aws used `ttl: 0s`) has no expiration, and
        // TokenCleaner deletes only expired tokens: give it one TTL from now.
        let all = secrets
            .list(&ListParams::default().fields("type=bootstrap.kubernetes.io/token"))
            .await
            .context("listing bootstrap token Secrets")?;
        for s in all.items {
            let name = s.metadata.name.clone().unwrap_or_default();
            let forever = s
                .data
                .as_ref()
                .is_none_or(|d| !d.contains_key("expiration"));
            if forever
                && name.starts_with("bootstrap-token-")
                && name != format!("bootstrap-token-{id}")
            {
                let expires = body["stringData"]["expiration"].clone();
                let patch = serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": name, "namespace": "kube-system"},
                    "stringData": {"expiration": expires},
                });
                secrets
                    .patch(
                        &name,
                        &PatchParams::apply(crate::model::ids::FIELD_MANAGER).force(),
                        &Patch::Apply(&patch),
                    )
                    .await
                    .with_context(|| format!("giving {name} an expiration"))?;
                eprintln!("{name} had no expiration: it now expires {expires}");
            }
        }
        Ok(format!(
            "bootstrap token {id} created (expires {}), published at s3://{}/{key}",
            body["stringData"]["expiration"]
                .as_str()
                .unwrap_or_default(),
            self.cfg.bucket
        ))
    }

    pub async fn apply_addons_bundle(&self, timeout: Duration) -> Result<String> {
        let param = self
            .cfg
            .kubernetes
            .as_ref()
            .and_then(|k| k.addons_parameter.clone())
            .ok_or_else(|| anyhow!("this node config names no add-ons parameter: `kube-aws node addons` runs on controllers"))?;
        let Some(pointer) = crate::aws::node::ssm_parameter(&self.sdk, &param).await? else {
            return Ok(format!("no add-ons: {param} is not set"));
        };
        let stamp = self.path(ADDONS_STAMP);
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(3600));
        if fresh && std::fs::read_to_string(&stamp).ok().as_deref() == Some(pointer.as_str()) {
            return Ok(format!("add-ons up to date ({pointer})"));
        }
        let (key, sha) = pointer
            .split_once(' ')
            .ok_or_else(|| anyhow!("{param} is not `<s3 key> <sha256>`: {pointer}"))?;
        let body = crate::aws::node::get_object(&self.sdk, &self.cfg.bucket, key).await?;
        let got = crate::pki::envelope::sha256_hex(&body);
        if got != sha {
            bail!(
                "s3://{}/{key} has sha256 {got}, not {sha}: refusing to apply it",
                self.cfg.bucket
            );
        }
        let bundle: crate::addons::Bundle = serde_json::from_slice(&body)
            .with_context(|| format!("s3://{}/{key} is not an add-ons bundle", self.cfg.bucket))?;
        let mut plain = std::collections::BTreeMap::new();
        for f in bundle.secrets.iter().flat_map(|s| s.fill.values()) {
            if !plain.contains_key(&f.file) {
                plain.insert(f.file.clone(), self.decrypt(&f.file, &f.key).await?);
            }
        }
        let secrets = bundle.filled_secrets(|file| {
            plain
                .get(file)
                .cloned()
                .ok_or_else(|| anyhow!("{file} was not decrypted"))
        })?;
        let (client, _) =
            crate::deploy::addons::client(&self.path(plan::ADMIN_KUBECONFIG), None).await?;
        let deadline = Instant::now() + timeout;
        // Any answer from the API server means it is up; only a transport error waits.
        while let Err(e @ (kube::Error::HyperError(_) | kube::Error::Service(_))) =
            client.apiserver_version().await
        {
            if Instant::now() > deadline {
                bail!(
                    "the API server did not answer within {}s: {e}",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let opts = crate::deploy::addons::ApplyOptions {
            dry_run: false,
            timeout,
        };
        let done = crate::deploy::addons::apply(
            client,
            "the local API server",
            &bundle,
            &secrets,
            &opts,
            |a| {
                println!("  {} {}", a.object, a.outcome);
            },
        )
        .await?;
        drop(plain);
        self.write(ADDONS_STAMP, 0o600, pointer.as_bytes())?;
        Ok(format!("add-ons applied: {key} ({} objects)", done.len()))
    }
}
