//! Figure: how long `up` takes on AWS, modelled. Renders the HA example, reads the
//! nested stacks' dependencies from its root template (DependsOn, Ref, Fn::GetAtt), and
//! prints the longest chain of nested stacks and a modelled creation time, for the root
//! as rendered and for the serial root it replaced (ControlPlane DependsOn Etcd, every
//! pool DependsOn ControlPlane).
//!
//!   cargo bench --bench creation
//!
//! The durations are a model, not measurements on AWS (none are possible here); each
//! says where it comes from. Nodes wait at boot for what they need: a controller for an
//! etcd quorum, a worker for the API server (kubeadm's discovery timeout), so a stack's
//! nodes finish at max(own boot, what they wait for) + their own last step.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// (seconds, source)
const NETWORK: (f64, &str) = (
    150.0,
    "assumption: VPC, subnets and routes take seconds; a NAT gateway, the slowest, takes minutes to become available",
);
const LOAD_BALANCER: (f64, &str) = (
    180.0,
    "assumption: a network load balancer stays `provisioning` for a few minutes",
);
const BOOT: (f64, &str) = (
    180.0,
    "assumption: instance launch (~60 s) plus the agent's apt installs and image pulls (~120 s)",
);
const ETCD_START: (f64, &str) = (
    20.0,
    "measured order: tests/etcd_members.rs forms a 3-member cluster in seconds on loopback",
);
const KUBEADM_INIT: (f64, &str) = (
    90.0,
    "assumption: well inside kubeadm's 4-minute control-plane health check (v1beta4 timeouts)",
);
const JOIN: (f64, &str) = (
    30.0,
    "assumption: TLS bootstrap and kubelet start after discovery succeeds",
);
const SMALL_STACK: (f64, &str) = (30.0, "assumption: a stack of IAM, SSM and DynamoDB only");

fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("Ref") {
                out.insert(r.clone());
            }
            if let Some(Value::Array(a)) = m.get("Fn::GetAtt")
                && let Some(Value::String(r)) = a.first()
            {
                out.insert(r.clone());
            }
            for x in m.values() {
                refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Nested stack → the nested stacks it waits for, from the root template.
fn deps(root: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let res = root["Resources"].as_object().expect("resources");
    let stacks: BTreeSet<String> = res
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudFormation::Stack")
        .map(|(k, _)| k.clone())
        .collect();
    stacks
        .iter()
        .map(|id| {
            let r = &res[id];
            let mut d = BTreeSet::new();
            refs(r, &mut d);
            match &r["DependsOn"] {
                Value::String(s) => {
                    d.insert(s.clone());
                }
                Value::Array(a) => d.extend(a.iter().filter_map(|x| x.as_str().map(String::from))),
                _ => {}
            }
            d.retain(|x| stacks.contains(x) && x != id);
            (id.clone(), d)
        })
        .collect()
}

fn chain(d: &BTreeMap<String, BTreeSet<String>>, id: &str) -> usize {
    1 + d[id].iter().map(|x| chain(d, x)).max().unwrap_or(0)
}

/// The longest DependsOn chain of auto scaling groups inside a nested template: groups
/// chained this way boot one after another (the etcd members, `AvailabilityZone` pools).
fn group_chain(t: &Value) -> usize {
    let res = t["Resources"].as_object().expect("resources");
    fn go(res: &serde_json::Map<String, Value>, id: &str, depth: usize) -> usize {
        let r = &res[id];
        let deps: Vec<String> = match &r["DependsOn"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => vec![],
        };
        let own = usize::from(r["Type"] == "AWS::AutoScaling::AutoScalingGroup");
        own + deps
            .iter()
            .filter(|d| res.contains_key(d.as_str()) && depth < 100)
            .map(|d| go(res, d, depth + 1))
            .max()
            .unwrap_or(0)
    }
    res.keys().map(|k| go(res, k, 0)).max().unwrap_or(0).max(1)
}

/// Finish time of each nested stack under the model; `chains` is each stack's
/// `group_chain`.
fn finish(
    d: &BTreeMap<String, BTreeSet<String>>,
    chains: &BTreeMap<String, usize>,
) -> BTreeMap<String, f64> {
    let mut done: BTreeMap<String, f64> = BTreeMap::new();
    while done.len() < d.len() {
        for (id, ds) in d {
            if done.contains_key(id) || !ds.iter().all(|x| done.contains_key(x)) {
                continue;
            }
            // Boot waits are not stack dependencies: they need the waited-for stack done.
            let waits: &[&str] = if id == "ControlPlane" {
                &["Etcd"]
            } else if id.starts_with("NodePool") {
                &["ControlPlane"]
            } else {
                &[]
            };
            if !waits
                .iter()
                .all(|w| done.contains_key(*w) || !d.contains_key(*w))
            {
                continue;
            }
            let start = ds.iter().map(|x| done[x]).fold(0.0, f64::max);
            let waited = waits
                .iter()
                .filter_map(|w| done.get(*w))
                .fold(0.0, |a: f64, b| a.max(*b));
            let n = chains.get(id).copied().unwrap_or(1) as f64;
            let t = match id.as_str() {
                "Network" => start + NETWORK.0,
                "Etcd" => start + n * (BOOT.0 + ETCD_START.0),
                "ControlPlane" => {
                    (start + LOAD_BALANCER.0).max((start + BOOT.0).max(waited) + KUBEADM_INIT.0)
                }
                // A chained group boots after the previous one signalled.
                x if x.starts_with("NodePool") => {
                    (start + BOOT.0).max(waited) + JOIN.0 + (n - 1.0) * (BOOT.0 + JOIN.0)
                }
                _ => start + SMALL_STACK.0,
            };
            done.insert(id.clone(), t);
        }
    }
    done
}

fn serial(root: &Value) -> Value {
    let mut r = root.clone();
    let res = r["Resources"].as_object_mut().expect("resources");
    if let Some(cp) = res.get_mut("ControlPlane") {
        cp["DependsOn"] = Value::from("Etcd");
    }
    for (id, v) in res.iter_mut() {
        if id.starts_with("NodePool") {
            let mut d = vec![Value::from("ControlPlane")];
            match &v["DependsOn"] {
                Value::String(s) => d.push(Value::from(s.clone())),
                Value::Array(a) => d.extend(a.iter().cloned()),
                _ => {}
            }
            v["DependsOn"] = Value::from(d);
        }
    }
    r
}

fn main() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ha-multi-az.yaml"
    ))
    .expect("example");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("cluster.yaml"), &text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-aws"))
        .args(["render", "credentials", "--generate-ca"])
        .current_dir(dir.path())
        .output()
        .expect("credentials");
    assert!(out.status.success());
    let creds = kube_aws::cli::inputs::credentials(dir.path()).expect("credentials");
    let cfg = kube_aws::config::parse(&text, "ha").expect("valid");
    let model = kube_aws::model::Model::derive(&cfg);
    let templates = kube_aws::render::templates::Templates::builtin();
    let bins = vec![kube_aws::render::NodeBinary {
        arch: "amd64".into(),
        sha256: "0".repeat(64),
        size: 0,
        version: "bench".into(),
        path: std::path::PathBuf::new(),
    }];
    let assets = kube_aws::render::render(&cfg, &model, &templates, &creds, &bins).expect("render");
    let root: Value = serde_json::from_slice(&assets.root().expect("root").body).expect("json");
    let mut chains = BTreeMap::new();
    for r in kube_aws::plan::nested_refs(&root) {
        if let Some(a) = assets
            .assets
            .values()
            .find(|a| a.name == format!("stack/{}", r.name))
        {
            let t: Value = serde_json::from_slice(&a.body).expect("json");
            chains.insert(r.logical_id.clone(), group_chain(&t));
        }
    }
    println!("groups booting one after another, per stack: {chains:?}");
    for (label, r) in [
        ("before (serial root)", serial(&root)),
        ("after (as rendered)", root.clone()),
    ] {
        let d = deps(&r);
        let longest = d.keys().map(|k| chain(&d, k)).max().unwrap_or(0);
        let f = finish(&d, &chains);
        let total = f.values().fold(0.0, |a: f64, b| a.max(*b));
        println!(
            "{label:<22} longest chain {longest} nested stacks; modelled creation {:.0} min {:.0} s",
            (total / 60.0).floor(),
            total % 60.0
        );
        for (id, t) in &f {
            println!("    {id:<22} done at {t:>5.0} s");
        }
    }
    println!("durations:");
    for (name, (s, src)) in [
        ("network stack", NETWORK),
        ("API load balancer", LOAD_BALANCER),
        ("node boot", BOOT),
        ("etcd start", ETCD_START),
        ("kubeadm init", KUBEADM_INIT),
        ("kubeadm join", JOIN),
        ("add-ons stack", SMALL_STACK),
    ] {
        println!("    {name:<18} {s:>4.0} s  {src}");
    }
}
