//! Request checks, as one table per endpoint taken from OSB v2.17 (`spec.md` at tag
//! v2.17 of openservicebrokerapi/servicebroker): which body fields and query parameters
//! are REQUIRED ("MUST be a non-empty string"), and which must have a given type when
//! present. Every request passes here before any state is read or written; a missing or
//! empty value counts as missing. Unknown fields are ignored, as the spec requires.

use super::error::OsbError;
use super::state::valid_id;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Provision,
    Update,
    Deprovision,
    FetchInstance,
    InstanceLastOp,
    Bind,
    Unbind,
    FetchBinding,
    BindingLastOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// REQUIRED; a non-empty string.
    Required,
    /// Optional; a non-empty string when present.
    NonEmpty,
    /// Optional; an object when present.
    Object,
    /// Optional; a string when present (may be empty).
    Text,
}

use Endpoint::*;
use Rule::*;

/// Body fields. Spec sections: Provisioning ("Body" table: service_id*, plan_id*,
/// organization_guid*, space_guid*, context, parameters, maintenance_info), Updating a
/// Service Instance (service_id*, plan_id, context, parameters, previous_values,
/// maintenance_info), Request (Binding) (service_id*, plan_id*, context, app_guid,
/// bind_resource, parameters).
pub const BODY: &[(Endpoint, &str, Rule)] = &[
    (Provision, "service_id", Required),
    (Provision, "plan_id", Required),
    (Provision, "organization_guid", Required),
    (Provision, "space_guid", Required),
    (Provision, "context", Object),
    (Provision, "parameters", Object),
    (Provision, "maintenance_info", Object),
    (Update, "service_id", Required),
    (Update, "plan_id", NonEmpty),
    (Update, "context", Object),
    (Update, "parameters", Object),
    (Update, "previous_values", Object),
    (Update, "maintenance_info", Object),
    (Bind, "service_id", Required),
    (Bind, "plan_id", Required),
    (Bind, "context", Object),
    (Bind, "app_guid", Text),
    (Bind, "bind_resource", Object),
    (Bind, "parameters", Object),
];

/// Query parameters. Spec sections: Deprovisioning and Unbinding (service_id*,
/// plan_id*, accepts_incomplete), Polling Last Operation for Service Instances and for
/// Service Bindings (service_id, plan_id, operation), Fetching a Service Instance and a
/// Service Binding (service_id, plan_id).
pub const QUERY: &[(Endpoint, &str, Rule)] = &[
    (Deprovision, "service_id", Required),
    (Deprovision, "plan_id", Required),
    (Unbind, "service_id", Required),
    (Unbind, "plan_id", Required),
    (InstanceLastOp, "service_id", NonEmpty),
    (InstanceLastOp, "plan_id", NonEmpty),
    (InstanceLastOp, "operation", NonEmpty),
    (BindingLastOp, "service_id", NonEmpty),
    (BindingLastOp, "plan_id", NonEmpty),
    (BindingLastOp, "operation", NonEmpty),
    (FetchInstance, "service_id", NonEmpty),
    (FetchInstance, "plan_id", NonEmpty),
    (FetchBinding, "service_id", NonEmpty),
    (FetchBinding, "plan_id", NonEmpty),
];

/// A request that passed the table.
#[derive(Debug, Default)]
pub struct Checked {
    pub body: Map<String, Value>,
    pub query: Map<String, Value>,
    pub accepts_incomplete: bool,
}

