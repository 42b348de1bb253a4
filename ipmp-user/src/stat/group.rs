//! `ipmpstat -g`: one row per group.

use serde::Serialize;

use super::fields::{Field, Row};
use crate::control::{GroupState, GroupStatus, MemberState, Snapshot};

pub const FIELDS: &[Field] = &[
    Field {
        name: "GROUP",
        width: 12,
    },
    Field {
        name: "GROUPNAME",
        width: 12,
    },
    Field {
        name: "STATE",
        width: 10,
    },
    Field {
        name: "FDT",
        width: 10,
    },
    Field {
        name: "INTERFACES",
        width: 30,
    },
];

pub fn rows(snapshot: &Snapshot) -> Vec<Row> {
    snapshot
        .groups
        .iter()
        .map(|g| {
            vec![
                g.interface.clone(),
                g.name.clone(),
                g.state.to_string(),
                g.fdt_ms.map(fdt).unwrap_or_default(),
                interfaces(g),
            ]
        })
        .collect()
}

/// FDT as Solaris prints it (`"%.2fs"`).
pub fn fdt(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// Active members bare, then inactive ones in `()`, then unusable (failed or offline) ones in
/// `[]`, each in snapshot order.
pub fn interfaces(group: &GroupStatus) -> String {
    let mut active = Vec::new();
    let mut inactive = Vec::new();
    let mut unusable = Vec::new();
    for m in &group.members {
        if matches!(m.state, MemberState::Failed | MemberState::Offline) {
            unusable.push(format!("[{}]", m.name));
        } else if m.active {
            active.push(m.name.clone());
        } else {
            inactive.push(format!("({})", m.name));
        }
    }
    active.extend(inactive);
    active.extend(unusable);
    active.join(" ")
}

#[derive(Serialize)]
struct GroupJson<'a> {
    interface: &'a str,
    name: &'a str,
    ifindex: u32,
    state: GroupState,
    fdt_ms: Option<u64>,
    failback: bool,
    n_buckets: u32,
    hash_seed: u32,
    /// Member names in snapshot order.
    members: Vec<&'a str>,
}

/// This mode's part of the snapshot, as pretty JSON ending in a newline.
pub fn json(snapshot: &Snapshot) -> serde_json::Result<String> {
    let groups: Vec<GroupJson<'_>> = snapshot
        .groups
        .iter()
        .map(|g| GroupJson {
            interface: &g.interface,
            name: &g.name,
            ifindex: g.ifindex,
            state: g.state,
            fdt_ms: g.fdt_ms,
            failback: g.failback,
            n_buckets: g.n_buckets,
            hash_seed: g.hash_seed,
            members: g.members.iter().map(|m| m.name.as_str()).collect(),
        })
        .collect();
    super::fields::pretty(&groups)
}
