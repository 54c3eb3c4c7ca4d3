//! `render credentials` and `show certificates`: real openssl checks of every chain
//! and usage, distinct keys, file modes, the .gitignore, minimal re-issue on change,
//! --force backups, --rotate, bring-your-own CA checks.

mod common;

use common::{run_in, text};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const CAS: [&str; 3] = ["ca", "front-proxy-ca", "etcd-ca"];
/// (leaf, its CA, server auth, client auth)
const LEAVES: [(&str, &str, bool, bool); 10] = [
    ("apiserver", "ca", true, false),
    ("apiserver-kubelet-client", "ca", false, true),
    ("kube-controller-manager", "ca", false, true),
    ("kube-scheduler", "ca", false, true),
    ("admin", "ca", false, true),
    ("front-proxy-client", "front-proxy-ca", false, true),
    ("etcd-server", "etcd-ca", true, true),
    ("etcd-peer", "etcd-ca", true, true),
    ("etcd-client", "etcd-ca", false, true),
    ("apiserver-etcd-client", "etcd-ca", false, true),
];

/// A cluster directory made by `init` (so it has the real .gitignore), with the HA
/// example's cluster.yaml, `edit` applied to it.
fn cluster(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run_in(
        dir.path(),
        &[
            "init",
            "--cluster-name",
            "prod",
            "--region",
            "us-west-2",
            "--availability-zone",
            "us-west-2a",
            "--external-dns-name",
            "k8s.example.com",
            "--no-record-set",
            "--kms-key-arn",
            "arn:aws:kms:us-west-2:123456789012:key/abc",
            "--s3-uri",
            "s3://kube-aws-assets/clusters",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ha =
        std::fs::read_to_string(common::repo().join("examples/ha-multi-az.yaml")).expect("example");
    std::fs::write(dir.path().join("cluster.yaml"), edit(ha)).expect("write");
    dir
}

fn render(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["render", "credentials"];
    args.extend_from_slice(extra);
    let out = run_in(dir, &args);
    assert!(
        out.status.success(),
        "render {extra:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn creds(dir: &Path) -> PathBuf {
    dir.join("credentials")
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(creds(dir))
        .expect("credentials/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

fn check_pki(dir: &Path, want_rsa: bool) {
    let c = |f: &str| creds(dir).join(f).display().to_string();
    for ca in CAS {
        let (ok, ext) = openssl(&[
            "x509",
            "-in",
            &c(&format!("{ca}.pem")),
            "-noout",
            "-ext",
            "basicConstraints,keyUsage",
        ]);
        assert!(
            ok && ext.contains("CA:TRUE") && ext.contains("Certificate Sign"),
            "{ca}: {ext}"
        );
        let (ok, out) = openssl(&[
            "verify",
            "-CAfile",
            &c(&format!("{ca}.pem")),
            &c(&format!("{ca}.pem")),
        ]);
        assert!(ok, "{ca} self-verify: {out}");
    }
    for (leaf, ca, server, client) in LEAVES {
        let pem = c(&format!("{leaf}.pem"));
        let (ok, out) = openssl(&["verify", "-CAfile", &c(&format!("{ca}.pem")), &pem]);
        assert!(ok, "{leaf} does not chain to {ca}: {out}");
        for other in CAS.iter().filter(|o| **o != ca) {
            let (ok, _) = openssl(&["verify", "-CAfile", &c(&format!("{other}.pem")), &pem]);
            assert!(!ok, "{leaf} also verifies against {other}");
        }
        let (_, ext) = openssl(&[
            "x509",
            "-in",
            &pem,
            "-noout",
            "-ext",
            "basicConstraints,extendedKeyUsage,keyUsage",
        ]);
        assert!(!ext.contains("CA:TRUE"), "{leaf} is a CA: {ext}");
        assert_eq!(
            ext.contains("TLS Web Server Authentication"),
            server,
            "{leaf} server auth: {ext}"
        );
        assert_eq!(
            ext.contains("TLS Web Client Authentication"),
            client,
            "{leaf} client auth: {ext}"
        );
        assert!(ext.contains("Digital Signature"), "{leaf}: {ext}");
        let purpose = if server { "sslserver" } else { "sslclient" };
        let (ok, out) = openssl(&[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            &c(&format!("{ca}.pem")),
            &pem,
        ]);
        assert!(ok, "{leaf} fails -purpose {purpose}: {out}");
        let (_, t) = openssl(&["x509", "-in", &pem, "-noout", "-text"]);
        let algo = if want_rsa {
            "rsaEncryption"
        } else {
            "id-ecPublicKey"
        };
        assert!(t.contains(algo), "{leaf} key is not {algo}");
        if want_rsa {
            assert!(t.contains("(2048 bit)"), "{leaf}: {t}");
        }
    }
    let (_, sans) = openssl(&[
        "x509",
        "-in",
        &c("apiserver.pem"),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    for want in [
        "DNS:k8s.example.com",
        "DNS:k8s.internal.example.com",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:localhost",
        "IP Address:10.3.0.1",
        "IP Address:127.0.0.1",
    ] {
        assert!(sans.contains(want), "apiserver lacks {want}: {sans}");
    }
    let (_, sans) = openssl(&[
        "x509",
        "-in",
        &c("etcd-peer.pem"),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    for i in 0..3 {
        assert!(
            sans.contains(&format!("DNS:etcd-{i}.prod.etcd.internal")),
            "{sans}"
        );
    }
}

/// Every private key, as the public key it derives (openssl), and its bytes.
fn keys(dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter(|(n, _)| n.ends_with("-key.pem"))
        .map(|(n, bytes)| {
            let (ok, public) = openssl(&[
                "pkey",
                "-in",
                &creds(dir).join(&n).display().to_string(),
                "-pubout",
            ]);
            assert!(ok, "{n}: {public}");
            (n, public, bytes)
        })
        .collect()
}

#[test]
fn ecdsa_pki_chains_uses_distinct_keys_and_safe_modes() {
    let dir = cluster(|s| s);
    render(dir.path(), &["--generate-ca"]);
    check_pki(dir.path(), false);

    let keys = keys(dir.path());
    assert_eq!(
        keys.len(),
        3 + LEAVES.len() + 1,
        "3 CAs, every leaf and the service account"
    );
    let publics: BTreeSet<&String> = keys.iter().map(|(_, p, _)| p).collect();
    let privates: BTreeSet<&Vec<u8>> = keys.iter().map(|(_, _, b)| b).collect();
    assert_eq!(publics.len(), keys.len(), "two keys share a public key");
    assert_eq!(privates.len(), keys.len(), "two private keys are equal");
    eprintln!("{} private keys, all distinct", keys.len());

    let secret_names: Vec<String> = files(dir.path())
        .keys()
        .filter(|n| {
            n.ends_with("-key.pem")
                || *n == "kubelet-bootstrap-token"
                || *n == "encryption-config.yaml"
        })
        .cloned()
        .collect();
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    for n in &secret_names {
        assert_eq!(mode(&creds(dir.path()).join(n)), 0o600, "{n}");
    }
    assert_eq!(mode(&dir.path().join("kubeconfig")), 0o600);
    assert_eq!(mode(&creds(dir.path())), 0o700);
    assert_eq!(mode(&creds(dir.path()).join("ca.pem")), 0o644);

    // The .gitignore init wrote covers every plaintext secret the command wrote.
    assert!(
        Command::new("git")
            .args(["init", "-q"])
            .current_dir(dir.path())
            .status()
            .expect("git")
            .success()
    );
    let mut secrets: Vec<String> = secret_names
        .iter()
        .map(|n| format!("credentials/{n}"))
        .collect();
    secrets.push("kubeconfig".into());
    for s in &secrets {
        let ignored = Command::new("git")
            .args(["check-ignore", "-q", s])
            .current_dir(dir.path())
            .status()
            .expect("git");
        assert!(ignored.success(), "{s} is not ignored by git");
    }
    let public = Command::new("git")
        .args(["check-ignore", "-q", "credentials/ca.pem"])
        .current_dir(dir.path())
        .status()
        .expect("git");
    assert!(!public.success(), "certificates may be committed");

    let token =
        String::from_utf8(files(dir.path())["kubelet-bootstrap-token"].clone()).expect("utf8");
    assert!(
        regex::Regex::new(r"^[a-z0-9]{6}\.[a-z0-9]{16}\n$")
            .expect("re")
            .is_match(&token),
        "{token:?}"
    );
    let enc = String::from_utf8(files(dir.path())["encryption-config.yaml"].clone()).expect("utf8");
    assert!(
        enc.contains("kind: EncryptionConfiguration") && enc.contains("secretbox"),
        "{enc}"
    );

    let kc = std::fs::read_to_string(dir.path().join("kubeconfig")).expect("kubeconfig");
    assert!(kc.contains("server: https://k8s.example.com:6443"), "{kc}");
    assert!(kc.contains("certificate-authority-data:") && kc.contains("client-key-data:"));
}

#[test]
fn rsa_2048_pki_chains() {
    let dir = cluster(|s| s.replace("keyAlgorithm: ecdsa-p256", "keyAlgorithm: rsa-2048"));
    render(dir.path(), &["--generate-ca"]);
    check_pki(dir.path(), true);
    let keys = keys(dir.path());
    let publics: BTreeSet<&String> = keys.iter().map(|(_, p, _)| p).collect();
    assert_eq!(publics.len(), keys.len());
}

#[test]
fn rerun_keeps_everything_and_a_config_change_reissues_only_what_changed() {
    let dir = cluster(|s| s);
    render(dir.path(), &["--generate-ca"]);
    let before = files(dir.path());
    let kubeconfig = std::fs::read(dir.path().join("kubeconfig")).expect("kubeconfig");

    let out = render(dir.path(), &[]);
    assert!(
        !out.contains("replaced") && !out.contains("created"),
        "{out}"
    );
    assert_eq!(
        files(dir.path()),
        before,
        "an unchanged re-run changed bytes"
    );
    assert_eq!(
        std::fs::read(dir.path().join("kubeconfig")).expect("kubeconfig"),
        kubeconfig
    );

    // A new API endpoint: only the API server certificate changes.
    let yaml = std::fs::read_to_string(dir.path().join("cluster.yaml")).expect("read");
    let edited = yaml.replace(
        "  - name: internal\n",
        "  - name: extra\n    dnsName: k8s2.example.com\n  - name: internal\n",
    );
    std::fs::write(dir.path().join("cluster.yaml"), edited).expect("write");
    let out = render(dir.path(), &[]);
    assert!(
        out.contains("replaced apiserver.pem: SANs changed: +DNS:k8s2.example.com"),
        "{out}"
    );
    let after = files(dir.path());
    let changed: BTreeSet<&String> = after
        .keys()
        .filter(|k| after.get(*k) != before.get(*k))
        .collect();
    assert_eq!(
        changed,
        ["apiserver-key.pem", "apiserver.pem"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            .iter()
            .collect()
    );
    assert_eq!(after["ca.pem"], before["ca.pem"], "the CA must be kept");

    // Five etcd members: only the etcd server and peer certificates change.
    let yaml = std::fs::read_to_string(dir.path().join("cluster.yaml")).expect("read");
    std::fs::write(
        dir.path().join("cluster.yaml"),
        yaml.replace(
            "  count: 3                      # one member per zone",
            "  count: 5",
        ),
    )
    .expect("write");
    let before = files(dir.path());
    let out = render(dir.path(), &[]);
    let after = files(dir.path());
    let changed: BTreeSet<String> = after
        .keys()
        .filter(|k| after.get(*k) != before.get(*k))
        .cloned()
        .collect();
    let want: BTreeSet<String> = [
        "etcd-peer-key.pem",
        "etcd-peer.pem",
        "etcd-server-key.pem",
        "etcd-server.pem",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(changed, want, "{out}");
    assert!(out.contains("+DNS:etcd-4.prod.etcd.internal"), "{out}");
}

#[test]
fn generate_ca_keeps_an_existing_ca_and_force_backs_up_first() {
    let dir = cluster(|s| s);
    render(dir.path(), &["--generate-ca"]);
    let before = files(dir.path());
    let out = render(dir.path(), &["--generate-ca"]);
    assert!(out.contains("kept the existing cluster CA"), "{out}");
    assert_eq!(files(dir.path()), before);

    let out = render(dir.path(), &["--force", "--generate-ca"]);
    assert!(
        out.contains("Backed up the previous credentials to"),
        "{out}"
    );
    assert!(out.contains("kept encryption-config.yaml"), "{out}");
    let after = files(dir.path());
    for (name, bytes) in &before {
        if name == "encryption-config.yaml" {
            assert_eq!(
                after[name], *bytes,
                "the encryption-at-rest key must survive --force"
            );
        } else if name.ends_with(".pem") || name == "kubelet-bootstrap-token" {
            assert_ne!(after[name], *bytes, "{name} was not replaced by --force");
        }
    }
    let backups: Vec<PathBuf> = std::fs::read_dir(creds(dir.path()))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(backups.len(), 1);
    for (name, bytes) in &before {
        assert_eq!(
            &std::fs::read(backups[0].join(name)).expect("backup file"),
            bytes,
            "{name} backup differs"
        );
    }
    check_pki(dir.path(), false);
}

#[test]
fn rotate_reissues_leaves_and_keeps_cas_and_secrets() {
    let dir = cluster(|s| s);
    render(dir.path(), &["--generate-ca"]);
    let before = files(dir.path());
    let out = render(dir.path(), &["--rotate"]);
    assert!(out.contains("replaced apiserver.pem: rotated"), "{out}");
    let after = files(dir.path());
    for ca in CAS {
        assert_eq!(after[&format!("{ca}.pem")], before[&format!("{ca}.pem")]);
        assert_eq!(
            after[&format!("{ca}-key.pem")],
            before[&format!("{ca}-key.pem")]
        );
    }
    for keep in [
        "kubelet-bootstrap-token",
        "encryption-config.yaml",
        "service-account-key.pem",
    ] {
        assert_eq!(after[keep], before[keep], "{keep}");
    }
    for (leaf, ..) in LEAVES {
        assert_ne!(
            after[&format!("{leaf}.pem")],
            before[&format!("{leaf}.pem")],
            "{leaf}"
        );
        assert_ne!(
            after[&format!("{leaf}-key.pem")],
            before[&format!("{leaf}-key.pem")],
            "{leaf} key"
        );
    }
    check_pki(dir.path(), false);
}

#[test]
fn no_ca_source_is_a_clear_error() {
    let dir = cluster(|s| s);
    let out = run_in(dir.path(), &["render", "credentials"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--generate-ca"),
        "{}",
        text(&out.stderr)
    );
    assert!(!creds(dir.path()).join("ca.pem").exists());
}

fn make_ca(dir: &Path, name: &str, is_ca: bool, expired: bool) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("byo {name}"));
    if is_ca {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
    }
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = p.self_signed(&key).expect("cert");
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    (c, k)
}

#[test]
fn bring_your_own_ca_is_checked_then_used() {
    let byo = tempfile::tempdir().expect("tmp");
    let (good_c, good_k) = make_ca(byo.path(), "good", true, false);
    let (_, other_k) = make_ca(byo.path(), "other", true, false);
    let (leaf_c, leaf_k) = make_ca(byo.path(), "leaf", false, false);
    let (old_c, old_k) = make_ca(byo.path(), "old", true, true);
    let s = |p: &PathBuf| p.display().to_string();
    for (c, k, want) in [
        (&good_c, &other_k, "does not belong to the certificate"),
        (&leaf_c, &leaf_k, "is not a CA certificate"),
        (&old_c, &old_k, "the CA expired on 2021-01-01"),
    ] {
        let dir = cluster(|s| s);
        let out = run_in(
            dir.path(),
            &[
                "render",
                "credentials",
                "--ca-cert-path",
                &s(c),
                "--ca-key-path",
                &s(k),
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains(want),
            "want {want}: {}",
            text(&out.stderr)
        );
        assert!(
            !creds(dir.path()).join("ca.pem").exists(),
            "a rejected CA was written"
        );
    }
    let dir = cluster(|s| s);
    render(
        dir.path(),
        &["--ca-cert-path", &s(&good_c), "--ca-key-path", &s(&good_k)],
    );
    assert_eq!(
        std::fs::read(creds(dir.path()).join("ca.pem")).expect("ca"),
        std::fs::read(&good_c).expect("byo")
    );
    check_pki(dir.path(), false);
    // A different CA over an existing one needs --force.
    let (new_c, new_k) = make_ca(byo.path(), "new", true, false);
    let out = run_in(
        dir.path(),
        &[
            "render",
            "credentials",
            "--ca-cert-path",
            &s(&new_c),
            "--ca-key-path",
            &s(&new_k),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn show_certificates_table_json_warnings_and_expiry() {
    let dir = cluster(|s| s.replace("certDurationDays: 365", "certDurationDays: 10"));
    render(dir.path(), &["--generate-ca"]);
    let out = run_in(dir.path(), &["show", "certificates"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for col in [
        "FILE",
        "SUBJECT",
        "SANS",
        "ISSUER",
        "NOT AFTER",
        "DAYS LEFT",
        "apiserver.pem",
        "DNS:kubernetes.default.svc",
    ] {
        assert!(table.contains(col), "{col} missing: {table}");
    }
    assert!(
        text(&out.stderr).contains("warning: apiserver.pem expires in 9 days"),
        "{}",
        text(&out.stderr)
    );

    let out = run_in(dir.path(), &["show", "certificates", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 3 + LEAVES.len());
    let api = rows
        .iter()
        .find(|r| r["file"] == "apiserver.pem")
        .expect("apiserver");
    assert_eq!(api["days_left"], 9);
    assert!(
        api["sans"]
            .as_array()
            .expect("sans")
            .iter()
            .any(|s| s == "IP:10.3.0.1")
    );

    // An expired leaf: error exit, and --rotate is the fix it names.
    let scratch = tempfile::tempdir().expect("tmp");
    let (c, _) = make_ca(scratch.path(), "x", false, true);
    std::fs::copy(c, creds(dir.path()).join("expired.pem")).expect("copy");
    let out = run_in(dir.path(), &["show", "certificates"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("expired: expired.pem")
            && text(&out.stderr).contains("--rotate"),
        "{}",
        text(&out.stderr)
    );
}
