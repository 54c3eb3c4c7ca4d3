//! Plan: what `update` would change, from the rendered assets and what is deployed.
//! Pure: the deployed side (templates, parameters, tags, cloud-configs) is fetched by
//! `deploy::fetch_deployed` and handed in, so every classification here is unit-tested.
//!
//! A stack is named `root`, `network`, `etcd`, `control-plane` or `node-pool/<pool>`.
//! A group of instances *rolls* when CloudFormation will replace its instances: an
//! auto scaling group's launch template, instance mix or subnets changed (rolling or
//! replacing update, by the group's UpdatePolicy), or an instance's launch template did.

pub mod classify;
pub mod targets;

use crate::model::stack_id::StackId;
use crate::render::{AssetSet, Kind};
use base64::Engine;
use regex::Regex;
use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

/// What is deployed, as fetched from CloudFormation and S3.
#[derive(Debug, Clone, Default)]
pub struct Deployed {
    /// The root stack's template, as GetTemplate returns it.
    pub root: Value,
    /// The root stack's parameters.
    pub parameters: BTreeMap<String, String>,
    /// The root stack's tags (CloudFormation propagates them to every nested stack).
    pub tags: BTreeMap<String, String>,
    /// Templates of the nested stacks, by logical id in the root.
    pub nested: BTreeMap<String, Value>,
    /// Bodies of the deployed cloud-configs, by key relative to the cluster prefix
    /// (`userdata/worker-general-<hash>.yaml`); absent when S3 no longer has one.
    pub cloud_configs: BTreeMap<String, String>,
    /// The add-ons bundle the deployed `addons` stack points to: its S3 key and body
    /// (None for the body when S3 no longer has it).
    pub addons_bundle: Option<(String, Option<Vec<u8>>)>,
}

/// What the local render wants deployed, besides the assets.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub parameters: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Add,
    Modify,
    Remove,
}

