//! Project tasks: `cargo xtask setup | test | demo | bench | fuzz | cycles | man | deb`.

mod bench;
mod cycles;
mod deb;
mod demo;
mod dist;
mod fuzz;
mod man;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "ipmp project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build and the tests need (Debian 12; idempotent).
    Setup,
    /// Setup, build, then run every test tier (the privileged ones need root).
    Test {
        /// Passed to the privileged test binaries (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, build, then show failover in a lab: ipmpd, traffic, a cut link, a repair.
    Demo,
    /// Setup, release build, then the benchmarks (as root): writes docs/benchmarks.md and its
    /// SVG plots.
    Bench {
        /// The ~2-minute subset: fewer trials, shorter runs (the report says so).
        #[arg(long)]
        quick: bool,
        /// Run only these sections (repeatable): prog-cost, throughput, failover, flows,
        /// balance, control, aggregate.
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// Where the report goes (default: docs/ in the workspace).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
    /// The long data-plane fuzz run (as root): generated packets through every eBPF program,
    /// each compared with the userspace model; fails on any disagreement.
    Fuzz {
        /// Packets per program.
        #[arg(long, default_value_t = fuzz::DEFAULT_PACKETS)]
        packets: u64,
        /// Seed of the packet generators (decimal or 0x…); default: a new one, printed.
        #[arg(long, value_parser = fuzz::parse_seed)]
        seed: Option<u64>,
    },
    /// Import cycles between the source files of each crate (there must be none).
    Cycles,
    /// Regenerate the man pages (dist/man) and shell completions (dist/completions) from the
    /// tools' command-line definitions and config/ipmpd.toml.
    Man,
    /// Build the Debian package `ipmp` (release build unless --bin-dir) and print its path.
    Deb {
        /// Package the binaries found here instead of building them in release mode.
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<std::path::PathBuf>,
        /// Where the package goes (default: target/deb).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::Test { args } => test::run(&args),
        Cmd::Demo => demo::run(),
        Cmd::Bench { quick, only, out } => bench::run(quick, &only, out),
        Cmd::Fuzz { packets, seed } => fuzz::run(packets, seed),
        Cmd::Cycles => cycles::run(),
        Cmd::Man => man::run(),
        Cmd::Deb { bin_dir, out } => deb::run(bin_dir, out).map(drop),
    }
}
