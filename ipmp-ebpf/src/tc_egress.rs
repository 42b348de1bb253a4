//! TCX egress on an IPMP interface: spreads flows over the group's active members.
//!
//! Unicast: flow hash → bucket → member, next hop from `bpf_fib_lookup` on the IPMP interface
//! (remembered per flow, see `fib`), then the frame addressed to the next hop's MAC when the
//! member's neighbour entry is confirmed (`bpf_redirect`), else `bpf_redirect_neigh(member,
//! next hop)`. Broadcast and multicast leave through the cast member with its MAC as the
//! source.

use core::mem::{MaybeUninit, size_of};

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, bpf_redir_neigh as RedirNeigh},
    helpers::generated::{bpf_redirect, bpf_redirect_neigh},
    macros::classifier,
    programs::TcContext,
};
use ipmp_common::{
    GroupInfo, MEMBER_F_ACTIVE, MemberInfo, Reason, STATS_SLOT_UNKNOWN, bucket_index, bucket_of,
    flow_hash,
    packet::{ETH_ALEN, ETH_DST, ETH_HLEN, ETH_PROTO, ETH_SRC},
};

use crate::{
    fib::{cached_next_hop, known_neighbour},
    frame::Tc,
    maps::{Exit, IPMP_BUCKETS, IPMP_GROUPS, IPMP_MEMBERS, Verdict, zero},
    parse::{Flow, FlowError, be16, head_bytes, is_group_mac, tc_flow},
};

#[classifier]
pub fn ipmp_tc_egress(ctx: TcContext) -> i32 {
    let len = ctx.len();
    match try_tc_egress(&ctx) {
        Ok(verdict) => verdict.finish(len),
        Err(exit) => Verdict::new(TC_ACT_SHOT as i32, exit.slot, exit.reason).finish(len),
    }
}

#[inline(always)]
fn try_tc_egress(ctx: &TcContext) -> Result<Verdict<i32>, Exit> {
    // SAFETY: the context pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: a copy is taken at once; a concurrent update replaces the element under RCU.
    let group: GroupInfo = match unsafe { IPMP_GROUPS.get(ifindex) } {
        Some(g) => *g,
        None => return Err(Exit::new(STATS_SLOT_UNKNOWN, Reason::TxNoGroup)),
    };
    let slot = group.stats_slot;
    let eth: [u8; ETH_HLEN] = head_bytes(ctx, 0).ok_or(Exit::new(slot, Reason::TxMalformed))?;
    let ethertype = be16([eth[ETH_PROTO], eth[ETH_PROTO + 1]]);
    if ethertype != ipmp_common::packet::ETH_P_IP && ethertype != ipmp_common::packet::ETH_P_IPV6 {
        return Err(Exit::new(slot, Reason::TxNotIp));
    }
    if is_group_mac(eth[ETH_DST]) {
        return cast(ctx, &group, false);
    }
    let flow = match tc_flow(ctx, ethertype) {
        Ok(flow) => flow,
        Err(FlowError::NotIp) => return Err(Exit::new(slot, Reason::TxNotIp)),
        Err(FlowError::Malformed) => return Err(Exit::new(slot, Reason::TxMalformed)),
    };
    // On a NOARP interface the kernel gives broadcasts the interface's own (unicast) MAC, and
    // the FIB would send 255.255.255.255 to the default gateway: send it as a broadcast.
    if flow.key.ip_version == 4 && flow.key.dst[0] == u32::MAX {
        return cast(ctx, &group, true);
    }
    let (member_ifindex, member) = pick_member(ifindex, &group, &flow)?;
    let mut nh = MaybeUninit::<RedirNeigh>::uninit();
    let nh = zero(&mut nh);
    let remembering =
        cached_next_hop(ctx, ifindex, &flow, nh).map_err(|reason| Exit::new(slot, reason))?;
    Tc(ctx).mark_sent(member.mac);
    let action = if remembering && let Some(mac) = known_neighbour(member_ifindex, nh) {
        let mut macs = [0u8; 2 * ETH_ALEN];
        macs[ETH_DST..ETH_DST + ETH_ALEN].copy_from_slice(&mac);
        macs[ETH_SRC..ETH_SRC + ETH_ALEN].copy_from_slice(&member.mac);
        ctx.store(ETH_DST, &macs, 0)
            .map_err(|_| Exit::new(slot, Reason::TxError))?;
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(member_ifindex, 0) }
    } else {
        // SAFETY: `nh` is a valid bpf_redir_neigh on the stack; the size matches it.
        unsafe { bpf_redirect_neigh(member_ifindex, nh, size_of::<RedirNeigh>() as i32, 0) }
    };
    Ok(Verdict::new(
        action as i32,
        member.stats_slot,
        Reason::TxUnicast,
    ))
}

/// Broadcast/multicast: out of the cast member, with its MAC as the source (and the
/// broadcast MAC as the destination when `broadcast`).
#[inline(always)]
fn cast(ctx: &TcContext, group: &GroupInfo, broadcast: bool) -> Result<Verdict<i32>, Exit> {
    let slot = group.stats_slot;
    let cast = group.cast_ifindex;
    if cast == 0 {
        return Err(Exit::new(slot, Reason::TxNoMember));
    }
    // SAFETY: copied at once.
    let member_slot = match unsafe { IPMP_MEMBERS.get(cast) } {
        Some(m) => m.stats_slot,
        None => return Err(Exit::new(slot, Reason::TxBadEntry)),
    };
    let mut macs = [0xffu8; 2 * ETH_ALEN];
    macs[ETH_SRC..ETH_SRC + ETH_ALEN].copy_from_slice(&group.cast_mac);
    let stored = if broadcast {
        ctx.store(ETH_DST, &macs, 0)
    } else {
        ctx.store(ETH_SRC, &group.cast_mac, 0)
    };
    stored.map_err(|_| Exit::new(slot, Reason::TxError))?;
    Tc(ctx).mark_sent(group.cast_mac);
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect(cast, 0) };
    Ok(Verdict::new(action as i32, member_slot, Reason::TxCast))
}

/// The member that carries this flow: flow hash → bucket → ifindex, which must be an active
/// member of this group. Returns its ifindex and entry.
#[inline(always)]
fn pick_member(ifindex: u32, group: &GroupInfo, flow: &Flow) -> Result<(u32, MemberInfo), Exit> {
    let slot = group.stats_slot;
    let n = group.n_buckets;
    if n == 0 {
        return Err(Exit::new(slot, Reason::TxNoMember));
    }
    let bucket = bucket_of(flow_hash(&flow.key, group.seed), n);
    let index = bucket_index(group.slot, group.active_half, bucket)
        .ok_or(Exit::new(slot, Reason::TxBadEntry))?;
    let member_ifindex = match IPMP_BUCKETS.get(index) {
        Some(&m) => m,
        None => return Err(Exit::new(slot, Reason::TxBadEntry)),
    };
    if member_ifindex == 0 {
        return Err(Exit::new(slot, Reason::TxNoMember));
    }
    // SAFETY: copied at once.
    let member = match unsafe { IPMP_MEMBERS.get(member_ifindex) } {
        Some(m) => *m,
        None => return Err(Exit::new(slot, Reason::TxBadEntry)),
    };
    if member.group_ifindex != ifindex || member.flags & MEMBER_F_ACTIVE == 0 {
        return Err(Exit::new(slot, Reason::TxBadEntry));
    }
    Ok((member_ifindex, member))
}
