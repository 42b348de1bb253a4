//! A flow's remembered path out of its IPMP interface (`IPMP_ROUTES4`, `IPMP_ROUTES6`): the
//! member its bucket names, the next hop `bpf_fib_lookup` gave on the IPMP interface and,
//! once the member's kernel holds that neighbour confirmed, both MACs. An established flow's packet then costs
//! one hash lookup and the MAC write instead of the group, bucket, member and neighbour
//! lookups, the flow hash and the FIB walk.
//!
//! An entry keeps the generation `IPMP_ROUTE_GEN[ROUTE_GEN]` had when it was made. ipmpd
//! advances the generation on every route or rule change it is told of, on every write to the
//! groups, members or bucket tables (a failover moves flows by advancing it right after the
//! bucket table's flip), and when a neighbour's MAC changes or its entry goes, which retires
//! every entry at once. The key is everything the FIB lookup is given (the flow hash reads a
//! subset of it), so a hit is what the full path would decide.
//!
//! The kernel does not see the program's frames as use of a neighbour: the program marks the
//! `IPMP_NEIGHS` entry used (`fib::known_neighbour`), and every second ipmpd reports marked
//! neighbours to the kernel as used, clears the marks and advances the neighbour epoch
//! (`IPMP_ROUTE_GEN[NEIGH_EPOCH]`). A remembered flow marks its neighbour once per epoch, not
//! per packet.

use core::mem::MaybeUninit;

use ipmp_common::{
    MemberInfo, NEIGH_EPOCH, ROUTE_F_NEIGH, ROUTE_GEN, ROUTE_GEN_OFF, RouteEntry, RouteKey4,
    RouteKey6,
    packet::{ETH_ALEN, ETH_DST, ETH_SRC},
};

use crate::{
    fib::NextHop,
    maps::{IPMP_ROUTE_GEN, IPMP_ROUTES4, IPMP_ROUTES6, Routes, zero},
    parse::Flow,
};

/// The route generation, or `None` while remembering is off (no ipmpd follows the routes).
#[inline(always)]
pub fn generation() -> Option<u64> {
    let generation = IPMP_ROUTE_GEN
        .get(ROUTE_GEN)
        .copied()
        .unwrap_or(ROUTE_GEN_OFF);
    (generation & ROUTE_GEN_OFF == 0).then_some(generation)
}

/// The current neighbour epoch.
#[inline(always)]
pub fn neigh_epoch() -> u64 {
    IPMP_ROUTE_GEN.get(NEIGH_EPOCH).copied().unwrap_or(0)
}

/// A key of a map of remembered paths: the family's own, built from a flow.
pub trait RouteKey: Sized + 'static {
    /// The map the key's paths are in.
    fn map() -> &'static Routes<Self>;

    /// The key of `flow` leaving IPMP interface `ifindex`, written into `key`.
    fn of<'a>(key: &'a mut MaybeUninit<Self>, ifindex: u32, flow: &Flow) -> &'a Self;
}

impl RouteKey for RouteKey4 {
    #[inline(always)]
    fn map() -> &'static Routes<Self> {
        &IPMP_ROUTES4
    }

    #[inline(always)]
    fn of<'a>(key: &'a mut MaybeUninit<Self>, ifindex: u32, flow: &Flow) -> &'a Self {
        let f = &flow.key;
        let key = zero(key);
        key.src = f.src[0];
        key.dst = f.dst[0];
        key.sport = f.sport;
        key.dport = f.dport;
        key.ifindex = ifindex;
        key.proto = f.proto;
        key.tos = flow.tos;
        key
    }
}

impl RouteKey for RouteKey6 {
    #[inline(always)]
    fn map() -> &'static Routes<Self> {
        &IPMP_ROUTES6
    }

    #[inline(always)]
    fn of<'a>(key: &'a mut MaybeUninit<Self>, ifindex: u32, flow: &Flow) -> &'a Self {
        let f = &flow.key;
        let key = zero(key);
        key.src = f.src;
        key.dst = f.dst;
        key.sport = f.sport;
        key.dport = f.dport;
        key.ifindex = ifindex;
        key.proto = f.proto;
        key.flowinfo = flow.flowinfo;
        key
    }
}

/// The flow's path if it was remembered under `generation`.
#[inline(always)]
pub fn remembered<K: RouteKey>(key: &K, generation: u64) -> Option<*mut RouteEntry> {
    let entry = K::map().get_ptr_mut(key)?;
    // SAFETY: a map value, valid for the program's run (an LRU entry replaced or evicted
    // meanwhile is freed after RCU).
    (unsafe { (*entry).generation } == generation).then_some(entry)
}

/// Remembers `entry` as the flow's path. A full map evicts its least recently used entry; a
/// failed insert only means the next packet takes the full path again.
#[inline(always)]
pub fn remember<K: RouteKey>(key: &K, entry: &RouteEntry) {
    let _ = K::map().insert(key, entry, 0);
}

/// Fills `route` (zeroed) with a path through member `ifindex` (`member`) to `next_hop`, of
/// no generation, its neighbour unconfirmed.
#[inline(always)]
pub fn fill(route: &mut RouteEntry, ifindex: u32, member: &MemberInfo, next_hop: &NextHop) {
    route.family = next_hop.family;
    route.nexthop = next_hop.addr;
    route.member_ifindex = ifindex;
    route.member_slot = member.stats_slot;
    route.macs[ETH_SRC..ETH_SRC + ETH_ALEN].copy_from_slice(&member.mac);
}

/// `route` with its next hop confirmed at `mac`, marked used in this neighbour epoch.
#[inline(always)]
pub fn confirm(route: &mut RouteEntry, mac: [u8; ETH_ALEN]) {
    route.flags |= ROUTE_F_NEIGH;
    route.macs[ETH_DST..ETH_DST + ETH_ALEN].copy_from_slice(&mac);
    route.neigh_epoch = neigh_epoch();
}

/// The next hop `route` leads to.
#[inline(always)]
pub const fn next_hop(route: &RouteEntry) -> NextHop {
    NextHop {
        family: route.family,
        addr: route.nexthop,
    }
}

/// The MAC of the member `route` leaves through.
#[inline(always)]
pub fn member_mac(route: &RouteEntry) -> [u8; ETH_ALEN] {
    let mut mac = [0u8; ETH_ALEN];
    mac.copy_from_slice(&route.macs[ETH_SRC..ETH_SRC + ETH_ALEN]);
    mac
}
