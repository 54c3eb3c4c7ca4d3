//! Service instance endpoints: provision, update, deprovision, fetch, last_operation.
//!
//! Order in every handler: the request table (`validate`), the catalog, AsyncRequired,
//! then state. A record is written (conditionally) before the stack call, which carries
//! the operation id as its ClientRequestToken, so a broker restarted mid-operation, or
//! a second replica answering the poll, loses nothing and makes no second stack.

use super::app::App;
use super::cloud::Cloud;
use super::error::OsbError;
use super::state::{
    Instance, OpKind, OpState, abandoned, ikey, instance_stack, new_op, owns, stack_tags,
};
use super::store::StateStore;
use super::validate::{Checked, Endpoint, check};
use crate::broker_catalog::Service;
use crate::deploy::broker::{CfnError, Created};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub type Res = Result<Response, OsbError>;
pub type Q = Query<Vec<(String, String)>>;

pub fn ok(status: StatusCode, body: Value) -> Res {
    Ok((status, Json(body)).into_response())
}

/// `service_id` / `plan_id` of a request that names an existing instance must be its own
/// (OSB: they identify the instance; `plan_id` may be the pre-update plan).
pub fn same_instance(c: &Checked, inst: &Instance) -> Result<(), OsbError> {
    if let Some(s) = c.str("service_id")
        && s != inst.service_id
    {
        return Err(OsbError::bad(format!(
            "service_id {s} is not the service of instance {}",
            inst.id
        )));
    }
    if let Some(p) = c.str("plan_id")
        && !inst.has_plan(p)
    {
        return Err(OsbError::bad(format!(
            "plan_id {p} is not the plan of instance {}",
            inst.id
        )));
    }
    Ok(())
}

/// The service and plan a request names, from the catalog: 400 when unknown.
pub fn service_and_plan<'a, S, C>(
    app: &'a App<S, C>,
    c: &Checked,
) -> Result<(&'a Service, Option<&'a crate::broker_catalog::PlanSpec>), OsbError> {
    let sid = c.str("service_id").unwrap_or_default();
    let service = app
        .catalog
        .service(sid)
        .ok_or_else(|| OsbError::bad(format!("unknown service_id `{sid}`")))?;
    let plan = match c.str("plan_id") {
        None => None,
        Some(p) => Some(service.plan(p).ok_or_else(|| {
            OsbError::bad(format!(
                "unknown plan_id `{p}` for service {}",
                service.name
            ))
        })?),
    };
    Ok((service, plan))
}

/// CreateStack of an instance; adopts an existing stack only when its tags say it is
/// this instance's.
async fn create_stack<S: StateStore, C: Cloud>(
    app: &App<S, C>,
    service: &Service,
    inst: &Instance,
    values: &BTreeMap<String, String>,
    token: &str,
) -> Result<String, CfnError> {
    let tags = stack_tags(&app.broker_id, &service.name, &inst.id, None);
    match app
        .cloud
        .create(&inst.stack_name, &service.body, values, &tags, token)
        .await?
    {
        Created::Id(id) => Ok(id),
        Created::Exists(Some(s)) if owns(&s, &tags) => Ok(s.id),
        Created::Exists(_) => Err(CfnError::Other(anyhow::anyhow!(
            "a stack named {} exists and its tags are not instance {}'s; not adopting it",
            inst.stack_name,
            inst.id
        ))),
    }
}

