//! The asset manifest: every key kube-aws wrote for a cluster, kept beside the assets at
//! `<prefix>/kube-aws-manifest.json` (keys relative to the prefix). It is extended before
//! each upload, so an interrupted upload never writes a key the manifest lacks. `destroy`
//! deletes exactly these keys plus the members' snapshots (`etcd-snapshots/<name>.db`,
//! written by the etcd nodes), and refuses while the prefix also holds another cluster:
//! a cluster `team` at `s3://b` and a cluster `prod` at `s3://b/team` share `team/`.
//!
//! `plan_deletion` is pure; `record` and `read` talk to S3.

use crate::aws;
use crate::model::Model;
use crate::node::etcd::SNAPSHOT_PREFIX;
use anyhow::{Result, anyhow};
use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub use crate::model::ids::MANIFEST_FILE as FILE;

/// First path segments a cluster rendered before the manifest existed wrote under
/// (model::names::secret_key, the Renderer's asset keys, NodeBinary::rel_key): what `destroy`
/// deletes for such a cluster.
const LEGACY_DIRS: &[&str] = &[
    "stacks",
    "userdata",
    "nodeconfig",
    "credentials",
    "addons",
    "bin",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub cluster: String,
    /// Keys relative to the cluster's prefix, sorted.
    pub keys: BTreeSet<String>,
}

/// What `destroy` does with the objects under the cluster's prefix.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deletion {
    /// Full keys to delete, the manifest last.
    pub delete: Vec<String>,
    /// The cluster's own snapshots, kept (without --purge-snapshots).
    pub snapshots_kept: usize,
    /// Objects under the prefix that this cluster did not write: left in place.
    pub not_ours: Vec<String>,
    /// Manifests of other clusters below this prefix.
    pub other_clusters: Vec<String>,
}

fn is_own_snapshot(rel: &str) -> bool {
    rel.strip_prefix(SNAPSHOT_PREFIX)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|name| {
            !name.contains('/') && (name.ends_with(".db") || name.ends_with(".marker"))
        })
}

/// Sorts every listed key under `prefix/` into deleted, kept or foreign. With no
/// manifest (a cluster made before it existed) the cluster's own layout decides.
pub fn plan_deletion(
    prefix: &str,
    manifest: Option<&Manifest>,
    listed: &BTreeSet<String>,
    purge_snapshots: bool,
) -> Deletion {
    let mut d = Deletion::default();
    let mut own_manifest = None;
    for key in listed {
        let Some(rel) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
            d.not_ours.push(key.clone());
            continue;
        };
        if rel == FILE {
            own_manifest = Some(key.clone());
        } else if rel.ends_with(&format!("/{FILE}")) {
            d.other_clusters.push(key.clone());
        } else if is_own_snapshot(rel) {
            if purge_snapshots {
                d.delete.push(key.clone());
            } else if rel.ends_with(".db") {
                // (A destroy marker is kept too, but is no snapshot.)
                d.snapshots_kept += 1;
            }
        } else if match manifest {
            Some(m) => m.keys.contains(rel),
            None => rel
                .split_once('/')
                .is_some_and(|(dir, rest)| LEGACY_DIRS.contains(&dir) && !rest.contains('/')),
        } {
            d.delete.push(key.clone());
        } else {
            d.not_ours.push(key.clone());
        }
    }
    d.delete.extend(own_manifest);
    d
}

fn key(model: &Model) -> String {
    format!("{}/{FILE}", model.s3_prefix)
}

/// The cluster's manifest, or None when it has none (yet).
pub async fn read(sdk: &SdkConfig, model: &Model) -> Result<Option<Manifest>> {
    let k = key(model);
    let Some(body) = aws::s3::get_if_exists(&aws::s3(sdk), &model.s3_bucket, &k).await? else {
        return Ok(None);
    };
    let m: Manifest = serde_json::from_slice(&body).map_err(|e| {
        anyhow!(
            "s3://{}/{k} is not a kube-aws manifest: {e}\n  fix: restore it from the bucket's versions, or delete it and run `kube-aws update` to write it again",
            model.s3_bucket
        )
    })?;
    if m.cluster != model.cluster_name {
        return Err(anyhow!(
            "s3://{}/{k} belongs to cluster {}, not {}\n  fix: give this cluster its own s3URI prefix in cluster.yaml",
            model.s3_bucket,
            m.cluster,
            model.cluster_name
        ));
    }
    Ok(Some(m))
}

