//! Service binding endpoints: bind, unbind, fetch, last_operation.
//!
//! A binding of a service with a `bindPolicy` is a stack: an IAM user bounded by the
//! add-on's permissions boundary, its access key kept in Secrets Manager. Services
//! without one bind by their instance's outputs alone.

use super::app::App;
use super::cloud::Cloud;
use super::error::OsbError;
use super::instances::{Q, Res, ok, same_instance, service_and_plan};
use super::state::{
    Binding, Instance, MAX_STACK_NAME, Op, OpKind, OpState, abandoned, binding_stack, bkey, ikey,
    new_op, owns, stack_tags,
};
use super::store::StateStore;
use super::validate::{Checked, Endpoint, check};
use crate::broker_catalog::{self as catalog, Service};
use crate::deploy::broker::{CfnError, Created};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `service_id` / `plan_id` must be those the binding was made with.
fn same_binding(c: &Checked, b: &Binding, inst: Option<&Instance>) -> Result<(), OsbError> {
    if let Some(s) = c.str("service_id")
        && !b.service_id.is_empty()
        && s != b.service_id
    {
        return Err(OsbError::bad(format!(
            "service_id {s} is not the service of binding {}",
            b.id
        )));
    }
    if let Some(p) = c.str("plan_id")
        && p != b.plan_id
        && !inst.is_some_and(|i| i.has_plan(p))
    {
        return Err(OsbError::bad(format!(
            "plan_id {p} is not the plan of binding {}",
            b.id
        )));
    }
    Ok(())
}

/// The instance a binding request names; 404 when there is none.
async fn instance_for<S: StateStore, C: Cloud>(
    app: &App<S, C>,
    iid: &str,
) -> Result<Instance, OsbError> {
    match app.load::<Instance>(&ikey(iid)).await? {
        Some((i, _)) if !i.gone => Ok(i),
        _ => Err(OsbError::not_found(format!("no service instance {iid}"))),
    }
}

/// CreateStack of a binding's IAM user; adopts an existing stack only when its tags say
/// it is this binding's.
async fn create_stack<S: StateStore, C: Cloud>(
    app: &App<S, C>,
    service: &Service,
    inst: &Instance,
    b: &Binding,
    op: &Op,
) -> Result<String, CfnError> {
    let outputs = match &inst.stack_id {
        Some(id) => app
            .cloud
            .state(id)
            .await?
            .map(|s| s.outputs)
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let statements = service
        .bind_policy
        .iter()
        .map(|s| catalog::substitute(s, &outputs))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            CfnError::Other(anyhow::anyhow!("the {} binding policy: {e}", service.name))
        })?;
    let template = catalog::binding_template(
        &service.name,
        &app.broker_id,
        &statements,
        app.permissions_boundary.as_deref(),
    );
    let body = serde_json::to_string(&template).map_err(|e| CfnError::Other(e.into()))?;
    let tags = stack_tags(&app.broker_id, &service.name, &inst.id, Some(&b.id));
    let name = b.stack_name.clone().unwrap_or_default();
    match app
        .cloud
        .create(&name, &body, &BTreeMap::new(), &tags, &op.id)
        .await?
    {
        Created::Id(id) => Ok(id),
        Created::Exists(Some(s)) if owns(&s, &tags) => Ok(s.id),
        Created::Exists(_) => Err(CfnError::Other(anyhow::anyhow!(
            "a stack named {name} exists and its tags are not binding {}'s; not adopting it",
            b.id
        ))),
    }
}

/// Waits (at most `limits.settle`) for a binding's stack: Ok(true) when the operation
/// succeeded, Ok(false) while it still runs (answer 202), an error when it failed.
async fn settle<S: StateStore, C: Cloud>(
    app: &App<S, C>,
    id: &str,
    op: &Op,
) -> Result<bool, OsbError> {
    let t = Instant::now();
    let mut i = 0u64;
    loop {
        match app.op_state_of(op, Some(id)).await? {
            OpState::Succeeded => return Ok(true),
            OpState::Failed(d) => {
                return Err(OsbError::internal(anyhow::anyhow!(
                    "the binding's stack {id}: {}",
                    d.unwrap_or_default()
                )));
            }
            OpState::InProgress if t.elapsed() >= app.limits.settle => return Ok(false),
            OpState::InProgress => {
                tokio::time::sleep(Duration::from_millis(200 + 50 * i.min(16))).await;
                i += 1;
            }
        }
    }
}

