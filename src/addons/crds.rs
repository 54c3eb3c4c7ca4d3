//! The Service Catalog's CustomResourceDefinitions (`servicecatalog.k8s.io/v1beta1`,
//! served as apiextensions v1).

use serde_json::{Value, json};

pub const GROUP: &str = "servicecatalog.k8s.io";

/// (kind, plural, namespaced, short names)
pub const KINDS: &[(&str, &str, bool, &[&str])] = &[
    (
        "ClusterServiceBroker",
        "clusterservicebrokers",
        false,
        &["csb"],
    ),
    ("ServiceBroker", "servicebrokers", true, &["sb"]),
    (
        "ClusterServiceClass",
        "clusterserviceclasses",
        false,
        &["csc"],
    ),
    ("ServiceClass", "serviceclasses", true, &["sc"]),
    ("ClusterServicePlan", "clusterserviceplans", false, &["csp"]),
    ("ServicePlan", "serviceplans", true, &["sp"]),
    ("ServiceInstance", "serviceinstances", true, &["si"]),
    ("ServiceBinding", "servicebindings", true, &["sbd"]),
];

fn s() -> Value {
    json!({"type": "string"})
}
fn b() -> Value {
    json!({"type": "boolean"})
}
fn i() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}
fn free() -> Value {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}
fn name_ref() -> Value {
    json!({"type": "object", "properties": {"name": s()}, "required": ["name"]})
}
fn secret_ref() -> Value {
    json!({"type": "object", "properties": {"name": s(), "namespace": s()}, "required": ["name"]})
}
fn parameters_from() -> Value {
    json!({"type": "array", "items": {"type": "object", "properties": {
        "secretKeyRef": {"type": "object", "properties": {"name": s(), "key": s()}, "required": ["name", "key"]}}}})
}

/// The spec schema of each kind.
fn spec_schema(kind: &str) -> Value {
    let broker = json!({
        "url": {"type": "string", "pattern": "^https?://"},
        "insecureSkipTLSVerify": b(),
        "caBundle": {"type": "string", "format": "byte"},
        "relistBehavior": {"type": "string", "enum": ["Duration", "Manual"]},
        "relistDuration": s(),
        "relistRequests": i(),
        "authInfo": {"type": "object", "properties": {
            "basic": {"type": "object", "properties": {"secretRef": secret_ref()}},
            "bearer": {"type": "object", "properties": {"secretRef": secret_ref()}}}},
        "catalogRestrictions": {"type": "object", "properties": {"serviceClass": strings(), "servicePlan": strings()}},
    });
    let class = json!({
        "clusterServiceBrokerName": s(), "serviceBrokerName": s(),
        "externalName": s(), "externalID": s(), "description": s(),
        "bindable": b(), "bindingRetrievable": b(), "planUpdatable": b(),
        "tags": strings(), "requires": strings(),
        "externalMetadata": free(), "defaultProvisionParameters": free(),
    });
    let plan = json!({
        "clusterServiceBrokerName": s(), "serviceBrokerName": s(),
        "externalName": s(), "externalID": s(), "description": s(),
        "free": b(), "bindable": b(),
        "externalMetadata": free(), "defaultProvisionParameters": free(),
        "instanceCreateParameterSchema": free(), "instanceUpdateParameterSchema": free(),
        "serviceBindingCreateParameterSchema": free(), "serviceBindingCreateResponseSchema": free(),
        "clusterServiceClassRef": name_ref(), "serviceClassRef": name_ref(),
    });
    let instance = json!({
        "clusterServiceClassExternalName": s(), "clusterServicePlanExternalName": s(),
        "clusterServiceClassExternalID": s(), "clusterServicePlanExternalID": s(),
        "clusterServiceClassName": s(), "clusterServicePlanName": s(),
        "serviceClassExternalName": s(), "servicePlanExternalName": s(),
        "serviceClassExternalID": s(), "servicePlanExternalID": s(),
        "serviceClassName": s(), "servicePlanName": s(),
        "clusterServiceClassRef": name_ref(), "clusterServicePlanRef": name_ref(),
        "serviceClassRef": name_ref(), "servicePlanRef": name_ref(),
        "parameters": free(), "parametersFrom": parameters_from(),
        "externalID": s(), "updateRequests": i(), "userInfo": free(),
    });
    let binding = json!({
        "instanceRef": name_ref(),
        "parameters": free(), "parametersFrom": parameters_from(),
        "secretName": s(),
        "secretTransforms": {"type": "array", "items": free()},
        "externalID": s(), "userInfo": free(),
    });
    let (props, required): (Value, Vec<&str>) = match kind {
        "ClusterServiceBroker" | "ServiceBroker" => (broker, vec!["url"]),
        "ClusterServiceClass" | "ServiceClass" => (class, vec!["externalName", "externalID"]),
        "ClusterServicePlan" | "ServicePlan" => (plan, vec!["externalName", "externalID"]),
        "ServiceInstance" => (instance, vec![]),
        _ => (binding, vec!["instanceRef"]),
    };
    let mut v = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        v["required"] = json!(required);
    }
    v
}

/// The v1 CustomResourceDefinition of `kind`.
pub fn crd(kind: &str, plural: &str, namespaced: bool, short: &[&str]) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}"), "labels": {"app.kubernetes.io/part-of": "service-catalog"}},
        "spec": {
            "group": GROUP,
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_ascii_lowercase(),
                "shortNames": short,
                "categories": ["all", "svcat"],
            },
            "versions": [{
                "name": "v1beta1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Status", "type": "string", "jsonPath": ".status.lastConditionState"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "apiVersion": s(),
                        "kind": s(),
                        "metadata": {"type": "object"},
                        "spec": spec_schema(kind),
                        "status": free(),
                    },
                }},
            }],
        },
    })
}
