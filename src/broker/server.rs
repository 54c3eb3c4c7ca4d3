//! The Open Service Broker API v2.17 over HTTP (axum; rustls with `--tls-cert`).
//!
//! Operations are asynchronous and CloudFormation holds their truth: a record (with the
//! operation id) is saved before the stack call, the stack call carries the operation id
//! as its ClientRequestToken, and `last_operation` reads the stack's status. A broker
//! restarted mid-operation therefore loses nothing. Every 4xx is decided before any write.

use super::catalog::{self, Catalog, Service};
use super::store::{AnyStore, StateStore};
use crate::deploy::broker::{CfnBackend, StackState};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Oldest and newest `X-Broker-API-Version` accepted.
pub const MIN_VERSION: (u32, u32) = (2, 13);
pub const MAX_VERSION: (u32, u32) = (2, 17);

#[derive(Clone, Debug)]
pub enum Auth {
    Basic { username: String, password: String },
    Bearer { token: String },
}

pub struct App {
    pub catalog: Catalog,
    /// `GET /v2/catalog`, serialised once.
    catalog_json: Bytes,
    pub store: AnyStore,
    pub cfn: CfnBackend,
    pub broker_id: String,
    pub region: String,
    pub auth: Auth,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl App {
    pub fn new(
        catalog: Catalog,
        store: AnyStore,
        cfn: CfnBackend,
        broker_id: String,
        region: String,
        auth: Auth,
    ) -> App {
        let catalog_json = Bytes::from(serde_json::to_vec(&catalog.osb()).unwrap_or_default());
        App {
            catalog,
            catalog_json,
            store,
            cfn,
            broker_id,
            region,
            auth,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Serialises requests on one instance (its bindings included).
    async fn lock(&self, instance: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut l = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            l.entry(instance.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Provision,
    Update,
    Deprovision,
    Bind,
    Unbind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Op {
    pub id: String,
    pub kind: OpKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub service_id: String,
    pub plan_id: String,
    /// The parameters as the platform sent them (for idempotency and GET).
    pub requested: Map<String, Value>,
    pub stack_name: String,
    pub stack_id: Option<String>,
    pub op: Option<Op>,
    /// Set once provisioning succeeded.
    pub ready: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Binding {
    pub id: String,
    pub instance_id: String,
    pub requested: Map<String, Value>,
    /// None when the service binds by outputs alone (no IAM user).
    pub stack_name: Option<String>,
    pub stack_id: Option<String>,
    pub op: Option<Op>,
    pub ready: bool,
}

/// An OSB error answer.
pub struct OsbError {
    status: StatusCode,
    error: Option<&'static str>,
    description: String,
}

impl OsbError {
    fn new(
        status: StatusCode,
        error: Option<&'static str>,
        description: impl Into<String>,
    ) -> Self {
        OsbError {
            status,
            error,
            description: description.into(),
        }
    }
    fn bad(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, None, d)
    }
    fn internal(e: anyhow::Error) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, format!("{e:#}"))
    }
}

impl IntoResponse for OsbError {
    fn into_response(self) -> Response {
        let mut body = json!({"description": self.description});
        if let Some(e) = self.error {
            body["error"] = json!(e);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<anyhow::Error> for OsbError {
    fn from(e: anyhow::Error) -> Self {
        OsbError::internal(e)
    }
}

type Res = Result<Response, OsbError>;

fn ok(status: StatusCode, body: Value) -> Res {
    Ok((status, Json(body)).into_response())
}

fn new_id() -> String {
    let mut b = [0u8; 12];
    // getrandom fails only without an OS entropy source; fall back to the clock.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b.copy_from_slice(&t.to_le_bytes()[..12]);
    }
    format!("op-{}", hex::encode(b))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Version header and authentication, for every `/v2` route.
async fn guard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let authorized = match (
        &app.auth,
        headers.get("authorization").and_then(|h| h.to_str().ok()),
    ) {
        (Auth::Bearer { token }, Some(h)) => h
            .strip_prefix("Bearer ")
            .is_some_and(|t| constant_eq(t.as_bytes(), token.as_bytes())),
        (Auth::Basic { username, password }, Some(h)) => h
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
            })
            .is_some_and(|d| constant_eq(&d, format!("{username}:{password}").as_bytes())),
        _ => false,
    };
    if !authorized {
        eprintln!("{method} {path} -> 401 (no valid credentials)");
        return (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                match app.auth {
                    Auth::Basic { .. } => "Basic realm=\"kube-aws broker\"",
                    Auth::Bearer { .. } => "Bearer",
                },
            )],
            Json(json!({"description": "authentication required"})),
        )
            .into_response();
    }
    match headers
        .get("x-broker-api-version")
        .and_then(|h| h.to_str().ok())
    {
        None => {
            return OsbError::bad("the X-Broker-API-Version header is missing").into_response();
        }
        Some(v) => {
            match parse_version(v) {
                Some(x) if x >= MIN_VERSION && x <= MAX_VERSION => {}
                _ => {
                    return OsbError::new(
                    StatusCode::PRECONDITION_FAILED,
                    None,
                    format!("X-Broker-API-Version {v} is not supported; this broker speaks 2.13 to 2.17"),
                )
                .into_response();
                }
            }
        }
    }
    let identity = headers
        .get("x-broker-api-originating-identity")
        .and_then(|h| h.to_str().ok())
        .map(originating_identity)
        .unwrap_or_else(|| "-".into());
    let resp = next.run(req).await;
    eprintln!(
        "{method} {path} -> {} identity={identity}",
        resp.status().as_u16()
    );
    resp
}

/// `platform base64(json)` → `platform:user` for the log.
fn originating_identity(h: &str) -> String {
    let Some((platform, b)) = h.split_once(' ') else {
        return "malformed".into();
    };
    let user = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim())
        .ok()
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
        .and_then(|v| {
            v.get("username")
                .or_else(|| v.get("user_id"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into());
    format!("{platform}:{user}")
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn router(app: Arc<App>) -> Router {
    let v2 = Router::new()
        .route("/v2/catalog", get(catalog_get))
        .route(
            "/v2/service_instances/{iid}",
            get(instance_get)
                .put(provision)
                .patch(update)
                .delete(deprovision),
        )
        .route(
            "/v2/service_instances/{iid}/last_operation",
            get(instance_last_op),
        )
        .route(
            "/v2/service_instances/{iid}/service_bindings/{bid}",
            get(binding_get).put(bind).delete(unbind),
        )
        .route(
            "/v2/service_instances/{iid}/service_bindings/{bid}/last_operation",
            get(binding_last_op),
        )
        .layer(middleware::from_fn_with_state(app.clone(), guard));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(v2)
        .with_state(app)
}

async fn catalog_get(State(app): State<Arc<App>>) -> Response {
    (
        [("content-type", "application/json")],
        app.catalog_json.clone(),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct AsyncQ {
    accepts_incomplete: Option<bool>,
    service_id: Option<String>,
    plan_id: Option<String>,
    operation: Option<String>,
}

fn body_json(body: &Bytes) -> Result<Map<String, Value>, OsbError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(OsbError::bad("the request body must be a JSON object")),
        Err(e) => Err(OsbError::bad(format!("the request body is not JSON: {e}"))),
    }
}

fn params_of(body: &Map<String, Value>) -> Result<Map<String, Value>, OsbError> {
    match body.get("parameters") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(OsbError::bad("parameters must be an object")),
    }
}

fn require_async(q: &AsyncQ) -> Result<(), OsbError> {
    if q.accepts_incomplete == Some(true) {
        Ok(())
    } else {
        Err(OsbError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("AsyncRequired"),
            "this service plan requires client support for asynchronous service operations",
        ))
    }
}

fn concurrency() -> OsbError {
    OsbError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("ConcurrencyError"),
        "another operation for this service instance is in progress",
    )
}

async fn load<T: for<'de> Deserialize<'de>>(app: &App, key: &str) -> Result<Option<T>, OsbError> {
    match app.store.get(key).await? {
        None => Ok(None),
        Some(v) => Ok(Some(
            serde_json::from_value(v).map_err(|e| OsbError::internal(e.into()))?,
        )),
    }
}

async fn save<T: Serialize>(app: &App, key: &str, v: &T) -> Result<(), OsbError> {
    app.store
        .put(
            key,
            &serde_json::to_value(v).map_err(|e| OsbError::internal(e.into()))?,
        )
        .await?;
    Ok(())
}

fn ikey(iid: &str) -> String {
    format!("instance/{iid}")
}
fn bkey(iid: &str, bid: &str) -> String {
    format!("binding/{iid}/{bid}")
}

fn valid_id(id: &str) -> Result<(), OsbError> {
    if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        Ok(())
    } else {
        Err(OsbError::bad("ids must be 1–64 letters, digits or hyphens"))
    }
}

/// In progress, succeeded or failed (with the reason), for an operation on a stack.
pub fn op_state(kind: OpKind, stack: Option<&StackState>) -> (&'static str, Option<String>) {
    let removing = matches!(kind, OpKind::Deprovision | OpKind::Unbind);
    let Some(s) = stack else {
        return if removing {
            ("succeeded", None)
        } else {
            ("failed", Some("the stack no longer exists".into()))
        };
    };
    let st = s.status.as_str();
    let reason = s
        .reason
        .clone()
        .map(|r| format!("{st}: {r}"))
        .or_else(|| Some(st.to_string()));
    if st.ends_with("_IN_PROGRESS") {
        return ("in progress", None);
    }
    match (kind, st) {
        (OpKind::Provision | OpKind::Bind, "CREATE_COMPLETE") => ("succeeded", None),
        (OpKind::Update, "UPDATE_COMPLETE") => ("succeeded", None),
        (OpKind::Update, "CREATE_COMPLETE") => ("succeeded", None),
        (OpKind::Deprovision | OpKind::Unbind, "DELETE_COMPLETE") => ("succeeded", None),
        _ => ("failed", reason),
    }
}

/// The instance's service; gone only if the catalog changed under a running broker.
fn service_of<'a>(app: &'a App, inst: &Instance) -> Result<&'a Service, OsbError> {
    app.catalog.service(&inst.service_id).ok_or_else(|| {
        OsbError::internal(anyhow::anyhow!(
            "service {} of instance {} left the catalog",
            inst.service_id,
            inst.id
        ))
    })
}

