//! The KMS envelope against moto's KMS: every secret encrypts under the cluster's
//! encryption context and decrypts back to the local plaintext; a second run issues
//! 0 Encrypt calls and leaves every `.enc` byte-identical; a changed secret is the only
//! one encrypted again.

mod common;

use aws_sdk_kms::primitives::Blob;
use common::{Moto, text};
use kube_aws::aws::kms::KmsEncryptor;
use kube_aws::pki::envelope::{self, Encryptor};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the Encrypt calls that reach the real (moto) KMS.
struct Counting<'a> {
    inner: &'a KmsEncryptor,
    calls: AtomicUsize,
}

impl Encryptor for Counting<'_> {
    async fn encrypt(&self, plaintext: &[u8], context: &[(&str, &str)]) -> Result<Vec<u8>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.encrypt(plaintext, context).await
    }
}

fn enc_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "enc"))
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}

#[tokio::test]
async fn secrets_round_trip_through_kms_and_unchanged_ones_are_not_re_encrypted() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let kms = kube_aws::aws::kms(&sdk);
    let key = kms.create_key().send().await.expect("CreateKey");
    let arn = key
        .key_metadata()
        .expect("metadata")
        .arn()
        .expect("arn")
        .to_string();

    let dir = tempfile::tempdir().expect("tmp");
    let yaml = std::fs::read_to_string(common::repo().join("examples/minimal.yaml"))
        .expect("example")
        .replace("us-west-2", "us-east-1")
        .replace(
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            &arn,
        );
    std::fs::write(dir.path().join("cluster.yaml"), yaml).expect("write");

    let out = common::kube_aws()
        .args(["render", "credentials", "--generate-ca", "--encrypt"])
        .current_dir(dir.path())
        .envs(moto.env())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let creds = dir.path().join("credentials");
    let secrets = envelope::secret_files(&creds).expect("list");
    assert_eq!(
        secrets.len(),
        3 + 10 + 1 + 2,
        "3 CA keys, 10 leaf keys, the SA key, token, encryption config"
    );
    assert!(
        text(&out.stdout).contains(&format!(
            "KMS: encrypted {} secrets, 0 unchanged",
            secrets.len()
        )),
        "{}",
        text(&out.stdout)
    );

    // The fingerprints are sha256sum lines: check them with sha256sum itself.
    let fps: Vec<String> = secrets.iter().map(|s| format!("{s}.fingerprint")).collect();
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .args(&fps)
        .current_dir(&creds)
        .output()
        .expect("sha256sum");
    assert!(check.status.success(), "{}", text(&check.stdout));

    for s in &secrets {
        let plaintext = std::fs::read(creds.join(s)).expect("plaintext");
        let ciphertext = std::fs::read(creds.join(format!("{s}.enc"))).expect(".enc");
        assert!(
            !String::from_utf8_lossy(&ciphertext).contains("PRIVATE KEY"),
            "{s}.enc holds plaintext"
        );
        let dec = kms
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext.clone()))
            .encryption_context("cluster", "minimal")
            .encryption_context("file", s)
            .send()
            .await
            .unwrap_or_else(|e| panic!("decrypt {s}: {e:?}"));
        assert_eq!(
            dec.plaintext().expect("plaintext").as_ref(),
            plaintext.as_slice(),
            "{s}"
        );
        // The context is bound: another file's name does not decrypt it.
        let wrong = kms
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext))
            .encryption_context("cluster", "minimal")
            .encryption_context("file", "something-else")
            .send()
            .await;
        assert!(wrong.is_err(), "{s} decrypted under the wrong context");
    }

    // Second run: nothing changed, so no Encrypt call and identical ciphertexts.
    let before = enc_files(&creds);
    let real = KmsEncryptor {
        client: kms.clone(),
        key_id: arn.clone(),
    };
    let counting = Counting {
        inner: &real,
        calls: AtomicUsize::new(0),
    };
    let rep = envelope::encrypt_secrets(&creds, "minimal", &arn, &counting)
        .await
        .expect("encrypt");
    assert_eq!(
        counting.calls.load(Ordering::SeqCst),
        0,
        "unchanged secrets were encrypted again"
    );
    assert_eq!(rep.unchanged.len(), secrets.len());
    assert_eq!(
        enc_files(&creds),
        before,
        "an unchanged run changed .enc bytes"
    );

    // Re-rendering credentials (no change) keeps it that way, through the CLI too.
    let out = common::kube_aws()
        .args(["render", "credentials", "--encrypt"])
        .current_dir(dir.path())
        .envs(moto.env())
        .output()
        .expect("run");
    assert!(
        text(&out.stdout).contains("KMS: encrypted 0 secrets"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(enc_files(&creds), before);

    // Rotating the leaves changes exactly their keys: only those are encrypted again.
    let out = common::run_in(dir.path(), &["render", "credentials", "--rotate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let counting = Counting {
        inner: &real,
        calls: AtomicUsize::new(0),
    };
    let rep = envelope::encrypt_secrets(&creds, "minimal", &arn, &counting)
        .await
        .expect("encrypt");
    assert_eq!(counting.calls.load(Ordering::SeqCst), 10);
    assert!(
        rep.encrypted.iter().all(|f| f.ends_with("-key.pem")
            && !f.contains("ca-key")
            && f != "service-account-key.pem"),
        "{rep:?}"
    );
    let after = enc_files(&creds);
    for (f, bytes) in &before {
        let rotated = rep.encrypted.iter().any(|e| format!("{e}.enc") == *f);
        assert_eq!(after[f] == *bytes, !rotated, "{f}");
    }
}
