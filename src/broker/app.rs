//! The broker's shared state and the helpers every handler uses: versioned record
//! load/save (a lost race is `Write::Conflict`, never a silent overwrite), the
//! per-instance lock of this process, and credentials assembly.

use super::cloud::Cloud;
use super::error::OsbError;
use super::state::{Binding, Instance, Op, OpKind, OpState, op_state};
use super::store::StateStore;
use crate::aws::dynamodb::Write;
use crate::broker_catalog::{Catalog, Service};
use axum::body::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Auth {
    Basic { username: String, password: String },
    Bearer { token: String },
}

/// Knobs with defaults meant for production; tests shorten them.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A synchronous bind or unbind waits this long for its stack, then answers 202.
    pub settle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            settle: Duration::from_secs(40),
        }
    }
}

pub struct App<S, C> {
    pub catalog: Catalog,
    /// `GET /v2/catalog`, serialised once.
    pub catalog_json: Bytes,
    pub store: S,
    pub cloud: C,
    pub broker_id: String,
    pub region: String,
    pub auth: Auth,
    /// The IAM permissions boundary every binding user gets (the add-on's policy ARN).
    pub permissions_boundary: Option<String>,
    /// The IAM principal the broker runs as: templates name it where a resource policy
    /// must let the broker administer what it made (a KMS key policy).
    pub principal: Option<String>,
    pub limits: Limits,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Locks kept before idle ones are dropped.
const LOCKS_KEPT: usize = 1024;

impl<S: StateStore, C: Cloud> App<S, C> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        catalog: Catalog,
        store: S,
        cloud: C,
        broker_id: String,
        region: String,
        auth: Auth,
        permissions_boundary: Option<String>,
        principal: Option<String>,
        limits: Limits,
    ) -> App<S, C> {
        let catalog_json = Bytes::from(serde_json::to_vec(&catalog.osb()).unwrap_or_default());
        App {
            catalog,
            catalog_json,
            store,
            cloud,
            broker_id,
            region,
            auth,
            permissions_boundary,
            principal,
            limits,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Serialises this process's requests on one instance (its bindings included). The
    /// store's conditional writes make the same guarantee across processes; this lock
    /// only spares CloudFormation duplicate calls. Ids are validated before, and idle
    /// locks are dropped, so the map stays bounded.
    pub async fn lock(&self, instance: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut l = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if l.len() >= LOCKS_KEPT {
                l.retain(|_, m| Arc::strong_count(m) > 1);
            }
            l.entry(instance.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    #[cfg(test)]
    pub fn lock_count(&self) -> usize {
        self.locks.lock().map(|l| l.len()).unwrap_or_default()
    }

    /// A record and its version.
    pub async fn load<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>, OsbError> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some((v, ver)) => Ok(Some((
                serde_json::from_value(v)
                    .map_err(|e| OsbError::internal(anyhow::anyhow!("record {key}: {e}")))?,
                ver,
            ))),
        }
    }

    /// Writes a record if it is still at `expected`; returns its new version, or None
    /// when another writer changed it first.
    pub async fn save<T: Serialize>(
        &self,
        key: &str,
        v: &T,
        expected: Option<u64>,
    ) -> Result<Option<u64>, OsbError> {
        let doc = serde_json::to_value(v).map_err(|e| OsbError::internal(e.into()))?;
        Ok(match self.store.put(key, &doc, expected).await? {
            Write::Done => Some(expected.map_or(1, |x| x + 1)),
            Write::Conflict => None,
        })
    }

    pub async fn remove(&self, key: &str, expected: u64) -> Result<bool, OsbError> {
        Ok(self.store.delete(key, expected).await? == Write::Done)
    }

    /// The values of the template parameters the broker fills (`SYSTEM_PREFIX`).
    pub fn system_values(
        &self,
        service: &Service,
        values: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<(), OsbError> {
        for k in service
            .parameters
            .keys()
            .filter(|k| k.starts_with(crate::broker_catalog::SYSTEM_PREFIX))
        {
            let v = match k.as_str() {
                "KubeAwsBrokerPrincipal" => self.principal.clone().ok_or_else(|| {
                    OsbError::internal(anyhow::anyhow!(
                        "service {} needs the broker's principal: start it with --principal",
                        service.name
                    ))
                })?,
                "KubeAwsBrokerId" => self.broker_id.clone(),
                "KubeAwsBrokerBoundaryArn" => {
                    self.permissions_boundary.clone().ok_or_else(|| {
                        OsbError::internal(anyhow::anyhow!(
                            "service {} runs code as a role the broker makes, which needs a boundary: start the broker with --permissions-boundary",
                            service.name
                        ))
                    })?
                }
                other => {
                    return Err(OsbError::internal(anyhow::anyhow!(
                        "service {}: unknown broker parameter {other}",
                        service.name
                    )));
                }
            };
            values.insert(k.clone(), v);
        }
        Ok(())
    }

    /// The instance's service; gone only if the catalog changed under a running broker.
    pub fn service_of(&self, service_id: &str) -> Result<&Service, OsbError> {
        self.catalog.service(service_id).ok_or_else(|| {
            OsbError::internal(anyhow::anyhow!(
                "service {service_id} left the catalog; restore its template"
            ))
        })
    }

    /// The state of an operation on a stack (by id, or by name while the id is unknown).
    pub async fn op_state_of(&self, op: &Op, stack: Option<&str>) -> Result<OpState, OsbError> {
        let st = match stack {
            Some(id) => self.cloud.state(id).await?,
            None => None,
        };
        Ok(op_state(op.kind, st.as_ref()))
    }

    /// True while an operation of the instance still runs in CloudFormation.
    pub async fn busy(&self, inst: &Instance) -> Result<bool, OsbError> {
        let Some(op) = &inst.op else { return Ok(false) };
        match &inst.stack_id {
            Some(id) => Ok(self.op_state_of(op, Some(id)).await? == OpState::InProgress),
            None => Ok(op.kind == OpKind::Provision),
        }
    }

    /// A ready binding's credentials: the instance outputs the service names, secrets
    /// read from Secrets Manager (the binding user's access key, a database password),
    /// and the region.
    pub async fn credentials(
        &self,
        inst: &Instance,
        b: &Binding,
        service: &Service,
    ) -> Result<Map<String, Value>, OsbError> {
        let outputs = match &inst.stack_id {
            Some(id) => self
                .cloud
                .state(id)
                .await?
                .map(|s| s.outputs)
                .unwrap_or_default(),
            None => Default::default(),
        };
        let mut c = Map::new();
        for (key, output) in &service.credentials {
            if let Some(v) = outputs.get(output) {
                c.insert(key.clone(), json!(v));
            }
        }
        for (key, r) in &service.secret_credentials {
            let Some(arn) = outputs.get(&r.output) else {
                continue;
            };
            let s = self.cloud.secret(arn).await?;
            let v: Value = serde_json::from_str(&s)
                .map_err(|e| OsbError::internal(anyhow::anyhow!("secret {arn}: {e}")))?;
            if let Some(x) = v.get(&r.key).and_then(Value::as_str) {
                c.insert(key.clone(), json!(x));
            }
        }
        if let Some(id) = &b.stack_id {
            let outs = self
                .cloud
                .state(id)
                .await?
                .map(|s| s.outputs)
                .unwrap_or_default();
            let p = &service.bind_prefix;
            let (mut key, mut secret) = (
                outs.get("AccessKeyId").cloned(),
                outs.get("SecretAccessKey").cloned(),
            );
            if let Some(arn) = outs.get("CredentialsSecretArn") {
                let s = self.cloud.secret(arn).await?;
                let v: Value = serde_json::from_str(&s)
                    .map_err(|e| OsbError::internal(anyhow::anyhow!("secret {arn}: {e}")))?;
                key = v
                    .get("AccessKeyId")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                secret = v
                    .get("SecretAccessKey")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            if let Some(v) = key {
                c.insert(format!("{p}_AWS_ACCESS_KEY_ID"), json!(v));
            }
            if let Some(v) = secret {
                c.insert(format!("{p}_AWS_SECRET_ACCESS_KEY"), json!(v));
            }
        }
        c.insert(
            format!("{}_REGION", service.bind_prefix),
            json!(self.region),
        );
        Ok(c)
    }
}
