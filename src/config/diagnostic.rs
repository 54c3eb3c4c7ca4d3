//! Problems found in a cluster.yaml, each with its field path, line:column and fix.

use super::location::Pos;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Field path, e.g. `worker.nodePools[1].minSize`; empty for the whole file.
    pub path: String,
    pub pos: Option<Pos>,
    pub message: String,
    /// What to change to fix it.
    pub fix: Option<String>,
}

impl Diagnostic {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            pos: None,
            message: message.into(),
            fix: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Every problem of one file. Its Display is what the user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file as the user named it.
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl std::error::Error for ConfigErrors {}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        writeln!(
            f,
            "{} is not valid ({n} problem{}):",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.diagnostics {
            write!(f, "  {}", self.file)?;
            if let Some(p) = d.pos {
                write!(f, ":{}:{}", p.line, p.column)?;
            }
            if d.path.is_empty() {
                writeln!(f, ": {}", d.message)?;
            } else {
                writeln!(f, ": {}: {}", d.path, d.message)?;
            }
            if let Some(fix) = &d.fix {
                writeln!(f, "      fix: {fix}")?;
            }
        }
        Ok(())
    }
}
