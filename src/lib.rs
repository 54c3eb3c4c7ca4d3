//! kube-aws: cluster.yaml → nested CloudFormation stacks on AWS.
//!
//! Data flows one way: `config` (parse + validate) → model → render → plan → apply.
//! `config` is pure; only `aws` talks to AWS. See ARCHITECTURE.md.

pub mod addons;
pub mod aws;
pub mod broker;
pub mod broker_catalog;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod model;
pub mod node;
pub mod pki;
pub mod plan;
pub mod render;
