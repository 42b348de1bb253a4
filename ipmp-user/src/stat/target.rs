//! `ipmpstat -t`: probe mode, test address and targets per member.
//!
//! As Solaris: one row per address family a member probes in, targets in firing order; one
//! `disabled` row for a member that does not probe.

use serde::Serialize;

use super::fields::{Field, Names, Row, display_addr};
use crate::control::Snapshot;

pub const FIELDS: &[Field] = &[
    Field {
        name: "INTERFACE",
        width: 12,
    },
    Field {
        name: "MODE",
        width: 10,
    },
    Field {
        name: "TESTADDR",
        width: 20,
    },
    Field {
        name: "TARGETS",
        width: 38,
    },
];

/// How a member finds probe targets (ipmpstat -t MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    /// Routers from the routing table.
    Routes,
    /// Hosts that answered a multicast echo.
    Multicast,
    /// No probing.
    Disabled,
}

impl ProbeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::Routes => "routes",
            ProbeMode::Multicast => "multicast",
            ProbeMode::Disabled => "disabled",
        }
    }
}

/// One ipmpstat -t row, numeric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetRow {
    pub interface: String,
    /// The IPMP interface of the member's group.
    pub group: String,
    pub mode: ProbeMode,
    pub testaddr: Option<String>,
    /// Active targets in firing order.
    pub targets: Vec<String>,
}

/// One row per address family a member probes in; one `disabled` row (with its first test
/// address, if any) for a member that does not probe, as Solaris does.
pub fn rows(snapshot: &Snapshot) -> Vec<TargetRow> {
    snapshot
        .groups
        .iter()
        .flat_map(|g| {
            g.members.iter().flat_map(|m| {
                let row = |mode, testaddr, targets| TargetRow {
                    interface: m.name.clone(),
                    group: g.interface.clone(),
                    mode,
                    testaddr,
                    targets,
                };
                if m.probes.is_empty() {
                    return vec![row(
                        ProbeMode::Disabled,
                        m.test_addresses.first().cloned(),
                        Vec::new(),
                    )];
                }
                m.probes
                    .iter()
                    .map(|p| {
                        let mode = match p.mode.as_str() {
                            "routes" => ProbeMode::Routes,
                            "multicast" => ProbeMode::Multicast,
                            _ => ProbeMode::Disabled,
                        };
                        row(mode, p.test_address.clone(), p.targets.clone())
                    })
                    .collect()
            })
        })
        .collect()
}

/// Table rows from [`TargetRow`]s, with host names from `names`.
pub fn format_rows(rows: &[TargetRow], names: &Names) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            vec![
                r.interface.clone(),
                r.mode.as_str().to_owned(),
                r.testaddr
                    .as_deref()
                    .map(|a| display_addr(names, a))
                    .unwrap_or_default(),
                r.targets
                    .iter()
                    .map(|t| display_addr(names, t))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect()
}

/// This mode's part of the snapshot, as pretty JSON ending in a newline.
pub fn json(snapshot: &Snapshot) -> serde_json::Result<String> {
    super::fields::pretty(&rows(snapshot))
}
