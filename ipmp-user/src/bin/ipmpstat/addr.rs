//! `ipmpstat -a`: data addresses, with host names unless `-n`.

use ipmp::stat::{self, Mode};

use crate::cli::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    let selection = cli.selection()?;
    let snapshot = cli.snapshot()?;
    if cli.json {
        return Ok(stat::addr::json(&snapshot)?);
    }
    let names = crate::cli::names(cli, &stat::addresses_to_name(Mode::Address, &snapshot));
    Ok(selection.render(&stat::addr::rows(&snapshot, &names)))
}
