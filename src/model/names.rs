//! Names derived from cluster.yaml that several layers spell the same way: the add-ons'
//! namespaces and AWS resources, the S3 keys of ciphertexts. Pure string functions, so
//! `render`, `addons`, `deploy` and the node agent agree without importing each other.

use super::ids::HASH_LEN;

/// The namespace of the Service Catalog's controller (its Lease, Events and RBAC).
pub const CATALOG_NAMESPACE: &str = "catalog";

/// Names of the broker's table and role: fixed, so manifests rendered before the stack
/// exists can name them.
pub fn broker_names(cluster: &str, broker_id: &str) -> (String, String) {
    (
        format!("kube-aws-{cluster}-{broker_id}-state"),
        format!("kube-aws-{cluster}-{broker_id}"),
    )
}

/// Name of the managed policy that bounds the broker's binding users.
pub fn boundary_name(cluster: &str, broker_id: &str) -> String {
    format!("kube-aws-{cluster}-{broker_id}-boundary")
}

/// S3 key, relative to the cluster prefix, of a secret's ciphertext.
pub fn secret_key(file: &str, fingerprint: &str) -> String {
    format!(
        "credentials/{file}-{}.enc",
        &fingerprint[..HASH_LEN.min(fingerprint.len())]
    )
}
