//! STAND-IN for AWS IAM policy evaluation, test harness only: no IAM engine runs here, so
//! the broker's rendered policies are judged by this small evaluator, which follows the
//! documented logic for identity policies within one account:
//! - an explicit Deny wins, then any Allow, else the implicit deny
//!   (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html);
//! - a permissions boundary is a second policy that must also allow
//!   (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html);
//! - condition operators: a missing key fails a positive operator and satisfies a
//!   negated one; `…IfExists` is satisfied by a missing key; `Null` tests presence;
//!   `ForAnyValue`/`ForAllValues` over multivalued keys, ForAllValues true when the key
//!   is missing (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html,
//!   https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html).
//!
//! Actions match case-insensitively, resources case-sensitively, `*` and `?` as wildcards.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

pub struct Request {
    pub action: String,
    pub resource: String,
    /// Condition keys (lower-cased names) and their values.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Self {
        Request {
            action: action.to_string(),
            resource: resource.to_string(),
            context: BTreeMap::new(),
        }
    }
    pub fn with(mut self, key: &str, values: &[&str]) -> Self {
        self.context.insert(
            key.to_lowercase(),
            values.iter().map(|v| v.to_string()).collect(),
        );
        self
    }
}

/// Every statement of a role's inline `Policies` (CloudFormation's list of
/// `{PolicyName, PolicyDocument}`).
pub fn statements(policies: &Value) -> Vec<Value> {
    policies
        .as_array()
        .expect("policies")
        .iter()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

pub fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Bool(b) => vec![b.to_string()],
        other => vec![other.to_string()],
    }
}

fn matches_op(op: &str, policy: &str, actual: &str) -> bool {
    match op {
        "StringEquals" | "ArnEquals" | "Bool" => policy == actual,
        "StringEqualsIgnoreCase" => policy.eq_ignore_ascii_case(actual),
        "StringLike" | "ArnLike" => glob(policy, actual),
        other => panic!("condition operator {other} is not modelled by the stand-in"),
    }
}

fn condition_holds(
    raw_op: &str,
    key: &str,
    policy: &[String],
    ctx: &BTreeMap<String, Vec<String>>,
) -> bool {
    let actual = ctx.get(&key.to_lowercase());
    if raw_op == "Null" {
        let absent = actual.is_none_or(|v| v.is_empty());
        return policy.iter().any(|p| (p == "true") == absent);
    }
    let (set, rest) = match raw_op.split_once(':') {
        Some((s, r)) => (Some(s), r),
        None => (None, raw_op),
    };
    let (rest, if_exists) = match rest.strip_suffix("IfExists") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (base, negated) = match rest {
        "StringNotEquals" => ("StringEquals", true),
        "StringNotLike" => ("StringLike", true),
        "ArnNotEquals" => ("ArnEquals", true),
        "ArnNotLike" => ("ArnLike", true),
        "StringNotEqualsIgnoreCase" => ("StringEqualsIgnoreCase", true),
        other => (other, false),
    };
    let Some(values) = actual.filter(|v| !v.is_empty()) else {
        return match set {
            Some("ForAllValues") => true,
            Some(_) => false,
            None => if_exists || negated,
        };
    };
    let one = |a: &String| policy.iter().any(|p| matches_op(base, p, a));
    let hit = match set {
        Some("ForAllValues") => values.iter().all(one),
        Some("ForAnyValue") => values.iter().any(one),
        Some(other) => panic!("set operator {other}"),
        None => values.iter().any(one),
    };
    hit != negated
}

fn applies(st: &Value, r: &Request) -> bool {
    let action_hit = |v: &Value| {
        strings(v)
            .iter()
            .any(|p| glob(&p.to_lowercase(), &r.action.to_lowercase()))
    };
    let resource_hit = |v: &Value| strings(v).iter().any(|p| glob(p, &r.resource));
    let action = match (st.get("Action"), st.get("NotAction")) {
        (Some(a), _) => action_hit(a),
        (None, Some(n)) => !action_hit(n),
        _ => false,
    };
    let resource = match (st.get("Resource"), st.get("NotResource")) {
        (Some(a), _) => resource_hit(a),
        (None, Some(n)) => !resource_hit(n),
        _ => false,
    };
    let conditions = st
        .get("Condition")
        .and_then(Value::as_object)
        .is_none_or(|ops| {
            ops.iter().all(|(op, keys)| {
                keys.as_object().is_some_and(|k| {
                    k.iter()
                        .all(|(key, v)| condition_holds(op, key, &strings(v), &r.context))
                })
            })
        });
    action && resource && conditions
}

