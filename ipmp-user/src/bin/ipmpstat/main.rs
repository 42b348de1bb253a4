//! ipmpstat: show IPMP groups, member interfaces, data addresses, probe targets and probes, in
//! the columns of Solaris ipmpstat, from a running ipmpd.

mod addr;
mod cli;
mod group;
mod iface;
mod names;
mod probe;
mod target;

use std::{
    io::{ErrorKind, Write as _},
    process::ExitCode,
};

use clap::Parser as _;
use ipmp::stat::Mode;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::parse_error(e),
    };
    match run(&cli) {
        Ok(out) => {
            // `ipmpstat | head` closes stdout early: not an error.
            match std::io::stdout().lock().write_all(out.as_bytes()) {
                Err(e) if e.kind() != ErrorKind::BrokenPipe => {
                    eprintln!("ipmpstat: cannot write output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("ipmpstat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<String> {
    let mode = cli.mode();
    match mode {
        Mode::Address => addr::run(cli),
        Mode::Group => group::run(cli),
        Mode::Interface => iface::run(cli),
        Mode::Probe => probe::run(cli),
        Mode::Target => target::run(cli),
    }
}
