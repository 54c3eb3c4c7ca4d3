//! The boot rehearsal: `kube-aws node bootstrap` runs for real, per role, against the
//! emulator, under a temporary root. What it reaches is real where it can be: moto for
//! S3, KMS and the signal (bridge 6), a real etcd 3.4 with the cluster's certificates
//! for the init lock, the real user-data stub under bash and curl fetching the real
//! binary. What cannot run here is a labelled stand-in (tests/README.md): the instance
//! metadata (harness/node_standin.py), the Kubernetes API (common/apiserver.rs), and
//! the commands of a node (harness/node-standins/standin).

#[allow(dead_code)] // the rehearsal uses part of the stand-in
#[path = "common/apiserver.rs"]
mod apiserver;
mod common;

use apiserver::FakeApi;
use common::{Moto, REGION, text};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "rehearsal-bucket";
const ZONE: &str = "demo.etcd.internal";

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Bed {
    moto: Moto,
    dir: tempfile::TempDir,
    out: PathBuf,
    bins: PathBuf,
    etcd_port: u16,
    kubeconfig: PathBuf,
    tls: (PathBuf, PathBuf),
    _kill: Kill,
}

fn kube_aws(bed: &Bed, args: &[&str]) -> Output {
    let mut c = common::kube_aws();
    c.arg("--dir").arg(bed.dir.path()).args(args);
    // The real binary: `up` uploads it and the stub fetches it.
    c.env("KUBE_AWS_NODE_BINARY", env!("CARGO_BIN_EXE_kube-aws"));
    for (k, v) in bed.moto.env() {
        c.env(k, v);
    }
    c.output().expect("kube-aws runs")
}

fn ok(bed: &Bed, args: &[&str]) -> String {
    let o = kube_aws(bed, args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// A CNI manifest mirror on loopback (cluster.yaml `cni.manifest`): a stand-in for the
/// pinned Calico manifest, which cannot be fetched here. Returns (url, sha256, docs).
fn cni_mirror(dir: &Path, kill: &mut Kill) -> (String, String, Vec<Value>) {
    let docs = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "calico-node", "namespace": "kube-system"}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "calico-node", "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"k8s-app": "calico-node"}}, "template": {"metadata": {"labels": {"k8s-app": "calico-node"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "calico-node", "image": "docker.io/calico/node:v3.30.7"}]}}}}),
    ];
    let text: String = docs
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("calico.yaml"), &text).expect("manifest");
    let port = common::free_port();
    kill.0.push(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("http.server"),
    );
    for _ in 0..100 {
        if common::http_get_status(port, "/calico.yaml") == Some(200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        format!("http://127.0.0.1:{port}/calico.yaml"),
        kube_aws::render::sha256_hex(text.as_bytes()),
        docs,
    )
}