pub async fn provision<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path(iid): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> Res {
    let c = check(Endpoint::Provision, &[&iid], &q, &body)?;
    let (service, plan) = service_and_plan(&app, &c)?;
    let plan = plan.ok_or_else(|| OsbError::bad("plan_id is required"))?;
    let requested = c.object("parameters");
    let mut values = service
        .resolve(plan, &requested, false)
        .map_err(|e| OsbError::bad(format!("invalid parameters: {e}")))?;
    app.system_values(service, &mut values)?;
    if !c.accepts_incomplete {
        return Err(OsbError::async_required());
    }
    let _g = app.lock(&iid).await;
    let stack_name = instance_stack(&app.broker_id, &service.name, &iid);
    let op = new_op(OpKind::Provision);
    let mut inst = Instance {
        id: iid.clone(),
        service_id: service.id.clone(),
        plan_id: plan.id.clone(),
        previous_plan_id: None,
        previous_requested: None,
        requested,
        stack_name,
        stack_id: None,
        op: Some(op.clone()),
        ready: false,
        gone: false,
    };
    // Two tries: a lost race re-reads and answers from the winner's record.
    for _ in 0..2 {
        let existing = app.load::<Instance>(&ikey(&iid)).await?;
        let expected = match &existing {
            Some((e, v)) if e.gone || deprovisioned(&app, e).await? => Some(*v),
            Some((e, _)) => return same_provision(&app, e, &inst).await,
            None => None,
        };
        let Some(ver) = app.save(&ikey(&iid), &inst, expected).await? else {
            continue;
        };
        return match create_stack(&app, service, &inst, &values, &op.id).await {
            Ok(id) => {
                inst.stack_id = Some(id);
                // A conflict means a poll on another replica already recorded the id.
                app.save(&ikey(&iid), &inst, Some(ver)).await?;
                ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
            }
            Err(CfnError::Refused(m)) => {
                // CloudFormation refused the stack: no instance exists.
                app.remove(&ikey(&iid), ver).await?;
                Err(OsbError::refused(&m))
            }
            // The call failed but the stack may exist: if it is ours, the provision is
            // under way; if there is none (or not ours), no instance exists. Only when
            // even that cannot be read does the record stay (the next poll re-sends
            // the create with the same token; a deprovision finds it by name).
            Err(CfnError::Other(e)) => {
                let tags = stack_tags(&app.broker_id, &service.name, &iid, None);
                match app.cloud.state(&inst.stack_name).await {
                    Ok(Some(s)) if owns(&s, &tags) => {
                        inst.stack_id = Some(s.id);
                        app.save(&ikey(&iid), &inst, Some(ver)).await?;
                        return ok(StatusCode::ACCEPTED, json!({"operation": op.id}));
                    }
                    Ok(_) => {
                        app.remove(&ikey(&iid), ver).await?;
                    }
                    Err(_) => {}
                }
                Err(OsbError::internal(e))
            }
        };
    }
    Err(OsbError::concurrency())
}

/// True when the instance's deprovision finished in CloudFormation (before any poll
/// recorded it).
async fn deprovisioned<S: StateStore, C: Cloud>(
    app: &App<S, C>,
    inst: &Instance,
) -> Result<bool, OsbError> {
    match &inst.op {
        Some(op) if op.kind == OpKind::Deprovision => {
            Ok(app.op_state_of(op, inst.stack_id.as_deref()).await? == OpState::Succeeded)
        }
        _ => Ok(false),
    }
}

/// A provision for an id that exists: 200/202 when it is the same request, 409 when not.
async fn same_provision<S: StateStore, C: Cloud>(
    app: &App<S, C>,
    existing: &Instance,
    wanted: &Instance,
) -> Res {
    let same = existing.service_id == wanted.service_id
        && existing.plan_id == wanted.plan_id
        && existing.requested == wanted.requested;
    if !same {
        return Err(OsbError::conflict(
            "an instance with this id and other attributes exists",
        ));
    }
    match &existing.op {
        Some(op) if op.kind == OpKind::Provision && !existing.ready => {
            ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
        }
        Some(op) if op.kind != OpKind::Provision && app.busy(existing).await? => {
            Err(OsbError::concurrency())
        }
        _ => ok(StatusCode::OK, json!({})),
    }
}

pub async fn fetch<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path(iid): Path<String>,
    Query(q): Q,
) -> Res {
    let c = check(Endpoint::FetchInstance, &[&iid], &q, b"")?;
    let Some((inst, _)) = app.load::<Instance>(&ikey(&iid)).await? else {
        return Err(OsbError::not_found("no such service instance"));
    };
    if inst.gone {
        return Err(OsbError::not_found("no such service instance"));
    }
    same_instance(&c, &inst)?;
    if !inst.ready {
        return Err(OsbError::not_found("the instance is being provisioned"));
    }
    if inst.op.as_ref().is_some_and(|o| o.kind == OpKind::Update) && app.busy(&inst).await? {
        return Err(OsbError::concurrency());
    }
    ok(
        StatusCode::OK,
        json!({"service_id": inst.service_id, "plan_id": inst.plan_id, "parameters": inst.requested}),
    )
}

