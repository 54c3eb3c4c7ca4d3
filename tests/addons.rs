//! The add-ons on the emulator: `up` of the add-ons example creates the broker's state
//! table and role and the SSM pointer to the add-ons bundle (the `addons` nested stack);
//! the controllers' add-ons unit (`kube-aws node addons`) runs against it; then the
//! seed's S3 demo is driven exactly as the Service Catalog controller would drive the
//! broker — ServiceInstance and ServiceBinding YAML as in the seeds, class and plan
//! external names resolved through the catalog, provision, poll, bind — with the
//! broker's state in that table, and the Secret data the binding produces carries the
//! keys the seed's app reads.
//!
//! Test-bed adaptations (not product changes): the example's KMS key and hosted zone are
//! replaced by ones made in the emulator; its bucket is created there. For the add-ons
//! unit, see `controller_applies_the_addons`.

#[allow(dead_code)] // this test uses part of the stand-in
#[path = "common/apiserver.rs"]
mod apiserver;
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

    // The controllers' add-ons unit, the real binary, against the emulator.
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

/// Runs the real `kube-aws node addons` — what the controllers' kube-aws-addons timer
/// runs — under a temporary root, against the emulator: SSM GetParameter, the bundle from
/// S3 checked against its sha256, each private part decrypted by KMS under its own file's
/// context (the instance role's credentials from `harness/node_standin.py`, the IMDS
/// stand-in), then server-side apply through kube-rs to the labelled stand-in API server
/// (`common/apiserver.rs`; no Kubernetes API server can run here).
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
    let node_cfg = std::fs::read_dir(out_dir.join("nodeconfig"))
        .expect("exported node configs")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("controller-"))
        })
        .expect("the controller node config");
    let root = dir.join("node");
    std::fs::create_dir_all(root.join("etc/kube-aws")).expect("root");
    std::fs::create_dir_all(root.join("etc/kubernetes")).expect("root");
    std::fs::copy(&node_cfg, root.join("etc/kube-aws/node.json")).expect("node config");
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=amazonaws.com", "-keyout"])
        .arg(root.join("tls.key"))
        .arg("-out")
        .arg(root.join("tls.crt"))
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta = root.join("meta.json");
    std::fs::write(
        &meta,
        json!({"/latest/meta-data/local-hostname": "ip-10-0-1-10.us-west-2.compute.internal",
            "/latest/meta-data/local-ipv4": "10.0.1.10"})
        .to_string(),
    )
    .expect("meta");
    let mut child = std::process::Command::new(common::venv_bin("python"))
        .arg(common::repo().join("tests/harness/node_standin.py"))
        .arg(moto.port.to_string())
        .arg(REGION)
        .arg(root.join("tls.crt"))
        .arg(root.join("tls.key"))
        .arg(&meta)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node stand-in");
    let stdout = child.stdout.take().expect("stdout");
    let _standin = Standin(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("ports");
    let (imds, _) = line.trim().split_once(' ').expect("IMDS_PORT TLS_PORT");

    // The stand-in API server, knowing the kinds the bundle holds.
    let creds = dir.join("credentials");
    let cfg = kube_aws::config::read(&dir.join("cluster.yaml")).expect("config");
    let inputs = kube_aws::cli::inputs::credentials(dir).expect("credentials");
    let bundle = kube_aws::addons::bundle(&cfg, &inputs, "clusters/catalog").expect("bundle");
    let local = bundle
        .filled_secrets(|f| std::fs::read(creds.join(f)))
        .expect("fill");
    let docs: Vec<Value> = bundle
        .first
        .iter()
        .chain(&local)
        .chain(&bundle.manifests)
        .cloned()
        .collect();
    // Its own runtime, kept for the rest of the process (a runtime cannot be dropped
    // inside the test's async context).
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
        std::thread::spawn(|| tokio::runtime::Runtime::new().expect("rt"))
            .join()
            .expect("rt"),
    ));
    let fake = apiserver::FakeApi::start(rt, &creds, &docs);
    common::kubeconfig_for(dir, "node/etc/kubernetes/admin.conf", &fake.url);
    let agent = |n: u32| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-aws"))
            .args(["node", "addons", "--timeout", "60", "--root"])
            .arg(&root)
            .args(["--imds-endpoint", &format!("http://127.0.0.1:{imds}")])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .output()
            .expect("kube-aws node addons");
        assert!(
            out.status.success(),
            "run {n}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let said = agent(1);
    assert!(
        said.contains("add-ons applied: clusters/catalog/addons/bundle-"),
        "{said}"
    );
    // Every object server-side with one field manager, in the bundle's stages.
    let patches: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), docs.len(), "{said}");
    for p in &patches {
        assert_eq!(p.content_type, "application/apply-patch+yaml");
        assert!(
            p.query.contains("fieldManager=kube-aws") && p.query.contains("force=true"),
            "{}",
            p.query
        );
    }
    let first_secret = patches
        .iter()
        .position(|p| p.path.contains("/secrets/"))
        .expect("a Secret");
    let last_crd = patches
        .iter()
        .rposition(|p| p.path.contains("/customresourcedefinitions/"))
        .expect("a CRD");
    let first_deployment = patches
        .iter()
        .position(|p| p.path.contains("/deployments/"))
        .expect("a Deployment");
    assert!(last_crd < first_secret && first_secret < first_deployment);
    // The Secrets hold the local plaintext: the same completion `addons apply` makes.
    for s in &local {
        let path = format!(
            "/api/v1/namespaces/{}/secrets/{}",
            s["metadata"]["namespace"].as_str().expect("ns"),
            s["metadata"]["name"].as_str().expect("name")
        );
        assert_eq!(
            fake.object(&path).expect("stored Secret")["data"],
            s["data"],
            "{path}"
        );
    }
    // No plaintext left behind: only the stamp of what was applied.
    let left: Vec<String> = std::fs::read_dir(root.join("run/kube-aws"))
        .expect("run")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["addons.applied"], "{left:?}");
    // Again: the pointer has not changed, so nothing is applied.
    let n = fake.log().len();
    assert!(agent(2).contains("add-ons up to date"));
    assert_eq!(fake.log().len(), n, "a second run applied again");
    // An hour on, the same objects are applied again (undoing hand edits).
    let out = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(root.join("run/kube-aws/addons.applied"))
        .output()
        .expect("touch");
    assert!(out.status.success());
    assert!(agent(3).contains("add-ons applied"));
    let again = fake
        .log()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert_eq!(again, 2 * docs.len());
    // Add-ons switched off: the stack and its parameter are gone; the unit does nothing.
    python(
        moto,
        "import boto3\nboto3.client('ssm').delete_parameter(Name='/kube-aws/catalog/addons')",
    );
    let said = agent(4);
    assert!(
        said.contains("no add-ons: /kube-aws/catalog/addons is not set"),
        "{said}"
    );
}
