//! Rendering: Config + Model + templates + credential fingerprints → the asset set
//! (every stack template as compact JSON, every cloud-config and user-data stub), each
//! with its content-hashed S3 key. Pure and deterministic: no I/O, no clock, no AWS.
//!
//! Order matters and follows the data: cloud-configs first (their hashes name their S3
//! keys), then the stubs that fetch them (inlined into launch templates), then the
//! child stack templates, then the root stack that points at the children by key.

pub mod context;
pub mod nodeconfig;
pub mod templates;

use crate::config::Config;
use crate::model::Model;
use crate::model::stack_id::StackId;
use base64::Engine;
use context::{Ctx, UserdataRef};
use regex::Regex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use templates::Templates;

/// CloudFormation's limit for a template given by URL.
pub const MAX_TEMPLATE_BYTES: usize = 460_800;
/// CloudFormation's limit of resources per stack.
pub const MAX_RESOURCES: usize = 500;
/// EC2's limit for user data (before base64).
pub const MAX_USER_DATA_BYTES: usize = 16_384;
/// Hex digits of the content hash in S3 keys (64 bits).
use crate::model::ids::HASH_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Template,
    CloudConfig,
    UserDataStub,
    /// The add-ons' Kubernetes objects (JSON), applied by the controllers.
    AddonBundle,
    /// A role's node config (JSON), read by `kube-aws node bootstrap`.
    NodeConfig,
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Stable logical name: `stack/root`, `stack/node-pool/general`, `userdata/etcd`, …
    pub name: String,
    /// Full S3 key (under `<prefix>/<clusterName>/`); content-hashed. Stubs are not
    /// uploaded (they live inside launch templates) but carry a key for export.
    pub key: String,
    pub body: Vec<u8>,
    pub sha256: String,
    pub kind: Kind,
}

/// Everything `render` produced, by logical name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetSet {
    pub assets: BTreeMap<String, Asset>,
    /// The node agent binaries the stubs fetch (uploaded from their files by `up`).
    pub binaries: Vec<NodeBinary>,
}

/// The kube-aws binary that runs on nodes of one CPU architecture. Its content hash
/// names its S3 key, so a new kube-aws is a new key, a new stub, and a roll that `diff`
/// shows; an unchanged one is never uploaded twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeBinary {
    /// `amd64` or `arm64`.
    pub arch: String,
    pub sha256: String,
    pub size: u64,
    /// The kube-aws version it reports.
    pub version: String,
    /// Where `up` reads it from (not part of the render).
    #[serde(skip)]
    pub path: std::path::PathBuf,
}

impl NodeBinary {
    /// S3 key relative to the cluster prefix.
    pub fn rel_key(&self) -> String {
        format!(
            "bin/kube-aws-{}-{}-{}",
            self.version,
            self.arch,
            &self.sha256[..HASH_LEN.min(self.sha256.len())]
        )
    }
}

/// The CPU architecture of an EC2 instance type: Graviton families carry a `g` among
/// the attribute letters after the generation (m7g, c6gn, r7gd, t4g, x2gd), and a1.
pub fn instance_arch(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or_default();
    if family == "a1" {
        return "arm64";
    }
    let after_digits = family
        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
        .trim_start_matches(|c: char| c.is_ascii_digit());
    let generation =
        family.len() > after_digits.len() && family.chars().any(|c| c.is_ascii_digit());
    if generation && after_digits.contains('g') {
        "arm64"
    } else {
        "amd64"
    }
}

