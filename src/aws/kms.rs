//! KMS: the `Encryptor` the credentials envelope uses.

use crate::pki::envelope::Encryptor;
use aws_sdk_kms::primitives::Blob;

pub struct KmsEncryptor {
    pub client: aws_sdk_kms::Client,
    pub key_id: String,
}

impl Encryptor for KmsEncryptor {
    async fn encrypt(&self, plaintext: &[u8], context: &[(&str, &str)]) -> Result<Vec<u8>, String> {
        let mut req = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plaintext));
        for (k, v) in context {
            req = req.encryption_context(*k, *v);
        }
        let out = req.send().await.map_err(|e| crate::aws::describe(&e))?;
        out.ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| "KMS returned no ciphertext".to_string())
    }
}