/// CloudFormation's replacement verdict for a resource change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Replacement {
    /// Updated in place.
    False,
    /// A new physical resource replaces the old one.
    True,
    /// Depends on values known only during the update.
    Conditional,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceChange {
    pub logical_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub action: Action,
    /// Only for `modify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<Replacement>,
    /// Changed properties (`Properties.X`, `UpdatePolicy`, `DependsOn`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Where the replacement verdict comes from: `kube-aws` (its property table) or
    /// `change-set` (CloudFormation's own, with `diff --change-sets`).
    pub verdict_from: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackPlan {
    pub name: String,
    /// Logical id in the root (`Root` for the root itself).
    pub logical_id: String,
    pub action: Action,
    pub resources: Vec<ResourceChange>,
    /// Template sections other than Resources that changed (Parameters.AmiId, Outputs, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<String>,
    /// Unified diff of the template (YAML view, user data decoded). Text output only.
    #[serde(skip)]
    pub diff: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserdataPlan {
    /// `etcd`, `controller`, `worker-<pool>`.
    pub role: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered_key: Option<String>,
    #[serde(skip)]
    pub diff: String,
}

/// One Kubernetes object of the add-ons that the controllers will apply differently.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectChange {
    /// `Kind namespace/name`.
    pub object: String,
    pub action: Action,
    #[serde(skip)]
    pub diff: String,
}

/// One group of instances that will be replaced.
#[derive(Debug, Clone, Serialize)]
pub struct Roll {
    /// The stack, e.g. `node-pool/general`.
    pub stack: String,
    /// The pool name for node pools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Why, in words: `launch template: InstanceType`, `cloud-config worker-general`, …
    pub reasons: Vec<String>,
    /// Auto scaling groups or instances, in the order they roll within the stack.
    pub groups: Vec<String>,
    /// How: `rolling: batch 1, at least 2 in service per group, waiting on signals`,
    /// `replacing: a new group comes up before the old one goes`, `replaced`.
    pub how: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TagChange {
    pub added: BTreeMap<String, String>,
    pub removed: BTreeMap<String, String>,
    pub changed: BTreeMap<String, (String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub changed: bool,
    /// Changed stacks, root first.
    pub stacks: Vec<StackPlan>,
    /// Stacks with no change.
    pub unchanged: Vec<String>,
    pub userdata: Vec<UserdataPlan>,
    /// Add-on objects (Service Catalog, broker) whose manifest changes.
    pub addons: Vec<ObjectChange>,
    pub rolls: Vec<Roll>,
    /// Stacks that roll, in waves: a wave starts when the previous one completed.
    pub roll_order: Vec<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<TagChange>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, (String, String)>,
    /// With `--targets`: the stacks the update will touch; the others keep their
    /// deployed templates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn changed_stack_names(&self) -> Vec<&str> {
        self.stacks.iter().map(|s| s.name.as_str()).collect()
    }
    pub fn rolling_pools(&self) -> Vec<&str> {
        self.rolls
            .iter()
            .filter_map(|r| r.pool.as_deref())
            .collect()
    }

    /// The first of two waves `update` applies when the plan changes both the cluster's
    /// core (network, etcd, control plane) and node pools: the core alone. The root no
    /// longer orders pools after the control plane (they are created at once), yet the
    /// version skew policy allows no kubelet newer than the kube-apiserver
    /// (https://kubernetes.io/releases/version-skew-policy/#kubelet), and kubeadm's
    /// upgrade guide upgrades the control plane before the nodes.
    pub fn core_wave(&self) -> Option<Vec<String>> {
        self.core_wave_unless(&[])
    }

    /// `core_wave`, unless the network would drop an output (`removed_network_outputs`):
    /// pools kept as deployed in the first wave still read it, so that change goes in
    /// one update, where CloudFormation deletes the old resources only after every
    /// stack moved.
    pub fn core_wave_unless(&self, removed_network_outputs: &[String]) -> Option<Vec<String>> {
        if !removed_network_outputs.is_empty() && self.changed_stack_names().contains(&"network") {
            return None;
        }
        let names = self.changed_stack_names();
        let ids: Vec<StackId> = names.iter().filter_map(|n| StackId::from_name(n)).collect();
        let core: Vec<String> = ids
            .iter()
            .filter(|i| i.is_core())
            .map(StackId::name)
            .collect();
        let pools = ids.iter().any(|i| i.pool().is_some());
        (!core.is_empty() && pools).then_some(core)
    }
}

/// Outputs of `old` that `new` no longer has.
pub fn removed_outputs(old: &Value, new: &Value) -> Vec<String> {
    let keys = |t: &Value| -> BTreeSet<String> {
        t.get("Outputs")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    keys(old).difference(&keys(new)).cloned().collect()
}

/// A nested stack of the root: its logical id, name and template key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedRef {
    pub logical_id: String,
    pub name: String,
    /// Key relative to the cluster prefix: `stacks/node-pool-general-<hash>.json`.
    pub rel_key: String,
}

static HASHED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:stacks|userdata)/(.+)-[0-9a-f]{16}\.(?:json|yaml)$")
        .unwrap_or_else(|_| unreachable!())
});
static NODE_CONFIG_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^nodeconfig/(.+)-[0-9a-f]{16}\.json$").unwrap_or_else(|_| unreachable!())
});
/// What a user-data stub fetches: the cloud-config, the node config and the node agent.
static USERDATA_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"/(userdata/[A-Za-z0-9._-]+-[0-9a-f]{16}\.yaml|nodeconfig/[A-Za-z0-9._-]+-[0-9a-f]{16}\.json|bin/kube-aws-[A-Za-z0-9._-]+-[0-9a-f]{16})")
        .unwrap_or_else(|_| unreachable!())
});

/// The plan entry of the node agent binary (changes of any architecture's binary).
pub const NODE_AGENT: &str = "node-agent";
/// Suffix of the plan entry of a role's node config (`worker-general/node-config`).
pub const NODE_CONFIG: &str = "/node-config";

/// `stacks/node-pool-general-0123456789abcdef.json` → `node-pool/general`.
pub fn stack_name_of_key(rel_key: &str) -> Option<String> {
    let stem = HASHED.captures(rel_key)?.get(1)?.as_str();
    Some(match StackId::from_key_stem(stem) {
        Some(id) => id.name(),
        None => stem.to_string(),
    })
}

/// The stack whose instances run a cloud-config role: `worker-<pool>` → `node-pool/<pool>`,
/// `controller` → `control-plane`, `etcd` → `etcd` (StackId::from_role).
pub fn stack_of_role(role: &str) -> String {
    let role = role.strip_suffix(NODE_CONFIG).unwrap_or(role);
    StackId::from_role(role)
        .map(|id| id.name())
        .unwrap_or_else(|| role.to_string())
}

