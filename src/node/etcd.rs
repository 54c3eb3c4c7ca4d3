//! How an etcd member starts (pure): resume from its data, found a cluster, join (or
//! re-join) a running one, or restore the latest snapshot when every member has lost
//! its data. The shell (`deploy::node::etcd`) observes, this decides, the shell acts.
//!
//! Each member is an Auto Scaling group of one whose instance attaches the member's
//! own EBS volume and claims the member's DNS name at boot. The members are created
//! and rolled one after another (etcd-0 first), so:
//! - etcd-0 of a new cluster finds no peer and founds a cluster of one;
//! - every later member (and every replacement) finds the running cluster and joins it
//!   through runtime reconfiguration: remove its stale entry, then add itself, then
//!   start with `--initial-cluster-state=existing`. Removing before adding keeps the
//!   quorum of the smaller cluster ("Replace a failed machine",
//!   https://etcd.io/docs/v3.5/op-guide/runtime-configuration/#replace-a-failed-machine;
//!   "--initial-cluster-state … Set to existing to join an existing cluster",
//!   https://etcd.io/docs/v3.5/op-guide/configuration/#--initial-cluster-state);
//! - a member with data resumes from it: etcd ignores the `--initial-*` flags once its
//!   data directory exists (same page: "ignored … if the member has data").

use serde::Serialize;

/// The data volume's mount point on the host.
pub const MOUNT: &str = "/var/lib/etcd";
/// A directory on the data volume, created only once the volume is mounted. The pod
/// mounts it with hostPath type `Directory`, which "must exist at the given path"
/// (https://kubernetes.io/docs/concepts/storage/volumes/#hostpath-volume-types): if
/// the volume is not mounted, the directory is not there and kubelet refuses to start
/// etcd, rather than starting it on the root disk with an empty data directory.
pub const VOLUME_DIR: &str = "/var/lib/etcd/volume";
/// Where VOLUME_DIR appears inside the etcd container.
pub const CONTAINER_DIR: &str = "/var/lib/etcd";
/// The data directory, inside the container (host: VOLUME_DIR/data).
pub const DATA_DIR: &str = "/var/lib/etcd/data";
/// The snapshot a restore reads, inside the container (host: VOLUME_DIR/restore.db).
pub const RESTORE_FILE: &str = "/var/lib/etcd/restore.db";
/// Under the cluster's S3 prefix: `<prefix>/etcd-snapshots/<UTC timestamp>.db`.
pub use crate::model::ids::SNAPSHOT_PREFIX;

/// One entry of `member list` (the v3 API's Member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub id: u64,
    /// Empty until the member has started once (an added, unstarted member).
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// What the member saw before starting etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Its data directory holds a member (`<data>/member` exists).
    pub has_data: bool,
    /// The running cluster's members, from the first peer that answered; None when no
    /// peer answered within the grace period.
    pub members: Option<Vec<Member>>,
    /// The newest snapshot's S3 key, if any.
    pub latest_snapshot: Option<String>,
}

/// Who this member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub name: String,
    pub peer_url: String,
    /// The first member (etcd-0): the only one that founds or restores a cluster.
    pub first: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "start", rename_all = "kebab-case")]
pub enum Start {
    /// The data directory holds this member: etcd resumes from it.
    Resume,
    /// A new cluster, of this member alone; the others join it.
    Found,
    /// The running cluster, through runtime reconfiguration.
    Join {
        /// Our entry from before our data was lost: removed first.
        remove: Option<u64>,
        /// False when an earlier attempt already added us (an unstarted entry).
        add: bool,
    },
    /// Every member lost its data: the newest snapshot, into a cluster of one.
    Restore { snapshot: String },
    /// Not the first member and no cluster answers yet: wait for etcd-0.
    Wait { reason: String },
}

