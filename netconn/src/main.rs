use std::process::ExitCode;

use std::io::Write;

use clap::Parser;
use netconn::cli::{Cli, Command};
use netconn::cmd;

/// The subcommand named: the first word that is not one of netconn's own
/// options (`--netns` takes a value).
fn subcommand(mut args: impl Iterator<Item = String>) -> Option<String> {
    while let Some(a) = args.next() {
        if a == "--netns" {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

fn main() -> ExitCode {
    // Whether stdout was closed, before anything else happens.
    netconn::host::guard_std_fds();
    // A monitoring plugin reports every failure on stdout, exit 3 (UNKNOWN):
    // `check`, after netconn's own options if any.
    let plugin = subcommand(std::env::args().skip(1)).as_deref() == Some("check");
    // `netconn help --help` (or `-h`): clap takes the flag for a
    // subcommand's name; it asks for the help, so give it.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let help_of_help = args.get(1).is_some_and(|a| a == "help")
        && args[2..].iter().any(|a| a == "--help" || a == "-h");
    let parsed = if help_of_help {
        Cli::try_parse_from(["netconn", "--help"])
    } else {
        Cli::try_parse_from(&args)
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::{
                DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion,
            };
            match e.kind() {
                DisplayHelp | DisplayVersion => {
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                DisplayHelpOnMissingArgumentOrSubcommand => {
                    eprintln!(
                        "netconn: a subcommand is required: watch, snapshot, check, conntrack, list or top (see netconn --help)"
                    );
                    return ExitCode::from(2);
                }
                _ => {}
            }
            // One line: clap's first, without its "error: " prefix.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let mut first = first.trim_start_matches("error: ").to_owned();
            if let Some(values) = text.lines().find(|l| l.contains("[possible values:")) {
                first.push(' ');
                first.push_str(values.trim());
            }
            if plugin {
                let _ = writeln!(
                    std::io::stdout(),
                    "netconn check: {first} (see netconn check --help)"
                );
                return ExitCode::from(netconn::plugin::nagios::Status::Unknown.exit_code());
            }
            eprintln!("netconn: {first} (see netconn --help)");
            return ExitCode::from(2);
        }
    };
    if let Some(target) = &cli.netns
        && let Err(e) = target.enter()
    {
        if plugin {
            let _ = writeln!(std::io::stdout(), "netconn check: {e}");
            return ExitCode::from(netconn::plugin::nagios::Status::Unknown.exit_code());
        }
        eprintln!("netconn: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Watch(args) => cmd::watch::run(args),
        Command::Snapshot(args) => cmd::snapshot::run(args),
        Command::Conntrack(args) => cmd::conntrack::run(args),
        Command::List(args) => cmd::list::run(args),
        Command::Top(args) => cmd::top::run(args),
        Command::Completions(args) => cmd::docs::completions(args),
        Command::Man(args) => cmd::docs::man(args),
        Command::Check(args) => return ExitCode::from(cmd::check::run(args).exit_code()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netconn: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
