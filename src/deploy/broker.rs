//! The broker's CloudFormation side: one stack per service instance and per binding that
//! needs an IAM user. Every create carries a ClientRequestToken (the operation id), so a
//! broker restarted mid-request can send it again without making a second stack.

use super::stack;
use crate::aws::describe;
use anyhow::Result;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{Capability, Parameter, Tag};
use std::collections::BTreeMap;

/// What the broker needs to know of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackState {
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct CfnBackend {
    pub cfn: Client,
}

fn params(values: &BTreeMap<String, String>, previous: &[String]) -> Vec<Parameter> {
    let mut v: Vec<Parameter> = values
        .iter()
        .map(|(k, x)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(x)
                .build()
        })
        .collect();
    for k in previous.iter().filter(|k| !values.contains_key(*k)) {
        v.push(
            Parameter::builder()
                .parameter_key(k)
                .use_previous_value(true)
                .build(),
        );
    }
    v
}

impl CfnBackend {
    pub fn new(sdk: &aws_config::SdkConfig) -> CfnBackend {
        CfnBackend {
            cfn: crate::aws::cloudformation(sdk),
        }
    }

    /// Creates `name` (idempotent under `token`); returns the stack id.
    pub async fn create(
        &self,
        name: &str,
        body: &str,
        values: &BTreeMap<String, String>,
        tags: &BTreeMap<String, String>,
        token: &str,
    ) -> Result<String> {
        let mut req = self
            .cfn
            .create_stack()
            .stack_name(name)
            .template_body(body)
            .set_parameters(Some(params(values, &[])))
            .capabilities(Capability::CapabilityIam)
            .client_request_token(token);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        match req.send().await {
            Ok(o) => Ok(o.stack_id().unwrap_or(name).to_string()),
            Err(e) => {
                let msg = describe(&e);
                if msg.contains("AlreadyExists")
                    && let Some(s) = self.state(name).await?
                {
                    return Ok(s.id);
                }
                Err(anyhow::anyhow!("creating stack {name}: {msg}"))
            }
        }
    }

    /// Updates `id` with new values for some parameters (the others keep theirs).
    /// Ok(false) when CloudFormation finds nothing to change.
    pub async fn update(
        &self,
        id: &str,
        body: &str,
        values: &BTreeMap<String, String>,
        all_parameters: &[String],
        token: &str,
    ) -> Result<bool> {
        match self
            .cfn
            .update_stack()
            .stack_name(id)
            .template_body(body)
            .set_parameters(Some(params(values, all_parameters)))
            .capabilities(Capability::CapabilityIam)
            .client_request_token(token)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let msg = describe(&e);
                if msg.contains("No updates are to be performed") {
                    Ok(false)
                } else {
                    Err(anyhow::anyhow!("updating stack {id}: {msg}"))
                }
            }
        }
    }

    pub async fn delete(&self, id: &str, token: &str) -> Result<()> {
        self.cfn
            .delete_stack()
            .stack_name(id)
            .client_request_token(token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("deleting stack {id}: {}", describe(&e)))?;
        Ok(())
    }

    /// The stack's status and outputs; None when it does not exist (or is deleted).
    pub async fn state(&self, id: &str) -> Result<Option<StackState>> {
        let Some(s) = stack::describe_stack(&self.cfn, id).await? else {
            return Ok(None);
        };
        let status = stack::status_of(&s);
        let mut reason = s.stack_status_reason().map(str::to_string);
        if status.ends_with("FAILED") || status.contains("ROLLBACK") {
            let evs = stack::events(&self.cfn, id).await.unwrap_or_default();
            let tagged: Vec<(String, _)> = evs.into_iter().map(|e| (id.to_string(), e)).collect();
            if let Some(c) = stack::root_cause(&tagged) {
                reason = Some(c);
            }
        }
        Ok(Some(StackState {
            id: s.stack_id().unwrap_or(id).to_string(),
            status,
            reason,
            outputs: s
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
                .collect(),
        }))
    }
}
