//! `kube-aws etcd snapshots | restore`: the operator's side of etcd recovery. The
//! members do the work with the node agent's own code (`kube-aws node etcd …`, the
//! same steps a booting member runs), started through SSM Run Command in this order:
//! 1. every member stops etcd and moves its data directory aside (nothing is deleted);
//! 2. etcd-0 restores the snapshot into a cluster of one and waits until healthy;
//! 3. every other member, one at a time, joins it (member add, `existing`).
//!
//! This is etcd's documented procedure for a cluster restore: every member restores
//! from the same snapshot file or joins the restored one
//! (https://etcd.io/docs/v3.5/op-guide/recovery/#restoring-a-cluster).

use crate::aws;
use crate::model::Model;
use crate::model::ids;
use crate::node::etcd as member;
use anyhow::{Result, anyhow, bail};
use aws_config::SdkConfig;
use std::time::Duration;

/// The cluster's snapshots, oldest first.
pub async fn snapshots(sdk: &SdkConfig, model: &Model) -> Result<Vec<String>> {
    let prefix = format!("{}/{}", model.s3_prefix, member::SNAPSHOT_PREFIX);
    let keys = aws::s3::list_keys(&aws::s3(sdk), &model.s3_bucket, &prefix).await?;
    let mut v: Vec<String> = keys.into_iter().filter(|k| k.ends_with(".db")).collect();
    v.sort_by_key(|k| k.rsplit('/').next().unwrap_or(k).to_string());
    Ok(v)
}

/// The running etcd members of a cluster, (member name, instance id), by name.
pub async fn members(sdk: &SdkConfig, cluster: &str) -> Result<Vec<(String, String)>> {
    use aws_sdk_ec2::types::Filter;
    let out = aws::ec2(sdk)
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", ids::tag::CLUSTER))
                .values(cluster)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("tag-key")
                .values(ids::tag::ETCD_MEMBER)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow!("listing the etcd members: {}", aws::describe(&e)))?;
    let mut v: Vec<(String, String)> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            let name = i
                .tags()
                .iter()
                .find(|t| t.key() == Some(ids::tag::ETCD_MEMBER))?
                .value()?
                .to_string();
            Some((name, i.instance_id()?.to_string()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The snapshot to restore: the one named (a key, or a file name under the snapshot
/// prefix), or the newest.
pub fn choose(available: &[String], wanted: Option<&str>) -> Result<String> {
    match wanted {
        None | Some("latest") => member::latest_snapshot(available.iter().map(String::as_str))
            .ok_or_else(|| {
                anyhow!("there is no etcd snapshot to restore\n  fix: snapshots are taken on etcd.snapshot.schedule; `kube-aws etcd snapshots` lists them")
            }),
        Some(w) => available
            .iter()
            .find(|k| k.as_str() == w || k.rsplit('/').next() == Some(w))
            .cloned()
            .ok_or_else(|| {
                anyhow!("no snapshot {w}\n  fix: `kube-aws etcd snapshots` lists them (a key or a file name)")
            }),
    }
}

/// The steps of a restore, in order: (member, instance, command).
pub fn steps(members: &[(String, String)], snapshot: &str) -> Vec<(String, String, String)> {
    let bin = "/opt/kube-aws/bin/kube-aws node etcd";
    let mut v: Vec<(String, String, String)> = members
        .iter()
        .map(|(n, i)| (n.clone(), i.clone(), format!("{bin} stop")))
        .collect();
    for (k, (n, i)) in members.iter().enumerate() {
        let cmd = if k == 0 {
            format!("{bin} restore --snapshot {snapshot}")
        } else {
            format!("{bin} start")
        };
        v.push((n.clone(), i.clone(), cmd));
    }
    v
}

pub async fn restore(
    sdk: &SdkConfig,
    cluster: &str,
    snapshot: &str,
    members: &[(String, String)],
) -> Result<()> {
    if members.first().map(|m| m.0.as_str()) != Some("etcd-0") {
        bail!(
            "etcd-0 is not running, and it is the member that restores\n  fix: wait until its Auto Scaling group has replaced it (`kube-aws status`)"
        );
    }
    for (name, instance, cmd) in steps(members, snapshot) {
        println!("==> {name} ({instance}): {cmd}");
        let out = aws::ssm::run_on(sdk, &instance, &cmd, Duration::from_secs(900)).await?;
        for l in out.lines().filter(|l| l.starts_with("==>")) {
            println!("    {l}");
        }
    }
    println!(
        "etcd of {cluster} restored from {snapshot}: {} members",
        members.len()
    );
    Ok(())
}
