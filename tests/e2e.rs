//! The whole flow on the local emulator: init → render credentials → render stack →
//! validate → up → status → destroy, driven through the CLI as users run it, with a
//! counting (and, in one test, fault-injecting) proxy between the CLI and moto.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use aws_sdk_kms::primitives::Blob;
use common::{Moto, REGION, text};
use proxy::{Faults, Proxy};
use std::collections::BTreeMap;
use std::process::Output;

const BUCKET: &str = "kube-aws-e2e";

struct Bed {
    moto: Moto,
    proxy: Proxy,
    dir: tempfile::TempDir,
    key_arn: String,
}

async fn bed(faults: Faults) -> Bed {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    kube_aws::aws::s3(&sdk)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket");
    let key = kube_aws::aws::kms(&sdk)
        .create_key()
        .send()
        .await
        .expect("CreateKey");
    let key_arn = key
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_string();
    let proxy = Proxy::start(moto.port, faults);
    let dir = tempfile::tempdir().expect("tmp");
    Bed {
        moto,
        proxy,
        dir,
        key_arn,
    }
}

impl Bed {
    /// Runs kube-aws in the cluster directory, through the proxy.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = common::kube_aws();
        cmd.arg("--dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("KUBE_AWS_DIR");
        for (k, v) in self.moto.env() {
            cmd.env(
                k,
                if k == "AWS_ENDPOINT_URL" {
                    self.proxy.endpoint()
                } else {
                    v
                },
            );
        }
        cmd.output().expect("kube-aws runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kube-aws {args:?} failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("panicked"));
        text(&out.stdout)
    }

    fn create_cluster(&self) {
        self.ok(&[
            "init",
            "--cluster-name",
            "demo",
            "--region",
            REGION,
            "--availability-zone",
            "us-east-1a,us-east-1b",
            "--external-dns-name",
            "k8s.demo.example.com",
            "--no-record-set",
            "--kms-key-arn",
            &self.key_arn,
            "--s3-uri",
            &format!("s3://{BUCKET}/clusters"),
        ]);
        self.ok(&["render", "credentials", "--generate-ca"]);
        self.ok(&["render", "stack"]);
        self.ok(&["validate"]);
    }
}

async fn stacks(sdk: &aws_config::SdkConfig) -> Vec<(String, String)> {
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let out = cfn.describe_stacks().send().await.expect("DescribeStacks");
    out.stacks()
        .iter()
        .map(|s| {
            (
                s.stack_name().unwrap_or_default().to_string(),
                s.stack_status()
                    .map(|x| x.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

async fn objects(sdk: &aws_config::SdkConfig) -> BTreeMap<String, Vec<u8>> {
    let s3 = kube_aws::aws::s3(sdk);
    let mut out = BTreeMap::new();
    for key in kube_aws::aws::s3::list_keys(&s3, BUCKET, "clusters/demo")
        .await
        .expect("list")
    {
        let o = s3
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .expect("GetObject");
        out.insert(
            key,
            o.body.collect().await.expect("body").into_bytes().to_vec(),
        );
    }
    out
}

fn total(counts: &BTreeMap<String, usize>) -> usize {
    counts.values().sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_flow_on_the_emulator() {
    let bed = bed(Faults::default()).await;
    let sdk = bed.moto.sdk_config().await;
    bed.create_cluster();
    bed.proxy.take_counts();
    let t = std::time::Instant::now();
    let up = bed.ok(&["up"]);
    let up_time = t.elapsed();
    let (first, _) = bed.proxy.take_counts();
    assert!(up.contains("demo is CREATE_COMPLETE"), "{up}");
    // The image was resolved once and pinned in the cluster directory.
    let pin = std::fs::read_to_string(bed.dir.path().join("ami.yaml")).expect("ami.yaml");
    assert!(
        pin.contains("imageId: ami-") && pin.contains("source: /aws/service/canonical/"),
        "{pin}"
    );

    // The root stack and every nested stack exist.
    let all = stacks(&sdk).await;
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        all.iter().filter(|(n, _)| n == "demo").count(),
        1,
        "{names:?}"
    );
    for nested in ["Network", "Etcd", "ControlPlane", "NodePoolGeneral"] {
        let hits: Vec<_> = all
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("demo-{nested}-")))
            .collect();
        assert_eq!(hits.len(), 1, "{nested}: {names:?}");
        assert_eq!(hits[0].1, "CREATE_COMPLETE");
    }

    // The objects exist: every rendered asset and every secret's ciphertext.
    let objs = objects(&sdk).await;
    let stacks_n = objs.keys().filter(|k| k.contains("/stacks/")).count();
    let configs = objs.keys().filter(|k| k.contains("/userdata/")).count();
    let encs: Vec<&String> = objs.keys().filter(|k| k.ends_with(".enc")).collect();
    assert_eq!(
        (stacks_n, configs, encs.len()),
        (5, 3, 17),
        "{:?}",
        objs.keys()
    );
    // No object holds a plaintext private key.
    for (k, body) in &objs {
        assert!(
            !String::from_utf8_lossy(body).contains("PRIVATE KEY-----"),
            "{k} holds a plaintext key"
        );
    }
    // Every .enc decrypts through KMS to the local plaintext.
    let kms = kube_aws::aws::kms(&sdk);
    let creds = bed.dir.path().join("credentials");
    for k in &encs {
        let file = k
            .rsplit('/')
            .next()
            .expect("name")
            .rsplit_once('-')
            .expect("hash")
            .0
            .to_string();
        let dec = kms
            .decrypt()
            .ciphertext_blob(Blob::new(objs[*k].clone()))
            .encryption_context("cluster", "demo")
            .encryption_context("file", &file)
            .send()
            .await
            .unwrap_or_else(|e| panic!("decrypt {k}: {e:?}"));
        assert_eq!(
            dec.plaintext().expect("plaintext").as_ref(),
            std::fs::read(creds.join(&file)).expect("local").as_slice(),
            "{k}"
        );
    }

    // A second `up` with no change: up to date, no upload, no stack call, ≤ 10 calls.
    let again = bed.ok(&["up"]);
    let (second, _) = bed.proxy.take_counts();
    assert!(again.contains("up to date"), "{again}");
    let puts = second.get("s3:PUTObject").copied().unwrap_or(0);
    let stack_writes: usize = second
        .iter()
        .filter(|(k, _)| k.ends_with(":CreateStack") || k.ends_with(":UpdateStack"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!((puts, stack_writes), (0, 0), "{second:?}");
    assert!(total(&second) <= 10, "{} calls: {second:?}", total(&second));

    // A changed cluster.yaml: `up` refuses to touch the running cluster and changes nothing.
    let yaml_path = bed.dir.path().join("cluster.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).expect("cluster.yaml");
    std::fs::write(
        &yaml_path,
        yaml.replace("instanceType: t3.large", "instanceType: m6i.large"),
    )
    .expect("edit");
    let refused = bed.run(&["up"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("differs from cluster.yaml"),
        "{}",
        text(&refused.stderr)
    );
    let (calls, _) = bed.proxy.take_counts();
    assert_eq!(calls.get("s3:PUTObject"), None, "{calls:?}");
    assert!(
        !calls
            .keys()
            .any(|k| k.ends_with("Stack") && !k.contains("Describe")),
        "{calls:?}"
    );
    std::fs::write(&yaml_path, yaml).expect("restore");

    let status = bed.ok(&["status", "--output", "json"]);
    let (status_calls, _) = bed.proxy.take_counts();
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(v.as_array().expect("array").len(), 5);
    assert!(v[0]["outputs"].to_string().contains("ApiEndpoint"));
    let text_status = bed.ok(&["status"]);
    assert!(
        text_status.contains("└─ ") && text_status.contains("VpcId"),
        "{text_status}"
    );
    bed.proxy.take_counts();

    let validate_remote = bed.ok(&["validate", "--remote"]);
    assert_eq!(
        validate_remote
            .matches("valid (CloudFormation ValidateTemplate)")
            .count(),
        5,
        "{validate_remote}"
    );
    bed.proxy.take_counts();

    // destroy deletes only what the cluster wrote (its manifest), and refuses while
    // another cluster lives inside its prefix: `inner` at s3://BUCKET/clusters/demo.
    let listed = objects(&sdk).await;
    let manifest: serde_json::Value = serde_json::from_slice(
        listed
            .get("clusters/demo/kube-aws-manifest.json")
            .expect("up writes the manifest"),
    )
    .expect("manifest json");
    let recorded = manifest["keys"].as_array().expect("keys").len();
    assert_eq!(
        recorded + 1,
        listed.len(),
        "every uploaded key is in the manifest"
    );
    let s3 = kube_aws::aws::s3(&sdk);
    for (key, body) in [
        (
            "clusters/demo/inner/kube-aws-manifest.json",
            r#"{"cluster":"inner","keys":["stacks/root-x.json"]}"#,
        ),
        ("clusters/demo/inner/stacks/root-x.json", "{}"),
        (
            "clusters/demo/etcd-snapshots/20261203T000000Z.db",
            "snapshot",
        ),
    ] {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .expect("PutObject");
    }
    let refused = bed.run(&["destroy", "--force"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("also holds another cluster's objects")
            && text(&refused.stderr).contains("clusters/demo/inner/kube-aws-manifest.json"),
        "{}",
        text(&refused.stderr)
    );
    let (calls, _) = bed.proxy.take_counts();
    assert!(
        !calls.keys().any(|k| k.contains("Delete")),
        "a refused destroy deletes nothing: {calls:?}"
    );

    let gone = bed.ok(&["destroy", "--force", "--shared-prefix"]);
    let (destroy_calls, _) = bed.proxy.take_counts();
    assert!(gone.contains("1 etcd snapshots kept"), "{gone}");
    let left: Vec<String> = objects(&sdk).await.into_keys().collect();
    // The kept snapshot gets a marker: a cluster created again here does not restore
    // it by itself (node::etcd::latest_restorable).
    let marker = left
        .iter()
        .find(|k| {
            k.starts_with("clusters/demo/etcd-snapshots/destroyed-") && k.ends_with(".marker")
        })
        .unwrap_or_else(|| panic!("no destroy marker in {left:?}"))
        .clone();
    assert_eq!(
        left,
        [
            "clusters/demo/etcd-snapshots/20261203T000000Z.db".to_string(),
            marker,
            "clusters/demo/inner/kube-aws-manifest.json".to_string(),
            "clusters/demo/inner/stacks/root-x.json".to_string()
        ],
        "only the other cluster's objects and this cluster's snapshot stay"
    );
    let purged = bed.ok(&["destroy", "--force", "--shared-prefix", "--purge-snapshots"]);
    assert!(purged.contains("There is no stack demo"), "{purged}");
    let left: Vec<String> = objects(&sdk).await.into_keys().collect();
    assert_eq!(left.len(), 2, "{left:?}");
    for key in left {
        s3.delete_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .expect("DeleteObject");
    }
    bed.proxy.take_counts();
    assert!(
        gone.contains("Stack demo deleted")
            && gone.contains("No load balancers or security groups"),
        "{gone}"
    );
    assert!(
        stacks(&sdk)
            .await
            .iter()
            .all(|(n, s)| !n.starts_with("demo") || s == "DELETE_COMPLETE"),
        "{:?}",
        stacks(&sdk).await
    );
    assert!(objects(&sdk).await.is_empty(), "objects left after destroy");

    eprintln!(
        "up: {:?}, {} calls {first:?}\nsecond up: {} calls {second:?}\nstatus: {} calls\ndestroy: {} calls",
        up_time,
        total(&first),
        total(&second),
        total(&status_calls),
        total(&destroy_calls)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn up_survives_throttling_and_server_errors() {
    let bed = bed(Faults {
        throttle: 0.30,
        server_error: 0.05,
    })
    .await;
    let sdk = bed.moto.sdk_config().await;
    bed.create_cluster();
    let up = bed.ok(&["up"]);
    let (forwarded, injected) = bed.proxy.take_counts();
    assert!(up.contains("demo is CREATE_COMPLETE"), "{up}");
    assert!(injected > 0, "no fault was injected: {forwarded:?}");
    let all = stacks(&sdk).await;
    assert_eq!(
        all.iter().filter(|(n, _)| n == "demo").count(),
        1,
        "{all:?}"
    );
    assert_eq!(
        all.iter().filter(|(n, _)| n.starts_with("demo-")).count(),
        4,
        "duplicated nested stacks: {all:?}"
    );
    eprintln!(
        "faults injected: {injected}; calls forwarded: {}",
        total(&forwarded)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_emulator_is_a_clear_error() {
    let mut bed = bed(Faults::default()).await;
    bed.create_cluster();
    // The emulator goes away in the middle of the workflow.
    bed.moto.stop();
    let t = std::time::Instant::now();
    let out = bed.run(&["up"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("cannot reach AWS"),
        "{err}"
    );
    eprintln!(
        "gave up after {:?}: {}",
        t.elapsed(),
        err.lines().next().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_the_emulator_rejects_gives_the_root_cause() {
    let bed = bed(Faults::default()).await;
    bed.create_cluster();
    // A user edit that real CloudFormation rejects too: a TCP listener on an application LB.
    let cp = bed.dir.path().join("stack-templates/control-plane.yaml");
    let t = std::fs::read_to_string(&cp)
        .expect("template")
        .replace("      Type: network\n", "      Type: application\n");
    std::fs::write(&cp, t).expect("edit");
    let out = bed.run(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Listener protocol 'TCP'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
