//! `diff` and `update` on the emulator. The HA example (plus a spot pool) is brought up
//! once; then a matrix of single-field edits of cluster.yaml, each followed by
//! `diff --output json`, which must name exactly the expected stacks and rolling groups.
//! Then a targeted update of one pool. Calls go through the counting proxy.
//!
//! Test-bed adaptations (not product changes): the example's KMS key and hosted zone
//! are replaced by ones created in the emulator, and its bucket is created there.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use common::{Moto, text};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeSet;
use std::process::Output;

const REGION: &str = "us-west-2";

struct Bed {
    moto: Moto,
    proxy: proxy::Proxy,
    dir: tempfile::TempDir,
    base: String,
}

impl Bed {
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
        cmd.env("NO_COLOR", "1");
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
        text(&out.stdout)
    }

    /// Runs `diff --output json` and returns (exit code, plan).
    fn diff(&self) -> (i32, Json) {
        let out = self.run(&["diff", "--output", "json"]);
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 2,
            "diff failed ({code}):\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let plan: Json = serde_json::from_slice(&out.stdout).expect("diff prints JSON");
        (code, plan)
    }

    fn write(&self, yaml: &str) {
        std::fs::write(self.dir.path().join("cluster.yaml"), yaml).expect("write cluster.yaml");
    }
}

async fn bed() -> Bed {
    let moto = Moto::start();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    kube_aws::aws::s3(&sdk)
        .create_bucket()
        .bucket("kube-aws-assets")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .expect("CreateBucket");
    let key = kube_aws::aws::kms(&sdk)
        .create_key()
        .send()
        .await
        .expect("CreateKey");
    let key_arn = key.key_metadata().and_then(|m| m.arn()).expect("arn");
    let zone = hosted_zone(&moto, "example.com");
    let example =
        std::fs::read_to_string(common::repo().join("examples/ha-multi-az.yaml")).expect("example");
    let mut v: Yaml = serde_yaml_ng::from_str(&example).expect("yaml");
    v["kmsKeyArn"] = Yaml::from(key_arn);
    v["hostedZoneId"] = Yaml::from(zone.as_str());
    // A third pool with spot instances, from the spot-mixed example's settings.
    let spot: Yaml = serde_yaml_ng::from_str(
        "name: spot
mixedInstances:
  instanceTypes: [m6i.large, m5.large]
  onDemandBaseCapacity: 1
  onDemandPercentageAboveBaseCapacity: 0
  spotAllocationStrategy: price-capacity-optimized
minSize: 1
desiredCapacity: 2
maxSize: 6
labels:
  example.com/pool: spot
  example.com/lifecycle: spot
",
    )
    .expect("spot pool");
    pools(&mut v).push(spot);
    let base = serde_yaml_ng::to_string(&v).expect("yaml");
    let proxy = proxy::Proxy::start(moto.port, proxy::Faults::default());
    let b = Bed {
        moto,
        proxy,
        dir: tempfile::tempdir().expect("tmp"),
        base,
    };
    b.write(&b.base);
    b.ok(&["render", "credentials", "--generate-ca"]);
    b.ok(&["render", "stack"]);
    b.ok(&["up"]);
    b
}

/// A Route 53 zone in the emulator, with boto3 (the product has no Route 53 client).
/// Bridge: moto's zone ids are random letters, AWS's start with `Z` (which `validate`
/// checks), so zones are created until one has such an id.
fn hosted_zone(moto: &Moto, name: &str) -> String {
    let out = std::process::Command::new(common::venv_bin("python"))
        .arg("-c")
        .arg(format!(
            "import boto3\nr=boto3.client('route53')\nfor i in range(2000):\n    z=r.create_hosted_zone(Name='{name}', CallerReference=str(i))['HostedZone']['Id'].split('/')[-1]\n    if z.startswith('Z'):\n        print(z); break"
        ))
        .envs(moto.env())
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn pools(v: &mut Yaml) -> &mut Vec<Yaml> {
    match &mut v["worker"]["nodePools"] {
        Yaml::Sequence(s) => s,
        _ => panic!("nodePools is a list"),
    }
}

fn pool<'a>(v: &'a mut Yaml, name: &str) -> &'a mut Yaml {
    pools(v)
        .iter_mut()
        .find(|p| p["name"].as_str() == Some(name))
        .expect("pool")
}

