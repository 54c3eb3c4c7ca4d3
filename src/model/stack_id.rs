//! One name per stack. A stack is spelled six ways across kube-aws — its name in plans and
//! `--targets` (`node-pool/general`), its asset (`stack/node-pool/general`), its S3 key
//! stem (`node-pool-general`), its logical id in the root (`NodePoolGeneral`), the role of
//! its instances (`worker-general`) and its exported file (`stack__node-pool__general.json`)
//! — and every conversion is here.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StackId {
    Root,
    Network,
    Etcd,
    ControlPlane,
    AddOns,
    NodePool(String),
}

/// `private-a` → `PrivateA`: a CloudFormation logical-id fragment.
pub fn logical(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut cs = p.chars();
            cs.next()
                .map(|f| f.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect()
}

impl StackId {
    /// The nested stacks in creation order of the root's fixed part.
    pub const CORE: [StackId; 3] = [StackId::Network, StackId::Etcd, StackId::ControlPlane];

    /// The plan and `--targets` name: `network`, `node-pool/general`.
    pub fn name(&self) -> String {
        match self {
            StackId::NodePool(p) => format!("node-pool/{p}"),
            other => other.key_stem(),
        }
    }

    /// The S3 key stem: `stacks/<stem>-<hash>.json`.
    pub fn key_stem(&self) -> String {
        match self {
            StackId::Root => "root".into(),
            StackId::Network => "network".into(),
            StackId::Etcd => "etcd".into(),
            StackId::ControlPlane => "control-plane".into(),
            StackId::AddOns => "addons".into(),
            StackId::NodePool(p) => format!("node-pool-{p}"),
        }
    }

    /// The rendered asset's name.
    pub fn asset_name(&self) -> String {
        format!("stack/{}", self.name())
    }

    /// The logical id of the nested stack in the root (`Root` for the root itself).
    pub fn logical_id(&self) -> String {
        match self {
            StackId::Root => "Root".into(),
            StackId::Network => "Network".into(),
            StackId::Etcd => "Etcd".into(),
            StackId::ControlPlane => "ControlPlane".into(),
            StackId::AddOns => "AddOns".into(),
            StackId::NodePool(p) => format!("NodePool{}", logical(p)),
        }
    }

    /// The role of the stack's instances (their cloud-config and node config), if any.
    pub fn role(&self) -> Option<String> {
        match self {
            StackId::Etcd => Some("etcd".into()),
            StackId::ControlPlane => Some("controller".into()),
            StackId::NodePool(p) => Some(format!("worker-{p}")),
            _ => None,
        }
    }

    /// The file `--export` writes: `stack__node-pool__general.json`.
    pub fn export_file(&self) -> String {
        format!("stack__{}.json", self.name().replace('/', "__"))
    }

    pub fn pool(&self) -> Option<&str> {
        match self {
            StackId::NodePool(p) => Some(p),
            _ => None,
        }
    }

    /// The control plane's side of an update (`update` applies it before the pools).
    pub fn is_core(&self) -> bool {
        matches!(
            self,
            StackId::Network | StackId::Etcd | StackId::ControlPlane
        )
    }

    /// From a plan name (`node-pool/general`).
    pub fn from_name(name: &str) -> Option<StackId> {
        match name.strip_prefix("node-pool/") {
            Some(p) if !p.is_empty() => Some(StackId::NodePool(p.to_string())),
            Some(_) => None,
            None => Self::from_key_stem(name),
        }
    }

    /// From a key stem (`node-pool-general`).
    pub fn from_key_stem(stem: &str) -> Option<StackId> {
        Some(match stem {
            "root" => StackId::Root,
            "network" => StackId::Network,
            "etcd" => StackId::Etcd,
            "control-plane" => StackId::ControlPlane,
            "addons" => StackId::AddOns,
            s => StackId::NodePool(
                s.strip_prefix("node-pool-")
                    .filter(|p| !p.is_empty())?
                    .to_string(),
            ),
        })
    }

    /// From a role (`worker-general`, `controller`, `etcd`).
    pub fn from_role(role: &str) -> Option<StackId> {
        match role {
            "etcd" => Some(StackId::Etcd),
            "controller" => Some(StackId::ControlPlane),
            r => r
                .strip_prefix("worker-")
                .filter(|p| !p.is_empty())
                .map(|p| StackId::NodePool(p.to_string())),
        }
    }
}

impl fmt::Display for StackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips() {
        for id in [
            StackId::Root,
            StackId::Network,
            StackId::Etcd,
            StackId::ControlPlane,
            StackId::AddOns,
            StackId::NodePool("gpu-spot".into()),
        ] {
            assert_eq!(StackId::from_name(&id.name()), Some(id.clone()));
            assert_eq!(StackId::from_key_stem(&id.key_stem()), Some(id.clone()));
            if let Some(r) = id.role() {
                assert_eq!(StackId::from_role(&r), Some(id.clone()));
            }
        }
        let p = StackId::NodePool("gpu-spot".into());
        assert_eq!(
            (
                p.name(),
                p.asset_name(),
                p.key_stem(),
                p.logical_id(),
                p.role(),
                p.export_file()
            ),
            (
                "node-pool/gpu-spot".to_string(),
                "stack/node-pool/gpu-spot".to_string(),
                "node-pool-gpu-spot".to_string(),
                "NodePoolGpuSpot".to_string(),
                Some("worker-gpu-spot".to_string()),
                "stack__node-pool__gpu-spot.json".to_string()
            )
        );
        assert_eq!(StackId::from_name("node-pool/"), None);
        assert_eq!(StackId::from_role("worker-"), None);
    }
}
