//! Project tasks: `cargo xtask setup | run | test | deb | bench`.
//!
//! Every task installs what it needs first, so a fresh machine needs nothing
//! but Rust (stable, with rustup) and root.

mod atrest;
mod bench;
mod deb;
mod keepalive;
mod kernelcost;
mod lab;
mod nodes;
mod server;
mod setup;
mod soak;
mod test;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netconn's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: the eBPF toolchain (nightly + rust-src),
    /// bpf-linker 0.10.3, and the Debian packages the tests use.
    Setup,
    /// Set up, build netconn (release) and run it with ARGS (default: watch).
    Run {
        /// Arguments for netconn, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run every check: fmt, clippy, unit tests, and the root
    /// integration tests against the real kernel.
    Test,
    /// Build the Debian package (target/debian/netconn.deb): the binary,
    /// the systemd unit, the man page and shell completions.
    Deb,
    /// Measure netconn side by side with ss, psutil and bpftrace, then a
    /// ten-minute soak, every namespace and a real server (as root, about
    /// 50 minutes), and rewrite BENCHMARKS.md.
    Bench {
        /// Only the soak (about 11 minutes); its section replaces the one
        /// in BENCHMARKS.md.
        #[arg(long)]
        soak: bool,
        /// Only `watch --all-namespaces` (about 10 minutes): kernel time per
        /// connection against a single-namespace watch, the daemon's CPU
        /// per namespace per interval at 10, 110 and 500 namespaces, the
        /// first host record at 100 namespaces, memory per namespace.
        #[arg(long, conflicts_with = "soak")]
        namespaces: bool,
        /// Only the first counts at 200,000 sockets (`snapshot`, and
        /// `watch` until its first record), this build against the netconn
        /// binary BIN in alternated rounds; prints the medians and writes
        /// nothing (about 3 minutes).
        #[arg(long, value_name = "BIN", conflicts_with_all = ["soak", "namespaces"])]
        against: Option<String>,
        /// Only the userspace hot paths (criterion, about 2 minutes); their
        /// section replaces the one in BENCHMARKS.md.
        #[arg(long, conflicts_with_all = ["soak", "namespaces", "against"])]
        micro: bool,
        /// Only the kernel time of netconn's programs per connection,
        /// beside bpftrace's and an empty program's on the same tracepoint
        /// and a netconn whose programs return at once, built apart in
        /// target/emptied (about 3 minutes, and that build's first time);
        /// its section replaces the one in BENCHMARKS.md.
        #[arg(long, conflicts_with_all = ["soak", "namespaces", "against", "micro"])]
        kernel: bool,
        /// Only the kernel time of netconn's programs per kept-alive
        /// request (one connection's round trips) under `watch`, `watch
        /// --no-tcp-metrics` and `watch --all-namespaces` (about 2
        /// minutes); its section replaces the one in BENCHMARKS.md.
        #[arg(long, conflicts_with_all = ["soak", "namespaces", "against", "micro", "kernel"])]
        keepalive: bool,
        /// Only a real server: nginx loaded by wrk, a connection per
        /// request and kept-alive, and iperf3's bulk transfer, under
        /// nothing, each watch mode and bpftrace (about 10 minutes;
        /// installs nginx-light, wrk and iperf3); its section replaces the
        /// one in BENCHMARKS.md.
        #[arg(long, conflicts_with_all = ["soak", "namespaces", "against", "micro", "kernel", "keepalive"])]
        server: bool,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup::run().map(|_| ()),
        Task::Run { args } => run(args),
        Task::Test => test::run(),
        Task::Deb => setup::build_tools()
            .and_then(|env| deb::run(&env))
            .map(|deb| {
                eprintln!("xtask: {}", deb.display());
            }),
        Task::Bench {
            soak,
            namespaces,
            against,
            micro,
            kernel,
            keepalive,
            server,
        } => bench::run(bench::Only {
            soak,
            namespaces,
            micro,
            kernel,
            keepalive,
            server,
            against,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs `cmd`, failing with its command line if it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// `cargo` with the eBPF toolchain chosen by setup. Never with
/// `NETCONN_EBPF_EMPTY` from the caller's environment: that would build
/// programs that count nothing (see [`build_emptied`]).
pub fn cargo(env: &setup::Env) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root())
        .env("NETCONN_EBPF_TOOLCHAIN", &env.ebpf_toolchain)
        .env_remove("NETCONN_EBPF_EMPTY");
    cmd
}

/// Builds the release binary and returns its path.
pub fn build_release(env: &setup::Env) -> Result<PathBuf> {
    run_cmd(cargo(env).args(["build", "--release", "--package", "netconn"]))?;
    Ok(root().join("target/release/netconn"))
}

/// Builds netconn with every kernel program returning at once
/// (`NETCONN_EBPF_EMPTY=1`, see `netconn_common::EMPTIED`) into a target
/// directory of its own, so that the binaries measured beside it stay as
/// they are, and returns its path.
pub fn build_emptied(env: &setup::Env) -> Result<String> {
    let dir = root().join("target/emptied");
    run_cmd(
        cargo(env)
            .args(["build", "--release", "--package", "netconn"])
            .env("NETCONN_EBPF_EMPTY", "1")
            .env("CARGO_TARGET_DIR", &dir),
    )?;
    Ok(dir.join("release/netconn").display().to_string())
}

fn run(args: Vec<String>) -> Result<()> {
    let env = setup::run()?;
    let bin = build_release(&env)?;
    let args = if args.is_empty() {
        vec!["watch".to_owned()]
    } else {
        args
    };
    use std::os::unix::process::CommandExt;
    let err = Command::new(&bin).args(&args).exec();
    bail!("cannot run {}: {err}", bin.display())
}
