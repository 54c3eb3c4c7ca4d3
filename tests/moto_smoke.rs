//! The test bed works: the Rust SDK, configured by kube_aws::aws, reaches the moto
//! server started by the harness (KMS round trip, S3 path-style put/get).

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_s3::primitives::ByteStream;
use common::Moto;

#[tokio::test]
async fn sdk_reaches_moto_kms_and_s3() {
    let moto = Moto::start();
    let cfg = moto.sdk_config().await;

    let kms = kube_aws::aws::kms(&cfg);
    let key = kms.create_key().send().await.expect("CreateKey");
    let key_id = key.key_metadata().expect("metadata").key_id().to_string();
    let plaintext = b"-----BEGIN EC PRIVATE KEY-----\nsmoke\n-----END EC PRIVATE KEY-----\n";
    let enc = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(plaintext.to_vec()))
        .encryption_context("cluster", "smoke")
        .send()
        .await
        .expect("Encrypt");
    let blob = enc.ciphertext_blob().expect("ciphertext").clone();
    assert_ne!(blob.as_ref(), plaintext.as_slice());
    let dec = kms
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("cluster", "smoke")
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(
        dec.plaintext().expect("plaintext").as_ref(),
        plaintext.as_slice()
    );

    let s3 = kube_aws::aws::s3(&cfg);
    s3.create_bucket()
        .bucket("smoke-bucket")
        .send()
        .await
        .expect("CreateBucket");
    s3.put_object()
        .bucket("smoke-bucket")
        .key("cluster/hello.txt")
        .body(ByteStream::from_static(b"hello moto"))
        .send()
        .await
        .expect("PutObject");
    let got = s3
        .get_object()
        .bucket("smoke-bucket")
        .key("cluster/hello.txt")
        .send()
        .await
        .expect("GetObject");
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(&body[..], b"hello moto");
}

#[test]
fn moto_is_stopped_on_drop() {
    let moto = Moto::start();
    let port = moto.port;
    assert!(common::http_get_status(port, "/moto-api/").is_some());
    drop(moto);
    assert!(
        common::http_get_status(port, "/moto-api/").is_none(),
        "moto still answers after drop"
    );
}
