//! `cargo xtask man`: writes the man pages and shell completions under `dist/` from the tools'
//! clap definitions and config/ipmpd.toml. The renderer lives in the ipmp library (xtask does not
//! depend on it, see Cargo.toml), so this runs ipmp-user's `dist-pages` example.

use anyhow::{Context as _, bail};

pub fn run() -> anyhow::Result<()> {
    let root = crate::bench::workspace_root();
    let st = crate::test::cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "ipmp-user",
            "--example",
            "dist-pages",
            "--",
        ])
        .arg(&root)
        .status()
        .context("cannot run cargo run")?;
    if !st.success() {
        bail!("the dist-pages example failed ({st})");
    }
    println!("xtask man: pages and completions written; commit dist/man and dist/completions");
    Ok(())
}
