//! `cargo xtask test`: setup, build everything, then the test tiers:
//! 1. unit and property tests (no root): `cargo test --lib --bins` over the workspace;
//! 2. and 3. privileged tests (BPF_PROG_TEST_RUN fixtures, netns scenarios): the ipmp-tests
//!    package's integration tests, one at a time, as root. In CI (env CI) they must run: not being root is
//!    an error there, never a skip.

use std::{
    env,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, anyhow, bail};

/// The cargo that runs us (so the same toolchain builds the workspace).
pub(crate) fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The workspace's target directory (honours CARGO_TARGET_DIR).
pub(crate) fn target_dir() -> anyhow::Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata output")?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("cargo metadata names no target_directory"))
}

/// Builds every host crate and target (ipmp-ebpf is built for BPF by ipmp-user's build script;
/// building it for the host fails, so it is excluded here).
pub(crate) fn build(extra: &[&str]) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("xtask: building the workspace");
    let st = cargo()
        .args(["build", "--workspace", "--exclude", "ipmp-ebpf"])
        .args(extra)
        .status()
        .context("cannot run cargo build")?;
    if !st.success() {
        bail!("cargo build failed ({st})");
    }
    println!(
        "xtask: build ok in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A release build of `bins` from `packages`; returns the directory that holds them.
pub(crate) fn release_build(packages: &[&str], bins: &[&str]) -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    println!("xtask: release build of {}", bins.join(", "));
    let mut cmd = cargo();
    cmd.args(["build", "--release"]);
    for package in packages {
        cmd.args(["-p", package]);
    }
    for bin in bins {
        cmd.args(["--bin", bin]);
    }
    let st = cmd.status().context("cannot run cargo build")?;
    if !st.success() {
        bail!("cargo build --release failed ({st})");
    }
    println!(
        "xtask: build ok in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(target_dir()?.join("release"))
}

/// Counts from cargo test's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    pub(crate) fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

struct Tier {
    name: &'static str,
    outcome: String,
    ok: bool,
}

/// Runs `cargo test ARGS`, echoing its output and counting results.
fn cargo_test(args: &[String], envs: &[(&str, String)]) -> anyhow::Result<(bool, Counts, f64)> {
    let started = Instant::now();
    let mut cmd = cargo();
    // Every test binary runs even after a failure, so the summary covers them all.
    cmd.args(["test", "--no-fail-fast"])
        .args(args)
        .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("cannot run cargo test")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("cargo test stdout not piped"))?;
    let mut counts = Counts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read cargo test output")?;
        println!("{line}");
        counts.add_line(&line);
    }
    let st = child.wait().context("wait for cargo test")?;
    Ok((st.success(), counts, started.elapsed().as_secs_f64()))
}

fn outcome(ok: bool, c: Counts, secs: f64) -> String {
    format!(
        "{} — {} passed, {} failed, {} ignored ({secs:.1} s)",
        if ok { "ok" } else { "FAILED" },
        c.passed,
        c.failed,
        c.ignored
    )
}

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    let root = ipmp_lab::is_root();
    let ci = ipmp_lab::ci_requires_privilege();
    if ci && !root {
        bail!(
            "CI is set but xtask test is not running as root: the privileged test tiers must run in CI; run it as root"
        );
    }
    crate::setup::run()?;
    build(&["--all-targets"])?;
    let mut tiers = Vec::new();

    let tier1: Vec<String> = ["--workspace", "--exclude", "ipmp-ebpf", "--lib", "--bins"]
        .map(String::from)
        .into();
    let (ok, counts, secs) = cargo_test(&tier1, &[])?;
    tiers.push(Tier {
        name: "tier 1 (unit, property)",
        outcome: outcome(ok, counts, secs),
        ok,
    });

    let name = "tier 2+3 (packet fixtures, netns scenarios; root)";
    if root {
        let bin_dir = target_dir()?.join("debug");
        let mut args: Vec<String> = ["-p", "ipmp-tests", "--tests", "--", "--test-threads=1"]
            .map(String::from)
            .into();
        args.extend(extra.iter().cloned());
        let envs = [("IPMP_BIN_DIR", bin_dir.to_string_lossy().into_owned())];
        let (ok, counts, secs) = cargo_test(&args, &envs)?;
        // A filter that matches nothing must not look like a pass.
        let ok = ok && counts.passed > 0;
        tiers.push(Tier {
            name,
            outcome: outcome(ok, counts, secs),
            ok,
        });
    } else {
        println!(
            "\n!!! xtask: NOT ROOT: SKIPPING the privileged test tiers (run as root to include them) !!!\n"
        );
        tiers.push(Tier {
            name,
            outcome: "SKIPPED (not root)".into(),
            ok: true,
        });
    }

    println!();
    for t in &tiers {
        println!("xtask test: {:<52} {}", t.name, t.outcome);
    }
    if tiers.iter().any(|t| !t.ok) {
        bail!("some test tiers failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_result_lines() {
        let mut c = Counts::default();
        c.add_line("test result: ok. 13 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.03s");
        c.add_line("test result: FAILED. 3 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 11.54s");
        c.add_line("running 6 tests");
        c.add_line("test foo ... ok");
        assert_eq!(
            c,
            Counts {
                passed: 16,
                failed: 3,
                ignored: 2
            }
        );
    }
}
