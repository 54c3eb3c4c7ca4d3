//! `--targets`: which nested stacks an update touches, and the root template that
//! updates only those (every other nested stack keeps its deployed TemplateURL).

use super::NestedRef;
use super::classify::{depends_on, refs};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--targets: unknown stack `{name}`\n  fix: choose from {}",
    valid.join(", ")
)]
pub struct UnknownTarget {
    pub name: String,
    pub valid: Vec<String>,
}

/// Canonical stack names for what the user typed: `network`, `etcd`, `control-plane`,
/// `node-pool/<pool>` or a bare pool name. `known` are the stack names of the rendered
/// and the deployed root (so a removed pool can be targeted too).
pub fn resolve(input: &[String], known: &[String]) -> Result<Vec<String>, UnknownTarget> {
    let mut out = Vec::new();
    for raw in input.iter().flat_map(|s| s.split(',')) {
        let t = raw.trim();
        if t.is_empty() {
            continue;
        }
        let pool = crate::model::stack_id::StackId::NodePool(t.to_string()).name();
        let name = if known.iter().any(|k| k == t) {
            t.to_string()
        } else if known.contains(&pool) {
            pool
        } else {
            let mut valid: Vec<String> = known.to_vec();
            valid.sort();
            valid.dedup();
            return Err(UnknownTarget {
                name: t.to_string(),
                valid,
            });
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// The root template for an update restricted to `targets`: targeted nested stacks as
/// rendered (added, changed or removed); the others as deployed (a new untargeted pool
/// is left out). Outputs and DependsOn that would name a missing resource are dropped.
pub fn targeted_root(
    rendered: &Value,
    deployed: &Value,
    new_refs: &[NestedRef],
    targets: &[String],
) -> Value {
    let mut out = rendered.clone();
    let old_refs = super::nested_refs(deployed);
    let empty = Map::new();
    let deployed_res = deployed
        .get("Resources")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let deployed_out = deployed
        .get("Outputs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let Some(res) = out.get_mut("Resources").and_then(Value::as_object_mut) else {
        return out;
    };
    let ids: BTreeSet<(String, String)> = new_refs
        .iter()
        .chain(old_refs.iter())
        .map(|r| (r.logical_id.clone(), r.name.clone()))
        .collect();
    for (id, name) in &ids {
        if targets.contains(name) {
            continue;
        }
        match deployed_res.get(id) {
            Some(d) => {
                res.insert(id.clone(), d.clone());
            }
            None => {
                res.remove(id);
            }
        }
    }
    let present: BTreeSet<String> = res.keys().cloned().collect();
    // Drop DependsOn entries naming a resource left out; leave the others byte-identical.
    for r in res.values_mut() {
        let deps = depends_on(r);
        let kept: Vec<Value> = deps
            .iter()
            .filter(|d| present.contains(*d))
            .cloned()
            .map(Value::String)
            .collect();
        if kept.len() == deps.len() {
            continue;
        }
        if let Some(o) = r.as_object_mut() {
            match kept.len() {
                0 => {
                    o.remove("DependsOn");
                }
                1 => {
                    o.insert("DependsOn".into(), kept[0].clone());
                }
                _ => {
                    o.insert("DependsOn".into(), Value::Array(kept));
                }
            }
        }
    }
    let resolvable = |v: &Value| {
        let mut r = BTreeSet::new();
        refs(v, &mut r);
        r.iter()
            .all(|x| present.contains(x) || x.starts_with("AWS::") || x == "AssetsBaseUrl")
    };
    let mut outputs = Map::new();
    if let Some(o) = out.get("Outputs").and_then(Value::as_object) {
        for (k, v) in o {
            if resolvable(v) {
                outputs.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in deployed_out {
        if !outputs.contains_key(k) && resolvable(v) {
            outputs.insert(k.clone(), v.clone());
        }
    }
    if let Some(o) = out.as_object_mut() {
        o.insert("Outputs".into(), Value::Object(outputs));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stack(url: &str, depends: Option<&str>) -> Value {
        let mut v = json!({"Type": "AWS::CloudFormation::Stack",
            "Properties": {"TemplateURL": {"Fn::Sub": format!("${{AssetsBaseUrl}}/stacks/{url}.json")}}});
        if let Some(d) = depends {
            v["DependsOn"] = json!(d);
        }
        v
    }

    #[test]
    fn resolves_names_and_pools() {
        let known: Vec<String> = ["network", "etcd", "control-plane", "node-pool/general"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            resolve(&["general,control-plane".into(), "general".into()], &known).unwrap(),
            vec!["node-pool/general".to_string(), "control-plane".into()]
        );
        let e = resolve(&["gpu".into()], &known).unwrap_err();
        assert_eq!(e.name, "gpu");
        assert!(e.to_string().contains("node-pool/general"));
    }

    #[test]
    fn keeps_untargeted_stacks_as_deployed() {
        let h = |c: char| c.to_string().repeat(16);
        let deployed = json!({"Resources": {
            "Network": stack(&format!("network-{}", h('a')), None),
            "NodePoolA": stack(&format!("node-pool-a-{}", h('a')), None),
            "NodePoolOld": stack(&format!("node-pool-old-{}", h('a')), None)},
            "Outputs": {"NodePoolOldGroups": {"Value": {"Fn::GetAtt": ["NodePoolOld", "Outputs.Groups"]}}}});
        let rendered = json!({"Resources": {
            "Network": stack(&format!("network-{}", h('b')), None),
            "NodePoolA": stack(&format!("node-pool-a-{}", h('b')), None),
            "NodePoolNew": stack(&format!("node-pool-new-{}", h('b')), Some("NodePoolA"))},
            "Outputs": {"NodePoolNewGroups": {"Value": {"Fn::GetAtt": ["NodePoolNew", "Outputs.Groups"]}}}});
        let refs = super::super::nested_refs(&rendered);
        let t = targeted_root(&rendered, &deployed, &refs, &["node-pool/a".into()]);
        assert_eq!(t["Resources"]["Network"], deployed["Resources"]["Network"]);
        assert_eq!(
            t["Resources"]["NodePoolA"],
            rendered["Resources"]["NodePoolA"]
        );
        assert_eq!(
            t["Resources"]["NodePoolOld"],
            deployed["Resources"]["NodePoolOld"]
        );
        assert!(t["Resources"].get("NodePoolNew").is_none());
        assert!(t["Outputs"].get("NodePoolNewGroups").is_none());
        assert!(t["Outputs"].get("NodePoolOldGroups").is_some());
        // Targeting everything changed gives exactly the rendered root.
        let all = [
            "network".into(),
            "node-pool/a".into(),
            "node-pool/new".into(),
            "node-pool/old".into(),
        ];
        let t = targeted_root(&rendered, &deployed, &refs, &all);
        assert_eq!(t, rendered);
        // Targeting the removed pool removes it and its output.
        let t = targeted_root(&rendered, &deployed, &refs, &["node-pool/old".into()]);
        assert!(t["Resources"].get("NodePoolOld").is_none());
        assert!(t["Outputs"].get("NodePoolOldGroups").is_none());
        assert_eq!(
            t["Resources"]["NodePoolA"],
            deployed["Resources"]["NodePoolA"]
        );
    }
}
