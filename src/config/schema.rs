//! The JSON Schema of cluster.yaml, generated from the types (schemars).

use super::location::parent_path;
use super::types::Config;
use serde_json::Value;
use std::sync::LazyLock;

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let mut schema = schemars::schema_for!(Config).to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$id".into(),
            Value::String("https://kube-aws.dev/schema/cluster.json".into()),
        );
    }
    schema
});

/// The schema as a JSON value.
pub fn json_schema() -> &'static Value {
    &SCHEMA
}

/// Pretty-printed schema, as `kube-aws schema` prints it.
pub fn json_schema_pretty() -> String {
    // Serializing a serde_json::Value cannot fail.
    serde_json::to_string_pretty(json_schema()).unwrap_or_default()
}

/// The field names allowed in the object that holds `path` (a field path such as
/// `worker.nodePools[0].instanceTyp`), sorted. `None` when that object is a free-form map.
pub fn fields_at(path: &str) -> Option<Vec<String>> {
    let parent = parent_path(path);
    let mut node = resolve(json_schema());
    for seg in segments(parent) {
        node = match seg {
            Seg::Key(k) => resolve(object_of(node)?.get("properties")?.get(k)?),
            Seg::Index => resolve(object_of(node)?.get("items")?),
        };
    }
    let props = object_of(node)?.get("properties")?.as_object()?;
    let mut names: Vec<String> = props.keys().cloned().collect();
    names.sort();
    Some(names)
}

enum Seg<'a> {
    Key(&'a str),
    Index,
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        out.extend(rest.matches(']').map(|_| Seg::Index));
    }
    out
}

/// Follows `$ref`, and `anyOf` (how an `Option<T>` is written), to the object schema.
fn resolve(node: &Value) -> &Value {
    let mut node = node;
    for _ in 0..8 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str)
            && let Some(name) = r.strip_prefix("#/$defs/")
            && let Some(target) = json_schema().get("$defs").and_then(|d| d.get(name))
        {
            node = target;
            continue;
        }
        if let Some(alts) = node.get("anyOf").and_then(Value::as_array)
            && let Some(obj) = alts
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) != Some("null"))
        {
            node = obj;
            continue;
        }
        break;
    }
    node
}

fn object_of(node: &Value) -> Option<&serde_json::Map<String, Value>> {
    node.as_object()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_refs_and_arrays() {
        let top = fields_at("clusterNme").unwrap();
        assert!(top.contains(&"clusterName".to_string()));
        let pool = fields_at("worker.nodePools[3].instanceTyp").unwrap();
        assert!(pool.contains(&"instanceType".to_string()));
        let ru = fields_at("worker.nodePools[0].rollingUpdate.x").unwrap();
        assert!(ru.contains(&"maxBatchSize".to_string()));
        // stackTags is a free-form map: no list of fields.
        assert_eq!(fields_at("stackTags.team.x"), None);
    }
}
