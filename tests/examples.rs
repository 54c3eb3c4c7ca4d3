//! Every sample in examples/ loads and validates, through the library and the CLI, and
//! validates against the JSON Schema with a real validator (Python jsonschema).

mod common;

use std::path::PathBuf;
use std::process::Command;

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::repo().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_examples_cover_the_documented_cases() {
    let names: Vec<String> = examples()
        .iter()
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    for want in [
        "minimal",
        "ha-multi-az",
        "existing-vpc",
        "spot-mixed",
        "addons",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "examples/{want}.yaml missing"
        );
    }
    let ha = kube_aws::config::read(&common::repo().join("examples/ha-multi-az.yaml")).expect("ha");
    assert_eq!(ha.etcd.count, 3);
    assert_eq!(ha.controller.count, 2);
    let azs: std::collections::BTreeSet<_> =
        ha.subnets.iter().map(|s| &s.availability_zone).collect();
    assert_eq!(azs.len(), 3);
    let vpc =
        kube_aws::config::read(&common::repo().join("examples/existing-vpc.yaml")).expect("vpc");
    assert!(vpc.vpc.id.is_some());
    let spot =
        kube_aws::config::read(&common::repo().join("examples/spot-mixed.yaml")).expect("spot");
    assert!(
        spot.worker
            .node_pools
            .iter()
            .any(|p| p.mixed_instances.is_some())
    );
    let addons =
        kube_aws::config::read(&common::repo().join("examples/addons.yaml")).expect("addons");
    assert!(addons.addons.aws_service_broker.enabled && addons.addons.service_catalog.enabled);
}

#[test]
fn every_example_validates() {
    for ex in examples() {
        kube_aws::config::read(&ex).unwrap_or_else(|e| panic!("{e}"));
        let out = common::run_in(&common::repo(), &["validate", ex.to_str().expect("utf8")]);
        assert!(
            out.status.success(),
            "{}: {}",
            ex.display(),
            common::text(&out.stderr)
        );
    }
}

#[test]
fn examples_and_init_output_validate_against_the_json_schema() {
    let tmp = tempfile::tempdir().expect("tmp");
    let schema = tmp.path().join("schema.json");
    let out = common::run_in(tmp.path(), &["schema"]);
    std::fs::write(&schema, &out.stdout).expect("write schema");
    let init = common::run_in(
        tmp.path(),
        &[
            "init",
            "--cluster-name",
            "demo",
            "--region",
            "us-west-2",
            "--availability-zone",
            "us-west-2a",
            "--external-dns-name",
            "k8s.example.com",
            "--no-record-set",
            "--kms-key-arn",
            "arn:aws:kms:us-west-2:123456789012:key/abc",
            "--s3-uri",
            "s3://my-bucket/p",
        ],
    );
    assert!(init.status.success(), "{}", common::text(&init.stderr));
    let mut files = examples();
    files.push(tmp.path().join("cluster.yaml"));
    let out = Command::new(common::venv_bin("python"))
        .arg(common::repo().join("tests/harness/check_schema.py"))
        .arg(&schema)
        .args(&files)
        .output()
        .expect("python");
    let stdout = common::text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        common::text(&out.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("valid against Draft202012Validator"))
            .count(),
        files.len(),
        "{stdout}"
    );
}
