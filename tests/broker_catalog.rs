//! The broker's catalog: every service template passes cfn-lint with no finding, the
//! catalog command lists them, and a broken user template is named in the error.

mod common;

use common::{text, venv_bin};

#[test]
fn catalog_templates_pass_cfn_lint() {
    let dir = common::repo().join("broker-catalog");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("catalog dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    let out = std::process::Command::new(venv_bin("cfn-lint"))
        .args(&files)
        .output()
        .expect("cfn-lint");
    assert!(
        out.status.success(),
        "cfn-lint findings:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // No Lambda-backed custom resource anywhere.
    for f in &files {
        let t = std::fs::read_to_string(f).expect("read");
        assert!(
            !t.contains("AWS::Lambda") && !t.contains("Custom::"),
            "{}",
            f.display()
        );
    }
}

#[test]
fn catalog_command_and_user_templates() {
    let out = common::kube_aws()
        .args(["broker", "catalog"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for n in [
        "s3",
        "sqs",
        "sns",
        "dynamodb",
        "kms",
        "kinesis",
        "rdspostgresql",
        "rdsmysql",
        "rdsmariadb",
        "elasticache",
        "route53",
        "athena",
        "polly",
        "rekognition",
        "translate",
        "lex",
        "emr",
        "redshift",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "Resources: {}\nMetadata:\n  KubeAwsBroker:\n    name: x\n",
    )
    .expect("write");
    let out = common::kube_aws()
        .args(["broker", "catalog", "--catalog"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("broken.yaml") && err.contains("KubeAwsBroker"),
        "{err}"
    );
}