impl AssetSet {
    pub fn root(&self) -> Option<&Asset> {
        self.assets.get("stack/root")
    }
    /// The assets to upload (templates and cloud-configs), sorted by key.
    pub fn uploads(&self) -> Vec<&Asset> {
        let mut v: Vec<&Asset> = self
            .assets
            .values()
            .filter(|a| a.kind != Kind::UserDataStub)
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

pub use crate::pki::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{template}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Template {
        template: String,
        line: Option<usize>,
        message: String,
    },
    #[error("{0}")]
    Limit(String),
    #[error("credentials/{file} is missing\n  fix: run `kube-aws render credentials` first")]
    MissingCredential { file: String },
    #[error(
        "no kube-aws node binary for {arch}, which {who} runs on\n  fix: pass --node-binary-{arch} PATH with a kube-aws built for linux/{arch} (the running binary serves linux/amd64 only when it is one)"
    )]
    NoNodeBinary { arch: String, who: String },
    #[error(transparent)]
    Addons(#[from] crate::addons::AddonsError),
}

/// (credentials file, destination on the node) per role.
pub const ETCD_PUBLIC: &[(&str, &str)] = &[
    ("etcd-ca.pem", "etcd/ca.crt"),
    ("etcd-server.pem", "etcd/server.crt"),
    ("etcd-peer.pem", "etcd/peer.crt"),
    ("etcd-client.pem", "etcd/client.crt"),
];
pub const ETCD_SECRETS: &[(&str, &str)] = &[
    ("etcd-server-key.pem", "/etc/kubernetes/pki/etcd/server.key"),
    ("etcd-peer-key.pem", "/etc/kubernetes/pki/etcd/peer.key"),
    ("etcd-client-key.pem", "/etc/kubernetes/pki/etcd/client.key"),
];
/// What controllers get: the CAs, the service-account key pair and the etcd client
/// certificate kubeadm points at, and no other certificate. kubeadm signs each
/// controller's own apiserver, apiserver-kubelet-client and front-proxy-client
/// certificates from these CAs: it checks an existing certificate against the node's own
/// name and address, so one pre-generated apiserver.crt would fail every controller but
/// one ("manual certificate distribution" of
/// https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/high-availability/,
/// plus the files `etcd.external` names).
pub const CONTROLLER_PUBLIC: &[(&str, &str)] = &[
    ("ca.pem", "ca.crt"),
    ("front-proxy-ca.pem", "front-proxy-ca.crt"),
    ("etcd-ca.pem", "etcd/ca.crt"),
    ("apiserver-etcd-client.pem", "apiserver-etcd-client.crt"),
    ("service-account-pub.pem", "sa.pub"),
];
/// The controllers hold the cluster and front-proxy CA keys (kubeadm signs kubelet and
/// component certificates with them) but never the etcd CA key.
pub const CONTROLLER_SECRETS: &[(&str, &str)] = &[
    ("ca-key.pem", "/etc/kubernetes/pki/ca.key"),
    (
        "front-proxy-ca-key.pem",
        "/etc/kubernetes/pki/front-proxy-ca.key",
    ),
    (
        "apiserver-etcd-client-key.pem",
        "/etc/kubernetes/pki/apiserver-etcd-client.key",
    ),
    ("service-account-key.pem", "/etc/kubernetes/pki/sa.key"),
    (
        "encryption-config.yaml",
        "/etc/kubernetes/encryption-config.yaml",
    ),
    ("kubelet-bootstrap-token", "/etc/kubernetes/bootstrap-token"),
];
pub const WORKER_PUBLIC: &[(&str, &str)] = &[("ca.pem", "ca.crt")];
pub const WORKER_SECRETS: &[(&str, &str)] =
    &[("kubelet-bootstrap-token", "/etc/kubernetes/bootstrap-token")];

/// What the SSM agent needs for Run Command (`kube-aws etcd restore`) and Session
/// Manager: AmazonSSMManagedInstanceCore's ssm:UpdateInstanceInformation, ec2messages:*
/// and ssmmessages:* actions (AWS Managed Policy Reference, AmazonSSMManagedInstanceCore
/// v2; the Session Manager set is AWSCloud9SSMInstanceProfile's), without its
/// ssm:GetParameter and ssm:GetParameters on every parameter, nor the State Manager,
/// inventory and patching actions kube-aws does not use.
pub const SSM_AGENT_ACTIONS: &[&str] = &[
    "ssm:UpdateInstanceInformation",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
];

