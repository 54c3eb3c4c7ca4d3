//! The broker's CloudFormation side: one stack per service instance and per binding that
//! needs an IAM user. Every create carries a ClientRequestToken (the operation id), so a
//! broker restarted mid-request can send it again without making a second stack. A stack
//! that already exists under the name is reported with its tags, never adopted here: the
//! broker decides whether it is its own. Binding secrets are read from Secrets Manager.

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
    pub name: String,
    pub status: String,
    pub reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// The IAM principal of the broker's credentials, as a resource policy names it: an
/// assumed role's session becomes its role (`arn:…:sts::A:assumed-role/R/S` →
/// `arn:…:iam::A:role/R`; a role with a path must be passed explicitly).
pub async fn caller_principal(sdk: &aws_config::SdkConfig) -> Result<String> {
    let out = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("sts:GetCallerIdentity: {}", describe(&e)))?;
    let arn = out
        .arn()
        .ok_or_else(|| anyhow::anyhow!("sts:GetCallerIdentity returned no ARN"))?;
    Ok(principal_of(arn))
}

/// See `caller_principal`.
pub fn principal_of(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [a, partition, "sts", _, account, rest] = parts.as_slice()
        && let Some(r) = rest.strip_prefix("assumed-role/")
        && let Some((role, _session)) = r.split_once('/')
    {
        return format!("{a}:{partition}:iam::{account}:role/{role}");
    }
    arn.to_string()
}

/// What CreateStack did.
#[derive(Debug)]
pub enum Created {
    /// A new stack (or the one this token already created).
    Id(String),
    /// A stack of that name exists; the caller checks its tags before using it.
    Exists(Option<StackState>),
}

/// Why a call failed: CloudFormation refused the request (a bad template parameter: the
/// platform's error), or anything else (the broker's).
#[derive(Debug)]
pub enum CfnError {
    Refused(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for CfnError {
    fn from(e: anyhow::Error) -> Self {
        CfnError::Other(e)
    }
}

#[derive(Clone)]
pub struct CfnBackend {
    pub cfn: Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub s3: aws_sdk_s3::Client,
}

/// How long one deprovision empties the stack's buckets before DeleteStack: a bucket
/// with more objects fails the delete (DELETE_FAILED, reported by last_operation) and
/// the platform's next deprovision empties further.
const EMPTY_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

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
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            s3: crate::aws::s3(sdk),
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
    ) -> Result<Created, CfnError> {
        let mut req = self
            .cfn
            .create_stack()
            .stack_name(name)
            .template_body(body)
            .set_parameters(Some(params(values, &[])))
            // Named IAM resources (EMR's instance profile shares its role's name).
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .client_request_token(token);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        match req.send().await {
            Ok(o) => Ok(Created::Id(o.stack_id().unwrap_or(name).to_string())),
            Err(e) => {
                let msg = describe(&e);
                if msg.contains("AlreadyExists") {
                    return Ok(Created::Exists(self.state(name).await?));
                }
                if msg.starts_with("ValidationError") || msg.starts_with("InsufficientCapabilities")
                {
                    return Err(CfnError::Refused(format!("creating stack {name}: {msg}")));
                }
                Err(CfnError::Other(anyhow::anyhow!(
                    "creating stack {name}: {msg}"
                )))
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
    ) -> Result<bool, CfnError> {
        match self
            .cfn
            .update_stack()
            .stack_name(id)
            .template_body(body)
            .set_parameters(Some(params(values, all_parameters)))
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .client_request_token(token)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let msg = describe(&e);
                if msg.contains("No updates are to be performed") {
                    Ok(false)
                } else if msg.starts_with("ValidationError") {
                    Err(CfnError::Refused(format!("updating stack {id}: {msg}")))
                } else {
                    Err(CfnError::Other(anyhow::anyhow!(
                        "updating stack {id}: {msg}"
                    )))
                }
            }
        }
    }