/// The inverse of `stack_of_role` (StackId::role).
pub fn role_of_stack(stack: &str) -> String {
    StackId::from_name(stack)
        .and_then(|id| id.role())
        .unwrap_or_else(|| stack.to_string())
}

/// The nested stacks a root template points at, by their TemplateURL
/// (`{"Fn::Sub": "${AssetsBaseUrl}/stacks/…"}`).
pub fn nested_refs(root: &Value) -> Vec<NestedRef> {
    let mut out = Vec::new();
    let Some(res) = root.get("Resources").and_then(Value::as_object) else {
        return out;
    };
    for (id, r) in res {
        if r.get("Type").and_then(Value::as_str) != Some("AWS::CloudFormation::Stack") {
            continue;
        }
        let url = r.pointer("/Properties/TemplateURL");
        let s = url
            .and_then(|u| u.get("Fn::Sub"))
            .and_then(Value::as_str)
            .or_else(|| url.and_then(Value::as_str))
            .unwrap_or_default();
        let rel = s
            .split_once("${AssetsBaseUrl}/")
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| s.to_string());
        let name = stack_name_of_key(&rel).unwrap_or_else(|| id.clone());
        out.push(NestedRef {
            logical_id: id.clone(),
            name,
            rel_key: rel,
        });
    }
    out
}

/// Every cloud-config key a template's user data stubs point at.
pub fn userdata_keys(template: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk_userdata(template, &mut |text| {
        for c in USERDATA_KEY.captures_iter(text) {
            out.insert(c[1].to_string());
        }
    });
    out
}

fn walk_userdata(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "UserData" {
                    if let Some(s) = x.as_str() {
                        f(&decode_b64(s).unwrap_or_else(|| s.to_string()));
                    }
                } else {
                    walk_userdata(x, f);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk_userdata(x, f)),
        _ => {}
    }
}

fn decode_b64(s: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    String::from_utf8(bytes).ok()
}

/// The YAML view of a template that diffs show: keys sorted, user data decoded.
pub fn review_text(template: &Value) -> String {
    fn decode(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        let x = match (k.as_str(), x.as_str()) {
                            ("UserData", Some(s)) => decode_b64(s)
                                .map(|t| Value::String(format!("# base64-decoded\n{t}")))
                                .unwrap_or_else(|| x.clone()),
                            _ => decode(x),
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(decode).collect()),
            other => other.clone(),
        }
    }
    serde_yaml_ng::to_string(&decode(template))
        .unwrap_or_else(|_| serde_json::to_string_pretty(template).unwrap_or_default())
}

/// A unified diff with `context` lines, headed by the two labels.
pub fn unified(old: &str, new: &str, from: &str, to: &str, context: usize) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(context)
        .header(from, to)
        .to_string()
}

fn resources(t: &Value) -> BTreeMap<String, Value> {
    t.get("Resources")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Resource-level and section-level changes between two templates.
pub fn compare_templates(old: &Value, new: &Value) -> (Vec<ResourceChange>, Vec<String>) {
    let (o, n) = (resources(old), resources(new));
    let mut changes = Vec::new();
    let ids: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for id in ids {
        let ty = |v: &Value| {
            v.get("Type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        match (o.get(id), n.get(id)) {
            (None, Some(nv)) => changes.push(ResourceChange {
                logical_id: id.clone(),
                resource_type: ty(nv),
                action: Action::Add,
                replacement: None,
                changed: Vec::new(),
                verdict_from: "kube-aws",
            }),
            (Some(ov), None) => changes.push(ResourceChange {
                logical_id: id.clone(),
                resource_type: ty(ov),
                action: Action::Remove,
                replacement: None,
                changed: Vec::new(),
                verdict_from: "kube-aws",
            }),
            (Some(ov), Some(nv)) if ov != nv => {
                let changed = changed_paths(ov, nv);
                let resource_type = ty(nv);
                let replacement = if ty(ov) != resource_type {
                    Replacement::True
                } else {
                    classify::replacement(&resource_type, &changed, nv)
                };
                changes.push(ResourceChange {
                    logical_id: id.clone(),
                    resource_type,
                    action: Action::Modify,
                    replacement: Some(replacement),
                    changed,
                    verdict_from: "kube-aws",
                });
            }
            _ => {}
        }
    }
    let mut sections = Vec::new();
    for sec in [
        "Parameters",
        "Outputs",
        "Conditions",
        "Mappings",
        "Description",
    ] {
        let (a, b) = (old.get(sec), new.get(sec));
        if a == b {
            continue;
        }
        match (a.and_then(Value::as_object), b.and_then(Value::as_object)) {
            (Some(a), Some(b)) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    if a.get(k) != b.get(k) {
                        sections.push(format!("{sec}.{k}"));
                    }
                }
            }
            _ => sections.push(sec.to_string()),
        }
    }
    (changes, sections)
}

