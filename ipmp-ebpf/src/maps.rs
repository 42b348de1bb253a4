//! Every map of the data plane, in one place. ipmpd pins them under /sys/fs/bpf/ipmp/; their
//! names are constants in ipmp-common (`MAP_*`).

use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use ipmp_common::{
    AddrInfo, AddrKey, BUCKET_ENTRIES, Counter, GroupInfo, MAX_ADDRS, MAX_GROUPS, MAX_MEMBERS,
    MAX_NEIGHS, MAX_ROUTES, MAX_TARGETS, MAX_TESTADDRS, MemberInfo, NeighEntry, NeighKey,
    PROBE_RING_BYTES, ProbeConfig, ProbeEvent, ROUTE_GEN_ENTRIES, RouteEntry, RouteKey4, RouteKey6,
    STATS_ENTRIES, TargetInfo, TargetKey, TestAddrInfo,
};

/// `BPF_F_NO_PREALLOC`: a replaced hash value is freed after an RCU grace period, so a reader
/// never sees it half-rewritten (with preallocation the old element can be reused at once).
const NO_PREALLOC: usize = 1;

/// Group state by IPMP interface ifindex: bucket half in use, cast member, hash seed.
#[btf_map]
pub static IPMP_GROUPS: HashMap<u32, GroupInfo, { MAX_GROUPS as usize }, NO_PREALLOC> =
    HashMap::new();

/// Member state by member ifindex: group, active/cast flags, MAC, ARP sender override.
#[btf_map]
pub static IPMP_MEMBERS: HashMap<u32, MemberInfo, { MAX_MEMBERS as usize }, NO_PREALLOC> =
    HashMap::new();

/// Bucket tables: per group two halves of MAX_BUCKETS member ifindexes (double buffer).
#[btf_map]
pub static IPMP_BUCKETS: Array<u32, { BUCKET_ENTRIES as usize }> = Array::new();

/// Data addresses: the group that holds each and the member bound to it (answers ARP/NDP).
#[btf_map]
pub static IPMP_ADDRS: HashMap<AddrKey, AddrInfo, { MAX_ADDRS as usize }, NO_PREALLOC> =
    HashMap::new();

/// Per-CPU packet/byte counters, indexed by `stats_index(slot, reason)`.
#[btf_map]
pub static IPMP_STATS: PerCpuArray<Counter, { STATS_ENTRIES as usize }> = PerCpuArray::new();

/// Test addresses: the member each is configured on (XDP answers echo requests for it there).
#[btf_map]
pub static IPMP_TESTADDRS: HashMap<AddrKey, TestAddrInfo, { MAX_TESTADDRS as usize }, NO_PREALLOC> =
    HashMap::new();

/// Probe targets per member; ARP/NDP-probed ones have their replies timestamped.
#[btf_map]
pub static IPMP_TARGETS: HashMap<TargetKey, TargetInfo, { MAX_TARGETS as usize }, NO_PREALLOC> =
    HashMap::new();

/// The daemon's probe echo id and cookie (one entry, index 0).
#[btf_map]
pub static IPMP_CONFIG: Array<ProbeConfig, 1> = Array::new();

/// Probe replies timestamped at XDP, read by the prober.
#[btf_map]
pub static IPMP_PROBES: RingBuf<ProbeEvent, { PROBE_RING_BYTES as usize }> = RingBuf::new();

/// `BPF_F_NO_COMMON_LRU`: each CPU keeps its own LRU list, so that a storm of new flows (the
/// SYN-ACKs to a SYN flood's spoofed sources are each one) inserts without a shared lock.
const NO_COMMON_LRU: usize = 2;

/// The remembered paths of flows leaving the IPMP interfaces, by family: member, next hop,
/// MACs (`path`).
pub type Routes<K> = LruHashMap<K, RouteEntry, { MAX_ROUTES as usize }, NO_COMMON_LRU>;

#[btf_map]
pub static IPMP_ROUTES4: Routes<RouteKey4> = LruHashMap::new();

#[btf_map]
pub static IPMP_ROUTES6: Routes<RouteKey6> = LruHashMap::new();