pub fn decide(me: &Me, obs: &Observed) -> Start {
    if obs.has_data {
        return Start::Resume;
    }
    match &obs.members {
        Some(members) => {
            let mine = members
                .iter()
                .find(|m| m.name == me.name || m.peer_urls.iter().any(|u| u == &me.peer_url));
            match mine {
                // Added by an earlier attempt that did not get to start etcd.
                Some(m) if m.name.is_empty() => Start::Join {
                    remove: None,
                    add: false,
                },
                Some(m) => Start::Join {
                    remove: Some(m.id),
                    add: true,
                },
                None => Start::Join {
                    remove: None,
                    add: true,
                },
            }
        }
        None if !me.first => Start::Wait {
            reason: "no member of the cluster answers yet; etcd-0 founds it".into(),
        },
        None => match &obs.latest_snapshot {
            Some(s) => Start::Restore {
                snapshot: s.clone(),
            },
            None => Start::Found,
        },
    }
}

/// `--initial-cluster` and `--initial-cluster-state` for a start.
pub fn initial_cluster(me: &Me, start: &Start, members: &[Member]) -> (String, &'static str) {
    let own = format!("{}={}", me.name, me.peer_url);
    match start {
        Start::Join { .. } => {
            let mut v: Vec<String> = members
                .iter()
                .filter(|m| !m.peer_urls.iter().any(|u| u == &me.peer_url))
                .filter_map(|m| {
                    m.peer_urls
                        .first()
                        .map(|u| format!("{}={u}", m.name))
                        .filter(|_| !m.name.is_empty())
                })
                .collect();
            v.push(own);
            v.sort();
            (v.join(","), "existing")
        }
        // Resume ignores both; Found and Restore are a cluster of one.
        _ => (own, "new"),
    }
}

/// The listen and advertise URLs and the TLS files of a member.
#[derive(Debug, Clone)]
pub struct Urls {
    pub listen_client: String,
    pub advertise_client: String,
    pub listen_peer: String,
    pub pki: String,
}

/// etcd's flags for a member (after the program name).
pub fn member_args(
    me: &Me,
    urls: &Urls,
    data_dir: &str,
    token: &str,
    (cluster, state): (&str, &str),
) -> Vec<String> {
    let pki = &urls.pki;
    vec![
        format!("--name={}", me.name),
        format!("--data-dir={data_dir}"),
        format!("--listen-client-urls={}", urls.listen_client),
        format!("--advertise-client-urls={}", urls.advertise_client),
        format!("--listen-peer-urls={}", urls.listen_peer),
        format!("--initial-advertise-peer-urls={}", me.peer_url),
        format!("--initial-cluster={cluster}"),
        format!("--initial-cluster-state={state}"),
        format!("--initial-cluster-token={token}"),
        format!("--cert-file={pki}/server.crt"),
        format!("--key-file={pki}/server.key"),
        format!("--trusted-ca-file={pki}/ca.crt"),
        "--client-cert-auth=true".into(),
        format!("--peer-cert-file={pki}/peer.crt"),
        format!("--peer-key-file={pki}/peer.key"),
        format!("--peer-trusted-ca-file={pki}/ca.crt"),
        "--peer-client-cert-auth=true".into(),
        "--snapshot-count=10000".into(),
    ]
}

/// The arguments of `etcdctl snapshot restore` (after `etcdctl`, with ETCDCTL_API=3,
/// the default since 3.4): the snapshot into a fresh data directory, as a new cluster
/// of this member alone (https://etcd.io/docs/v3.5/op-guide/recovery/#restoring-a-cluster).
/// 3.6 moves restore to `etcdutl`, with the same flags.
pub fn restore_args(me: &Me, snapshot_file: &str, data_dir: &str, token: &str) -> Vec<String> {
    vec![
        "snapshot".into(),
        "restore".into(),
        snapshot_file.into(),
        format!("--data-dir={data_dir}"),
        format!("--name={}", me.name),
        format!("--initial-cluster={}={}", me.name, me.peer_url),
        format!("--initial-cluster-token={token}"),
        format!("--initial-advertise-peer-urls={}", me.peer_url),
    ]
}