/// One policy's (or several policies') statements against a request.
pub fn evaluate(statements: &[Value], r: &Request) -> Decision {
    let hits: Vec<&Value> = statements.iter().filter(|s| applies(s, r)).collect();
    if hits.iter().any(|s| s["Effect"] == "Deny") {
        Decision::ExplicitDeny
    } else if hits.iter().any(|s| s["Effect"] == "Allow") {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Identity policies bounded by a permissions boundary.
pub fn evaluate_bounded(identity: &[Value], boundary: &[Value], r: &Request) -> Decision {
    match (evaluate(identity, r), evaluate(boundary, r)) {
        (Decision::ExplicitDeny, _) | (_, Decision::ExplicitDeny) => Decision::ExplicitDeny,
        (Decision::Allow, Decision::Allow) => Decision::Allow,
        _ => Decision::ImplicitDeny,
    }
}

/// Resolves the CloudFormation intrinsics a rendered policy uses: `Fn::Sub` (string or
/// [string, vars]), `Ref` and `Fn::GetAtt` from `names` (`Ref` → value, `X.Attr` → value).
pub fn resolve(v: &Value, names: &BTreeMap<String, String>) -> Value {
    let sub = |s: &str, extra: &BTreeMap<String, String>| {
        let mut out = s.to_string();
        for (k, x) in names.iter().chain(extra.iter()) {
            out = out.replace(&format!("${{{k}}}"), x);
        }
        assert!(!out.contains("${"), "unresolved in {out}");
        out
    };
    match v {
        Value::Object(m) if m.len() == 1 => {
            let (k, x) = m.iter().next().expect("one");
            match (k.as_str(), x) {
                ("Fn::Sub", Value::String(s)) => Value::String(sub(s, &BTreeMap::new())),
                ("Fn::Sub", Value::Array(a)) => {
                    let vars: BTreeMap<String, String> = a[1]
                        .as_object()
                        .expect("vars")
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                resolve(v, names).as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect();
                    Value::String(sub(a[0].as_str().expect("template"), &vars))
                }
                ("Ref", Value::String(r)) => Value::String(
                    names
                        .get(r)
                        .cloned()
                        .unwrap_or_else(|| panic!("no value for Ref {r}")),
                ),
                ("Fn::GetAtt", Value::Array(a)) => {
                    let key = format!(
                        "{}.{}",
                        a[0].as_str().unwrap_or_default(),
                        a[1].as_str().unwrap_or_default()
                    );
                    Value::String(
                        names
                            .get(&key)
                            .cloned()
                            .unwrap_or_else(|| panic!("no value for {key}")),
                    )
                }
                _ => Value::Object(
                    m.iter()
                        .map(|(k, x)| (k.clone(), resolve(x, names)))
                        .collect(),
                ),
            }
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), resolve(x, names)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve(x, names)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_stand_in_follows_the_documented_operators() {
        let allow = json!([{"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*",
            "Condition": {"StringEquals": {"aws:ResourceTag/t": "x"}}}]);
        let st = allow.as_array().unwrap();
        assert_eq!(
            evaluate(
                st,
                &Request::new("s3:GetObject", "arn:aws:s3:::b/k").with("aws:ResourceTag/t", &["x"])
            ),
            Decision::Allow
        );
        assert_eq!(
            evaluate(st, &Request::new("s3:GetObject", "arn:aws:s3:::b/k")),
            Decision::ImplicitDeny,
            "missing key fails a positive operator"
        );
        let deny = json!([{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringNotEquals": {"k": "v"}}}]);
        assert_eq!(
            evaluate(deny.as_array().unwrap(), &Request::new("a:b", "r")),
            Decision::ExplicitDeny,
            "missing key satisfies a negated one"
        );
        let all = json!([{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"ForAllValues:StringLike": {"aws:TagKeys": ["kube-aws:*"]}}}]);
        assert_eq!(
            evaluate(all.as_array().unwrap(), &Request::new("a:b", "r")),
            Decision::Allow
        );
        assert_eq!(
            evaluate(
                all.as_array().unwrap(),
                &Request::new("a:b", "r").with("aws:TagKeys", &["kube-aws:x", "owner"])
            ),
            Decision::ImplicitDeny
        );
    }
}