pub async fn bind<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path((iid, bid)): Path<(String, String)>,
    Query(q): Q,
    body: Bytes,
) -> Res {
    let c = check(Endpoint::Bind, &[&iid, &bid], &q, &body)?;
    let (service, plan) = service_and_plan(&app, &c)?;
    let plan = plan.ok_or_else(|| OsbError::bad("plan_id is required"))?;
    let requested = c.object("parameters");
    if !requested.is_empty() {
        return Err(OsbError::bad("bindings take no parameters"));
    }
    if !service.bindable {
        return Err(OsbError::bad(format!(
            "service {} is not bindable",
            service.name
        )));
    }
    let stack_name = (!service.bind_policy.is_empty())
        .then(|| binding_stack(&app.broker_id, &service.name, &iid, &bid));
    if stack_name
        .as_ref()
        .is_some_and(|n| n.len() > MAX_STACK_NAME)
    {
        return Err(OsbError::bad(format!(
            "instance and binding ids are too long together for a CloudFormation stack name (at most {MAX_STACK_NAME} characters with the broker id and service)"
        )));
    }
    let guard = app.lock(&iid).await;
    let inst = instance_for(&app, &iid).await?;
    same_instance(&c, &inst)?;
    if !inst.ready || app.busy(&inst).await? {
        return Err(OsbError::concurrency());
    }
    let op = new_op(OpKind::Bind);
    let mut b = Binding {
        id: bid.clone(),
        instance_id: iid.clone(),
        service_id: service.id.clone(),
        plan_id: plan.id.clone(),
        requested,
        stack_name,
        stack_id: None,
        op: Some(op.clone()),
        ready: false,
        gone: false,
    };
    for _ in 0..2 {
        let existing = app.load::<Binding>(&bkey(&iid, &bid)).await?;
        let expected = match &existing {
            Some((e, v)) if e.gone => Some(*v),
            Some((e, v)) => return same_bind(&app, &c, &inst, e, *v, &b, service).await,
            None => None,
        };
        if b.stack_name.is_none() {
            b.ready = true;
            if app.save(&bkey(&iid, &bid), &b, expected).await?.is_none() {
                continue;
            }
            let creds = app.credentials(&inst, &b, service).await?;
            return ok(StatusCode::CREATED, json!({"credentials": creds}));
        }
        // The record first, conditionally: of N binds racing on two replicas, one
        // writes it and makes the stack; the others answer from its record.
        let Some(ver) = app.save(&bkey(&iid, &bid), &b, expected).await? else {
            continue;
        };
        let id = match create_stack(&app, service, &inst, &b, &op).await {
            Ok(id) => id,
            Err(CfnError::Refused(m)) => {
                app.remove(&bkey(&iid, &bid), ver).await?;
                return Err(OsbError::refused(&m));
            }
            Err(CfnError::Other(e)) => return Err(OsbError::internal(e)),
        };
        b.stack_id = Some(id.clone());
        let ver = match app.save(&bkey(&iid, &bid), &b, Some(ver)).await? {
            Some(v) => v,
            None => match app.load::<Binding>(&bkey(&iid, &bid)).await? {
                // A poll on another replica recorded the id first: nothing is lost.
                Some((r, v)) if !r.gone && r.op.as_ref().is_some_and(|o| o.id == op.id) => v,
                // An unbind on another replica removed the record while CreateStack ran:
                // the stack (an IAM user and its key) must not outlive it.
                _ => {
                    app.cloud.delete(&id, &format!("{}-orphan", op.id)).await?;
                    return Err(OsbError::concurrency());
                }
            },
        };
        if c.accepts_incomplete {
            return ok(StatusCode::ACCEPTED, json!({"operation": op.id}));
        }
        // A synchronous bind: wait (bounded) for the IAM user's stack, without holding
        // the instance's lock, so other requests on the instance are not queued behind.
        drop(guard);
        if settle(&app, &id, &op).await? {
            b.ready = true;
            app.save(&bkey(&iid, &bid), &b, Some(ver)).await?;
            let creds = app.credentials(&inst, &b, service).await?;
            return ok(StatusCode::CREATED, json!({"credentials": creds}));
        }
        // OSB 2.17 allows 202 only with accepts_incomplete=true, and a 4xx must leave
        // nothing behind; a 5xx makes the platform unbind (orphan mitigation), which
        // deletes the user the stack is still making.
        return Err(still_running(
            "the binding's IAM user is still being created",
        ));
    }
    Err(OsbError::concurrency())
}

