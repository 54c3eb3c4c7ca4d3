//! KMS envelope of the plaintext secrets in credentials/.
//!
//! Each secret `<file>` is encrypted into `<file>.enc` under the encryption context
//! `{cluster: <clusterName>, file: <file>}`, and `<file>.fingerprint` records the sha256 of
//! the plaintext in `sha256sum` format. A secret whose fingerprint is unchanged is not
//! encrypted again: KMS ciphertext differs on every call, so re-encrypting unchanged
//! secrets would change user data and roll every node (the original kube-aws's #107).
//! `ENCRYPTED_WITH` records the key, so a new `kmsKeyArn` re-encrypts everything.
//!
//! Nodes decrypt at boot with the instance role (see `DECRYPT_COMMAND`).

use super::PkiError;
use super::spec::{BOOTSTRAP_TOKEN, ENCRYPTION_CONFIG};
use super::store::{PUBLIC_MODE, read_optional, write_atomic};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::{Path, PathBuf};

/// The file that records which KMS key the `.enc` files were made with.
pub const ENCRYPTED_WITH: &str = "kms-key-arn";

/// How a node decrypts `<file>.enc` at boot (`$CLUSTER` and `$F` set by the script).
/// `aws kms decrypt` finds the key from the ciphertext; the context must match exactly.
pub const DECRYPT_COMMAND: &str = "aws kms decrypt --ciphertext-blob \"fileb://$F.enc\" \
--encryption-context \"cluster=$CLUSTER,file=$F\" --query Plaintext --output text | base64 -d > \"$F\"";

/// Anything that can encrypt under a KMS key. The AWS implementation lives in
/// `crate::aws::kms`; keeping the trait here keeps this module free of AWS.
pub trait Encryptor {
    fn encrypt(
        &self,
        plaintext: &[u8],
        context: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<u8>, String>>;
}

/// The plaintext secrets of a credentials directory: every private key, the bootstrap
/// token and the encryption config. Sorted, so runs are deterministic.
pub fn secret_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if !e.file_type()?.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with("-key.pem")
            || name == BOOTSTRAP_TOKEN
            || name == ENCRYPTION_CONFIG
            || name == super::spec::BROKER_TOKEN
        {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256sum` line for `file`.
pub fn fingerprint_line(plaintext: &[u8], file: &str) -> String {
    format!("{}  {file}\n", sha256_hex(plaintext))
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnvelopeReport {
    /// Files encrypted in this run (one KMS Encrypt call each).
    pub encrypted: Vec<String>,
    /// Files whose `.enc` was kept because the plaintext is unchanged.
    pub unchanged: Vec<String>,
}

/// The `.enc` path of a secret.
pub fn enc_path(dir: &Path, file: &str) -> PathBuf {
    dir.join(format!("{file}.enc"))
}

/// Encrypts every secret of `dir` whose plaintext changed since its last encryption.
pub async fn encrypt_secrets<E: Encryptor>(
    dir: &Path,
    cluster: &str,
    kms_key_arn: &str,
    enc: &E,
) -> Result<EnvelopeReport, PkiError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PkiError::Io { path: p, source }
    };
    let with_path = dir.join(ENCRYPTED_WITH);
    let same_key = read_optional(&with_path)
        .map_err(io(&with_path))?
        .is_some_and(|s| s.trim() == kms_key_arn);
    let mut report = EnvelopeReport::default();
    for file in secret_files(dir).map_err(io(dir))? {
        let path = dir.join(&file);
        let plaintext = std::fs::read(&path).map_err(io(&path))?;
        let fp = fingerprint_line(&plaintext, &file);
        let fp_path = dir.join(format!("{file}.fingerprint"));
        let enc_file = enc_path(dir, &file);
        let old_fp = read_optional(&fp_path).map_err(io(&fp_path))?;
        if same_key && old_fp.as_deref() == Some(fp.as_str()) && enc_file.exists() {
            report.unchanged.push(file);
            continue;
        }
        let ciphertext = enc
            .encrypt(&plaintext, &[("cluster", cluster), ("file", &file)])
            .await
            .map_err(|e| {
                PkiError::User(format!(
                    "KMS could not encrypt {file} with {kms_key_arn}: {e}"
                ))
            })?;
        // The ciphertext first: a crash before the fingerprint only means one more
        // encryption next time, never a stale .enc behind a current fingerprint.
        write_atomic(&enc_file, &ciphertext, PUBLIC_MODE).map_err(io(&enc_file))?;
        write_atomic(&fp_path, fp.as_bytes(), PUBLIC_MODE).map_err(io(&fp_path))?;
        report.encrypted.push(file);
    }
    if !same_key {
        write_atomic(
            &with_path,
            format!("{kms_key_arn}\n").as_bytes(),
            PUBLIC_MODE,
        )
        .map_err(io(&with_path))?;
    }
    Ok(report)
}

/// What must never leave this machine in the clear, by secret file name: each secret's
/// bytes, the parts of it that are secrets on their own (the encryption-config `secret:`
/// values, a token's secret half, a PEM key's first base64 line), and the base64 of
/// each at all three byte alignments (and the base64 of that base64), so that a secret
/// inside a larger base64 text (a kubeconfig's `client-key-data`, base64 user data, a
/// kubeconfig inside user data) is found too. Needles shorter
/// than 12 bytes are dropped: they would match by chance.
pub fn secret_needles(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for name in secret_files(dir)? {
        let bytes = std::fs::read(dir.join(&name))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut parts: Vec<Vec<u8>> = vec![text.trim().as_bytes().to_vec()];
        for line in text.lines() {
            let l = line.trim();
            if let Some(v) = l.strip_prefix("secret:") {
                parts.push(v.trim().trim_matches('"').as_bytes().to_vec());
            }
        }
        if let Some((_, secret)) = text.trim().split_once('.')
            && !text.trim().contains('\n')
        {
            parts.push(secret.as_bytes().to_vec());
        }
        if name.ends_with(".pem")
            && let Some(first) = text
                .lines()
                .find(|l| !l.starts_with("-----") && l.len() >= 40)
        {
            parts.push(first.as_bytes().to_vec());
        }
        // Base64 at every alignment, and base64 of that once more (a kubeconfig whose
        // client-key-data holds the key, itself inside base64 user data).
        let aligned = |p: &[u8]| -> Vec<Vec<u8>> {
            (0..3.min(p.len()))
                .map(|o| {
                    let tail = &p[o..];
                    b64.encode(&tail[..tail.len() - tail.len() % 3])
                        .into_bytes()
                })
                .collect()
        };
        for p in parts {
            let once = aligned(&p);
            if let Some(first) = once.first() {
                out.extend(aligned(first).into_iter().map(|n| (name.clone(), n)));
            }
            out.extend(once.into_iter().map(|n| (name.clone(), n)));
            out.push((name.clone(), p));
        }
    }
    out.retain(|(_, n)| n.len() >= 12);
    out.sort();
    out.dedup();
    Ok(out)
}
