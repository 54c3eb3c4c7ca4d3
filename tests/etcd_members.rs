//! The etcd member logic of the node agent against a real etcd (Debian etcd-server 3.4)
//! on loopback, with the cluster's own certificates and TLS on client and peer traffic.
//!
//! The agent's own code decides and changes the membership (`node::etcd::decide`,
//! `deploy::node::etcd::prepare`), and gives etcd its flags (`node::etcd::member_args`);
//! the test starts `etcd` with those flags, standing in for the kubelet that runs the
//! static pod on a member. Two scenarios:
//! 1. replacement: etcd-0 founds the cluster, etcd-1 and etcd-2 join one after another;
//!    etcd-1 then loses its data (its volume replaced), and the agent removes its stale
//!    entry and adds it back. A writer puts a key every 20 ms throughout: every write
//!    succeeds, and every key is there at the end.
//! 2. restore: keys, a snapshot, then every member loses its data. etcd-0 restores the
//!    snapshot into a cluster of one (with `etcdctl snapshot restore` of etcd 3.4, which
//!    takes the flags `restore_args` gives etcd 3.5's `etcdutl`), the others join, and
//!    the keys are back.

mod common;

use base64::Engine;
use kube_aws::deploy::node::etcd::{Cluster, prepare, wait_all_healthy};
use kube_aws::node::etcd::{self, Me, Start};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Bed {
    dir: tempfile::TempDir,
    pki: PathBuf,
    ports: Vec<u16>,
    procs: Vec<Option<Child>>,
    logs: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("port"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

impl Bed {
    fn new() -> Bed {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::copy(
            common::repo().join("examples/ha-multi-az.yaml"),
            dir.path().join("cluster.yaml"),
        )
        .expect("copy");
        let out = common::run_in(dir.path(), &["render", "credentials", "--generate-ca"]);
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        // The file names of a member's /etc/kubernetes/pki/etcd.
        let creds = dir.path().join("credentials");
        let pki = dir.path().join("pki");
        std::fs::create_dir_all(&pki).expect("pki");
        for (from, to) in [
            ("etcd-ca.pem", "ca.crt"),
            ("etcd-server.pem", "server.crt"),
            ("etcd-server-key.pem", "server.key"),
            ("etcd-peer.pem", "peer.crt"),
            ("etcd-peer-key.pem", "peer.key"),
            ("etcd-client.pem", "client.crt"),
            ("etcd-client-key.pem", "client.key"),
        ] {
            std::fs::copy(creds.join(from), pki.join(to)).expect("pki file");
        }
        let logs = common::testbed().join("logs");
        std::fs::create_dir_all(&logs).expect("logs");
        Bed {
            dir,
            pki,
            ports: ports(6),
            procs: vec![None, None, None],
            logs,
        }
    }

    fn client(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.ports[2 * i])
    }

    fn me(&self, i: usize) -> Me {
        Me {
            name: format!("etcd-{i}"),
            peer_url: format!("https://127.0.0.1:{}", self.ports[2 * i + 1]),
            first: i == 0,
        }
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("member-{i}/data"))
    }

    fn http(&self) -> reqwest::Client {
        let ca = std::fs::read(self.pki.join("ca.crt")).expect("ca");
        let mut id = std::fs::read(self.pki.join("client.crt")).expect("cert");
        id.extend(std::fs::read(self.pki.join("client.key")).expect("key"));
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca"))
            .identity(reqwest::Identity::from_pem(&id).expect("identity"))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    }

    /// The agent's view of the other members of member `i`.
    fn peers(&self, i: usize) -> Cluster {
        Cluster {
            http: self.http(),
            endpoints: (0..3).filter(|j| *j != i).map(|j| self.client(j)).collect(),
        }
    }

    /// What the static pod does: etcd with the flags the agent chose.
    fn start(&mut self, i: usize, cluster: &str, state: &str) {
        let me = self.me(i);
        let urls = etcd::Urls {
            listen_client: self.client(i),
            advertise_client: self.client(i),
            listen_peer: me.peer_url.clone(),
            pki: self.pki.display().to_string(),
        };
        let data = self.data(i).display().to_string();
        let mut args = etcd::member_args(&me, &urls, &data, "kube-aws-test", (cluster, state));
        args.push("--log-level=warn".into());
        let log = std::fs::File::create(
            self.logs
                .join(format!("etcd-members-{}-{i}.log", self.ports[0])),
        )
        .expect("log");
        let child = Command::new("etcd")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("etcd runs (Debian etcd-server; scripts/testbed-setup.sh installs it)");
        self.procs[i] = Some(child);
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A member's boot, as the agent runs it, then etcd.
    async fn boot(&mut self, i: usize, snapshot: Option<String>, grace: Duration) -> Start {
        let has_data = self.data(i).join("member").exists();
        let deadline = Instant::now() + Duration::from_secs(60);
        let (start, cluster, state) = prepare(
            &self.peers(i),
            &self.me(i),
            has_data,
            snapshot,
            grace,
            deadline,
        )
        .await
        .expect("prepare");
        if let Start::Restore { snapshot } = &start {
            let mut restore = Command::new("etcdctl");
            restore.env("ETCDCTL_API", "3").args(etcd::restore_args(
                &self.me(i),
                snapshot,
                &self.data(i).display().to_string(),
                "kube-aws-test",
            ));
            let out = restore.output().expect("etcdctl");
            assert!(
                out.status.success(),
                "restore: {}",
                common::text(&out.stderr)
            );
        }
        self.start(i, &cluster, state);
        let local = Cluster {
            http: self.http(),
            endpoints: vec![self.client(i)],
        };
        wait_all_healthy(&local, Instant::now() + Duration::from_secs(60))
            .await
            .expect("the whole cluster is healthy after the boot");
        start
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn put(http: &reqwest::Client, endpoints: &[String], key: &str, value: &str) -> bool {
    for ep in endpoints {
        if let Ok(r) = http
            .post(format!("{ep}/v3/kv/put"))
            .json(&serde_json::json!({"key": b64(key), "value": b64(value)}))
            .send()
            .await
            && r.status().is_success()
        {
            return true;
        }
    }
    false
}

async fn count(http: &reqwest::Client, ep: &str, prefix: &str) -> u64 {
    // range_end = prefix with its last byte incremented: every key under the prefix.
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let v: serde_json::Value = http
        .post(format!("{ep}/v3/kv/range"))
        .json(&serde_json::json!({
            "key": b64(prefix),
            "range_end": base64::engine::general_purpose::STANDARD.encode(&end),
            "count_only": true,
            "serializable": false,
        }))
        .send()
        .await
        .expect("range")
        .json()
        .await
        .expect("json");
    v["count"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .or_else(|| v["count"].as_u64())
        .unwrap_or(0)
}

fn wipe(p: &Path) {
    if p.exists() {
        std::fs::remove_dir_all(p).expect("wipe");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_data_is_replaced_with_no_write_lost() {
    let mut bed = Bed::new();
    let t = Instant::now();
    // Creation, one member after another, as the Auto Scaling groups are chained.
    assert_eq!(bed.boot(0, None, Duration::ZERO).await, Start::Found);
    for i in [1, 2] {
        assert_eq!(
            bed.boot(i, None, Duration::ZERO).await,
            Start::Join {
                remove: None,
                add: true
            }
        );
    }
    let created = t.elapsed();
    let before = bed.peers(1).members().await.expect("members");
    assert_eq!(before.len(), 3);
    let old_id = before
        .iter()
        .find(|m| m.name == "etcd-1")
        .expect("etcd-1")
        .id;

    // A writer through the members that stay, every 20 ms, for the whole replacement.
    let (http, eps) = (bed.http(), vec![bed.client(0), bed.client(2)]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (stop, ok, failed, http, eps) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            http.clone(),
            eps.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if put(&http, &eps, &format!("/w/{n:08}"), "v").await {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // etcd-1's instance and volume are replaced: no data.
    let t = Instant::now();
    bed.stop(1);
    wipe(&bed.data(1));
    let start = bed.boot(1, None, Duration::ZERO).await;
    assert_eq!(
        start,
        Start::Join {
            remove: Some(old_id),
            add: true
        }
    );
    let replaced = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");

    let after = bed.peers(1).members().await.expect("members");
    assert_eq!(after.len(), 3, "{after:?}");
    let new = after
        .iter()
        .find(|m| m.name == "etcd-1")
        .expect("etcd-1 is back");
    assert_ne!(
        new.id, old_id,
        "etcd-1 is a new member, not the stale entry"
    );
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "the cluster stayed writable");
    assert!(ok > 20, "the writer ran throughout ({ok} writes)");
    // Every key written is on every member, the new one included.
    for i in 0..3 {
        assert_eq!(count(&http, &bed.client(i), "/w/").await, ok, "member {i}");
    }
    eprintln!(
        "etcd members: created 3 in {:.1}s; replaced etcd-1 in {:.1}s with {ok} writes, 0 failed, all {ok} keys on every member",
        created.as_secs_f64(),
        replaced.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_waits_for_the_first_and_every_member_lost_restores_the_snapshot() {
    let mut bed = Bed::new();
    // Not the first member, no cluster: it waits for etcd-0 (here, until its deadline).
    let r = prepare(
        &bed.peers(1),
        &bed.me(1),
        false,
        None,
        Duration::ZERO,
        Instant::now() + Duration::from_secs(1),
    )
    .await;
    assert!(format!("{:#}", r.expect_err("waits")).contains("etcd-0 founds it"));

    assert_eq!(bed.boot(0, None, Duration::ZERO).await, Start::Found);
    bed.boot(1, None, Duration::ZERO).await;
    bed.boot(2, None, Duration::ZERO).await;
    let http = bed.http();
    for n in 0..100 {
        assert!(put(&http, &[bed.client(0)], &format!("/r/{n:03}"), "kept").await);
    }
    // A snapshot, as the scheduled etcd-snapshot takes it (etcdctl snapshot save).
    let snap = bed.dir.path().join("20261203T000000Z.db");
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", bed.client(0)))
        .arg(format!("--cacert={}", bed.pki.join("ca.crt").display()))
        .arg(format!("--cert={}", bed.pki.join("client.crt").display()))
        .arg(format!("--key={}", bed.pki.join("client.key").display()))
        .args(["snapshot", "save", &snap.display().to_string()])
        .output()
        .expect("etcdctl");
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    // Written after the snapshot: lost with the data, as a restore implies.
    assert!(put(&http, &[bed.client(0)], "/after", "x").await);

    // Every member loses its data.
    for i in 0..3 {
        bed.stop(i);
        wipe(&bed.data(i));
    }
    let t = Instant::now();
    let key = snap.display().to_string();
    let latest =
        etcd::latest_snapshot([key.as_str(), "elsewhere/etcd-snapshots/20200101T000000Z.db"]);
    assert_eq!(
        bed.boot(0, latest, Duration::from_secs(2)).await,
        Start::Restore { snapshot: key }
    );
    for i in [1, 2] {
        assert!(matches!(
            bed.boot(i, None, Duration::ZERO).await,
            Start::Join { .. }
        ));
    }
    for i in 0..3 {
        assert_eq!(count(&http, &bed.client(i), "/r/").await, 100, "member {i}");
        assert_eq!(count(&http, &bed.client(i), "/after").await, 0);
    }
    assert_eq!(bed.peers(0).members().await.expect("members").len(), 3);
    eprintln!(
        "etcd restore: every member lost; restored 100 keys and re-formed 3 members in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}
