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

pub mod broker;
pub mod bundle;
pub mod catalog;
pub mod crds;

pub use bundle::{Bundle, Fill, SecretDoc, bundle, describe, pointer_parameter};

/// What building the add-ons can fail on.
#[derive(Debug, thiserror::Error)]
pub enum AddonsError {
    #[error("credentials/{file} is missing\n  fix: run `kube-aws render credentials` first")]
    MissingCredential { file: String },
}

pub(crate) fn labels(app: &str) -> Value {
    json!({"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "service-catalog", "app.kubernetes.io/managed-by": "kube-aws"})
}

pub(crate) fn hardened_container(name: &str, image: &str, args: Value, port: u16) -> Value {
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

/// Every add-on manifest for `cfg`, in apply order; `ca_pem` is credentials/ca.pem.
pub fn manifests(cfg: &Config, ca_pem: &str) -> Vec<Value> {
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut docs = Vec::new();
    if cfg.addons.service_catalog.enabled {
        docs.extend(catalog::service_catalog(&ca_b64));
    }
    if cfg.addons.aws_service_broker.enabled {
        docs.extend(broker::aws_service_broker(cfg, &ca_b64));
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
