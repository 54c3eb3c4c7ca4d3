//! The node agent's pure core, `kube-aws node …` (as kops runs nodeup and EKS runs
//! nodeadm: the same binary bootstraps every node from its role's node config). No I/O:
//! the shell that runs it on a node is `deploy::node`.
//!
//! - `config`: the node config (rendered by `render`, uploaded, fetched by the stub).
//! - `kubeadm`: kubeadm v1beta4 and kubelet documents as typed structs.
//! - `plan`: node config + observations → steps and decisions.
//! - `manifests`: the cluster's own objects (CCM, EBS CSI, RBAC) and the pinned CNIs.
//! - `approve`, `drain`: pure decisions of the CSR approver and the drainer.

pub mod approve;
pub mod config;
pub mod drain;
pub mod etcd;
pub mod kubeadm;
pub mod manifests;
pub mod plan;
pub mod token;
