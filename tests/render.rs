//! `render stack`: every rendered template passes cfn-lint, every cloud-config passes
//! `cloud-init schema`, every script passes shellcheck; golden files; determinism,
//! isolation and the scale bars (200 pools, size and resource limits).

mod common;
#[path = "common/iam.rs"]
mod iam;

use kube_aws::config::Config;
use kube_aws::model::Model;
use kube_aws::render::{self, AssetSet, Credentials, Kind, templates::Templates};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic stand-ins for credentials/: rendering only embeds certificate PEMs and
/// names secrets by fingerprint, so fixed values make the output reproducible.
fn creds() -> Credentials {
    let mut c = Credentials::default();
    let roles = [
        render::ETCD_PUBLIC,
        render::CONTROLLER_PUBLIC,
        render::WORKER_PUBLIC,
    ];
    let addons = [
        ("service-catalog-webhook.pem", ""),
        ("aws-service-broker.pem", ""),
    ];
    for (file, _) in roles.iter().flat_map(|r| r.iter()).chain(&addons) {
        c.public.insert(
            file.to_string(),
            format!("-----BEGIN CERTIFICATE-----\nTEST {file}\n-----END CERTIFICATE-----\n"),
        );
    }
    let secrets = [
        render::ETCD_SECRETS,
        render::CONTROLLER_SECRETS,
        render::WORKER_SECRETS,
    ];
    let addons = [
        ("service-catalog-webhook-key.pem", ""),
        ("aws-service-broker-key.pem", ""),
        ("aws-service-broker-token", ""),
    ];
    for (file, _) in secrets.iter().flat_map(|r| r.iter()).chain(&addons) {
        c.fingerprints
            .insert(file.to_string(), render::sha256_hex(file.as_bytes()));
    }
    c
}

/// A fixed node agent identity, so goldens do not change with every build.
fn bins() -> Vec<render::NodeBinary> {
    ["amd64", "arm64"]
        .iter()
        .map(|arch| render::NodeBinary {
            arch: arch.to_string(),
            sha256: render::sha256_hex(format!("kube-aws test binary {arch}").as_bytes()),
            size: 50_000_000,
            version: "0.0.0-test".into(),
            path: PathBuf::from("/nonexistent"),
        })
        .collect()
}

fn example(name: &str) -> Config {
    kube_aws::config::read(&common::repo().join(format!("examples/{name}.yaml")))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn render_cfg(cfg: &Config) -> AssetSet {
    render::render(
        cfg,
        &Model::derive(cfg),
        &Templates::builtin(),
        &creds(),
        &bins(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

const EXAMPLES: [&str; 5] = [
    "minimal",
    "ha-multi-az",
    "existing-vpc",
    "spot-mixed",
    "addons",
];

fn export(assets: &AssetSet, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for a in assets.assets.values() {
        let ext = if matches!(
            a.kind,
            Kind::Template | Kind::AddonBundle | Kind::NodeConfig
        ) {
            "json"
        } else {
            "yaml"
        };
        let p = dir.join(format!("{}.{ext}", a.name.replace('/', "__")));
        std::fs::write(&p, &a.body).expect("write");
        out.push(p);
    }
    out
}

/// cfn-lint over the rendered stack templates: (templates checked, findings outside
/// the allowlist, errors always included).
fn cfn_lint(assets: &AssetSet, region: &str) -> (usize, Vec<String>, String) {
    let allow: Vec<String> =
        std::fs::read_to_string(common::repo().join("tests/cfn-lint-allowlist.txt"))
            .expect("allowlist")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let files: Vec<PathBuf> = export(assets, dir.path())
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("stack__"))
        })
        .collect();
    let out = Command::new(common::venv_bin("cfn-lint"))
        .args(["--format", "parseable", "--regions", region])
        .args(&files)
        .output()
        .expect("cfn-lint");
    let bad = common::text(&out.stdout)
        .lines()
        .filter(|l| {
            let rule = l.split(':').nth(5).unwrap_or_default();
            rule.starts_with('E') || !allow.iter().any(|a| a == rule)
        })
        .map(str::to_string)
        .collect();
    (files.len(), bad, common::text(&out.stderr))
}

#[test]
fn every_template_passes_cfn_lint() {
    let mut checked = 0;
    for ex in EXAMPLES {
        let cfg = example(ex);
        let (n, bad, stderr) = cfn_lint(&render_cfg(&cfg), &cfg.region);
        checked += n;
        assert!(
            bad.is_empty(),
            "{ex}: cfn-lint findings outside the allowlist:\n{}\n{stderr}",
            bad.join("\n")
        );
    }
    eprintln!("cfn-lint: {checked} templates, 0 errors");
}

#[test]
fn every_cloud_config_passes_cloud_init_schema_and_every_script_shellcheck() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut configs = Vec::new();
    for ex in EXAMPLES {
        let sub = dir.path().join(ex);
        std::fs::create_dir_all(&sub).expect("dir");
        configs.extend(
            export(&render_cfg(&example(ex)), &sub)
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "yaml")),
        );
    }
    for c in &configs {
        let out = Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(c)
            .output()
            .expect("cloud-init (Debian cloud-init)");
        assert!(
            out.status.success(),
            "{}: {}{}",
            c.display(),
            common::text(&out.stdout),
            common::text(&out.stderr)
        );
    }
    let scripts_dir = dir.path().join("scripts");
    let out = Command::new(common::venv_bin("python"))
        .arg(common::repo().join("tests/harness/extract_scripts.py"))
        .arg(&scripts_dir)
        .args(&configs)
        .output()
        .expect("extract");
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let mut scripts: Vec<String> = common::text(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    scripts.push(common::repo().join("userdata/lib.sh").display().to_string());
    assert!(scripts.len() > 20, "{scripts:?}");
    let out = Command::new("shellcheck")
        .arg("-x")
        .args(&scripts)
        .output()
        .expect("shellcheck (Debian shellcheck)");
    assert!(out.status.success(), "{}", common::text(&out.stdout));
    eprintln!(
        "cloud-init schema: {} cloud-configs valid; shellcheck: {} scripts clean",
        configs.len(),
        scripts.len()
    );
}

