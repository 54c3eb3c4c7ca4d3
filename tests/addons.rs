//! The add-ons on the emulator: `up` of the add-ons example creates the broker's state
//! table and role and the SSM pointer to the add-ons bundle (the `addons` nested stack);
//! the controllers' kube-aws-addons script, as rendered, runs against it; then the
//! seed's S3 demo is driven exactly as the Service Catalog controller would drive the
//! broker — ServiceInstance and ServiceBinding YAML as in the seeds, class and plan
//! external names resolved through the catalog, provision, poll, bind — with the
//! broker's state in that table, and the Secret data the binding produces carries the
//! keys the seed's app reads.
//!
//! Test-bed adaptations (not product changes): the example's KMS key and hosted zone are
//! replaced by ones made in the emulator; its bucket is created there. For the script,
//! see `controller_applies_the_addons`.

#[path = "common/broker.rs"]
mod broker;
mod common;

use base64::Engine;
use common::{Moto, text};
use reqwest::Method;
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

const REGION: &str = "us-west-2";

/// The seed's manifests (000/001), as users apply them.
const SEED: &str = "\
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ServiceInstance
metadata:
  name: s3-bucket
  namespace: s3-demo
spec:
  clusterServiceClassExternalName: s3
  clusterServicePlanExternalName: production
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ServiceBinding
metadata:
  name: s3-binding
  namespace: s3-demo
spec:
  instanceRef:
    name: s3-bucket
  secretName: s3-secret
";

