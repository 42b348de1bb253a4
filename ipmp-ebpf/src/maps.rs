//! Every map of the data plane, in one place. ipmpd pins them under /sys/fs/bpf/ipmp/; their
//! names are constants in ipmp-common (`MAP_*`).

use aya_ebpf::{
    btf_maps::{Array, HashMap, PerCpuArray},
    macros::btf_map,
};
use ipmp_common::{
    AddrInfo, AddrKey, BUCKET_ENTRIES, Counter, GroupInfo, MAX_ADDRS, MAX_GROUPS, MAX_MEMBERS,
    MemberInfo, STATS_ENTRIES,
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
