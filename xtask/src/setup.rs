//! Installs what building and testing netconn needs, and nothing twice.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run_cmd;

/// bpf-linker 0.10.3 loads LLVM from the nightly rustc; their major
/// versions must agree (newer bpf-linker wants a system LLVM Debian 12 lacks).
const BPF_LINKER_VERSION: &str = "0.10.3";
const LLVM_MAJOR: &str = "22";
/// A nightly with LLVM 22 known to build the eBPF crate, used when the
/// machine's `nightly` is missing or carries another LLVM.
const PINNED_NIGHTLY: &str = "nightly-2026-05-19";

/// What the other tasks need to know from setup.
pub struct Env {
    /// Toolchain `netconn/build.rs` compiles the eBPF crate with.
    pub ebpf_toolchain: String,
}

pub fn run() -> Result<Env> {
    let env = build_tools()?;
    debian_tools()?;
    python_tools()?;
    browser_drivers()?;
    Ok(env)
}

/// geckodriver, which Selenium drives Firefox through: Debian 12 packages
/// none; Mozilla publishes it on crates.io. Into `target/tools/bin`.
pub const GECKODRIVER_VERSION: &str = "0.37.1";

fn browser_drivers() -> Result<()> {
    let root = crate::root().join("target/tools");
    let driver = root.join("bin/geckodriver");
    let version = output(Command::new(&driver).arg("--version")).unwrap_or_default();
    if version.contains(GECKODRIVER_VERSION) {
        return Ok(());
    }
    eprintln!("xtask: installing geckodriver {GECKODRIVER_VERSION} (about a minute)");
    run_setup(
        Command::new("cargo")
            .args([
                "install",
                &format!("geckodriver@{GECKODRIVER_VERSION}"),
                "--locked",
                "--force",
                "--root",
            ])
            .arg(&root),
    )
    .context("installing geckodriver")
}

/// Runs a set-up step with all it prints on stderr: `cargo xtask run --
/// watch > FILE` on a fresh machine must find records only in FILE.
fn run_setup(cmd: &mut Command) -> Result<()> {
    run_cmd(cmd.stdout(std::io::stderr()))
}

/// What building the eBPF programs needs, and nothing the tests need:
/// for `cargo xtask deb`.
pub fn build_tools() -> Result<Env> {
    let ebpf_toolchain = ebpf_toolchain()?;
    bpf_linker()?;
    Ok(Env { ebpf_toolchain })
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn llvm_major(toolchain: &str) -> Option<String> {
    let vv = output(Command::new("rustup").args(["run", toolchain, "rustc", "-vV"]))?;
    let llvm = vv.lines().find_map(|l| l.strip_prefix("LLVM version: "))?;
    Some(llvm.split('.').next()?.to_owned())
}

/// A nightly with LLVM 22 and rust-src (for `-Z build-std=core`).
fn ebpf_toolchain() -> Result<String> {
    if output(Command::new("rustup").arg("--version")).is_none() {
        bail!("rustup is required (the eBPF crate builds with a nightly toolchain)");
    }
    let toolchain = match std::env::var("NETCONN_EBPF_TOOLCHAIN") {
        Ok(t) => t,
        Err(_) if llvm_major("nightly").as_deref() == Some(LLVM_MAJOR) => "nightly".to_owned(),
        Err(_) => {
            if llvm_major(PINNED_NIGHTLY).is_none() {
                eprintln!("xtask: installing {PINNED_NIGHTLY} (LLVM {LLVM_MAJOR}) for eBPF");
                run_setup(Command::new("rustup").args([
                    "toolchain",
                    "install",
                    PINNED_NIGHTLY,
                    "--profile",
                    "minimal",
                ]))?;
            }
            PINNED_NIGHTLY.to_owned()
        }
    };
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &toolchain,
    ]))
    .unwrap_or_default();
    // rust-src for `-Z build-std=core`; clippy for `cargo xtask test`,
    // which lints the eBPF crate with this toolchain.
    for component in ["rust-src", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            eprintln!("xtask: adding {component} to {toolchain}");
            run_setup(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                &toolchain,
            ]))?;
        }
    }
    Ok(toolchain)
}

fn bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} (about a minute)");
    run_setup(Command::new("cargo").args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
        "--force",
    ]))
    .context("installing bpf-linker")
}