/// Top-level attributes of a resource that differ, properties one level deep:
/// `Properties.LaunchTemplateData`, `UpdatePolicy`, `DependsOn`.
fn changed_paths(o: &Value, n: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = o
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .chain(n.as_object().into_iter().flat_map(|m| m.keys()))
        .collect();
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a == b {
            continue;
        }
        if k == "Properties" {
            let empty = serde_json::Map::new();
            let (pa, pb) = (
                a.and_then(Value::as_object).unwrap_or(&empty),
                b.and_then(Value::as_object).unwrap_or(&empty),
            );
            let pk: BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
            for p in pk {
                if pa.get(p) != pb.get(p) {
                    out.push(format!("Properties.{p}"));
                }
            }
        } else {
            out.push(k.clone());
        }
    }
    out
}

/// Everything `plan` needs, borrowed.
pub struct Inputs<'a> {
    pub cluster: &'a str,
    /// The cluster's S3 prefix (`<prefix>/<cluster>`), which asset keys start with.
    pub prefix: &'a str,
    pub assets: &'a AssetSet,
    pub desired: &'a Desired,
    pub deployed: &'a Deployed,
    /// Canonical stack names to restrict the update to (see `targets::resolve`).
    pub targets: Option<&'a [String]>,
    pub context: usize,
}

