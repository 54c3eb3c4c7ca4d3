//! Kubernetes manifests of the add-ons, rendered from cluster.yaml and the cluster CA.
//! Pure: config + the CA certificate in, YAML documents out.
//!
//! The Service Catalog's last release (v0.3.1) ships `apiextensions.k8s.io/v1beta1` CRDs
//! and `admissionregistration.k8s.io/v1beta1` webhooks, both removed in Kubernetes 1.22.
//! These are their v1 equivalents: structural schemas (spec typed, status preserved),
//! webhooks with `sideEffects: None` and `admissionReviewVersions`, and a caBundle from
//! the cluster CA. Secrets (webhook and broker TLS keys, the broker token) are never part
//! of these documents: they are created from `credentials/` when the add-ons are applied.

use crate::config::Config;
use base64::Engine;
use serde_json::{Value, json};

pub const CATALOG_NAMESPACE: &str = "catalog";
pub const CATALOG_IMAGE: &str = "quay.io/kubernetes-service-catalog/service-catalog:v0.3.1";
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

fn labels(app: &str) -> Value {
    json!({"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "service-catalog", "app.kubernetes.io/managed-by": "kube-aws"})
}

fn hardened_container(name: &str, image: &str, args: Value, port: u16) -> Value {
    json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [{"containerPort": port, "name": "https"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    })
}

fn service_catalog(ca_b64: &str) -> Vec<Value> {
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

fn aws_service_broker(c: &Config, ca_b64: &str) -> Vec<Value> {
    let b = &c.addons.aws_service_broker;
    let ns = &b.namespace;
    let name = "aws-service-broker";
    let (table, role) = crate::render::context::broker_names(&c.cluster_name, &b.broker_id);
    let auth = match b.auth {
        crate::config::types::BrokerAuth::Bearer => {
            json!({"bearer": {"secretRef": {"name": "aws-service-broker-auth", "namespace": ns}}})
        }
        crate::config::types::BrokerAuth::Basic => {
            json!({"basic": {"secretRef": {"name": "aws-service-broker-auth", "namespace": ns}}})
        }
    };
    let auth_mode = match b.auth {
        crate::config::types::BrokerAuth::Bearer => "bearer",
        crate::config::types::BrokerAuth::Basic => "basic",
    };
    let env_secret = match b.auth {
        crate::config::types::BrokerAuth::Bearer => ("KUBE_AWS_BROKER_TOKEN", "token"),
        crate::config::types::BrokerAuth::Basic => ("KUBE_AWS_BROKER_PASSWORD", "password"),
    };
    let mut container = hardened_container(
        "broker",
        &b.image,
        json!([
            "broker",
            "serve",
            "--listen",
            "0.0.0.0:8443",
            "--tls-cert",
            "/etc/aws-service-broker/tls/tls.crt",
            "--tls-key",
            "/etc/aws-service-broker/tls/tls.key",
            "--auth",
            auth_mode,
            "--broker-id",
            b.broker_id,
            "--services",
            b.services.join(","),
            "--state",
            format!("dynamodb:{table}"),
            "--region",
            c.region
        ]),
        8443,
    );
    container["env"] = json!([
        {"name": env_secret.0, "valueFrom": {"secretKeyRef": {"name": "aws-service-broker-auth", "key": env_secret.1}}},
        {"name": "AWS_CONFIG_FILE", "value": "/etc/aws-service-broker/aws/config"},
        {"name": "AWS_PROFILE", "value": "broker"},
    ]);
    container["volumeMounts"] = json!([
        {"name": "tls", "mountPath": "/etc/aws-service-broker/tls", "readOnly": true},
        {"name": "aws", "mountPath": "/etc/aws-service-broker/aws", "readOnly": true},
    ]);
    container["readinessProbe"] = json!({"httpGet": {"path": "/healthz", "port": 8443, "scheme": "HTTPS"}, "periodSeconds": 10});
    // The account and partition of the cluster's KMS key are the cluster's.
    let arn: Vec<&str> = c.kms_key_arn.split(':').collect();
    let (partition, account) = (
        arn.get(1).copied().unwrap_or("aws"),
        arn.get(4).copied().unwrap_or_default(),
    );
    let boundary = format!(
        "arn:{partition}:iam::{account}:policy/{}",
        crate::render::context::boundary_name(&c.cluster_name, &b.broker_id)
    );
    if let Some(env) = container["env"].as_array_mut() {
        env.push(json!({"name": "KUBE_AWS_BROKER_PERMISSIONS_BOUNDARY", "value": boundary}));
        env.push(json!({"name": "KUBE_AWS_BROKER_PRINCIPAL", "value": format!("arn:{partition}:iam::{account}:role/{role}")}));
    }
    let aws_config = format!(
        "[profile broker]\nrole_arn = arn:{partition}:iam::{account}:role/{role}\ncredential_source = Ec2InstanceMetadata\nregion = {}\n",
        c.region
    );
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels(name)}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns, "labels": labels(name)}, "automountServiceAccountToken": false}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aws-service-broker-aws", "namespace": ns, "labels": labels(name)},
            "data": {"config": aws_config}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels(name)},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels(name)}, "spec": {
                "serviceAccountName": name,
                // The controllers' instance role may assume the broker's role; the
                // instance metadata service answers only one hop away.
                "hostNetwork": true,
                "dnsPolicy": "ClusterFirstWithHostNet",
                "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
                "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app.kubernetes.io/name": name}}, "topologyKey": "kubernetes.io/hostname"}]}},
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "aws-service-broker-tls"}},
                    {"name": "aws", "configMap": {"name": "aws-service-broker-aws"}},
                ],
            }}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels(name)},
            "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}),
        json!({"apiVersion": format!("{GROUP}/v1beta1"), "kind": "ClusterServiceBroker",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {"url": format!("https://{name}.{ns}.svc"), "caBundle": ca_b64,
                "authInfo": auth, "relistBehavior": "Duration", "relistDuration": "15m0s"}}),
    ]
}

