//! Benchmark: the quickstart flow on the local emulator, after the build. Prints the
//! wall time of each command and the AWS calls it made (counted by the test proxy).
//! Needs the test bed (scripts/testbed-setup.sh).
//!
//!   cargo bench --bench flow

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/proxy.rs"]
mod proxy;

use std::time::Instant;

#[tokio::main]
async fn main() {
    let moto = common::Moto::start();
    let sdk = moto.sdk_config().await;
    kube_aws::aws::s3(&sdk)
        .create_bucket()
        .bucket("kube-aws-bench")
        .send()
        .await
        .expect("bucket");
    let key = kube_aws::aws::kms(&sdk)
        .create_key()
        .send()
        .await
        .expect("key");
    let arn = key
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_string();
    let proxy = proxy::Proxy::start(moto.port, proxy::Faults::default());
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("utf8").to_string();
    let init: Vec<&str> = vec![
        "init",
        "--cluster-name",
        "demo",
        "--region",
        "us-east-1",
        "--availability-zone",
        "us-east-1a,us-east-1b",
        "--external-dns-name",
        "k8s.demo.example.com",
        "--no-record-set",
        "--kms-key-arn",
        &arn,
        "--s3-uri",
        "s3://kube-aws-bench/clusters",
    ];
    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("init", init.clone()),
        (
            "render credentials",
            vec!["render", "credentials", "--generate-ca"],
        ),
        ("render stack", vec!["render", "stack"]),
        ("validate", vec!["validate"]),
        ("up", vec!["up"]),
        ("status", vec!["status"]),
        ("up (unchanged)", vec!["up"]),
        ("diff (no change)", vec!["diff"]),
        ("diff --output json", vec!["diff", "--output", "json"]),
        ("destroy", vec!["destroy", "--force"]),
    ];
    println!("{:<22} {:>9} {:>6}  calls", "command", "ms", "calls");
    let all = Instant::now();
    let mut flow_ms = 0.0;
    for (name, args) in steps {
        let mut cmd = common::kube_aws();
        cmd.arg("--dir").arg(&d).args(&args);
        for (k, v) in moto.env() {
            cmd.env(
                k,
                if k == "AWS_ENDPOINT_URL" {
                    proxy.endpoint()
                } else {
                    v
                },
            );
        }
        let t = Instant::now();
        let out = cmd.output().expect("run");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (calls, _) = proxy.take_counts();
        if !name.starts_with("up (") && !name.starts_with("diff") && name != "destroy" {
            flow_ms += ms;
        }
        let detail: Vec<String> = calls.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{name:<22} {ms:>9.1} {:>6}  {}",
            calls.values().sum::<usize>(),
            detail.join(" ")
        );
    }
    println!(
        "quickstart flow (init → status): {flow_ms:.0} ms; everything above: {:.0} ms",
        all.elapsed().as_secs_f64() * 1000.0
    );
}