/// Compares the rendered assets with the deployed cluster.
pub fn plan(i: &Inputs) -> Plan {
    let rendered_root: Value = i
        .assets
        .root()
        .and_then(|a| serde_json::from_slice(&a.body).ok())
        .unwrap_or(Value::Null);
    let by_key: BTreeMap<String, &crate::render::Asset> = i
        .assets
        .assets
        .values()
        .map(|a| {
            let rel = a
                .key
                .strip_prefix(&format!("{}/", i.prefix))
                .unwrap_or(&a.key)
                .to_string();
            (rel, a)
        })
        .collect();
    let new_refs = nested_refs(&rendered_root);
    let old_refs = nested_refs(&i.deployed.root);
    let in_target = |name: &str| match i.targets {
        None => true,
        Some(t) => name == "root" || t.iter().any(|x| x == name),
    };

    let mut stacks = Vec::new();
    let mut unchanged = Vec::new();
    let mut new_templates: BTreeMap<String, Value> = BTreeMap::new();

    // Nested stacks, by logical id.
    let mut ids: Vec<&String> = new_refs
        .iter()
        .map(|r| &r.logical_id)
        .chain(old_refs.iter().map(|r| &r.logical_id))
        .collect();
    ids.sort();
    ids.dedup();
    let mut nested_plans = Vec::new();
    for id in ids {
        let new = new_refs.iter().find(|r| &r.logical_id == id);
        let old = old_refs.iter().find(|r| &r.logical_id == id);
        let name = new.or(old).map(|r| r.name.clone()).unwrap_or_default();
        let new_t: Option<Value> = new
            .and_then(|r| by_key.get(&r.rel_key))
            .and_then(|a| serde_json::from_slice(&a.body).ok());
        if let Some(t) = &new_t {
            new_templates.insert(name.clone(), t.clone());
        }
        let old_t = i.deployed.nested.get(id);
        let (action, old_v, new_v) = match (old_t, &new_t) {
            (Some(o), Some(n)) if o == n => {
                unchanged.push(name);
                continue;
            }
            (Some(o), Some(n)) => (Action::Modify, o.clone(), n.clone()),
            (None, Some(n)) => (Action::Add, Value::Null, n.clone()),
            (Some(o), None) => (Action::Remove, o.clone(), Value::Null),
            (None, None) => continue,
        };
        if !in_target(&name) {
            unchanged.push(format!("{name} (changed; not targeted)"));
            continue;
        }
        let (resources, sections) = compare_templates(&old_v, &new_v);
        let diff = unified(
            &if old_v.is_null() {
                String::new()
            } else {
                review_text(&old_v)
            },
            &if new_v.is_null() {
                String::new()
            } else {
                review_text(&new_v)
            },
            &format!("deployed/{name}"),
            &format!("rendered/{name}"),
            i.context,
        );
        nested_plans.push(StackPlan {
            name,
            logical_id: id.clone(),
            action,
            resources,
            sections,
            diff,
        });
    }

    // The root: with targets, the template `update` will really send.
    let root_sent = match i.targets {
        Some(t) => targets::targeted_root(&rendered_root, &i.deployed.root, &new_refs, t),
        None => rendered_root.clone(),
    };
    let mut parameters = BTreeMap::new();
    for (k, v) in &i.desired.parameters {
        let old = i.deployed.parameters.get(k).cloned().unwrap_or_default();
        if &old != v {
            parameters.insert(k.clone(), (old, v.clone()));
        }
    }
    let tags = tag_change(&i.deployed.tags, &i.desired.tags);
    if root_sent != i.deployed.root || !parameters.is_empty() || tags.is_some() {
        let (resources, mut sections) = compare_templates(&i.deployed.root, &root_sent);
        sections.extend(parameters.keys().map(|k| format!("StackParameters.{k}")));
        if tags.is_some() {
            sections.push("StackTags".into());
        }
        stacks.push(StackPlan {
            name: "root".into(),
            logical_id: "Root".into(),
            action: Action::Modify,
            resources,
            sections,
            diff: unified(
                &review_text(&i.deployed.root),
                &review_text(&root_sent),
                "deployed/root",
                "rendered/root",
                i.context,
            ),
        });
    } else {
        unchanged.insert(0, "root".into());
    }
    stacks.extend(nested_plans);

    // Cloud-configs and node configs: rendered role → key, deployed role → key (from
    // the stubs); and the node agent binaries the stubs fetch.
    let mut deployed_cc: BTreeMap<String, String> = BTreeMap::new();
    let mut deployed_bins: BTreeSet<String> = BTreeSet::new();
    for t in i.deployed.nested.values() {
        for k in userdata_keys(t) {
            if let Some(role) = HASHED.captures(&k).and_then(|c| c.get(1)) {
                deployed_cc.insert(role.as_str().to_string(), k.clone());
            } else if let Some(role) = NODE_CONFIG_KEY.captures(&k).and_then(|c| c.get(1)) {
                deployed_cc.insert(format!("{}{NODE_CONFIG}", role.as_str()), k.clone());
            } else if k.starts_with("bin/") {
                deployed_bins.insert(k.clone());
            }
        }
    }
    let mut rendered_cc: BTreeMap<String, (String, String)> = BTreeMap::new();
    for a in i
        .assets
        .assets
        .values()
        .filter(|a| matches!(a.kind, Kind::CloudConfig | Kind::NodeConfig))
    {
        let role = match a.name.strip_prefix("nodeconfig/") {
            Some(r) => format!("{r}{NODE_CONFIG}"),
            None => a.name.trim_start_matches("userdata/").to_string(),
        };
        let rel = a
            .key
            .strip_prefix(&format!("{}/", i.prefix))
            .unwrap_or(&a.key)
            .to_string();
        rendered_cc.insert(role, (rel, String::from_utf8_lossy(&a.body).into_owned()));
    }
    let mut userdata = Vec::new();
    // A new kube-aws is a new node agent on every node whose stub fetches it: say so.
    let rendered_bins: BTreeSet<String> = i.assets.binaries.iter().map(|b| b.rel_key()).collect();
    if !deployed_bins.is_empty() && deployed_bins != rendered_bins {
        let mut diff = String::from("--- deployed node agent\n+++ rendered node agent\n");
        for k in deployed_bins.difference(&rendered_bins) {
            diff.push_str(&format!("-{k}\n"));
        }
        for k in rendered_bins.difference(&deployed_bins) {
            diff.push_str(&format!("+{k}\n"));
        }
        userdata.push(UserdataPlan {
            role: NODE_AGENT.into(),
            action: Action::Modify,
            deployed_key: deployed_bins.iter().next().cloned(),
            rendered_key: rendered_bins.iter().next().cloned(),
            diff,
        });
    }
    let roles: BTreeSet<&String> = deployed_cc.keys().chain(rendered_cc.keys()).collect();
    for role in roles {
        if !in_target(&stack_of_role(role)) {
            continue;
        }
        let old = deployed_cc.get(role);
        let new = rendered_cc.get(role);
        let (action, diff) = match (old, new) {
            (Some(o), Some((n, _))) if o == n => continue,
            (Some(o), Some((n, body))) => {
                let old_body = i
                    .deployed
                    .cloud_configs
                    .get(o)
                    .cloned()
                    .unwrap_or_else(|| format!("# {o}: not found in S3\n"));
                (Action::Modify, unified(&old_body, body, o, n, i.context))
            }
            (None, Some((n, body))) => (Action::Add, unified("", body, "/dev/null", n, i.context)),
            (Some(o), None) => (Action::Remove, format!("--- {o}\n+++ /dev/null\n")),
            (None, None) => continue,
        };
        userdata.push(UserdataPlan {
            role: role.clone(),
            action,
            deployed_key: old.cloned(),
            rendered_key: new.map(|(k, _)| k.clone()),
            diff,
        });
    }

    // Rolls.
    let mut rolls = Vec::new();
    let mut warnings = Vec::new();
    for s in stacks.iter().filter(|s| s.name != "root") {
        let pool = StackId::from_name(&s.name).and_then(|i| i.pool().map(str::to_string));
        match s.action {
            Action::Remove => {
                warnings.push(format!(
                    "{} is deleted: its nodes drain (lifecycle hook), then terminate",
                    s.name
                ));
                continue;
            }
            Action::Add => continue,
            Action::Modify => {}
        }
        let (Some(old_t), Some(new_t)) = (
            i.deployed.nested.get(&s.logical_id),
            new_templates.get(&s.name),
        ) else {
            continue;
        };
        if let Some(r) = classify::roll(&s.name, pool, old_t, new_t, &s.resources, &userdata) {
            if s.name == "etcd" {
                warnings.push(
                    "etcd members are replaced by this change; take a snapshot first and \
                     roll during a quiet period"
                        .into(),
                );
            }
            rolls.push(r);
        }
    }
    let rolling: Vec<&str> = rolls.iter().map(|r| r.stack.as_str()).collect();
    // `update` applies the core before the pools (Plan::core_wave), whatever the root's
    // DependsOn allows: the order shown is the order applied.
    let by_root = classify::waves(&root_sent, &new_refs, &rolling);
    let is_pool = |n: &String| StackId::from_name(n).is_some_and(|i| i.pool().is_some());
    let roll_order: Vec<Vec<String>> = by_root
        .iter()
        .map(|w| {
            w.iter()
                .filter(|n| !is_pool(n))
                .cloned()
                .collect::<Vec<_>>()
        })
        .chain(
            by_root
                .iter()
                .map(|w| w.iter().filter(|n| is_pool(n)).cloned().collect()),
        )
        .filter(|w: &Vec<String>| !w.is_empty())
        .collect();
    for s in stacks
        .iter()
        .filter(|s| StackId::from_name(&s.name).is_some_and(|i| i.pool().is_some()))
    {
        if let Some(t) = new_templates.get(&s.name)
            && t.pointer("/Parameters/AmiId/Type")
                .and_then(Value::as_str)
                .is_some_and(|x| x.starts_with("AWS::SSM"))
        {
            warnings.push(format!(
                    "{}: the AMI is not pinned: CloudFormation resolves its SSM parameter again on update, and a newer image there rolls the pool too (fix: `kube-aws diff --refresh-ami`, then `kube-aws update --refresh-ami` pins it in ami.yaml)",
                    s.name
                ));
        }
    }
    let addons = if in_target("addons") {
        addon_changes(i)
    } else {
        Vec::new()
    };
    let changed = !stacks.is_empty() || !addons.is_empty();
    Plan {
        cluster: i.cluster.to_string(),
        changed,
        stacks,
        unchanged,
        userdata,
        addons,
        rolls,
        roll_order,
        tags,
        parameters,
        targets: i.targets.map(<[String]>::to_vec),
        warnings,
    }
}

