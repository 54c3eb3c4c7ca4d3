//! The broker's records and the operation state machine. Pure: no I/O.
//!
//! An operation's truth is its CloudFormation stack: `op_state` maps the stack's status
//! (or its absence) to the OSB `last_operation` state for that kind of operation.

use crate::deploy::broker::StackState;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Provision,
    Update,
    Deprovision,
    Bind,
    Unbind,
}

impl OpKind {
    pub fn removes(self) -> bool {
        matches!(self, OpKind::Deprovision | OpKind::Unbind)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Op {
    pub id: String,
    pub kind: OpKind,
    /// Unix seconds when the operation began (0 in records written before this field).
    #[serde(default)]
    pub started: u64,
}

/// OSB `last_operation` states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpState {
    InProgress,
    Succeeded,
    Failed(Option<String>),
}

impl OpState {
    pub fn as_str(&self) -> &'static str {
        match self {
            OpState::InProgress => "in progress",
            OpState::Succeeded => "succeeded",
            OpState::Failed(_) => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    pub id: String,
    pub service_id: String,
    pub plan_id: String,
    /// The plan before the update in progress (OSB lets the platform send either while
    /// it runs, and after it failed).
    #[serde(default)]
    pub previous_plan_id: Option<String>,
    /// The parameters before the update in progress (restored if it fails).
    #[serde(default)]
    pub previous_requested: Option<Map<String, Value>>,
    /// The parameters as the platform sent them (for idempotency and GET).
    pub requested: Map<String, Value>,
    pub stack_name: String,
    pub stack_id: Option<String>,
    pub op: Option<Op>,
    /// Set once provisioning succeeded.
    pub ready: bool,
    /// A tombstone: deprovisioned (polls answer 410, a new provision may reuse the id).
    #[serde(default)]
    pub gone: bool,
}

impl Instance {
    /// `plan_id` names this instance's plan (or, during and after an update, the
    /// previous one).
    pub fn has_plan(&self, plan_id: &str) -> bool {
        self.plan_id == plan_id || self.previous_plan_id.as_deref() == Some(plan_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Binding {
    pub id: String,
    pub instance_id: String,
    #[serde(default)]
    pub service_id: String,
    #[serde(default)]
    pub plan_id: String,
    pub requested: Map<String, Value>,
    /// None when the service binds by outputs alone (no IAM user).
    pub stack_name: Option<String>,
    pub stack_id: Option<String>,
    pub op: Option<Op>,
    pub ready: bool,
    /// A tombstone: unbound.
    #[serde(default)]
    pub gone: bool,
}

pub fn ikey(iid: &str) -> String {
    format!("instance/{iid}")
}

pub fn bkey(iid: &str, bid: &str) -> String {
    format!("binding/{iid}/{bid}")
}

/// The longest instance or binding id accepted (a GUID is 36).
pub const MAX_ID: usize = 63;

/// Ids are 1–63 letters, digits or hyphens: they become parts of stack names.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// CloudFormation stack names: at most 128 characters.
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html
pub const MAX_STACK_NAME: usize = 128;

/// `<broker>-<service>-i-<instance>`. Service names have no hyphen, so the name parses
/// back to exactly one (broker, service, instance) and never equals a binding's.
pub fn instance_stack(broker: &str, service: &str, iid: &str) -> String {
    format!("{broker}-{service}-i-{iid}")
}

/// `<broker>-<service>-b<len>-<instance>-<binding>`: the instance id's length makes the
/// split between the two ids unambiguous.
pub fn binding_stack(broker: &str, service: &str, iid: &str, bid: &str) -> String {
    format!("{broker}-{service}-b{}-{iid}-{bid}", iid.len())
}

/// The tags every stack of the broker carries; a stack is adopted only if its tags are
/// exactly these.
pub fn stack_tags(
    broker: &str,
    service: &str,
    iid: &str,
    bid: Option<&str>,
) -> BTreeMap<String, String> {
    let mut t: BTreeMap<String, String> = [
        ("kube-aws:broker".to_string(), broker.to_string()),
        ("kube-aws:service".to_string(), service.to_string()),
        ("kube-aws:instance".to_string(), iid.to_string()),
    ]
    .into();
    if let Some(b) = bid {
        t.insert("kube-aws:binding".into(), b.to_string());
    }
    t
}

/// True when `stack` carries `want` (and, for an instance, no binding tag).
pub fn owns(stack: &StackState, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| stack.tags.get(k) == Some(v))
        && (want.contains_key("kube-aws:binding") || !stack.tags.contains_key("kube-aws:binding"))
}

/// In progress, succeeded or failed (with the reason), for an operation on a stack.
pub fn op_state(kind: OpKind, stack: Option<&StackState>) -> OpState {
    let Some(s) = stack else {
        return if kind.removes() {
            OpState::Succeeded
        } else {
            OpState::Failed(Some("the stack no longer exists".into()))
        };
    };
    let st = s.status.as_str();
    if st.ends_with("_IN_PROGRESS") {
        return OpState::InProgress;
    }
    match (kind, st) {
        (OpKind::Provision | OpKind::Bind, "CREATE_COMPLETE")
        | (OpKind::Update, "UPDATE_COMPLETE" | "CREATE_COMPLETE")
        | (OpKind::Deprovision | OpKind::Unbind, "DELETE_COMPLETE") => OpState::Succeeded,
        _ => OpState::Failed(Some(match &s.reason {
            Some(r) => format!("{st}: {r}"),
            None => st.to_string(),
        })),
    }
}

/// A record this old whose stack call left no stack id was abandoned (a crash, a
/// cancelled request): longer than any CreateStack call takes to answer.
pub const ABANDONED_SECS: u64 = 30;

/// True when `op` began long enough ago to be taken as abandoned (or predates `started`).
pub fn abandoned(op: &Op) -> bool {
    op.started == 0 || now().saturating_sub(op.started) >= ABANDONED_SECS
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

pub fn new_op(kind: OpKind) -> Op {
    let mut b = [0u8; 12];
    // getrandom fails only without an OS entropy source; fall back to the clock.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b.copy_from_slice(&t.to_le_bytes()[..12]);
    }
    Op {
        id: format!("op-{}", hex::encode(b)),
        kind,
        started: now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(status: &str) -> StackState {
        StackState {
            id: "x".into(),
            name: "x".into(),
            status: status.into(),
            reason: Some("because".into()),
            outputs: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn maps_stack_status_to_operation_state() {
        use OpKind::*;
        assert_eq!(
            op_state(Provision, Some(&st("CREATE_IN_PROGRESS"))),
            OpState::InProgress
        );
        assert_eq!(
            op_state(Provision, Some(&st("CREATE_COMPLETE"))),
            OpState::Succeeded
        );
        assert_eq!(
            op_state(Provision, Some(&st("ROLLBACK_COMPLETE"))),
            OpState::Failed(Some("ROLLBACK_COMPLETE: because".into()))
        );
        assert_eq!(
            op_state(Update, Some(&st("UPDATE_ROLLBACK_COMPLETE"))).as_str(),
            "failed"
        );
        assert_eq!(op_state(Deprovision, None), OpState::Succeeded);
        assert_eq!(
            op_state(Deprovision, Some(&st("DELETE_FAILED"))).as_str(),
            "failed"
        );
        assert_eq!(op_state(Provision, None).as_str(), "failed");
    }

    #[test]
    fn stack_names_cannot_collide() {
        // The review's example: instance `abc` with binding `xyz`, and instance `abc-b-xyz`.
        let a = binding_stack("kab", "sqs", "abc", "xyz");
        let b = instance_stack("kab", "sqs", "abc-b-xyz");
        assert_ne!(a, b);
        // Binding ids that straddle the boundary.
        assert_ne!(
            binding_stack("kab", "sqs", "a-b", "c"),
            binding_stack("kab", "sqs", "a", "b-c")
        );
        assert_ne!(
            instance_stack("kab", "sqs", "b3-abc-xyz"),
            binding_stack("kab", "sqs", "abc", "xyz")
        );
        let long = "a".repeat(MAX_ID);
        assert!(
            binding_stack("kube-aws-broker-0001", "rdspostgresql", &long, &long).len()
                > MAX_STACK_NAME
        );
    }

    #[test]
    fn adopts_only_its_own_stacks() {
        let want = stack_tags("kab", "sqs", "abc", None);
        let mut s = st("CREATE_COMPLETE");
        assert!(!owns(&s, &want));
        s.tags = want.clone();
        assert!(owns(&s, &want));
        s.tags.insert("kube-aws:binding".into(), "x".into());
        assert!(!owns(&s, &want), "a binding's stack is not the instance's");
        let mut other = stack_tags("kab", "sqs", "abc-b-xyz", None);
        other.insert("kube-aws:binding".into(), "x".into());
        assert!(!owns(&s, &stack_tags("kab", "sqs", "abc", Some("y"))));
        s.tags = other;
        assert!(!owns(&s, &stack_tags("kab", "sqs", "abc", Some("x"))));
    }

    #[test]
    fn ids() {
        assert!(valid_id("0b2e8d0e-4b1a-4c7e-9b1e-1a2b3c4d5e6f"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("a.b"));
        assert!(!valid_id(&"a".repeat(64)));
    }
}
