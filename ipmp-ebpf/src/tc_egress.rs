//! TCX egress on an IPMP interface: spreads flows over the group's active members.
//!
//! Unicast: flow hash → bucket → member, next hop from `bpf_fib_lookup` on the IPMP interface,
//! then the frame addressed to the next hop's MAC when the member's neighbour entry is
//! confirmed (`bpf_redirect`), else `bpf_redirect_neigh(member, next hop)`. The whole path is
//! remembered per flow (`path`): an established flow's packet takes it with one lookup.
//! Broadcast and multicast leave through the cast member with its MAC as the source.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::TC_ACT_SHOT, helpers::generated::bpf_redirect, macros::classifier,
    programs::TcContext,
};
use ipmp_common::{
    GroupInfo, MEMBER_F_ACTIVE, MemberInfo, ROUTE_F_NEIGH, Reason, RouteEntry, RouteKey4,
    RouteKey6, STATS_SLOT_UNKNOWN, bucket_index, bucket_of, flow_hash,
    packet::{ETH_ALEN, ETH_DST, ETH_HLEN, ETH_PROTO, ETH_SRC},
};

use crate::{
    fib::{known_neighbour, next_hop},
    frame::{Bytes, Frame as _, Tc},
    maps::{Exit, IPMP_BUCKETS, IPMP_GROUPS, IPMP_MEMBERS, Verdict, zero},
    parse::{Flow, FlowError, be16, head_bytes, is_group_mac, tc_flow},
    path::{self, RouteKey},
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
    let eth: [u8; ETH_HLEN] =
        head_bytes(ctx, 0).ok_or_else(|| group_exit(ifindex, Reason::TxMalformed))?;
    let ethertype = be16([eth[ETH_PROTO], eth[ETH_PROTO + 1]]);
    if ethertype != ipmp_common::packet::ETH_P_IP && ethertype != ipmp_common::packet::ETH_P_IPV6 {
        return Err(group_exit(ifindex, Reason::TxNotIp));
    }
    if is_group_mac(eth[ETH_DST]) {
        return cast(ctx, &group(ifindex)?, false);
    }
    let flow = match tc_flow(ctx, ethertype) {
        Ok(flow) => flow,
        Err(FlowError::NotIp) => return Err(group_exit(ifindex, Reason::TxNotIp)),
        Err(FlowError::Malformed) => return Err(group_exit(ifindex, Reason::TxMalformed)),
    };
    // On a NOARP interface the kernel gives broadcasts the interface's own (unicast) MAC, and
    // the FIB would send 255.255.255.255 to the default gateway: send it as a broadcast.
    if flow.key.ip_version == 4 && flow.key.dst[0] == u32::MAX {
        return cast(ctx, &group(ifindex)?, true);
    }
    // Each family's paths are in a map of its own (IPv4's key is shorter).
    if flow.key.ip_version == 4 {
        route::<RouteKey4>(ctx, ifindex, &flow)
    } else {
        route::<RouteKey6>(ctx, ifindex, &flow)
    }
}

