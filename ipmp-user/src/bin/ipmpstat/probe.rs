//! `ipmpstat -p`: probes as they complete. Like Solaris it fails when no interface probes; when
//! some do, it says that ipmpd's control protocol has no probe stream yet.

use ipmp::stat::{self, StatError};

use crate::cli::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    // Field errors first, as for the other modes.
    let _selection = cli.selection()?;
    let snapshot = cli.snapshot()?;
    stat::probe::check_probing(&snapshot)?;
    // Some member probes, but this ipmpd's protocol has no probe subscription to read from.
    Err(StatError::ProbeStreamUnsupported.into())
}
