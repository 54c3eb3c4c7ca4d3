//! The node agent, `kube-aws node …`, as kops runs nodeup and EKS runs nodeadm: the same
//! binary bootstraps every node from its role's node config.
//!
//! - `config`: the node config (rendered by `render`, uploaded, fetched by the stub).
//! - `kubeadm`: kubeadm v1beta4 and kubelet documents as typed structs.
//! - `plan`: the pure core, node config + observations → steps and decisions.
//! - `manifests`: the cluster's own objects (CCM, EBS CSI, RBAC) and the pinned CNI.
//! - `approve`, `drain`: pure decisions of the CSR approver and the drainer.
//! - `imds`, `agent`, `services`: the thin shell (IMDSv2, AWS through `aws::node`,
//!   Kubernetes through kube-rs, commands through PATH).

pub mod agent;
pub mod approve;
pub mod config;
pub mod drain;
pub mod imds;
pub mod kubeadm;
pub mod manifests;
pub mod plan;
pub mod services;