/// Every add-on manifest for `cfg`, in apply order; `ca_pem` is credentials/ca.pem.
pub fn manifests(cfg: &Config, ca_pem: &str) -> Vec<Value> {
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut docs = Vec::new();
    if cfg.addons.service_catalog.enabled {
        docs.extend(service_catalog(&ca_b64));
    }
    if cfg.addons.aws_service_broker.enabled {
        docs.extend(aws_service_broker(cfg, &ca_b64));
    }
    docs
}

/// The documents as one multi-document YAML stream.
pub fn to_yaml(docs: &[Value]) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(d).unwrap_or_default());
    }
    out
}

/// A private part of a Secret: the credentials file whose plaintext completes it and the
/// S3 key of that file's KMS ciphertext (what the controllers fetch and decrypt).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fill {
    pub file: String,
    pub key: String,
    /// Strip trailing whitespace (tokens are stored with a newline).
    #[serde(default)]
    pub trim: bool,
}

/// A Secret with its public data, and the keys still to fill from credentials.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecretDoc {
    pub object: Value,
    pub fill: std::collections::BTreeMap<String, Fill>,
}

/// Everything the add-ons put into a cluster, in three apply stages: namespaces and CRDs
/// (then wait until the CRDs are established), the Secrets, then the rest in order.
/// Holds no plaintext secret: it is uploaded to S3 for the controllers, which apply it at
/// boot, and `kube-aws addons apply` fills it from `credentials/` instead.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bundle {
    pub first: Vec<Value>,
    pub secrets: Vec<SecretDoc>,
    pub manifests: Vec<Value>,
}

/// SSM parameter through which the add-ons stack tells the controllers where the bundle
/// is (`<s3 key> <sha256>`); absent when no add-on is on.
pub fn pointer_parameter(cluster: &str) -> String {
    format!("/kube-aws/{cluster}/addons")
}

