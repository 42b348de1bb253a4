//! The next hop of an outgoing flow, as the routes on the IPMP interface say
//! (`bpf_fib_lookup`), for `bpf_redirect_neigh`. Used by the TC egress programs (the IPMP
//! interface's and the members') and by the benchmark's reference program, which does only
//! this.
//!
//! The IPMP interface's program remembers each flow's answer in `IPMP_ROUTES`
//! ([`cached_next_hop`]): the lookup walks the policy rules and the FIB on every packet and
//! is most of the program's cost, while its answer changes only with the routes and rules.
//! An entry keeps the generation of `IPMP_ROUTE_GEN` it was looked up under; ipmpd advances
//! the generation on every route and rule change it is told of, which retires every entry at
//! once. The key is everything the lookup is given, so a hit is the lookup's own answer.
//!
//! While remembering is on, a next hop whose MAC ipmpd has copied from the member's confirmed
//! neighbour entry (`IPMP_NEIGHS`, [`known_neighbour`]) is addressed by the program itself and
//! sent with `bpf_redirect`; any other goes through `bpf_redirect_neigh` and the kernel's
//! neighbour code (resolution, queueing of the first packets, revalidation).

use core::mem::{MaybeUninit, size_of};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_OUTPUT, BPF_FIB_LOOKUP_SKIP_NEIGH, bpf_fib_lookup as FibParams,
        bpf_redir_neigh as RedirNeigh,
    },
    helpers::generated::bpf_fib_lookup,
    programs::TcContext,
};
use ipmp_common::{FAMILY_V4, FAMILY_V6, NeighKey, ROUTE_GEN_OFF, Reason, RouteEntry, RouteKey};

use crate::{
    maps::{IPMP_NEIGHS, IPMP_ROUTE_GEN, IPMP_ROUTES, zero},
    parse::Flow,
};

/// IPv6 link-local unicast (fe80::/10): the kernel's FIB lookup refuses these
/// (`rt6_need_strict`), and they are on-link by definition.
#[inline(always)]
const fn is_v6_link_local(first_word: u32) -> bool {
    let b = first_word.to_ne_bytes();
    b[0] == 0xfe && b[1] & 0xc0 == 0x80
}

/// [`next_hop`], answered from `IPMP_ROUTES` when the flow's entry is of the current
/// generation, and remembered there when it is not. `Ok(true)`: remembering is on (ipmpd
/// follows routes and neighbours, so `IPMP_NEIGHS` may be used too).
#[inline(always)]
pub fn cached_next_hop(
    ctx: &TcContext,
    ifindex: u32,
    flow: &Flow,
    nh: &mut RedirNeigh,
) -> Result<bool, Reason> {
    let generation = IPMP_ROUTE_GEN.get(0).copied().unwrap_or(ROUTE_GEN_OFF);
    if generation & ROUTE_GEN_OFF != 0 {
        return next_hop(ctx, ifindex, flow, nh).map(|()| false);
    }
    let f = &flow.key;
    let mut key = MaybeUninit::<RouteKey>::uninit();
    let key = zero(&mut key);
    key.src = f.src;
    key.dst = f.dst;
    key.sport = f.sport;
    key.dport = f.dport;
    key.ifindex = ifindex;
    key.proto = f.proto;
    key.ip_version = f.ip_version;
    key.tos = flow.tos;
    key.flowinfo = flow.flowinfo;
    // SAFETY: copied at once; an LRU entry replaced or evicted meanwhile is freed after RCU.
    if let Some(entry) = unsafe { IPMP_ROUTES.get(&*key) }
        && entry.generation == generation
    {
        let entry = *entry;
        nh.nh_family = entry.family;
        if entry.family == FAMILY_V6 {
            nh.__bindgen_anon_1.ipv6_nh = entry.nexthop;
        } else {
            nh.__bindgen_anon_1.ipv4_nh = entry.nexthop[0];
        }
        return Ok(true);
    }
    next_hop(ctx, ifindex, flow, nh)?;
    let mut entry = MaybeUninit::<RouteEntry>::uninit();
    let entry = zero(&mut entry);
    entry.generation = generation;
    entry.family = nh.nh_family;
    entry.nexthop = nexthop_words(nh);
    // A full map evicts its least recently used entry; a failed insert only means the next
    // packet looks up again.
    let _ = IPMP_ROUTES.insert(&*key, &*entry, 0);
    Ok(true)
}

