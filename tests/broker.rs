//! The service broker over HTTP against moto: the seeds' S3 and SQS flows with the bound
//! credentials used by real clients, every bad request's status and body (with the
//! state unchanged), a crash mid-provision, and the DynamoDB store.

#[path = "common/broker.rs"]
mod broker;
mod common;

use broker::{Broker, provision_body, records, snapshot};
use common::{Moto, text};
use reqwest::Method;
use serde_json::{Value, json};

const INSTANCE: &str = "/v2/service_instances";

fn s3_with(sdk: &aws_config::SdkConfig, key: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            key, secret, None, None, "binding",
        ))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_seed_flow() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let boundary = "arn:aws:iam::123456789012:policy/kube-aws-test-kab-boundary";
    let b = Broker::start(
        &moto,
        state.to_str().expect("utf8"),
        &["--permissions-boundary", boundary],
    );
    let (sid, pid) = b.ids("s3", "production").await;
    let path = format!("{INSTANCE}/s3-bucket-1");

    let (s, body) = b
        .call(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(json!({
            "service_id": sid, "plan_id": pid,
            "organization_guid": "o", "space_guid": "s",
            "context": {"platform": "kubernetes", "namespace": "s3-demo"}})),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert!(body["operation"].is_string());
    let done = b.wait(&path).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    // Same request again: 200.
    let (s, _) = b
        .call(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(provision_body(&sid, &pid)),
        )
        .await;
    assert_eq!(s, 200);
    let (s, inst) = b.call(Method::GET, &path, None).await;
    assert_eq!((s, inst["plan_id"].as_str()), (200, Some(pid.as_str())));

    // Bind: the seed's keys.
    let bpath = format!("{path}/service_bindings/s3-binding-1");
    let (s, bound) = b
        .call(
            Method::PUT,
            &bpath,
            Some(json!({"service_id": sid, "plan_id": pid})),
        )
        .await;
    assert_eq!(s, 201, "{bound}");
    let c = &bound["credentials"];
    let mut keys: Vec<&str> = c
        .as_object()
        .expect("credentials")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "BUCKET_ARN",
            "BUCKET_NAME",
            "LOGGING_BUCKET_NAME",
            "S3_AWS_ACCESS_KEY_ID",
            "S3_AWS_SECRET_ACCESS_KEY",
            "S3_REGION"
        ]
    );
    let bucket = c["BUCKET_NAME"].as_str().expect("bucket").to_string();
    assert_eq!(c["BUCKET_ARN"], format!("arn:aws:s3:::{bucket}"));
    assert!(bucket.starts_with("kab-s3-i-s3-bucket-1"), "{bucket}");
    let (s, again) = b.call(Method::GET, &bpath, None).await;
    assert_eq!(s, 200);
    assert_eq!(again["credentials"], bound["credentials"]);

    // The binding's IAM user is scoped to this bucket.
    let cfn = kube_aws::aws::cloudformation(&sdk);
    let stacks = cfn.describe_stacks().send().await.expect("stacks");
    let bstack = stacks
        .stacks()
        .iter()
        .find(|s| s.stack_name() == Some("kab-s3-b11-s3-bucket-1-s3-binding-1"))
        .expect("binding stack");
    // No key in any output: DescribeStacks (ReadOnlyAccess) shows only the secret's ARN.
    let outputs: Vec<&str> = bstack
        .outputs()
        .iter()
        .filter_map(|o| o.output_key())
        .collect();
    assert_eq!(outputs, vec!["CredentialsSecretArn"]);
    let secret = c["S3_AWS_SECRET_ACCESS_KEY"].as_str().expect("secret");
    assert!(
        !format!("{:?}", stacks.stacks()).contains(secret),
        "a secret access key is in DescribeStacks"
    );
    let tpl = cfn
        .get_template()
        .stack_name(bstack.stack_id().expect("id"))
        .send()
        .await
        .expect("template");
    let t: Value = serde_json::from_str(tpl.template_body().expect("body")).expect("json");
    assert_eq!(
        t["Resources"]["User"]["Properties"]["PermissionsBoundary"], boundary,
        "every binding user is bounded"
    );
    let stmts = &t["Resources"]["User"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    assert_eq!(
        stmts[0]["Resource"],
        json!([format!("arn:aws:s3:::{bucket}")])
    );
    assert_eq!(
        stmts[1]["Resource"],
        json!([format!("arn:aws:s3:::{bucket}/*")])
    );
    assert!(
        !stmts.to_string().contains("\"*\""),
        "no wildcard resource: {stmts}"
    );

    // The seed's s3-demo app, with the bound credentials.
    let s3 = s3_with(
        &sdk,
        c["S3_AWS_ACCESS_KEY_ID"].as_str().expect("key"),
        c["S3_AWS_SECRET_ACCESS_KEY"].as_str().expect("secret"),
    );
    let put = |k: &'static str| {
        s3.put_object()
            .bucket(&bucket)
            .key(k)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"hello from s3-demo",
            ))
            .send()
    };
    put("demo/item.txt").await.expect("put");
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("demo/item.txt")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some(18));
    put("demo/item.txt").await.expect("put a duplicate");
    let list = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    assert_eq!(list.contents().len(), 1, "a duplicate put keeps one object");
    s3.delete_object()
        .bucket(&bucket)
        .key("demo/item.txt")
        .send()
        .await
        .expect("delete");
    let list = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    assert_eq!(list.contents().len(), 0);
    // An object (and, the bucket being versioned, old versions) left behind: deprovision
    // still deletes the bucket, as OSB's "delete every resource" asks.
    put("demo/left-behind.txt").await.expect("put");
    put("demo/left-behind.txt")
        .await
        .expect("put a second version");

    // Unbind, deprovision; the bucket is gone and the instance answers 410.
    let (s, _) = b.delete(&bpath, &sid, &pid, false).await;
    assert_eq!(s, 200);
    let (s, _) = b.call(Method::GET, &bpath, None).await;
    assert_eq!(s, 404);
    let (s, _) = b.delete(&bpath, &sid, &pid, false).await;
    assert_eq!(s, 410);
    let (s, body) = b.delete(&path, &sid, &pid, true).await;
    assert_eq!(s, 202, "{body}");
    let done = b.wait(&path).await;
    assert_eq!(done["state"], "succeeded");
    let (s, _) = b
        .call(Method::GET, &format!("{path}/last_operation"), None)
        .await;
    assert_eq!(s, 410);
    let admin = kube_aws::aws::s3(&sdk);
    assert!(
        admin.head_bucket().bucket(&bucket).send().await.is_err(),
        "the bucket is gone"
    );
    let left = records(&state);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().all(|(_, r)| r["gone"] == true),
        "only tombstones left: {left:?}"
    );
    let log = std::fs::read_to_string(&b.log).unwrap_or_default();
    assert!(log.contains("identity=kubernetes:test"), "{log}");
    assert!(
        !log.contains(c["S3_AWS_SECRET_ACCESS_KEY"].as_str().unwrap_or("-")),
        "no secret in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_seed_flow_with_boto3() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tmp");
    let b = Broker::start(&moto, dir.path().join("state").to_str().expect("utf8"), &[]);
    let (sid, pid) = b.ids("sqs", "standard").await;
    let path = format!("{INSTANCE}/sqs-1");
    let (s, _) = b
        .call(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(json!({
            "service_id": sid, "plan_id": pid, "organization_guid": "o", "space_guid": "s",
            "parameters": {"VisibilityTimeout": 10}})),
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(b.wait(&path).await["state"], "succeeded");
    let bpath = format!("{path}/service_bindings/sqs-b");
    let (s, bound) = b
        .call(
            Method::PUT,
            &format!("{bpath}?accepts_incomplete=true"),
            Some(json!({"service_id": sid, "plan_id": pid})),
        )
        .await;
    assert_eq!(s, 202, "async bind: {bound}");
    assert_eq!(b.wait(&bpath).await["state"], "succeeded");
    let (s, got) = b.call(Method::GET, &bpath, None).await;
    assert_eq!(s, 200);
    let c = &got["credentials"];
    for k in [
        "QUEUE_URL",
        "QUEUE_ARN",
        "QUEUE_NAME",
        "SQS_AWS_ACCESS_KEY_ID",
        "SQS_AWS_SECRET_ACCESS_KEY",
        "SQS_REGION",
    ] {
        assert!(c[k].is_string(), "{k} missing in {c}");
    }
    // A real client with the bound credentials: send, receive, delete.
    let script = "import boto3, os, sys\n\
q = os.environ['QUEUE_URL']\n\
c = boto3.client('sqs', aws_access_key_id=os.environ['SQS_AWS_ACCESS_KEY_ID'], aws_secret_access_key=os.environ['SQS_AWS_SECRET_ACCESS_KEY'], region_name=os.environ['SQS_REGION'])\n\
c.send_message(QueueUrl=q, MessageBody='hello from sqs-demo')\n\
m = c.receive_message(QueueUrl=q, MaxNumberOfMessages=1, WaitTimeSeconds=1)['Messages'][0]\n\
assert m['Body'] == 'hello from sqs-demo', m\n\
c.delete_message(QueueUrl=q, ReceiptHandle=m['ReceiptHandle'])\n\
print('ok')\n";
    let mut cmd = std::process::Command::new(common::venv_bin("python"));
    cmd.arg("-c")
        .arg(script)
        .env("AWS_ENDPOINT_URL", moto.endpoint());
    for (k, v) in c.as_object().expect("creds") {
        cmd.env(k, v.as_str().unwrap_or_default());
    }
    let out = cmd.output().expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok");
    // Update an updatable parameter; a plan change is refused (plan_updateable false).
    let (s, body) = b
        .call(
            Method::PATCH,
            &format!("{path}?accepts_incomplete=true"),
            Some(json!({
            "service_id": sid, "parameters": {"VisibilityTimeout": 20}})),
        )
        .await;
    assert!(s == 202 || s == 200, "{s} {body}");
    if s == 202 {
        assert_eq!(b.wait(&path).await["state"], "succeeded");
    }
    let (_, fifo) = b.ids("sqs", "fifo").await;
    let (s, body) = b
        .call(
            Method::PATCH,
            &format!("{path}?accepts_incomplete=true"),
            Some(json!({
            "service_id": sid, "plan_id": fifo})),
        )
        .await;
    assert_eq!(s, 422, "a plan change sqs does not support: {body}");
    let (s, body) = b
        .call(
            Method::PATCH,
            &format!("{path}?accepts_incomplete=true"),
            Some(json!({
            "service_id": sid, "parameters": {"FifoQueue": "true"}})),
        )
        .await;
    assert_eq!(s, 400, "not updatable: {body}");
    let (s, _) = b.delete(&bpath, &sid, &pid, false).await;
    assert_eq!(s, 200);
    let (s, _) = b.delete(&path, &sid, &pid, true).await;
    assert_eq!(s, 202);
    assert_eq!(b.wait(&path).await["state"], "succeeded");
}

