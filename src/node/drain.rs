//! Draining a node before its instance goes, as `kubectl drain --ignore-daemonsets
//! --delete-emptydir-data --force` does (k8s.io/kubectl/pkg/drain): cordon, then evict
//! every pod but DaemonSet and mirror pods through the Eviction API, which honours
//! PodDisruptionBudgets (429 while a budget blocks: retry)
//! (https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/).
//! The decisions are pure; `watch` polls the instance metadata for a spot interruption
//! notice or the Auto Scaling lifecycle state Terminated, drains, and completes the
//! lifecycle action only after the drain.

use serde_json::Value;

/// Pods to evict: not owned by a DaemonSet (the DaemonSet controller would recreate it,
/// and it tolerates unschedulable), not a mirror pod (the kubelet owns it).
pub fn evictable(pods: &[Value]) -> Vec<(String, String)> {
    pods.iter()
        .filter(|p| {
            let daemon = p
                .pointer("/metadata/ownerReferences")
                .and_then(|o| o.as_array())
                .is_some_and(|o| {
                    o.iter().any(|r| {
                        r.get("kind").and_then(|k| k.as_str()) == Some("DaemonSet")
                            && r.get("controller").and_then(|c| c.as_bool()) == Some(true)
                    })
                });
            let mirror = p
                .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                .is_some();
            !daemon && !mirror
        })
        .filter_map(|p| {
            Some((
                p.pointer("/metadata/namespace")?.as_str()?.to_string(),
                p.pointer("/metadata/name")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Why this node must drain now, from the metadata service: a spot interruption notice
/// (`spot/instance-action`, 404 when none; two minutes' warning) or the lifecycle
/// state `Terminated` of a scale-in or a rolling update
/// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html,
/// https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Spot(String),
    Terminating,
}

pub fn trigger(spot_action: Option<&str>, lifecycle: Option<&str>) -> Option<Trigger> {
    if lifecycle.map(str::trim) == Some("Terminated") {
        return Some(Trigger::Terminating);
    }
    let action = spot_action?;
    let v: Value = serde_json::from_str(action).ok()?;
    match v.get("action").and_then(|a| a.as_str()) {
        Some(a @ ("terminate" | "stop" | "hibernate")) => Some(Trigger::Spot(a.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn daemonset_and_mirror_pods_stay() {
        let pods = vec![
            json!({"metadata": {"namespace": "a", "name": "web", "ownerReferences": [{"kind": "ReplicaSet", "controller": true}]}}),
            json!({"metadata": {"namespace": "kube-system", "name": "calico-node-x", "ownerReferences": [{"kind": "DaemonSet", "controller": true}]}}),
            json!({"metadata": {"namespace": "kube-system", "name": "etcd", "annotations": {"kubernetes.io/config.mirror": "abc"}}}),
            json!({"metadata": {"namespace": "b", "name": "bare"}}),
        ];
        assert_eq!(
            evictable(&pods),
            vec![("a".into(), "web".into()), ("b".into(), "bare".into())]
        );
    }

    #[test]
    fn triggers() {
        assert_eq!(trigger(None, None), None);
        assert_eq!(trigger(None, Some("InService")), None);
        assert_eq!(
            trigger(None, Some("Terminated\n")),
            Some(Trigger::Terminating)
        );
        assert_eq!(
            trigger(
                Some(r#"{"action": "terminate", "time": "2017-09-18T08:22:00Z"}"#),
                Some("InService")
            ),
            Some(Trigger::Spot("terminate".into()))
        );
        assert_eq!(trigger(Some("not json"), None), None);
    }
}
