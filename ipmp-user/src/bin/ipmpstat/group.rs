//! `ipmpstat -g`: groups, their state, FDT and members.

use ipmp::stat;

use crate::cli::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    let selection = cli.selection()?;
    let snapshot = cli.snapshot()?;
    if cli.json {
        return Ok(stat::group::json(&snapshot)?);
    }
    Ok(selection.render(&stat::group::rows(&snapshot)))
}
