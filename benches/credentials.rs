//! Benchmark: `render credentials --generate-ca` for the HA example, ECDSA P-256 and
//! RSA-2048. Prints min / median / max over fresh directories, both in-process (the
//! library call) and end to end (the release binary as a user runs it).
//!
//!   cargo bench --bench credentials

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 15;

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:7.1} ms   median {:7.1} ms   max {:7.1} ms",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    )
}

fn example(alg: &str) -> String {
    let ha = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ha-multi-az.yaml"
    ))
    .expect("example");
    ha.replace("keyAlgorithm: ecdsa-p256", &format!("keyAlgorithm: {alg}"))
}

fn main() {
    println!(
        "render credentials --generate-ca, HA example (3 CAs, 10 leaves, SA key, token, encryption config, kubeconfig), {RUNS} runs each"
    );
    for alg in ["ecdsa-p256", "rsa-2048"] {
        let text = example(alg);
        let cfg = kube_aws::config::parse(&text, "ha").expect("valid");
        let model = kube_aws::model::Model::derive(&cfg);
        let opts = kube_aws::pki::Options {
            ca: kube_aws::pki::CaSource::Generate,
            force: false,
            rotate: false,
        };
        let mut lib = Vec::new();
        let mut cli = Vec::new();
        for _ in 0..RUNS {
            let dir = tempfile::tempdir().expect("tmp");
            let t = Instant::now();
            kube_aws::pki::render(
                &model,
                &cfg.tls,
                dir.path(),
                &opts,
                time::OffsetDateTime::now_utc(),
            )
            .expect("render");
            lib.push(t.elapsed());

            let dir = tempfile::tempdir().expect("tmp");
            std::fs::write(dir.path().join("cluster.yaml"), &text).expect("write");
            cli.push(run_cli(dir.path()));
        }
        println!("  {alg:<10} library: {}", stats(lib));
        println!("  {alg:<10} CLI:     {}", stats(cli));
    }
}

fn run_cli(dir: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kube-aws"))
        .args(["render", "credentials", "--generate-ca"])
        .current_dir(dir)
        .output()
        .expect("run");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}
