//! CloudFormation (and Secrets Manager) behind the narrow interface the handlers need,
//! as eksctl keeps its stack manager behind an interface: the real one is
//! `deploy::broker::CfnBackend`; `Fake` (tests only) keeps stacks in memory.

use crate::deploy::broker::{CfnBackend, CfnError, Created, StackState};
use anyhow::Result;
use std::collections::BTreeMap;
use std::future::Future;

pub trait Cloud: Send + Sync + 'static {
    /// CreateStack, idempotent under `token`.
    fn create(
        &self,
        name: &str,
        body: &str,
        values: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
        token: &str,
    ) -> impl Future<Output = Result<Created, CfnError>> + Send;
    /// UpdateStack; Ok(false) when there is nothing to change.
    fn update(
        &self,
        id: &str,
        body: &str,
        values: &BTreeMap<String, String>,
        all_parameters: &[String],
        token: &str,
    ) -> impl Future<Output = Result<bool, CfnError>> + Send;
    fn delete(&self, id: &str, token: &str) -> impl Future<Output = Result<()>> + Send;
    /// The stack (by id or name); None when it does not exist.
    fn state(&self, id: &str) -> impl Future<Output = Result<Option<StackState>>> + Send;
    /// A Secrets Manager secret's SecretString.
    fn secret(&self, arn: &str) -> impl Future<Output = Result<String>> + Send;
}

impl Cloud for CfnBackend {
    async fn create(
        &self,
        name: &str,
        body: &str,
        values: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
        token: &str,
    ) -> Result<Created, CfnError> {
        CfnBackend::create(self, name, body, values, tags, token).await
    }
    async fn update(
        &self,
        id: &str,
        body: &str,
        values: &BTreeMap<String, String>,
        all_parameters: &[String],
        token: &str,
    ) -> Result<bool, CfnError> {
        CfnBackend::update(self, id, body, values, all_parameters, token).await
    }
    async fn delete(&self, id: &str, token: &str) -> Result<()> {
        CfnBackend::delete(self, id, token).await
    }
    async fn state(&self, id: &str) -> Result<Option<StackState>> {
        CfnBackend::state(self, id).await
    }
    async fn secret(&self, arn: &str) -> Result<String> {
        CfnBackend::secret(self, arn).await
    }
}

/// In-memory CloudFormation for unit tests: stacks complete at once unless `slow` is
/// set (then they stay in progress until `finish`); calls are counted.
#[cfg(test)]
#[derive(Default)]
pub struct Fake {
    pub stacks: std::sync::Mutex<Vec<(StackState, String)>>,
    pub creates: std::sync::atomic::AtomicUsize,
    pub deletes: std::sync::atomic::AtomicUsize,
    pub slow: std::sync::atomic::AtomicBool,
    pub secrets: std::sync::Mutex<BTreeMap<String, String>>,
}

#[cfg(test)]
impl Fake {
    pub fn finish(&self) {
        for (s, _) in self.stacks.lock().unwrap().iter_mut() {
            s.status = s.status.replace("_IN_PROGRESS", "_COMPLETE");
        }
    }
    pub fn live(&self) -> Vec<StackState> {
        self.stacks
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s.status != "DELETE_COMPLETE")
            .map(|(s, _)| s.clone())
            .collect()
    }
    fn status(&self, done: &str) -> String {
        if self.slow.load(std::sync::atomic::Ordering::SeqCst) {
            done.replace("_COMPLETE", "_IN_PROGRESS")
        } else {
            done.to_string()
        }
    }
}

#[cfg(test)]
impl Cloud for Fake {
    async fn create(
        &self,
        name: &str,
        body: &str,
        values: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
        token: &str,
    ) -> Result<Created, CfnError> {
        use std::sync::atomic::Ordering;
        let _ = values;
        let mut st = self.stacks.lock().unwrap();
        if let Some((s, t)) = st
            .iter()
            .find(|(s, _)| s.name == name && s.status != "DELETE_COMPLETE")
        {
            return Ok(if t == token {
                Created::Id(s.id.clone())
            } else {
                Created::Exists(Some(s.clone()))
            });
        }
        self.creates.fetch_add(1, Ordering::SeqCst);
        let id = format!(
            "arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/{}",
            st.len()
        );
        // Every output of the template, valued `<stack>/<output>`.
        let mut outputs: BTreeMap<String, String> = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|t| t.get("Outputs").and_then(|o| o.as_object()).cloned())
            .unwrap_or_default()
            .keys()
            .map(|k| (k.clone(), format!("{name}/{k}")))
            .collect();
        if tags.contains_key("kube-aws:binding") {
            let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}");
            self.secrets.lock().unwrap().insert(
                arn.clone(),
                format!(
                    r#"{{"AccessKeyId":"AKIA{0}","SecretAccessKey":"secret-{0}"}}"#,
                    st.len()
                ),
            );
            outputs.insert("CredentialsSecretArn".to_string(), arn);
        }
        st.push((
            StackState {
                id: id.clone(),
                name: name.to_string(),
                status: self.status("CREATE_COMPLETE"),
                reason: None,
                outputs,
                tags: tags.clone(),
            },
            token.to_string(),
        ));
        Ok(Created::Id(id))
    }
    async fn update(
        &self,
        id: &str,
        _body: &str,
        values: &BTreeMap<String, String>,
        _all: &[String],
        _token: &str,
    ) -> Result<bool, CfnError> {
        let status = self.status("UPDATE_COMPLETE");
        let mut st = self.stacks.lock().unwrap();
        match st.iter_mut().find(|(s, _)| s.id == id) {
            Some((s, _)) if !values.is_empty() => {
                s.status = status;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(CfnError::Refused(format!("stack {id} does not exist"))),
        }
    }
    async fn delete(&self, id: &str, _token: &str) -> Result<()> {
        self.deletes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let status = self.status("DELETE_COMPLETE");
        for (s, _) in self.stacks.lock().unwrap().iter_mut() {
            if (s.id == id || s.name == id) && s.status != "DELETE_COMPLETE" {
                s.status = status.clone();
            }
        }
        Ok(())
    }
    async fn state(&self, id: &str) -> Result<Option<StackState>> {
        let st = self.stacks.lock().unwrap();
        Ok(st
            .iter()
            .rev()
            .find(|(s, _)| s.id == id || (s.name == id && s.status != "DELETE_COMPLETE"))
            .map(|(s, _)| s.clone()))
    }
    async fn secret(&self, arn: &str) -> Result<String> {
        self.secrets
            .lock()
            .unwrap()
            .get(arn)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no secret {arn}"))
    }
}
