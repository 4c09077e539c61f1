//! `netconn completions SHELL` and `netconn man`: the shell completions
//! and the man page, made from the command line's own definition (the
//! Debian package installs both).

use clap::CommandFactory;

use super::{CmdError, written};
use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::output::sink::Sink;

/// Writes the completion script for a shell to stdout.
pub fn completions(args: CompletionsArgs) -> Result<(), CmdError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "netconn", &mut script);
    write(&script)
}

/// Writes the man page (roff) to stdout, or with `--dir` the pages of
/// netconn and of each subcommand (`netconn-watch.1`, ...: the main page
/// names them under SEE ALSO) into that folder.
pub fn man(args: ManArgs) -> Result<(), CmdError> {
    if let Some(dir) = args.dir {
        return clap_mangen::generate_to(Cli::command(), &dir).map_err(CmdError::system(format!(
            "cannot write the man pages into {}",
            dir.display()
        )));
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(CmdError::system("cannot render the man page"))?;
    write(&page)
}

fn write(bytes: &[u8]) -> Result<(), CmdError> {
    let mut out = Sink::create(None).map_err(CmdError::Usage)?;
    written(out.write_bytes(bytes))
}
