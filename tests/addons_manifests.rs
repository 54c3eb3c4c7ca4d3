//! The add-ons' Kubernetes manifests: every document passes `kubernetes-validate
//! --strict` for Kubernetes 1.30 and 1.34; the CRDs are structural; custom resources
//! (our ClusterServiceBroker, the seeds' ServiceInstance and ServiceBinding) validate
//! against the schemas in our own CRDs with a real JSON Schema validator; no Secret or
//! private key is in them.

mod common;

use base64::Engine;
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

/// `kubernetes-validate --strict` of `file` for 1.30 and 1.34; the only line allowed is
/// the one saying the ClusterServiceBroker custom resource has no built-in schema.
fn kubernetes_validate(name: &str, file: &Path) {
    for k in ["1.30.0", "1.34.0"] {
        let out = std::process::Command::new(venv_bin("kubernetes-validate"))
            .args(["--strict", "-k", k, "--quiet"])
            .arg(file)
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
        kubernetes_validate(name, &dir.path().join("addons.yaml"));
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

/// The bundle `render stack` uploads for the controllers: its documents in their three
/// stages, with the Secrets completed by `Bundle::filled_secrets`, the one code path both
/// `kube-aws node addons` (from what KMS decrypted) and `kube-aws addons apply` (from
/// credentials/) use. Every document passes `kubernetes-validate --strict` for 1.30 and
/// 1.34; the bundle itself holds no key and no token, only references to ciphertexts.
#[test]
fn the_bundle_the_controllers_apply_is_valid_and_holds_no_secret() {
    for (name, auth) in [("bearer", "bearer"), ("basic", "basic")] {
        let dir = tempfile::tempdir().expect("tmp");
        cluster(dir.path(), |v| {
            v["addons"]["awsServiceBroker"]["auth"] = auth.into()
        });
        let out = run_in(dir.path(), &["render", "stack", "--export", "out"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let bundles: Vec<_> = std::fs::read_dir(dir.path().join("out/addons"))
            .expect("out/addons")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(bundles.len(), 1, "{bundles:?}");
        let raw = std::fs::read(&bundles[0]).expect("bundle");
        let text_bundle = String::from_utf8(raw.clone()).expect("utf-8");
        assert!(
            !text_bundle.contains("PRIVATE KEY"),
            "{name}: a key in the bundle"
        );
        let creds = dir.path().join("credentials");
        let token = std::fs::read_to_string(creds.join("aws-service-broker-token")).expect("t");
        assert!(
            !text_bundle.contains(token.trim()),
            "{name}: the token in the bundle"
        );
        let bundle: kube_aws::addons::Bundle = serde_json::from_slice(&raw).expect("bundle");
        assert_eq!(bundle.crd_names().len(), 8);
        let fills: Vec<(String, String)> = bundle
            .secrets
            .iter()
            .flat_map(|s| s.fill.values())
            .map(|f| (f.file.clone(), f.key.clone()))
            .collect();
        let files: Vec<&str> = fills.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            files,
            [
                "service-catalog-webhook-key.pem",
                "aws-service-broker-key.pem",
                "aws-service-broker-token"
            ]
        );
        for (_, key) in &fills {
            assert!(
                key.starts_with("clusters/catalog/credentials/") && key.ends_with(".enc"),
                "{key}"
            );
        }
        let filled = bundle
            .filled_secrets(|f| std::fs::read(creds.join(f)))
            .expect("fill");
        let auth_secret = &filled[2];
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        match auth {
            "bearer" => assert_eq!(auth_secret["data"]["token"], b64(token.trim())),
            _ => {
                assert_eq!(auth_secret["data"]["password"], b64(token.trim()));
                assert_eq!(auth_secret["data"]["username"], b64("kube-aws"));
            }
        }
        assert_eq!(
            filled[0]["data"]["tls.key"],
            b64(
                &std::fs::read_to_string(creds.join("service-catalog-webhook-key.pem"))
                    .expect("key")
            )
        );
        // Everything a controller applies, in its stages.
        let mut all = String::new();
        for d in bundle.first.iter().chain(&filled).chain(&bundle.manifests) {
            all.push_str("---\n");
            all.push_str(&serde_yaml_ng::to_string(d).expect("yaml"));
        }
        let work = dir.path().join("all.yaml");
        std::fs::write(&work, &all).expect("write");
        kubernetes_validate(name, &work);
        println!(
            "{name}: {} + {} Secrets + {} documents",
            bundle.first.len(),
            filled.len(),
            bundle.manifests.len()
        );
    }
}

/// `addons apply` fails with the file, the server and the fix, never a panic.
#[test]
fn addons_apply_explains_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tmp");
    cluster(dir.path(), |_| {});
    let out = run_in(
        dir.path(),
        &["addons", "apply", "--kubeconfig", "nope.yaml"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("nope.yaml") && err.contains("fix:"), "{err}");

    // A kubeconfig whose server nothing listens on (port 1 on loopback).
    common::kubeconfig_for(dir.path(), "closed.yaml", "https://127.0.0.1:1");
    let out = run_in(
        dir.path(),
        &[
            "addons",
            "apply",
            "--kubeconfig",
            "closed.yaml",
            "--timeout",
            "5",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach the Kubernetes API at https://127.0.0.1:1")
            && err.contains("fix:"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    cluster(dir.path(), |v| {
        v["addons"]["awsServiceBroker"]["enabled"] = false.into();
        v["addons"]["serviceCatalog"]["enabled"] = false.into();
    });
    let out = run_in(dir.path(), &["addons", "apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no add-on is enabled"));
}
