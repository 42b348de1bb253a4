//! Issue 4, point 3: failover — link-based (carrier loss) and probe-based (silent failure).

use super::{Opts, Section};

/// Measures failover and returns the report section.
pub fn run(opts: &Opts) -> anyhow::Result<Section> {
    let _ = opts;
    anyhow::bail!("failover: not measured yet")
}