/// The MAC of next hop `nh` on member `ifindex`, when its kernel holds the neighbour
/// confirmed (`IPMP_NEIGHS`); marks the entry used.
#[inline(always)]
pub fn known_neighbour(ifindex: u32, nh: &RedirNeigh) -> Option<[u8; 6]> {
    let mut key = MaybeUninit::<NeighKey>::uninit();
    let key = zero(&mut key);
    key.ifindex = ifindex;
    key.family = nh.nh_family;
    for (i, word) in nexthop_words(nh).iter().enumerate() {
        key.addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    let entry = IPMP_NEIGHS.get_ptr_mut(&*key)?;
    // SAFETY: a map value, valid for the program's run (freed after RCU when replaced).
    unsafe {
        if (*entry).used == 0 {
            (*entry).used = 1;
        }
        Some((*entry).mac)
    }
}

/// The next hop's address as four words in network byte order (IPv4 in the first).
#[inline(always)]
fn nexthop_words(nh: &RedirNeigh) -> [u32; 4] {
    // SAFETY: whoever filled `nh` wrote the member of the union that `nh_family` names.
    unsafe {
        if nh.nh_family == FAMILY_V6 {
            nh.__bindgen_anon_1.ipv6_nh
        } else {
            [nh.__bindgen_anon_1.ipv4_nh, 0, 0, 0]
        }
    }
}

/// Next hop of the flow into `nh`, as the routes on the IPMP interface say: the gateway for
/// off-link destinations, the destination itself on-link. The error says why there is none.
#[inline(always)]
pub fn next_hop(
    ctx: &TcContext,
    ifindex: u32,
    flow: &Flow,
    nh: &mut RedirNeigh,
) -> Result<(), Reason> {
    let key = &flow.key;
    if key.ip_version == 6 && is_v6_link_local(key.dst[0]) {
        nh.nh_family = FAMILY_V6;
        nh.__bindgen_anon_1.ipv6_nh = key.dst;
        return Ok(());
    }
    let mut params = MaybeUninit::<FibParams>::uninit();
    let params = zero(&mut params);
    params.family = if key.ip_version == 4 {
        FAMILY_V4
    } else {
        FAMILY_V6
    } as u8;
    params.l4_protocol = key.proto;
    params.sport = key.sport;
    params.dport = key.dport;
    // tot_len stays 0: the kernel then checks the skb against the MTU itself and lets GSO
    // packets through, where a tot_len from the IP header of a GSO packet would exceed the
    // MTU and fail with FRAG_NEEDED.
    params.ifindex = ifindex;
    if key.ip_version == 4 {
        params.__bindgen_anon_2.tos = flow.tos;
        params.__bindgen_anon_3.ipv4_src = key.src[0];
        params.__bindgen_anon_4.ipv4_dst = key.dst[0];
    } else {
        params.__bindgen_anon_2.flowinfo = flow.flowinfo;
        params.__bindgen_anon_3.ipv6_src = key.src;
        params.__bindgen_anon_4.ipv6_dst = key.dst;
    }
    // OUTPUT: look up as the IPMP interface's own traffic (oif). SKIP_NEIGH (kernel 6.3): the
    // IPMP interface is NOARP, its neighbour entries mean nothing; bpf_redirect_neigh resolves
    // the next hop on the member.
    // SAFETY: `params` is a valid bpf_fib_lookup on the stack; the size matches it.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            params,
            size_of::<FibParams>() as i32,
            BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH,
        )
    };
    // NO_NEIGH also carries a resolved next hop (kernels that report it despite SKIP_NEIGH).
    // FWD_DISABLED: the lookup insists on forwarding being on for `params.ifindex`, even with
    // BPF_FIB_LOOKUP_OUTPUT (checked on 6.18).
    match rc {
        r if r == i64::from(BPF_FIB_LKUP_RET_SUCCESS)
            || r == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH) => {}
        r if r == i64::from(BPF_FIB_LKUP_RET_FWD_DISABLED) => return Err(Reason::TxFwdDisabled),
        _ => return Err(Reason::TxNoRoute),
    }
    // An IPv4 route may have an IPv6 gateway (RFC 5549): the lookup then says AF_INET6.
    if u32::from(params.family) == FAMILY_V6 {
        nh.nh_family = FAMILY_V6;
        // SAFETY: the kernel wrote the IPv6 next hop for an AF_INET6 result.
        nh.__bindgen_anon_1.ipv6_nh = unsafe { params.__bindgen_anon_4.ipv6_dst };
    } else {
        nh.nh_family = FAMILY_V4;
        // SAFETY: the kernel wrote the IPv4 next hop for an AF_INET result.
        nh.__bindgen_anon_1.ipv4_nh = unsafe { params.__bindgen_anon_4.ipv4_dst };
    }
    Ok(())
}
