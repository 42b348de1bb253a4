//! `ipmpstat -p`: the probe stream's fields, and whether there is anything to stream.

use super::{Field, StatError};
use crate::control::{ProbeState, Snapshot};

/// RTTDEV falls outside the 80-column default, as in Solaris.
pub const FIELDS: &[Field] = &[
    Field {
        name: "TIME",
        width: 10,
    },
    Field {
        name: "INTERFACE",
        width: 12,
    },
    Field {
        name: "PROBE",
        width: 7,
    },
    Field {
        name: "NETRTT",
        width: 10,
    },
    Field {
        name: "RTT",
        width: 10,
    },
    Field {
        name: "RTTAVG",
        width: 10,
    },
    Field {
        name: "TARGET",
        width: 20,
    },
    Field {
        name: "RTTDEV",
        width: 10,
    },
];

/// Like Solaris, `-p` fails when no member probes.
pub fn check_probing(snapshot: &Snapshot) -> Result<(), StatError> {
    let probing = snapshot
        .groups
        .iter()
        .flat_map(|g| &g.members)
        .any(|m| m.probe != ProbeState::Disabled);
    if probing {
        Ok(())
    } else {
        Err(StatError::ProbingDisabled)
    }
}