/// A bind for an id that exists: 200 with the credentials, 202 while it is made, 409
/// when the request differs.
async fn same_bind<S: StateStore, C: Cloud>(
    app: &App<S, C>,
    c: &Checked,
    inst: &Instance,
    existing: &Binding,
    ver: u64,
    wanted: &Binding,
    service: &Service,
) -> Res {
    if existing.requested != wanted.requested
        || (!existing.service_id.is_empty() && existing.service_id != wanted.service_id)
        || (!existing.plan_id.is_empty() && existing.plan_id != wanted.plan_id)
    {
        return Err(OsbError::conflict(
            "a binding with this id and other attributes exists",
        ));
    }
    if existing.ready {
        let creds = app.credentials(inst, existing, service).await?;
        return ok(StatusCode::OK, json!({"credentials": creds}));
    }
    let Some(op) = existing.op.as_ref().filter(|o| o.kind == OpKind::Bind) else {
        return Err(OsbError::concurrency());
    };
    // The stack may have finished since anyone looked.
    if let Some(id) = &existing.stack_id
        && app.op_state_of(op, Some(id)).await? == OpState::Succeeded
    {
        let mut b = existing.clone();
        b.ready = true;
        app.save(&bkey(&b.instance_id, &b.id), &b, Some(ver))
            .await?;
        let creds = app.credentials(inst, &b, service).await?;
        return ok(StatusCode::OK, json!({"credentials": creds}));
    }
    if c.accepts_incomplete {
        ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
    } else {
        Err(OsbError::concurrency())
    }
}

pub async fn unbind<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path((iid, bid)): Path<(String, String)>,
    Query(q): Q,
) -> Res {
    let c = check(Endpoint::Unbind, &[&iid, &bid], &q, b"")?;
    // Not checked against the catalog (a service no longer offered must still unbind):
    // the record's ids are the check.
    let guard = app.lock(&iid).await;
    let Some((mut b, ver)) = app.load::<Binding>(&bkey(&iid, &bid)).await? else {
        return Err(OsbError::gone());
    };
    if b.gone {
        return Err(OsbError::gone());
    }
    let inst = app.load::<Instance>(&ikey(&iid)).await?.map(|x| x.0);
    same_binding(&c, &b, inst.as_ref())?;
    if let Some(op) = &b.op
        && op.kind == OpKind::Unbind
        && app.op_state_of(op, b.stack_id.as_deref()).await? == OpState::InProgress
    {
        return if c.accepts_incomplete {
            ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
        } else {
            Err(OsbError::concurrency())
        };
    }
    // Without an id, a racing bind or a crash may still have left a live stack (and
    // its IAM key): find it by name and delete it if its tags say it is this binding's.
    let stack = match (&b.stack_id, &b.stack_name) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(name)) => {
            let sid = match b.service_id.as_str() {
                "" => c.str("service_id").unwrap_or_default(),
                s => s,
            };
            let service = app.service_of(sid)?;
            let tags = stack_tags(&app.broker_id, &service.name, &iid, Some(&bid));
            app.cloud
                .state(name)
                .await?
                .filter(|s| owns(s, &tags))
                .map(|s| s.id)
        }
        (None, None) => None,
    };
    // A bind whose CreateStack may still be running on another replica: wait for it,
    // or its IAM user would outlive the record.
    if stack.is_none()
        && b.stack_name.is_some()
        && b.op
            .as_ref()
            .is_some_and(|o| o.kind == OpKind::Bind && !abandoned(o))
    {
        return Err(OsbError::concurrency());
    }
    let op = new_op(OpKind::Unbind);
    b.op = Some(op.clone());
    b.stack_id = stack.clone();
    // Being deleted: no longer fetchable, its credentials no longer handed out.
    b.ready = false;
    let Some(stack) = stack else {
        b.gone = true;
        if app.save(&bkey(&iid, &bid), &b, Some(ver)).await?.is_none() {
            return Err(OsbError::concurrency());
        }
        return ok(StatusCode::OK, json!({}));
    };
    let Some(ver) = app.save(&bkey(&iid, &bid), &b, Some(ver)).await? else {
        return Err(OsbError::concurrency());
    };
    app.cloud.delete(&stack, &op.id).await?;
    if c.accepts_incomplete {
        return ok(StatusCode::ACCEPTED, json!({"operation": op.id}));
    }
    drop(guard);
    if settle(&app, &stack, &op).await? {
        b.gone = true;
        app.save(&bkey(&iid, &bid), &b, Some(ver)).await?;
        return ok(StatusCode::OK, json!({}));
    }
    Err(still_running(
        "the binding's IAM user is still being deleted",
    ))
}

