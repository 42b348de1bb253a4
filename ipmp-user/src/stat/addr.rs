//! `ipmpstat -a`: one row per data address.

use serde::Serialize;

use super::fields::{Field, Names, Row, display_addr};
use crate::control::{AddressStatus, Snapshot};

pub const FIELDS: &[Field] = &[
    Field {
        name: "ADDRESS",
        width: 26,
    },
    Field {
        name: "STATE",
        width: 7,
    },
    Field {
        name: "GROUP",
        width: 12,
    },
    Field {
        name: "INBOUND",
        width: 12,
    },
    Field {
        name: "OUTBOUND",
        width: 23,
    },
];

/// Rows in snapshot order. As in Solaris, INBOUND is empty for a down address, and OUTBOUND is
/// empty for a down or unbound one.
pub fn rows(snapshot: &Snapshot, names: &Names) -> Vec<Row> {
    snapshot
        .groups
        .iter()
        .flat_map(|g| {
            g.addresses.iter().map(|a| {
                let inbound = if a.up { a.inbound.clone() } else { None };
                let outbound = if inbound.is_some() {
                    a.outbound.join(" ")
                } else {
                    String::new()
                };
                vec![
                    display_addr(names, &a.address),
                    if a.up { "up" } else { "down" }.to_owned(),
                    g.interface.clone(),
                    inbound.unwrap_or_default(),
                    outbound,
                ]
            })
        })
        .collect()
}

#[derive(Serialize)]
struct AddressJson<'a> {
    /// The IPMP interface holding the address.
    group: &'a str,
    #[serde(flatten)]
    address: &'a AddressStatus,
}

/// This mode's part of the snapshot, as pretty JSON ending in a newline.
pub fn json(snapshot: &Snapshot) -> serde_json::Result<String> {
    let addresses: Vec<AddressJson<'_>> = snapshot
        .groups
        .iter()
        .flat_map(|g| {
            g.addresses.iter().map(|a| AddressJson {
                group: &g.interface,
                address: a,
            })
        })
        .collect();
    super::fields::pretty(&addresses)
}
