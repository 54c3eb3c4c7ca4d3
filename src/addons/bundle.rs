//! The `Bundle`: every add-on object in apply stages, Secrets as references to their
//! ciphertexts, and its completion from plaintext.

use super::{AddonsError, labels, manifests};
use crate::config::Config;
use base64::Engine;
use serde_json::{Value, json};

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
    creds: &crate::pki::Credentials,
    prefix: &str,
) -> Result<Bundle, AddonsError> {
    let missing = |f: &str| AddonsError::MissingCredential {
        file: f.to_string(),
    };
    let ca = creds
        .public
        .get("ca.pem")
        .ok_or_else(|| missing("ca.pem"))?;
    let docs = manifests(cfg, ca);
    let (first, manifests): (Vec<Value>, Vec<Value>) = docs.into_iter().partition(is_first);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let fill = |file: &str, trim: bool| -> Result<Fill, AddonsError> {
        let fp = creds.fingerprints.get(file).ok_or_else(|| missing(file))?;
        Ok(Fill {
            file: file.to_string(),
            key: format!("{prefix}/{}", crate::model::names::secret_key(file, fp)),
            trim,
        })
    };
    let tls = |ns: &str, name: &str, leaf: &str| -> Result<SecretDoc, AddonsError> {
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
            crate::model::names::CATALOG_NAMESPACE,
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
