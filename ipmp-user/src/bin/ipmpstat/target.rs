//! `ipmpstat -t`: probe mode, test address and targets per interface, with host names unless
//! `-n`.

use ipmp::stat::{self, Mode};

use crate::cli::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    let selection = cli.selection()?;
    let snapshot = cli.snapshot()?;
    if cli.json {
        return Ok(stat::target::json(&snapshot)?);
    }
    let names = crate::cli::names(cli, &stat::addresses_to_name(Mode::Target, &snapshot));
    let rows = stat::target::rows(&snapshot);
    Ok(selection.render(&stat::target::format_rows(&rows, &names)))
}
