//! The add-ons on the emulator: `up` of the add-ons example creates the broker's state
//! table and role and the SSM pointer to the add-ons bundle (the `addons` nested stack);
//! a controller's first steps (pointer, bundle, ciphertexts, Secrets) run against it; then the seed's S3 demo is driven exactly
//! as the Service Catalog controller would drive the broker — ServiceInstance and
//! ServiceBinding YAML as in the seeds, class and plan external names resolved through
//! the catalog, provision, poll, bind — with the broker's state in that table, and the
//! Secret data the binding produces carries the keys the seed's app reads.
//!
//! Test-bed adaptations (not product changes): the example's KMS key and hosted zone are
//! replaced by ones made in the emulator; its bucket is created there.

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

    // What a controller's kube-aws-addons unit does first, with boto3 standing in for
    // lib.sh's SigV4 curl calls (the emulator answers on loopback, not on AWS's names):
    // the pointer from SSM, the bundle from S3 under its sha256, each ciphertext it
    // names decrypted under the cluster's context, then addons.py completes the Secrets.
    let work = dir.path().join("controller");
    std::fs::create_dir_all(work.join("plain")).expect("work");
    let report = python(
        &moto,
        &format!(
            r#"import boto3, hashlib, json, subprocess, sys
work = {work:?}
value = boto3.client('ssm').get_parameter(Name='/kube-aws/catalog/addons')['Parameter']['Value']
key, sha = value.split()
body = boto3.client('s3').get_object(Bucket='kube-aws-assets', Key=key)['Body'].read()
assert hashlib.sha256(body).hexdigest() == sha, 'sha256 of the bundle'
assert b'PRIVATE KEY' not in body
open(work + '/bundle.json', 'wb').write(body)
py = {py:?}
subprocess.run([sys.executable, py, 'split', work + '/bundle.json', work], check=True)
kms = boto3.client('kms')
n = 0
for line in open(work + '/fills.list'):
    file, enc = line.split()
    blob = boto3.client('s3').get_object(Bucket='kube-aws-assets', Key=enc)['Body'].read()
    plain = kms.decrypt(CiphertextBlob=blob, EncryptionContext={{'cluster': 'catalog', 'file': file}})['Plaintext']
    open(work + '/plain/' + file, 'wb').write(plain)
    n += 1
out = subprocess.run([sys.executable, py, 'secrets', work + '/bundle.json', work], check=True, capture_output=True).stdout
print(n, len(json.loads(out)['items']), key)"#,
            work = work.display().to_string(),
            py = common::repo()
                .join("userdata/addons.py")
                .display()
                .to_string(),
        ),
    );
    let creds = dir.path().join("credentials");
    for f in [
        "service-catalog-webhook-key.pem",
        "aws-service-broker-key.pem",
        "aws-service-broker-token",
    ] {
        assert_eq!(
            std::fs::read(work.join("plain").join(f)).expect("decrypted"),
            std::fs::read(creds.join(f)).expect("local"),
            "{f}: what a controller decrypts is the local plaintext"
        );
    }
    assert!(
        report.starts_with("3 3 clusters/catalog/addons/bundle-"),
        "{report}"
    );

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