fn python(moto: &Moto, code: &str) -> String {
    let out = std::process::Command::new(common::venv_bin("python"))
        .arg("-c")
        .arg(code)
        .envs(moto.env())
        .env("AWS_DEFAULT_REGION", REGION)
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_s3_demo_through_the_broker_with_the_table_up_created() {
    let moto = Moto::start();
    let setup = python(
        &moto,
        r#"import boto3
boto3.client('s3').create_bucket(Bucket='kube-aws-assets', CreateBucketConfiguration={'LocationConstraint': 'us-west-2'})
k = boto3.client('kms').create_key()['KeyMetadata']['Arn']
r = boto3.client('route53')
for i in range(2000):
    z = r.create_hosted_zone(Name='example.com', CallerReference=str(i))['HostedZone']['Id'].split('/')[-1]
    if z.startswith('Z'):
        break
print(k, z)"#,
    );
    let (key, zone) = setup.split_once(' ').expect("key and zone");
    let example =
        std::fs::read_to_string(common::repo().join("examples/addons.yaml")).expect("example");
    let mut v: Yaml = serde_yaml_ng::from_str(&example).expect("yaml");
    v["kmsKeyArn"] = Yaml::from(key);
    v["hostedZoneId"] = Yaml::from(zone);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("cluster.yaml"),
        serde_yaml_ng::to_string(&v).expect("yaml"),
    )
    .expect("write");
    let run = |args: &[&str]| {
        let out = common::kube_aws()
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .envs(moto.env())
            .env_remove("KUBE_AWS_DIR")
            .output()
            .expect("kube-aws");
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    run(&["render", "credentials", "--generate-ca"]);
    run(&["render", "stack"]);
    run(&["up"]);
    let status = run(&["status", "--output", "json"]);
    assert!(status.contains("AddOns"), "{status}");

    // The controllers' kube-aws-addons script, as rendered, against the emulator.
    controller_applies_the_addons(&moto, dir.path(), &run);

    // `diff` names the add-on objects a change makes the controllers apply, with their
    // YAML diff: a new broker image is one Deployment, and only root and addons change.
    let yaml = std::fs::read_to_string(dir.path().join("cluster.yaml")).expect("read");
    let edited = yaml.replace(
        "  awsServiceBroker:\n",
        "  awsServiceBroker:\n    image: registry.example.com/kube-aws:9.9\n",
    );
    assert_ne!(yaml, edited);
    std::fs::write(dir.path().join("cluster.yaml"), &edited).expect("write");
    let diff = |args: &[&str]| {
        let out = common::kube_aws()
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .envs(moto.env())
            .env("NO_COLOR", "1")
            .output()
            .expect("kube-aws");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let plan: Value = serde_json::from_str(&diff(&["diff", "--output", "json"])).expect("plan");
    let names = |key: &str, field: &str| -> Vec<String> {
        plan[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x[field].as_str().expect(field).to_string())
            .collect()
    };
    let mut stacks = names("stacks", "name");
    stacks.sort();
    assert_eq!(stacks, ["addons", "root"], "{plan:#}");
    assert_eq!(
        names("addons", "object"),
        ["Deployment aws-sb/aws-service-broker"],
        "{plan:#}"
    );
    assert!(plan["rolls"].as_array().expect("rolls").is_empty());
    let text_plan = diff(&["diff"]);
    println!("{text_plan}");
    assert!(
        text_plan.contains("# add-on object Deployment aws-sb/aws-service-broker (Modify)")
            && text_plan.contains("+        image: registry.example.com/kube-aws:9.9")
            && text_plan.contains("      ~ Deployment aws-sb/aws-service-broker"),
        "{text_plan}"
    );
    std::fs::write(dir.path().join("cluster.yaml"), &yaml).expect("write");

    // What `up` made: the table and the role.
    let table = "kube-aws-catalog-awsbroker-state";
    let role = python(
        &moto,
        "import boto3\n\
t = boto3.client('dynamodb').describe_table(TableName='kube-aws-catalog-awsbroker-state')['Table']\n\
assert t['KeySchema'] == [{'AttributeName': 'id', 'KeyType': 'HASH'}], t\n\
r = boto3.client('iam').get_role(RoleName='kube-aws-catalog-awsbroker')['Role']\n\
print(r['Arn'])",
    );
    assert!(role.ends_with(":role/kube-aws-catalog-awsbroker"), "{role}");

    // The broker with its state in that table, as the add-on runs it.
    let b = broker::Broker::start(
        &moto,
        &format!("dynamodb:{table}"),
        &[
            "--broker-id",
            "awsbroker",
            "--region",
            REGION,
            "--services",
            "s3,sqs,sns,dynamodb,rdspostgresql",
        ],
    );
    let docs: Vec<Yaml> = serde_yaml_ng::Deserializer::from_str(SEED)
        .map(|d| serde::Deserialize::deserialize(d).expect("seed document"))
        .collect();
    let (instance, binding) = (&docs[0], &docs[1]);
    // The catalog controller: ClusterServiceClass/Plan external names → ids.
    let (s, catalog) = b.call(Method::GET, "/v2/catalog", None).await;
    assert_eq!(s, 200);
    let class = instance["spec"]["clusterServiceClassExternalName"]
        .as_str()
        .expect("class");
    let plan = instance["spec"]["clusterServicePlanExternalName"]
        .as_str()
        .expect("plan");
    let svc = catalog["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == class)
        .expect("class in catalog");
    let pl = svc["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["name"] == plan)
        .expect("plan in catalog");
    let (sid, pid) = (svc["id"].clone(), pl["id"].clone());
    // The controller uses the object's UID as the instance id; a fixed one here.
    let iid = "fea82c42-0886-11e9-b9da-d64a8ddc537f";
    let ns = instance["metadata"]["namespace"].as_str().expect("ns");
    let path = format!("/v2/service_instances/{iid}");
    let (s, body) = b
        .call(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(json!({"service_id": sid, "plan_id": pid,
                "organization_guid": "cluster", "space_guid": ns,
                "context": {"platform": "kubernetes", "namespace": ns, "clusterid": "catalog",
                    "instance_name": instance["metadata"]["name"]}})),
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(b.wait(&path).await["state"], "succeeded");
    let bid = "6a0f3c2e-1b5d-4c8e-9f70-6b1d2e3f4a5b";
    assert_eq!(
        binding["spec"]["instanceRef"]["name"],
        instance["metadata"]["name"]
    );
    let (s, bound) = b
        .call(
            Method::PUT,
            &format!("{path}/service_bindings/{bid}"),
            Some(json!({"service_id": sid, "plan_id": pid,
                "bind_resource": {"app_guid": ns},
                "context": {"platform": "kubernetes", "namespace": ns}})),
        )
        .await;
    assert_eq!(s, 201, "{bound}");
    // The Secret the catalog controller writes: each credential base64-encoded.
    let secret: serde_json::Map<String, Value> = bound["credentials"]
        .as_object()
        .expect("credentials")
        .iter()
        .map(|(k, v)| {
            let s = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            (
                k.clone(),
                json!(base64::engine::general_purpose::STANDARD.encode(s)),
            )
        })
        .collect();
    let manifest = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": binding["spec"]["secretName"].as_str(), "namespace": ns},
        "data": secret});
    for k in [
        "BUCKET_NAME",
        "BUCKET_ARN",
        "LOGGING_BUCKET_NAME",
        "S3_AWS_ACCESS_KEY_ID",
        "S3_AWS_SECRET_ACCESS_KEY",
        "S3_REGION",
    ] {
        assert!(manifest["data"][k].is_string(), "{k} missing: {manifest}");
    }
    let region = base64::engine::general_purpose::STANDARD
        .decode(manifest["data"]["S3_REGION"].as_str().unwrap_or_default())
        .expect("b64");
    assert_eq!(region, REGION.as_bytes());
    // The broker's state is in the table `up` created.
    let n = python(
        &moto,
        "import boto3\n\
items = boto3.client('dynamodb').scan(TableName='kube-aws-catalog-awsbroker-state')['Items']\n\
print(len(items), sorted(i['id']['S'].split('/')[0] for i in items))",
    );
    assert_eq!(n, "2 ['binding', 'instance']");
}

/// Kills the node stand-in when dropped.
struct Standin(std::process::Child);

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const KUBECTL_STANDIN: &str = r#"#!/bin/bash
# TEST-BED STAND-IN for kubectl: records each call, keeps each file applied.
set -euo pipefail
[[ $KUBECONFIG == */admin.conf ]]
echo "$*" >> "$KUBECTL_LOG"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ ${args[i]} == -f ]]; then
    cp "${args[i+1]}" "$KUBECTL_FILES/$(wc -l < "$KUBECTL_LOG")-$(basename "${args[i+1]}")"
  fi
done
"#;

/// Runs the controllers' `/opt/kube-aws/bin/addons` exactly as rendered into their
/// cloud-config, with its lib.sh and addons.py, against the emulator. Test-bed
/// adaptations, not product changes: its absolute paths are moved under a temporary
/// directory; curl reaches the instance metadata and AWS's HTTPS names through
/// `harness/node_standin.py` (IMDS stand-in, TLS proxy to moto) by a .curlrc; and
/// `kubectl` is a stand-in that records its calls and keeps the files it applies (no
/// Kubernetes API server can run here). The script's own calls — SSM GetParameter, the
/// bundle from S3 with its sha256, KMS Decrypt under the cluster's context, addons.py —
/// are real requests to the emulator.
fn controller_applies_the_addons(
    moto: &Moto,
    dir: &std::path::Path,
    run: &dyn Fn(&[&str]) -> String,
) {
    let out_dir = dir.join("out");
    run(&[
        "render",
        "stack",
        "--export",
        &out_dir.display().to_string(),
    ]);
    let userdata = std::fs::read_dir(out_dir.join("userdata"))
        .expect("exported userdata")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("controller-"))
        })
        .expect("the controller cloud-config");
    let cc: Yaml = serde_yaml_ng::from_str(&std::fs::read_to_string(&userdata).expect("read"))
        .expect("cloud-config");
    let node = dir.join("node");
    for d in ["opt/bin", "bin", "run", "applied"] {
        std::fs::create_dir_all(node.join(d)).expect("dir");
    }
    let relocate = |text: &str| {
        text.replace("/opt/kube-aws/", &format!("{}/opt/", node.display()))
            .replace("/run/kube-aws", &format!("{}/run", node.display()))
            .replace(
                "/etc/kubernetes/admin.conf",
                &format!("{}/admin.conf", node.display()),
            )
    };
    let mut found = 0;
    for f in cc["write_files"].as_sequence().expect("write_files") {
        let dest = match f["path"].as_str().expect("path") {
            "/opt/kube-aws/lib.sh" => "opt/lib.sh",
            "/opt/kube-aws/addons.py" => "opt/addons.py",
            "/opt/kube-aws/bin/addons" => "opt/bin/addons",
            _ => continue,
        };
        let content = relocate(f["content"].as_str().expect("content"));
        std::fs::write(node.join(dest), content).expect("write");
        found += 1;
    }
    assert_eq!(found, 3, "lib.sh, addons.py and the addons script");
    std::fs::write(node.join("bin/kubectl"), KUBECTL_STANDIN).expect("kubectl");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            node.join("bin/kubectl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
    }
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=amazonaws.com", "-keyout"])
        .arg(node.join("tls.key"))
        .arg("-out")
        .arg(node.join("tls.crt"))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut child = std::process::Command::new(common::venv_bin("python"))
        .arg(common::repo().join("tests/harness/node_standin.py"))
        .arg(moto.port.to_string())
        .arg(REGION)
        .arg(node.join("tls.crt"))
        .arg(node.join("tls.key"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node stand-in");
    let stdout = child.stdout.take().expect("stdout");
    let _standin = Standin(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("ports");
    let (imds, tls) = line.trim().split_once(' ').expect("IMDS_PORT TLS_PORT");
    std::fs::write(
        node.join(".curlrc"),
        format!(
            "connect-to = \"169.254.169.254:80:127.0.0.1:{imds}\"\nconnect-to = \"::127.0.0.1:{tls}\"\ninsecure\n"
        ),
    )
    .expect("curlrc");
    std::fs::write(node.join("admin.conf"), "").expect("admin.conf");
    let script = |n: u32| {
        let path = format!(
            "{}:{}",
            node.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("bash")
            .arg(node.join("opt/bin/addons"))
            .env("PATH", path)
            .env("CURL_HOME", &node)
            .env("KUBECTL_LOG", node.join("kubectl.log"))
            .env("KUBECTL_FILES", node.join("applied"))
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "run {n}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let said = script(1);
    assert!(
        said.contains("add-ons applied: clusters/catalog/addons/bundle-"),
        "{said}"
    );
    let log = std::fs::read_to_string(node.join("kubectl.log")).expect("kubectl log");
    let calls: Vec<&str> = log.lines().collect();
    let apply = "apply --server-side --field-manager=kube-aws --force-conflicts -f ";
    assert_eq!(calls.len(), 5, "{log}");
    assert_eq!(calls[0], "get --raw /readyz");
    assert!(
        calls[1].starts_with(apply) && calls[1].ends_with("/first.json"),
        "{log}"
    );
    assert!(
        calls[2].starts_with("wait --for condition=established --timeout=300s "),
        "{log}"
    );
    assert_eq!(
        calls[2].matches(" customresourcedefinition/").count(),
        8,
        "{log}"
    );
    assert!(
        calls[3].starts_with(apply) && calls[3].ends_with("/secrets.json"),
        "{log}"
    );
    assert!(
        calls[4].starts_with(apply) && calls[4].ends_with("/manifests.json"),
        "{log}"
    );
    // The Secrets it applied hold the local plaintext, completed as `addons apply` does.
    let applied: Value = serde_json::from_slice(
        &std::fs::read(node.join("applied/4-secrets.json")).expect("secrets applied"),
    )
    .expect("json");
    let creds = dir.join("credentials");
    let cfg = kube_aws::config::read(&dir.join("cluster.yaml")).expect("config");
    let inputs = kube_aws::cli::inputs::credentials(dir).expect("credentials");
    let bundle = kube_aws::addons::bundle(&cfg, &inputs, "clusters/catalog").expect("bundle");
    let local = bundle
        .filled_secrets(|f| std::fs::read(creds.join(f)))
        .expect("fill");
    assert_eq!(applied["items"], Value::from(local));
    // No plaintext left behind: only the stamp of what was applied.
    let left: Vec<String> = std::fs::read_dir(node.join("run"))
        .expect("run")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["addons.applied"], "{left:?}");
    // Again: the pointer has not changed, so nothing is applied.
    script(2);
    assert_eq!(
        std::fs::read_to_string(node.join("kubectl.log")).expect("log"),
        log,
        "a second run applied again"
    );
    // An hour on, the same objects are applied again (undoing hand edits).
    let out = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(node.join("run/addons.applied"))
        .output()
        .expect("touch");
    assert!(out.status.success());
    script(3);
    let again = std::fs::read_to_string(node.join("kubectl.log")).expect("log");
    assert_eq!(again.lines().count(), 10, "{again}");
    // Add-ons switched off: the stack and its parameter are gone; the unit does nothing.
    python(
        moto,
        "import boto3\nboto3.client('ssm').delete_parameter(Name='/kube-aws/catalog/addons')",
    );
    let said = script(4);
    assert!(
        said.contains("no add-ons: /kube-aws/catalog/addons is not set"),
        "{said}"
    );
}
