//! The next hop of an outgoing flow, as the routes on the IPMP interface say
//! (`bpf_fib_lookup`), for `bpf_redirect_neigh`. Used by the TC egress programs (the IPMP
//! interface's and the members') and by the benchmark's reference program, which does only
//! this.

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
use ipmp_common::{FAMILY_V4, FAMILY_V6, Reason};

use crate::{maps::zero, parse::Flow};

/// IPv6 link-local unicast (fe80::/10): the kernel's FIB lookup refuses these
/// (`rt6_need_strict`), and they are on-link by definition.
#[inline(always)]
const fn is_v6_link_local(first_word: u32) -> bool {
    let b = first_word.to_ne_bytes();
    b[0] == 0xfe && b[1] & 0xc0 == 0x80
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
