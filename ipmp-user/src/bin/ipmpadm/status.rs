//! `ipmpadm status`: a human summary of the whole snapshot, or all of it as JSON.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use ipmp::{
    cli::ipmpadm::StatusArgs as Args,
    control::{self, GroupStatus, Snapshot},
    stat,
};

pub fn run(socket: &Path, args: &Args) -> anyhow::Result<()> {
    let snapshot = control::status_blocking(socket)?;
    if args.json {
        let text = serde_json::to_string_pretty(&snapshot).context("encode JSON")?;
        println!("{text}");
    } else {
        print!("{}", summary(&snapshot));
    }
    Ok(())
}

/// The whole snapshot for people: daemon, then per group its settings, members and addresses.
pub fn summary(s: &Snapshot) -> String {
    let mut out = format!(
        "ipmpd {} (pid {}), up {}\n",
        s.version,
        s.pid,
        uptime(s.uptime_ms)
    );
    if s.groups.is_empty() {
        out.push_str("no groups\n");
    }
    for g in &s.groups {
        group(&mut out, g);
    }
    out
}

fn group(out: &mut String, g: &GroupStatus) {
    let detection = match g.fdt_ms {
        Some(ms) => format!("probes, FDT {}", stat::group::fdt(ms)),
        None => "link state only".to_owned(),
    };
    let _ = writeln!(
        out,
        "\ngroup {} (interface {}, ifindex {}): {}\n  failure detection: {}; failback: {}; {} buckets, hash seed {:#010x}",
        g.name,
        g.interface,
        g.ifindex,
        g.state,
        detection,
        if g.failback { "yes" } else { "no" },
        g.n_buckets,
        g.hash_seed,
    );
    let mut members = vec![
        [
            "MEMBER",
            "ACTIVE",
            "STATE",
            "LINK",
            "PROBE",
            "FLAGS",
            "BUCKETS",
            "BOUND",
            "TX-PACKETS",
            "TX-BYTES",
            "RX-PACKETS",
            "RX-BYTES",
            "MAC",
            "TEST-ADDRESSES",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for m in &g.members {
        members.push(vec![
            m.name.clone(),
            if m.active { "yes" } else { "no" }.to_owned(),
            m.state.to_string(),
            m.link.to_string(),
            m.probe.to_string(),
            stat::iface::flags(&m.flags),
            m.buckets.to_string(),
            m.bound_addresses.to_string(),
            m.tx_packets.to_string(),
            m.tx_bytes.to_string(),
            m.rx_packets.to_string(),
            m.rx_bytes.to_string(),
            m.mac.clone(),
            or_dash(m.test_addresses.join(" ")),
        ]);
    }
    if g.members.is_empty() {
        out.push_str("  no members\n");
    } else {
        table(out, &members);
    }
    let mut addresses = vec![
        ["ADDRESS", "STATE", "INBOUND", "OUTBOUND"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for a in &g.addresses {
        addresses.push(vec![
            format!("{}/{}", a.address, a.prefix_len),
            if a.up { "up" } else { "down" }.to_owned(),
            or_dash(a.inbound.clone().unwrap_or_default()),
            or_dash(a.outbound.join(" ")),
        ]);
    }
    if g.addresses.is_empty() {
        out.push_str("  no data addresses\n");
    } else {
        table(out, &addresses);
    }
    let mut attached = vec![
        ["INTERFACE", "HOOK", "PROGRAM", "LINK-ID", "PROG-ID", "PIN"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for a in &g.attachments {
        let hook = if a.mode.is_empty() {
            a.hook.clone()
        } else {
            format!("{} ({})", a.hook, a.mode)
        };
        attached.push(vec![
            a.interface.clone(),
            hook,
            a.program.clone(),
            a.link_id.to_string(),
            a.prog_id.to_string(),
            a.pin.clone(),
        ]);
    }
    if g.attachments.is_empty() {
        out.push_str("  no programs attached\n");
    } else {
        table(out, &attached);
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "--".to_owned() } else { s }
}

/// Left-aligned columns two spaces apart, indented two spaces, no trailing blanks.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(value, width)| format!("{value:<width$}"))
            .collect();
        let line = format!("  {}", cells.join("  "));
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// `1d 2h 3m 4s`, leading zero units left out.
fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    let parts = [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ];
    let first = parts
        .iter()
        .position(|&(v, _)| v > 0)
        .unwrap_or(parts.len() - 1);
    parts[first..]
        .iter()
        .map(|(v, unit)| format!("{v}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use ipmp::control::{
        AddressStatus, Attachment, GroupState, LinkState, MemberFlags, MemberState, MemberStatus,
        ProbeState,
    };

    use super::*;

    fn snapshot() -> Snapshot {
        let member = |name: &str, active: bool, buckets: u32| MemberStatus {
            name: name.into(),
            ifindex: 3,
            mac: "02:00:00:00:00:01".into(),
            active,
            flags: MemberFlags {
                v4_multicast: active,
                ..MemberFlags::default()
            },
            link: if active {
                LinkState::Up
            } else {
                LinkState::Down
            },
            probe: ProbeState::Disabled,
            state: if active {
                MemberState::Ok
            } else {
                MemberState::Failed
            },
            test_addresses: Vec::new(),
            buckets,
            bound_addresses: u32::from(active),
            tx_packets: 12,
            tx_bytes: 3400,
            rx_packets: 9,
            rx_bytes: 900,
            counters: Default::default(),
            probes: Vec::new(),
            probe_forged: 0,
            probe_totals: Default::default(),
        };
        Snapshot {
            pid: 4242,
            version: "0.1.0".into(),
            uptime_ms: 3_723_000,
            groups: vec![GroupStatus {
                interface: "ipmp0".into(),
                name: "g0".into(),
                ifindex: 7,
                state: GroupState::Degraded,
                fdt_ms: None,
                failback: true,
                n_buckets: 256,
                hash_seed: 0xbeef,
                members: vec![member("m0", true, 256), member("m1", false, 0)],
                addresses: vec![AddressStatus {
                    address: "198.51.100.10".into(),
                    prefix_len: 24,
                    up: true,
                    inbound: Some("m0".into()),
                    outbound: vec!["m0".into()],
                }],
                attachments: vec![Attachment {
                    interface: "m0".into(),
                    hook: "xdp".into(),
                    mode: "generic".into(),
                    program: "ipmp_xdp_member".into(),
                    link_id: 5,
                    prog_id: 41,
                    pin: "/sys/fs/bpf/ipmp/links/xdp@m0".into(),
                }],
            }],
        }
    }

    #[test]
    fn summary_shows_groups_members_buckets_and_addresses() {
        assert_eq!(
            summary(&snapshot()),
            "ipmpd 0.1.0 (pid 4242), up 1h 2m 3s\n\
             \n\
             group g0 (interface ipmp0, ifindex 7): degraded\n  \
               failure detection: link state only; failback: yes; 256 buckets, hash seed 0x0000beef\n  \
               MEMBER  ACTIVE  STATE   LINK  PROBE     FLAGS    BUCKETS  BOUND  TX-PACKETS  TX-BYTES  RX-PACKETS  RX-BYTES  MAC                TEST-ADDRESSES\n  \
               m0      yes     ok      up    disabled  --m----  256      1      12          3400      9           900       02:00:00:00:00:01  --\n  \
               m1      no      failed  down  disabled  -------  0        0      12          3400      9           900       02:00:00:00:00:01  --\n  \
               ADDRESS           STATE  INBOUND  OUTBOUND\n  \
               198.51.100.10/24  up     m0       m0\n  \
               INTERFACE  HOOK           PROGRAM          LINK-ID  PROG-ID  PIN\n  \
               m0         xdp (generic)  ipmp_xdp_member  5        41       /sys/fs/bpf/ipmp/links/xdp@m0\n"
        );
    }

    #[test]
    fn empty_daemon_and_uptime_units() {
        let mut s = snapshot();
        s.groups.clear();
        s.uptime_ms = 999;
        assert_eq!(summary(&s), "ipmpd 0.1.0 (pid 4242), up 0s\nno groups\n");
        assert_eq!(uptime(90_061_000), "1d 1h 1m 1s");
        assert_eq!(uptime(60_000), "1m 0s");
    }
}