/// Sends a unicast flow's frame along its remembered path, or finds the path the full way
/// and remembers it.
#[inline(always)]
fn route<K: RouteKey>(ctx: &TcContext, ifindex: u32, flow: &Flow) -> Result<Verdict<i32>, Exit> {
    let generation = path::generation();
    let mut key = MaybeUninit::<K>::uninit();
    let key = K::of(&mut key, ifindex, flow);
    // The one path entry built on the stack, by whichever way below needs one.
    let mut fresh = MaybeUninit::<RouteEntry>::uninit();
    if let Some(generation) = generation
        && let Some(entry) = path::remembered(key, generation)
    {
        // SAFETY: a map value, valid for the program's run.
        let route = unsafe { &mut *entry };
        let epoch = path::neigh_epoch();
        if route.flags & ROUTE_F_NEIGH == 0 {
            // Unconfirmed: looked for once per neighbour epoch, which ipmpd advances after it
            // copies a new neighbour (the epoch is read before the lookup, so a neighbour
            // copied meanwhile is looked for again on the next packet).
            if route.neigh_epoch == epoch {
                return send(ctx, route, false);
            }
            let Some(mac) = known_neighbour(route.member_ifindex, &path::next_hop(route)) else {
                // A racing CPU's older epoch here costs one more lookup, nothing else.
                route.neigh_epoch = epoch;
                return send(ctx, route, false);
            };
            // Confirmed since: remembered with its MAC from now on.
            let fresh = fresh.write(*route);
            path::confirm(fresh, mac);
            path::remember(key, fresh);
            return send(ctx, fresh, true);
        }
        // A confirmed neighbour is marked used once per neighbour epoch.
        if route.neigh_epoch != epoch {
            if known_neighbour(route.member_ifindex, &path::next_hop(route)).is_none() {
                // Gone from IPMP_NEIGHS (ipmpd retires the paths through it right after):
                // this frame goes through the kernel's neighbour code.
                return send(ctx, route, false);
            }
            // Other CPUs can only store the same epoch.
            route.neigh_epoch = epoch;
        }
        return send(ctx, route, true);
    }
    // Zeroed only here: the remembered path above pays no stores for it.
    let fresh = zero(&mut fresh);
    look_up(ctx, ifindex, flow, fresh)?;
    // Without a generation nothing follows routes, neighbours and tables: remember nothing.
    let Some(generation) = generation else {
        return send(ctx, fresh, false);
    };
    fresh.generation = generation;
    let epoch = path::neigh_epoch();
    match known_neighbour(fresh.member_ifindex, &path::next_hop(fresh)) {
        Some(mac) => path::confirm(fresh, mac),
        None => fresh.neigh_epoch = epoch,
    }
    path::remember(key, fresh);
    send(ctx, fresh, fresh.flags & ROUTE_F_NEIGH != 0)
}

/// The flow's path the full way into `route` (zeroed): its group, bucket and member, and the
/// FIB's next hop; of no generation, its neighbour unconfirmed.
#[inline(always)]
fn look_up(ctx: &TcContext, ifindex: u32, flow: &Flow, route: &mut RouteEntry) -> Result<(), Exit> {
    let group = group(ifindex)?;
    let (member_ifindex, member) = pick_member(ifindex, &group, flow)?;
    let next_hop = next_hop(ctx, ifindex, flow).map_err(|r| Exit::new(group.stats_slot, r))?;
    path::fill(route, member_ifindex, &member, &next_hop);
    Ok(())
}

/// Sends the frame along `route`: addressed by the program and `bpf_redirect` when
/// `confirmed`, else `bpf_redirect_neigh`.
#[inline(always)]
fn send(ctx: &TcContext, route: &RouteEntry, confirmed: bool) -> Result<Verdict<i32>, Exit> {
    let slot = route.member_slot;
    Tc(ctx).mark_sent(path::member_mac(route));
    let action = if confirmed {
        Tc(ctx)
            .store(ETH_DST, &Bytes(route.macs))
            .map_err(|()| Exit::new(slot, Reason::TxError))?;
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(route.member_ifindex, 0) }
    } else {
        path::next_hop(route).redirect_neigh(route.member_ifindex)
    };
    Ok(Verdict::new(action as i32, slot, Reason::TxUnicast))
}

/// The group of IPMP interface `ifindex`.
#[inline(always)]
fn group(ifindex: u32) -> Result<GroupInfo, Exit> {
    // SAFETY: a copy is taken at once; a concurrent update replaces the element under RCU.
    match unsafe { IPMP_GROUPS.get(ifindex) } {
        Some(g) => Ok(*g),
        None => Err(Exit::new(STATS_SLOT_UNKNOWN, Reason::TxNoGroup)),
    }
}

/// An error exit counted for the group of `ifindex` (or as having none).
#[inline(always)]
fn group_exit(ifindex: u32, reason: Reason) -> Exit {
    match group(ifindex) {
        Ok(g) => Exit::new(g.stats_slot, reason),
        Err(exit) => exit,
    }
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
