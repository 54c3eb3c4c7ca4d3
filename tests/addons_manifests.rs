//! The add-ons' Kubernetes manifests: every document passes `kubernetes-validate
//! --strict` for Kubernetes 1.30 and 1.34; the CRDs are structural; custom resources
//! (our ClusterServiceBroker, the seeds' ServiceInstance and ServiceBinding) validate
//! against the schemas in our own CRDs with a real JSON Schema validator; no Secret or
//! private key is in them.

mod common;

use common::{run_in, text, venv_bin};
use std::path::Path;

fn cluster(dir: &Path, edit: impl Fn(&mut serde_yaml_ng::Value)) {
    let example =
        std::fs::read_to_string(common::repo().join("examples/addons.yaml")).expect("example");
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&example).expect("yaml");
    edit(&mut v);
    std::fs::write(
        dir.join("cluster.yaml"),
        serde_yaml_ng::to_string(&v).expect("yaml"),
    )
    .expect("write");
    let out = run_in(dir, &["render", "credentials", "--generate-ca"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn render(dir: &Path) -> String {
    let out = run_in(dir, &["addons", "render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    std::fs::write(dir.join("addons.yaml"), &yaml).expect("write");
    yaml
}

#[test]
fn manifests_are_valid_for_1_30_and_1_34() {
    type Edit = Box<dyn Fn(&mut serde_yaml_ng::Value)>;
    let variants: Vec<(&str, Edit)> = vec![
        ("catalog and broker (bearer)", Box::new(|_| {})),
        (
            "basic auth, other namespace",
            Box::new(|v| {
                v["addons"]["awsServiceBroker"]["auth"] = "basic".into();
                v["addons"]["awsServiceBroker"]["namespace"] = "brokers".into();
            }),
        ),
        (
            "catalog only",
            Box::new(|v| v["addons"]["awsServiceBroker"]["enabled"] = false.into()),
        ),
    ];
    let mut total = 0;
    for (name, edit) in variants {
        let dir = tempfile::tempdir().expect("tmp");
        cluster(dir.path(), edit);
        let yaml = render(dir.path());
        let docs = yaml.matches("\n---\n").count() + 1;
        assert!(
            !yaml.contains("kind: Secret\n"),
            "{name}: a Secret in the manifests"
        );
        assert!(
            !yaml.contains("PRIVATE KEY"),
            "{name}: a private key in the manifests"
        );
        assert!(!yaml.contains("v1beta1\nkind: CustomResourceDefinition"));
        assert!(!yaml.contains("admissionregistration.k8s.io/v1beta1"));
        for k in ["1.30.0", "1.34.0"] {
            let out = std::process::Command::new(venv_bin("kubernetes-validate"))
                .args(["--strict", "-k", k, "--quiet"])
                .arg(dir.path().join("addons.yaml"))
                .output()
                .expect("kubernetes-validate");
            let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert!(out.status.success(), "{name} on {k}:\n{report}");
            for line in report.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    line.contains("Couldn't find schema for kind ClusterServiceBroker"),
                    "{name} on {k}: {line}"
                );
            }
        }
        let out = std::process::Command::new(venv_bin("python"))
            .arg(common::repo().join("tests/harness/check_crds.py"))
            .arg(dir.path().join("addons.yaml"))
            .arg(common::repo().join("tests/fixtures/seed-s3-demo.yaml"))
            .arg("--expect-invalid")
            .arg(common::repo().join("tests/fixtures/invalid-service-binding.yaml"))
            .output()
            .expect("check_crds");
        let report = text(&out.stdout);
        assert!(
            out.status.success(),
            "{name}:\n{report}{}",
            text(&out.stderr)
        );
        assert!(report.contains("8 CRD schemas, structural"), "{report}");
        assert!(report.contains("rejected as expected"), "{report}");
        println!("{name}: {docs} documents valid for 1.30 and 1.34");
        total += docs;
    }
    println!("{total} documents validated, each for two Kubernetes versions");
}

#[test]
fn manifests_are_deterministic_and_need_an_addon() {
    let dir = tempfile::tempdir().expect("tmp");
    cluster(dir.path(), |_| {});
    assert_eq!(render(dir.path()), render(dir.path()));
    let yaml = render(dir.path());
    assert!(yaml.contains("role_arn = arn:aws:iam::123456789012:role/kube-aws-catalog-awsbroker"));
    assert!(
        yaml.contains("--state\n") && yaml.contains("dynamodb:kube-aws-catalog-awsbroker-state")
    );
    let dir = tempfile::tempdir().expect("tmp");
    cluster(dir.path(), |v| {
        v["addons"]["awsServiceBroker"]["enabled"] = false.into();
        v["addons"]["serviceCatalog"]["enabled"] = false.into();
    });
    let out = run_in(dir.path(), &["addons", "render"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("addons.serviceCatalog.enabled"));
}

#[test]
fn render_credentials_issues_the_addon_certificates_and_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    cluster(dir.path(), |v| {
        v["addons"]["awsServiceBroker"]["namespace"] = "brokers".into()
    });
    let c = dir.path().join("credentials");
    for (stem, san) in [
        (
            "aws-service-broker",
            "DNS:aws-service-broker.brokers.svc, DNS:aws-service-broker.brokers.svc.cluster.local",
        ),
        (
            "service-catalog-webhook",
            "DNS:service-catalog-webhook.catalog.svc, DNS:service-catalog-webhook.catalog.svc.cluster.local",
        ),
    ] {
        let cert = c.join(format!("{stem}.pem"));
        let out = std::process::Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile"])
            .arg(c.join("ca.pem"))
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{stem}: {}", text(&out.stderr));
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            text(&out.stdout).contains(san),
            "{stem}: {}",
            text(&out.stdout)
        );
        let key = c.join(format!("{stem}-key.pem"));
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{stem} key mode");
    }
    let token_path = c.join("aws-service-broker-token");
    let token = std::fs::read_to_string(&token_path).expect("token");
    assert_eq!(token.trim().len(), 64);
    assert!(token.trim().chars().all(|ch| ch.is_ascii_hexdigit()));
    let mode = std::fs::metadata(&token_path)
        .expect("token")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // A re-run keeps them.
    let before = std::fs::read(c.join("aws-service-broker.pem")).expect("cert");
    let out = run_in(dir.path(), &["render", "credentials"]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(c.join("aws-service-broker.pem")).expect("cert"),
        before
    );
    assert_eq!(std::fs::read_to_string(&token_path).expect("token"), token);
}