async fn setup(rt: &tokio::runtime::Runtime) -> (Bed, FakeApi, Vec<Value>) {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    kube_aws::aws::s3(&sdk)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket");
    let key = kube_aws::aws::kms(&sdk)
        .create_key()
        .send()
        .await
        .expect("key");
    let key_arn = key
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let mut kill = Kill(Vec::new());
    let (url, sha, cni_docs) = cni_mirror(dir.path(), &mut kill);
    let mut bed = Bed {
        moto,
        out: dir.path().join("out"),
        bins: dir.path().join("bin"),
        kubeconfig: dir.path().join("standin.kubeconfig"),
        tls: (dir.path().join("tls.crt"), dir.path().join("tls.key")),
        dir,
        // reqwest overrides the address of a name, not its port: the port is the URL's.
        etcd_port: 2379,
        _kill: kill,
    };
    ok(
        &bed,
        &[
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
            &key_arn,
            "--s3-uri",
            &format!("s3://{BUCKET}/clusters"),
        ],
    );
    let yaml = bed.dir.path().join("cluster.yaml");
    // The CNI from its mirror (cluster.yaml `cni.manifest`), as a user without egress sets it.
    let mut v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&yaml).expect("cluster.yaml"))
            .expect("yaml");
    v["cni"]["manifest"] =
        serde_yaml_ng::from_str(&format!("{{url: \"{url}\", sha256: \"{sha}\"}}")).expect("yaml");
    std::fs::write(&yaml, serde_yaml_ng::to_string(&v).expect("yaml")).expect("cluster.yaml");
    ok(&bed, &["render", "credentials", "--generate-ca"]);
    let started = Instant::now();
    let up = ok(&bed, &["up"]);
    eprintln!(
        "rehearsal: up (real node binary included) in {:.1}s\n{up}",
        started.elapsed().as_secs_f64()
    );
    ok(
        &bed,
        &[
            "render",
            "stack",
            "--export",
            &bed.out.display().to_string(),
        ],
    );

    // The node's commands: one recording stand-in under every name.
    std::fs::create_dir_all(&bed.bins).expect("bin");
    for name in [
        "kubeadm",
        "kubelet",
        "kubectl",
        "systemctl",
        "apt-get",
        "apt-mark",
        "containerd",
        "modprobe",
        "sysctl",
        "curl",
        "blkid",
        "mkfs.ext4",
        "mount",
        "findmnt",
        "ctr",
    ] {
        std::os::unix::fs::symlink(
            common::repo().join("tests/harness/node-standins/standin"),
            bed.bins.join(name),
        )
        .expect("symlink");
    }
    // A real etcd with the cluster's own server certificate: the controllers' init lock.
    let creds = bed.dir.path().join("credentials");
    let c = |f: &str| creds.join(f).display().to_string();
    let peer = common::free_port();
    let log = std::fs::File::create(
        common::testbed().join(format!("logs/etcd-rehearsal-{}.log", bed.etcd_port)),
    )
    .expect("log");
    bed._kill.0.push(
        Command::new("etcd")
            .args([
                "--name=etcd-0".to_string(),
                format!("--data-dir={}", bed.dir.path().join("etcd").display()),
                format!("--listen-client-urls=https://127.0.0.1:{}", bed.etcd_port),
                format!(
                    "--advertise-client-urls=https://127.0.0.1:{}",
                    bed.etcd_port
                ),
                format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
                format!("--initial-cluster=etcd-0=https://127.0.0.1:{peer}"),
                format!("--cert-file={}", c("etcd-server.pem")),
                format!("--key-file={}", c("etcd-server-key.pem")),
                format!("--trusted-ca-file={}", c("etcd-ca.pem")),
                "--client-cert-auth".into(),
                format!("--peer-cert-file={}", c("etcd-peer.pem")),
                format!("--peer-key-file={}", c("etcd-peer-key.pem")),
                format!("--peer-trusted-ca-file={}", c("etcd-ca.pem")),
                "--peer-client-cert-auth".into(),
                "--log-level=warn".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("etcd (Debian etcd-server)"),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=amazonaws.com",
            "-keyout",
        ])
        .arg(&bed.tls.1)
        .arg("-out")
        .arg(&bed.tls.0)
        .output()
        .expect("openssl");
    assert!(out.status.success());

    // The stand-in API server knows the kinds the controllers apply.
    let node_cfg: Value = serde_json::from_slice(
        &std::fs::read(exported(&bed.out, "nodeconfig", "controller-")).expect("node config"),
    )
    .expect("json");
    let mut docs: Vec<Value> = node_cfg["kubernetes"]["clusterAddons"]["objects"]
        .as_array()
        .expect("objects")
        .clone();
    docs.extend(cni_docs);
    docs.push(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "x"}}));
    docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}));
    let fake = FakeApi::start(rt, &creds, &docs);
    fake.put(
        "/api/v1/namespaces/kube-system",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
    );
    common::kubeconfig_for(bed.dir.path(), "standin.kubeconfig", &fake.url);
    (bed, fake, docs)
}

fn exported(out: &Path, sub: &str, prefix: &str) -> PathBuf {
    std::fs::read_dir(out.join(sub))
        .expect("exported")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {sub}/{prefix}*"))
}

struct Node {
    name: String,
    id: String,
    root: PathBuf,
    imds: u16,
    log: PathBuf,
}

fn node(bed: &Bed, kill: &mut Kill, id: &str, ip: &str, resource: &str) -> Node {
    node_with(bed, kill, id, ip, resource, json!({}))
}

/// An instance in the emulator with the tags a node's launch template gives it (nodes
/// read their tags through ec2:DescribeTags): (id, private DNS name, private IP).
fn launch(bed: &Bed, tags: &[(String, String)]) -> (String, String, String) {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
        let sdk = bed.moto.sdk_config().await;
        let ec2 = kube_aws::aws::ec2(&sdk);
        let image = ec2.describe_images().send().await.expect("images").images()[0]
            .image_id()
            .expect("ami")
            .to_string();
        let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
        for (k, v) in tags {
            spec = spec.tags(Tag::builder().key(k).value(v).build());
        }
        let out = ec2
            .run_instances()
            .image_id(image)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Medium)
            .min_count(1)
            .max_count(1)
            .tag_specifications(spec.build())
            .send()
            .await
            .expect("RunInstances");
        let i = &out.instances()[0];
        (
            i.instance_id().expect("id").to_string(),
            i.private_dns_name().expect("dns").to_string(),
            i.private_ip_address().expect("ip").to_string(),
        )
    })
}

