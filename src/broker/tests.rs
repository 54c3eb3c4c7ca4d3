//! The handlers against the in-memory store and the fake CloudFormation: two "replicas"
//! (two `App`s, each with its own lock map) on one store.

use super::app::{App, Auth, Limits};
use super::cloud::Fake;
use super::state::{Binding, Instance, bkey, ikey};
use super::store::{MemStore, StateStore};
use super::{bindings, instances};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The store and the cloud, shared by reference so two Apps see one of each.
#[derive(Clone, Default)]
struct Shared {
    store: Arc<MemStore>,
    cloud: Arc<Fake>,
}

impl StateStore for Arc<MemStore> {
    async fn get(&self, key: &str) -> anyhow::Result<Option<(Value, u64)>> {
        self.as_ref().get(key).await
    }
    async fn put(
        &self,
        key: &str,
        doc: &Value,
        expected: Option<u64>,
    ) -> anyhow::Result<crate::aws::dynamodb::Write> {
        self.as_ref().put(key, doc, expected).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: u64,
    ) -> anyhow::Result<crate::aws::dynamodb::Write> {
        self.as_ref().delete(key, expected).await
    }
}

impl super::cloud::Cloud for Arc<Fake> {
    async fn create(
        &self,
        name: &str,
        body: &str,
        values: &std::collections::BTreeMap<String, String>,
        tags: &std::collections::BTreeMap<String, String>,
        token: &str,
    ) -> Result<crate::deploy::broker::Created, crate::deploy::broker::CfnError> {
        // Yield first, so racing requests interleave as they would against AWS.
        tokio::task::yield_now().await;
        self.as_ref().create(name, body, values, tags, token).await
    }
    async fn update(
        &self,
        id: &str,
        body: &str,
        values: &std::collections::BTreeMap<String, String>,
        all: &[String],
        token: &str,
    ) -> Result<bool, crate::deploy::broker::CfnError> {
        self.as_ref().update(id, body, values, all, token).await
    }
    async fn delete(&self, id: &str, token: &str) -> anyhow::Result<()> {
        self.as_ref().delete(id, token).await
    }
    async fn state(&self, id: &str) -> anyhow::Result<Option<crate::deploy::broker::StackState>> {
        self.as_ref().state(id).await
    }
    async fn secret(&self, arn: &str) -> anyhow::Result<String> {
        self.as_ref().secret(arn).await
    }
}

type TestApp = Arc<App<Arc<MemStore>, Arc<Fake>>>;

fn app(s: &Shared) -> TestApp {
    app_with(s, Limits::default())
}

fn app_with(s: &Shared, limits: Limits) -> TestApp {
    let catalog = crate::broker_catalog::Catalog::load(None).unwrap();
    Arc::new(App::new(
        catalog,
        s.store.clone(),
        s.cloud.clone(),
        "kab".into(),
        "us-east-1".into(),
        Auth::Bearer {
            token: "x".repeat(16),
        },
        Some("arn:aws:iam::123456789012:policy/boundary".into()),
        Some("arn:aws:iam::123456789012:role/kab".into()),
        limits,
    ))
}

fn ids(a: &TestApp, service: &str, plan: &str) -> (String, String) {
    let s = a
        .catalog
        .services
        .iter()
        .find(|s| s.name == service)
        .unwrap();
    let p = s.plans.iter().find(|p| p.name == plan).unwrap();
    (s.id.clone(), p.id.clone())
}

fn q(s: &str) -> Query<Vec<(String, String)>> {
    Query(
        s.split('&')
            .filter(|x| !x.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
    )
}

async fn answer(r: Result<Response, super::error::OsbError>) -> (u16, Value) {
    let r = match r {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    let status = r.status().as_u16();
    let b = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&b).unwrap_or(json!({})))
}

async fn provision(a: &TestApp, iid: &str, body: Value) -> (u16, Value) {
    answer(
        instances::provision(
            State(a.clone()),
            Path(iid.to_string()),
            q("accepts_incomplete=true"),
            Bytes::from(body.to_string()),
        )
        .await,
    )
    .await
}

async fn poll(a: &TestApp, iid: &str) -> (u16, Value) {
    answer(instances::last_operation(State(a.clone()), Path(iid.to_string()), q("")).await).await
}

