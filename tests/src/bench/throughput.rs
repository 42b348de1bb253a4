//! Issue 4, point 2: throughput over the netns lab — plain veth path, ipmp, kernel nexthop group.

use super::{Opts, Section};

/// Measures throughput and returns the report section.
pub fn run(opts: &Opts) -> anyhow::Result<Section> {
    let _ = opts;
    anyhow::bail!("throughput: not measured yet")
}