impl Checked {
    /// A string field of the body, or of the query (checked non-empty if present).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.body
            .get(name)
            .or_else(|| self.query.get(name))
            .and_then(Value::as_str)
    }

    pub fn object(&self, name: &str) -> Map<String, Value> {
        self.body
            .get(name)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

fn has_body(e: Endpoint) -> bool {
    matches!(e, Provision | Update | Bind)
}

/// Checks the path ids, the query and the body of a request to `e`.
pub fn check(
    e: Endpoint,
    ids: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Result<Checked, OsbError> {
    for id in ids {
        if !valid_id(id) {
            return Err(OsbError::bad(format!(
                "`{}` is not a valid id: use 1–63 letters, digits or hyphens",
                super::error::escape(&id.chars().take(80).collect::<String>())
            )));
        }
    }
    let mut q = Map::new();
    let mut accepts_incomplete = false;
    for (k, v) in query {
        if k == "accepts_incomplete" {
            accepts_incomplete = match v.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(OsbError::bad(
                        "accepts_incomplete must be `true` or `false`",
                    ));
                }
            };
        } else {
            q.insert(k.clone(), Value::String(v.clone()));
        }
    }
    for (_, name, rule) in QUERY.iter().filter(|(x, ..)| *x == e) {
        match (rule, q.get(*name).and_then(Value::as_str)) {
            (Required, None | Some("")) => {
                return Err(OsbError::bad(format!(
                    "the query parameter {name} is required and must not be empty"
                )));
            }
            (NonEmpty, Some("")) => {
                return Err(OsbError::bad(format!(
                    "the query parameter {name} must not be empty when present"
                )));
            }
            _ => {}
        }
    }
    let body = if !has_body(e) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(OsbError::bad("the request body must be a JSON object")),
            Err(err) => {
                return Err(OsbError::bad(format!(
                    "the request body is not JSON: {err}"
                )));
            }
        }
    };
    for (_, name, rule) in BODY.iter().filter(|(x, ..)| *x == e) {
        let v = body.get(*name).filter(|v| !v.is_null());
        let ok = match (rule, v) {
            (Required, Some(Value::String(s))) => !s.is_empty(),
            (Required, _) => false,
            (NonEmpty, Some(Value::String(s))) => !s.is_empty(),
            (Object, Some(Value::Object(_))) | (Text, Some(Value::String(_))) => true,
            (_, None) => true,
            _ => false,
        };
        if !ok {
            let want = match rule {
                Required => "is required and must be a non-empty string",
                NonEmpty => "must be a non-empty string",
                Object => "must be an object",
                Text => "must be a string",
            };
            return Err(OsbError::bad(format!("{name} {want}")));
        }
    }
    Ok(Checked {
        body,
        query: q,
        accepts_incomplete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn required_fields_must_be_present_and_non_empty() {
        let full =
            json!({"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "x"});
        assert!(check(Provision, &["i"], &[], full.to_string().as_bytes()).is_ok());
        for f in ["service_id", "plan_id", "organization_guid", "space_guid"] {
            let mut b = full.clone();
            b.as_object_mut().unwrap().remove(f);
            let e = check(Provision, &["i"], &[], b.to_string().as_bytes()).unwrap_err();
            assert!(e.description.contains(f), "{}", e.description);
            b[f] = json!("");
            assert!(check(Provision, &["i"], &[], b.to_string().as_bytes()).is_err());
            b[f] = json!(7);
            assert!(check(Provision, &["i"], &[], b.to_string().as_bytes()).is_err());
        }
        for e in [Deprovision, Unbind] {
            let ids: &[&str] = if e == Unbind { &["i", "b"] } else { &["i"] };
            assert!(check(e, ids, &q(&[("service_id", "s"), ("plan_id", "p")]), b"").is_ok());
            assert!(check(e, ids, &q(&[("service_id", ""), ("plan_id", "p")]), b"").is_err());
            assert!(check(e, ids, &q(&[("service_id", "s"), ("plan_id", "")]), b"").is_err());
            assert!(check(e, ids, &q(&[("plan_id", "p")]), b"").is_err());
        }
        assert!(check(Update, &["i"], &[], br#"{"plan_id": "p"}"#).is_err());
        assert!(check(Update, &["i"], &[], br#"{"service_id": "s"}"#).is_ok());
        assert!(
            check(
                Update,
                &["i"],
                &[],
                br#"{"service_id": "s", "plan_id": ""}"#
            )
            .is_err()
        );
        assert!(check(Bind, &["i", "b"], &[], br#"{"service_id": "s"}"#).is_err());
        assert!(check(InstanceLastOp, &["i"], &q(&[("operation", "")]), b"").is_err());
        assert!(check(InstanceLastOp, &["i"], &q(&[("operation", "x")]), b"").is_ok());
    }

    #[test]
    fn types_ids_and_flags() {
        let b = br#"{"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "x", "parameters": []}"#;
        assert!(check(Provision, &["i"], &[], b).is_err());
        let b = br#"{"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "x", "unknown": 1}"#;
        assert!(
            check(Provision, &["i"], &[], b).is_ok(),
            "unknown fields are ignored"
        );
        assert!(check(Provision, &["i"], &q(&[("accepts_incomplete", "yes")]), b).is_err());
        assert!(
            check(Provision, &["i"], &q(&[("accepts_incomplete", "true")]), b)
                .unwrap()
                .accepts_incomplete
        );
        assert!(check(Provision, &["a/b"], &[], b).is_err());
        assert!(check(FetchInstance, &["x".repeat(64).as_str()], &[], b"").is_err());
        assert!(check(Provision, &["i"], &[], b"[1]").is_err());
        assert!(
            check(Provision, &["i"], &[], b"").is_err(),
            "an empty body misses the required fields"
        );
    }
}
