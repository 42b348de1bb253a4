//! The data plane a group should have, from its state machine: what the writer applies.

use std::net::IpAddr;

use ipmp_common::{AddrKey, TARGET_F_NEIGH};

use super::state::GroupRt;
use crate::{
    dataplane::{DesiredGroup, DesiredMember, XdpAttachMode},
    probe_io::GroupProbing,
};

/// The desired data plane of group `g` (`ring_ok`: probe replies may stop at the ring).
pub(super) fn desired_group(g: &GroupRt, ring_ok: bool) -> DesiredGroup {
    let ifindex_of = |m: usize| g.members.get(m).map_or(0, |m| m.ifindex);
    let cast = g.fsm.cast();
    let members = g
        .members
        .iter()
        .enumerate()
        .map(|(mi, m)| {
            // ARP sender: a data address bound here, else the test address, else 0.0.0.0.
            let bound_v4 =
                g.cfg
                    .data_addresses
                    .iter()
                    .enumerate()
                    .find_map(|(ai, p)| match p.addr {
                        IpAddr::V4(v4) if g.fsm.binding(ai) == Some(mi) => Some(v4),
                        _ => None,
                    });
            let test_v4 = g.cfg.members.get(mi).and_then(|c| match c.test_address {
                Some(p) => match p.addr {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                },
                None => None,
            });
            let arp_src = bound_v4
                .or(test_v4)
                .map_or(0, |a| u32::from_ne_bytes(a.octets()));
            DesiredMember {
                ifindex: m.ifindex,
                stats_slot: m.stats_slot,
                active: g.fsm.member(mi).active,
                cast: cast == Some(mi),
                xdp: m.xdp_mode != XdpAttachMode::Off,
                mac: m.mac,
                arp_src,
                test_addresses: g
                    .cfg
                    .members
                    .get(mi)
                    .and_then(|c| c.test_address)
                    .map(|p| AddrKey::from(p.addr))
                    .into_iter()
                    .collect(),
                targets: g
                    .probing
                    .as_ref()
                    .map(|p| p.neigh_targets(mi))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (AddrKey::from(t), TARGET_F_NEIGH))
                    .collect(),
            }
        })
        .collect();
    let addresses = g
        .cfg
        .data_addresses
        .iter()
        .enumerate()
        .map(|(ai, p)| {
            (
                AddrKey::from(p.addr),
                g.fsm.binding(ai).map_or(0, ifindex_of),
            )
        })
        .collect();
    DesiredGroup {
        ifindex: g.ifindex,
        rx_ifindex: g.peer_ifindex,
        mac: g.mac,
        slot: g.slot,
        seed: g.seed,
        failed: g.fsm.state() == crate::group::GroupState::Failed,
        buckets: g
            .fsm
            .buckets()
            .slots()
            .iter()
            .map(|s| s.map_or(0, ifindex_of))
            .collect(),
        cast: cast
            .and_then(|c| g.members.get(c))
            .map(|m| (m.ifindex, m.mac)),
        members,
        addresses,
        echo_off: !g.cfg.xdp_echo,
        // Echo replies reach the prober through the ring alone (with XDP's timestamp) while
        // the ring is read; a full ring passes them to the sockets all the same.
        probe_ring_only: ring_ok && g.probing.as_ref().is_some_and(GroupProbing::has_echo),
    }
}
