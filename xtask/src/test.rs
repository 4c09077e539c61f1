//! `cargo xtask test`: every check, in the order a failure is cheapest.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{build_release, cargo, run_cmd, setup};

pub fn run() -> Result<()> {
    let env = setup::run()?;
    run_cmd(cargo(&env).args(["fmt", "--all", "--", "--check"]))?;
    run_cmd(cargo(&env).args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The kernel crate builds only for the bpf target, with the eBPF
    // toolchain (as netconn's build.rs builds it).
    run_cmd(
        Command::new("rustup")
            .current_dir(crate::root())
            .args(["run", &env.ebpf_toolchain, "cargo", "clippy"])
            .args(["--package", "netconn-ebpf", "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(["--", "-D", "warnings"])
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CARGO"),
    )?;
    // Unit tests: pure logic, no root needed.
    run_cmd(cargo(&env).args([
        "test",
        "--package",
        "netconn",
        "--package",
        "netconn-common",
        "--package",
        "xtask",
    ]))?;

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the integration tests load eBPF and create network namespaces: run as root");
    }
    let bin = build_release(&env)?;
    // The package the service test installs.
    let deb = crate::deb::run(&env)?;
    // One test at a time: each loads the real program, and one checks that
    // no netconn program is left loaded.
    run_cmd(
        cargo(&env)
            .args([
                "test",
                "--package",
                "netconn-integration",
                "--",
                "--test-threads=1",
            ])
            .env("NETCONN_BIN", bin)
            .env("NETCONN_DEB", deb),
    )
}
