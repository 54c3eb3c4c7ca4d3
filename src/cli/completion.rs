use super::{Cli, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// Shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: &CompletionArgs) -> Result {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "kube-aws",
        &mut std::io::stdout(),
    );
    Ok(())
}
