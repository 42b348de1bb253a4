//! `cargo xtask bench [--quick] [--only NAME]...`: setup, a release build of the binaries, then
//! `ipmp-bench` (from the ipmp-tests package) as root with IPMP_BIN_DIR pointing at that build.
//! It writes `docs/benchmarks.md` and the SVG plots beside it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

/// The binaries the benchmarks run: the daemon and its tools, the lab's traffic tool, the runner.
const BINS: [&str; 5] = ["ipmpd", "ipmpstat", "ipmpadm", "labtool", "ipmp-bench"];

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `git describe --always --dirty` of the workspace, when git can tell.
fn commit(root: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The arguments for ipmp-bench.
pub(crate) fn bench_args(quick: bool, only: &[String], out: &Path) -> Vec<String> {
    let mut args = vec!["--out".to_owned(), out.to_string_lossy().into_owned()];
    if quick {
        args.push("--quick".to_owned());
    }
    for name in only {
        args.push("--only".to_owned());
        args.push(name.clone());
    }
    args
}

pub fn run(quick: bool, only: &[String], out: Option<PathBuf>) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the benchmarks build network namespaces and load eBPF programs: run `cargo xtask bench` as root"
        );
    }
    crate::setup::run()?;
    let root = workspace_root();
    let bin_dir = crate::test::release_build(&["ipmp-user", "ipmp-tests"], &BINS)?;
    let out = out.unwrap_or_else(|| root.join("docs"));
    let runner = bin_dir.join("ipmp-bench");
    let started = Instant::now();
    let mut cmd = Command::new(&runner);
    cmd.args(bench_args(quick, only, &out))
        .env("IPMP_BIN_DIR", &bin_dir)
        .current_dir(&root);
    if let Some(c) = commit(&root) {
        cmd.env("IPMP_BENCH_COMMIT", c);
    }
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {}", runner.display()))?;
    if !st.success() {
        bail!("{} failed ({st})", runner.display());
    }
    println!(
        "xtask bench: done in {:.1} s (build excluded); report in {}",
        started.elapsed().as_secs_f64(),
        out.join("benchmarks.md").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_arguments() {
        assert_eq!(
            bench_args(false, &[], Path::new("/w/docs")),
            ["--out", "/w/docs"]
        );
        assert_eq!(
            bench_args(true, &["flows".into(), "control".into()], Path::new("d")),
            [
                "--out", "d", "--quick", "--only", "flows", "--only", "control"
            ]
        );
    }

    #[test]
    fn root_is_the_workspace() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