/// A node whose metadata adds `extra` (path under meta-data/ → value; `tags/instance/K`
/// entries become the instance's EC2 tags). With `local-hostname` in `extra`, `id` and
/// `ip` name an instance that exists already; otherwise one is launched.
fn node_with(bed: &Bed, kill: &mut Kill, id: &str, ip: &str, resource: &str, extra: Value) -> Node {
    let (id, name, ip) = match extra.get("local-hostname").and_then(|v| v.as_str()) {
        Some(dns) => (id.to_string(), dns.to_string(), ip.to_string()),
        None => {
            let mut tags = vec![
                (
                    "kube-aws:signal-stack".to_string(),
                    "demo-stack".to_string(),
                ),
                ("kube-aws:signal-resource".to_string(), resource.to_string()),
                (
                    "kubernetes.io/cluster/demo".to_string(),
                    "owned".to_string(),
                ),
            ];
            for (k, v) in extra.as_object().expect("object") {
                if let Some(t) = k.strip_prefix("tags/instance/") {
                    tags.push((t.to_string(), v.as_str().expect("tag").to_string()));
                }
            }
            launch(bed, &tags)
        }
    };
    let (id, ip) = (id.as_str(), ip.as_str());
    let root = bed.dir.path().join(id);
    std::fs::create_dir_all(&root).expect("root");
    let meta = root.join("meta.json");
    let m = "/latest/meta-data/";
    let mut md = json!({
        format!("{m}instance-id"): id, format!("{m}local-hostname"): name, format!("{m}local-ipv4"): ip,
    });
    for (k, v) in extra.as_object().expect("object") {
        if !k.starts_with("tags/") {
            md[format!("{m}{k}")] = v.clone();
        }
    }
    std::fs::write(&meta, md.to_string()).expect("meta");
    let mut child = Command::new(common::venv_bin("python"))
        .arg(common::repo().join("tests/harness/node_standin.py"))
        .arg(bed.moto.port.to_string())
        .arg(REGION)
        .arg(&bed.tls.0)
        .arg(&bed.tls.1)
        .arg(&meta)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node stand-in");
    let stdout = child.stdout.take().expect("stdout");
    kill.0.push(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("ports");
    let (imds, tls) = line.trim().split_once(' ').expect("ports");
    std::fs::write(root.join(".curlrc"), format!(
        "connect-to = \"169.254.169.254:80:127.0.0.1:{imds}\"\nconnect-to = \"::127.0.0.1:{tls}\"\ninsecure\n")).expect("curlrc");
    Node {
        name,
        id: id.into(),
        log: root.join("commands.log"),
        imds: imds.parse().expect("port"),
        root,
    }
}

/// The role's user-data stub, run as cloud-init would (bash), its paths moved under the
/// node's root; `tamper` gives it a wrong sha256 for the binary. Returns its output and
/// how long it took.
fn stub(bed: &Bed, n: &Node, role: &str, tamper: bool) -> (Output, Duration) {
    let stub: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(exported(&bed.out, "userdata", &format!("stub-{role}-")))
            .expect("stub"),
    )
    .expect("yaml");
    let cmd = stub["bootcmd"][0].as_sequence().expect("bootcmd");
    let root = n.root.display().to_string();
    let script = cmd[2]
        .as_str()
        .expect("script")
        .replace(" /opt/kube-aws/", &format!(" {root}/opt/kube-aws/"))
        .replace(" /etc/kube-aws/", &format!(" {root}/etc/kube-aws/"))
        .replace(" /etc/cloud/", &format!(" {root}/etc/cloud/"));
    let mut args: Vec<String> = cmd[3..]
        .iter()
        .map(|v| v.as_str().expect("arg").to_string())
        .collect();
    if tamper {
        args[3] = "0".repeat(64);
    }
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .args(&args)
        .env("CURL_HOME", &n.root)
        .output()
        .expect("bash");
    (out, started.elapsed())
}

fn run_stub(bed: &Bed, n: &Node, role: &str) -> Duration {
    let (out, took) = stub(bed, n, role, false);
    assert!(
        out.status.success(),
        "stub: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    took
}

/// The fetched binary as a node runs it: `kube-aws node ARGS` under the node's root, its
/// metadata from its IMDS stand-in, AWS through the SDK (credentials from IMDS, none in
/// the environment), the node's commands from the stand-ins.
fn agent(bed: &Bed, n: &Node, args: &[&str], fail: Option<&str>) -> Command {
    let mut c = Command::new(n.root.join("opt/kube-aws/bin/kube-aws"));
    c.arg("node")
        .args(args)
        .arg("--root")
        .arg(&n.root)
        .args(["--imds-endpoint", &format!("http://127.0.0.1:{}", n.imds)])
        .args([
            "--resolve",
            &format!("etcd-0.{ZONE}=127.0.0.1:{}", bed.etcd_port),
        ])
        // The API endpoint's name, which the agent waits to resolve before kubeadm
        // (the stand-in kubeadm never connects to it).
        .args(["--resolve", "k8s.demo.example.com=127.0.0.1:6443"])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bed.bins.display()))
        .env("AWS_ENDPOINT_URL", bed.moto.endpoint())
        .env("KUBE_AWS_ROOT", &n.root)
        .env("STANDIN_LOG", &n.log)
        .env("STANDIN_KUBECONFIG", &bed.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(f) = fail {
        c.env("STANDIN_FAIL", f);
    }
    c
}

fn bootstrap(bed: &Bed, n: &Node, fail: Option<&str>) -> Child {
    agent(bed, n, &["bootstrap"], fail)
        .spawn()
        .expect("node bootstrap")
}