/// Adds `full_keys` (under the cluster's prefix) to the manifest, writing it only when
/// it grows.
pub async fn record(sdk: &SdkConfig, model: &Model, full_keys: &[String]) -> Result<()> {
    let p = format!("{}/", model.s3_prefix);
    let existing = read(sdk, model).await?;
    let fresh = existing.is_none();
    let mut m = match existing {
        Some(m) => m,
        None => {
            // The first manifest of a cluster made before manifests existed takes over
            // the objects its earlier releases wrote (by kube-aws's key layout), so
            // destroy still deletes old templates and ciphertexts.
            let listed =
                aws::s3::list_keys(&aws::s3(sdk), &model.s3_bucket, &model.s3_prefix).await?;
            let legacy = plan_deletion(&model.s3_prefix, None, &listed, false);
            Manifest {
                cluster: model.cluster_name.clone(),
                keys: legacy
                    .delete
                    .iter()
                    .filter_map(|k| k.strip_prefix(&p).map(str::to_string))
                    .collect(),
            }
        }
    };
    let before = m.keys.len();
    m.keys.extend(
        full_keys
            .iter()
            .filter_map(|k| k.strip_prefix(&p).map(str::to_string)),
    );
    if m.keys.len() == before && !fresh {
        return Ok(());
    }
    let body = serde_json::to_vec_pretty(&m)?;
    let k = key(model);
    aws::s3(sdk)
        .put_object()
        .bucket(&model.s3_bucket)
        .key(&k)
        .body(body.into())
        .content_type("application/json")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "writing s3://{}/{k}: {}",
                model.s3_bucket,
                aws::describe(&e)
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn deletes_only_its_own_keys_and_sees_a_nested_cluster() {
        // Cluster `team` at s3://b (prefix `team`) and cluster `prod` at s3://b/team
        // (prefix `team/prod`).
        let listed = set(&[
            "team/kube-aws-manifest.json",
            "team/stacks/root-abc.json",
            "team/credentials/ca.key-1234.enc",
            "team/etcd-snapshots/20261203T000000Z.db",
            "team/notes.txt",
            "team/prod/kube-aws-manifest.json",
            "team/prod/stacks/root-def.json",
            "team/prod/etcd-snapshots/20261203T000000Z.db",
        ]);
        let m = Manifest {
            cluster: "team".into(),
            keys: set(&["stacks/root-abc.json", "credentials/ca.key-1234.enc"]),
        };
        let d = plan_deletion("team", Some(&m), &listed, false);
        assert_eq!(
            d.delete,
            vec![
                "team/credentials/ca.key-1234.enc",
                "team/stacks/root-abc.json",
                "team/kube-aws-manifest.json"
            ]
        );
        assert_eq!(d.snapshots_kept, 1);
        assert_eq!(d.other_clusters, vec!["team/prod/kube-aws-manifest.json"]);
        assert!(
            d.not_ours
                .contains(&"team/prod/stacks/root-def.json".to_string())
        );
        assert!(
            d.not_ours
                .contains(&"team/prod/etcd-snapshots/20261203T000000Z.db".to_string())
        );
        assert!(d.not_ours.contains(&"team/notes.txt".to_string()));

        let d = plan_deletion("team", Some(&m), &listed, true);
        assert!(
            d.delete
                .contains(&"team/etcd-snapshots/20261203T000000Z.db".to_string())
        );
        assert!(
            !d.delete
                .contains(&"team/prod/etcd-snapshots/20261203T000000Z.db".to_string())
        );
    }

    #[test]
    fn without_a_manifest_the_layout_decides() {
        let listed = set(&[
            "team/stacks/root-abc.json",
            "team/bin/kube-aws-amd64-1234",
            "team/prod/stacks/root-def.json",
            "team/stacks/nested/x.json",
        ]);
        let d = plan_deletion("team", None, &listed, false);
        assert_eq!(
            d.delete,
            vec!["team/bin/kube-aws-amd64-1234", "team/stacks/root-abc.json"]
        );
        assert_eq!(d.not_ours.len(), 2);
    }
}
