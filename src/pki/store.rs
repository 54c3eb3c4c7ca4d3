//! Files of credentials/: atomic writes with the right mode, and timestamped backups.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// Mode of private keys and every other plaintext secret.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificates, public keys, ciphertexts and fingerprints.
pub const PUBLIC_MODE: u32 = 0o644;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (created
/// 0600 by tempfile), the final mode set before any byte is written, fsync, rename.
/// A crash leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `20261122T210512Z`
pub fn timestamp(now: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Copies every regular file of `dir` (not sub-directories) into
/// `dir/backup-<timestamp>/`, keeping modes. Returns the backup directory, or None when
/// there was nothing to back up.
pub fn backup(dir: &Path, now: OffsetDateTime) -> std::io::Result<Option<PathBuf>> {
    let mut files = Vec::new();
    if dir.exists() {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_file() && !e.file_name().to_string_lossy().starts_with(".tmp-") {
                files.push(e.path());
            }
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    let base = dir.join(format!("backup-{}", timestamp(now)));
    let mut target = base.clone();
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = PathBuf::from(format!("{}-{n}", base.display()));
    }
    std::fs::create_dir(&target)?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700))?;
    for f in files {
        let name = f.file_name().unwrap_or_default();
        std::fs::copy(&f, target.join(name))?;
    }
    Ok(Some(target))
}

/// Reads a file that may be absent.
pub fn read_optional(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
