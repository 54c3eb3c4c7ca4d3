//! The six services the seeds list beyond the first twelve, each provisioned, bound,
//! unbound and deprovisioned by `kube-aws broker serve` on the emulator. Where moto
//! implements the service's API (Polly, Rekognition, EMR), a real client (boto3) calls
//! it with the bound credentials; moto has no Translate and no Lex V2 runtime, so those
//! two stop at the credentials (tests/README.md lists the gap). Redshift binds database
//! credentials: the password is the generated secret's, and no stack output holds it.

#[path = "common/broker.rs"]
mod broker;
mod common;

use broker::{Broker, provision_body};
use common::{Moto, text};
use reqwest::Method;
use serde_json::{Map, Value, json};

const INSTANCE: &str = "/v2/service_instances";

/// Provision (waiting for the stack), bind (synchronously), run `check` on the
/// credentials, unbind and deprovision; every stack of the instance is gone at the end.
async fn flow(
    moto: &Moto,
    b: &Broker,
    service: &str,
    plan: &str,
    params: Value,
    check: impl AsyncFnOnce(&Map<String, Value>),
) {
    let (sid, pid) = b.ids(service, plan).await;
    let path = format!("{INSTANCE}/{service}-1");
    let mut body = provision_body(&sid, &pid);
    body["parameters"] = params;
    let (s, v) = b
        .call(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(body),
        )
        .await;
    assert_eq!(s, 202, "{service}: {v}");
    let done = b.wait(&path).await;
    assert_eq!(done["state"], "succeeded", "{service}: {done}");
    let bpath = format!("{path}/service_bindings/{service}-b");
    let (s, bound) = b
        .call(
            Method::PUT,
            &bpath,
            Some(json!({"service_id": sid, "plan_id": pid})),
        )
        .await;
    assert_eq!(s, 201, "{service}: {bound}");
    let creds = bound["credentials"]
        .as_object()
        .expect("credentials")
        .clone();
    for k in creds.keys() {
        assert!(
            k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{service}: credential key {k} is not SCREAMING_SNAKE"
        );
    }
    check(&creds).await;
    let (s, _) = b.delete(&bpath, &sid, &pid, false).await;
    assert_eq!(s, 200, "{service}: unbind");
    let (s, _) = b.delete(&path, &sid, &pid, true).await;
    assert_eq!(s, 202, "{service}: deprovision");
    assert_eq!(b.wait(&path).await["state"], "succeeded");
    let cfn = kube_aws::aws::cloudformation(&moto.sdk_config().await);
    let live: Vec<String> = cfn
        .describe_stacks()
        .send()
        .await
        .expect("stacks")
        .stacks()
        .iter()
        .filter(|s| {
            s.stack_status()
                .is_some_and(|x| x.as_str() != "DELETE_COMPLETE")
        })
        .filter_map(|s| s.stack_name().map(str::to_string))
        .collect();
    assert!(live.is_empty(), "{service}: stacks left {live:?}");
}

