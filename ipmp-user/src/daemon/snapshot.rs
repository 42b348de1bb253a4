//! The status snapshot served to ipmpstat and ipmpadm.

use ipmp_common::Reason;

use super::state::{Daemon, GroupRt};
use crate::{
    control::{
        AddressStatus, Attachment, GroupState, GroupStatus, LinkState, MemberFlags, MemberState,
        MemberStatus, ProbeState, ProbeTargets, ProbeTotals, Snapshot,
    },
    group,
    mpathd::ProbeHealth,
};

pub(super) fn build(d: &Daemon) -> Snapshot {
    Snapshot {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: d.started.elapsed().as_millis() as u64,
        groups: d.groups.iter().map(|g| group_status(d, g)).collect(),
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The prober's counters of member `mi`, one per family that probes.
fn probe_counters(g: &GroupRt, mi: usize) -> impl Iterator<Item = &crate::mpathd::ProbeCounters> {
    [crate::mpathd::Family::V4, crate::mpathd::Family::V6]
        .into_iter()
        .filter_map(move |f| g.probing.as_ref()?.prober.counters(mi, f))
}

fn group_status(d: &Daemon, g: &GroupRt) -> GroupStatus {
    let cast = g.fsm.cast();
    let active: Vec<String> = g
        .fsm
        .active_members()
        .iter()
        .filter_map(|m| g.members.get(*m).map(|m| m.name.clone()))
        .collect();
    let members = g
        .members
        .iter()
        .enumerate()
        .map(|(mi, m)| {
            let view = g.fsm.member(mi);
            let counters = d
                .dataplane
                .writer()
                .counters(m.stats_slot)
                .unwrap_or_default();
            let (tx_packets, tx_bytes) = counters
                .iter()
                .filter(|(r, _)| matches!(r, Reason::TxUnicast | Reason::TxCast))
                .fold((0, 0), |(p, b), (_, c)| (p + c.packets, b + c.bytes));
            let (rx_packets, rx_bytes) = counters
                .iter()
                .filter(|(r, _)| matches!(r, Reason::RxToIpmp | Reason::CastToIpmp))
                .fold((0, 0), |(p, b), (_, c)| (p + c.packets, b + c.bytes));
            let by_reason = counters
                .iter()
                .filter(|(_, c)| c.packets > 0)
                .map(|(r, c)| (r.label().to_owned(), c.packets))
                .collect();
            // Replies XDP dropped (probe magic and identifier, wrong cookie or sequence).
            let xdp_forged: u64 = counters
                .iter()
                .filter(|(r, _)| *r == Reason::ProbeForged)
                .map(|(_, c)| c.packets)
                .sum();
            let is_cast = cast == Some(mi);
            MemberStatus {
                name: m.name.clone(),
                ifindex: m.ifindex,
                mac: mac(m.mac),
                active: view.active,
                flags: MemberFlags {
                    inactive: view.inactive,
                    standby: view.standby,
                    v4_multicast: is_cast,
                    v4_broadcast: is_cast,
                    v6_multicast: is_cast,
                    all_down: false,
                    duplicate_hwaddr: false,
                },
                link: match view.link {
                    group::Carrier::Up => LinkState::Up,
                    group::Carrier::Down => LinkState::Down,
                    group::Carrier::Unknown => LinkState::Unknown,
                },
                probe: match g.probing.as_ref().map(|p| p.prober.probe_state(mi, &g.fsm)) {
                    None | Some(ProbeHealth::Disabled) => ProbeState::Disabled,
                    Some(ProbeHealth::Ok) => ProbeState::Ok,
                    Some(ProbeHealth::Failed) => ProbeState::Failed,
                    Some(ProbeHealth::Unknown) => ProbeState::Unknown,
                },
                state: match view.state {
                    group::MemberState::Ok => MemberState::Ok,
                    group::MemberState::Failed => MemberState::Failed,
                    group::MemberState::Offline => MemberState::Offline,
                    group::MemberState::Unknown => MemberState::Unknown,
                },
                test_addresses: g
                    .cfg
                    .members
                    .get(mi)
                    .and_then(|c| c.test_address.map(|p| p.to_string()))
                    .into_iter()
                    .collect(),
                buckets: g.fsm.buckets().load(mi),
                bound_addresses: (0..g.cfg.data_addresses.len())
                    .filter(|a| g.fsm.binding(*a) == Some(mi))
                    .count() as u32,
                tx_packets,
                tx_bytes,
                rx_packets,
                rx_bytes,
                counters: by_reason,
                probes: g
                    .probing
                    .as_ref()
                    .map(|p| {
                        p.prober
                            .target_rows(mi)
                            .into_iter()
                            .map(|r| ProbeTargets {
                                mode: r.mode.as_str().to_string(),
                                test_address: r.test_address.map(|a| a.to_string()),
                                targets: r.targets.iter().map(ToString::to_string).collect(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                probe_forged: xdp_forged
                    + probe_counters(g, mi)
                        .map(crate::mpathd::ProbeCounters::forged)
                        .sum::<u64>(),
                probe_totals: probe_counters(g, mi).fold(ProbeTotals::default(), |t, c| {
                    ProbeTotals {
                        sent: t.sent + c.sent,
                        answered: t.answered + c.acked,
                        lost: t.lost + c.lost,
                    }
                }),
            }
        })
        .collect();
    let addresses = g
        .cfg
        .data_addresses
        .iter()
        .enumerate()
        .map(|(ai, p)| {
            let inbound = g
                .fsm
                .binding(ai)
                .and_then(|m| g.members.get(m))
                .map(|m| m.name.clone());
            AddressStatus {
                address: p.addr.to_string(),
                prefix_len: p.len,
                up: true,
                outbound: if inbound.is_some() {
                    active.clone()
                } else {
                    Vec::new()
                },
                inbound,
            }
        })
        .collect();
    GroupStatus {
        interface: g.cfg.name.clone(),
        name: g.cfg.name.clone(),
        ifindex: g.ifindex,
        state: match g.fsm.state() {
            group::GroupState::Ok => GroupState::Ok,
            group::GroupState::Degraded => GroupState::Degraded,
            group::GroupState::Failed => GroupState::Failed,
        },
        fdt_ms: g
            .probing
            .as_ref()
            .map(|p| p.prober.fdt().current().as_millis() as u64),
        failback: d.config.failback,
        n_buckets: g.cfg.buckets,
        hash_seed: g.seed,
        members,
        addresses,
        attachments: attachments(d, g),
    }
}

/// What is attached for the group, as the pinned links say (the truth in the kernel, not
/// what ipmpd meant to do).
fn attachments(d: &Daemon, g: &GroupRt) -> Vec<Attachment> {
    use ipmp_common::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_TC_MEMBER, PROG_XDP_MEMBER};
    let pin_dir = d.dataplane.pin_dir();
    let mut wanted = vec![(
        g.cfg.name.clone(),
        "tc_egress",
        "tcx-egress",
        PROG_TC_EGRESS,
        String::new(),
    )];
    for m in &g.members {
        if m.xdp_mode != crate::dataplane::XdpAttachMode::Off {
            wanted.push((
                m.name.clone(),
                "xdp",
                "xdp",
                PROG_XDP_MEMBER,
                m.xdp_mode.name().to_string(),
            ));
        }
        wanted.push((
            m.name.clone(),
            "tc_ingress",
            "tcx-ingress",
            PROG_TC_INGRESS,
            String::new(),
        ));
        wanted.push((
            m.name.clone(),
            "tc_member",
            "tcx-egress",
            PROG_TC_MEMBER,
            String::new(),
        ));
    }
    wanted
        .into_iter()
        .filter_map(|(interface, what, hook, program, mode)| {
            let pin = crate::dataplane::loader::link_pin(pin_dir, &interface, what);
            let (link_id, prog_id) = crate::dataplane::loader::pinned_link_ids(&pin)?;
            Some(Attachment {
                interface,
                hook: hook.to_string(),
                mode,
                program: program.to_string(),
                link_id,
                prog_id,
                pin: pin.display().to_string(),
            })
        })
        .collect()
}
