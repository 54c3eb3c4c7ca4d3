//! Benchmark: rendering the HA example and a 200-pool cluster (library), and the peak
//! RSS of `kube-aws render stack` on the 200-pool cluster (GNU time).
//!
//!   cargo bench --bench render

use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn main() {
    let ha_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ha-multi-az.yaml"
    ))
    .expect("example");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("cluster.yaml"), &ha_text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_kube-aws"))
        .args(["render", "credentials", "--generate-ca"])
        .current_dir(dir.path())
        .output()
        .expect("credentials");
    assert!(out.status.success());
    let templates = kube_aws::render::templates::Templates::builtin();

    // The HA example, with real credentials read from disk as the CLI does.
    let ha = kube_aws::config::parse(&ha_text, "ha").expect("valid");
    let creds = kube_aws::cli::inputs::credentials(dir.path()).expect("credentials");
    let model = kube_aws::model::Model::derive(&ha);
    let bins = vec![kube_aws::render::NodeBinary {
        arch: "amd64".into(),
        sha256: "0".repeat(64),
        size: 0,
        version: "bench".into(),
        path: std::path::PathBuf::new(),
    }];
    let runs: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            kube_aws::render::render(&ha, &model, &templates, &creds, &bins).expect("render");
            t.elapsed()
        })
        .collect();
    println!(
        "render, HA example (3 etcd, 2 controllers, 2 pools): median {:.1} ms over 50 runs",
        median(runs)
    );

    // 200 pools.
    let mut big = ha.clone();
    let pool = big.worker.node_pools[0].clone();
    big.worker.node_pools = (0..200)
        .map(|i| {
            let mut p = pool.clone();
            p.name = format!("pool-{i:03}");
            p
        })
        .collect();
    let model = kube_aws::model::Model::derive(&big);
    let runs: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            kube_aws::render::render(&big, &model, &templates, &creds, &bins).expect("render");
            t.elapsed()
        })
        .collect();
    println!(
        "render, 200 node pools: median {:.1} ms over 10 runs",
        median(runs)
    );

    // Peak RSS of the CLI on the 200-pool cluster.
    let yaml = serde_yaml_ng::to_string(&big).expect("yaml");
    std::fs::write(dir.path().join("cluster.yaml"), yaml).expect("write");
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_kube-aws"))
        .args(["render", "stack"])
        .current_dir(dir.path())
        .output()
        .expect("GNU time (Debian package time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rss = stderr
        .lines()
        .find(|l| l.contains("Maximum resident set size"))
        .unwrap_or("?");
    let wall = stderr
        .lines()
        .find(|l| l.contains("Elapsed (wall clock)"))
        .unwrap_or("?");
    println!(
        "kube-aws render stack, 200 node pools: {} ; {}",
        rss.trim(),
        wall.trim()
    );
}
