use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    restore_sigpipe();
    kube_aws::cli::run(kube_aws::cli::Cli::parse())
}

/// Rust ignores SIGPIPE, so `kube-aws diff | head` would panic on the closed pipe. A CLI
/// should end quietly instead, as other Unix tools do.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: called once at start-up, before any thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}
