use std::process::ExitCode;

use clap::Parser;
use netconn::cli::{Cli, Command};
use netconn::cmd;

fn main() -> ExitCode {
    // A monitoring plugin reports every failure on stdout, exit 3 (UNKNOWN).
    let plugin = std::env::args().nth(1).as_deref() == Some("check");
    let cli = match Cli::try_parse() {
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
                        "netconn: a subcommand is required: watch, snapshot, check, conntrack or list (see netconn --help)"
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
                println!("netconn check: {first} (see netconn check --help)");
                return ExitCode::from(netconn::nagios::Status::Unknown.exit_code());
            }
            eprintln!("netconn: {first} (see netconn --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Watch(args) => cmd::watch::run(args),
        Command::Snapshot(args) => cmd::snapshot::run(args),
        Command::Conntrack(args) => cmd::conntrack::run(args),
        Command::List(args) => cmd::list::run(args),
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