/// The newest snapshot: keys end in `<UTC %Y%m%dT%H%M%SZ>.db`, which sort by time.
pub fn latest_snapshot<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<String> {
    keys.into_iter()
        .filter(|k| k.ends_with(".db"))
        .max_by_key(|k| k.rsplit('/').next().unwrap_or(k).to_string())
        .map(str::to_string)
}

/// The marker `destroy` leaves beside the snapshots it keeps:
/// `<prefix>/etcd-snapshots/destroyed-<UTC %Y%m%dT%H%M%SZ>.marker`.
pub fn destroyed_marker(timestamp: &str) -> String {
    format!("destroyed-{timestamp}.marker")
}

/// The snapshot a member restores by itself when every member lost its data: the
/// newest one taken after the cluster was last destroyed. A cluster created again under
/// the same name and prefix is a new cluster: it must not come up with the old one's
/// data (`kube-aws etcd restore --snapshot KEY` still restores any snapshot on request).
pub fn latest_restorable<'a>(keys: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    let base = |k: &'a str| k.rsplit('/').next().unwrap_or(k);
    let destroyed = keys
        .clone()
        .into_iter()
        .filter_map(|k| {
            base(k)
                .strip_prefix("destroyed-")
                .and_then(|r| r.strip_suffix(".marker"))
        })
        .max();
    latest_snapshot(
        keys.into_iter()
            .filter(|k| destroyed.is_none_or(|d| base(k).trim_end_matches(".db") > d)),
    )
}

/// Where the member's own volume appears, by its EBS identity. On Nitro instances the
/// volume is an NVMe device whose serial is the volume id without its hyphen, and
/// udev links it as `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_<serial>`
/// (https://docs.aws.amazon.com/ebs/latest/userguide/identify-nvme-ebs-device.html);
/// on Xen instances it is the device name it was attached as (`/dev/xvdf`).
pub fn volume_devices(volume_id: &str, attached_as: &str) -> Vec<String> {
    vec![
        format!(
            "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}",
            volume_id.replace('-', "")
        ),
        attached_as.replace("/dev/sd", "/dev/xvd"),
    ]
}

/// The device name the agent attaches the volume as.
pub const ATTACH_AS: &str = "/dev/xvdf";

/// The etcd static pod: the member's flags, its volume directory (hostPath type
/// `Directory`: see VOLUME_DIR) and its certificates.
pub fn pod_manifest(image: &str, args: Vec<String>, pki: &str) -> String {
    let mut command = vec!["etcd".to_string()];
    command.extend(args);
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "etcd", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "containers": [{
                "name": "etcd",
                "image": image,
                "command": command,
                "volumeMounts": [
                    {"name": "data", "mountPath": CONTAINER_DIR},
                    {"name": "pki", "mountPath": pki, "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "data", "hostPath": {"path": VOLUME_DIR, "type": "Directory"}},
                {"name": "pki", "hostPath": {"path": pki, "type": "Directory"}},
            ],
        },
    });
    serde_yaml_ng::to_string(&pod).unwrap_or_default()
}