/// `Kind namespace/name` of a manifest.
pub fn describe(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap_or("?");
    let name = doc["metadata"]["name"].as_str().unwrap_or("?");
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn is_first(doc: &Value) -> bool {
    matches!(
        doc["kind"].as_str(),
        Some("Namespace" | "CustomResourceDefinition")
    )
}

/// The add-ons of `cfg` as a bundle; `creds` supplies the certificates and the
/// fingerprints that name the ciphertexts under `prefix` (the cluster's S3 prefix).
pub fn bundle(
    cfg: &Config,
    creds: &crate::render::Credentials,
    prefix: &str,
) -> Result<Bundle, crate::render::RenderError> {
    let missing = |f: &str| crate::render::RenderError::MissingCredential {
        file: f.to_string(),
    };
    let ca = creds
        .public
        .get("ca.pem")
        .ok_or_else(|| missing("ca.pem"))?;
    let docs = manifests(cfg, ca);
    let (first, manifests): (Vec<Value>, Vec<Value>) = docs.into_iter().partition(is_first);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let fill = |file: &str, trim: bool| -> Result<Fill, crate::render::RenderError> {
        let fp = creds.fingerprints.get(file).ok_or_else(|| missing(file))?;
        Ok(Fill {
            file: file.to_string(),
            key: format!("{prefix}/{}", crate::render::secret_key(file, fp)),
            trim,
        })
    };
    let tls = |ns: &str, name: &str, leaf: &str| -> Result<SecretDoc, crate::render::RenderError> {
        let cert = format!("{leaf}.pem");
        let pem = creds.public.get(&cert).ok_or_else(|| missing(&cert))?;
        Ok(SecretDoc {
            object: json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": ns, "labels": labels(leaf)},
                "data": {"tls.crt": b64(pem)}}),
            fill: [(
                "tls.key".to_string(),
                fill(&format!("{leaf}-key.pem"), false)?,
            )]
            .into(),
        })
    };
    let mut secrets = Vec::new();
    if cfg.addons.service_catalog.enabled {
        secrets.push(tls(
            CATALOG_NAMESPACE,
            "service-catalog-webhook-cert",
            "service-catalog-webhook",
        )?);
    }
    let b = &cfg.addons.aws_service_broker;
    if b.enabled {
        let ns = &b.namespace;
        secrets.push(tls(ns, "aws-service-broker-tls", "aws-service-broker")?);
        let token = fill(crate::pki::spec::BROKER_TOKEN, true)?;
        let (data, fills) = match b.auth {
            crate::config::types::BrokerAuth::Bearer => (json!({}), [("token".into(), token)]),
            crate::config::types::BrokerAuth::Basic => (
                json!({"username": b64(BROKER_BASIC_USER)}),
                [("password".into(), token)],
            ),
        };
        secrets.push(SecretDoc {
            object: json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "aws-service-broker-auth", "namespace": ns, "labels": labels("aws-service-broker")},
                "data": data}),
            fill: fills.into(),
        });
    }
    Ok(Bundle {
        first,
        secrets,
        manifests,
    })
}

/// The user name the Service Catalog presents with `auth: basic` (the broker's default).
pub const BROKER_BASIC_USER: &str = "kube-aws";

impl Bundle {
    /// Objects without Secrets, staged as every bundle is: namespaces and CRDs first.
    pub fn from_objects(docs: Vec<Value>) -> Bundle {
        let (first, manifests) = docs.into_iter().partition(is_first);
        Bundle {
            first,
            secrets: Vec::new(),
            manifests,
        }
    }

    /// Compact, deterministic JSON (object keys sorted).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Every object as a reviewer reads it, in apply order: `Kind namespace/name` and its
    /// YAML. A Secret's private parts show the ciphertext they are completed from, so a
    /// new key shows as a changed line and no plaintext is ever shown.
    pub fn review(&self) -> Vec<(String, String)> {
        let secrets = self.secrets.iter().map(|s| {
            let mut o = s.object.clone();
            for (k, f) in &s.fill {
                o["data"][k] = format!("<KMS ciphertext {}>", f.key).into();
            }
            o
        });
        self.first
            .iter()
            .cloned()
            .chain(secrets)
            .chain(self.manifests.iter().cloned())
            .map(|d| {
                (
                    describe(&d),
                    serde_yaml_ng::to_string(&d).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Names of the CRDs in the first stage, to wait for.
    pub fn crd_names(&self) -> Vec<String> {
        self.first
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    /// The Secrets completed with plaintext from `read(file)` (credentials/ on a
    /// workstation). The controllers (`kube-aws node addons`) call it with what KMS decrypted.
    pub fn filled_secrets<E>(
        &self,
        mut read: impl FnMut(&str) -> Result<Vec<u8>, E>,
    ) -> Result<Vec<Value>, E> {
        let mut out = Vec::new();
        for s in &self.secrets {
            let mut obj = s.object.clone();
            for (k, f) in &s.fill {
                let mut bytes = read(&f.file)?;
                if f.trim {
                    while bytes.last().is_some_and(|c| c.is_ascii_whitespace()) {
                        bytes.pop();
                    }
                }
                obj["data"][k] = base64::engine::general_purpose::STANDARD
                    .encode(&bytes)
                    .into();
            }
            out.push(obj);
        }
        Ok(out)
    }
}
