//! CloudFormation queries: the root stack, its nested stacks, their events.

use crate::aws::describe;
use anyhow::Result;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::types::{Stack, StackEvent};
use serde::Serialize;

/// A stack as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StackView {
    /// `root` for the root stack, else the nested stack's logical id in the root.
    pub logical_id: String,
    pub name: String,
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub last_event: Option<String>,
    pub outputs: Vec<(String, String)>,
}

/// The root stack, or None when it does not exist.
pub async fn describe_stack(cfn: &Client, name_or_id: &str) -> Result<Option<Stack>> {
    match cfn.describe_stacks().stack_name(name_or_id).send().await {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(e) => {
            let msg = describe(&e);
            if msg.contains("does not exist") {
                Ok(None)
            } else {
                Err(anyhow::anyhow!("describing stack {name_or_id}: {msg}"))
            }
        }
    }
}

pub fn status_of(s: &Stack) -> String {
    s.stack_status()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default()
}

/// (logical id, stack id) of every nested stack of `root`.
pub async fn nested(cfn: &Client, root: &str) -> Result<Vec<(String, String)>> {
    let out = cfn
        .describe_stack_resources()
        .stack_name(root)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("listing the resources of {root}: {}", describe(&e)))?;
    Ok(out
        .stack_resources()
        .iter()
        .filter(|r| r.resource_type() == Some("AWS::CloudFormation::Stack"))
        .filter_map(|r| {
            Some((
                r.logical_resource_id()?.to_string(),
                r.physical_resource_id()?.to_string(),
            ))
        })
        .collect())
}

/// The newest page of events of a stack, newest first.
pub async fn events(cfn: &Client, stack: &str) -> Result<Vec<StackEvent>> {
    let out = cfn
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("reading the events of {stack}: {}", describe(&e)))?;
    Ok(out.stack_events().to_vec())
}

pub fn event_line(e: &StackEvent) -> String {
    format!(
        "{} {} ({}) {}{}",
        e.timestamp().map(|t| t.to_string()).unwrap_or_default(),
        e.logical_resource_id().unwrap_or("?"),
        e.resource_type().unwrap_or("?"),
        e.resource_status().map(|s| s.as_str()).unwrap_or("?"),
        e.resource_status_reason()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    )
}

pub fn is_terminal(status: &str) -> bool {
    !status.ends_with("_IN_PROGRESS")
}

pub fn is_success(status: &str) -> bool {
    matches!(
        status,
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "DELETE_COMPLETE" | "IMPORT_COMPLETE"
    )
}

/// The first real failure among `events` (any stacks): FAILED, and not a cancellation or
/// a parent's summary of a child's failure.
pub fn root_cause(events: &[(String, StackEvent)]) -> Option<String> {
    let mut failures: Vec<&(String, StackEvent)> = events
        .iter()
        .filter(|(_, e)| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("FAILED"))
        })
        .filter(|(_, e)| {
            let reason = e
                .resource_status_reason()
                .unwrap_or_default()
                .to_ascii_lowercase();
            !reason.contains("cancelled")
                && !reason.contains("the following resource(s) failed")
                && !reason.contains("embedded stack")
        })
        .collect();
    failures.sort_by_key(|(_, e)| e.timestamp().map(|t| (t.secs(), t.subsec_nanos())));
    failures.first().map(|(stack, e)| {
        format!(
            "{} ({}) in stack {stack}: {}",
            e.logical_resource_id().unwrap_or("?"),
            e.resource_type().unwrap_or("?"),
            e.resource_status_reason().unwrap_or("no reason given")
        )
    })
}

/// Root and nested stacks with status, last event and outputs.
pub async fn view(cfn: &Client, root: &Stack) -> Result<Vec<StackView>> {
    let root_id = root.stack_id().unwrap_or_default().to_string();
    let mut out = vec![to_view("root", root, last_event(cfn, &root_id).await)];
    for (logical, id) in nested(cfn, &root_id).await? {
        if let Some(s) = describe_stack(cfn, &id).await? {
            out.push(to_view(&logical, &s, last_event(cfn, &id).await));
        }
    }
    Ok(out)
}

async fn last_event(cfn: &Client, id: &str) -> Option<String> {
    events(cfn, id)
        .await
        .ok()
        .and_then(|e| e.first().map(event_line))
}

fn to_view(logical: &str, s: &Stack, last_event: Option<String>) -> StackView {
    StackView {
        logical_id: logical.to_string(),
        name: s.stack_name().unwrap_or_default().to_string(),
        id: s.stack_id().unwrap_or_default().to_string(),
        status: status_of(s),
        reason: s.stack_status_reason().map(str::to_string),
        last_event,
        outputs: s
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::primitives::DateTime;
    use aws_sdk_cloudformation::types::ResourceStatus;

    fn ev(t: i64, logical: &str, kind: &str, status: ResourceStatus, reason: &str) -> StackEvent {
        StackEvent::builder()
            .event_id(format!("{t}-{logical}"))
            .stack_id("s")
            .stack_name("s")
            .timestamp(DateTime::from_secs(t))
            .logical_resource_id(logical)
            .resource_type(kind)
            .resource_status(status)
            .resource_status_reason(reason)
            .build()
    }

    #[test]
    fn root_cause_is_the_first_real_failure() {
        let events = vec![
            (
                "root".to_string(),
                ev(
                    30,
                    "NodePoolGeneral",
                    "AWS::CloudFormation::Stack",
                    ResourceStatus::CreateFailed,
                    "Embedded stack arn:… was not successfully created: The following resource(s) failed to create: [WorkerGroup]",
                ),
            ),
            (
                "NodePoolGeneral".to_string(),
                ev(
                    20,
                    "WorkerLaunchTemplate",
                    "AWS::EC2::LaunchTemplate",
                    ResourceStatus::CreateFailed,
                    "Resource creation cancelled",
                ),
            ),
            (
                "NodePoolGeneral".to_string(),
                ev(
                    10,
                    "WorkerGroup",
                    "AWS::AutoScaling::AutoScalingGroup",
                    ResourceStatus::CreateFailed,
                    "You are not authorized to use launch template",
                ),
            ),
            (
                "Network".to_string(),
                ev(
                    5,
                    "Vpc",
                    "AWS::EC2::VPC",
                    ResourceStatus::CreateComplete,
                    "",
                ),
            ),
            (
                "Etcd".to_string(),
                ev(
                    15,
                    "Etcd0",
                    "AWS::EC2::Instance",
                    ResourceStatus::CreateFailed,
                    "Resource creation cancelled",
                ),
            ),
        ];
        let cause = root_cause(&events).expect("a cause");
        assert!(
            cause.starts_with(
                "WorkerGroup (AWS::AutoScaling::AutoScalingGroup) in stack NodePoolGeneral"
            ),
            "{cause}"
        );
        assert!(cause.contains("not authorized"), "{cause}");
        assert_eq!(root_cause(&events[3..4]), None);
    }

    #[test]
    fn terminal_and_success_states() {
        assert!(
            !is_terminal("CREATE_IN_PROGRESS")
                && !is_terminal("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        );
        assert!(is_terminal("ROLLBACK_COMPLETE") && !is_success("ROLLBACK_COMPLETE"));
        assert!(is_success("CREATE_COMPLETE") && !is_success("UPDATE_ROLLBACK_COMPLETE"));
    }
}
