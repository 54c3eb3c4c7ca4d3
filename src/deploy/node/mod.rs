//! The node agent's shell (`kube-aws node bootstrap | addons | approve-csrs | watch |
//! drain`): runs what the pure core in `crate::node` decides, on the node. It is part of
//! `deploy` because it is an edge: IMDSv2, AWS through `aws::node`, Kubernetes through
//! kube-rs (`deploy::addons`), and the node's commands through PATH.

pub mod agent;
pub mod etcd;
pub mod imds;
pub mod services;
