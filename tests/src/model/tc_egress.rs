//! `ipmp_tc_egress` on an IPMP interface: IP unicast goes to the member the flow's bucket
//! names (which must be an active member of this group) through `bpf_redirect_neigh` to the
//! next hop from `bpf_fib_lookup`; broadcast and multicast (and IPv4 255.255.255.255) leave
//! through the cast member with its MAC as source; everything else is dropped, each case
//! counted under its reason (README "Counters").

use ipmp_common::{
    FlowKey, GroupInfo, MEMBER_F_ACTIVE, Reason, STATS_SLOT_UNKNOWN, bucket_index, bucket_of,
    flow_hash,
    packet::{ETH_P_IP, ETH_P_IPV6},
};

use super::{
    Bytes, Fib, Outcome, Prediction, TC_ACT_REDIRECT, TC_ACT_SHOT, World, flow::flow_key,
    is_group_mac,
};

/// The prediction for a frame sent through IPMP interface `ifindex`.
pub fn predict(w: &World, ifindex: u32, frame: &[u8]) -> Prediction {
    if super::skb_test_run_refuses(frame) {
        return Prediction::Refused;
    }
    let f = Bytes(frame);
    let drop = |slot: u32, reason: Reason| Outcome {
        verdict: TC_ACT_SHOT,
        output: frame.to_vec(),
        count: Some((slot, reason)),
        event: None,
    };
    let Some(group) = w.groups.get(&ifindex) else {
        return Prediction::one(drop(STATS_SLOT_UNKNOWN, Reason::TxNoGroup));
    };
    let slot = group.stats_slot;
    let ethertype = super::be16(frame, 12);
    if ethertype != ETH_P_IP && ethertype != ETH_P_IPV6 {
        return Prediction::one(drop(slot, Reason::TxNotIp));
    }
    if is_group_mac(frame[0]) {
        return Prediction::one(cast(w, group, frame, false));
    }
    let Ok(key) = flow_key(f, ethertype == ETH_P_IPV6) else {
        return Prediction::one(drop(slot, Reason::TxMalformed));
    };
    if key.ip_version == 4 && key.dst[0] == u32::MAX {
        return Prediction::one(cast(w, group, frame, true));
    }
    let member = pick_member(w, ifindex, group, &key);
    let member_slot = match member {
        Ok(s) => s,
        Err(reason) => return Prediction::one(drop(slot, reason)),
    };
    let sent = Outcome {
        verdict: TC_ACT_REDIRECT,
        output: frame.to_vec(),
        count: Some((member_slot, Reason::TxUnicast)),
        event: None,
    };
    // A link-local IPv6 destination is on-link: no lookup.
    let dst = super::words_to_bytes(key.dst);
    let fib = if key.ip_version == 6 && dst[0] == 0xfe && dst[1] & 0xc0 == 0x80 {
        Fib::Found
    } else {
        w.routes.lookup(ifindex, &key)
    };
    match fib {
        Fib::Found => Prediction::one(sent),
        Fib::NoRoute => Prediction::one(drop(slot, Reason::TxNoRoute)),
        Fib::Unknown => Prediction::OneOf(vec![sent, drop(slot, Reason::TxNoRoute)]),
    }
}

/// Flow hash → bucket → member, which must be an active member of this group: its counter
/// slot.
fn pick_member(w: &World, ifindex: u32, group: &GroupInfo, key: &FlowKey) -> Result<u32, Reason> {
    if group.n_buckets == 0 {
        return Err(Reason::TxNoMember);
    }
    let bucket = bucket_of(flow_hash(key, group.seed), group.n_buckets);
    let index = bucket_index(group.slot, group.active_half, bucket).ok_or(Reason::TxBadEntry)?;
    let member = w.buckets.get(&index).copied().unwrap_or(0);
    if member == 0 {
        return Err(Reason::TxNoMember);
    }
    match w.members.get(&member) {
        Some(m) if m.group_ifindex == ifindex && m.flags & MEMBER_F_ACTIVE != 0 => Ok(m.stats_slot),
        _ => Err(Reason::TxBadEntry),
    }
}

/// Out of the cast member with its MAC as source (and broadcast as destination).
fn cast(w: &World, group: &GroupInfo, frame: &[u8], broadcast: bool) -> Outcome {
    let slot = group.stats_slot;
    let drop = |reason| Outcome {
        verdict: TC_ACT_SHOT,
        output: frame.to_vec(),
        count: Some((slot, reason)),
        event: None,
    };
    if group.cast_ifindex == 0 {
        return drop(Reason::TxNoMember);
    }
    let Some(member) = w.members.get(&group.cast_ifindex) else {
        return drop(Reason::TxBadEntry);
    };
    let mut output = frame.to_vec();
    if broadcast {
        output[..6].fill(0xff);
    }
    output[6..12].copy_from_slice(&group.cast_mac);
    Outcome {
        verdict: TC_ACT_REDIRECT,
        output,
        count: Some((member.stats_slot, Reason::TxCast)),
        event: None,
    }
}
