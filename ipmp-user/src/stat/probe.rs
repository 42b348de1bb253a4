//! `ipmpstat -p`: the probe stream's fields, one row per completed probe, and whether there is
//! anything to stream.

use super::fields::{Field, Names, Row, StatError, display_addr};
use crate::control::{ProbeLine, ProbeState, Snapshot};

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

/// Milliseconds with two decimals, as Solaris prints RTTs (`0.51ms`).
fn ms(us: Option<u64>) -> String {
    us.map(|us| format!("{:.2}ms", us as f64 / 1000.0))
        .unwrap_or_default()
}

/// The row of one probe: TIME is seconds since `start_unix_ns` (ipmpstat's start; negative
/// for a probe sent before it), RTT fields are empty for a lost probe, TARGET by name unless
/// `names` is empty.
pub fn row(line: &ProbeLine, start_unix_ns: u64, names: &Names) -> Row {
    let secs = (i128::from(line.sent_unix_ns) - i128::from(start_unix_ns)) as f64 / 1e9;
    vec![
        format!("{secs:.2}s"),
        line.interface.clone(),
        line.seq.to_string(),
        ms(line.netrtt_us.filter(|_| !line.lost)),
        ms(line.rtt_us.filter(|_| !line.lost)),
        ms(line.rttavg_us),
        line.target
            .as_deref()
            .map(|t| display_addr(names, t))
            .unwrap_or_default(),
        ms(line.rttdev_us),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stat::{Mode, Selection};

    fn line(lost: bool) -> ProbeLine {
        ProbeLine {
            sent_unix_ns: 10_110_000_000,
            group: "ipmp0".into(),
            interface: "m0".into(),
            family: "inet6".into(),
            seq: 589,
            target: Some("2001:db8:1::1".into()),
            lost,
            netrtt_us: Some(510),
            rtt_us: Some(760),
            rttavg_us: Some(755),
            rttdev_us: Some(42),
        }
    }

    #[test]
    fn rows_match_solaris_columns() {
        let names = Names::new();
        let r = row(&line(false), 10_000_000_000, &names);
        assert_eq!(
            r,
            [
                "0.11s",
                "m0",
                "589",
                "0.51ms",
                "0.76ms",
                "0.76ms",
                "2001:db8:1::1",
                "0.04ms"
            ]
        );
        // Lost: no NETRTT or RTT; sent before ipmpstat started: negative time.
        let r = row(&line(true), 10_500_000_000, &names);
        assert_eq!(&r[..5], ["-0.39s", "m0", "589", "", ""]);
        let human = Selection::new(Mode::Probe, None, false)
            .unwrap()
            .render(std::slice::from_ref(&r));
        assert_eq!(
            human.lines().collect::<Vec<_>>(),
            [
                "TIME      INTERFACE   PROBE  NETRTT    RTT       RTTAVG    TARGET",
                "-0.39s    m0          589    --        --        0.76ms    2001:db8:1::1",
            ]
        );
        // -P escapes ':' in the IPv6 target and leaves empty values empty.
        let parsable = Selection::new(Mode::Probe, Some("interface,netrtt,target"), true)
            .unwrap()
            .render(&[r]);
        assert_eq!(parsable, "m0::2001\\:db8\\:1\\:\\:1\n");
        let mut names = Names::new();
        names.insert("2001:db8:1::1".into(), "router".into());
        assert_eq!(row(&line(false), 0, &names)[6], "router");
    }
}