/// Runs `script` with the credentials in the environment, as a pod bound to them would.
fn python(moto: &Moto, creds: &Map<String, Value>, script: &str) -> String {
    let mut cmd = std::process::Command::new(common::venv_bin("python"));
    // The emulator's dummy identity for admin calls; the bound keys override it below.
    cmd.arg("-c").arg(script).envs(moto.env());
    for (k, v) in creds {
        cmd.env(k, v.as_str().unwrap_or_default());
    }
    let out = cmd.output().expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// A VPC 10.N.0.0/16 with `count` subnets in distinct zones.
async fn vpc_with_subnets(
    sdk: &aws_config::SdkConfig,
    n: u8,
    count: usize,
) -> (String, Vec<String>) {
    let ec2 = kube_aws::aws::ec2(sdk);
    let vpc = ec2
        .create_vpc()
        .cidr_block(format!("10.{n}.0.0/16"))
        .send()
        .await
        .expect("vpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("id").to_string();
    let mut subnets = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b", "us-east-1c"]
        .iter()
        .take(count)
        .enumerate()
    {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .availability_zone(*az)
            .cidr_block(format!("10.{n}.{i}.0/24"))
            .send()
            .await
            .expect("subnet");
        subnets.push(
            s.subnet()
                .and_then(|s| s.subnet_id())
                .expect("id")
                .to_string(),
        );
    }
    (vpc_id, subnets)
}

fn has_iam_keys(creds: &Map<String, Value>, prefix: &str) {
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "REGION"] {
        assert!(
            creds
                .get(&format!("{prefix}_{k}"))
                .is_some_and(Value::is_string),
            "{prefix}_{k} missing in {creds:?}"
        );
    }
}

fn start(moto: &Moto) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let b = Broker::start(
        moto,
        dir.path().join("state").to_str().expect("utf8"),
        &[
            "--permissions-boundary",
            "arn:aws:iam::123456789012:policy/kube-aws-test-kab-boundary",
        ],
    );
    (b, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn polly_synthesizes_with_the_bound_key() {
    let moto = Moto::start();
    let (b, _d) = start(&moto);
    flow(&moto, &b, "polly", "standard", json!({}), async |c| {
        has_iam_keys(c, "POLLY");
        let out = python(
            &moto,
            c,
            "import boto3, os\n\
p = boto3.client('polly', aws_access_key_id=os.environ['POLLY_AWS_ACCESS_KEY_ID'], aws_secret_access_key=os.environ['POLLY_AWS_SECRET_ACCESS_KEY'], region_name=os.environ['POLLY_REGION'])\n\
print(len(p.describe_voices()['Voices']) > 0)\n",
        );
        assert_eq!(out, "True");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rekognition_detects_with_the_bound_key() {
    let moto = Moto::start();
    let (b, _d) = start(&moto);
    flow(&moto, &b, "rekognition", "standard", json!({}), async |c| {
        has_iam_keys(c, "REKOGNITION");
        assert!(
            c["REKOGNITION_COLLECTION_PREFIX"]
                .as_str()
                .is_some_and(|p| p.starts_with("kab-rekognition-i-")),
            "{c:?}"
        );
        let out = python(
            &moto,
            c,
            "import boto3, os\n\
r = boto3.client('rekognition', aws_access_key_id=os.environ['REKOGNITION_AWS_ACCESS_KEY_ID'], aws_secret_access_key=os.environ['REKOGNITION_AWS_SECRET_ACCESS_KEY'], region_name=os.environ['REKOGNITION_REGION'])\n\
print('Labels' in r.detect_labels(Image={'Bytes': b'not really a picture'}))\n",
        );
        assert_eq!(out, "True");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn translate_and_lex_bind_keys_scoped_to_their_service() {
    // moto implements neither Translate nor the Lex V2 runtime: the flow and the bound
    // user's policy are checked, not a call.
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let (b, _d) = start(&moto);
    for (service, prefix, action) in [
        ("translate", "TRANSLATE", "translate:TranslateText"),
        ("lex", "LEX", "lex:RecognizeText"),
    ] {
        let sdk = sdk.clone();
        flow(&moto, &b, service, "standard", json!({}), async |c| {
            has_iam_keys(c, prefix);
            let cfn = kube_aws::aws::cloudformation(&sdk);
            let stacks = cfn.describe_stacks().send().await.expect("stacks");
            let bstack = stacks
                .stacks()
                .iter()
                .find(|s| {
                    s.stack_name()
                        .is_some_and(|n| n.ends_with(&format!("-{service}-b")))
                })
                .expect("binding stack");
            let tpl = cfn
                .get_template()
                .stack_name(bstack.stack_id().expect("id"))
                .send()
                .await
                .expect("template");
            let t: Value = serde_json::from_str(tpl.template_body().expect("body")).expect("json");
            let policy = t["Resources"]["User"]["Properties"]["Policies"][0].to_string();
            assert!(policy.contains(action), "{policy}");
            let services: std::collections::BTreeSet<String> = t["Resources"]["User"]["Properties"]
                ["Policies"][0]["PolicyDocument"]["Statement"]
                .as_array()
                .expect("statements")
                .iter()
                .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| {
                    a.as_str()
                        .and_then(|a| a.split(':').next())
                        .map(str::to_string)
                })
                .collect();
            assert_eq!(services.len(), 1, "only {service}: {services:?}");
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn emr_runs_a_step_with_the_bound_key() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let (_, subnets) = vpc_with_subnets(&sdk, 9, 1).await;
    let subnet_id = subnets[0].clone();
    let (b, _d) = start(&moto);
    flow(
        &moto,
        &b,
        "emr",
        "small",
        json!({"SubnetId": subnet_id}),
        async |c| {
            has_iam_keys(c, "EMR");
            assert!(c["EMR_DATA_BUCKET"].is_string(), "{c:?}");
            let out = python(
                &moto,
                c,
                "import boto3, os\n\
e = boto3.client('emr', aws_access_key_id=os.environ['EMR_AWS_ACCESS_KEY_ID'], aws_secret_access_key=os.environ['EMR_AWS_SECRET_ACCESS_KEY'], region_name=os.environ['EMR_REGION'])\n\
cid = os.environ['EMR_CLUSTER_ID']\n\
assert e.describe_cluster(ClusterId=cid)['Cluster']['Id'] == cid\n\
e.add_job_flow_steps(JobFlowId=cid, Steps=[{'Name': 'demo', 'ActionOnFailure': 'CONTINUE', 'HadoopJarStep': {'Jar': 'command-runner.jar', 'Args': ['echo', 'hello']}}])\n\
print([s['Name'] for s in e.list_steps(ClusterId=cid)['Steps']])\n",
            );
            assert_eq!(out, "['demo']");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redshift_binds_the_generated_password_and_no_output_holds_it() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let (vpc_id, subnets) = vpc_with_subnets(&sdk, 8, 2).await;
    let (b, _d) = start(&moto);
    let sdk2 = sdk.clone();
    flow(
        &moto,
        &b,
        "redshift",
        "single-node",
        json!({"VpcId": vpc_id, "SubnetIds": subnets.join(",")}),
        async |c| {
            for k in [
                "REDSHIFT_HOST",
                "REDSHIFT_PORT",
                "REDSHIFT_DATABASE",
                "REDSHIFT_USERNAME",
                "REDSHIFT_PASSWORD",
            ] {
                assert!(
                    c.get(k).is_some_and(Value::is_string),
                    "{k} missing in {c:?}"
                );
            }
            let password = c["REDSHIFT_PASSWORD"].as_str().expect("password");
            assert!(password.len() >= 16, "a generated password");
            let cfn = kube_aws::aws::cloudformation(&sdk2);
            let stacks = cfn.describe_stacks().send().await.expect("stacks");
            assert!(
                !format!("{:?}", stacks.stacks()).contains(password),
                "the password is in DescribeStacks"
            );
            // The cluster is encrypted and private, as the template asks.
            let out = python(
                &moto,
                c,
                "import boto3\n\
r = boto3.client('redshift', region_name='us-east-1')\n\
c = r.describe_clusters()['Clusters'][0]\n\
print(c['Encrypted'], c['PubliclyAccessible'], c['MasterUsername'])\n",
            );
            assert_eq!(
                out,
                format!(
                    "True False {}",
                    c["REDSHIFT_USERNAME"].as_str().unwrap_or("-")
                )
            );
        },
    )
    .await;
}