/// The add-on objects whose manifests differ between the deployed bundle and the render.
fn addon_changes(i: &Inputs) -> Vec<ObjectChange> {
    let parse = |b: &[u8]| {
        serde_json::from_slice::<crate::addons::Bundle>(b)
            .map(|b| b.review())
            .unwrap_or_default()
    };
    let new = i
        .assets
        .assets
        .get("addons/bundle")
        .map(|a| parse(&a.body))
        .unwrap_or_default();
    let old = match &i.deployed.addons_bundle {
        Some((_, Some(body))) => parse(body),
        Some((key, None)) => {
            return vec![ObjectChange {
                object: format!("bundle {key}"),
                action: Action::Modify,
                diff: format!("# {key}: not found in S3; every add-on object is applied again\n"),
            }];
        }
        None => Vec::new(),
    };
    let old_map: BTreeMap<&str, &str> = old.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let new_names: BTreeSet<&str> = new.iter().map(|(k, _)| k.as_str()).collect();
    let mut out = Vec::new();
    for (name, body) in &new {
        match old_map.get(name.as_str()) {
            Some(o) if *o == body => {}
            Some(o) => out.push(ObjectChange {
                object: name.clone(),
                action: Action::Modify,
                diff: unified(o, body, name, name, i.context),
            }),
            None => out.push(ObjectChange {
                object: name.clone(),
                action: Action::Add,
                diff: unified("", body, "/dev/null", name, i.context),
            }),
        }
    }
    for (name, body) in &old {
        if !new_names.contains(name.as_str()) {
            out.push(ObjectChange {
                object: name.clone(),
                action: Action::Remove,
                diff: unified(body, "", name, "/dev/null", i.context),
            });
        }
    }
    out
}

