//! Builds the eBPF object (ipmp-ebpf's `ipmp` binary) with the nightly toolchain through
//! aya-build and leaves it in OUT_DIR for `include_bytes_aligned!`. With AYA_BUILD_SKIP=1 it
//! writes an empty stub instead so host-only `cargo check`/`clippy` work without nightly or
//! bpf-linker; loading that stub fails with a clear error.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        fs::write(out_dir.join("ipmp"), []).context("write the stub eBPF object")?;
        return Ok(());
    }
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root_dir = PathBuf::from(manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("ipmp-user has no parent directory"))?
        .join("ipmp-ebpf");
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root_dir.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "ipmp-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context("building the eBPF programs failed: run `cargo xtask setup` (nightly rust-src and bpf-linker)")
}
