//! `cargo xtask deb`: the Debian package (cargo-deb): the binary, the
//! systemd unit, its options file, the man page and shell completions,
//! the last two made by the binary itself into `target/release/dist`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::{build_release, cargo, root, run_cmd, setup};

/// cargo-deb, pinned so that the package is built the same way each time.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Builds the package; returns its path.
pub fn run(env: &setup::Env) -> Result<PathBuf> {
    let bin = build_release(env)?;
    cargo_deb()?;
    dist(&bin)?;
    let deb = root().join("target/debian/netconn.deb");
    run_cmd(
        cargo(env)
            .args(["deb", "--package", "netconn", "--no-build", "--output"])
            .arg(&deb),
    )?;
    Ok(deb)
}

fn cargo_deb() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["deb", "--version"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)
        });
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-deb {CARGO_DEB_VERSION}");
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "cargo-deb",
                "--locked",
                "--version",
                CARGO_DEB_VERSION,
            ])
            .env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "fallback"),
    )
}

/// The man pages (gzipped, as Debian wants them) and the completions.
fn dist(bin: &Path) -> Result<()> {
    let dir = root().join("target/release/dist");
    std::fs::create_dir_all(&dir)?;
    let out = |args: &[&str]| -> Result<Vec<u8>> {
        let o = Command::new(bin)
            .args(args)
            .output()
            .with_context(|| format!("running netconn {args:?}"))?;
        anyhow::ensure!(o.status.success(), "netconn {args:?} failed");
        Ok(o.stdout)
    };
    // netconn.1 and a page per subcommand (netconn-watch.1, ...).
    let man = dir.join("man");
    let _ = std::fs::remove_dir_all(&man);
    std::fs::create_dir_all(&man)?;
    out(&["man", "--dir", man.to_str().context("a UTF-8 path")?])?;
    for page in std::fs::read_dir(&man)? {
        run_cmd(Command::new("gzip").args(["-9nf"]).arg(page?.path()))?;
    }
    for (shell, file) in [
        ("bash", "netconn.bash"),
        ("zsh", "_netconn"),
        ("fish", "netconn.fish"),
    ] {
        std::fs::write(dir.join(file), out(&["completions", shell])?)?;
    }
    Ok(())
}
