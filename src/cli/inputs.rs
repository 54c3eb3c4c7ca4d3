//! Reading what rendering needs from the cluster directory: the local template copies
//! and the credentials (certificates and the fingerprints of the secrets). The render
//! core itself stays pure.

use super::Result;
use crate::pki::envelope;
use crate::render::{Credentials, templates::Templates};
use anyhow::Context;
use std::path::Path;

/// The built-in templates, each replaced by the user's copy in `dir` when present.
pub fn templates(dir: &Path) -> Result<Templates> {
    let mut err = None;
    let t = Templates::with_overrides(|rel| {
        let p = dir.join(rel);
        match std::fs::read_to_string(&p) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                err.get_or_insert(anyhow::anyhow!("reading {}: {e}", p.display()));
                None
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(t),
    }
}

/// Certificates (public PEMs) and secret fingerprints from `dir/credentials`.
pub fn credentials(dir: &Path) -> Result<Credentials> {
    let cdir = dir.join(crate::pki::CREDENTIALS_DIR);
    let entries = std::fs::read_dir(&cdir).with_context(|| {
        format!(
            "reading {}\n  fix: run `kube-aws render credentials --generate-ca` first",
            cdir.display()
        )
    })?;
    let mut creds = Credentials::default();
    let mut names: Vec<String> = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("reading {}", cdir.display()))?;
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    let secrets =
        envelope::secret_files(&cdir).with_context(|| format!("reading {}", cdir.display()))?;
    for name in names {
        let path = cdir.join(&name);
        if secrets.contains(&name) {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            creds
                .fingerprints
                .insert(name, envelope::sha256_hex(&bytes));
        } else if name.ends_with(".pem") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            creds.public.insert(name, text);
        }
    }
    Ok(creds)
}

/// The node agent binaries: `--node-binary[-arm64]`, or this binary when it is a
/// linux/amd64 one. Each is hashed here; `up` uploads it from its path.
pub fn node_binaries(cli: &super::Cli) -> Result<Vec<crate::render::NodeBinary>> {
    let mut out = Vec::new();
    let amd64 = match &cli.node_binary {
        Some(p) => Some(p.clone()),
        None if cfg!(all(target_os = "linux", target_arch = "x86_64")) => {
            Some(std::env::current_exe().context("finding the running kube-aws binary")?)
        }
        None => None,
    };
    for (arch, path) in [("amd64", amd64), ("arm64", cli.node_binary_arm64.clone())] {
        let Some(path) = path else { continue };
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading the node binary {}\n  fix: pass --node-binary{} with a kube-aws built for linux/{arch}",
                path.display(),
                if arch == "arm64" { "-arm64" } else { "" }
            )
        })?;
        // aws-lc-rs's SHA-256 (assembly) is fast even in a debug build; the binary is
        // over 100 MB and every command that renders hashes it.
        let sha256 = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &bytes,
        ));
        out.push(crate::render::NodeBinary {
            arch: arch.to_string(),
            sha256,
            size: bytes.len() as u64,
            version: env!("CARGO_PKG_VERSION").to_string(),
            path,
        });
    }
    Ok(out)
}
