//! `ipmpstat -i`: one row per member interface.

use serde::Serialize;

use super::fields::{Field, Row};
use crate::control::{MemberFlags, MemberStatus, Snapshot};

pub const FIELDS: &[Field] = &[
    Field {
        name: "INTERFACE",
        width: 12,
    },
    Field {
        name: "ACTIVE",
        width: 8,
    },
    Field {
        name: "GROUP",
        width: 12,
    },
    Field {
        name: "FLAGS",
        width: 10,
    },
    Field {
        name: "LINK",
        width: 10,
    },
    Field {
        name: "PROBE",
        width: 10,
    },
    Field {
        name: "STATE",
        width: 10,
    },
];

pub fn rows(snapshot: &Snapshot) -> Vec<Row> {
    snapshot
        .groups
        .iter()
        .flat_map(|g| {
            g.members.iter().map(|m| {
                vec![
                    m.name.clone(),
                    yes_no(m.active).to_owned(),
                    g.interface.clone(),
                    flags(&m.flags),
                    m.link.to_string(),
                    m.probe.to_string(),
                    m.state.to_string(),
                ]
            })
        })
        .collect()
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The 7-character FLAGS value: `i s m b M d h` in that order, `-` where a flag is off.
pub fn flags(f: &MemberFlags) -> String {
    [
        (f.inactive, 'i'),
        (f.standby, 's'),
        (f.v4_multicast, 'm'),
        (f.v4_broadcast, 'b'),
        (f.v6_multicast, 'M'),
        (f.all_down, 'd'),
        (f.duplicate_hwaddr, 'h'),
    ]
    .iter()
    .map(|&(on, c)| if on { c } else { '-' })
    .collect()
}

#[derive(Serialize)]
struct MemberJson<'a> {
    /// The IPMP interface of the member's group.
    group: &'a str,
    #[serde(flatten)]
    member: &'a MemberStatus,
}

/// This mode's part of the snapshot, as pretty JSON ending in a newline.
pub fn json(snapshot: &Snapshot) -> serde_json::Result<String> {
    let members: Vec<MemberJson<'_>> = snapshot
        .groups
        .iter()
        .flat_map(|g| {
            g.members.iter().map(|m| MemberJson {
                group: &g.interface,
                member: m,
            })
        })
        .collect();
    super::fields::pretty(&members)
}