/// Commands the integration tests run, and the Debian packages with them.
const TOOLS: [(&str, &str); 22] = [
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("tc", "iproute2"),
    ("nft", "nftables"),
    ("setpriv", "util-linux"),
    ("unshare", "util-linux"),
    ("ping", "iputils-ping"),
    ("python3", "python3"),
    // A real Prometheus scrapes `watch --listen` in the tests.
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    // The service test: the unit checked, the package installed, its man
    // page read.
    ("systemd-analyze", "systemd"),
    ("dpkg-deb", "dpkg"),
    ("man", "man-db"),
    ("gzip", "gzip"),
    // The metrics endpoint over TLS: a certificate made, a client.
    ("openssl", "openssl"),
    ("curl", "curl"),
    // Raw SYNs for the syn_flood test.
    ("hping3", "hping3"),
    // The kernel's own counters of a program (recursion misses) and its
    // maps, read by the rescue test.
    ("bpftool", "bpftool"),
    // `netconn top` in a real terminal.
    ("tmux", "tmux"),
    // The page in a real browser (driven by Selenium, see python_tools).
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    // And in Firefox (its driver, geckodriver, from crates.io: see
    // browser_drivers).
    ("firefox-esr", "firefox-esr"),
];

fn debian_tools() -> Result<()> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(cmd, _)| {
            output(Command::new("sh").args(["-c", &format!("command -v {cmd}")])).is_none()
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run_setup(Command::new("apt-get").arg("update").arg("-q"))?;
    run_setup(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// kubernetes-validate (PyPI), which checks the DaemonSet against the
/// Kubernetes schema, and Selenium (PyPI), which drives chromium through
/// the page's test, in a virtual environment of the project's own
/// (`target/tools/venv`): Debian's Python refuses system-wide pip installs.
fn python_tools() -> Result<()> {
    let venv = crate::root().join("target/tools/venv");
    let validate = venv.join("bin/kubernetes-validate");
    let selenium =
        || output(Command::new(venv.join("bin/python3")).args(["-c", "import selenium"])).is_some();
    if validate.exists() && selenium() {
        return Ok(());
    }
    let make = || {
        Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
    };
    if !make().is_ok_and(|s| s.success()) {
        eprintln!("xtask: installing python3-venv");
        run_setup(Command::new("apt-get").arg("update").arg("-q"))?;
        run_setup(
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "python3-venv",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        run_setup(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    eprintln!("xtask: installing kubernetes-validate and selenium");
    run_setup(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        "kubernetes-validate==1.37.0",
        "selenium==4.51.0",
    ]))
}

/// What `cargo xtask bench` compares netconn with: bpftrace (Debian),
/// bpftool (Debian), psutil (PyPI, what the Linuxfabrik check and DataKit's
/// gopsutil mirror), and tracefs, where bpftrace finds its tracepoints.
pub fn bench_tools() -> Result<()> {
    // bpftool reads each program's kernel run time (bpf_stats_enabled).
    for (cmd, arg) in [("bpftrace", "--version"), ("bpftool", "version")] {
        if output(Command::new(cmd).arg(arg)).is_none() {
            eprintln!("xtask: installing {cmd}");
            run_setup(Command::new("apt-get").arg("update").arg("-q"))?;
            run_setup(
                Command::new("apt-get")
                    .args(["install", "-y", "-q", "--no-install-recommends", cmd])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        }
    }
    // A real server and its load (`bench --server`): the commands, and the
    // Debian packages that have them.
    for (cmd, arg, package) in [
        ("nginx", "-v", "nginx-light"),
        ("wrk", "-v", "wrk"),
        ("iperf3", "-v", "iperf3"),
    ] {
        if Command::new(cmd).arg(arg).output().is_err() {
            eprintln!("xtask: installing {package}");
            run_setup(Command::new("apt-get").arg("update").arg("-q"))?;
            run_setup(
                Command::new("apt-get")
                    .args(["install", "-y", "-q", "--no-install-recommends", package])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
            // The package starts its service on the host's port 80; the
            // bench runs an nginx of its own in its namespace.
            if cmd == "nginx" {
                let _ = Command::new("systemctl")
                    .args(["disable", "--now", "nginx"])
                    .output();
            }
        }
    }
    if output(Command::new("python3").args(["-c", "import psutil"])).is_none() {
        eprintln!("xtask: installing psutil");
        run_setup(Command::new("python3").args(["-m", "pip", "install", "-q", "psutil"]))?;
    }
    if !std::path::Path::new("/sys/kernel/tracing/events").exists() {
        eprintln!("xtask: mounting tracefs on /sys/kernel/tracing (bpftrace needs it)");
        run_setup(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))?;
    }
    Ok(())
}