fn set(v: &mut Yaml, path: &[&str], value: Yaml) {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        if i + 1 == path.len() {
            cur[*k] = value;
            return;
        }
        if cur.get(*k).is_none() {
            cur[*k] = Yaml::Mapping(Default::default());
        }
        cur = &mut cur[*k];
    }
}

fn y(s: &str) -> Yaml {
    serde_yaml_ng::from_str(s).expect("yaml value")
}

type Edit = fn(&mut Yaml);

/// (edit, the edit, stacks that change, stacks whose instances roll).
fn matrix() -> Vec<(
    &'static str,
    Edit,
    &'static [&'static str],
    &'static [&'static str],
)> {
    const ROOT_GENERAL: &[&str] = &["root", "node-pool/general"];
    vec![
        (
            "pool instanceType",
            |v| set(pool(v, "general"), &["instanceType"], y("m6i.2xlarge")),
            ROOT_GENERAL,
            &["node-pool/general"],
        ),
        (
            "pool minSize",
            |v| set(pool(v, "general"), &["minSize"], y("2")),
            ROOT_GENERAL,
            &[],
        ),
        (
            "pool maxSize",
            |v| set(pool(v, "ingress"), &["maxSize"], y("8")),
            &["root", "node-pool/ingress"],
            &[],
        ),
        (
            "pool label value",
            |v| {
                set(
                    pool(v, "general"),
                    &["labels", "example.com/pool"],
                    y("main"),
                )
            },
            ROOT_GENERAL,
            &["node-pool/general"],
        ),
        (
            "pool new label",
            |v| set(pool(v, "spot"), &["labels", "example.com/team"], y("data")),
            &["root", "node-pool/spot"],
            &["node-pool/spot"],
        ),
        (
            "pool taint effect",
            |v| {
                set(
                    &mut pool(v, "ingress")["taints"][0],
                    &["effect"],
                    y("NoExecute"),
                )
            },
            &["root", "node-pool/ingress"],
            &["node-pool/ingress"],
        ),
        (
            "new pool",
            |v| {
                let mut p = pool(v, "general").clone();
                p["name"] = y("batch");
                pools(v).push(p);
            },
            &["root", "node-pool/batch"],
            &[],
        ),
        (
            "removed pool",
            |v| pools(v).retain(|p| p["name"].as_str() != Some("spot")),
            &["root", "node-pool/spot"],
            &[],
        ),
        (
            "controller count",
            |v| set(v, &["controller", "count"], y("3")),
            &["root", "control-plane"],
            &[],
        ),
        (
            "controller instanceType",
            |v| set(v, &["controller", "instanceType"], y("m6i.xlarge")),
            &["root", "control-plane"],
            &["control-plane"],
        ),
        (
            "etcd instanceType",
            |v| set(v, &["etcd", "instanceType"], y("m6i.xlarge")),
            &["root", "etcd"],
            &["etcd"],
        ),
        (
            "etcd data volume size",
            |v| set(v, &["etcd", "dataVolume", "size"], y("100")),
            &["root", "etcd"],
            &[],
        ),
        (
            "kubernetesVersion",
            |v| set(v, &["kubernetesVersion"], y("1.34.1")),
            &[
                "root",
                "control-plane",
                "node-pool/general",
                "node-pool/ingress",
                "node-pool/spot",
            ],
            &[
                "control-plane",
                "node-pool/general",
                "node-pool/ingress",
                "node-pool/spot",
            ],
        ),
        (
            "API DNS name",
            |v| {
                set(
                    &mut v["apiEndpoints"][1],
                    &["dnsName"],
                    y("api.internal.example.com"),
                )
            },
            &[
                "root",
                "control-plane",
                "node-pool/general",
                "node-pool/ingress",
                "node-pool/spot",
            ],
            &[
                "control-plane",
                "node-pool/general",
                "node-pool/ingress",
                "node-pool/spot",
            ],
        ),
        (
            "stack tag",
            |v| set(v, &["stackTags", "team"], y("infra")),
            &["root"],
            &[],
        ),
        (
            "maxBatchSize",
            |v| {
                set(
                    pool(v, "general"),
                    &["rollingUpdate", "maxBatchSize"],
                    y("2"),
                )
            },
            ROOT_GENERAL,
            &[],
        ),
        (
            "minInstancesInService",
            |v| {
                set(
                    pool(v, "ingress"),
                    &["rollingUpdate", "minInstancesInService"],
                    y("1"),
                )
            },
            &["root", "node-pool/ingress"],
            &[],
        ),
        (
            "surge",
            |v| set(pool(v, "general"), &["rollingUpdate", "surge"], y("true")),
            ROOT_GENERAL,
            &[],
        ),
        (
            "spot on-demand base",
            |v| {
                set(
                    pool(v, "spot"),
                    &["mixedInstances", "onDemandBaseCapacity"],
                    y("2"),
                )
            },
            &["root", "node-pool/spot"],
            &["node-pool/spot"],
        ),
        (
            "spot instance types",
            |v| {
                set(
                    pool(v, "spot"),
                    &["mixedInstances", "instanceTypes"],
                    y("[m6i.large, m5.large, m5a.large]"),
                )
            },
            &["root", "node-pool/spot"],
            &["node-pool/spot"],
        ),
        (
            "pool subnets",
            |v| {
                set(
                    pool(v, "ingress"),
                    &["subnets"],
                    y("[private-a, private-b]"),
                )
            },
            &["root", "node-pool/ingress"],
            &["node-pool/ingress"],
        ),
        (
            "pool root volume size",
            |v| set(pool(v, "general"), &["rootVolume", "size"], y("100")),
            ROOT_GENERAL,
            &["node-pool/general"],
        ),
        (
            "drain timeout",
            |v| {
                set(
                    pool(v, "ingress"),
                    &["rollingUpdate", "drainTimeoutSeconds"],
                    y("900"),
                )
            },
            &["root", "node-pool/ingress"],
            &["node-pool/ingress"],
        ),
        (
            "pause time",
            |v| {
                set(
                    pool(v, "general"),
                    &["rollingUpdate", "pauseTime"],
                    y("PT10M"),
                )
            },
            ROOT_GENERAL,
            &[],
        ),
        (
            "add-ons switched on",
            |v| {
                set(v, &["addons", "serviceCatalog", "enabled"], y("true"));
                set(v, &["addons", "awsServiceBroker", "enabled"], y("true"));
            },
            // control-plane: the controller role's KMS permission names each file it may
            // decrypt, and the add-ons' private keys join that list (no node rolls).
            &["root", "addons", "control-plane"],
            &[],
        ),
        (
            "Service Catalog alone",
            |v| set(v, &["addons", "serviceCatalog", "enabled"], y("true")),
            &["root", "addons", "control-plane"],
            &[],
        ),
        // Determinism: edits that change nothing deployed.
        (
            "labels reordered",
            |v| {
                let labels = &mut pool(v, "spot")["labels"];
                if let Yaml::Mapping(m) = labels {
                    let mut items: Vec<(Yaml, Yaml)> = m.clone().into_iter().collect();
                    items.reverse();
                    *m = items.into_iter().collect();
                }
            },
            &[],
            &[],
        ),
        (
            "parallel pool moved first",
            |v| {
                let p = pools(v);
                let spot = p.pop().expect("spot");
                p.insert(0, spot);
            },
            &[],
            &[],
        ),
        (
            "keys reordered and comments",
            |v| {
                if let Yaml::Mapping(m) = v {
                    let mut items: Vec<(Yaml, Yaml)> = m.clone().into_iter().collect();
                    items.reverse();
                    *m = items.into_iter().collect();
                }
            },
            &[],
            &[],
        ),
    ]
}