fn calls(bed: &Bed) -> Vec<Value> {
    std::fs::read_to_string(common::testbed().join(format!("logs/calls-{}.jsonl", bed.moto.port)))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn phases(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in stdout.lines() {
        if let Some(p) = l.strip_prefix("==> ").and_then(|r| r.split(':').next())
            && !p.starts_with("done")
            && v.last().map(String::as_str) != Some(p)
        {
            v.push(p.to_string());
        }
    }
    v
}

fn node_obj(name: &str, ready: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": ready}]}})
}

#[test]
fn nodes_boot_in_order_one_controller_inits_and_failures_signal_at_once() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (bed, fake, _) = rt.block_on(setup(&rt));
    let mut kill = Kill(Vec::new());
    let a = node(
        &bed,
        &mut kill,
        "i-0000000000000000a",
        "10.0.1.10",
        "ControllerGroup",
    );
    let b = node(
        &bed,
        &mut kill,
        "i-0000000000000000b",
        "10.0.2.10",
        "ControllerGroup",
    );
    let w = node(
        &bed,
        &mut kill,
        "i-0000000000000000c",
        "10.0.1.20",
        "WorkerGroup",
    );
    for n in [&a, &b, &w] {
        fake.put(
            &format!("/api/v1/nodes/{}", n.name),
            node_obj(&n.name, "False"),
        );
    }
    let fetch = run_stub(&bed, &a, "controller");
    let size = std::fs::metadata(a.root.join("opt/kube-aws/bin/kube-aws"))
        .expect("binary")
        .len();
    eprintln!(
        "rehearsal: the stub fetched the node binary ({size} bytes), node config and cloud-config in {:.2}s",
        fetch.as_secs_f64()
    );
    run_stub(&bed, &b, "controller");
    run_stub(&bed, &w, "worker-general");

    // Ready needs the pod network: the stand-in API server's nodes turn Ready once the
    // CNI DaemonSet has been applied (what calico-node would make true).
    let flip = {
        let fake = fake.clone();
        let names: Vec<String> = [&a, &b, &w].iter().map(|n| n.name.clone()).collect();
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(120) {
                if fake
                    .object("/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node")
                    .is_some()
                {
                    for n in &names {
                        fake.put(&format!("/api/v1/nodes/{n}"), node_obj(n, "True"));
                    }
                    return true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            false
        })
    };
    let started = Instant::now();
    let (ca, cb) = (bootstrap(&bed, &a, None), bootstrap(&bed, &b, None));
    let (oa, ob) = (
        ca.wait_with_output().expect("a"),
        cb.wait_with_output().expect("b"),
    );
    for (n, o) in [(&a, &oa), (&b, &ob)] {
        assert!(
            o.status.success(),
            "{}: {}{}",
            n.id,
            text(&o.stdout),
            text(&o.stderr)
        );
        assert_eq!(
            phases(&text(&o.stdout)),
            [
                "secrets", "runtime", "kubeadm", "cni", "ready", "services", "signal"
            ]
            .map(String::from),
            "{}",
            text(&o.stdout)
        );
    }
    eprintln!(
        "rehearsal: two controllers bootstrapped in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        flip.join().expect("flip"),
        "the CNI DaemonSet was never applied"
    );

    // One controller initialised, the other joined the control plane.
    let logs = [
        std::fs::read_to_string(&a.log).expect("a log"),
        std::fs::read_to_string(&b.log).expect("b log"),
    ];
    let inits = logs
        .iter()
        .filter(|l| l.contains("kubeadm init --config /etc/kubernetes/kube-aws/kubeadm.yaml"))
        .count();
    let joins = logs
        .iter()
        .filter(|l| l.contains("kubeadm join --config /etc/kubernetes/kube-aws/kubeadm.yaml"))
        .count();
    assert_eq!((inits, joins), (1, 1), "{logs:?}");
    let init_doc = std::fs::read_dir(format!(
        "{}.d",
        if logs[0].contains("kubeadm init") {
            a.log.display()
        } else {
            b.log.display()
        }
    ))
    .expect("kept configs")
    .map(|e| std::fs::read_to_string(e.expect("e").path()).expect("read"))
    .find(|t| t.contains("kind: InitConfiguration"))
    .expect("the init configuration kubeadm received");
    for want in [
        "apiVersion: kubeadm.k8s.io/v1beta4",
        "kind: ClusterConfiguration",
        "certSANs:",
        "- k8s.demo.example.com",
        "name: cloud-provider",
        "value: external",
        "controlPlaneEndpoint: k8s.demo.example.com:6443",
        "podSubnet: 10.2.0.0/16",
        "serverTLSBootstrap: true",
        "- https://etcd-0.demo.etcd.internal:2379",
    ] {
        assert!(
            init_doc.contains(want),
            "init config lacks {want}:\n{init_doc}"
        );
    }
    assert!(!init_doc.contains("anonymous-auth"), "{init_doc}");
    let initializer = if logs[0].contains("kubeadm init") {
        &a
    } else {
        &b
    };
    assert!(
        init_doc.contains(&format!("name: {}", initializer.name)),
        "{init_doc}"
    );
    // Every step in order on the command seam too: runtime before kubeadm.
    for l in &logs {
        let apt = l.find("apt-get install").expect("apt-get");
        let kubeadm = l.find("kubeadm ").expect("kubeadm");
        let restart = l.find("systemctl restart containerd").expect("containerd");
        assert!(apt < restart && restart < kubeadm, "{l}");
    }
    // No pre-generated API server certificate reaches a controller.
    for n in [&a, &b] {
        assert!(!n.root.join("etc/kubernetes/pki/apiserver.crt").exists());
        assert!(n.root.join("etc/kubernetes/pki/ca.key").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(n.root.join("etc/kubernetes/pki/ca.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The worker joins with its private DNS name and signals after Ready.
    let ow = bootstrap(&bed, &w, None)
        .wait_with_output()
        .expect("worker");
    assert!(
        ow.status.success(),
        "{}{}",
        text(&ow.stdout),
        text(&ow.stderr)
    );
    assert_eq!(
        phases(&text(&ow.stdout)),
        [
            "secrets", "runtime", "kubeadm", "ready", "services", "signal"
        ]
        .map(String::from)
    );
    let join = std::fs::read_dir(format!("{}.d", w.log.display()))
        .expect("kept")
        .next()
        .expect("one")
        .expect("e")
        .path();
    let join = std::fs::read_to_string(join).expect("join");
    assert!(
        join.contains(&format!("name: {}", w.name)) && !join.contains("controlPlane:"),
        "{join}"
    );
    assert!(join.contains("caCertHashes:\n    - sha256:"), "{join}");
    // Workers boot with the control plane: kubeadm keeps retrying discovery this long.
    assert!(join.contains("timeouts:\n  discovery: 15m0s"), "{join}");

    let signals: Vec<Value> = calls(&bed)
        .into_iter()
        .filter(|c| c["action"] == "SignalResource")
        .collect();
    for n in [&a, &b, &w] {
        let mine: Vec<&Value> = signals
            .iter()
            .filter(|s| s["UniqueId"] == n.id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{signals:?}");
        assert_eq!(mine[0]["Status"], "SUCCESS");
    }

    // An injected failure at each step sends FAILURE within seconds (apt-get is tried
    // three times, 5 s apart, as a node waits out apt's first-boot lock holders).
    for (i, fail) in ["apt-get", "systemctl:restart", "kubeadm"]
        .iter()
        .enumerate()
    {
        let id = format!("i-00000000000000f{i:02}");
        let n = node(
            &bed,
            &mut kill,
            &id,
            &format!("10.0.3.{}", 10 + i),
            "WorkerGroup",
        );
        run_stub(&bed, &n, "worker-general");
        let t = Instant::now();
        let o = bootstrap(&bed, &n, Some(fail))
            .wait_with_output()
            .expect("bootstrap");
        let took = t.elapsed();
        assert!(!o.status.success());
        let failed: Vec<Value> = calls(&bed)
            .into_iter()
            .filter(|c| c["action"] == "SignalResource" && c["UniqueId"] == n.id.as_str())
            .collect();
        assert_eq!(failed.len(), 1, "{fail}: {failed:?}\n{}", text(&o.stderr));
        assert_eq!(failed[0]["Status"], "FAILURE");
        assert!(took < Duration::from_secs(30), "{fail}: {took:?}");
        eprintln!(
            "rehearsal: {fail} failure → FAILURE in {:.2}s",
            took.as_secs_f64()
        );
    }

    // A secret that cannot be fetched (its ciphertext is not where the node config
    // says) fails the secrets step.
    let sx = node(&bed, &mut kill, "", "", "WorkerGroup");
    run_stub(&bed, &sx, "worker-general");
    let cfg_path = sx.root.join("etc/kube-aws/node.json");
    let broken = std::fs::read_to_string(&cfg_path)
        .expect("node config")
        .replace(
            "credentials/kubelet-bootstrap-token-",
            "credentials/missing-",
        );
    std::fs::write(&cfg_path, broken).expect("node config");
    let t = Instant::now();
    let o = bootstrap(&bed, &sx, None).wait_with_output().expect("sx");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("credentials/missing-"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(signal_of(&bed, &sx.id), ["FAILURE"]);
    eprintln!(
        "rehearsal: a missing secret → FAILURE in {:.2}s",
        t.elapsed().as_secs_f64()
    );

    // A fetch that does not match its sha256: the stub itself signals FAILURE (it reads
    // which resource to signal from the instance's tags, ec2:DescribeTags).
    let sf = node(&bed, &mut kill, "", "", "WorkerGroup");
    let (o, took) = stub(&bed, &sf, "worker-general", true);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("fetch failed"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(signal_of(&bed, &sf.id), ["FAILURE"]);
    eprintln!(
        "rehearsal: a corrupt binary fetch → the stub's FAILURE in {:.2}s",
        took.as_secs_f64()
    );

    // The lone-controller replacement: every controller that initialised or joined is
    // gone (terminated in EC2), so the init lock is stale. The new controller takes it
    // over and initialises again on the existing etcd data, rather than waiting for
    // an instance that will never finish.
    rt.block_on(async {
        let sdk = bed.moto.sdk_config().await;
        kube_aws::aws::ec2(&sdk)
            .terminate_instances()
            .instance_ids(&a.id)
            .instance_ids(&b.id)
            .send()
            .await
            .expect("TerminateInstances");
    });
    let c4 = node(
        &bed,
        &mut kill,
        "i-00000000000000c04",
        "10.0.3.40",
        "ControllerGroup",
    );
    fake.put(
        &format!("/api/v1/nodes/{}", c4.name),
        node_obj(&c4.name, "True"),
    );
    run_stub(&bed, &c4, "controller");
    let t = Instant::now();
    let o = bootstrap(&bed, &c4, None).wait_with_output().expect("c4");
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).contains("no longer exists: taken over"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        std::fs::read_to_string(&c4.log)
            .expect("c4 log")
            .contains("kubeadm init --config"),
        "the replacement initialises"
    );
    assert_eq!(signal_of(&bed, &c4.id), ["SUCCESS"]);
    eprintln!(
        "rehearsal: the lone controller replaced → stale lock taken over, init in {:.2}s",
        t.elapsed().as_secs_f64()
    );

    // A CNI manifest that is not the pinned one is refused before anything is applied.
    std::fs::write(bed.dir.path().join("www/calico.yaml"), "kind: Tampered\n").expect("tamper");
    let c3 = node(
        &bed,
        &mut kill,
        "i-00000000000000c03",
        "10.0.3.30",
        "ControllerGroup",
    );
    run_stub(&bed, &c3, "controller");
    let t = Instant::now();
    let o = bootstrap(&bed, &c3, None).wait_with_output().expect("c3");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("refusing to apply it"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(signal_of(&bed, &c3.id), ["FAILURE"]);
    eprintln!(
        "rehearsal: a tampered CNI manifest → FAILURE in {:.2}s",
        t.elapsed().as_secs_f64()
    );

    // A node that never becomes Ready fails when its wait runs out.
    let r = node(
        &bed,
        &mut kill,
        "i-00000000000000r01",
        "10.0.4.10",
        "WorkerGroup",
    );
    run_stub(&bed, &r, "worker-general");
    let t = Instant::now();
    let o = agent(&bed, &r, &["bootstrap", "--ready-timeout", "3"], None)
        .output()
        .expect("r");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("was not Ready within 3s"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(signal_of(&bed, &r.id), ["FAILURE"]);
    assert!(t.elapsed() < Duration::from_secs(30));
    eprintln!(
        "rehearsal: never Ready (3 s wait) → FAILURE in {:.2}s",
        t.elapsed().as_secs_f64()
    );

    // An etcd member: it attaches its own volume (in moto) and claims its DNS name (a
    // moto hosted zone), finds the volume by its EBS identity, mounts it, founds the
    // cluster (it is etcd-0 and no snapshot exists), writes the static pod, and is
    // healthy with every member (the real etcd above stands for the one kubelet would
    // start).
    let (volume, zone_id) = rt.block_on(async {
        let sdk = bed.moto.sdk_config().await;
        let v = kube_aws::aws::ec2(&sdk)
            .create_volume()
            .availability_zone("us-east-1a")
            .size(10)
            .send()
            .await
            .expect("CreateVolume");
        let z = aws_sdk_route53::Client::new(&sdk)
            .create_hosted_zone()
            .name(ZONE)
            .caller_reference("rehearsal")
            .send()
            .await
            .expect("CreateHostedZone");
        (
            v.volume_id().expect("id").to_string(),
            z.hosted_zone().expect("zone").id().to_string(),
        )
    });
    let e = node_with(
        &bed,
        &mut kill,
        "i-00000000000000e00",
        "10.0.5.10",
        "Etcd0",
        json!({
            "tags/instance/kube-aws:etcd-member": "etcd-0",
            "tags/instance/kube-aws:etcd-volume": volume,
            "tags/instance/kube-aws:etcd-zone-id": zone_id,
        }),
    );
    // udev's link of the attached NVMe volume, by its serial (the volume id).
    let by_id = e.root.join(format!(
        "dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}",
        volume.replace('-', "")
    ));
    std::fs::create_dir_all(by_id.parent().expect("dir")).expect("by-id");
    std::fs::write(&by_id, "").expect("device");
    run_stub(&bed, &e, "etcd");
    let o = bootstrap(&bed, &e, None).wait_with_output().expect("etcd");
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(
        phases(&out),
        ["secrets", "volume", "runtime", "etcd", "signal"].map(String::from)
    );
    for want in [
        "founding a cluster of one",
        "all 1 members healthy",
        &format!("etcd-0.{ZONE} → "),
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let elog = std::fs::read_to_string(&e.log).expect("etcd log");
    let dev = format!(
        "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}",
        volume.replace('-', "")
    );
    for want in [
        format!("mkfs.ext4 -q -L etcd-data {dev}"),
        "mount /var/lib/etcd".to_string(),
        "findmnt --mountpoint /var/lib/etcd".to_string(),
        "systemctl enable --now kubelet".to_string(),
        "kubelet=1.34.*".to_string(),
    ] {
        assert!(elog.contains(&want), "{want}: {elog}");
    }
    assert!(e.root.join("var/lib/etcd/volume").is_dir());
    let pod = std::fs::read_to_string(e.root.join("etc/kubernetes/manifests/etcd.yaml"))
        .expect("static pod");
    for want in [
        "--name=etcd-0",
        "--client-cert-auth=true",
        "--initial-cluster-state=new",
        &format!("--initial-cluster=etcd-0=https://etcd-0.{ZONE}:2380"),
        "path: /var/lib/etcd/volume",
        "type: Directory",
    ] {
        assert!(pod.contains(want), "{want}: {pod}");
    }
    assert!(
        std::fs::read_to_string(e.root.join("etc/fstab"))
            .expect("fstab")
            .contains("LABEL=etcd-data /var/lib/etcd ext4")
    );
    rt.block_on(async {
        let sdk = bed.moto.sdk_config().await;
        let v = kube_aws::aws::ec2(&sdk)
            .describe_volumes()
            .volume_ids(&volume)
            .send()
            .await
            .expect("DescribeVolumes");
        assert_eq!(
            v.volumes()[0].attachments()[0].instance_id(),
            Some(e.id.as_str()),
            "the member attached its own volume"
        );
        let r = aws_sdk_route53::Client::new(&sdk)
            .list_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .send()
            .await
            .expect("records");
        assert!(
            r.resource_record_sets()
                .iter()
                .any(|s| s.name().starts_with("etcd-0.")),
            "the member claimed its name"
        );
    });
    assert_eq!(signal_of(&bed, &e.id), ["SUCCESS"]);

    // Draining: an instance of the worker group that Auto Scaling is terminating. The
    // kubelet and the drainer use the same name (the private DNS name).
    let (wid, wdns, wip) = rt.block_on(worker_instance(&bed));
    let d = node_with(
        &bed,
        &mut kill,
        &wid,
        &wip,
        "WorkerGroup",
        json!({"local-hostname": wdns, "autoscaling/target-lifecycle-state": "InService"}),
    );
    fake.put(&format!("/api/v1/nodes/{wdns}"), node_obj(&wdns, "True"));
    run_stub(&bed, &d, "worker-general");
    let o = bootstrap(&bed, &d, None).wait_with_output().expect("d");
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let dj = std::fs::read_dir(format!("{}.d", d.log.display()))
        .expect("kept")
        .next()
        .expect("one")
        .expect("e")
        .path();
    assert!(
        std::fs::read_to_string(dj)
            .expect("join")
            .contains(&format!("name: {wdns}"))
    );
    let pod = |ns: &str, name: &str, node: &str, meta: Value| {
        let mut m = json!({"name": name, "namespace": ns});
        for (k, v) in meta.as_object().expect("meta") {
            m[k] = v.clone();
        }
        fake.put(&format!("/api/v1/namespaces/{ns}/pods/{name}"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": {"nodeName": node, "containers": []}}));
    };
    pod(
        "apps",
        "web",
        &wdns,
        json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1", "controller": true}],
        "annotations": {"test.kube-aws/pdb-blocks": "1"}}),
    );
    pod(
        "kube-system",
        "calico-node-x",
        &wdns,
        json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "calico-node", "uid": "u2", "controller": true}]}),
    );
    pod(
        "kube-system",
        "static-x",
        &wdns,
        json!({"annotations": {"kubernetes.io/config.mirror": "abc"}}),
    );
    pod("apps", "elsewhere", "ip-10-9-9-9.ec2.internal", json!({}));
    let o = agent(&bed, &d, &["watch", "--once"], None)
        .output()
        .expect("watch");
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).contains("no interruption notice"),
        "{}",
        text(&o.stdout)
    );
    let meta = d.root.join("meta.json");
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).expect("meta")).expect("json");
    m["/latest/meta-data/autoscaling/target-lifecycle-state"] = json!("Terminated");
    std::fs::write(&meta, m.to_string()).expect("meta");
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let o = agent(&bed, &d, &["watch", "--once"], None)
        .output()
        .expect("watch");
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    let (evicted, completed) = (
        out.find("evicted apps/web").expect(&out),
        out.find("lifecycle action kube-aws-drain").expect(&out),
    );
    assert!(
        out.contains(&format!("cordoned {wdns}")) && evicted < completed,
        "{out}"
    );
    assert_eq!(
        fake.object(&format!("/api/v1/nodes/{wdns}")).expect("node")["spec"]["unschedulable"],
        true
    );
    assert!(fake.object("/api/v1/namespaces/apps/pods/web").is_none());
    for kept in [
        "kube-system/pods/calico-node-x",
        "kube-system/pods/static-x",
        "apps/pods/elsewhere",
    ] {
        assert!(
            fake.object(&format!("/api/v1/namespaces/{kept}")).is_some(),
            "{kept}"
        );
    }
    let done: Vec<Value> = calls(&bed)
        .into_iter()
        .filter(|c| c["action"] == "CompleteLifecycleAction")
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(
        (
            done[0]["InstanceId"].as_str(),
            done[0]["LifecycleHookName"].as_str(),
            done[0]["LifecycleActionResult"].as_str()
        ),
        (Some(wid.as_str()), Some("kube-aws-drain"), Some("CONTINUE"))
    );
    // The budget refused the first eviction: the action came only after the retry.
    assert!(
        done[0]["time"].as_f64().expect("time") - t0 >= 4.5,
        "{done:?}"
    );

    // Kubelet serving certificates: approved only for the instance's own addresses.
    let csr = |name: &str, node: &str, ips: &[&str]| {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let mut sans = vec![rcgen::SanType::DnsName(node.try_into().expect("dns"))];
        sans.extend(
            ips.iter()
                .map(|i| rcgen::SanType::IpAddress(i.parse().expect("ip"))),
        );
        p.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = p.serialize_request(&key).expect("csr").pem().expect("pem");
        fake.put(&format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"), json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"signerName": "kubernetes.io/kubelet-serving", "username": format!("system:node:{node}"),
                "groups": ["system:nodes", "system:authenticated"], "usages": ["digital signature", "server auth"],
                "request": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem)}}));
    };
    csr("csr-own", &wdns, &[&wip]);
    csr("csr-foreign-ip", &wdns, &[&wip, "10.9.9.9"]);
    csr("csr-no-instance", "ip-10-9-9-9.ec2.internal", &["10.9.9.9"]);
    let o = agent(&bed, &a, &["approve-csrs", "--once"], None)
        .output()
        .expect("approve");
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).contains("1 approved, 2 refused"),
        "{}",
        text(&o.stdout)
    );
    let state = |n: &str| {
        fake.object(&format!(
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/{n}"
        ))
        .expect("csr")["status"]["conditions"][0]["type"]
            .clone()
    };
    assert_eq!(state("csr-own"), "Approved");
    assert_eq!(state("csr-foreign-ip"), Value::Null);
    assert_eq!(state("csr-no-instance"), Value::Null);

    // Bootstrap token rotation (kube-aws-token.timer): the token `up` published has no
    // Secret in this API, so a fresh one is created and published; the next run reads
    // the published token back from S3 (KMS) and finds its Secret valid for 24 h.
    let rotate = || {
        let o = agent(&bed, &a, &["rotate-token"], None)
            .output()
            .expect("rotate-token");
        assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
        text(&o.stdout)
    };
    // A token from before rotation (`ttl: 0s`): no expiration, so TokenCleaner would
    // keep it forever.
    let legacy = "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef";
    fake.put(
        legacy,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "data": {"token-id": "YWJjZGVm"}}),
    );
    let first = rotate();
    assert!(
        fake.object(legacy).expect("legacy")["data"]["expiration"].is_string(),
        "the legacy token got no expiration"
    );
    let id = first
        .strip_prefix("bootstrap token ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    assert!(first.contains("created (expires "), "{first}");
    let secret = fake
        .object(&format!(
            "/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}"
        ))
        .expect("the token's Secret");
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    let second = rotate();
    assert!(
        second.starts_with(&format!("bootstrap token {id} is valid until ")),
        "{second}"
    );
    drop(kill);
}

fn signal_of(bed: &Bed, id: &str) -> Vec<String> {
    calls(bed)
        .into_iter()
        .filter(|c| c["action"] == "SignalResource" && c["UniqueId"] == id)
        .map(|c| c["Status"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// An instance moto launched for the worker pool's group: (id, private DNS name, IP).
async fn worker_instance(bed: &Bed) -> (String, String, String) {
    let sdk = bed.moto.sdk_config().await;
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let out = asg
        .describe_auto_scaling_instances()
        .send()
        .await
        .expect("asg instances");
    let id = out
        .auto_scaling_instances()
        .iter()
        .find(|i| {
            i.auto_scaling_group_name()
                .is_some_and(|g| g.contains("WorkerGroup"))
        })
        .and_then(|i| i.instance_id())
        .expect("a worker instance")
        .to_string();
    let ec2 = kube_aws::aws::ec2(&sdk)
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("instance");
    let i = ec2.reservations()[0].instances()[0].clone();
    (
        id,
        i.private_dns_name().expect("dns").to_string(),
        i.private_ip_address().expect("ip").to_string(),
    )
}
