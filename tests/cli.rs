//! The CLI as users run it: init, validate, schema, completion, version, help.

mod common;

use common::{run_in, text};
use std::process::Command;

const INIT: &[&str] = &[
    "init",
    "--cluster-name",
    "demo",
    "--region",
    "us-west-2",
    "--availability-zone",
    "us-west-2a,us-west-2b",
    "--hosted-zone-id",
    "Z1D633PJN98FT9",
    "--external-dns-name",
    "k8s.example.com",
    "--key-name",
    "ops",
    "--kms-key-arn",
    "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "--s3-uri",
    "s3://my-bucket/clusters",
];

#[test]
fn init_then_validate_then_init_again_refuses() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run_in(dir.path(), INIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = std::fs::read_to_string(dir.path().join("cluster.yaml")).expect("cluster.yaml");
    assert!(yaml.starts_with("# yaml-language-server: $schema=./cluster.schema.json\n"));
    assert!(dir.path().join("cluster.schema.json").exists());

    let out = run_in(dir.path(), &["validate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid"));

    let out = run_in(dir.path(), INIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    let after = std::fs::read_to_string(dir.path().join("cluster.yaml")).expect("cluster.yaml");
    assert_eq!(
        yaml, after,
        "a refused init must leave cluster.yaml unchanged"
    );
}

/// Every key in the written file is preceded by a comment, directly or as part of
/// a documented block: no undocumented section.
#[test]
fn init_documents_every_section() {
    let dir = tempfile::tempdir().expect("tmp");
    assert!(run_in(dir.path(), INIT).status.success());
    let yaml = std::fs::read_to_string(dir.path().join("cluster.yaml")).expect("cluster.yaml");
    let comments = yaml
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .count();
    let keys = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains(':'))
        .count();
    assert!(
        comments * 2 >= keys,
        "{comments} comment lines for {keys} keys"
    );
    for top in [
        "clusterName:",
        "s3URI:",
        "region:",
        "kmsKeyArn:",
        "apiEndpoints:",
        "vpc:",
        "subnets:",
        "etcd:",
        "controller:",
        "worker:",
        "tls:",
        "cloudformation:",
        "addons:",
    ] {
        let i = yaml
            .lines()
            .position(|l| l.starts_with(top))
            .unwrap_or_else(|| panic!("{top} missing"));
        let prev = yaml.lines().nth(i - 1).unwrap_or_default();
        assert!(prev.starts_with('#'), "{top} has no comment above it");
    }
}

#[test]
fn init_missing_required_flags_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run_in(dir.path(), &["init", "--cluster-name", "demo"]);
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    let err = text(&out.stderr);
    assert!(
        err.contains("--region") && err.contains("--kms-key-arn"),
        "{err}"
    );
    // Neither --hosted-zone-id nor --no-record-set.
    let args: Vec<&str> = INIT
        .iter()
        .copied()
        .filter(|a| *a != "--hosted-zone-id" && *a != "Z1D633PJN98FT9")
        .collect();
    let out = run_in(dir.path(), &args);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--hosted-zone-id"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("cluster.yaml").exists());
}

#[test]
fn init_with_bad_values_names_the_flag_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut args = INIT.to_vec();
    let i = args
        .iter()
        .position(|a| *a == "--kms-key-arn")
        .expect("flag")
        + 1;
    args[i] = "not-an-arn";
    let j = args
        .iter()
        .position(|a| *a == "--availability-zone")
        .expect("flag")
        + 1;
    args[j] = "eu-west-1a";
    let out = run_in(dir.path(), &args);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("--kms-key-arn") && err.contains("--availability-zone"),
        "{err}"
    );
    assert!(!dir.path().join("cluster.yaml").exists());
}

#[test]
fn init_without_record_set_needs_no_hosted_zone() {
    let dir = tempfile::tempdir().expect("tmp");
    let args: Vec<&str> = INIT
        .iter()
        .copied()
        .filter(|a| *a != "--hosted-zone-id" && *a != "Z1D633PJN98FT9")
        .chain(["--no-record-set"])
        .collect();
    let out = run_in(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cfg = kube_aws::config::read(&dir.path().join("cluster.yaml")).expect("valid");
    assert!(!cfg.api_endpoints[0].load_balancer.record_set_managed);
}

/// The .gitignore that init writes keeps every plaintext secret out of git, checked
/// with git itself.
#[test]
fn gitignore_keeps_plaintext_secrets_out_of_git() {
    let dir = tempfile::tempdir().expect("tmp");
    assert!(run_in(dir.path(), INIT).status.success());
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("git")
    };
    assert!(git(&["init", "-q"]).status.success());
    let ignored = [
        "credentials/ca-key.pem",
        "credentials/apiserver-key.pem",
        "credentials/service-account-key.pem",
        "credentials/kubelet-bootstrap-token",
        "credentials/encryption-config.yaml",
        "credentials/backup-20261122T000000/ca-key.pem",
        "kubeconfig",
    ];
    let kept = [
        "cluster.yaml",
        "credentials/ca.pem",
        "credentials/apiserver.pem",
        "credentials/ca-key.pem.enc",
        "credentials/ca-key.pem.fingerprint",
        "credentials/kubelet-bootstrap-token.enc",
    ];
    for p in ignored {
        assert!(
            git(&["check-ignore", "-q", p]).status.success(),
            "{p} is not ignored"
        );
    }
    for p in kept {
        assert!(
            !git(&["check-ignore", "-q", p]).status.success(),
            "{p} is ignored but may be committed"
        );
    }
}

