//! The AMI pin (config::ami): reading ami.yaml for rendering, resolving the newest
//! Ubuntu image for `up` and `--refresh-ami`, and writing the file.

use super::Result;
use crate::config::Config;
use crate::config::ami::{AmiPin, FILE, is_ami_id};
use crate::render::context::UBUNTU_AMI_PARAMETER;
use anyhow::{Context, anyhow, bail};
use std::path::Path;

/// The image id pinned in `dir/ami.yaml` for `cfg`'s region, or None without the file.
pub fn read_pin(dir: &Path, cfg: &Config) -> Result<Option<String>> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
    };
    let file = path.display().to_string();
    let pin = AmiPin::parse(&text, &file).map_err(|e| anyhow!(e))?;
    let id = pin.for_region(&cfg.region, &file).map_err(|e| anyhow!(e))?;
    Ok(Some(id.to_string()))
}

/// The newest Ubuntu LTS image of the region, from Canonical's public SSM parameter.
pub async fn resolve(sdk: &aws_config::SdkConfig, cfg: &Config) -> Result<AmiPin> {
    let id = crate::aws::node::ssm_parameter(sdk, UBUNTU_AMI_PARAMETER)
        .await?
        .ok_or_else(|| {
            anyhow!(
                "the public SSM parameter {UBUNTU_AMI_PARAMETER} does not exist in {}\n  fix: set amiId in cluster.yaml to an Ubuntu 24.04 image of the region",
                cfg.region
            )
        })?;
    if !is_ami_id(&id) {
        bail!("SSM parameter {UBUNTU_AMI_PARAMETER} holds `{id}`, which is not an AMI ID");
    }
    Ok(AmiPin {
        region: cfg.region.clone(),
        image_id: id,
        source: UBUNTU_AMI_PARAMETER.to_string(),
    })
}

/// What `up`, `diff --refresh-ami` and `update --refresh-ami` do before rendering: the
/// image to pin, when one must be resolved (no pin yet, or a refresh asked for), else
/// None. cluster.yaml's amiId makes it None: that id wins and nothing is resolved.
pub async fn to_pin(
    sdk: &aws_config::SdkConfig,
    cfg: &Config,
    dir: &Path,
    refresh: bool,
) -> Result<Option<AmiPin>> {
    if let Some(id) = &cfg.ami_id {
        if refresh {
            eprintln!(
                "note: cluster.yaml sets amiId {id}, which overrides {FILE}; nothing to refresh"
            );
        }
        return Ok(None);
    }
    // A refresh replaces whatever is pinned, a pin of another region included.
    let current = match read_pin(dir, cfg) {
        Ok(c) => c,
        Err(_) if refresh => None,
        Err(e) => return Err(e),
    };
    if current.is_some() && !refresh {
        return Ok(None);
    }
    let pin = resolve(sdk, cfg).await?;
    match &current {
        Some(old) if *old == pin.image_id => {
            eprintln!("AMI {old} is still the newest image ({UBUNTU_AMI_PARAMETER})");
            Ok(None)
        }
        Some(old) => {
            eprintln!(
                "AMI {old} → {}: every node that boots it rolls (`kube-aws diff` names them)",
                pin.image_id
            );
            Ok(Some(pin))
        }
        None => Ok(Some(pin)),
    }
}

/// Writes `dir/ami.yaml` (through a temporary file, so a failure never leaves half of it).
pub fn write(dir: &Path, pin: &AmiPin) -> Result {
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    std::fs::write(&tmp, pin.to_yaml()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "Pinned AMI {} in {} (commit it with cluster.yaml)",
        pin.image_id,
        path.display()
    );
    Ok(())
}
