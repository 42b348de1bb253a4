//! TCX egress on every member: keeps the ARP requests a member's kernel sends from naming a
//! data address bound to another member as their sender.
//!
//! When a member resolves a next hop, the kernel picks the ARP sender address with
//! `inet_select_addr()`, which for a member without an address of its own takes one from
//! another device — a data address on the IPMP interface. Peers would then point that data
//! address at this member's MAC (ARP flux). The sender becomes the member's `arp_src` instead
//! (0.0.0.0 when it has none: an RFC 5227 probe, which updates no cache).

use aya_ebpf::{bindings::TC_ACT_OK, macros::classifier, programs::TcContext};
use ipmp_common::{
    Reason, STATS_SLOT_UNKNOWN,
    packet::{ARP_LEN, ARPHRD_ETHER, ARPOP_REQUEST, ETH_ALEN, ETH_HLEN, ETH_P_ARP, ETH_P_IP},
};

use crate::{
    maps::{Exit, IPMP_ADDRS, IPMP_MEMBERS, Verdict, addr_key_v4},
    parse::{ETH_PROTO, be16, skb_bytes},
};

/// Offset of the ARP sender protocol address in the frame.
const ARP_SPA: usize = ETH_HLEN + 14;

#[classifier]
pub fn ipmp_tc_member(ctx: TcContext) -> i32 {
    let len = ctx.len();
    match try_tc_member(&ctx) {
        Ok(verdict) => verdict.finish(len),
        Err(exit) => Verdict::new(TC_ACT_OK as i32, exit.slot, exit.reason).finish(len),
    }
}

#[inline(always)]
fn try_tc_member(ctx: &TcContext) -> Result<Verdict<i32>, Exit> {
    const PASS: i32 = TC_ACT_OK as i32;
    // SAFETY: the context pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: copied at once.
    let (slot, arp_src) = match unsafe { IPMP_MEMBERS.get(ifindex) } {
        Some(m) => (m.stats_slot, m.arp_src),
        None => return Ok(Verdict::new(PASS, STATS_SLOT_UNKNOWN, Reason::NotMember)),
    };
    let pass = Verdict::new(PASS, slot, Reason::MemberTxPass);
    match skb_bytes::<2>(ctx, ETH_PROTO) {
        Some(proto) if be16(proto) == ETH_P_ARP => {}
        _ => return Ok(pass),
    }
    let Some(arp) = skb_bytes::<ARP_LEN>(ctx, ETH_HLEN) else {
        return Ok(pass);
    };
    if be16([arp[0], arp[1]]) != ARPHRD_ETHER
        || be16([arp[2], arp[3]]) != ETH_P_IP
        || arp[4] != ETH_ALEN as u8
        || arp[5] != 4
        || be16([arp[6], arp[7]]) != ARPOP_REQUEST
    {
        return Ok(pass);
    }
    let spa = [arp[14], arp[15], arp[16], arp[17]];
    // SAFETY: copied at once.
    let bound = match unsafe { IPMP_ADDRS.get(addr_key_v4(spa)) } {
        Some(info) => info.bound_ifindex,
        None => return Ok(pass),
    };
    if bound == ifindex {
        return Ok(pass);
    }
    // `arp_src` holds the address in network byte order: its bytes in memory are the wire's.
    ctx.store(ARP_SPA, &arp_src.to_ne_bytes(), 0)
        .map_err(|_| Exit::new(slot, Reason::PassError))?;
    Ok(Verdict::new(PASS, slot, Reason::ArpSrcRewrite))
}