/// The members' names from `--initial-cluster` (`etcd-0=https://…,…`), in order.
pub fn member_names(initial_cluster: &str) -> Vec<String> {
    initial_cluster
        .split(',')
        .filter_map(|m| m.split_once('=').map(|(n, _)| n.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(first: bool) -> Me {
        Me {
            name: "etcd-1".into(),
            peer_url: "https://etcd-1.z:2380".into(),
            first,
        }
    }

    fn member(id: u64, name: &str, n: u8) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![format!("https://etcd-{n}.z:2380")],
            client_urls: vec![format!("https://etcd-{n}.z:2379")],
        }
    }

    fn obs(has_data: bool, members: Option<Vec<Member>>, snap: Option<&str>) -> Observed {
        Observed {
            has_data,
            members,
            latest_snapshot: snap.map(str::to_string),
        }
    }

    #[test]
    fn data_on_the_volume_resumes_whatever_the_cluster_says() {
        assert_eq!(decide(&me(false), &obs(true, None, None)), Start::Resume);
        assert_eq!(
            decide(&me(true), &obs(true, Some(vec![]), Some("s.db"))),
            Start::Resume
        );
    }

    #[test]
    fn an_empty_member_of_a_running_cluster_replaces_its_stale_entry() {
        let ms = vec![member(7, "etcd-0", 0), member(9, "etcd-1", 1)];
        let s = decide(&me(false), &obs(false, Some(ms.clone()), Some("x.db")));
        assert_eq!(
            s,
            Start::Join {
                remove: Some(9),
                add: true
            }
        );
        let (cluster, state) = initial_cluster(&me(false), &s, &ms);
        assert_eq!(
            cluster,
            "etcd-0=https://etcd-0.z:2380,etcd-1=https://etcd-1.z:2380"
        );
        assert_eq!(state, "existing");
    }

    #[test]
    fn an_added_but_unstarted_entry_is_not_added_twice() {
        let ms = vec![member(7, "etcd-0", 0), member(9, "", 1)];
        assert_eq!(
            decide(&me(false), &obs(false, Some(ms), None)),
            Start::Join {
                remove: None,
                add: false
            }
        );
    }

    #[test]
    fn a_new_member_joins() {
        let ms = vec![member(7, "etcd-0", 0)];
        assert_eq!(
            decide(&me(false), &obs(false, Some(ms), None)),
            Start::Join {
                remove: None,
                add: true
            }
        );
    }

    #[test]
    fn with_no_cluster_only_the_first_member_founds_or_restores() {
        assert!(matches!(
            decide(&me(false), &obs(false, None, Some("a.db"))),
            Start::Wait { .. }
        ));
        assert_eq!(decide(&me(true), &obs(false, None, None)), Start::Found);
        assert_eq!(
            decide(&me(true), &obs(false, None, Some("p/etcd-snapshots/b.db"))),
            Start::Restore {
                snapshot: "p/etcd-snapshots/b.db".into()
            }
        );
        let (c, s) = initial_cluster(&me(true), &Start::Found, &[]);
        assert_eq!((c.as_str(), s), ("etcd-1=https://etcd-1.z:2380", "new"));
    }

    #[test]
    fn the_latest_snapshot_is_the_newest_timestamp() {
        let keys = [
            "c/etcd-snapshots/20261201T000000Z.db",
            "c/etcd-snapshots/20261203T010000Z.db",
            "c/etcd-snapshots/20261202T230000Z.db",
            "c/etcd-snapshots/notes.txt",
        ];
        assert_eq!(
            latest_snapshot(keys).as_deref(),
            Some("c/etcd-snapshots/20261203T010000Z.db")
        );
        assert_eq!(latest_snapshot([]), None);
        // After a destroy, only snapshots of the cluster created since are restored by
        // themselves.
        let mut after = keys.to_vec();
        after.push("c/etcd-snapshots/destroyed-20261203T020000Z.marker");
        assert_eq!(latest_restorable(after.iter().copied()), None);
        after.push("c/etcd-snapshots/20261203T030000Z.db");
        assert_eq!(
            latest_restorable(after.iter().copied()).as_deref(),
            Some("c/etcd-snapshots/20261203T030000Z.db")
        );
        assert_eq!(
            latest_restorable(keys.iter().copied()).as_deref(),
            Some("c/etcd-snapshots/20261203T010000Z.db")
        );
    }

    #[test]
    fn the_volume_is_found_by_its_ebs_identity() {
        assert_eq!(
            volume_devices("vol-0abc", ATTACH_AS),
            [
                "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc",
                "/dev/xvdf"
            ]
        );
        assert_eq!(
            member_names("etcd-0=https://a:2380,etcd-1=https://b:2380"),
            ["etcd-0", "etcd-1"]
        );
    }
}
