use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    kube_aws::cli::run(kube_aws::cli::Cli::parse())
}
