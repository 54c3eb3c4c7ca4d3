//! Every default of cluster.yaml, in one place.
//!
//! The serde `default` attributes in `types.rs` point here, so the parser, the JSON
//! Schema (schemars reads the same attributes) and the `init` template agree.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Kubernetes minor versions this release can render and boot. The first is the oldest.
pub const SUPPORTED_KUBERNETES_MINORS: &[&str] = &["1.31", "1.32", "1.33", "1.34"];

pub fn kubernetes_version() -> String {
    "1.34.2".to_string()
}

pub fn service_cidr() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 3, 0, 0), 24).unwrap_or_default()
}

pub fn pod_cidr() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 2, 0, 0), 16).unwrap_or_default()
}

pub fn vpc_cidr() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 16).unwrap_or_default()
}

pub fn cluster_domain() -> String {
    "cluster.local".to_string()
}

pub fn etcd_count() -> u32 {
    3
}

pub fn etcd_instance_type() -> String {
    "t3.medium".to_string()
}

pub fn etcd_volume_size_gib() -> u32 {
    30
}

pub fn volume_type() -> String {
    "gp3".to_string()
}

/// Every 30 minutes, in the EventBridge cron syntax the snapshot schedule uses.
pub fn etcd_snapshot_schedule() -> String {
    "cron(0/30 * * * ? *)".to_string()
}

pub fn etcd_snapshot_retention_days() -> u32 {
    7
}

pub fn controller_count() -> u32 {
    2
}

pub fn controller_instance_type() -> String {
    "t3.large".to_string()
}

pub fn root_volume_size_gib() -> u32 {
    40
}

pub fn worker_instance_type() -> String {
    "t3.large".to_string()
}

pub fn pool_min_size() -> u32 {
    1
}

pub fn pool_max_size() -> u32 {
    3
}

pub fn pool_desired_capacity() -> u32 {
    1
}

pub fn min_instances_in_service() -> u32 {
    0
}

pub fn max_batch_size() -> u32 {
    1
}

pub fn drain_timeout_seconds() -> u32 {
    300
}

/// ISO 8601 duration CloudFormation waits for a batch's signals.
pub fn pause_time() -> String {
    "PT15M".to_string()
}

pub fn on_demand_base_capacity() -> u32 {
    0
}

pub fn on_demand_percentage_above_base() -> u32 {
    0
}

pub fn ca_duration_days() -> u32 {
    3650
}

pub fn cert_duration_days() -> u32 {
    365
}

pub fn broker_id() -> String {
    "awsbroker".to_string()
}

pub fn broker_image() -> String {
    format!("kube-aws:{}", env!("CARGO_PKG_VERSION"))
}

pub fn broker_namespace() -> String {
    "aws-sb".to_string()
}

pub fn broker_services() -> Vec<String> {
    ["s3", "sqs", "sns", "dynamodb"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub fn yes() -> bool {
    true
}
