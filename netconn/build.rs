//! Compiles `netconn-ebpf` for the bpf target so `src/ebpf` can embed it.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "netconn-ebpf")
        .ok_or_else(|| anyhow!("netconn-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // `cargo xtask setup` picks a nightly whose LLVM matches bpf-linker's.
    println!("cargo:rerun-if-env-changed=NETCONN_EBPF_TOOLCHAIN");
    // A build whose programs return at once (see netconn-ebpf's EMPTIED).
    println!("cargo:rerun-if-env-changed=NETCONN_EBPF_EMPTY");
    let toolchain = std::env::var("NETCONN_EBPF_TOOLCHAIN").unwrap_or_else(|_| "nightly".into());
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
