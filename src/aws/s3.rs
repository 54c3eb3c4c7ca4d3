//! S3: listing, uploading (in parallel, server-side encrypted, never a plaintext private
//! key) and deleting the cluster's objects.

use anyhow::{Context, Result, bail};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Parallel uploads at once.
const PARALLEL: usize = 8;

#[derive(Debug, Clone)]
pub struct Upload {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

/// Refuses any body that looks like an unencrypted PEM private key. Checked on every
/// upload, whatever its origin: plaintext keys must never reach S3.
pub fn refuse_plaintext_keys(uploads: &[Upload]) -> Result<()> {
    for u in uploads {
        let text = String::from_utf8_lossy(&u.body);
        if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
            bail!(
                "refusing to upload {}: it contains an unencrypted PEM private key\n  fix: only KMS-encrypted .enc files may leave this machine; check your templates for an embedded key",
                u.key
            );
        }
    }
    Ok(())
}

/// Refuses any upload that contains a local secret's bytes or their base64
/// (`envelope::secret_needles`): only ciphertexts may leave this machine.
pub fn refuse_secrets(uploads: &[Upload], needles: &[(String, Vec<u8>)]) -> Result<()> {
    for u in uploads {
        for (name, n) in needles {
            if memchr::memmem::find(&u.body, n).is_some() {
                bail!(
                    "refusing to upload {}: it contains the secret {name} (or its base64)\n  fix: only KMS-encrypted .enc files may leave this machine; check your templates and add-on manifests for an embedded secret",
                    u.key
                );
            }
        }
    }
    Ok(())
}

/// The body of one object, or None when it is absent or cannot be read (a comparison
/// then says what is missing; nothing is read twice).
pub async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let o = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    o.body.collect().await.ok().map(|b| b.into_bytes().to_vec())
}

/// The body of one object; None only when it does not exist (NoSuchKey), an error
/// otherwise, so that a failed read is never taken for an absent object.
pub async fn get_if_exists(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => Ok(Some(
            o.body
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("s3://{bucket}/{key}: {e}"))?
                .into_bytes()
                .to_vec(),
        )),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(anyhow::anyhow!(
            "s3://{bucket}/{key}: {}",
            super::describe(&e)
        )),
    }
}

/// Every key under `prefix/`.
pub async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            anyhow::anyhow!("listing s3://{bucket}/{prefix}/: {}", super::describe(&e))
        })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
    }
    Ok(keys)
}

/// Uploads every object not already present (keys are content hashes, so a present key
/// holds the same bytes). Returns (uploaded, skipped).
pub async fn sync(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    uploads: Vec<Upload>,
    on_done: impl Fn(&str) + Send + Sync + 'static,
) -> Result<(usize, usize)> {
    refuse_plaintext_keys(&uploads)?;
    let present = list_keys(s3, bucket, prefix).await?;
    let (skip, todo): (Vec<Upload>, Vec<Upload>) =
        uploads.into_iter().partition(|u| present.contains(&u.key));
    let uploaded = todo.len();
    let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let on_done = Arc::new(on_done);
    let mut tasks = tokio::task::JoinSet::new();
    for u in todo {
        let s3 = s3.clone();
        let bucket = bucket.to_string();
        let gate = gate.clone();
        let on_done = on_done.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire().await;
            s3.put_object()
                .bucket(&bucket)
                .key(&u.key)
                .content_type(u.content_type)
                .server_side_encryption(ServerSideEncryption::Aes256)
                .body(ByteStream::from(u.body))
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("uploading s3://{bucket}/{}: {}", u.key, super::describe(&e))
                })?;
            on_done(&u.key);
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("an upload task failed")??;
    }
    Ok((uploaded, skip.len()))
}

/// Uploads a file (streamed, server-side encrypted) unless the key exists. Keys are
/// content hashes, so an existing key holds these bytes. Returns whether it uploaded.
pub async fn put_file_if_absent(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    path: &std::path::Path,
) -> Result<bool> {
    if s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
    {
        return Ok(false);
    }
    let body = ByteStream::from_path(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/octet-stream")
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("uploading s3://{bucket}/{key}: {}", super::describe(&e)))?;
    Ok(true)
}

/// Deletes exactly `keys` (in batches of 1000, DeleteObjects' limit). Returns how many.
pub async fn delete_keys(s3: &aws_sdk_s3::Client, bucket: &str, keys: &[String]) -> Result<usize> {
    for chunk in keys.chunks(1000) {
        let objects = chunk
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .context("building the delete request")?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .context("building the delete request")?;
        s3.delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("deleting in s3://{bucket}/: {}", super::describe(&e)))?;
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn refuses_a_secret_in_any_form() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\n";
        std::fs::write(d.join("ca-key.pem"), pem).expect("write");
        std::fs::write(
            d.join("kubelet-bootstrap-token"),
            "abcdef.0123456789abcdef\n",
        )
        .expect("write");
        std::fs::write(
            d.join("encryption-config.yaml"),
            "kind: EncryptionConfiguration\nresources:\n  - providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: c2VjcmV0LWtleS1ieXRlcy0zMi1sb25nLi4uLi4=\n",
        )
        .expect("write");
        std::fs::write(d.join("ca.pem"), "public").expect("write");
        let needles = crate::pki::envelope::secret_needles(d).expect("needles");
        let b64 = base64::engine::general_purpose::STANDARD;
        let up = |body: Vec<u8>| Upload {
            key: "k".into(),
            body,
            content_type: "text/plain",
        };
        // A kubeconfig's client-key-data, at each alignment inside larger base64.
        for pad in ["", "x", "xy"] {
            let inner = format!("{pad}client-key-data: {}\n", b64.encode(pem));
            let body = format!("user_data: {}", b64.encode(inner.as_bytes()));
            for body in [inner.into_bytes(), body.into_bytes()] {
                let e = refuse_secrets(&[up(body)], &needles).expect_err("refused");
                assert!(e.to_string().contains("ca-key.pem"), "{e}");
            }
        }
        for (body, who) in [
            (
                "token: abcdef.0123456789abcdef".to_string(),
                "kubelet-bootstrap-token",
            ),
            (
                "just 0123456789abcdef here".to_string(),
                "kubelet-bootstrap-token",
            ),
            (
                "secret: c2VjcmV0LWtleS1ieXRlcy0zMi1sb25nLi4uLi4=".to_string(),
                "encryption-config.yaml",
            ),
        ] {
            let e = refuse_secrets(&[up(body.into_bytes())], &needles).expect_err("refused");
            assert!(e.to_string().contains(who), "{e}");
        }
        // Public material and unrelated text pass.
        let ok = "kind: EncryptionConfiguration\nca: public\n-----BEGIN CERTIFICATE-----\n";
        refuse_secrets(&[up(ok.as_bytes().to_vec())], &needles).expect("allowed");
    }
}
