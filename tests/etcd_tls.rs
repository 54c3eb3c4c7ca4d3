//! The generated etcd certificates work in a real etcd (Debian etcd-server 3.4): a
//! three-member cluster on loopback with TLS on client and peer traffic and
//! --client-cert-auth / --peer-client-cert-auth. etcdctl with our etcd-client and
//! apiserver-etcd-client certificates can write and read; a client without a
//! certificate, or with a certificate from the cluster CA, is rejected.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Etcd(Vec<Child>);

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ports(n: usize) -> Vec<u16> {
    // Hold every listener until all ports are chosen, so none repeats.
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("port"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

fn etcdctl(creds: &Path, endpoint: &str, tls: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", creds.join("etcd-ca.pem").display()))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=5s");
    for (flag, value) in tls {
        cmd.arg(format!("--{flag}={value}"));
    }
    cmd.args(args)
        .output()
        .expect("etcdctl runs (Debian etcd-client; scripts/testbed-setup.sh installs it)")
}

#[test]
fn generated_certificates_secure_a_real_etcd_cluster() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        common::repo().join("examples/ha-multi-az.yaml"),
        dir.path().join("cluster.yaml"),
    )
    .expect("copy");
    let out = common::run_in(dir.path(), &["render", "credentials", "--generate-ca"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let creds = dir.path().join("credentials");
    let c = |f: &str| creds.join(f).display().to_string();

    let p = ports(6);
    let peer_url = |i: usize| format!("https://127.0.0.1:{}", p[2 * i + 1]);
    let client_url = |i: usize| format!("https://127.0.0.1:{}", p[2 * i]);
    let initial: Vec<String> = (0..3)
        .map(|i| format!("etcd-{i}={}", peer_url(i)))
        .collect();
    let logs = common::testbed().join("logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let mut members = Etcd(Vec::new());
    for i in 0..3 {
        let log = std::fs::File::create(logs.join(format!("etcd-{}-{i}.log", p[0]))).expect("log");
        let child = Command::new("etcd")
            .args([
                &format!("--name=etcd-{i}"),
                &format!(
                    "--data-dir={}",
                    dir.path().join(format!("data-{i}")).display()
                ),
                &format!("--listen-client-urls={}", client_url(i)),
                &format!("--advertise-client-urls={}", client_url(i)),
                &format!("--listen-peer-urls={}", peer_url(i)),
                &format!("--initial-advertise-peer-urls={}", peer_url(i)),
                &format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-state=new",
                "--initial-cluster-token=kube-aws-test",
                &format!("--cert-file={}", c("etcd-server.pem")),
                &format!("--key-file={}", c("etcd-server-key.pem")),
                &format!("--trusted-ca-file={}", c("etcd-ca.pem")),
                "--client-cert-auth",
                &format!("--peer-cert-file={}", c("etcd-peer.pem")),
                &format!("--peer-key-file={}", c("etcd-peer-key.pem")),
                &format!("--peer-trusted-ca-file={}", c("etcd-ca.pem")),
                "--peer-client-cert-auth",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("etcd runs (Debian etcd-server; scripts/testbed-setup.sh installs it)");
        members.0.push(child);
    }

    let endpoints = (0..3).map(client_url).collect::<Vec<_>>().join(",");
    let client = vec![
        ("cert", c("etcd-client.pem")),
        ("key", c("etcd-client-key.pem")),
    ];
    // The cluster is healthy once a quorum has formed over peer TLS.
    let start = Instant::now();
    loop {
        let out = etcdctl(&creds, &endpoints, &client, &["endpoint", "health"]);
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "etcd never became healthy: {}",
            common::text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let put = etcdctl(
        &creds,
        &endpoints,
        &client,
        &["put", "/kube-aws/test", "hello"],
    );
    assert!(put.status.success(), "{}", common::text(&put.stderr));
    let apiserver = vec![
        ("cert", c("apiserver-etcd-client.pem")),
        ("key", c("apiserver-etcd-client-key.pem")),
    ];
    let get = etcdctl(
        &creds,
        &client_url(2),
        &apiserver,
        &["get", "/kube-aws/test", "--print-value-only"],
    );
    assert!(get.status.success(), "{}", common::text(&get.stderr));
    assert_eq!(common::text(&get.stdout).trim(), "hello");
    let members_out = etcdctl(&creds, &client_url(0), &client, &["member", "list"]);
    assert_eq!(
        common::text(&members_out.stdout).lines().count(),
        3,
        "three members joined over peer TLS"
    );

    // No client certificate: rejected.
    let anon = etcdctl(&creds, &client_url(0), &[], &["get", "/kube-aws/test"]);
    assert!(
        !anon.status.success(),
        "a client without a certificate was let in"
    );
    // A certificate from the cluster CA (admin): rejected, etcd trusts only its own CA.
    let admin = vec![("cert", c("admin.pem")), ("key", c("admin-key.pem"))];
    let other_ca = etcdctl(&creds, &client_url(0), &admin, &["get", "/kube-aws/test"]);
    assert!(
        !other_ca.status.success(),
        "a certificate from another CA was let in"
    );
}