/// Everything the broker could have changed in AWS: its stacks (name, status); every IAM
/// user, key and resource it makes is in one.
async fn aws_state(sdk: &aws_config::SdkConfig) -> Vec<String> {
    let cfn = kube_aws::aws::cloudformation(sdk);
    let mut v: Vec<String> = cfn
        .describe_stacks()
        .send()
        .await
        .expect("stacks")
        .stacks()
        .iter()
        .map(|s| {
            format!(
                "stack {} {}",
                s.stack_name().unwrap_or_default(),
                s.stack_status().map(|x| x.as_str()).unwrap_or_default()
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_spec_answer_and_change_nothing() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let b = Broker::start(&moto, state.to_str().expect("utf8"), &[]);
    let (sid, pid) = b.ids("s3", "dev").await;
    let (_, prod) = b.ids("s3", "production").await;
    let (sqs, sqs_plan) = b.ids("sqs", "standard").await;
    let good = provision_body(&sid, &pid);
    let path = format!("{INSTANCE}/i-1");
    let (s, _) = b
        .call(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(good.clone()),
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(b.wait(&path).await["state"], "succeeded");
    let bpath = format!("{path}/service_bindings/b-1");
    let (s, _) = b
        .call(
            Method::PUT,
            &bpath,
            Some(json!({"service_id": sid, "plan_id": pid})),
        )
        .await;
    assert_eq!(s, 201);
    // A busy instance: its record says a provision began just now, with no stack yet
    // (written as the file store writes it).
    let busy = json!({"v": 1, "doc": {"id": "i-busy", "service_id": sid, "plan_id": pid,
        "requested": {}, "stack_name": "kab-s3-i-i-busy", "stack_id": null,
        "op": {"id": "op-busy", "kind": "provision", "started": 4_000_000_000u64}, "ready": false}});
    std::fs::write(state.join("instance~i-busy.json"), busy.to_string()).expect("write");
    let busy_path = format!("{INSTANCE}/i-busy");
    let before = snapshot(&state);
    let aws_before = aws_state(&sdk).await;
    let q = "?accepts_incomplete=true";
    let ids = |s: &str, p: &str| format!("?service_id={s}&plan_id={p}&accepts_incomplete=true");
    let with = |f: &str, v: Value| {
        let mut g = good.clone();
        g[f] = v;
        g
    };
    let without = |f: &str| {
        let mut g = good.clone();
        g.as_object_mut().expect("object").remove(f);
        g
    };
    // (case, method, path, body, status, OSB error code)
    type Case<'a> = (&'a str, Method, String, Option<Value>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "unknown service",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            Some(with("service_id", json!("nope"))),
            400,
            None,
        ),
        (
            "unknown plan",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            Some(with("plan_id", json!("nope"))),
            400,
            None,
        ),
        (
            "plan-fixed parameter",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            Some(with("parameters", json!({"EnableVersioning": "true"}))),
            400,
            None,
        ),
        (
            "invalid parameter value",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            Some(with("parameters", json!({"Bogus": 1}))),
            400,
            None,
        ),
        (
            "not JSON",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            None,
            400,
            None,
        ),
        (
            "provision without organization_guid",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            Some(without("organization_guid")),
            400,
            None,
        ),
        (
            "provision without space_guid",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            Some(without("space_guid")),
            400,
            None,
        ),
        (
            "provision with an empty organization_guid",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            Some(with("organization_guid", json!(""))),
            400,
            None,
        ),
        (
            "provision with an empty space_guid",
            Method::PUT,
            format!("{INSTANCE}/i-2{q}"),
            Some(with("space_guid", json!(""))),
            400,
            None,
        ),
        (
            "provision with an invalid id",
            Method::PUT,
            format!("{INSTANCE}/a.b{q}"),
            Some(good.clone()),
            400,
            None,
        ),
        (
            "no accepts_incomplete",
            Method::PUT,
            format!("{INSTANCE}/i-2"),
            Some(good.clone()),
            422,
            Some("AsyncRequired"),
        ),
        (
            "same id, other parameters",
            Method::PUT,
            format!("{path}{q}"),
            Some(with("plan_id", json!(prod))),
            409,
            None,
        ),
        (
            "bind on an unknown instance",
            Method::PUT,
            format!("{INSTANCE}/nope/service_bindings/b"),
            Some(json!({"service_id": sid, "plan_id": pid})),
            404,
            None,
        ),
        (
            "bind without plan_id",
            Method::PUT,
            format!("{path}/service_bindings/b-2"),
            Some(json!({"service_id": sid})),
            400,
            None,
        ),
        (
            "bind with a plan_id in no catalog",
            Method::PUT,
            format!("{path}/service_bindings/b-2"),
            Some(json!({"service_id": sid, "plan_id": "nope"})),
            400,
            None,
        ),
        (
            "bind with another service's ids",
            Method::PUT,
            format!("{path}/service_bindings/b-2"),
            Some(json!({"service_id": sqs, "plan_id": sqs_plan})),
            400,
            None,
        ),
        (
            "bind with another plan of the service",
            Method::PUT,
            format!("{path}/service_bindings/b-2"),
            Some(json!({"service_id": sid, "plan_id": prod})),
            400,
            None,
        ),
        (
            "bind with parameters",
            Method::PUT,
            format!("{path}/service_bindings/b-2"),
            Some(json!({"service_id": sid, "plan_id": pid, "parameters": {"x": 1}})),
            400,
            None,
        ),
        (
            "deprovision without accepts_incomplete",
            Method::DELETE,
            format!("{path}?service_id={sid}&plan_id={pid}"),
            None,
            422,
            Some("AsyncRequired"),
        ),
        (
            "deprovision without ids",
            Method::DELETE,
            format!("{path}{q}"),
            None,
            400,
            None,
        ),
        (
            "deprovision with service_id=",
            Method::DELETE,
            format!("{path}{}", ids("", &pid)),
            None,
            400,
            None,
        ),
        (
            "deprovision with plan_id=",
            Method::DELETE,
            format!("{path}{}", ids(&sid, "")),
            None,
            400,
            None,
        ),
        (
            "deprovision with another plan",
            Method::DELETE,
            format!("{path}{}", ids(&sid, &prod)),
            None,
            400,
            None,
        ),
        (
            "deprovision with another service",
            Method::DELETE,
            format!("{path}{}", ids(&sqs, &sqs_plan)),
            None,
            400,
            None,
        ),
        (
            "deprovision unknown",
            Method::DELETE,
            format!("{INSTANCE}/nope{}", ids(&sid, &pid)),
            None,
            410,
            None,
        ),
        (
            "unbind with service_id=",
            Method::DELETE,
            format!("{bpath}{}", ids("", &pid)),
            None,
            400,
            None,
        ),
        (
            "unbind with plan_id=",
            Method::DELETE,
            format!("{bpath}{}", ids(&sid, "")),
            None,
            400,
            None,
        ),
        (
            "unbind without ids",
            Method::DELETE,
            bpath.clone(),
            None,
            400,
            None,
        ),
        (
            "unbind unknown",
            Method::DELETE,
            format!("{path}/service_bindings/nope{}", ids(&sid, &pid)),
            None,
            410,
            None,
        ),
        (
            "update without service_id",
            Method::PATCH,
            format!("{path}{q}"),
            Some(json!({"parameters": {}})),
            400,
            None,
        ),
        (
            "update with an unknown service_id",
            Method::PATCH,
            format!("{path}{q}"),
            Some(json!({"service_id": "nope"})),
            400,
            None,
        ),
        (
            "update with another service",
            Method::PATCH,
            format!("{path}{q}"),
            Some(json!({"service_id": sqs})),
            400,
            None,
        ),
        (
            "update with an empty plan_id",
            Method::PATCH,
            format!("{path}{q}"),
            Some(json!({"service_id": sid, "plan_id": ""})),
            400,
            None,
        ),
        (
            "busy: deprovision with plan_id=",
            Method::DELETE,
            format!("{busy_path}{}", ids(&sid, "")),
            None,
            400,
            None,
        ),
        (
            "busy: bind without plan_id",
            Method::PUT,
            format!("{busy_path}/service_bindings/x"),
            Some(json!({"service_id": sid})),
            400,
            None,
        ),
        (
            "busy: update without service_id",
            Method::PATCH,
            format!("{busy_path}{q}"),
            Some(json!({})),
            400,
            None,
        ),
        (
            "busy: a well-formed bind",
            Method::PUT,
            format!("{busy_path}/service_bindings/x"),
            Some(json!({"service_id": sid, "plan_id": pid})),
            422,
            Some("ConcurrencyError"),
        ),
        (
            "busy: a well-formed deprovision",
            Method::DELETE,
            format!("{busy_path}{}", ids(&sid, &pid)),
            None,
            422,
            Some("ConcurrencyError"),
        ),
        (
            "busy: fetch while provisioning",
            Method::GET,
            busy_path.clone(),
            None,
            404,
            None,
        ),
        (
            "get unknown binding",
            Method::GET,
            format!("{path}/service_bindings/none"),
            None,
            404,
            None,
        ),
        (
            "get unknown instance",
            Method::GET,
            format!("{INSTANCE}/none"),
            None,
            404,
            None,
        ),
        (
            "get instance with another service_id",
            Method::GET,
            format!("{path}?service_id={sqs}"),
            None,
            400,
            None,
        ),
        (
            "last_operation of unknown",
            Method::GET,
            format!("{INSTANCE}/none/last_operation"),
            None,
            404,
            None,
        ),
        (
            "last_operation with plan_id=",
            Method::GET,
            format!("{path}/last_operation?plan_id="),
            None,
            400,
            None,
        ),
        (
            "last_operation of an unknown binding",
            Method::GET,
            format!("{path}/service_bindings/none/last_operation"),
            None,
            404,
            None,
        ),
        (
            "last_operation with an operation the broker did not issue",
            Method::GET,
            format!("{path}/last_operation?operation=op-from-another-platform"),
            None,
            200,
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, m, p, body, want, error) in cases {
        let mut r = b.req(m, &p);
        r = match body {
            Some(v) => r.json(&v),
            None if name == "not JSON" => r
                .header("content-type", "application/json")
                .body("{not json"),
            None => r,
        };
        let resp = r.send().await.expect("answer");
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(json!({}));
        if status != want || error.is_some_and(|e| v["error"] != e) || !v.is_object() {
            failures.push(format!("{name}: {status} {v} (want {want} {error:?})"));
        }
        if matches!(status, 400 | 409 | 422)
            && v["description"].as_str().is_none_or(|d| d.is_empty())
        {
            failures.push(format!("{name}: no description in {v}"));
        }
        if want == 200 && v["state"] != "succeeded" {
            failures.push(format!("{name}: {v}"));
        }
        if snapshot(&state) != before {
            failures.push(format!("{name}: the state store changed"));
        }
        if aws_state(&sdk).await != aws_before {
            failures.push(format!("{name}: AWS changed"));
        }
    }
    // Headers and auth.
    let plain = reqwest::Client::new();
    let url = b.url("/v2/catalog");
    let r = plain
        .get(&url)
        .header("X-Broker-API-Version", "2.17")
        .send()
        .await
        .expect("answer");
    if r.status() != 401 {
        failures.push(format!("no auth: {}", r.status()));
    }
    let r = plain
        .get(&url)
        .header("X-Broker-API-Version", "2.17")
        .bearer_auth("wrong")
        .send()
        .await
        .expect("answer");
    if r.status() != 401 {
        failures.push(format!("wrong token: {}", r.status()));
    }
    let r = plain
        .get(&url)
        .bearer_auth(broker::TOKEN)
        .send()
        .await
        .expect("answer");
    if r.status() != 400 {
        failures.push(format!("no version header: {}", r.status()));
    }
    for v in ["2.12", "3.0", "banana"] {
        let r = plain
            .get(&url)
            .bearer_auth(broker::TOKEN)
            .header("X-Broker-API-Version", v)
            .send()
            .await
            .expect("answer");
        if r.status() != 412 {
            failures.push(format!("version {v}: {}", r.status()));
        }
    }
    for v in ["2.13", "2.14", "2.15", "2.16", "2.17"] {
        let r = plain
            .get(&url)
            .bearer_auth(broker::TOKEN)
            .header("X-Broker-API-Version", v)
            .send()
            .await
            .expect("answer");
        if r.status() != 200 {
            failures.push(format!("version {v}: {}", r.status()));
        }
    }
    assert_eq!(snapshot(&state), before);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_provision_loses_nothing() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let st = state.to_str().expect("utf8");
    let mut b = Broker::start(&moto, st, &[]);
    let (sid, pid) = b.ids("sqs", "standard").await;
    let path = format!("{INSTANCE}/crash-1");
    let (s, body) = b
        .call(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(provision_body(&sid, &pid)),
        )
        .await;
    assert_eq!(s, 202);
    let op = body["operation"].clone();
    b.kill();
    let b = Broker::start(&moto, st, &[]);
    let (s, lo) = b
        .call(
            Method::GET,
            &format!(
                "{path}/last_operation?operation={}",
                op.as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!(s, 200, "{lo}");
    assert_eq!(b.wait(&path).await["state"], "succeeded");

    // The record a crash between saving and CreateStack leaves (written here as the
    // broker writes it): the instance is busy, then last_operation sends the create.
    let record = json!({"id": "crash-2", "service_id": sid, "plan_id": pid, "requested": {},
        "stack_name": "kab-sqs-i-crash-2", "stack_id": null,
        "op": {"id": "op-000000000000000000000001", "kind": "provision"}, "ready": false});
    std::fs::write(state.join("instance~crash-2.json"), record.to_string()).expect("write");
    let p2 = format!("{INSTANCE}/crash-2");
    let (s, body) = b
        .call(
            Method::PUT,
            &format!("{p2}/service_bindings/x"),
            Some(json!({"service_id": sid, "plan_id": pid})),
        )
        .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (422, Some("ConcurrencyError")),
        "{body}"
    );
    assert_eq!(b.wait(&p2).await["state"], "succeeded");
    let names = broker::stack_names(&moto.sdk_config().await).await;
    assert_eq!(
        names.iter().filter(|n| *n == "kab-sqs-i-crash-1").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "kab-sqs-i-crash-2").count(),
        1,
        "{names:?}"
    );
    // Graceful stop: SIGTERM exits 0.
    let mut b = b;
    assert!(b.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_store() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let ddb = create_table(&sdk, "kab-state").await;
    let mut b = Broker::start(&moto, "dynamodb:kab-state", &[]);
    let (sid, pid) = b.ids("sqs", "standard").await;
    let path = format!("{INSTANCE}/ddb-1");
    let (s, _) = b
        .call(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(provision_body(&sid, &pid)),
        )
        .await;
    assert_eq!(s, 202);
    b.kill();
    let b = Broker::start(&moto, "dynamodb:kab-state", &[]);
    assert_eq!(b.wait(&path).await["state"], "succeeded");
    let item = ddb
        .get_item()
        .table_name("kab-state")
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S("instance/ddb-1".into()),
        )
        .send()
        .await
        .expect("item");
    let doc = item
        .item()
        .and_then(|i| i.get("doc"))
        .and_then(|d| d.as_s().ok())
        .expect("doc");
    let v: Value = serde_json::from_str(doc).expect("json");
    assert_eq!(v["ready"], true);
    assert!(
        item.item().and_then(|i| i.get("v")).is_some(),
        "items carry their version"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_https_with_rustls() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tmp");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &rcgen::Issuer::new(ca, ca_key))
        .expect("leaf");
    let (cert_path, key_path) = (
        dir.path().join("broker.pem"),
        dir.path().join("broker-key.pem"),
    );
    std::fs::write(&cert_path, leaf.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let b = Broker::start_tls(
        &moto,
        dir.path().join("state").to_str().expect("utf8"),
        &[
            "--tls-cert",
            cert_path.to_str().expect("utf8"),
            "--tls-key",
            key_path.to_str().expect("utf8"),
        ],
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let r = client
        .get(format!("https://localhost:{}/v2/catalog", b.port))
        .header("X-Broker-API-Version", "2.17")
        .bearer_auth(broker::TOKEN)
        .send()
        .await
        .expect("https answers");
    assert_eq!(r.status(), 200);
    // Plain HTTP on the TLS port is refused.
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{}/healthz", b.port))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
}

/// The broker's state table, as the add-on's stack makes it.
async fn create_table(sdk: &aws_config::SdkConfig, name: &str) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("table");
    ddb
}

/// The add-on's deployment: two broker processes on one DynamoDB table. N concurrent
/// provisions of one instance id and N concurrent binds of one binding id, split between
/// them, make one stack, one IAM user and one set of credentials; every answer is one
/// the spec allows.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_table_make_one_of_everything() {
    const N: usize = 12;
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    create_table(&sdk, "kab-race").await;
    let b1 = std::sync::Arc::new(Broker::start(&moto, "dynamodb:kab-race", &[]));
    let b2 = std::sync::Arc::new(Broker::start(&moto, "dynamodb:kab-race", &[]));
    let (sid, pid) = b1.ids("sqs", "standard").await;
    let path = format!("{INSTANCE}/race-1");
    let allowed = [200u16, 201, 202, 409, 422];
    let mut tasks = Vec::new();
    for i in 0..N {
        let b = if i % 2 == 0 { b1.clone() } else { b2.clone() };
        let (path, body) = (path.clone(), provision_body(&sid, &pid));
        tasks.push(tokio::spawn(async move {
            b.call(
                Method::PUT,
                &format!("{path}?accepts_incomplete=true"),
                Some(body),
            )
            .await
        }));
    }
    let mut provisions = std::collections::BTreeMap::<u16, usize>::new();
    let mut operations = std::collections::BTreeSet::new();
    for t in tasks {
        let (s, v) = t.await.expect("task");
        assert!(allowed.contains(&s), "provision: {s} {v}");
        *provisions.entry(s).or_default() += 1;
        if let Some(o) = v["operation"].as_str() {
            operations.insert(o.to_string());
        }
    }
    assert_eq!(operations.len(), 1, "one operation: {operations:?}");
    assert_eq!(b2.wait(&path).await["state"], "succeeded");
    let bpath = format!("{path}/service_bindings/bind-1");
    let mut tasks = Vec::new();
    for i in 0..N {
        let b = if i % 2 == 0 { b1.clone() } else { b2.clone() };
        let (bpath, body) = (bpath.clone(), json!({"service_id": sid, "plan_id": pid}));
        tasks.push(tokio::spawn(async move {
            b.call(Method::PUT, &bpath, Some(body)).await
        }));
    }
    let mut binds = std::collections::BTreeMap::<u16, usize>::new();
    let mut keys = std::collections::BTreeSet::new();
    for t in tasks {
        let (s, v) = t.await.expect("task");
        assert!(allowed.contains(&s), "bind: {s} {v}");
        *binds.entry(s).or_default() += 1;
        if let Some(k) = v["credentials"]["SQS_AWS_ACCESS_KEY_ID"].as_str() {
            keys.insert(k.to_string());
        }
    }
    let (s, got) = b1.call(Method::GET, &bpath, None).await;
    assert_eq!(s, 200, "{got}");
    if let Some(k) = got["credentials"]["SQS_AWS_ACCESS_KEY_ID"].as_str() {
        keys.insert(k.to_string());
    }
    let stacks = broker::stack_names(&sdk).await;
    let users = std::process::Command::new(common::venv_bin("python"))
        .arg("-c")
        .arg("import boto3; print(len(boto3.client('iam', region_name='us-east-1').list_users()['Users']))")
        .envs(moto.env())
        .output()
        .expect("python");
    assert!(users.status.success(), "{}", text(&users.stderr));
    let users: usize = text(&users.stdout).trim().parse().expect("a count");
    eprintln!(
        "race figures: N={N} per phase over 2 replicas; provision answers {provisions:?}; bind answers {binds:?}; stacks {stacks:?}; IAM users {users}; credential sets {}",
        keys.len()
    );
    assert_eq!(
        stacks.len(),
        2,
        "one instance stack, one binding stack: {stacks:?}"
    );
    assert_eq!(users, 1, "one IAM user");
    assert_eq!(keys.len(), 1, "one set of credentials: {keys:?}");
}

/// Before authentication, a trickling client is cut off by the header-read timeout, a
/// silent one by the idle timeout, and connections beyond the limit are closed at once.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_before_authentication() {
    use std::io::Write;
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tmp");
    let b = Broker::start(
        &moto,
        dir.path().join("state").to_str().expect("utf8"),
        &[
            "--header-read-timeout",
            "1",
            "--idle-timeout",
            "2",
            "--max-connections",
            "3",
        ],
    );
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        s
    };
    // Trickle a request head, a byte every 200 ms: closed after about a second.
    let mut s = connect();
    let t = std::time::Instant::now();
    let head = b"GET /v2/catalog HTTP/1.1\r\nHost: broker\r\nX-Broker-API-Version: 2.17\r\n";
    let mut closed = false;
    for byte in head.iter().cycle().take(200) {
        if s.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        if t.elapsed() > std::time::Duration::from_secs(8) {
            break;
        }
    }
    if !closed {
        closed = peer_closed(&mut s);
    }
    let trickle = t.elapsed();
    assert!(closed, "the trickling connection stayed open");
    assert!(
        trickle < std::time::Duration::from_secs(5),
        "closed after {trickle:?}"
    );
    // Fill the connection limit with silent clients: a fourth is closed at once.
    let held: Vec<_> = (0..3).map(|_| connect()).collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut extra = connect();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        peer_closed(&mut extra),
        "a connection beyond the limit was served"
    );
    // The silent ones are closed within the timeouts, and the broker serves again.
    let t = std::time::Instant::now();
    for mut h in held {
        assert!(peer_closed(&mut h), "a silent connection stayed open");
    }
    let silent = t.elapsed();
    assert!(silent < std::time::Duration::from_secs(5), "{silent:?}");
    assert_eq!(common::http_get_status(b.port, "/healthz"), Some(200));
    eprintln!("slow clients: trickle closed after {trickle:?}, silent ones within {silent:?}");
}

/// True when the broker closed `s` (EOF or reset) within 5 s; false when it answered or
/// kept the connection open.
fn peer_closed(s: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Ids that differ only in case are two instances, in two files, on any filesystem.
#[tokio::test(flavor = "multi_thread")]
async fn ids_that_differ_in_case_stay_apart() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let b = Broker::start(&moto, state.to_str().expect("utf8"), &[]);
    let (sid, pid) = b.ids("sqs", "standard").await;
    for id in ["CaseId", "caseid"] {
        let p = format!("{INSTANCE}/{id}");
        let (s, v) = b
            .call(
                Method::PUT,
                &format!("{p}?accepts_incomplete=true"),
                Some(provision_body(&sid, &pid)),
            )
            .await;
        assert_eq!(s, 202, "{id}: {v}");
        assert_eq!(b.wait(&p).await["state"], "succeeded");
    }
    let names: Vec<String> = records(&state).into_iter().map(|(n, _)| n).collect();
    let folded: std::collections::BTreeSet<String> =
        names.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(folded.len(), 2, "two files even case-folded: {names:?}");
    let (s, _) = b
        .delete(&format!("{INSTANCE}/caseid"), &sid, &pid, true)
        .await;
    assert_eq!(s, 202);
    b.wait(&format!("{INSTANCE}/caseid")).await;
    let (s, _) = b
        .call(Method::GET, &format!("{INSTANCE}/CaseId"), None)
        .await;
    assert_eq!(s, 200, "the other instance is untouched");
}
