//! Names that Rust and the templates share, in one place. The templates see them as
//! `ids.*` (`exported`), so a rename here reaches both sides; nothing else spells them.

/// The Auto Scaling lifecycle hook a worker's drainer completes before termination.
pub const LIFECYCLE_HOOK: &str = "kube-aws-drain";
/// Where etcd snapshots live under the cluster prefix: `<prefix>/etcd-snapshots/<ts>.db`.
pub const SNAPSHOT_PREFIX: &str = "etcd-snapshots";
/// The server-side apply field manager of the add-ons.
pub const FIELD_MANAGER: &str = "kube-aws";
/// Hex digits of a content hash in an S3 key (`stacks/<stem>-<16 hex>.json`).
pub const HASH_LEN: usize = 16;
/// The bootstrap token joining nodes read, under the cluster prefix: written once by
/// `up` from credentials/ (if absent), then replaced by the controllers' rotation.
pub const BOOTSTRAP_TOKEN_CURRENT: &str = "credentials/kubelet-bootstrap-token-current.enc";
/// The asset manifest under the cluster prefix (deploy::manifest).
pub const MANIFEST_FILE: &str = "kube-aws-manifest.json";

/// Tags kube-aws puts on instances, volumes and stacks, and reads back on the nodes.
pub mod tag {
    pub const CLUSTER: &str = "kube-aws:cluster";
    pub const POOL: &str = "kube-aws:pool";
    pub const ETCD_MEMBER: &str = "kube-aws:etcd-member";
    pub const ETCD_VOLUME: &str = "kube-aws:etcd-volume";
    pub const ETCD_ZONE_ID: &str = "kube-aws:etcd-zone-id";
    pub const SIGNAL_STACK: &str = "kube-aws:signal-stack";
    pub const SIGNAL_RESOURCE: &str = "kube-aws:signal-resource";
}

/// What templates see as `ids`.
pub fn exported() -> serde_json::Value {
    serde_json::json!({
        "lifecycle_hook": LIFECYCLE_HOOK,
        "snapshot_prefix": SNAPSHOT_PREFIX,
        "hash_len": HASH_LEN,
        "bootstrap_token_current": BOOTSTRAP_TOKEN_CURRENT,
        "tag": {
            "cluster": tag::CLUSTER,
            "pool": tag::POOL,
            "etcd_member": tag::ETCD_MEMBER,
            "etcd_volume": tag::ETCD_VOLUME,
            "etcd_zone_id": tag::ETCD_ZONE_ID,
            "signal_stack": tag::SIGNAL_STACK,
            "signal_resource": tag::SIGNAL_RESOURCE,
        },
    })
}