/// A synchronous request whose stack outlasted the wait: 202 would need
/// accepts_incomplete=true (OSB 2.17 "Asynchronous Operations") and a 4xx must leave
/// nothing changed, so it is a 5xx, after which the platform cleans up (orphan
/// mitigation).
fn still_running(what: &str) -> OsbError {
    OsbError::new(
        StatusCode::GATEWAY_TIMEOUT,
        None,
        format!("{what}; send accepts_incomplete=true for bindings that take longer"),
    )
}

pub async fn last_operation<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path((iid, bid)): Path<(String, String)>,
    Query(q): Q,
) -> Res {
    let c = check(Endpoint::BindingLastOp, &[&iid, &bid], &q, b"")?;
    let _g = app.lock(&iid).await;
    let Some((mut b, mut ver)) = app.load::<Binding>(&bkey(&iid, &bid)).await? else {
        return Err(OsbError::not_found("no such service binding"));
    };
    if b.gone {
        return Err(OsbError::gone());
    }
    let inst = app.load::<Instance>(&ikey(&iid)).await?.map(|x| x.0);
    same_binding(&c, &b, inst.as_ref())?;
    let Some(op) = b.op.clone() else {
        return ok(StatusCode::OK, json!({"state": "succeeded"}));
    };
    if b.ready && op.kind == OpKind::Bind {
        return ok(StatusCode::OK, json!({"state": "succeeded"}));
    }
    if b.stack_id.is_none()
        && op.kind == OpKind::Bind
        && let (Some(name), Some(inst)) = (b.stack_name.clone(), inst.as_ref())
    {
        let service = app.service_of(&inst.service_id)?;
        let tags = stack_tags(&app.broker_id, &service.name, &iid, Some(&bid));
        let found = app
            .cloud
            .state(&name)
            .await?
            .filter(|s| owns(s, &tags))
            .map(|s| s.id);
        let id = match found {
            Some(id) => Some(id),
            None if abandoned(&op) => Some(create_stack(&app, service, inst, &b, &op).await?),
            None => None,
        };
        if let Some(id) = id {
            b.stack_id = Some(id);
            if let Some(v) = app.save(&bkey(&iid, &bid), &b, Some(ver)).await? {
                ver = v;
            }
        }
    }
    let state = match &b.stack_id {
        Some(id) => app.op_state_of(&op, Some(id)).await?,
        None if op.kind == OpKind::Unbind => OpState::Succeeded,
        None => OpState::InProgress,
    };
    match (op.kind, &state) {
        (OpKind::Unbind, OpState::Succeeded) => {
            b.gone = true;
            app.save(&bkey(&iid, &bid), &b, Some(ver)).await?;
        }
        (OpKind::Bind, OpState::Succeeded) => {
            b.ready = true;
            app.save(&bkey(&iid, &bid), &b, Some(ver)).await?;
        }
        _ => {}
    }
    let mut body = json!({"state": state.as_str()});
    if let OpState::Failed(Some(d)) = &state {
        body["description"] = json!(super::error::scrub(d));
    }
    ok(StatusCode::OK, body)
}

pub async fn fetch<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path((iid, bid)): Path<(String, String)>,
    Query(q): Q,
) -> Res {
    let c = check(Endpoint::FetchBinding, &[&iid, &bid], &q, b"")?;
    let inst = instance_for(&app, &iid).await?;
    let Some((b, _)) = app.load::<Binding>(&bkey(&iid, &bid)).await? else {
        return Err(OsbError::not_found("no such service binding"));
    };
    if b.gone {
        return Err(OsbError::not_found("no such service binding"));
    }
    same_binding(&c, &b, Some(&inst))?;
    if !b.ready {
        return Err(OsbError::not_found("the binding is being created"));
    }
    let service = app.service_of(&inst.service_id)?;
    let creds = app.credentials(&inst, &b, service).await?;
    ok(
        StatusCode::OK,
        json!({"credentials": creds, "parameters": b.requested}),
    )
}
