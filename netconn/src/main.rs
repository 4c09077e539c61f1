use std::process::ExitCode;

use clap::Parser;
use netconn::cli::{Cli, Command};
use netconn::cmd;

fn main() -> ExitCode {
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
                        "netconn: a subcommand is required: watch or snapshot (see netconn --help)"
                    );
                    return ExitCode::from(2);
                }
                _ => {}
            }
            // One line: clap's first, without its "error: " prefix.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "netconn: {} (see netconn --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Watch(args) => cmd::watch::run(args),
        Command::Snapshot(args) => cmd::snapshot::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netconn: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