/// A secret nodes read at one fixed key instead of its content-hashed one, because the
/// cluster replaces it: the bootstrap token, which the controllers rotate (node::token).
pub fn rotating_key(file: &str) -> Option<&'static str> {
    (file == crate::pki::spec::BOOTSTRAP_TOKEN)
        .then_some(crate::model::ids::BOOTSTRAP_TOKEN_CURRENT)
}

#[derive(Serialize)]
pub(crate) struct PublicFile {
    pub(crate) dest: String,
    pub(crate) pem: String,
}

#[derive(Serialize)]
pub(crate) struct SecretFile {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) dest: String,
}

#[derive(Serialize)]
pub(crate) struct RoleFiles {
    pub(crate) public: Vec<PublicFile>,
    pub(crate) secrets: Vec<SecretFile>,
}

fn role_files(
    creds: &Credentials,
    prefix: &str,
    public: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> Result<RoleFiles, RenderError> {
    let missing = |f: &str| RenderError::MissingCredential {
        file: f.to_string(),
    };
    Ok(RoleFiles {
        public: public
            .iter()
            .map(|(f, d)| {
                Ok(PublicFile {
                    dest: d.to_string(),
                    pem: creds.public.get(*f).ok_or_else(|| missing(f))?.clone(),
                })
            })
            .collect::<Result<_, RenderError>>()?,
        secrets: secrets
            .iter()
            .map(|(f, d)| {
                let fp = creds.fingerprints.get(*f).ok_or_else(|| missing(f))?;
                let rel = rotating_key(f)
                    .map_or_else(|| crate::model::names::secret_key(f, fp), str::to_string);
                Ok(SecretFile {
                    name: f.to_string(),
                    key: format!("{prefix}/{rel}"),
                    dest: d.to_string(),
                })
            })
            .collect::<Result<_, RenderError>>()?,
    })
}

pub fn sha256_hex(b: &[u8]) -> String {
    crate::pki::envelope::sha256_hex(b)
}

fn indent_filter(
    value: &tera::Value,
    args: &HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let n = args.get("n").and_then(tera::Value::as_u64).unwrap_or(2) as usize;
    let s = value
        .as_str()
        .ok_or_else(|| tera::Error::msg("indent: not a string"))?;
    let pad = " ".repeat(n);
    let out: Vec<String> = s
        .trim_end_matches('\n')
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect();
    Ok(tera::Value::String(out.join("\n")))
}

static UNDEFINED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Variable `([^`]+)` not found").unwrap_or_else(|e| panic!("built-in regex: {e}"))
});

/// A tera failure as the user should read it: the template, the line and the variable.
fn tera_error(template: &str, source: &str, e: &tera::Error) -> RenderError {
    let mut chain = vec![e.to_string()];
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        chain.push(c.to_string());
        cur = c.source();
    }
    let text = chain.join(": ");
    if let Some(var) = UNDEFINED
        .captures(&text)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_string())
    {
        let line = source.lines().position(|l| l.contains(&var)).map(|i| i + 1);
        return RenderError::Template {
            template: template.to_string(),
            line,
            message: format!(
                "variable `{var}` is not defined\n  fix: check its spelling; `kube-aws render stack --diff` shows how your copy differs from the built-in template. A copy made by an older kube-aws and never recorded may need `kube-aws render stack --force` (yours is kept as .orig)"
            ),
        };
    }
    let line = Regex::new(r"--> (\d+):\d+").ok().and_then(|r| {
        r.captures(&text)
            .and_then(|c| c.get(1))
            .and_then(|m| m.as_str().parse().ok())
    });
    RenderError::Template {
        template: template.to_string(),
        line,
        message: text,
    }
}

/// YAML (with CloudFormation short-form tags such as `!Ref`) → JSON.
fn yaml_to_json(v: serde_yaml_ng::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map(J::Number)
                    .unwrap_or(J::Null)
            }
        }
        Y::String(s) => J::String(s),
        Y::Sequence(seq) => J::Array(
            seq.into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("a mapping key must be a scalar, not {other:?}")),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            J::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = yaml_to_json(t.value)?;
            let mut o = serde_json::Map::new();
            match name {
                "Ref" | "Condition" => {
                    o.insert(name.to_string(), value);
                }
                "GetAtt" => {
                    let v = match value {
                        J::String(s) => match s.split_once('.') {
                            Some((a, b)) => {
                                J::Array(vec![J::String(a.into()), J::String(b.into())])
                            }
                            None => J::String(s),
                        },
                        other => other,
                    };
                    o.insert("Fn::GetAtt".into(), v);
                }
                other => {
                    o.insert(format!("Fn::{other}"), value);
                }
            }
            J::Object(o)
        }
    })
}

struct Renderer<'a> {
    tera: tera::Tera,
    templates: &'a Templates,
    prefix: String,
    base_url: String,
    out: AssetSet,
}

impl Renderer<'_> {
    fn render(&self, path: &str, ctx: &tera::Context) -> Result<String, RenderError> {
        self.tera
            .render(path, ctx)
            .map_err(|e| tera_error(path, self.templates.get(path), &e))
    }

    fn parse_yaml(path: &str, text: &str) -> Result<serde_yaml_ng::Value, RenderError> {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            let shown = line
                .and_then(|l| text.lines().nth(l - 1))
                .unwrap_or_default();
            RenderError::Template {
                template: path.to_string(),
                line: None,
                message: format!(
                    "renders invalid YAML{}: {e}\n  rendered line: {shown}",
                    line.map(|l| format!(" at rendered line {l}"))
                        .unwrap_or_default()
                ),
            }
        })
    }

    fn add(&mut self, name: &str, rel_key: String, body: Vec<u8>, kind: Kind) -> String {
        let sha256 = sha256_hex(&body);
        let key = format!("{}/{}", self.prefix, rel_key);
        self.out.assets.insert(
            name.to_string(),
            Asset {
                name: name.to_string(),
                key,
                body,
                sha256,
                kind,
            },
        );
        rel_key
    }

    /// Renders a role's cloud-config and node config and the stub that fetches them with
    /// the node binary; returns the stub as base64.
    fn cloud_config(
        &mut self,
        role: &str,
        path: &str,
        ctx: &mut tera::Context,
        node: &crate::node::config::NodeConfig,
        binary: &NodeBinary,
    ) -> Result<String, RenderError> {
        let text = self.render(path, ctx)?;
        Self::parse_yaml(path, &text)?;
        let sha = sha256_hex(text.as_bytes());
        let rel = format!("userdata/{role}-{}.yaml", &sha[..HASH_LEN]);
        self.add(
            &format!("userdata/{role}"),
            rel.clone(),
            text.into_bytes(),
            Kind::CloudConfig,
        );
        let (base_url, prefix) = (self.base_url.clone(), self.prefix.clone());
        let reference = |rel: &str, sha: String| UserdataRef {
            url: format!("{base_url}/{rel}"),
            key: format!("{prefix}/{rel}"),
            sha256: sha,
        };
        let target = reference(&rel, sha);
        let mut node_json = serde_json::to_vec_pretty(node).unwrap_or_default();
        node_json.push(b'\n');
        let node_sha = sha256_hex(&node_json);
        let node_rel = format!("nodeconfig/{role}-{}.json", &node_sha[..HASH_LEN]);
        self.add(
            &format!("nodeconfig/{role}"),
            node_rel.clone(),
            node_json,
            Kind::NodeConfig,
        );
        let node_ref = reference(&node_rel, node_sha);
        let bin_ref = reference(&binary.rel_key(), binary.sha256.clone());
        let mut assets = ctx.get("assets").cloned().unwrap_or_default();
        if let Some(o) = assets.as_object_mut() {
            o.insert(
                "target".into(),
                serde_json::to_value(&target).unwrap_or_default(),
            );
            o.insert(
                "node_config".into(),
                serde_json::to_value(&node_ref).unwrap_or_default(),
            );
            o.insert(
                "binary".into(),
                serde_json::to_value(&bin_ref).unwrap_or_default(),
            );
        }
        ctx.insert("assets", &assets);
        ctx.insert("binary", binary);
        let stub_path = "userdata/instance-user-data.yaml";
        let stub = self.render(stub_path, ctx)?;
        Self::parse_yaml(stub_path, &stub)?;
        if stub.len() > MAX_USER_DATA_BYTES {
            return Err(RenderError::Limit(format!(
                "the {role} user data stub is {} bytes; EC2 allows {MAX_USER_DATA_BYTES}",
                stub.len()
            )));
        }
        let sha = sha256_hex(stub.as_bytes());
        self.add(
            &format!("stub/{role}"),
            format!("userdata/stub-{role}-{}.yaml", &sha[..HASH_LEN]),
            stub.clone().into_bytes(),
            Kind::UserDataStub,
        );
        Ok(base64::engine::general_purpose::STANDARD.encode(stub))
    }

    /// Renders a stack template to compact JSON and checks CloudFormation's limits.
    fn stack(
        &mut self,
        id: &StackId,
        path: &str,
        ctx: &tera::Context,
    ) -> Result<String, RenderError> {
        let (name, file_stem) = (id.name(), id.key_stem());
        let text = self.render(path, ctx)?;
        let yaml = Self::parse_yaml(path, &text)?;
        let json = yaml_to_json(yaml).map_err(|m| RenderError::Template {
            template: path.into(),
            line: None,
            message: m,
        })?;
        let resources = json
            .get("Resources")
            .and_then(|r| r.as_object())
            .map(|r| r.len())
            .unwrap_or(0);
        if resources > MAX_RESOURCES {
            return Err(RenderError::Limit(format!(
                "stack {name} has {resources} resources; CloudFormation allows {MAX_RESOURCES}"
            )));
        }
        let body = serde_json::to_vec(&json).unwrap_or_default();
        if body.len() > MAX_TEMPLATE_BYTES {
            return Err(RenderError::Limit(format!(
                "stack {name} is {} bytes; CloudFormation allows {MAX_TEMPLATE_BYTES} for a template in S3",
                body.len()
            )));
        }
        let sha = sha256_hex(&body);
        Ok(self.add(
            &id.asset_name(),
            format!("stacks/{file_stem}-{}.json", &sha[..HASH_LEN]),
            body,
            Kind::Template,
        ))
    }
}

/// Renders every asset of the cluster.
pub fn render(
    cfg: &Config,
    model: &Model,
    templates: &Templates,
    creds: &Credentials,
    binaries: &[NodeBinary],
) -> Result<AssetSet, RenderError> {
    use crate::node::config::Role;
    let mut ctx: Ctx = context::build(cfg, model);
    let prefix = ctx.s3.prefix.clone();
    let mut tera = tera::Tera::default();
    tera.register_filter("indent", indent_filter);
    for (path, text) in &templates.files {
        tera.add_raw_template(path, text)
            .map_err(|e| tera_error(path, text, &e))?;
    }
    let mut r = Renderer {
        tera,
        templates,
        prefix: prefix.clone(),
        base_url: ctx.s3.base_url.clone(),
        out: AssetSet::default(),
    };
    let bundle = if ctx.addons.enabled {
        Some(crate::addons::bundle(cfg, creds, &prefix)?)
    } else {
        None
    };
    // The add-ons' private parts are decrypted by the controllers' add-ons unit.
    let mut controller_kms: Vec<String> = CONTROLLER_SECRETS
        .iter()
        .map(|(f, _)| f.to_string())
        .collect();
    for s in bundle.iter().flat_map(|b| &b.secrets) {
        for f in s.fill.values() {
            if !controller_kms.contains(&f.file) {
                controller_kms.push(f.file.clone());
            }
        }
    }
    let lib_sh = templates.get("userdata/lib.sh").to_string();

    let base = |ctx: &Ctx, files: &RoleFiles| -> Result<tera::Context, RenderError> {
        let mut c = tera::Context::from_serialize(ctx).map_err(|e| RenderError::Template {
            template: "context".into(),
            line: None,
            message: e.to_string(),
        })?;
        c.insert("lib_sh", &lib_sh);
        c.insert(
            "vpc_cni",
            &(cfg.cni.provider == crate::config::types::CniProvider::AmazonVpc),
        );
        // The secrets each role may decrypt: its KMS permission names exactly these
        // files in the encryption context, so a worker cannot obtain a CA key.
        let names = |l: &[(&str, &str)]| l.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>();
        c.insert(
            "role_secrets",
            &serde_json::json!({
                "etcd": names(ETCD_SECRETS),
                "controller": controller_kms,
                "worker": names(WORKER_SECRETS),
            }),
        );
        // The objects each role may read (s3:GetObject), relative to the cluster prefix:
        // its own cloud-config and node config, the node agent, and the ciphertexts of
        // its own secrets; `{pool}` is the pool's name. Snapshots are the etcd role's
        // alone, the add-ons bundle the controllers'.
        // The hash is spelled out as HASH_LEN `?`s, so pool `general` cannot read pool
        // `general-gpu`'s objects ("You can use wildcard characters (* and ?) within any
        // ARN segment", IAM User Guide, IAM JSON policy elements: Resource).
        let hash = "?".repeat(HASH_LEN);
        let reads = |role: &str, secrets: &[String], extra: &[&str]| {
            let mut v = vec![
                format!("userdata/{role}-{hash}.yaml"),
                format!("nodeconfig/{role}-{hash}.json"),
                "bin/*".to_string(),
            ];
            v.extend(secrets.iter().map(|f| {
                rotating_key(f)
                    .map_or_else(|| format!("credentials/{f}-{hash}.enc"), str::to_string)
            }));
            v.extend(extra.iter().map(|x| x.to_string()));
            v
        };
        let snapshots = format!("{}/*", crate::node::etcd::SNAPSHOT_PREFIX);
        c.insert(
            "role_reads",
            &serde_json::json!({
                "etcd": reads("etcd", &names(ETCD_SECRETS), &[snapshots.as_str()]),
                "controller": reads("controller", &controller_kms, &["addons/*"]),
                "worker": reads("worker-{pool}", &names(WORKER_SECRETS), &[]),
            }),
        );
        c.insert("ssm_agent_actions", SSM_AGENT_ACTIONS);
        c.insert("ids", &crate::model::ids::exported());
        c.insert("files", files);
        Ok(c)
    };

    let binary_for = |instance_type: &str, who: &str| -> Result<NodeBinary, RenderError> {
        let arch = instance_arch(instance_type);
        binaries
            .iter()
            .find(|b| b.arch == arch)
            .cloned()
            .ok_or_else(|| RenderError::NoNodeBinary {
                arch: arch.to_string(),
                who: who.to_string(),
            })
    };
    let mut used: Vec<NodeBinary> = Vec::new();
    let mut note = |b: &NodeBinary| {
        if !used.contains(b) {
            used.push(b.clone());
        }
    };
    let etcd_files = role_files(creds, &prefix, ETCD_PUBLIC, ETCD_SECRETS)?;
    let etcd_bin = binary_for(&cfg.etcd.instance_type, "etcd")?;
    note(&etcd_bin);
    let node = nodeconfig::build(cfg, &ctx, Role::Etcd, &etcd_files, None);
    let stub = r.cloud_config(
        "etcd",
        "userdata/cloud-config-etcd.yaml",
        &mut base(&ctx, &etcd_files)?,
        &node,
        &etcd_bin,
    )?;
    ctx.assets.stubs.insert("etcd".into(), stub);
    let controller_files = role_files(creds, &prefix, CONTROLLER_PUBLIC, CONTROLLER_SECRETS)?;
    let controller_bin = binary_for(&cfg.controller.instance_type, "the controllers")?;
    note(&controller_bin);
    let node = nodeconfig::build(cfg, &ctx, Role::Controller, &controller_files, None);
    let stub = r.cloud_config(
        "controller",
        "userdata/cloud-config-controller.yaml",
        &mut base(&ctx, &controller_files)?,
        &node,
        &controller_bin,
    )?;
    ctx.assets.stubs.insert("controller".into(), stub);
    // Only the root needs the list of pools; every other render gets a context without
    // it, built once, so rendering stays linear in the number of pools.
    let slim = |ctx: &Ctx| Ctx {
        pools: Vec::new(),
        ..ctx.clone()
    };
    let worker_files = role_files(creds, &prefix, WORKER_PUBLIC, WORKER_SECRETS)?;
    let worker_base = base(&slim(&ctx), &worker_files)?;
    for i in 0..ctx.pools.len() {
        let mut c = worker_base.clone();
        c.insert("pool", &ctx.pools[i]);
        let role = format!("worker-{}", ctx.pools[i].name);
        let pool_type = ctx.pools[i]
            .mixed
            .as_ref()
            .and_then(|m| m.instance_types.first().cloned())
            .unwrap_or_else(|| ctx.pools[i].instance_type.clone());
        let bin = binary_for(&pool_type, &format!("pool {}", ctx.pools[i].name))?;
        note(&bin);
        let node = nodeconfig::build(cfg, &ctx, Role::Worker, &worker_files, Some(&ctx.pools[i]));
        ctx.pools[i].stub = r.cloud_config(
            &role,
            "userdata/cloud-config-worker.yaml",
            &mut c,
            &node,
            &bin,
        )?;
    }

    let empty = RoleFiles {
        public: Vec::new(),
        secrets: Vec::new(),
    };
    for (id, path) in [
        (StackId::Network, "stack-templates/network.yaml"),
        (StackId::Etcd, "stack-templates/etcd.yaml"),
        (StackId::ControlPlane, "stack-templates/control-plane.yaml"),
    ] {
        let key = r.stack(&id, path, &base(&slim(&ctx), &empty)?)?;
        ctx.assets.stacks.insert(id.key_stem(), key);
    }
    let pool_base = base(&slim(&ctx), &empty)?;
    for i in 0..ctx.pools.len() {
        let mut c = pool_base.clone();
        c.insert("pool", &ctx.pools[i]);
        let id = StackId::NodePool(ctx.pools[i].name.clone());
        let key = r.stack(&id, "stack-templates/node-pool.yaml", &c)?;
        ctx.assets.stacks.insert(id.key_stem(), key.clone());
        ctx.pools[i].template = key;
    }
    if let Some(bundle) = &bundle {
        let bundle = bundle.to_json();
        let sha = sha256_hex(&bundle);
        let rel = r.add(
            "addons/bundle",
            format!("addons/bundle-{}.json", &sha[..HASH_LEN]),
            bundle,
            Kind::AddonBundle,
        );
        ctx.addons.bundle = format!("{prefix}/{rel} {sha}");
        let key = r.stack(
            &StackId::AddOns,
            "stack-templates/addons.yaml",
            &base(&slim(&ctx), &empty)?,
        )?;
        ctx.assets.stacks.insert(StackId::AddOns.key_stem(), key);
    }
    r.stack(
        &StackId::Root,
        "stack-templates/root.yaml",
        &base(&ctx, &empty)?,
    )?;
    r.out.binaries = used;
    Ok(r.out)
}