    /// Empties the stack's buckets that its template deletes with it (CloudFormation
    /// cannot delete a bucket that holds objects, and an access-log bucket always does:
    /// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-s3-bucket.html),
    /// then DeleteStack. Deprovisioning deletes every resource the instance made (OSB
    /// 2.17 Deprovisioning); buckets under DeletionPolicy Retain are left alone.
    pub async fn delete(&self, id: &str, token: &str) -> Result<()> {
        if let Err(e) = self.empty_buckets(id).await {
            eprintln!(
                "emptying the buckets of {id}: {e:#} (DeleteStack may fail; a repeated deprovision retries)"
            );
        }
        self.cfn
            .delete_stack()
            .stack_name(id)
            .client_request_token(token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("deleting stack {id}: {}", describe(&e)))?;
        Ok(())
    }

    async fn empty_buckets(&self, id: &str) -> Result<()> {
        let tpl = self
            .cfn
            .get_template()
            .stack_name(id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GetTemplate {id}: {}", describe(&e)))?;
        let t: serde_json::Value =
            serde_json::from_str(tpl.template_body().unwrap_or("{}")).unwrap_or_default();
        let deleted: Vec<String> = t["Resources"]
            .as_object()
            .map(|r| {
                r.iter()
                    .filter(|(_, v)| v["Type"] == "AWS::S3::Bucket")
                    .filter(|(_, v)| {
                        !v["DeletionPolicy"]
                            .as_str()
                            .is_some_and(|p| p.starts_with("Retain"))
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        if deleted.is_empty() {
            return Ok(());
        }
        let res = self
            .cfn
            .describe_stack_resources()
            .stack_name(id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DescribeStackResources {id}: {}", describe(&e)))?;
        let until = std::time::Instant::now() + EMPTY_BUDGET;
        for r in res.stack_resources() {
            let (Some(logical), Some(bucket)) = (r.logical_resource_id(), r.physical_resource_id())
            else {
                continue;
            };
            if deleted.iter().any(|d| d == logical) {
                self.empty_bucket(bucket, until).await?;
            }
        }
        Ok(())
    }

    /// Deletes every object version and delete marker of `bucket`, 1,000 per call.
    async fn empty_bucket(&self, bucket: &str, until: std::time::Instant) -> Result<()> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        while std::time::Instant::now() < until {
            let page = match self.s3.list_object_versions().bucket(bucket).send().await {
                Ok(p) => p,
                // Already gone (a repeated deprovision): nothing to empty.
                Err(e) if describe(&e).contains("NoSuchBucket") => return Ok(()),
                Err(e) => anyhow::bail!("listing {bucket}: {}", describe(&e)),
            };
            let mut ids: Vec<ObjectIdentifier> = Vec::new();
            for (key, version) in page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                )
            {
                if let Some(k) = key {
                    let mut o = ObjectIdentifier::builder().key(k);
                    if let Some(v) = version.filter(|v| *v != "null") {
                        o = o.version_id(v);
                    }
                    ids.push(o.build()?);
                }
            }
            if ids.is_empty() {
                return Ok(());
            }
            self.s3
                .delete_objects()
                .bucket(bucket)
                .delete(
                    Delete::builder()
                        .set_objects(Some(ids))
                        .quiet(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("emptying {bucket}: {}", describe(&e)))?;
        }
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
            name: s.stack_name().unwrap_or_default().to_string(),
            tags: s
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
            status,
            reason,
            outputs: s
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
                .collect(),
        }))
    }

    /// The SecretString of a Secrets Manager secret (a binding's access key, a database
    /// password): read at bind time, never stored or logged by the broker.
    pub async fn secret(&self, arn: &str) -> Result<String> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("reading secret {arn}: {}", describe(&e)))?;
        out.secret_string()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("secret {arn} has no SecretString"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn principals() {
        assert_eq!(
            super::principal_of("arn:aws:sts::123456789012:assumed-role/kube-aws-c-b/i-0abc"),
            "arn:aws:iam::123456789012:role/kube-aws-c-b"
        );
        assert_eq!(
            super::principal_of("arn:aws:iam::123456789012:user/alice"),
            "arn:aws:iam::123456789012:user/alice"
        );
    }
}