pub async fn update<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path(iid): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Res {
    let c = check(Endpoint::Update, &[&iid], &q, &body)?;
    let (service, new_plan) = service_and_plan(&app, &c)?;
    let requested = c.object("parameters");
    if !c.accepts_incomplete {
        return Err(OsbError::async_required());
    }
    let _g = app.lock(&iid).await;
    let Some((mut inst, ver)) = app.load::<Instance>(&ikey(&iid)).await? else {
        return Err(OsbError::not_found("no such service instance"));
    };
    if inst.gone {
        return Err(OsbError::not_found("no such service instance"));
    }
    if inst.service_id != service.id {
        return Err(OsbError::bad(format!(
            "service_id {} is not the service of instance {iid}",
            service.id
        )));
    }
    let plan = match new_plan {
        Some(p) => p,
        None => service.plan(&inst.plan_id).ok_or_else(|| {
            OsbError::internal(anyhow::anyhow!("plan {} left the catalog", inst.plan_id))
        })?,
    };
    let changes_plan = plan.id != inst.plan_id;
    if changes_plan && !service.plan_updateable {
        // OSB 2.17 Updating, Response: 422 when "the requested change is not supported".
        return Err(OsbError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            format!("service {} does not allow plan changes", service.name),
        ));
    }
    let mut values = service
        .resolve(plan, &requested, true)
        .map_err(|e| OsbError::bad(format!("invalid parameters: {e}")))?;
    if changes_plan {
        for (k, v) in plan.fixed.iter().chain(plan.defaults.iter()) {
            values.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if !inst.ready || app.busy(&inst).await? {
        return Err(OsbError::concurrency());
    }
    let Some(stack_id) = inst.stack_id.clone() else {
        return Err(OsbError::concurrency());
    };
    let before = inst.clone();
    let op = new_op(OpKind::Update);
    inst.previous_plan_id = Some(inst.plan_id.clone());
    inst.previous_requested = Some(inst.requested.clone());
    inst.plan_id = plan.id.clone();
    for (k, v) in requested {
        inst.requested.insert(k, v);
    }
    inst.op = Some(op.clone());
    // The record first, conditionally: of two updates racing on two replicas, one wins.
    let Some(ver) = app.save(&ikey(&iid), &inst, Some(ver)).await? else {
        return Err(OsbError::concurrency());
    };
    let all: Vec<String> = service.parameters.keys().cloned().collect();
    match app
        .cloud
        .update(&stack_id, &service.body, &values, &all, &op.id)
        .await
    {
        Ok(true) => ok(StatusCode::ACCEPTED, json!({"operation": op.id})),
        Ok(false) => {
            // Nothing changes in AWS: keep the new parameters, drop the operation.
            let mut done = inst.clone();
            done.op = before.op.clone();
            done.previous_plan_id = None;
            done.previous_requested = None;
            app.save(&ikey(&iid), &done, Some(ver)).await?;
            ok(StatusCode::OK, json!({}))
        }
        Err(e) => {
            app.save(&ikey(&iid), &before, Some(ver)).await?;
            Err(e.into())
        }
    }
}

pub async fn deprovision<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path(iid): Path<String>,
    Query(q): Q,
) -> Res {
    let c = check(Endpoint::Deprovision, &[&iid], &q, b"")?;
    // Not checked against the catalog: an instance of a service no longer offered
    // (`--services`) must still be deletable; its record's ids are the check.
    if !c.accepts_incomplete {
        return Err(OsbError::async_required());
    }
    let _g = app.lock(&iid).await;
    let Some((mut inst, ver)) = app.load::<Instance>(&ikey(&iid)).await? else {
        return Err(OsbError::gone());
    };
    if inst.gone {
        return Err(OsbError::gone());
    }
    same_instance(&c, &inst)?;
    if let Some(op) = &inst.op
        && op.kind == OpKind::Deprovision
    {
        match app.op_state_of(op, inst.stack_id.as_deref()).await? {
            OpState::InProgress => return ok(StatusCode::ACCEPTED, json!({"operation": op.id})),
            // Deleted by an earlier request, not yet polled: it no longer exists.
            OpState::Succeeded => {
                inst.gone = true;
                app.save(&ikey(&iid), &inst, Some(ver)).await?;
                return Err(OsbError::gone());
            }
            OpState::Failed(_) => {}
        }
    }
    // Without an id, the stack may still exist (a crash, a cancelled request or a failed
    // answer between the record and CreateStack): find it by name, and delete it only if
    // it is ours. The platform's orphan mitigation relies on this.
    let stack = match &inst.stack_id {
        Some(id) => Some(id.clone()),
        None => {
            let service = app.service_of(&inst.service_id)?;
            let tags = stack_tags(&app.broker_id, &service.name, &iid, None);
            app.cloud
                .state(&inst.stack_name)
                .await?
                .filter(|s| owns(s, &tags))
                .map(|s| s.id)
        }
    };
    let creating_without_id = inst.stack_id.is_none()
        && inst
            .op
            .as_ref()
            .is_some_and(|o| o.kind == OpKind::Provision && !abandoned(o));
    if stack.is_none() && creating_without_id {
        // A CreateStack may be in flight on another replica: wait for it.
        return Err(OsbError::concurrency());
    }
    if inst.stack_id.is_some() && app.busy(&inst).await? {
        return Err(OsbError::concurrency());
    }
    let op = new_op(OpKind::Deprovision);
    inst.op = Some(op.clone());
    inst.stack_id = stack.clone();
    let Some(stack) = stack else {
        inst.gone = true;
        if app.save(&ikey(&iid), &inst, Some(ver)).await?.is_none() {
            return Err(OsbError::concurrency());
        }
        return ok(StatusCode::OK, json!({}));
    };
    if app.save(&ikey(&iid), &inst, Some(ver)).await?.is_none() {
        return Err(OsbError::concurrency());
    }
    app.cloud.delete(&stack, &op.id).await?;
    ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
}

