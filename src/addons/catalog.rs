//! The Service Catalog add-on: its namespace and CRDs, the controller-manager's and the
//! webhook's service accounts, RBAC and Deployments, the webhook's Service and its v1
//! mutating and validating configurations.

use super::crds::{GROUP, KINDS, crd};
use super::{hardened_container, labels};
use crate::model::names::CATALOG_NAMESPACE;
use serde_json::{Value, json};

pub const CATALOG_IMAGE: &str = "quay.io/kubernetes-service-catalog/service-catalog:v0.3.1";

pub(super) fn service_catalog(ca_b64: &str) -> Vec<Value> {
    let ns = CATALOG_NAMESPACE;
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels("service-catalog")}}),
    ];
    docs.extend(KINDS.iter().map(|(k, p, n, sh)| crd(k, p, *n, sh)));
    let all_plurals: Vec<String> = KINDS.iter().map(|(_, p, _, _)| p.to_string()).collect();
    let status: Vec<String> = all_plurals.iter().map(|p| format!("{p}/status")).collect();
    for (app, extra) in [
        (
            "controller-manager",
            json!([
                {"apiGroups": [GROUP], "resources": all_plurals, "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": [GROUP], "resources": status, "verbs": ["update", "patch"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update", "delete"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
            ]),
        ),
        (
            "webhook",
            json!([
                {"apiGroups": [GROUP], "resources": all_plurals, "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
            ]),
        ),
    ] {
        let name = format!("service-catalog-{app}");
        docs.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns, "labels": labels(&name)}}));
        docs.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": format!("servicecatalog.k8s.io:{app}"), "labels": labels(&name)}, "rules": extra}));
        docs.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("servicecatalog.k8s.io:{app}"), "labels": labels(&name)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("servicecatalog.k8s.io:{app}")},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}));
    }
    let deployment = |app: &str, args: Value, port: u16, secret: Option<&str>| {
        let name = format!("service-catalog-{app}");
        let mut c = hardened_container(app, CATALOG_IMAGE, args, port);
        let mut pod = json!({
            "serviceAccountName": name,
            "automountServiceAccountToken": true,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [],
        });
        if let Some(sec) = secret {
            c["volumeMounts"] = json!([{"name": "cert", "mountPath": "/var/run/service-catalog-webhook", "readOnly": true}]);
            pod["volumes"] = json!([{"name": "cert", "secret": {"secretName": sec}}]);
        }
        c["readinessProbe"] = json!({"httpGet": {"path": "/healthz/ready", "port": port, "scheme": "HTTPS"}, "periodSeconds": 10});
        pod["containers"] = json!([c]);
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels(&name)},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {"metadata": {"labels": labels(&name)}, "spec": pod}}})
    };
    docs.push(deployment(
        "controller-manager",
        json!([
            "controller-manager",
            "--secure-port",
            "8444",
            "--leader-elect=true",
            "--leader-election-namespace",
            ns,
            "--cluster-id-configmap-namespace",
            ns,
            "--feature-gates",
            "OriginatingIdentity=true,ServicePlanDefaults=false"
        ]),
        8444,
        None,
    ));
    docs.push(deployment(
        "webhook",
        json!([
            "webhook",
            "--secure-port",
            "8443",
            "--healthz-server-bind-port",
            "8443",
            "--tls-cert-file",
            "/var/run/service-catalog-webhook/tls.crt",
            "--tls-private-key-file",
            "/var/run/service-catalog-webhook/tls.key",
            "--feature-gates",
            "OriginatingIdentity=true"
        ]),
        8443,
        Some("service-catalog-webhook-cert"),
    ));
    docs.push(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "service-catalog-webhook", "namespace": ns, "labels": labels("service-catalog-webhook")},
        "spec": {"selector": {"app.kubernetes.io/name": "service-catalog-webhook"},
            "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}));
    for (kind, path_kind) in [
        ("MutatingWebhookConfiguration", "mutating"),
        ("ValidatingWebhookConfiguration", "validating"),
    ] {
        let hooks: Vec<Value> = KINDS
            .iter()
            .map(|(_, p, _, _)| json!({
                "name": format!("{path_kind}.{p}.{GROUP}"),
                "clientConfig": {"service": {"namespace": ns, "name": "service-catalog-webhook", "path": format!("/{path_kind}-{p}"), "port": 443}, "caBundle": ca_b64},
                "rules": [{"apiGroups": [GROUP], "apiVersions": ["v1beta1"], "operations": ["CREATE", "UPDATE"], "resources": [p], "scope": "*"}],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1", "v1beta1"],
                "timeoutSeconds": 10,
            }))
            .collect();
        docs.push(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": format!("service-catalog-{path_kind}"), "labels": labels("service-catalog-webhook")},
            "webhooks": hooks}));
    }
    docs
}