#[test]
fn golden_files_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for ex in EXAMPLES {
        let dir = common::repo().join("tests/golden").join(ex);
        let assets = render_cfg(&example(ex));
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("golden dir");
        }
        let mut want: BTreeSet<String> = BTreeSet::new();
        for a in assets.assets.values() {
            let name = format!(
                "{}.{}",
                a.name.replace('/', "__"),
                if matches!(
                    a.kind,
                    Kind::Template | Kind::AddonBundle | Kind::NodeConfig
                ) {
                    "json"
                } else {
                    "yaml"
                }
            );
            want.insert(name.clone());
            let path = dir.join(&name);
            // JSON is stored pretty-printed so a golden diff is reviewable.
            let body = if matches!(
                a.kind,
                Kind::Template | Kind::AddonBundle | Kind::NodeConfig
            ) {
                let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
                (serde_json::to_string_pretty(&v).expect("json") + "\n").into_bytes()
            } else {
                a.body.clone()
            };
            if update {
                std::fs::write(&path, &body).expect("write golden");
            } else if std::fs::read(&path).ok().as_deref() != Some(body.as_slice()) {
                stale.push(format!("{ex}/{name}"));
            }
        }
        let have: BTreeSet<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for extra in have.difference(&want) {
            stale.push(format!("{ex}/{extra} (no longer rendered)"));
        }
    }
    assert!(
        stale.is_empty(),
        "rendered output changed; if deliberate, run `UPDATE_GOLDEN=1 cargo test --test render golden` and review the diff:\n{}",
        stale.join("\n")
    );
}

#[test]
fn rendering_twice_gives_identical_bytes_and_label_order_does_not_matter() {
    for ex in EXAMPLES {
        assert_eq!(render_cfg(&example(ex)), render_cfg(&example(ex)), "{ex}");
    }
    let text =
        std::fs::read_to_string(common::repo().join("examples/ha-multi-az.yaml")).expect("read");
    let reordered = text.replace(
        "      labels:\n        example.com/pool: general\n",
        "      labels:\n        zz.example.com/x: \"1\"\n        example.com/pool: general\n",
    );
    let sorted = text.replace(
        "      labels:\n        example.com/pool: general\n",
        "      labels:\n        example.com/pool: general\n        zz.example.com/x: \"1\"\n",
    );
    let a = render_cfg(&kube_aws::config::parse(&reordered, "a").expect("valid"));
    let b = render_cfg(&kube_aws::config::parse(&sorted, "b").expect("valid"));
    assert_eq!(a, b, "the order of labels in YAML changed the output");
}

fn changed(a: &AssetSet, b: &AssetSet) -> BTreeSet<String> {
    let names: BTreeSet<&String> = a.assets.keys().chain(b.assets.keys()).collect();
    names
        .into_iter()
        .filter(|n| a.assets.get(*n) != b.assets.get(*n))
        .cloned()
        .collect()
}