pub async fn last_operation<S: StateStore, C: Cloud>(
    State(app): State<Arc<App<S, C>>>,
    Path(iid): Path<String>,
    Query(q): Q,
) -> Res {
    let c = check(Endpoint::InstanceLastOp, &[&iid], &q, b"")?;
    let _g = app.lock(&iid).await;
    let Some((mut inst, mut ver)) = app.load::<Instance>(&ikey(&iid)).await? else {
        return Err(OsbError::not_found("no such service instance"));
    };
    if inst.gone {
        // OSB: 410 Gone answers the poll of a finished asynchronous deprovision.
        return Err(OsbError::gone());
    }
    same_instance(&c, &inst)?;
    // An `operation` this broker did not issue is not an error: the state is the
    // instance's last operation, read from CloudFormation (platforms differ).
    let Some(op) = inst.op.clone() else {
        return ok(StatusCode::OK, json!({"state": "succeeded"}));
    };
    if inst.stack_id.is_none() && op.kind == OpKind::Provision {
        let service = app.service_of(&inst.service_id)?;
        let tags = stack_tags(&app.broker_id, &service.name, &iid, None);
        let found = app
            .cloud
            .state(&inst.stack_name)
            .await?
            .filter(|s| owns(s, &tags))
            .map(|s| s.id);
        let id = match found {
            Some(id) => Some(id),
            // The broker stopped between the record and CreateStack: send it again,
            // with the same token, once the record is clearly abandoned.
            None if abandoned(&op) => {
                let plan = service.plan(&inst.plan_id).ok_or_else(|| {
                    OsbError::internal(anyhow::anyhow!("plan {} left the catalog", inst.plan_id))
                })?;
                let mut values = service
                    .resolve(plan, &inst.requested, false)
                    .map_err(|e| OsbError::internal(anyhow::anyhow!(e)))?;
                app.system_values(service, &mut values)?;
                Some(create_stack(&app, service, &inst, &values, &op.id).await?)
            }
            None => None,
        };
        if let Some(id) = id {
            inst.stack_id = Some(id);
            if let Some(v) = app.save(&ikey(&iid), &inst, Some(ver)).await? {
                ver = v;
            }
        }
    }
    let state = match &inst.stack_id {
        Some(id) => app.op_state_of(&op, Some(id)).await?,
        None => OpState::InProgress,
    };
    let mut body = json!({"state": state.as_str()});
    match (op.kind, &state) {
        (OpKind::Deprovision, OpState::Succeeded) => {
            inst.gone = true;
            app.save(&ikey(&iid), &inst, Some(ver)).await?;
        }
        (OpKind::Provision, OpState::Succeeded) if !inst.ready => {
            inst.ready = true;
            app.save(&ikey(&iid), &inst, Some(ver)).await?;
        }
        (OpKind::Update, OpState::Succeeded) if inst.previous_plan_id.is_some() => {
            inst.previous_plan_id = None;
            inst.previous_requested = None;
            app.save(&ikey(&iid), &inst, Some(ver)).await?;
        }
        (OpKind::Update, OpState::Failed(Some(d))) if d.starts_with("UPDATE_ROLLBACK_COMPLETE") => {
            // CloudFormation rolled the stack back: the instance is as it was, usable,
            // and the same update may be tried again (OSB 2.17 instance_usable,
            // update_repeatable).
            body["instance_usable"] = json!(true);
            body["update_repeatable"] = json!(true);
            if let Some(p) = inst.previous_plan_id.take() {
                inst.plan_id = p;
                inst.requested = inst.previous_requested.take().unwrap_or_default();
                app.save(&ikey(&iid), &inst, Some(ver)).await?;
            }
        }
        _ => {}
    }
    if let OpState::Failed(Some(d)) = &state {
        body["description"] = json!(super::error::scrub(d));
    }
    ok(StatusCode::OK, body)
}
