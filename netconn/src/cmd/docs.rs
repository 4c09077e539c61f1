//! `netconn completions SHELL` and `netconn man`: the shell completions
//! and the man page, made from the command line's own definition (the
//! Debian package installs both).

use clap::CommandFactory;

use super::{CmdError, written};
use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::output::sink::Sink;

/// Writes the completion script for a shell to stdout.
pub fn completions(args: CompletionsArgs) -> Result<(), CmdError> {
    write(&script(args.shell))
}

/// The completion script for `shell`.
fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut completed(), "netconn", &mut script);
    script
}

/// The command line as completion should offer it: without the hidden
/// subcommands (clap_complete offers them: `man` is for the package's
/// build), and with the options of `check`, which clap does not parse (the
/// plugin's own parser does, see [`crate::plugin::args`]).
fn completed() -> clap::Command {
    use clap::{Arg, ArgAction};
    let cli = Cli::command();
    let flag = |long: &'static str| Arg::new(long).long(long).action(ArgAction::SetTrue);
    let value = |long: &'static str, name: &'static str| {
        Arg::new(long)
            .long(long)
            .value_name(name)
            .action(ArgAction::Append)
    };
    let subcommands = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .map(|s| {
            if s.get_name() != "check" {
                return s;
            }
            s.args([
                value("conn-type", "TYPE").value_parser(crate::plugin::check::CONN_TYPES),
                value("conn-status", "STATUS").value_parser(crate::plugin::check::CONN_STATUS),
                value("warning", "RANGE").short('w'),
                value("critical", "RANGE").short('c'),
                flag("always-ok"),
                flag("no-perfdata"),
                flag("alerts"),
                flag("version").short('V'),
                flag("help").short('h'),
            ])
        })
        .collect::<Vec<_>>();
    clap::Command::new("netconn")
        .args(cli.get_arguments().cloned())
        .subcommands(subcommands)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_offers_checks_options_and_no_hidden_subcommand() {
        let bash = String::from_utf8(script(clap_complete::Shell::Bash)).unwrap();
        let top = bash
            .lines()
            .find(|l| l.contains("opts=") && l.contains(" watch "))
            .expect("the subcommands' line");
        assert!(!top.contains(" man "), "{top}");
        assert!(top.contains(" top "), "{top}");
        let check = bash
            .split("netconn__subcmd__check)")
            .nth(1)
            .expect("check's completion");
        let opts = check.lines().find(|l| l.contains("opts=")).unwrap();
        for o in [
            "--conn-type",
            "--conn-status",
            "--warning",
            "-c",
            "--always-ok",
            "--alerts",
            "--netns",
        ] {
            assert!(opts.contains(o), "{o} in {opts}");
        }
        assert!(check.contains("established"), "state names are offered");
    }
}
