//! `cargo xtask fuzz [--packets N] [--seed S]`: the long run of the data-plane fuzz test
//! (tests/tests/fuzz.rs) as root: N generated packets per eBPF program (default 10 million)
//! through BPF_PROG_TEST_RUN, each compared with the userspace model. Built in release,
//! where generating packets costs a fraction of what it does in the test profile. Without
//! `--seed` the seed is new each run; it is printed, and `--seed` replays a run.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

/// Packets per program when `--packets` is not given.
pub const DEFAULT_PACKETS: u64 = 10_000_000;

pub fn run(packets: u64, seed: Option<u64>) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the fuzz run loads eBPF programs and builds a network namespace: run `cargo xtask fuzz` as root"
        );
    }
    crate::setup::run()?;
    let seed = match seed {
        Some(s) => s,
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("the clock is before 1970")?;
            now.as_secs() ^ u64::from(now.subsec_nanos()) << 32
        }
    };
    println!(
        "xtask fuzz: {packets} packets per program, seed {seed:#x} (replay with --seed {seed:#x})"
    );
    let st = crate::test::cargo()
        .args([
            "test",
            "--release",
            "-p",
            "ipmp-tests",
            "--test",
            "fuzz",
            "--",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IPMP_FUZZ_PACKETS", packets.to_string())
        .env("IPMP_FUZZ_SEED", format!("{seed:#x}"))
        .status()
        .context("cannot run cargo test")?;
    if !st.success() {
        bail!("the fuzz run found disagreements or failed ({st}); seed {seed:#x}");
    }
    println!("xtask fuzz: no disagreements ({packets} packets per program, seed {seed:#x})");
    Ok(())
}

/// `--seed`: decimal or 0x-prefixed hexadecimal.
pub fn parse_seed(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("{s}: {e} (want a number, decimal or 0x…)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_in_both_bases() {
        assert_eq!(parse_seed("0x1b3d5eed"), Ok(0x1b3d_5eed));
        assert_eq!(parse_seed("42"), Ok(42));
        assert!(parse_seed("0xzz").is_err());
        assert!(parse_seed("").is_err());
    }
}
