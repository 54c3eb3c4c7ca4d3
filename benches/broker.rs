//! Load benchmark of the service broker on loopback against the emulator: 200 concurrent
//! catalog requests, then 50 concurrent provisions (SQS, distinct instances) polled to
//! completion. Prints p50/p99 latencies and checks that no operation was lost or
//! duplicated (one stack and one state record per instance). Bounded: 2 minutes.
//!
//!   cargo bench --bench broker

#[path = "../tests/common/broker.rs"]
mod broker;
#[path = "../tests/common/mod.rs"]
mod common;

use reqwest::Method;
use std::time::{Duration, Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main]
async fn main() {
    let moto = common::Moto::start();
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let b = std::sync::Arc::new(broker::Broker::start(
        &moto,
        state.to_str().expect("utf8"),
        &[],
    ));
    let deadline = Instant::now() + Duration::from_secs(120);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let b = b.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let (s, c) = b.call(Method::GET, "/v2/catalog", None).await;
            assert_eq!(s, 200);
            assert!(c["services"].as_array().is_some_and(|a| a.len() >= 18));
            t.elapsed().as_secs_f64() * 1000.0
        });
    }
    let t = Instant::now();
    let mut cat: Vec<f64> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        cat.push(r.expect("task"));
    }
    let cat_wall = t.elapsed().as_secs_f64() * 1000.0;

    let (sid, pid) = b.ids("sqs", "standard").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let b = b.clone();
        let (sid, pid) = (sid.clone(), pid.clone());
        tasks.spawn(async move {
            let path = format!("/v2/service_instances/load-{i}");
            let t = Instant::now();
            let (s, body) = b
                .call(
                    Method::PUT,
                    &format!("{path}?accepts_incomplete=true"),
                    Some(broker::provision_body(&sid, &pid)),
                )
                .await;
            assert_eq!(s, 202, "{body}");
            let accepted = t.elapsed().as_secs_f64() * 1000.0;
            let done = b.wait(&path).await;
            assert_eq!(done["state"], "succeeded", "{done}");
            (accepted, t.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let t = Instant::now();
    let (mut acc, mut done): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (a, d) = r.expect("task");
        acc.push(a);
        done.push(d);
        assert!(Instant::now() < deadline, "over the 2-minute bound");
    }
    let prov_wall = t.elapsed().as_secs_f64() * 1000.0;

    let cfn = kube_aws::aws::cloudformation(&moto.sdk_config().await);
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let out = cfn
            .describe_stacks()
            .set_next_token(token)
            .send()
            .await
            .expect("stacks");
        names.extend(
            out.stacks()
                .iter()
                .filter_map(|s| s.stack_name().map(str::to_string)),
        );
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut lost = 0;
    let mut dup = 0;
    for i in 0..50 {
        let n = names
            .iter()
            .filter(|x| **x == format!("kab-sqs-i-load-{i}"))
            .count();
        if n == 0 {
            lost += 1;
        }
        if n > 1 {
            dup += 1;
        }
    }
    let records = broker::snapshot(&state).len();
    println!(
        "catalog: 200 concurrent, wall {cat_wall:.0} ms, p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut cat, 0.5),
        pct(&mut cat, 0.99)
    );
    println!(
        "provision: 50 concurrent, 202 in p50 {:.1} ms / p99 {:.1} ms; succeeded in p50 {:.0} ms / p99 {:.0} ms; wall {prov_wall:.0} ms",
        pct(&mut acc, 0.5),
        pct(&mut acc, 0.99),
        pct(&mut done, 0.5),
        pct(&mut done, 0.99)
    );
    println!(
        "stacks: {} kab-sqs-i-load-*, lost {lost}, duplicated {dup}; state records {records}",
        names
            .iter()
            .filter(|n| n.starts_with("kab-sqs-i-load-"))
            .count()
    );
    assert_eq!((lost, dup, records), (0, 0, 50));
}