fn names(v: &Json, key: &str, field: &str) -> BTreeSet<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x[field].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_matrix_then_targeted_update() {
    let b = bed().await;

    // No edit: no change, also after credentials and stacks are rendered again.
    let (code, plan) = b.diff();
    assert_eq!(code, 0, "first diff after up: {plan:#}");
    b.ok(&["render", "credentials"]);
    b.ok(&["render", "stack"]);
    let _ = b.proxy.take_counts();
    let t = std::time::Instant::now();
    let (code, plan) = b.diff();
    let elapsed = t.elapsed();
    let (calls, _) = b.proxy.take_counts();
    assert_eq!(code, 0, "diff after re-rendering: {plan:#}");
    println!(
        "no-edit diff on HA: {:.0} ms, {} calls: {calls:?}",
        elapsed.as_secs_f64() * 1000.0,
        calls.values().sum::<usize>()
    );
    assert!(
        calls
            .keys()
            .all(|k| !k.contains("Create") && !k.contains("Put") && !k.contains("Update"))
    );

    let mut failures = Vec::new();
    let m = matrix();
    for (name, edit, stacks, rolls) in &m {
        let mut v: Yaml = serde_yaml_ng::from_str(&b.base).expect("base");
        edit(&mut v);
        b.write(&serde_yaml_ng::to_string(&v).expect("yaml"));
        // An add-on needs its certificates first, as the README's walkthrough says;
        // they are removed again so later cases upload what they did before.
        let creds = b.dir.path().join("credentials");
        let listing = || -> BTreeSet<std::path::PathBuf> {
            std::fs::read_dir(&creds)
                .expect("credentials")
                .map(|e| e.expect("entry").path())
                .collect()
        };
        let before = listing();
        let addons = v["addons"]["serviceCatalog"]["enabled"] == Yaml::Bool(true);
        if addons {
            b.ok(&["render", "credentials"]);
        }
        let (code, plan) = b.diff();
        for added in listing().difference(&before) {
            std::fs::remove_file(added).expect("remove");
        }
        let got_stacks = names(&plan, "stacks", "name");
        let got_rolls = names(&plan, "rolls", "stack");
        let want_stacks: BTreeSet<String> = stacks.iter().map(|s| s.to_string()).collect();
        let want_rolls: BTreeSet<String> = rolls.iter().map(|s| s.to_string()).collect();
        let want_code = if stacks.is_empty() { 0 } else { 2 };
        println!("{name:<30} exit {code} stacks {got_stacks:?} rolls {got_rolls:?}");
        if got_stacks != want_stacks || got_rolls != want_rolls || code != want_code {
            failures.push(format!(
                "{name}: exit {code} (want {want_code}), stacks {got_stacks:?} (want {want_stacks:?}), rolls {got_rolls:?} (want {want_rolls:?})\n{}",
                serde_json::to_string_pretty(&plan["stacks"]).unwrap_or_default()
            ));
        }
    }
    assert!(m.len() >= 20);
    assert!(
        failures.is_empty(),
        "{} of {} edits differ:\n{}",
        failures.len(),
        m.len(),
        failures.join("\n")
    );

    // The AMI is pinned at `up`, so none of the edits above rolled a node for an image
    // the emulator's SSM parameter might hold; editing the pin rolls every node, and
    // diff says which image each moves from and to.
    b.write(&b.base);
    let pin_path = b.dir.path().join("ami.yaml");
    let pinned = std::fs::read_to_string(&pin_path).expect("up writes ami.yaml");
    let old_id = pinned
        .lines()
        .find_map(|l| l.strip_prefix("imageId: "))
        .expect("imageId")
        .to_string();
    assert!(pinned.contains("region: us-west-2"), "{pinned}");
    let (code, _) = b.diff();
    assert_eq!(code, 0, "the pin re-renders to what is deployed");
    let out = b.run(&["diff", "--refresh-ami", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is still the newest image"),
        "{}",
        text(&out.stderr)
    );
    let new_id = "ami-0123456789abcdef0";
    std::fs::write(&pin_path, pinned.replace(&old_id, new_id)).expect("pin");
    let (code, plan) = b.diff();
    assert_eq!(code, 2, "{plan:#}");
    let rolls = names(&plan, "rolls", "stack");
    let all: BTreeSet<String> = [
        "etcd",
        "control-plane",
        "node-pool/general",
        "node-pool/ingress",
        "node-pool/spot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(rolls, all, "{plan:#}");
    let why = serde_json::to_string(&plan["rolls"]).expect("json");
    assert!(why.contains(&format!("AMI: {old_id} → {new_id}")), "{why}");
    std::fs::write(&pin_path, &pinned).expect("pin");
    std::fs::write(
        &pin_path,
        "region: eu-west-1\nimageId: ami-12345678\nsource: x\n",
    )
    .expect("pin");
    let out = b.run(&["diff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("pinned in eu-west-1")
            && text(&out.stderr).contains("--refresh-ami"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&pin_path, &pinned).expect("pin");

    // A new kube-aws is a new node agent: every node rolls, and diff says why.
    b.write(&b.base);
    let other = b.dir.path().join("kube-aws-next");
    std::fs::write(&other, "#!/bin/sh\n# another node agent build (test)\n").expect("binary");
    let out = b.run(&[
        "--node-binary",
        &other.display().to_string(),
        "diff",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let plan: Json = serde_json::from_slice(&out.stdout).expect("json");
    let rolls = names(&plan, "rolls", "stack");
    for want in [
        "etcd",
        "control-plane",
        "node-pool/general",
        "node-pool/ingress",
        "node-pool/spot",
    ] {
        assert!(rolls.contains(want), "{want} does not roll: {rolls:?}");
    }
    let why = serde_json::to_string(&plan["rolls"]).expect("json");
    assert!(why.contains("node agent changed (bin/kube-aws-"), "{why}");
    let agent = plan["userdata"]
        .as_array()
        .expect("userdata")
        .iter()
        .find(|u| u["role"] == "node-agent")
        .expect("the node agent entry");
    let (from, to) = (
        agent["deployed_key"].as_str().expect("deployed key"),
        agent["rendered_key"].as_str().expect("rendered key"),
    );
    assert!(
        from.starts_with("bin/kube-aws-") && to.starts_with("bin/kube-aws-") && from != to,
        "{agent}"
    );
    let out = b.run(&["--node-binary", &other.display().to_string(), "diff"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("# the kube-aws node agent: every node that runs it rolls")
            && shown.contains(&format!("+{to}")),
        "{shown}"
    );

    // The change-set path: CloudFormation is asked, and the change set is deleted.
    let mut v: Yaml = serde_yaml_ng::from_str(&b.base).expect("base");
    set(pool(&mut v, "general"), &["instanceType"], y("m6i.2xlarge"));
    set(pool(&mut v, "ingress"), &["instanceType"], y("c6i.xlarge"));
    b.write(&serde_yaml_ng::to_string(&v).expect("yaml"));
    let out = b.run(&["diff", "--change-sets"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("change set: node-pool/general: change set listed"),
        "{stdout}"
    );
    let (calls, _) = b.proxy.take_counts();
    assert_eq!(
        calls.get("cloudformation:CreateChangeSet"),
        Some(&2),
        "{calls:?}"
    );
    assert_eq!(
        calls.get("cloudformation:DeleteChangeSet"),
        Some(&2),
        "{calls:?}"
    );
    assert_eq!(calls.get("cloudformation:ExecuteChangeSet"), None);

    // Two pools changed; update only one of them.
    let (code, plan) = b.diff();
    assert_eq!(code, 2);
    assert_eq!(
        names(&plan, "rolls", "stack"),
        ["node-pool/general", "node-pool/ingress"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        plan["roll_order"],
        serde_json::json!([["node-pool/general"], ["node-pool/ingress"]])
    );
    let out = b.run(&["diff", "--targets", "general", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let targeted: Json = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        names(&targeted, "stacks", "name"),
        ["root", "node-pool/general"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    // Without a terminal and without --yes, update refuses and changes nothing.
    let out = b.run(&["update", "--targets", "general"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    let _ = b.proxy.take_counts();
    b.ok(&["update", "--targets", "general", "--yes"]);
    let (calls, _) = b.proxy.take_counts();
    println!("update --targets general: {calls:?}");
    assert_eq!(calls.get("cloudformation:UpdateStack"), Some(&1));
    // Only new objects went up: the pool templates are there since `diff --change-sets`;
    // what is new is the rendered root and the targeted root, and the manifest that
    // records their keys (deploy/manifest.rs).
    assert_eq!(calls.get("s3:PUTObject"), Some(&3), "{calls:?}");
    let out = b.run(&["diff", "--targets", "general"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let (code, plan) = b.diff();
    assert_eq!(code, 2);
    assert_eq!(
        names(&plan, "stacks", "name"),
        ["root", "node-pool/ingress"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    // The rest.
    b.ok(&["update", "--yes"]);
    let (code, plan) = b.diff();
    assert_eq!(code, 0, "{plan:#}");
    // An unknown target is a user error naming the choices.
    let out = b.run(&["diff", "--targets", "gpu"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("node-pool/general"));
    // There is nothing to roll back: --continue-rollback says so.
    let out = b.run(&["update", "--continue-rollback"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("UPDATE_ROLLBACK_FAILED"),
        "{}",
        text(&out.stderr)
    );
}