fn tag_change(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Option<TagChange> {
    let mut t = TagChange::default();
    for (k, v) in new {
        match old.get(k) {
            None => {
                t.added.insert(k.clone(), v.clone());
            }
            Some(o) if o != v => {
                t.changed.insert(k.clone(), (o.clone(), v.clone()));
            }
            _ => {}
        }
    }
    for (k, v) in old {
        if !new.contains_key(k) {
            t.removed.insert(k.clone(), v.clone());
        }
    }
    (!t.added.is_empty() || !t.removed.is_empty() || !t.changed.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_and_stacks_map_both_ways() {
        for (role, stack) in [
            ("worker-gpu-spot", "node-pool/gpu-spot"),
            ("controller", "control-plane"),
            ("etcd", "etcd"),
        ] {
            assert_eq!(stack_of_role(role), stack);
            assert_eq!(role_of_stack(stack), role);
        }
    }

    #[test]
    fn names_stacks_by_key() {
        assert_eq!(
            stack_name_of_key("stacks/node-pool-gpu-spot-0123456789abcdef.json").as_deref(),
            Some("node-pool/gpu-spot")
        );
        assert_eq!(
            stack_name_of_key("stacks/control-plane-0123456789abcdef.json").as_deref(),
            Some("control-plane")
        );
        assert_eq!(stack_name_of_key("stacks/x.json"), None);
    }

    #[test]
    fn finds_userdata_keys_in_base64_stubs() {
        let stub = "#cloud-config\n- https://b.s3/p/c/userdata/worker-a-0123456789abcdef.yaml\n";
        let t = json!({"Resources": {"LT": {"Properties": {"LaunchTemplateData": {
            "UserData": base64::engine::general_purpose::STANDARD.encode(stub)}}}}});
        assert_eq!(
            userdata_keys(&t).into_iter().collect::<Vec<_>>(),
            vec!["userdata/worker-a-0123456789abcdef.yaml".to_string()]
        );
    }

    #[test]
    fn compares_resources_and_sections() {
        let old = json!({"Parameters": {"A": {"Default": "1"}}, "Resources": {
            "Keep": {"Type": "AWS::IAM::Role", "Properties": {"Path": "/"}},
            "Gone": {"Type": "AWS::EC2::EIP"},
            "Mod": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16", "Tags": []}}}});
        let new = json!({"Parameters": {"A": {"Default": "2"}}, "Resources": {
            "Keep": {"Type": "AWS::IAM::Role", "Properties": {"Path": "/"}},
            "New": {"Type": "AWS::EC2::EIP"},
            "Mod": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.1.0.0/16", "Tags": []}}}});
        let (r, s) = compare_templates(&old, &new);
        let summary: Vec<(String, Action, Option<Replacement>)> = r
            .iter()
            .map(|c| (c.logical_id.clone(), c.action, c.replacement))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("Gone".into(), Action::Remove, None),
                ("Mod".into(), Action::Modify, Some(Replacement::True)),
                ("New".into(), Action::Add, None),
            ]
        );
        assert_eq!(r[1].changed, vec!["Properties.CidrBlock".to_string()]);
        assert_eq!(s, vec!["Parameters.A".to_string()]);
    }

    #[test]
    fn tag_changes() {
        let a: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let b: BTreeMap<String, String> =
            [("a".into(), "9".into()), ("c".into(), "3".into())].into();
        let t = tag_change(&a, &b).unwrap();
        assert_eq!(t.added.len(), 1);
        assert_eq!(t.removed.len(), 1);
        assert_eq!(t.changed["a"], ("1".into(), "9".into()));
        assert!(tag_change(&a, &a).is_none());
    }

    #[test]
    fn addon_objects_added_changed_removed_and_secrets_by_ciphertext() {
        use crate::addons::{Bundle, Fill, SecretDoc};
        let deploy = |img: &str, extra: bool, key: &str| {
            let mut manifests = vec![json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "b", "namespace": "ns"}, "spec": {"image": img}})];
            if extra {
                manifests.push(json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "old", "namespace": "ns"}}));
            }
            Bundle {
                first: vec![
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}),
                ],
                secrets: vec![SecretDoc {
                    object: json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "tls", "namespace": "ns"}, "data": {"tls.crt": "Y2VydA=="}}),
                    fill: [(
                        "tls.key".to_string(),
                        Fill {
                            file: "k.pem".into(),
                            key: key.into(),
                            trim: false,
                        },
                    )]
                    .into(),
                }],
                manifests,
            }
        };
        let old = deploy("a:1", true, "p/credentials/k.pem-1111.enc");
        let new = deploy("a:2", false, "p/credentials/k.pem-2222.enc");
        let mut assets = AssetSet::default();
        assets.assets.insert(
            "addons/bundle".into(),
            crate::render::Asset {
                name: "addons/bundle".into(),
                key: "p/addons/bundle-x.json".into(),
                body: new.to_json(),
                sha256: String::new(),
                kind: Kind::AddonBundle,
            },
        );
        let deployed = Deployed {
            addons_bundle: Some(("p/addons/bundle-y.json".into(), Some(old.to_json()))),
            ..Deployed::default()
        };
        let desired = Desired::default();
        let inputs = Inputs {
            cluster: "c",
            prefix: "p",
            assets: &assets,
            desired: &desired,
            deployed: &deployed,
            targets: None,
            context: 1,
        };
        let changes = addon_changes(&inputs);
        let got: Vec<(&str, Action)> = changes
            .iter()
            .map(|c| (c.object.as_str(), c.action))
            .collect();
        assert_eq!(
            got,
            [
                ("Secret ns/tls", Action::Modify),
                ("Deployment ns/b", Action::Modify),
                ("Service ns/old", Action::Remove),
            ]
        );
        let secret = &changes[0].diff;
        assert!(
            secret.contains("-  tls.key: <KMS ciphertext p/credentials/k.pem-1111.enc>")
                && secret.contains("+  tls.key: <KMS ciphertext p/credentials/k.pem-2222.enc>"),
            "{secret}"
        );
        // A bundle S3 no longer has: one line that says so.
        let gone = Deployed {
            addons_bundle: Some(("p/addons/bundle-y.json".into(), None)),
            ..Deployed::default()
        };
        let changes = addon_changes(&Inputs {
            deployed: &gone,
            ..inputs
        });
        assert_eq!(changes.len(), 1);
        assert!(changes[0].diff.contains("not found in S3"));
    }

    #[test]
    fn the_core_rolls_in_a_wave_before_the_pools() {
        let stack = |name: &str| StackPlan {
            name: name.into(),
            logical_id: String::new(),
            action: Action::Modify,
            resources: vec![],
            sections: vec![],
            diff: String::new(),
        };
        let plan = |names: &[&str]| Plan {
            cluster: "c".into(),
            changed: true,
            stacks: names.iter().map(|n| stack(n)).collect(),
            unchanged: vec![],
            userdata: vec![],
            addons: vec![],
            rolls: vec![],
            roll_order: vec![],
            tags: None,
            parameters: BTreeMap::new(),
            targets: None,
            warnings: vec![],
        };
        assert_eq!(
            plan(&["root", "etcd", "control-plane", "node-pool/a"]).core_wave(),
            Some(vec!["etcd".to_string(), "control-plane".to_string()])
        );
        assert_eq!(
            plan(&["root", "node-pool/a", "node-pool/b"]).core_wave(),
            None
        );
        assert_eq!(plan(&["root", "control-plane", "addons"]).core_wave(), None);
    }
}