async fn bind(a: &TestApp, iid: &str, bid: &str, body: Value) -> (u16, Value) {
    answer(
        bindings::bind(
            State(a.clone()),
            Path((iid.to_string(), bid.to_string())),
            q(""),
            Bytes::from(body.to_string()),
        )
        .await,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_race_to_one_stack_one_user_one_key() {
    let shared = Shared::default();
    let (a, b) = (app(&shared), app(&shared));
    let (sid, pid) = ids(&a, "sqs", "standard");
    let body =
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"});
    const N: usize = 16;
    let mut tasks = Vec::new();
    for i in 0..N {
        let x = if i % 2 == 0 { a.clone() } else { b.clone() };
        let body = body.clone();
        tasks.push(tokio::spawn(
            async move { provision(&x, "race", body).await.0 },
        ));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses
            .iter()
            .all(|s| [200, 201, 202, 409, 422].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&202), "{statuses:?}");
    assert_eq!(
        shared.cloud.creates.load(Ordering::SeqCst),
        1,
        "one instance stack"
    );
    assert_eq!(poll(&a, "race").await.1["state"], "succeeded");
    let mut tasks = Vec::new();
    for i in 0..N {
        let x = if i % 2 == 0 { a.clone() } else { b.clone() };
        let body = json!({"service_id": sid, "plan_id": pid});
        tasks.push(tokio::spawn(
            async move { bind(&x, "race", "b1", body).await },
        ));
    }
    let mut creds = std::collections::BTreeSet::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert!([200, 201, 202, 409, 422].contains(&s), "{s} {v}");
        if let Some(k) = v["credentials"]["SQS_AWS_ACCESS_KEY_ID"].as_str() {
            creds.insert(k.to_string());
        }
    }
    assert_eq!(
        shared.cloud.creates.load(Ordering::SeqCst),
        2,
        "one binding stack"
    );
    assert_eq!(creds.len(), 1, "one set of credentials: {creds:?}");
    let users = shared
        .cloud
        .live()
        .iter()
        .filter(|s| s.tags.contains_key("kube-aws:binding"))
        .count();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn malformed_requests_to_a_busy_instance_get_400_and_change_nothing() {
    let shared = Shared::default();
    shared.cloud.slow.store(true, Ordering::SeqCst);
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    let (s, _) = provision(
        &a,
        "busy",
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"}),
    )
    .await;
    assert_eq!(s, 202);
    let before = shared.store.0.lock().unwrap().clone();
    let stacks = shared.cloud.live();
    let cases = [
        (
            "deprovision, empty plan_id",
            answer(
                instances::deprovision(
                    State(a.clone()),
                    Path("busy".into()),
                    q(&format!(
                        "service_id={sid}&plan_id=&accepts_incomplete=true"
                    )),
                )
                .await,
            )
            .await,
        ),
        (
            "update without service_id",
            answer(
                instances::update(
                    State(a.clone()),
                    Path("busy".into()),
                    q("accepts_incomplete=true"),
                    Bytes::from(json!({"parameters": {}}).to_string()),
                )
                .await,
            )
            .await,
        ),
        (
            "bind without plan_id",
            bind(&a, "busy", "b", json!({"service_id": sid})).await,
        ),
    ];
    for (name, (s, body)) in cases {
        assert_eq!(s, 400, "{name}: {body}");
        assert!(body["description"].is_string(), "{name}: {body}");
    }
    // A well-formed request to the same busy instance gets the concurrency answer.
    let (s, body) = bind(&a, "busy", "b", json!({"service_id": sid, "plan_id": pid})).await;
    assert_eq!((s, body["error"].as_str()), (422, Some("ConcurrencyError")));
    assert_eq!(*shared.store.0.lock().unwrap(), before);
    assert_eq!(shared.cloud.live(), stacks);
}

#[tokio::test]
async fn unbind_without_a_stack_id_deletes_the_stack_by_name_after_checking_tags() {
    let shared = Shared::default();
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    provision(
        &a,
        "i1",
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"}),
    )
    .await;
    poll(&a, "i1").await;
    let (s, _) = bind(&a, "i1", "b1", json!({"service_id": sid, "plan_id": pid})).await;
    assert_eq!(s, 201);
    // A crash between CreateStack and recording its id leaves this record.
    let (mut rec, v) = a.load::<Binding>(&bkey("i1", "b1")).await.unwrap().unwrap();
    rec.stack_id = None;
    rec.ready = false;
    assert!(
        a.save(&bkey("i1", "b1"), &rec, Some(v))
            .await
            .unwrap()
            .is_some()
    );
    let (s, body) = answer(
        bindings::unbind(
            State(a.clone()),
            Path(("i1".into(), "b1".into())),
            q(&format!("service_id={sid}&plan_id={pid}")),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(shared.cloud.deletes.load(Ordering::SeqCst), 1);
    assert!(
        shared
            .cloud
            .live()
            .iter()
            .all(|s| !s.tags.contains_key("kube-aws:binding")),
        "the IAM user's stack is gone"
    );
}

#[tokio::test]
async fn a_foreign_stack_with_our_name_is_never_adopted() {
    let shared = Shared::default();
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    // Another tenant's stack holds the name instance `x` would get.
    let other = super::state::stack_tags("kab", "sqs", "someone-else", None);
    use super::cloud::Cloud;
    shared
        .cloud
        .as_ref()
        .create("kab-sqs-i-x", "{}", &Default::default(), &other, "t")
        .await
        .unwrap();
    let (s, body) = provision(
        &a,
        "x",
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"}),
    )
    .await;
    assert_eq!(s, 500, "{body}");
    assert!(!body.to_string().contains("123456789012"), "{body}");
    // Deprovision (the platform's orphan mitigation) leaves the foreign stack alone.
    let (s, _) = answer(
        instances::deprovision(
            State(a.clone()),
            Path("x".into()),
            q(&format!(
                "service_id={sid}&plan_id={pid}&accepts_incomplete=true"
            )),
        )
        .await,
    )
    .await;
    assert_eq!(s, 410, "no instance was made");
    assert!(a.load::<Instance>(&ikey("x")).await.unwrap().is_none());
    assert_eq!(shared.cloud.deletes.load(Ordering::SeqCst), 0);
    assert_eq!(shared.cloud.live().len(), 1);
}

#[tokio::test]
async fn the_lock_map_stays_bounded() {
    let shared = Shared::default();
    let a = app(&shared);
    for i in 0..3000 {
        poll(&a, &format!("i{i}")).await;
    }
    assert!(a.lock_count() <= 1024, "{}", a.lock_count());
    // Invalid ids never reach the map.
    let before = a.lock_count();
    poll(&a, "a.b").await;
    assert_eq!(a.lock_count(), before);
}

#[tokio::test]
async fn last_operation_reports_the_last_operation_whatever_operation_is_named() {
    let shared = Shared::default();
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    provision(
        &a,
        "i1",
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"}),
    )
    .await;
    let (s, body) = answer(
        instances::last_operation(State(a.clone()), Path("i1".into()), q("operation=not-ours"))
            .await,
    )
    .await;
    assert_eq!((s, body["state"].as_str()), (200, Some("succeeded")));
    let (s, _) = poll(&a, "unknown").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_synchronous_bind_never_answers_202() {
    let shared = Shared::default();
    let a = app_with(
        &shared,
        Limits {
            settle: std::time::Duration::from_millis(300),
        },
    );
    let (sid, pid) = ids(&a, "sqs", "standard");
    provision(
        &a,
        "i1",
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"}),
    )
    .await;
    poll(&a, "i1").await;
    shared.cloud.slow.store(true, Ordering::SeqCst);
    let body = json!({"service_id": sid, "plan_id": pid});
    // Past the wait: a 5xx (a 4xx must leave nothing behind, a 202 needs
    // accepts_incomplete), after which a platform unbinds or repeats.
    let (s, v) = bind(&a, "i1", "b1", body.clone()).await;
    assert_eq!(s, 504, "{v}");
    let (s, v) = bind(&a, "i1", "b1", body.clone()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (422, Some("ConcurrencyError")),
        "{v}"
    );
    shared.cloud.finish();
    let (s, v) = bind(&a, "i1", "b1", body).await;
    assert_eq!(
        s, 200,
        "the repeat gets the credentials once the user exists: {v}"
    );
    assert!(v["credentials"]["SQS_AWS_ACCESS_KEY_ID"].is_string());
}

async fn deprovision(a: &TestApp, iid: &str, sid: &str, pid: &str) -> (u16, Value) {
    answer(
        instances::deprovision(
            State(a.clone()),
            Path(iid.to_string()),
            q(&format!(
                "service_id={sid}&plan_id={pid}&accepts_incomplete=true"
            )),
        )
        .await,
    )
    .await
}

/// OSB 2.17: a repeated request while its operation runs gets 202 with the same
/// `operation` (Provisioning, Binding, Unbinding, Deprovisioning: "MUST ... 202").
#[tokio::test]
async fn repeats_while_running_get_202_and_the_same_operation() {
    let shared = Shared::default();
    shared.cloud.slow.store(true, Ordering::SeqCst);
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    let body =
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"});
    let (s1, v1) = provision(&a, "i1", body.clone()).await;
    let (s2, v2) = provision(&a, "i1", body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(v1["operation"], v2["operation"]);
    assert_eq!(poll(&a, "i1").await.1["state"], "in progress");
    shared.cloud.finish();
    assert_eq!(poll(&a, "i1").await.1["state"], "succeeded");
    let bind_async = |bid: &'static str| {
        let a = a.clone();
        let body = json!({"service_id": sid, "plan_id": pid});
        async move {
            answer(
                bindings::bind(
                    State(a),
                    Path(("i1".to_string(), bid.to_string())),
                    q("accepts_incomplete=true"),
                    Bytes::from(body.to_string()),
                )
                .await,
            )
            .await
        }
    };
    let (b1, w1) = bind_async("b1").await;
    let (b2, w2) = bind_async("b1").await;
    assert_eq!((b1, b2), (202, 202));
    assert_eq!(w1["operation"], w2["operation"]);
    assert!(w1.get("credentials").is_none(), "no credentials in a 202");
    let (s, _) =
        answer(bindings::fetch(State(a.clone()), Path(("i1".into(), "b1".into())), q("")).await)
            .await;
    assert_eq!(s, 404, "a binding being created is not fetchable");
    shared.cloud.finish();
    let unbind_async = || {
        let a = a.clone();
        let qs = format!("service_id={sid}&plan_id={pid}&accepts_incomplete=true");
        async move {
            answer(bindings::unbind(State(a), Path(("i1".into(), "b1".into())), q(&qs)).await).await
        }
    };
    let (u1, x1) = unbind_async().await;
    let (u2, x2) = unbind_async().await;
    assert_eq!((u1, u2), (202, 202));
    assert_eq!(x1["operation"], x2["operation"]);
    shared.cloud.finish();
    let (s, v) = answer(
        bindings::last_operation(State(a.clone()), Path(("i1".into(), "b1".into())), q("")).await,
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("succeeded")));
    let (s, _) = answer(
        bindings::last_operation(State(a.clone()), Path(("i1".into(), "b1".into())), q("")).await,
    )
    .await;
    assert_eq!(s, 410, "an unbound binding's poll is 410");
    let (d1, y1) = deprovision(&a, "i1", &sid, &pid).await;
    let (d2, y2) = deprovision(&a, "i1", &sid, &pid).await;
    assert_eq!((d1, d2), (202, 202));
    assert_eq!(y1["operation"], y2["operation"]);
    shared.cloud.finish();
    assert_eq!(poll(&a, "i1").await.1["state"], "succeeded");
    assert_eq!(poll(&a, "i1").await.0, 410);
    assert_eq!(deprovision(&a, "i1", &sid, &pid).await.0, 410);
}

/// OSB 2.17 Fetching a Service Instance: 404 while provisioning, 422 ConcurrencyError
/// while updating; Updating: no plan_id keeps the plan, parameters merge.
#[tokio::test]
async fn fetch_during_an_update_is_a_concurrency_error() {
    let shared = Shared::default();
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    shared.cloud.slow.store(true, Ordering::SeqCst);
    provision(
        &a,
        "i1",
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"}),
    )
    .await;
    let fetch = || async {
        answer(instances::fetch(State(a.clone()), Path("i1".into()), q("")).await).await
    };
    assert_eq!(fetch().await.0, 404, "being provisioned");
    shared.cloud.finish();
    poll(&a, "i1").await;
    let (s, v) = answer(
        instances::update(
            State(a.clone()),
            Path("i1".into()),
            q("accepts_incomplete=true"),
            Bytes::from(
                json!({"service_id": sid, "parameters": {"VisibilityTimeout": 20}}).to_string(),
            ),
        )
        .await,
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = fetch().await;
    assert_eq!((s, v["error"].as_str()), (422, Some("ConcurrencyError")));
    shared.cloud.finish();
    assert_eq!(poll(&a, "i1").await.1["state"], "succeeded");
    let (s, v) = fetch().await;
    assert_eq!(s, 200);
    assert_eq!(v["plan_id"], pid.as_str(), "no plan_id: the plan stays");
    assert_eq!(v["parameters"]["VisibilityTimeout"], 20);
}

/// Orphan mitigation: a record a crash or a cancelled request left before CreateStack
/// made a stack. While a create may still be in flight the DELETE is a ConcurrencyError;
/// once the record is abandoned it is deleted (no stack exists), never stuck.
#[tokio::test]
async fn deprovision_of_an_abandoned_provision_record_completes() {
    let shared = Shared::default();
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    for (iid, started, want) in [("fresh", super::state::now(), 422), ("old", 1, 200)] {
        let rec = Instance {
            id: iid.into(),
            service_id: sid.clone(),
            plan_id: pid.clone(),
            previous_plan_id: None,
            previous_requested: None,
            requested: Default::default(),
            stack_name: format!("kab-sqs-i-{iid}"),
            stack_id: None,
            op: Some(super::state::Op {
                id: "op-x".into(),
                kind: super::state::OpKind::Provision,
                started,
            }),
            ready: false,
            gone: false,
        };
        a.save(&ikey(iid), &rec, None).await.unwrap();
        let (s, v) = deprovision(&a, iid, &sid, &pid).await;
        assert_eq!(s, want, "{iid}: {v}");
    }
    assert_eq!(poll(&a, "old").await.0, 410);
    assert_eq!(shared.cloud.creates.load(Ordering::SeqCst), 0);
}

/// An unbind that finds a bind's record without a stack id while that bind's CreateStack
/// may still run elsewhere waits (422) instead of tombstoning, which would leave the IAM
/// user behind.
#[tokio::test]
async fn unbind_does_not_race_a_bind_in_flight() {
    let shared = Shared::default();
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    provision(
        &a,
        "i1",
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"}),
    )
    .await;
    poll(&a, "i1").await;
    let rec = Binding {
        id: "b1".into(),
        instance_id: "i1".into(),
        service_id: sid.clone(),
        plan_id: pid.clone(),
        requested: Default::default(),
        stack_name: Some("kab-sqs-b2-i1-b1".into()),
        stack_id: None,
        op: Some(super::state::new_op(super::state::OpKind::Bind)),
        ready: false,
        gone: false,
    };
    a.save(&bkey("i1", "b1"), &rec, None).await.unwrap();
    let (s, v) = answer(
        bindings::unbind(
            State(a.clone()),
            Path(("i1".into(), "b1".into())),
            q(&format!("service_id={sid}&plan_id={pid}")),
        )
        .await,
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (422, Some("ConcurrencyError")));
    let (after, _) = a.load::<Binding>(&bkey("i1", "b1")).await.unwrap().unwrap();
    assert_eq!(after, rec, "unchanged");
}

/// A deprovision that finished before anyone polled: a repeated DELETE is 410, and a new
/// provision of the id makes a new instance.
#[tokio::test]
async fn a_finished_but_unpolled_deprovision_counts_as_gone() {
    let shared = Shared::default();
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    let body =
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"});
    provision(&a, "i1", body.clone()).await;
    poll(&a, "i1").await;
    assert_eq!(deprovision(&a, "i1", &sid, &pid).await.0, 202);
    assert_eq!(deprovision(&a, "i1", &sid, &pid).await.0, 410);
    let (s, _) = provision(&a, "i1", body).await;
    assert_eq!(s, 202, "a new instance");
    assert_eq!(shared.cloud.creates.load(Ordering::SeqCst), 2);
}

/// A service dropped from the offered list (`--services`) still lets its instances and
/// bindings be deleted: the record's ids are the check, not the catalog.
#[tokio::test]
async fn instances_of_a_service_no_longer_offered_can_be_deleted() {
    let shared = Shared::default();
    let a = app(&shared);
    let (sid, pid) = ids(&a, "sqs", "standard");
    provision(
        &a,
        "i1",
        json!({"service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s"}),
    )
    .await;
    poll(&a, "i1").await;
    assert_eq!(
        bind(&a, "i1", "b1", json!({"service_id": sid, "plan_id": pid}))
            .await
            .0,
        201
    );
    let mut catalog = crate::broker_catalog::Catalog::load(None).unwrap();
    catalog.only(&["s3".to_string()]);
    let only_s3 = Arc::new(App::new(
        catalog,
        shared.store.clone(),
        shared.cloud.clone(),
        "kab".into(),
        "us-east-1".into(),
        Auth::Bearer {
            token: "x".repeat(16),
        },
        None,
        None,
        Limits::default(),
    ));
    let (s, v) = answer(
        bindings::unbind(
            State(only_s3.clone()),
            Path(("i1".into(), "b1".into())),
            q(&format!("service_id={sid}&plan_id={pid}")),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = deprovision(&only_s3, "i1", &sid, &pid).await;
    assert_eq!(s, 202, "{v}");
}
