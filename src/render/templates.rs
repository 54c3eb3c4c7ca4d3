//! The built-in stack templates and cloud-configs (embedded in the binary), and the
//! set actually used: a user's local copy wins over the built-in one.

use std::collections::BTreeMap;

/// (path relative to the cluster directory, built-in content).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "stack-templates/root.yaml",
        include_str!("../../stack-templates/root.yaml"),
    ),
    (
        "stack-templates/network.yaml",
        include_str!("../../stack-templates/network.yaml"),
    ),
    (
        "stack-templates/etcd.yaml",
        include_str!("../../stack-templates/etcd.yaml"),
    ),
    (
        "stack-templates/control-plane.yaml",
        include_str!("../../stack-templates/control-plane.yaml"),
    ),
    (
        "stack-templates/node-pool.yaml",
        include_str!("../../stack-templates/node-pool.yaml"),
    ),
    (
        "stack-templates/addons.yaml",
        include_str!("../../stack-templates/addons.yaml"),
    ),
    (
        "userdata/instance-user-data.yaml",
        include_str!("../../userdata/instance-user-data.yaml"),
    ),
    (
        "userdata/cloud-config-etcd.yaml",
        include_str!("../../userdata/cloud-config-etcd.yaml"),
    ),
    (
        "userdata/cloud-config-controller.yaml",
        include_str!("../../userdata/cloud-config-controller.yaml"),
    ),
    (
        "userdata/cloud-config-worker.yaml",
        include_str!("../../userdata/cloud-config-worker.yaml"),
    ),
    ("userdata/lib.sh", include_str!("../../userdata/lib.sh")),
];

/// The templates a render uses, by relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub files: BTreeMap<String, String>,
    /// Paths taken from the user's local copies rather than the built-ins.
    pub local: Vec<String>,
}

impl Templates {
    /// Only the built-in templates.
    pub fn builtin() -> Templates {
        Templates {
            files: BUILTIN
                .iter()
                .map(|(p, c)| (p.to_string(), c.to_string()))
                .collect(),
            local: Vec::new(),
        }
    }

    /// The built-ins, each replaced by `local(path)` when that returns Some.
    pub fn with_overrides(mut local: impl FnMut(&str) -> Option<String>) -> Templates {
        let mut t = Templates::builtin();
        for (path, content) in t.files.iter_mut() {
            if let Some(mine) = local(path) {
                if mine != *content {
                    t.local.push(path.clone());
                }
                *content = mine;
            }
        }
        t
    }

    pub fn get(&self, path: &str) -> &str {
        self.files.get(path).map(String::as_str).unwrap_or_default()
    }
}
