//! The next hop of an outgoing flow, as the routes on the IPMP interface say
//! (`bpf_fib_lookup`), for `bpf_redirect_neigh`. Used by the TC egress programs (the IPMP
//! interface's and the members') and by the benchmark's reference program, which does only
//! this.
//!
//! The IPMP interface's program remembers each flow's answer (`path`); a next hop whose MAC
//! ipmpd has copied from the member's confirmed neighbour entry (`IPMP_NEIGHS`,
//! [`known_neighbour`]) is then addressed by the program itself and sent with `bpf_redirect`;
//! any other goes through `bpf_redirect_neigh` and the kernel's neighbour code (resolution,
//! queueing of the first packets, revalidation).

use core::mem::{MaybeUninit, size_of};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_OUTPUT, BPF_FIB_LOOKUP_SKIP_NEIGH, bpf_fib_lookup as FibParams,
        bpf_redir_neigh as RedirNeigh,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect_neigh},
    programs::TcContext,
};
use ipmp_common::{FAMILY_V4, FAMILY_V6, NeighKey, Reason};

use crate::{
    maps::{IPMP_NEIGHS, zero},
    parse::Flow,
};

/// IPv6 link-local unicast (fe80::/10): the kernel's FIB lookup refuses these
/// (`rt6_need_strict`), and they are on-link by definition.
#[inline(always)]
const fn is_v6_link_local(first_word: u32) -> bool {
    let b = first_word.to_ne_bytes();
    b[0] == 0xfe && b[1] & 0xc0 == 0x80
}

/// A next hop: the gateway for off-link destinations, the destination itself on-link.
#[derive(Clone, Copy)]
pub struct NextHop {
    /// `FAMILY_V4` or `FAMILY_V6` (an IPv4 route may have an IPv6 gateway).
    pub family: u32,
    /// IPv4 in the first word (network byte order), IPv6 in all four.
    pub addr: [u32; 4],
}

impl NextHop {
    /// `bpf_redirect_neigh` of the frame out of `ifindex` to this next hop: the kernel's
    /// neighbour code resolves it, queues the first frames and fills in both MACs.
    #[inline(always)]
    pub fn redirect_neigh(&self, ifindex: u32) -> i64 {
        let mut nh = MaybeUninit::<RedirNeigh>::uninit();
        let nh = zero(&mut nh);
        nh.nh_family = self.family;
        if self.family == FAMILY_V6 {
            nh.__bindgen_anon_1.ipv6_nh = self.addr;
        } else {
            nh.__bindgen_anon_1.ipv4_nh = self.addr[0];
        }
        // SAFETY: `nh` is a valid bpf_redir_neigh on the stack; the size matches it.
        unsafe { bpf_redirect_neigh(ifindex, nh, size_of::<RedirNeigh>() as i32, 0) }
    }
}

/// The MAC of `next_hop` on member `ifindex`, when its kernel holds the neighbour confirmed
/// (`IPMP_NEIGHS`); marks the entry used.
#[inline(always)]
pub fn known_neighbour(ifindex: u32, next_hop: &NextHop) -> Option<[u8; 6]> {
    let mut key = MaybeUninit::<NeighKey>::uninit();
    let key = zero(&mut key);
    key.ifindex = ifindex;
    key.family = next_hop.family;
    for (i, word) in next_hop.addr.iter().enumerate() {
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

/// The flow's next hop as the routes on IPMP interface `ifindex` say. The error says why
/// there is none.
#[inline(always)]
pub fn next_hop(ctx: &TcContext, ifindex: u32, flow: &Flow) -> Result<NextHop, Reason> {
    let key = &flow.key;
    if key.ip_version == 6 && is_v6_link_local(key.dst[0]) {
        return Ok(NextHop {
            family: FAMILY_V6,
            addr: key.dst,
        });
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
    // SAFETY: the kernel wrote the member of the union that the family it returned names.
    Ok(unsafe {
        if u32::from(params.family) == FAMILY_V6 {
            NextHop {
                family: FAMILY_V6,
                addr: params.__bindgen_anon_4.ipv6_dst,
            }
        } else {
            NextHop {
                family: FAMILY_V4,
                addr: [params.__bindgen_anon_4.ipv4_dst, 0, 0, 0],
            }
        }
    })
}
