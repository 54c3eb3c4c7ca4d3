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
    let mut c = std::fs::read_to_string(&yaml).expect("cluster.yaml");
    c.push_str(&format!(
        "cni:\n  manifest:\n    url: {url}\n    sha256: {sha}\n"
    ));
    std::fs::write(&yaml, c).expect("cluster.yaml");
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
        "lsblk",
        "blkid",
        "mkfs.ext4",
        "mount",
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
    let name = format!("ip-{}.ec2.internal", ip.replace('.', "-"));
    let root = bed.dir.path().join(id);
    std::fs::create_dir_all(&root).expect("root");
    let meta = root.join("meta.json");
    let m = "/latest/meta-data/";
    std::fs::write(&meta, json!({
        format!("{m}instance-id"): id, format!("{m}local-hostname"): name, format!("{m}local-ipv4"): ip,
        format!("{m}tags/instance/kube-aws:signal-stack"): "demo-stack",
        format!("{m}tags/instance/kube-aws:signal-resource"): resource,
    }).to_string()).expect("meta");
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
/// node's root. Returns how long the fetch took.
fn run_stub(bed: &Bed, n: &Node, role: &str) -> Duration {
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
    let args: Vec<&str> = cmd[3..].iter().map(|v| v.as_str().expect("arg")).collect();
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .args(&args)
        .env("CURL_HOME", &n.root)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "stub: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    started.elapsed()
}

fn bootstrap(bed: &Bed, n: &Node, fail: Option<&str>) -> Child {
    let mut c = Command::new(n.root.join("opt/kube-aws/bin/kube-aws"));
    c.args(["node", "bootstrap", "--root"])
        .arg(&n.root)
        .args(["--imds-endpoint", &format!("http://127.0.0.1:{}", n.imds)])
        .args([
            "--resolve",
            &format!("etcd-0.{ZONE}=127.0.0.1:{}", bed.etcd_port),
        ])
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
    c.spawn().expect("node bootstrap")
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
                "secrets", "runtime", "kubeadm", "cni", "services", "signal", "done in"
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
            "secrets", "runtime", "kubeadm", "ready", "services", "signal", "done in"
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

    // An injected failure at each step sends FAILURE within seconds.
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
            .filter(|c| c["action"] == "SignalResource" && c["UniqueId"] == id.as_str())
            .collect();
        assert_eq!(failed.len(), 1, "{fail}: {failed:?}\n{}", text(&o.stderr));
        assert_eq!(failed[0]["Status"], "FAILURE");
        assert!(took < Duration::from_secs(30), "{fail}: {took:?}");
        eprintln!(
            "rehearsal: {fail} failure → FAILURE in {:.2}s",
            took.as_secs_f64()
        );
    }
    drop(kill);
}
