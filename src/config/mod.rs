//! cluster.yaml: types, defaults, loading with positions, semantic validation, JSON
//! Schema, and the commented template `init` writes. Pure: no AWS, no network; the
//! only file access is `read`, which reads the one file it is given.

pub mod ami;
pub mod defaults;
pub mod diagnostic;
pub mod init_template;
pub mod load;
pub mod location;
pub mod schema;
pub mod types;
pub mod validate;

pub use diagnostic::{ConfigErrors, Diagnostic};
pub use load::parse;
pub use types::Config;

use std::path::Path;

/// Reads and parses a cluster.yaml. A missing or unreadable file is a `ConfigErrors`
/// too, so that every user error prints the same way.
pub fn read(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) => {
            let fix = if e.kind() == std::io::ErrorKind::NotFound {
                "run `kube-aws init` here, or pass --dir with the cluster directory"
            } else {
                "check the file's permissions and that it is UTF-8 text"
            };
            Err(ConfigErrors {
                file,
                diagnostics: vec![
                    Diagnostic::new("", format!("cannot read the file: {e}")).fix(fix),
                ],
            })
        }
    }
}