#[test]
fn init_appends_to_an_existing_gitignore() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join(".gitignore"), "*.log").expect("write");
    assert!(run_in(dir.path(), INIT).status.success());
    let gi = std::fs::read_to_string(dir.path().join(".gitignore")).expect("read");
    assert!(gi.starts_with("*.log\n"));
    assert!(gi.contains("credentials/*-key.pem"));
}

#[test]
fn validate_without_cluster_yaml_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run_in(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cluster.yaml") && err.contains("kube-aws init"),
        "{err}"
    );
}

#[test]
fn validate_verbose_prints_the_effective_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run_in(
        dir.path(),
        &[
            "--verbose",
            "validate",
            &common::repo()
                .join("examples/minimal.yaml")
                .display()
                .to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("kubernetesVersion: 1.34.2"), "{stdout}");
}

#[test]
fn dir_flag_and_env_select_the_cluster_directory() {
    let dir = tempfile::tempdir().expect("tmp");
    let sub = dir.path().join("clusters/demo");
    let mut args = vec!["--dir", sub.to_str().expect("utf8")];
    args.extend_from_slice(INIT);
    assert!(run_in(dir.path(), &args).status.success());
    let out = common::kube_aws()
        .arg("validate")
        .env("KUBE_AWS_DIR", &sub)
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn schema_is_json_with_the_config_fields() {
    let out = run_in(std::path::Path::new("."), &["schema"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["title"], "Config");
    assert!(v["properties"]["clusterName"].is_object());
    assert_eq!(v["additionalProperties"], false);
}

#[test]
fn committed_schema_matches_the_types() {
    let out = run_in(std::path::Path::new("."), &["schema"]);
    let committed = std::fs::read_to_string(common::repo().join("schema/cluster.schema.json"))
        .expect("schema file");
    assert_eq!(
        text(&out.stdout),
        committed,
        "schema/cluster.schema.json is stale: run `cargo run -q -- schema > schema/cluster.schema.json`"
    );
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_in(std::path::Path::new("."), &["completion", shell]);
        assert!(out.status.success(), "{shell}");
        let s = text(&out.stdout);
        assert!(s.contains("validate") && s.contains("init"), "{shell}: {s}");
    }
    let out = run_in(std::path::Path::new("."), &["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_and_help() {
    let out = run_in(std::path::Path::new("."), &["version"]);
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    for cmd in [
        &["--help"][..],
        &["init", "--help"],
        &["validate", "--help"],
        &["schema", "--help"],
        &["completion", "--help"],
    ] {
        let out = run_in(std::path::Path::new("."), cmd);
        assert!(out.status.success());
        assert!(
            text(&out.stdout).contains("kube-aws "),
            "{cmd:?} has no example"
        );
    }
}

/// A Graviton pool needs an arm64 node agent: `validate` names the pool and the flag;
/// with `--node-binary-arm64` it passes, and `node plan` prints that pool's steps.
#[test]
fn validate_names_a_pool_whose_architecture_has_no_node_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    assert!(run_in(dir.path(), INIT).status.success());
    let yaml = dir.path().join("cluster.yaml");
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&yaml).expect("read")).expect("yaml");
    v["worker"]["nodePools"][0]["instanceType"] = "m7g.large".into();
    std::fs::write(&yaml, serde_yaml_ng::to_string(&v).expect("yaml")).expect("write");
    assert!(
        run_in(dir.path(), &["render", "credentials", "--generate-ca"])
            .status
            .success()
    );
    let pool = v["worker"]["nodePools"][0]["name"]
        .as_str()
        .expect("pool")
        .to_string();
    let out = run_in(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("no kube-aws node binary for arm64")
            && err.contains(&format!("pool {pool}"))
            && err.contains("--node-binary-arm64"),
        "{err}"
    );
    let arm = dir.path().join("kube-aws-arm64");
    std::fs::write(&arm, "stand-in arm64 build").expect("write");
    let with = |args: &[&str]| {
        let mut all = vec!["--node-binary-arm64", arm.to_str().expect("path")];
        all.extend_from_slice(args);
        run_in(dir.path(), &all)
    };
    assert!(with(&["validate"]).status.success());
    let out = with(&["node", "plan", "--role", "worker", "--pool", &pool]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("kubeadm join --config"),
        "{}",
        text(&out.stdout)
    );
    let out = with(&["node", "plan", "--role", "worker", "--pool", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("the pools of cluster.yaml are: {pool}")),
        "{}",
        text(&out.stderr)
    );
}
