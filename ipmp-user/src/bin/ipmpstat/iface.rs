//! `ipmpstat -i`: member interfaces, their flags, link, probe and overall state.

use ipmp::stat;

use crate::cli::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    let selection = cli.selection()?;
    let snapshot = cli.snapshot()?;
    if cli.json {
        return Ok(stat::iface::json(&snapshot)?);
    }
    Ok(selection.render(&stat::iface::rows(&snapshot)))
}
