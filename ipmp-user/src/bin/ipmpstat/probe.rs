//! `ipmpstat -p`: probes as they complete, streamed by ipmpd until interrupted. Like Solaris it
//! fails when no interface probes.

use std::{
    io::{ErrorKind, Write as _},
    time::{SystemTime, UNIX_EPOCH},
};

use ipmp::{control, stat};

use crate::cli::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<String> {
    // Field errors first, as for the other modes.
    let selection = cli.selection()?;
    let snapshot = cli.snapshot()?;
    stat::probe::check_probing(&snapshot)?;
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let stream = control::subscribe_probes(&cli.socket)?;
    let mut out = std::io::stdout().lock();
    let mut first = true;
    // Each target is looked up once (a lookup may wait for DNS).
    let mut names = stat::Names::new();
    let mut looked_up = std::collections::HashSet::new();
    for line in stream {
        let line = line?;
        let text = if cli.json {
            format!("{}\n", serde_json::to_string(&line)?)
        } else {
            if let Some(t) = &line.target
                && looked_up.insert(t.clone())
            {
                names.extend(crate::cli::names(cli, std::slice::from_ref(t)));
            }
            let rendered = selection.render(&[stat::probe::row(&line, start, &names)]);
            // The header only once, before the first probe.
            if first || selection.parsable() {
                rendered
            } else {
                rendered.lines().skip(1).map(|l| format!("{l}\n")).collect()
            }
        };
        first = false;
        // Each probe as it comes: flush, and stop quietly when the reader goes away.
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(String::new()),
            other => other?,
        }
    }
    Ok(String::new())
}