#[test]
fn changing_one_pool_changes_that_pool_and_the_pointer_to_it_only() {
    let cfg = example("ha-multi-az");
    let before = render_cfg(&cfg);
    assert!(
        changed(&before, &render_cfg(&cfg)).is_empty(),
        "changing nothing changed something"
    );
    let mut edited = cfg.clone();
    edited.worker.node_pools[1].instance_type = Some("c6i.xlarge".into());
    let after = render_cfg(&edited);
    let diff = changed(&before, &after);
    let want: BTreeSet<String> = ["stack/node-pool/ingress", "stack/root"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(diff, want);
    // The root changes only in the TemplateURL of that pool.
    let old: serde_json::Value =
        serde_json::from_slice(&before.assets["stack/root"].body).expect("json");
    let new: serde_json::Value =
        serde_json::from_slice(&after.assets["stack/root"].body).expect("json");
    let mut patched = old.clone();
    patched["Resources"]["NodePoolIngress"]["Properties"]["TemplateURL"] =
        new["Resources"]["NodePoolIngress"]["Properties"]["TemplateURL"].clone();
    assert_eq!(patched, new);

    // A label changes the pool's node config, so its stub, so its template: it rolls.
    let mut labelled = cfg.clone();
    labelled.worker.node_pools[0]
        .labels
        .insert("example.com/tier".into(), "web".into());
    let diff = changed(&before, &render_cfg(&labelled));
    let want: BTreeSet<String> = [
        "stack/node-pool/general",
        "stack/root",
        "nodeconfig/worker-general",
        "stub/worker-general",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(diff, want);
}

#[test]
fn two_hundred_pools_stay_within_cloudformation_and_ec2_limits() {
    let mut cfg = example("ha-multi-az");
    let pool = cfg.worker.node_pools[0].clone();
    cfg.worker.node_pools = (0..200)
        .map(|i| {
            let mut p = pool.clone();
            p.name = format!("pool-{i:03}");
            p
        })
        .collect();
    // A controller cloud-config over 100 KB: the stub that fetches it stays small.
    let mut templates = Templates::builtin();
    let padding: String = (0..2500)
        .map(|i| format!("      # padding line {i:05} to grow the cloud-config past 100 KB\n"))
        .collect();
    let controller = templates
        .files
        .get_mut("userdata/cloud-config-controller.yaml")
        .expect("controller");
    *controller = controller.replacen("write_files:\n", &format!("write_files:\n  - path: /opt/kube-aws/padding\n    defer: true\n    content: |\n{padding}"), 1);
    let assets = render::render(&cfg, &Model::derive(&cfg), &templates, &creds(), &bins())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(assets.assets["userdata/controller"].body.len() > 100_000);
    let mut largest = 0;
    for a in assets.assets.values() {
        match a.kind {
            Kind::Template => {
                assert!(
                    a.body.len() <= render::MAX_TEMPLATE_BYTES,
                    "{} is {} bytes",
                    a.name,
                    a.body.len()
                );
                largest = largest.max(a.body.len());
                let t: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
                let n = t["Resources"].as_object().map(|r| r.len()).unwrap_or(0);
                assert!(n <= render::MAX_RESOURCES, "{} has {n} resources", a.name);
            }
            Kind::UserDataStub => assert!(
                a.body.len() <= render::MAX_USER_DATA_BYTES,
                "{} is {} bytes",
                a.name,
                a.body.len()
            ),
            Kind::CloudConfig | Kind::AddonBundle | Kind::NodeConfig => {}
        }
    }
    let root: serde_json::Value =
        serde_json::from_slice(&assets.assets["stack/root"].body).expect("json");
    let resources = root["Resources"].as_object().expect("resources").len();
    assert_eq!(resources, 203);
    eprintln!(
        "200 pools: {} assets, root {} resources / {} bytes, largest template {largest} bytes",
        assets.assets.len(),
        resources,
        assets.assets["stack/root"].body.len()
    );
}

#[test]
fn a_template_error_names_the_template_the_line_and_the_variable() {
    let cfg = example("minimal");
    let mut t = Templates::builtin();
    let np = t
        .files
        .get_mut("stack-templates/node-pool.yaml")
        .expect("node-pool");
    *np = np.replace(
        "InstanceType: {{ pool.instance_type | json_encode }}",
        "InstanceType: {{ pool.instanceTyp | json_encode }}",
    );
    let line = np
        .lines()
        .position(|l| l.contains("pool.instanceTyp"))
        .expect("line")
        + 1;
    let err = render::render(&cfg, &Model::derive(&cfg), &t, &creds(), &bins())
        .expect_err("undefined variable")
        .to_string();
    assert!(
        err.contains(&format!("stack-templates/node-pool.yaml:{line}")),
        "{err}"
    );
    assert!(err.contains("`pool.instanceTyp`"), "{err}");

    let mut t = Templates::builtin();
    let net = t
        .files
        .get_mut("stack-templates/network.yaml")
        .expect("network");
    *net = net.replacen("Resources:\n", "Resources:\n  Broken: [unclosed\n", 1);
    let err = render::render(&cfg, &Model::derive(&cfg), &t, &creds(), &bins())
        .expect_err("bad yaml")
        .to_string();
    assert!(
        err.contains("stack-templates/network.yaml") && err.contains("invalid YAML"),
        "{err}"
    );
}

#[test]
fn missing_credentials_are_named() {
    let cfg = example("minimal");
    let mut c = creds();
    c.fingerprints.remove("kubelet-bootstrap-token");
    let err = render::render(
        &cfg,
        &Model::derive(&cfg),
        &Templates::builtin(),
        &c,
        &bins(),
    )
    .expect_err("missing")
    .to_string();
    assert!(
        err.contains("credentials/kubelet-bootstrap-token is missing")
            && err.contains("render credentials"),
        "{err}"
    );
}

#[test]
fn render_stack_copies_keeps_edits_diffs_and_exports() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        common::repo().join("examples/minimal.yaml"),
        dir.path().join("cluster.yaml"),
    )
    .expect("copy");
    assert!(
        common::run_in(dir.path(), &["render", "credentials", "--generate-ca"])
            .status
            .success()
    );
    let out = common::run_in(dir.path(), &["render", "stack"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stdout).contains("copied 11 built-in templates"));
    let np = dir.path().join("stack-templates/node-pool.yaml");
    let mine = std::fs::read_to_string(&np).expect("copy") + "# my edit\n";
    std::fs::write(&np, &mine).expect("edit");

    let out = common::run_in(dir.path(), &["render", "stack", "--export", "out"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert!(common::text(&out.stdout).contains("kept your edited stack-templates/node-pool.yaml"));
    assert_eq!(
        std::fs::read_to_string(&np).expect("read"),
        mine,
        "a user edit was overwritten"
    );
    let exported: Vec<_> = std::fs::read_dir(dir.path().join("out/stacks"))
        .expect("exported")
        .collect();
    assert_eq!(
        exported.len(),
        5,
        "root, network, etcd, control plane, one pool"
    );

    let out = common::run_in(dir.path(), &["render", "stack", "--diff"]);
    let d = common::text(&out.stdout);
    assert!(
        d.contains("+# my edit") && d.contains("1 of 11 files differ"),
        "{d}"
    );

    let out = common::run_in(dir.path(), &["render", "stack", "--force"]);
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(dir.path().join("stack-templates/node-pool.yaml.orig"))
            .expect("orig")
            .contains("# my edit")
    );
    let d = common::text(&common::run_in(dir.path(), &["render", "stack", "--diff"]).stdout);
    assert!(d.contains("0 of 11 files differ"), "{d}");

    // A copy an older kube-aws made and nobody edited (its content is the recorded
    // built-in) is replaced by the new built-in; an edited one is kept.
    let worker = dir.path().join("userdata/cloud-config-worker.yaml");
    let older = "#cloud-config\n# the built-in of an older kube-aws\nruncmd: []\n";
    std::fs::write(&worker, older).expect("older copy");
    let record = dir.path().join(".kube-aws-templates");
    let text = std::fs::read_to_string(&record).expect("record");
    let rewritten: String = text
        .lines()
        .map(|l| {
            if l.ends_with(" userdata/cloud-config-worker.yaml") {
                format!(
                    "{} userdata/cloud-config-worker.yaml\n",
                    render::sha256_hex(older.as_bytes())
                )
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&record, rewritten).expect("record");
    let out = common::run_in(dir.path(), &["render", "stack"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert!(
        common::text(&out.stdout).contains("updated userdata/cloud-config-worker.yaml"),
        "{}",
        common::text(&out.stdout)
    );
    assert_ne!(std::fs::read_to_string(&worker).expect("read"), older);
}

/// What every example must get right for a cluster to come up (the boot issue's
/// rendered invariants): no pre-generated API server certificate reaches a node; the
/// controllers apply a pinned CNI, the cloud-controller-manager and the EBS CSI driver;
/// no API target group hairpins; each role decrypts only its own files; workers and etcd
/// members never see a CA key.
#[test]
fn every_example_renders_a_cluster_that_can_boot() {
    for ex in EXAMPLES {
        let a = render_cfg(&example(ex));
        let node = |n: &str| -> serde_json::Value {
            serde_json::from_slice(&a.assets[&format!("nodeconfig/{n}")].body).expect("json")
        };
        let controller = node("controller");
        let files: Vec<&str> = controller["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["path"].as_str())
            .chain(
                controller["secrets"]
                    .as_array()
                    .expect("secrets")
                    .iter()
                    .filter_map(|f| f["path"].as_str()),
            )
            .collect();
        for never in [
            "apiserver.crt",
            "apiserver.key",
            "apiserver-kubelet-client",
            "front-proxy-client",
            "etcd/ca.key",
        ] {
            assert!(
                !files.iter().any(|f| f.contains(never)),
                "{ex}: {never} reaches a controller: {files:?}"
            );
        }
        let add = &controller["kubernetes"]["clusterAddons"];
        assert_eq!(add["cni"]["name"], "calico", "{ex}");
        assert_eq!(
            add["cni"]["sha256"].as_str().map(str::len),
            Some(64),
            "{ex}"
        );
        let objects: Vec<String> = add["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect();
        for want in [
            "DaemonSet/aws-cloud-controller-manager",
            "CSIDriver/ebs.csi.aws.com",
            "Deployment/ebs-csi-controller",
            "DaemonSet/ebs-csi-node",
            "StorageClass/gp3-encrypted",
            "ClusterRoleBinding/kube-aws:node-drainer",
        ] {
            assert!(
                objects.iter().any(|o| o == want),
                "{ex}: {want} missing from {objects:?}"
            );
        }
        for (name, asset) in a
            .assets
            .iter()
            .filter(|(n, _)| n.starts_with("nodeconfig/"))
        {
            let v: serde_json::Value = serde_json::from_slice(&asset.body).expect("json");
            if v["role"] != "controller" {
                assert!(
                    v["secrets"]
                        .as_array()
                        .expect("secrets")
                        .iter()
                        .all(|s| !s["name"].as_str().unwrap_or("").contains("ca-key")),
                    "{ex}: {name}"
                );
            }
            let registration = v.pointer("/kubernetes/controlPlaneEndpoint");
            if v["role"] != "etcd" {
                assert!(registration.is_some(), "{ex}: {name}");
            }
        }
        let cp: serde_json::Value =
            serde_json::from_slice(&a.assets["stack/control-plane"].body).expect("json");
        let mut groups = 0;
        for (id, r) in cp["Resources"].as_object().expect("resources") {
            if r["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup" {
                groups += 1;
                let attrs = r["Properties"]["TargetGroupAttributes"]
                    .as_array()
                    .expect("attributes");
                assert!(
                    attrs
                        .iter()
                        .any(|x| x["Key"] == "preserve_client_ip.enabled" && x["Value"] == "false"),
                    "{ex}: {id} hairpins"
                );
                assert_eq!(
                    r["Properties"]["HealthCheckProtocol"], "HTTPS",
                    "{ex}: {id}"
                );
                assert_eq!(r["Properties"]["HealthCheckPath"], "/readyz", "{ex}: {id}");
            }
        }
        assert!(groups >= 1, "{ex}");
        // Each role's KMS permission names exactly its node config's secret files.
        for (stack, node_name) in [
            ("stack/control-plane", "controller"),
            ("stack/etcd", "etcd"),
        ] {
            let t = String::from_utf8_lossy(&a.assets[stack].body).to_string();
            for s in node(node_name)["secrets"].as_array().expect("secrets") {
                assert!(
                    t.contains(&format!("\"{}\"", s["name"].as_str().expect("name"))),
                    "{ex}: {stack} lacks {}",
                    s["name"]
                );
            }
            assert!(t.contains("kms:EncryptionContext:file"), "{ex}: {stack}");
        }
    }
}

/// Every object the controllers apply passes `kubernetes-validate --strict` for the
/// oldest and newest supported Kubernetes.
#[test]
fn the_cluster_objects_are_valid_kubernetes_for_1_31_and_1_34() {
    let a = render_cfg(&example("ha-multi-az"));
    let v: serde_json::Value =
        serde_json::from_slice(&a.assets["nodeconfig/controller"].body).expect("json");
    let dir = tempfile::tempdir().expect("tmp");
    let mut files = Vec::new();
    for (i, o) in v["kubernetes"]["clusterAddons"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .enumerate()
    {
        let p = dir.path().join(format!("{i:02}.yaml"));
        std::fs::write(&p, serde_yaml_ng::to_string(o).expect("yaml")).expect("write");
        files.push(p);
    }
    for k in ["1.31.0", "1.34.0"] {
        let out = Command::new(common::venv_bin("kubernetes-validate"))
            .args(["--strict", "-k", k, "--quiet"])
            .args(&files)
            .output()
            .expect("kubernetes-validate");
        let report = format!("{}{}", common::text(&out.stdout), common::text(&out.stderr));
        assert!(
            out.status.success() && report.trim().is_empty(),
            "{k}:\n{report}"
        );
    }
    eprintln!(
        "kubernetes-validate --strict: {} objects for 1.31 and 1.34",
        files.len()
    );
}

/// `cni.provider: amazon-vpc`: the pinned AWS VPC CNI manifest, the kubelet's ECR
/// credential provider (pinned per architecture), `--max-pods` from the ENI limits, the
/// VPC as the pod range, and the CNI's IAM permissions on controllers and workers; the
/// templates still pass cfn-lint.
#[test]
fn the_aws_vpc_cni_is_a_choice() {
    let mut cfg = example("minimal");
    cfg.cni.provider = kube_aws::config::types::CniProvider::AmazonVpc;
    let a = render_cfg(&cfg);
    let node = |n: &str| -> serde_json::Value {
        serde_json::from_slice(&a.assets[&format!("nodeconfig/{n}")].body).expect("json")
    };
    let c = node("controller");
    assert_eq!(
        c["kubernetes"]["clusterAddons"]["cni"]["name"],
        "amazon-vpc-cni"
    );
    assert_eq!(
        c["kubernetes"]["clusterAddons"]["cni"]["sha256"],
        kube_aws::node::manifests::VPC_CNI_SHA256
    );
    assert_eq!(c["kubernetes"]["podCidr"], "10.0.0.0/16");
    for role in ["controller", "worker-general"] {
        let v = node(role);
        let p = &v["kubernetes"]["vpcCni"]["credentialProvider"];
        assert_eq!(
            p["amd64"]["sha256"].as_str().map(str::len),
            Some(64),
            "{role}"
        );
        assert!(
            p["arm64"]["url"]
                .as_str()
                .expect("url")
                .ends_with("linux-arm64"),
            "{role}"
        );
        let cfg: kube_aws::node::config::NodeConfig =
            serde_json::from_value(v.clone()).expect("node config");
        let obs = kube_aws::node::kubeadm::Observed {
            node_name: "ip-10-0-1-5.ec2.internal".into(),
            ip: "10.0.1.5".into(),
            bootstrap_token: "abcdef.0123456789abcdef".into(),
            ca_cert_hash: "sha256:00".into(),
            max_pods: Some(29),
        };
        let steps = serde_json::to_string(&kube_aws::node::plan::plan(&cfg, &obs)).expect("json");
        for want in [
            "ecr-credential-provider",
            "credential-provider.conf",
            "image-credential-provider-config",
            "name: max-pods\\n",
            "value: '29'",
            "*.dkr.ecr.*.amazonaws.com",
        ] {
            assert!(steps.contains(want), "{role}: {want}\n{steps}");
        }
    }
    for stack in ["stack/control-plane", "stack/node-pool/general"] {
        let t = String::from_utf8_lossy(&a.assets[stack].body).to_string();
        assert!(
            t.contains("ec2:AssignPrivateIpAddresses") && t.contains("ecr:GetAuthorizationToken"),
            "{stack}"
        );
    }
    let (n, bad, stderr) = cfn_lint(&a, &cfg.region);
    assert!(n >= 5 && bad.is_empty(), "{}\n{stderr}", bad.join("\n"));
}

/// The add-on's IAM, judged by the IAM stand-in (tests/common/iam.rs) with every service
/// offered: the broker role creates and changes binding users only with the permissions
/// boundary and cannot drop it; the boundary bounds what any binding policy could grant;
/// the cluster's own KMS key stays out of reach even after the broker tags it; EMR's
/// instance roles (code runs as them) carry the boundary. Each of these fails on the
/// policies before issue 14.
#[test]
fn broker_iam_holds_under_policy_evaluation() {
    use iam::{Decision::*, Request, evaluate, evaluate_bounded, resolve};
    let mut cfg = example("addons");
    cfg.addons.aws_service_broker.services = kube_aws::config::validate::BROKER_SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let assets = render_cfg(&cfg);
    let stack = assets
        .assets
        .values()
        .find(|a| a.name == "stack/addons")
        .expect("the add-ons stack");
    let (_, bad, stderr) = cfn_lint(&assets, &cfg.region);
    assert!(
        bad.is_empty(),
        "cfn-lint with every service: {bad:?} {stderr}"
    );
    let t: serde_json::Value = serde_json::from_slice(&stack.body).expect("json");
    let (acct, id) = ("123456789012", "awsbroker");
    let boundary_arn = format!(
        "arn:aws:iam::{acct}:policy/kube-aws-{}-{id}-boundary",
        cfg.cluster_name
    );
    let names: std::collections::BTreeMap<String, String> = [
        ("AWS::Partition", "aws".to_string()),
        ("AWS::Region", "us-west-2".to_string()),
        ("AWS::AccountId", acct.to_string()),
        ("BindingBoundary", boundary_arn.clone()),
        (
            "StateTable.Arn",
            format!("arn:aws:dynamodb:us-west-2:{acct}:table/state"),
        ),
        (
            "ControllerRoleArn",
            format!("arn:aws:iam::{acct}:role/controller"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let role = resolve(
        &t["Resources"]["BrokerRole"]["Properties"]["Policies"],
        &names,
    );
    let mut role: Vec<serde_json::Value> = iam::statements(&role);
    // The managed policies attached to the role.
    let attached: Vec<&serde_json::Value> = t["Resources"]
        .as_object()
        .expect("resources")
        .values()
        .filter(|r| {
            r["Type"] == "AWS::IAM::ManagedPolicy"
                && r["Properties"]["Roles"] == serde_json::json!([{"Ref": "BrokerRole"}])
        })
        .collect();
    for m in &attached {
        let st = resolve(&m["Properties"]["PolicyDocument"]["Statement"], &names);
        role.extend(st.as_array().cloned().unwrap_or_default());
    }
    let boundary = resolve(
        &t["Resources"]["BindingBoundary"]["Properties"]["PolicyDocument"]["Statement"],
        &names,
    );
    let boundary = boundary.as_array().expect("statements").clone();
    let user = format!("arn:aws:iam::{acct}:user/{id}/kab-user");
    let pb = "iam:PermissionsBoundary";
    let cases: Vec<(&str, Request, iam::Decision)> = vec![
        (
            "create a binding user with the boundary",
            Request::new("iam:CreateUser", &user).with(pb, &[&boundary_arn]),
            Allow,
        ),
        (
            "create a user without a boundary",
            Request::new("iam:CreateUser", &user),
            ImplicitDeny,
        ),
        (
            "create a user with another boundary",
            Request::new("iam:CreateUser", &user)
                .with(pb, &["arn:aws:iam::aws:policy/AdministratorAccess"]),
            ImplicitDeny,
        ),
        (
            "write a user policy on a bounded user",
            Request::new("iam:PutUserPolicy", &user).with(pb, &[&boundary_arn]),
            Allow,
        ),
        (
            "write a user policy on an unbounded user",
            Request::new("iam:PutUserPolicy", &user),
            ImplicitDeny,
        ),
        (
            "drop a user's boundary",
            Request::new("iam:DeleteUserPermissionsBoundary", &user),
            ExplicitDeny,
        ),
        (
            "attach a managed policy to a user",
            Request::new("iam:AttachUserPolicy", &user),
            ExplicitDeny,
        ),
        (
            "create a user outside the broker's path",
            Request::new("iam:CreateUser", &format!("arn:aws:iam::{acct}:user/admin"))
                .with(pb, &[&boundary_arn]),
            ImplicitDeny,
        ),
        (
            "read a binding secret",
            Request::new(
                "secretsmanager:GetSecretValue",
                &format!(
                    "arn:aws:secretsmanager:us-west-2:{acct}:secret:{id}-sqs-b3-abc-x-credentials-AbCdEf"
                ),
            ),
            Allow,
        ),
        (
            "read another secret",
            Request::new(
                "secretsmanager:GetSecretValue",
                &format!("arn:aws:secretsmanager:us-west-2:{acct}:secret:prod/db-AbCdEf"),
            ),
            ImplicitDeny,
        ),
        (
            "create a KMS key tagged as the broker's",
            Request::new("kms:CreateKey", "*").with("aws:RequestTag/kube-aws:broker", &[id]),
            Allow,
        ),
        (
            "decrypt with the cluster's key after tagging it",
            Request::new(
                "kms:Decrypt",
                &format!("arn:aws:kms:us-west-2:{acct}:key/cluster"),
            )
            .with("aws:ResourceTag/kube-aws:broker", &[id]),
            ImplicitDeny,
        ),
        (
            "change the cluster key's policy after tagging it",
            Request::new(
                "kms:PutKeyPolicy",
                &format!("arn:aws:kms:us-west-2:{acct}:key/cluster"),
            )
            .with("aws:ResourceTag/kube-aws:broker", &[id]),
            ImplicitDeny,
        ),
        (
            "tag a key with a tag other than the broker's",
            Request::new(
                "kms:TagResource",
                &format!("arn:aws:kms:us-west-2:{acct}:key/cluster"),
            )
            .with("aws:RequestTag/kube-aws:broker", &[id])
            .with("aws:TagKeys", &["kube-aws:broker", "owner"]),
            ImplicitDeny,
        ),
        (
            "alias the cluster key into the broker's prefix",
            Request::new(
                "kms:CreateAlias",
                &format!("arn:aws:kms:us-west-2:{acct}:key/cluster"),
            ),
            ImplicitDeny,
        ),
        (
            "create an EMR instance role with the boundary",
            Request::new(
                "iam:CreateRole",
                &format!("arn:aws:iam::{acct}:role/{id}/instance/r"),
            )
            .with(pb, &[&boundary_arn]),
            Allow,
        ),
        (
            "create an EMR instance role without it",
            Request::new(
                "iam:CreateRole",
                &format!("arn:aws:iam::{acct}:role/{id}/instance/r"),
            ),
            ImplicitDeny,
        ),
        (
            "pass the EMR service role to EC2",
            Request::new(
                "iam:PassRole",
                &format!("arn:aws:iam::{acct}:role/{id}-emr-service"),
            )
            .with("iam:PassedToService", &["ec2.amazonaws.com"]),
            ImplicitDeny,
        ),
        (
            "pass the EMR service role to EMR",
            Request::new(
                "iam:PassRole",
                &format!("arn:aws:iam::{acct}:role/{id}-emr-service"),
            )
            .with("iam:PassedToService", &["elasticmapreduce.amazonaws.com"]),
            Allow,
        ),
        (
            "create a role that is not bounded (a would-be admin role)",
            Request::new(
                "iam:CreateRole",
                &format!("arn:aws:iam::{acct}:role/{id}/service/admin"),
            ),
            ImplicitDeny,
        ),
        (
            "write an inline policy into the EMR service role",
            Request::new(
                "iam:PutRolePolicy",
                &format!("arn:aws:iam::{acct}:role/{id}-emr-service"),
            ),
            ImplicitDeny,
        ),
    ];
    let mut failures = Vec::new();
    for (name, r, want) in &cases {
        let got = evaluate(&role, r);
        if got != *want {
            failures.push(format!("broker role, {name}: {got:?}, want {want:?}"));
        }
    }
    // A binding user with a wildcard inline policy (the worst the broker could write)
    // gets no more than the boundary.
    let star = vec![serde_json::json!({"Effect": "Allow", "Action": "*", "Resource": "*"})];
    let bounded: Vec<(&str, Request, iam::Decision)> = vec![
        (
            "use a broker bucket",
            Request::new(
                "s3:GetObject",
                &format!("arn:aws:s3:::{id}-s3-i-x-bucket-1/k"),
            ),
            Allow,
        ),
        (
            "use another bucket",
            Request::new("s3:GetObject", "arn:aws:s3:::prod-data/k"),
            ImplicitDeny,
        ),
        (
            "create IAM users",
            Request::new("iam:CreateUser", &user),
            ImplicitDeny,
        ),
        (
            "decrypt with a broker key",
            Request::new(
                "kms:Decrypt",
                &format!("arn:aws:kms:us-west-2:{acct}:key/k"),
            )
            .with("kms:ResourceAliases", &[&format!("alias/{id}-kms-i-x")]),
            Allow,
        ),
        (
            "decrypt with the cluster key, tagged as the broker's",
            Request::new(
                "kms:Decrypt",
                &format!("arn:aws:kms:us-west-2:{acct}:key/cluster"),
            )
            .with("aws:ResourceTag/kube-aws:broker", &[id]),
            ImplicitDeny,
        ),
    ];
    for (name, r, want) in &bounded {
        let got = evaluate_bounded(&star, &boundary, r);
        if got != *want {
            failures.push(format!(
                "bounded binding user, {name}: {got:?}, want {want:?}"
            ));
        }
    }
    // IAM quotas: a role's inline policies share 10,240 characters, a managed policy has
    // 6,144 (whitespace not counted). https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
    let inline: usize = t["Resources"]["BrokerRole"]["Properties"]["Policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| {
            serde_json::to_string(&p["PolicyDocument"])
                .expect("json")
                .len()
        })
        .sum();
    let boundary_size =
        serde_json::to_string(&t["Resources"]["BindingBoundary"]["Properties"]["PolicyDocument"])
            .expect("json")
            .len();
    let managed: Vec<usize> = attached
        .iter()
        .map(|m| {
            serde_json::to_string(&m["Properties"]["PolicyDocument"])
                .expect("json")
                .len()
        })
        .collect();
    eprintln!(
        "broker IAM with all 18 services: role inline policy {inline} characters (limit 10,240), attached managed policies {managed:?} and boundary {boundary_size} (limit 6,144 each); {} cases",
        cases.len() + bounded.len()
    );
    assert!(
        inline < 10_240,
        "the broker role's inline policy is {inline} characters"
    );
    assert!(
        managed.iter().chain([&boundary_size]).all(|n| *n < 6_144),
        "{managed:?} {boundary_size}"
    );
    assert!(
        managed.len() <= 10,
        "IAM attaches at most 10 managed policies to a role by default"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 15 §5: each node role's rendered policy, evaluated (tests/common/iam.rs) against
/// every secret's S3 key and KMS encryption context, the snapshots, the add-ons bundle
/// and the role's own boot objects. Prints the table; a worker must be denied ca.key.
#[test]
fn node_roles_read_and_decrypt_only_their_own_secrets() {
    use iam::{Decision, Request, evaluate, resolve};
    use serde_json::Value;
    let cfg = example("addons");
    let assets = render_cfg(&cfg);
    let model = Model::derive(&cfg);
    let names: std::collections::BTreeMap<String, String> = [
        ("AWS::Partition", "aws"),
        ("AWS::Region", "us-west-2"),
        ("AWS::AccountId", "123456789012"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let pool = cfg.worker.node_pools[0].name.clone();
    let stack = |n: &str| -> Value {
        let a = assets
            .assets
            .values()
            .find(|a| a.name == format!("stack/{n}"))
            .unwrap_or_else(|| panic!("stack {n}"));
        serde_json::from_slice(&a.body).expect("json")
    };
    // (role, stack, role resource, node config asset)
    let worker = format!("worker-{pool}");
    let roles = [
        ("etcd", stack("etcd"), "EtcdRole", "etcd".to_string()),
        (
            "controller",
            stack("control-plane"),
            "ControllerRole",
            "controller".to_string(),
        ),
        (
            "worker",
            stack(&format!("node-pool/{pool}")),
            "WorkerRole",
            worker.clone(),
        ),
    ];
    let statements = |t: &Value, role: &str| -> Vec<Value> {
        let r = &t["Resources"][role]["Properties"];
        assert!(
            r.get("ManagedPolicyArns").is_none(),
            "{role}: a managed policy grants what this test cannot see"
        );
        iam::statements(&r["Policies"])
            .into_iter()
            .filter(|s| {
                let acts: Vec<String> = match &s["Action"] {
                    Value::String(a) => vec![a.clone()],
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect(),
                    _ => vec![],
                };
                acts.iter()
                    .any(|a| a.starts_with("s3:") || a.starts_with("kms:") || a == "*")
            })
            .map(|s| resolve(&s, &names))
            .collect()
    };
    let bucket_arn = |key: &str| format!("arn:aws:s3:::{}/{key}", model.s3_bucket);
    let p = &model.s3_prefix;
    let mut secrets: Vec<String> = creds().fingerprints.keys().cloned().collect();
    secrets.sort();
    let mut table = format!(
        "{:<36}{:<14}{:<14}{}\n",
        "secret / object", "etcd", "controller", "worker"
    );
    let mut grants: std::collections::BTreeMap<(String, &str), (bool, bool)> = Default::default();
    let objects: Vec<(String, String)> = secrets
        .iter()
        .map(|f| {
            let fp = &creds().fingerprints[f];
            // The bootstrap token nodes read is the one the controllers publish.
            let rel = if f == "kubelet-bootstrap-token" {
                kube_aws::model::ids::BOOTSTRAP_TOKEN_CURRENT.to_string()
            } else {
                kube_aws::model::names::secret_key(f, fp)
            };
            (f.clone(), format!("{p}/{rel}"))
        })
        .chain([
            (
                "etcd snapshot".to_string(),
                format!("{p}/etcd-snapshots/20261203T000000Z.db"),
            ),
            (
                "add-ons bundle".to_string(),
                format!("{p}/addons/bundle-0123456789abcdef.json"),
            ),
        ])
        .collect();
    for (what, key) in &objects {
        let mut row = format!("{what:<36}");
        for (role, t, res, _) in &roles {
            let st = statements(t, res);
            let read =
                evaluate(&st, &Request::new("s3:GetObject", &bucket_arn(key))) == Decision::Allow;
            let decrypt = evaluate(
                &st,
                &Request::new("kms:Decrypt", &cfg.kms_key_arn)
                    .with("kms:EncryptionContext:cluster", &[&cfg.cluster_name])
                    .with("kms:EncryptionContext:file", &[what]),
            ) == Decision::Allow;
            grants.insert((what.clone(), role), (read, decrypt));
            let cell = match (read, decrypt) {
                (true, true) => "read+decrypt",
                (true, false) => "read",
                (false, true) => "decrypt",
                (false, false) => "-",
            };
            row.push_str(&format!("{cell:<14}"));
        }
        table.push_str(row.trim_end());
        table.push('\n');
    }
    println!("{table}");

    // Each role reaches everything its own boot needs: its node config's secrets, its
    // cloud-config, its node config and the node agent.
    for (role, t, res, node) in &roles {
        let st = statements(t, res);
        let cfgs: Vec<&render::Asset> = assets
            .assets
            .values()
            .filter(|a| {
                a.name == format!("nodeconfig/{node}") || a.name == format!("userdata/{node}")
            })
            .collect();
        assert_eq!(cfgs.len(), 2, "{role}: {node}");
        let nc: Value = serde_json::from_slice(
            &cfgs
                .iter()
                .find(|a| a.name.starts_with("nodeconfig/"))
                .expect("nc")
                .body,
        )
        .expect("json");
        let mut needed: Vec<String> = cfgs.iter().map(|a| a.key.clone()).collect();
        needed.extend(
            assets
                .binaries
                .iter()
                .map(|b| format!("{p}/{}", b.rel_key())),
        );
        for s in nc["secrets"].as_array().expect("secrets") {
            let (name, key) = (
                s["name"].as_str().expect("name"),
                s["key"].as_str().expect("key"),
            );
            needed.push(key.to_string());
            let d = evaluate(
                &st,
                &Request::new("kms:Decrypt", &cfg.kms_key_arn)
                    .with("kms:EncryptionContext:cluster", &[&cfg.cluster_name])
                    .with("kms:EncryptionContext:file", &[name]),
            );
            assert_eq!(d, Decision::Allow, "{role} cannot decrypt its own {name}");
        }
        for k in needed {
            assert_eq!(
                evaluate(&st, &Request::new("s3:GetObject", &bucket_arn(&k))),
                Decision::Allow,
                "{role} cannot read its own {k}"
            );
        }
    }
    let can = |what: &str, role: &str| grants[&(what.to_string(), role)];
    for secret in [
        "ca-key.pem",
        "front-proxy-ca-key.pem",
        "service-account-key.pem",
        "encryption-config.yaml",
        "etcd-server-key.pem",
        "etcd-peer-key.pem",
        "etcd-client-key.pem",
        "apiserver-etcd-client-key.pem",
        "aws-service-broker-key.pem",
        "etcd snapshot",
        "add-ons bundle",
    ] {
        assert_eq!(
            can(secret, "worker"),
            (false, false),
            "a worker reaches {secret}"
        );
    }
    for secret in ["ca-key.pem", "service-account-key.pem", "add-ons bundle"] {
        assert_eq!(can(secret, "etcd"), (false, false), "etcd reaches {secret}");
    }
    for secret in ["etcd-server-key.pem", "etcd-peer-key.pem", "etcd snapshot"] {
        assert_eq!(
            can(secret, "controller"),
            (false, false),
            "a controller reaches {secret}"
        );
    }
    assert_eq!(can("etcd snapshot", "etcd"), (true, false));
    // A pool whose name extends this one's is another pool.
    let worker_st = statements(&roles[2].1, roles[2].2);
    let other = format!("{p}/userdata/worker-{pool}-gpu-0123456789abcdef.yaml");
    assert_ne!(
        evaluate(
            &worker_st,
            &Request::new("s3:GetObject", &bucket_arn(&other))
        ),
        Decision::Allow,
        "{other}"
    );
    assert_eq!(can("kubelet-bootstrap-token", "worker"), (true, true));
    // Only controllers publish a rotated token: encrypt under its context, write its key.
    let current = bucket_arn(&format!(
        "{p}/{}",
        kube_aws::model::ids::BOOTSTRAP_TOKEN_CURRENT
    ));
    for (role, t, res, _) in &roles {
        let st = statements(t, res);
        let put = evaluate(&st, &Request::new("s3:PutObject", &current)) == Decision::Allow;
        let enc = evaluate(
            &st,
            &Request::new("kms:Encrypt", &cfg.kms_key_arn)
                .with("kms:EncryptionContext:cluster", &[&cfg.cluster_name])
                .with("kms:EncryptionContext:file", &["kubelet-bootstrap-token"]),
        ) == Decision::Allow;
        let other = evaluate(
            &st,
            &Request::new("kms:Encrypt", &cfg.kms_key_arn)
                .with("kms:EncryptionContext:cluster", &[&cfg.cluster_name])
                .with("kms:EncryptionContext:file", &["ca-key.pem"]),
        ) == Decision::Allow;
        assert_eq!(
            (put, enc, other),
            (*role == "controller", *role == "controller", false),
            "{role}"
        );
    }
}