/// Outputs of a stack (none when there is no stack).
async fn outputs_of(
    app: &App,
    stack_id: Option<&str>,
) -> Result<BTreeMap<String, String>, OsbError> {
    Ok(match stack_id {
        Some(id) => app
            .cfn
            .state(id)
            .await?
            .map(|s| s.outputs)
            .unwrap_or_default(),
        None => BTreeMap::new(),
    })
}

/// CreateStack of an instance, with the operation id as its ClientRequestToken.
async fn create_instance_stack(
    app: &App,
    service: &Service,
    inst: &Instance,
    values: &BTreeMap<String, String>,
    op_id: &str,
) -> anyhow::Result<String> {
    app.cfn
        .create(
            &inst.stack_name,
            &service.body,
            values,
            &stack_tags(app, service, &inst.id),
            op_id,
        )
        .await
}

fn stack_tags(app: &App, service: &Service, iid: &str) -> BTreeMap<String, String> {
    [
        ("kube-aws:broker".to_string(), app.broker_id.clone()),
        ("kube-aws:service".to_string(), service.name.clone()),
        ("kube-aws:instance".to_string(), iid.to_string()),
    ]
    .into()
}

async fn provision(
    State(app): State<Arc<App>>,
    Path(iid): Path<String>,
    Query(q): Query<AsyncQ>,
    body: Bytes,
) -> Res {
    valid_id(&iid)?;
    let body = body_json(&body)?;
    require_async(&q)?;
    let sid = body
        .get("service_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pid = body
        .get("plan_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let service = app
        .catalog
        .service(sid)
        .ok_or_else(|| OsbError::bad(format!("unknown service_id `{sid}`")))?;
    let plan = service.plan(pid).ok_or_else(|| {
        OsbError::bad(format!(
            "unknown plan_id `{pid}` for service {}",
            service.name
        ))
    })?;
    let requested = params_of(&body)?;
    let values = service
        .resolve(plan, &requested, false)
        .map_err(|e| OsbError::bad(format!("invalid parameters: {e}")))?;
    let _g = app.lock(&iid).await;
    if let Some(existing) = load::<Instance>(&app, &ikey(&iid)).await? {
        let same = existing.service_id == sid
            && existing.plan_id == pid
            && existing.requested == requested;
        if !same {
            return ok(
                StatusCode::CONFLICT,
                json!({"description": "an instance with this id and other attributes exists"}),
            );
        }
        return match &existing.op {
            Some(op) if op.kind == OpKind::Provision && !existing.ready => {
                ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
            }
            _ => ok(StatusCode::OK, json!({})),
        };
    }
    let op = Op {
        id: new_id(),
        kind: OpKind::Provision,
    };
    let mut inst = Instance {
        id: iid.clone(),
        service_id: sid.to_string(),
        plan_id: pid.to_string(),
        requested,
        stack_name: format!("{}-{}-{}", app.broker_id, service.name, iid),
        stack_id: None,
        op: Some(op.clone()),
        ready: false,
    };
    // The record first: a restart between here and CreateStack re-sends it (same token).
    save(&app, &ikey(&iid), &inst).await?;
    match create_instance_stack(&app, service, &inst, &values, &op.id).await {
        Ok(id) => {
            inst.stack_id = Some(id);
            save(&app, &ikey(&iid), &inst).await?;
            ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
        }
        Err(e) => {
            // CloudFormation refused the stack: no instance exists.
            app.store.delete(&ikey(&iid)).await?;
            Err(OsbError::bad(format!("{e:#}")))
        }
    }
}

async fn instance_last_op(
    State(app): State<Arc<App>>,
    Path(iid): Path<String>,
    Query(q): Query<AsyncQ>,
) -> Res {
    let _g = app.lock(&iid).await;
    let Some(mut inst) = load::<Instance>(&app, &ikey(&iid)).await? else {
        return ok(StatusCode::GONE, json!({}));
    };
    let Some(op) = inst.op.clone() else {
        return ok(StatusCode::OK, json!({"state": "succeeded"}));
    };
    if q.operation.as_deref().is_some_and(|o| o != op.id) {
        return Err(OsbError::bad("unknown operation for this instance"));
    }
    if inst.stack_id.is_none() && op.kind == OpKind::Provision {
        // The broker stopped between saving the record and CreateStack: send it again.
        let service = service_of(&app, &inst)?;
        let plan = service.plan(&inst.plan_id).ok_or_else(|| {
            OsbError::internal(anyhow::anyhow!("plan {} left the catalog", inst.plan_id))
        })?;
        let values = service
            .resolve(plan, &inst.requested, false)
            .map_err(|e| OsbError::internal(anyhow::anyhow!(e)))?;
        let id = create_instance_stack(&app, service, &inst, &values, &op.id).await?;
        inst.stack_id = Some(id);
        save(&app, &ikey(&iid), &inst).await?;
    }
    let stack = match &inst.stack_id {
        Some(id) => app.cfn.state(id).await?,
        None => None,
    };
    let (state, description) = op_state(op.kind, stack.as_ref());
    match (op.kind, state) {
        (OpKind::Deprovision, "succeeded") => {
            app.store.delete(&ikey(&iid)).await?;
        }
        (OpKind::Provision, "succeeded") if !inst.ready => {
            inst.ready = true;
            save(&app, &ikey(&iid), &inst).await?;
        }
        _ => {}
    }
    let mut body = json!({"state": state});
    if let Some(d) = description {
        body["description"] = json!(d);
    }
    ok(StatusCode::OK, body)
}

async fn instance_get(State(app): State<Arc<App>>, Path(iid): Path<String>) -> Res {
    let Some(inst) = load::<Instance>(&app, &ikey(&iid)).await? else {
        return ok(StatusCode::NOT_FOUND, json!({}));
    };
    if !inst.ready {
        return ok(
            StatusCode::NOT_FOUND,
            json!({"description": "the instance is being provisioned"}),
        );
    }
    if inst.op.as_ref().is_some_and(|o| o.kind == OpKind::Update) {
        let st = match &inst.stack_id {
            Some(id) => app.cfn.state(id).await?,
            None => None,
        };
        if op_state(OpKind::Update, st.as_ref()).0 == "in progress" {
            return Err(concurrency());
        }
    }
    ok(
        StatusCode::OK,
        json!({"service_id": inst.service_id, "plan_id": inst.plan_id, "parameters": inst.requested}),
    )
}

/// True when an operation of the instance is still running in CloudFormation.
async fn busy(app: &App, inst: &Instance) -> Result<bool, OsbError> {
    let Some(op) = &inst.op else { return Ok(false) };
    let st = match &inst.stack_id {
        Some(id) => app.cfn.state(id).await?,
        None => return Ok(op.kind == OpKind::Provision),
    };
    Ok(op_state(op.kind, st.as_ref()).0 == "in progress")
}

async fn update(
    State(app): State<Arc<App>>,
    Path(iid): Path<String>,
    Query(q): Query<AsyncQ>,
    body: Bytes,
) -> Res {
    let body = body_json(&body)?;
    require_async(&q)?;
    let _g = app.lock(&iid).await;
    let Some(mut inst) = load::<Instance>(&app, &ikey(&iid)).await? else {
        return Err(OsbError::new(
            StatusCode::NOT_FOUND,
            None,
            "no such service instance",
        ));
    };
    let service = service_of(&app, &inst)?;
    let new_plan = body
        .get("plan_id")
        .and_then(Value::as_str)
        .unwrap_or(&inst.plan_id)
        .to_string();
    let plan = service
        .plan(&new_plan)
        .ok_or_else(|| OsbError::bad(format!("unknown plan_id `{new_plan}`")))?;
    if new_plan != inst.plan_id && !service.plan_updateable {
        return Err(OsbError::bad(format!(
            "service {} does not allow plan changes",
            service.name
        )));
    }
    let requested = params_of(&body)?;
    let mut values = service
        .resolve(plan, &requested, true)
        .map_err(|e| OsbError::bad(format!("invalid parameters: {e}")))?;
    if new_plan != inst.plan_id {
        for (k, v) in plan.fixed.iter().chain(plan.defaults.iter()) {
            values.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if !inst.ready || busy(&app, &inst).await? {
        return Err(concurrency());
    }
    let Some(stack_id) = inst.stack_id.clone() else {
        return Err(concurrency());
    };
    let op = Op {
        id: new_id(),
        kind: OpKind::Update,
    };
    let all: Vec<String> = service.parameters.keys().cloned().collect();
    let changed = app
        .cfn
        .update(&stack_id, &service.body, &values, &all, &op.id)
        .await
        .map_err(|e| OsbError::bad(format!("{e:#}")))?;
    inst.plan_id = new_plan;
    for (k, v) in requested {
        inst.requested.insert(k, v);
    }
    if !changed {
        save(&app, &ikey(&iid), &inst).await?;
        return ok(StatusCode::OK, json!({}));
    }
    inst.op = Some(op.clone());
    save(&app, &ikey(&iid), &inst).await?;
    ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
}

async fn deprovision(
    State(app): State<Arc<App>>,
    Path(iid): Path<String>,
    Query(q): Query<AsyncQ>,
) -> Res {
    if q.service_id.is_none() || q.plan_id.is_none() {
        return Err(OsbError::bad("service_id and plan_id are required"));
    }
    require_async(&q)?;
    let _g = app.lock(&iid).await;
    let Some(mut inst) = load::<Instance>(&app, &ikey(&iid)).await? else {
        return ok(StatusCode::GONE, json!({}));
    };
    if inst
        .op
        .as_ref()
        .is_some_and(|o| o.kind == OpKind::Deprovision)
    {
        let op = inst.op.clone().map(|o| o.id).unwrap_or_default();
        return ok(StatusCode::ACCEPTED, json!({"operation": op}));
    }
    if busy(&app, &inst).await? {
        return Err(concurrency());
    }
    let op = Op {
        id: new_id(),
        kind: OpKind::Deprovision,
    };
    inst.op = Some(op.clone());
    save(&app, &ikey(&iid), &inst).await?;
    match &inst.stack_id {
        Some(id) => app.cfn.delete(id, &op.id).await?,
        None => {
            app.store.delete(&ikey(&iid)).await?;
            return ok(StatusCode::OK, json!({}));
        }
    }
    ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
}

/// Credentials of a ready binding: the instance outputs by key, plus the binding's keys.
async fn credentials(
    app: &App,
    inst: &Instance,
    b: &Binding,
    service: &Service,
) -> Result<Map<String, Value>, OsbError> {
    let outputs = outputs_of(app, inst.stack_id.as_deref()).await?;
    let mut c = Map::new();
    for (key, output) in &service.credentials {
        if let Some(v) = outputs.get(output) {
            c.insert(key.clone(), json!(v));
        }
    }
    if let Some(id) = &b.stack_id {
        let s = app
            .cfn
            .state(id)
            .await?
            .map(|s| s.outputs)
            .unwrap_or_default();
        let p = &service.bind_prefix;
        if let Some(v) = s.get("AccessKeyId") {
            c.insert(format!("{p}_AWS_ACCESS_KEY_ID"), json!(v));
        }
        if let Some(v) = s.get("SecretAccessKey") {
            c.insert(format!("{p}_AWS_SECRET_ACCESS_KEY"), json!(v));
        }
    }
    c.insert(format!("{}_REGION", service.bind_prefix), json!(app.region));
    Ok(c)
}

async fn bind(
    State(app): State<Arc<App>>,
    Path((iid, bid)): Path<(String, String)>,
    Query(q): Query<AsyncQ>,
    body: Bytes,
) -> Res {
    valid_id(&bid)?;
    let body = body_json(&body)?;
    let requested = params_of(&body)?;
    if !requested.is_empty() {
        return Err(OsbError::bad("bindings take no parameters"));
    }
    let _g = app.lock(&iid).await;
    let Some(inst) = load::<Instance>(&app, &ikey(&iid)).await? else {
        return Err(OsbError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no service instance {iid}"),
        ));
    };
    let service = service_of(&app, &inst)?;
    if body
        .get("service_id")
        .and_then(Value::as_str)
        .is_some_and(|s| s != inst.service_id)
    {
        return Err(OsbError::bad("service_id does not match the instance"));
    }
    if !service.bindable {
        return Err(OsbError::bad(format!(
            "service {} is not bindable",
            service.name
        )));
    }
    if !inst.ready || busy(&app, &inst).await? {
        return Err(concurrency());
    }
    if let Some(existing) = load::<Binding>(&app, &bkey(&iid, &bid)).await? {
        if existing.requested != requested {
            return ok(StatusCode::CONFLICT, json!({}));
        }
        if !existing.ready {
            let op = existing.op.map(|o| o.id).unwrap_or_default();
            return ok(StatusCode::ACCEPTED, json!({"operation": op}));
        }
        let c = credentials(&app, &inst, &existing, service).await?;
        return ok(StatusCode::OK, json!({"credentials": c}));
    }
    let outputs = outputs_of(&app, inst.stack_id.as_deref()).await?;
    let op = Op {
        id: new_id(),
        kind: OpKind::Bind,
    };
    let mut b = Binding {
        id: bid.clone(),
        instance_id: iid.clone(),
        requested,
        stack_name: None,
        stack_id: None,
        op: Some(op.clone()),
        ready: false,
    };
    if service.bind_policy.is_empty() {
        b.ready = true;
        save(&app, &bkey(&iid, &bid), &b).await?;
        let c = credentials(&app, &inst, &b, service).await?;
        return ok(StatusCode::CREATED, json!({"credentials": c}));
    }
    let statements: Vec<Value> = service
        .bind_policy
        .iter()
        .map(|s| catalog::substitute(s, &outputs))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            OsbError::internal(anyhow::anyhow!("the {} binding policy: {e}", service.name))
        })?;
    let template = catalog::binding_template(&service.name, &app.broker_id, &statements);
    let name = format!("{}-b-{bid}", inst.stack_name);
    b.stack_name = Some(name.clone());
    save(&app, &bkey(&iid, &bid), &b).await?;
    let body_text = serde_json::to_string(&template).map_err(|e| OsbError::internal(e.into()))?;
    let mut tags = stack_tags(&app, service, &iid);
    tags.insert("kube-aws:binding".into(), bid.clone());
    let id = match app
        .cfn
        .create(&name, &body_text, &BTreeMap::new(), &tags, &op.id)
        .await
    {
        Ok(id) => id,
        Err(e) => {
            app.store.delete(&bkey(&iid, &bid)).await?;
            return Err(OsbError::internal(e));
        }
    };
    b.stack_id = Some(id.clone());
    save(&app, &bkey(&iid, &bid), &b).await?;
    if q.accepts_incomplete == Some(true) {
        return ok(StatusCode::ACCEPTED, json!({"operation": op.id}));
    }
    // Synchronous bind: wait (bounded) for the IAM user's stack.
    if settle(&app, &id, OpKind::Bind, "the binding's stack").await? {
        b.ready = true;
        save(&app, &bkey(&iid, &bid), &b).await?;
        let c = credentials(&app, &inst, &b, service).await?;
        return ok(StatusCode::CREATED, json!({"credentials": c}));
    }
    ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
}

/// Waits (about a minute at most) for a binding's stack to settle: Ok(true) when the
/// operation succeeded, Ok(false) when it is still running (answer 202), an error when
/// it failed.
async fn settle(app: &App, id: &str, kind: OpKind, what: &str) -> Result<bool, OsbError> {
    for i in 0..120u64 {
        let st = app.cfn.state(id).await?;
        match op_state(kind, st.as_ref()) {
            ("succeeded", _) => return Ok(true),
            ("failed", d) => {
                return Err(OsbError::internal(anyhow::anyhow!(
                    "{what} failed: {}",
                    d.unwrap_or_default()
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(250 + 50 * i.min(10))).await,
        }
    }
    Ok(false)
}

async fn binding_last_op(
    State(app): State<Arc<App>>,
    Path((iid, bid)): Path<(String, String)>,
) -> Res {
    let _g = app.lock(&iid).await;
    let Some(mut b) = load::<Binding>(&app, &bkey(&iid, &bid)).await? else {
        return ok(StatusCode::GONE, json!({}));
    };
    let Some(op) = b.op.clone() else {
        return ok(StatusCode::OK, json!({"state": "succeeded"}));
    };
    let st = match &b.stack_id {
        Some(id) => app.cfn.state(id).await?,
        None if b.ready => return ok(StatusCode::OK, json!({"state": "succeeded"})),
        None => None,
    };
    let (state, d) = op_state(op.kind, st.as_ref());
    match (op.kind, state) {
        (OpKind::Unbind, "succeeded") => app.store.delete(&bkey(&iid, &bid)).await?,
        (OpKind::Bind, "succeeded") if !b.ready => {
            b.ready = true;
            save(&app, &bkey(&iid, &bid), &b).await?;
        }
        _ => {}
    }
    let mut body = json!({"state": state});
    if let Some(d) = d {
        body["description"] = json!(d);
    }
    ok(StatusCode::OK, body)
}

async fn binding_get(State(app): State<Arc<App>>, Path((iid, bid)): Path<(String, String)>) -> Res {
    let (Some(inst), Some(b)) = (
        load::<Instance>(&app, &ikey(&iid)).await?,
        load::<Binding>(&app, &bkey(&iid, &bid)).await?,
    ) else {
        return ok(StatusCode::NOT_FOUND, json!({}));
    };
    if !b.ready {
        return ok(
            StatusCode::NOT_FOUND,
            json!({"description": "the binding is being created"}),
        );
    }
    let service = service_of(&app, &inst)?;
    let c = credentials(&app, &inst, &b, service).await?;
    ok(
        StatusCode::OK,
        json!({"credentials": c, "parameters": b.requested}),
    )
}

async fn unbind(
    State(app): State<Arc<App>>,
    Path((iid, bid)): Path<(String, String)>,
    Query(q): Query<AsyncQ>,
) -> Res {
    if q.service_id.is_none() || q.plan_id.is_none() {
        return Err(OsbError::bad("service_id and plan_id are required"));
    }
    let _g = app.lock(&iid).await;
    let Some(mut b) = load::<Binding>(&app, &bkey(&iid, &bid)).await? else {
        return ok(StatusCode::GONE, json!({}));
    };
    let Some(id) = b.stack_id.clone() else {
        app.store.delete(&bkey(&iid, &bid)).await?;
        return ok(StatusCode::OK, json!({}));
    };
    let op = Op {
        id: new_id(),
        kind: OpKind::Unbind,
    };
    b.op = Some(op.clone());
    save(&app, &bkey(&iid, &bid), &b).await?;
    app.cfn.delete(&id, &op.id).await?;
    if q.accepts_incomplete == Some(true) {
        return ok(StatusCode::ACCEPTED, json!({"operation": op.id}));
    }
    if settle(&app, &id, OpKind::Unbind, "deleting the binding's stack").await? {
        app.store.delete(&bkey(&iid, &bid)).await?;
        return ok(StatusCode::OK, json!({}));
    }
    ok(StatusCode::ACCEPTED, json!({"operation": op.id}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(status: &str) -> StackState {
        StackState {
            id: "x".into(),
            status: status.into(),
            reason: Some("because".into()),
            outputs: BTreeMap::new(),
        }
    }

    #[test]
    fn maps_stack_status_to_operation_state() {
        assert_eq!(
            op_state(OpKind::Provision, Some(&st("CREATE_IN_PROGRESS"))).0,
            "in progress"
        );
        assert_eq!(
            op_state(OpKind::Provision, Some(&st("CREATE_COMPLETE"))).0,
            "succeeded"
        );
        let (s, d) = op_state(OpKind::Provision, Some(&st("ROLLBACK_COMPLETE")));
        assert_eq!(s, "failed");
        assert_eq!(d.as_deref(), Some("ROLLBACK_COMPLETE: because"));
        assert_eq!(
            op_state(OpKind::Update, Some(&st("UPDATE_ROLLBACK_COMPLETE"))).0,
            "failed"
        );
        assert_eq!(op_state(OpKind::Deprovision, None).0, "succeeded");
        assert_eq!(
            op_state(OpKind::Deprovision, Some(&st("DELETE_FAILED"))).0,
            "failed"
        );
        assert_eq!(op_state(OpKind::Provision, None).0, "failed");
    }

    #[test]
    fn versions_and_identity() {
        assert_eq!(parse_version("2.17"), Some((2, 17)));
        assert_eq!(parse_version("x"), None);
        let id = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            r#"{"username":"alice"}"#,
        );
        assert_eq!(
            originating_identity(&format!("kubernetes {id}")),
            "kubernetes:alice"
        );
        assert!(constant_eq(b"abc", b"abc") && !constant_eq(b"abc", b"abd"));
    }
}
