//! `kube-aws addons apply` through kube-rs, against the test bed's stand-in API server
//! (tests/common/apiserver.rs — not a Kubernetes API server; none can be installed
//! here). Proves the client side end to end: the kubeconfig `render credentials`
//! writes (cluster CA, admin client certificate) works over mutual TLS; every object is
//! sent as a server-side apply with field manager `kube-aws` and force; the stages come
//! in order (namespaces and CRDs, the wait for the CRDs, Secrets, the rest); the
//! Secrets carry the local plaintext; a dry run stores nothing; the outcome reported
//! follows the server's resourceVersion.

#[path = "common/apiserver.rs"]
mod apiserver;
mod common;

use base64::Engine;
use common::{run_in, text};
use serde_json::Value;
use std::path::Path;

fn cluster(dir: &Path) {
    std::fs::copy(
        common::repo().join("examples/addons.yaml"),
        dir.join("cluster.yaml"),
    )
    .expect("example");
    let out = run_in(dir, &["render", "credentials", "--generate-ca"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn apply(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "addons",
        "apply",
        "--kubeconfig",
        "fake.yaml",
        "--timeout",
        "20",
    ];
    args.extend_from_slice(extra);
    let out = run_in(dir, &args);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn addons_apply_sends_server_side_applies_in_stages_with_the_local_secrets() {
    let dir = tempfile::tempdir().expect("tmp");
    cluster(dir.path());
    let creds = dir.path().join("credentials");
    // The kinds the stand-in must know: those of the rendered manifests, and Secret.
    let yaml = text(&run_in(dir.path(), &["addons", "render"]).stdout);
    let mut docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("doc"))
        .collect();
    docs.push(
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "x"}}),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let api = apiserver::FakeApi::start(&rt, &creds, &docs);
    common::kubeconfig_for(dir.path(), "fake.yaml", &api.url);

    // A dry run first: every PATCH says dryRun=All, nothing is stored.
    let out = apply(dir.path(), &["--dry-run"]);
    let total = docs.len() - 1 + 3; // the manifests, and three Secrets
    assert!(
        out.contains(&format!(
            "{total} objects: {total} created, 0 configured, 0 unchanged (dry run"
        )),
        "{out}"
    );
    assert_eq!(api.count(), 0, "a dry run stored something");
    let patches: Vec<_> = api
        .log()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    // Objects in a namespace the run would create, and of a kind whose CRD it would
    // create, cannot be admitted by a server before that: they are reported, not sent.
    let admissible = docs[..docs.len() - 1]
        .iter()
        .filter(|d| {
            d["metadata"]["namespace"].is_null()
                && !d["apiVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("servicecatalog.k8s.io/")
        })
        .count();
    assert_eq!(patches.len(), admissible, "{patches:?}");
    assert!(patches.iter().all(|r| r.query.contains("dryRun=All")));
    for line in [
        "Secret aws-sb/aws-service-broker-tls created (its namespace is new: not sent in a dry run)",
        "ClusterServiceBroker aws-service-broker created (its kind is new: not sent in a dry run)",
    ] {
        assert!(out.contains(line), "{out}");
    }
    api.clear_log();

    let out = apply(dir.path(), &[]);
    assert!(
        out.contains(&format!(
            "{total} objects: {total} created, 0 configured, 0 unchanged"
        )),
        "{out}"
    );
    let log = api.log();
    let patches: Vec<_> = log.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), total);
    for p in &patches {
        assert_eq!(p.content_type, "application/apply-patch+yaml", "{p:?}");
        assert!(
            p.query.contains("fieldManager=kube-aws") && p.query.contains("force=true"),
            "{p:?}"
        );
        assert!(!p.query.contains("dryRun"), "{p:?}");
    }
    // Stages: namespaces and CRDs, the wait (CRD list by name), Secrets, the rest.
    let pos = |pred: &dyn Fn(&apiserver::Req) -> bool| log.iter().position(pred).expect("request");
    let last_crd = log
        .iter()
        .rposition(|r| r.method == "PATCH" && r.path.contains("/customresourcedefinitions/"))
        .expect("CRD patch");
    let first_wait = pos(&|r| r.method == "GET" && r.query.contains("fieldSelector=metadata.name"));
    let first_secret = pos(&|r| r.method == "PATCH" && r.path.contains("/secrets/"));
    let last_secret = log
        .iter()
        .rposition(|r| r.method == "PATCH" && r.path.contains("/secrets/"))
        .expect("secret patch");
    let first_deployment = pos(&|r| r.method == "PATCH" && r.path.contains("/deployments/"));
    let broker = pos(&|r| r.method == "PATCH" && r.path.contains("/clusterservicebrokers/"));
    assert!(
        last_crd < first_wait && first_wait < first_secret,
        "{log:#?}"
    );
    assert!(
        last_secret < first_deployment && first_deployment < broker,
        "{log:#?}"
    );

    // The Secrets hold the local plaintext.
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let read = |f: &str| std::fs::read(creds.join(f)).expect("credential");
    let tls = api
        .object("/api/v1/namespaces/aws-sb/secrets/aws-service-broker-tls")
        .expect("broker tls");
    assert_eq!(
        tls["data"]["tls.key"],
        b64(&read("aws-service-broker-key.pem"))
    );
    assert_eq!(tls["data"]["tls.crt"], b64(&read("aws-service-broker.pem")));
    let auth = api
        .object("/api/v1/namespaces/aws-sb/secrets/aws-service-broker-auth")
        .expect("auth");
    let token = String::from_utf8(read("aws-service-broker-token")).expect("token");
    assert_eq!(auth["data"]["token"], b64(token.trim().as_bytes()));
    let webhook = api
        .object("/api/v1/namespaces/catalog/secrets/service-catalog-webhook-cert")
        .expect("webhook");
    assert_eq!(
        webhook["data"]["tls.key"],
        b64(&read("service-catalog-webhook-key.pem"))
    );
    // The output names objects, never their data.
    assert!(!out.contains(token.trim()) && !out.contains("PRIVATE KEY"));

    // Again: nothing differs, so nothing is reported changed.
    let out = apply(dir.path(), &[]);
    assert!(
        out.contains(&format!(
            "{total} objects: 0 created, 0 configured, {total} unchanged"
        )),
        "{out}"
    );

    // One edit in cluster.yaml: one object configured.
    let c = std::fs::read_to_string(dir.path().join("cluster.yaml")).expect("cluster.yaml");
    let edited = c.replace(
        "awsServiceBroker:\n",
        "awsServiceBroker:\n    image: registry.example.com/kube-aws:9.9\n",
    );
    assert_ne!(c, edited);
    std::fs::write(dir.path().join("cluster.yaml"), edited).expect("write");
    let out = apply(dir.path(), &[]);
    assert!(
        out.contains("Deployment aws-sb/aws-service-broker configured")
            && out.contains(&format!("{total} objects: 0 created, 1 configured")),
        "{out}"
    );
    api.stop();
}
