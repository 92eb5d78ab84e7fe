//! `kapsync completions` and `kapsync man`: the command line described for shells and `man`.

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit;
use crate::report::text;

/// Prints the completion script for one shell to standard output.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    // Rendered in memory first: clap_complete panics on a write error such as a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "kapsync", &mut script);
    text::print(&String::from_utf8(script)?)?;
    Ok(exit::OK)
}

/// Prints the manual page, in roff, to standard output.
pub fn man() -> anyhow::Result<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    text::print(&String::from_utf8(page)?)?;
    Ok(exit::OK)
}
