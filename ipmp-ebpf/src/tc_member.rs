//! TCX egress on every member: keeps the ARP requests a member's kernel sends from naming a
//! data address bound to another member as their sender, and repairs frames the kernel
//! releases from a member's neighbour queue with the IPMP interface's MACs. Frames the IPMP
//! interface's program sent here and counted (`SENT_MARK` in the control block, the MAC it
//! named) pass at once: neither concerns them.
//!
//! When a member resolves a next hop, the kernel picks the ARP sender address with
//! `inet_select_addr()`, which for a member without an address of its own takes one from
//! another device — a data address on the IPMP interface. Peers would then point that data
//! address at this member's MAC (ARP flux). The sender becomes the member's `arp_src` instead
//! (0.0.0.0 when it has none: an RFC 5227 probe, which updates no cache).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use ipmp_common::{
    MemberInfo, Reason, SENT_MARK, STATS_SLOT_UNKNOWN,
    packet::{
        ARP_LEN, ARPHRD_ETHER, ARPOP_REQUEST, ETH_ALEN, ETH_DST, ETH_HLEN, ETH_P_ARP, ETH_P_IP,
        ETH_P_IPV6, ETH_PROTO, ETH_SRC,
    },
    sent_mark,
};

use crate::{
    fib::next_hop,
    frame::{Frame as _, Tc, take},
    maps::{Exit, IPMP_ADDRS, IPMP_MEMBERS, Verdict, addr_key_v4},
    parse::{be16, is_group_mac, skb_bytes, tc_flow},
};

/// Offset of the ARP sender protocol address in the frame.
const ARP_SPA: usize = ETH_HLEN + 14;

#[classifier]
pub fn ipmp_tc_member(ctx: TcContext) -> i32 {
    if sent_by_group(&ctx) {
        return TC_ACT_OK as i32;
    }
    let len = ctx.len();
    match try_tc_member(&ctx) {
        Ok(verdict) => verdict.finish(len),
        Err(exit) => {
            let action = if exit.reason.is_drop() {
                TC_ACT_SHOT
            } else {
                TC_ACT_OK
            };
            Verdict::new(action as i32, exit.slot, exit.reason).finish(len)
        }
    }
}

/// Unicast or multicast IP that `ipmp_tc_egress` sent (or `ipmp_tc_ingress` answered) through
/// this member and counted, still with the source MAC it marked the frame with (frames
/// released from the neighbour queue have the IPMP interface's instead).
#[inline(always)]
fn sent_by_group(ctx: &TcContext) -> bool {
    // SAFETY: the context pointer is valid for the program's run.
    let cb = unsafe { (*ctx.skb.skb).cb };
    if cb[0] != SENT_MARK {
        return false;
    }
    let frame = Tc(ctx);
    let Some(eth) = frame.peek::<ETH_HLEN>(0) else {
        return false;
    };
    let ethertype = be16([eth[ETH_PROTO], eth[ETH_PROTO + 1]]);
    let src = sent_mark(take::<ETH_ALEN, ETH_HLEN>(eth, ETH_SRC));
    (ethertype == ETH_P_IP || ethertype == ETH_P_IPV6) && src[1] == cb[1] && src[2] == cb[2]
}

#[inline(always)]
fn try_tc_member(ctx: &TcContext) -> Result<Verdict<i32>, Exit> {
    const PASS: i32 = TC_ACT_OK as i32;
    // SAFETY: the context pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: copied at once.
    let member: MemberInfo = match unsafe { IPMP_MEMBERS.get(ifindex) } {
        Some(m) => *m,
        None => return Ok(Verdict::new(PASS, STATS_SLOT_UNKNOWN, Reason::NotMember)),
    };
    let (slot, arp_src) = (member.stats_slot, member.arp_src);
    let pass = Verdict::new(PASS, slot, Reason::MemberTxPass);
    let Some(eth) = skb_bytes::<ETH_HLEN>(ctx, 0) else {
        return Ok(pass);
    };
    let ethertype = be16([eth[ETH_PROTO], eth[ETH_PROTO + 1]]);
    if (ethertype == ETH_P_IP || ethertype == ETH_P_IPV6)
        && !is_group_mac(eth[ETH_DST])
        && eth[ETH_SRC..ETH_SRC + ETH_ALEN] != member.mac
    {
        return requeued(ctx, ifindex, &member, ethertype);
    }
    if ethertype != ETH_P_ARP {
        return Ok(pass);
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

/// `bpf_redirect_neigh` from the IPMP interface queues a packet on the member's unresolved
/// neighbour. When the neighbour resolves, `neigh_update()` re-looks up the neighbour through
/// the skb's route — the NOARP IPMP interface — and sends the packet with that interface's
/// MAC as source and destination. Such a frame (unicast IP, source MAC not the member's) is
/// sent again through the member's neighbour, which is resolved by now, so the first packet
/// to a new next hop is not lost.
#[inline(always)]
fn requeued(
    ctx: &TcContext,
    ifindex: u32,
    member: &MemberInfo,
    ethertype: u16,
) -> Result<Verdict<i32>, Exit> {
    let slot = member.stats_slot;
    let drop = Exit::new(slot, Reason::MemberRequeueDrop);
    let flow = tc_flow(ctx, ethertype).map_err(|_| drop)?;
    let next_hop = next_hop(ctx, member.group_ifindex, &flow).map_err(|_| drop)?;
    let action = next_hop.redirect_neigh(ifindex) as i32;
    if action == TC_ACT_SHOT as i32 {
        return Err(drop);
    }
    Ok(Verdict::new(action, slot, Reason::MemberRequeued))
}