/// `ROUTE_GEN`: the generation `IPMP_ROUTES4`/`IPMP_ROUTES6` entries must carry to be used;
/// ipmpd advances it on every route and rule change it is told of and on every write that can
/// move a flow, and `ROUTE_GEN_OFF` (no daemon following) turns the remembering off. `NEIGH_EPOCH`: see `path`.
#[btf_map]
pub static IPMP_ROUTE_GEN: Array<u64, { ROUTE_GEN_ENTRIES as usize }> = Array::new();

/// MACs of the members' confirmed neighbours, kept by ipmpd from neighbour events; used while
/// remembering is on (`IPMP_ROUTE_GEN`).
#[btf_map]
pub static IPMP_NEIGHS: HashMap<NeighKey, NeighEntry, { MAX_NEIGHS as usize }, NO_PREALLOC> =
    HashMap::new();

/// Counts one packet of `len` bytes for `slot` and `reason`.
#[inline(always)]
pub fn count(slot: u32, reason: ipmp_common::Reason, len: u32) {
    let index = ipmp_common::stats_index(slot, reason);
    if let Some(counter) = IPMP_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, valid for the program's run; no other writer on this CPU.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(len);
        }
    }
}

/// What a program decided for one packet: the action it returns and the counter it bumps.
#[derive(Clone, Copy)]
pub struct Verdict<A> {
    pub action: A,
    pub slot: u32,
    pub reason: ipmp_common::Reason,
}

impl<A> Verdict<A> {
    #[inline(always)]
    pub const fn new(action: A, slot: u32, reason: ipmp_common::Reason) -> Self {
        Self {
            action,
            slot,
            reason,
        }
    }

    /// Counts the packet (`len` bytes) and returns the action.
    #[inline(always)]
    pub fn finish(self, len: u32) -> A {
        count(self.slot, self.reason, len);
        self.action
    }
}

/// A packet that takes a program's error exit: its counter slot and reason. The entry point
/// picks the action (TC egress drops, the member programs pass).
#[derive(Clone, Copy)]
pub struct Exit {
    pub slot: u32,
    pub reason: ipmp_common::Reason,
}

impl Exit {
    #[inline(always)]
    pub const fn new(slot: u32, reason: ipmp_common::Reason) -> Self {
        Self { slot, reason }
    }
}

/// Zeroes `value` in place with volatile 32-bit stores and returns it initialised. A plain
/// zeroing (`mem::zeroed`, or a run of zero bytes in a constructor) becomes an `llvm.memset`
/// that bpf-linker's in-order memcpy expansion does not inline: it turns into a call to a
/// byte-loop `memset` subprogram. Volatile stores cannot be merged back into one.
#[inline(always)]
pub fn zero<T: Copy>(value: &mut core::mem::MaybeUninit<T>) -> &mut T {
    const {
        assert!(size_of::<T>().is_multiple_of(4) && align_of::<T>() >= 4);
    }
    let words = value.as_mut_ptr().cast::<u32>();
    let mut i = 0;
    while i < size_of::<T>() / 4 {
        // SAFETY: in bounds and aligned (checked above).
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
    // SAFETY: every byte is written; T is plain data (map keys and helper argument structs).
    unsafe { value.assume_init_mut() }
}

/// `TargetKey` of an IPv4 target without the `memset` (see [`zero`]).
#[inline(always)]
pub fn target_key_v4(ifindex: u32, addr: [u8; 4]) -> TargetKey {
    let mut key = core::mem::MaybeUninit::<TargetKey>::uninit();
    let k = zero(&mut key);
    k.ifindex = ifindex;
    k.family = ipmp_common::FAMILY_V4;
    k.addr[..4].copy_from_slice(&addr);
    *k
}

/// `AddrKey::v4` without the `memset` (see [`zero`]).
#[inline(always)]
pub fn addr_key_v4(addr: [u8; 4]) -> AddrKey {
    let mut key = core::mem::MaybeUninit::<AddrKey>::uninit();
    let k = zero(&mut key);
    k.family = ipmp_common::FAMILY_V4;
    k.addr[..4].copy_from_slice(&addr);
    *k
}
