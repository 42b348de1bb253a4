//! XDP on every member NIC: answers ARP requests and neighbour solicitations for data
//! addresses bound to this member (XDP_TX, member MAC), drops them on the other members, and
//! passes inbound broadcast/multicast only on the group's cast member. Echo requests and probe
//! replies are `xdp_probe`'s.
//!
//! Dispatch is a chain of handlers, each returning `Some(verdict)` when the packet is its
//! business; the first that answers wins, the cast/unicast rule is the fallback.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::generated::bpf_xdp_adjust_tail,
    macros::xdp,
    programs::XdpContext,
};
use ipmp_common::{
    AddrKey, MEMBER_F_CAST, MemberInfo, Reason, STATS_SLOT_UNKNOWN,
    packet::{
        ARP_LEN, ARPHRD_ETHER, ARPOP_REPLY, ARPOP_REQUEST, ETH_ALEN, ETH_HLEN, ETH_P_ARP, ETH_P_IP,
        ETH_P_IPV6, IPPROTO_ICMPV6, IPV6_HLEN, ND_NA_FLAG_OVERRIDE, ND_NA_FLAG_SOLICITED,
        ND_NA_LEN, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_OPT_TARGET_LL, ND_REDIRECT,
        ND_ROUTER_SOLICIT,
    },
};

use crate::{
    maps::{Exit, IPMP_ADDRS, IPMP_MEMBERS, Verdict, addr_key_v4},
    parse::{ETH_DST, ETH_PROTO, ETH_SRC, be16, is_group_mac, xdp_bytes, xdp_len},
};

/// The member this program runs on.
pub(crate) struct Member {
    pub(crate) ifindex: u32,
    pub(crate) info: MemberInfo,
}

#[xdp]
pub fn ipmp_xdp_member(ctx: XdpContext) -> u32 {
    let len = xdp_len(&ctx);
    match try_xdp_member(&ctx) {
        Ok(verdict) => verdict.finish(len),
        Err(exit) => Verdict::new(XDP_PASS, exit.slot, exit.reason).finish(len),
    }
}

#[inline(always)]
fn try_xdp_member(ctx: &XdpContext) -> Result<Verdict<u32>, Exit> {
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: copied at once; updates replace the element under RCU.
    let info = match unsafe { IPMP_MEMBERS.get(ifindex) } {
        Some(m) => *m,
        None => {
            return Ok(Verdict::new(
                XDP_PASS,
                STATS_SLOT_UNKNOWN,
                Reason::NotMember,
            ));
        }
    };
    let me = Member { ifindex, info };
    let slot = info.stats_slot;
    let eth = xdp_bytes::<ETH_HLEN>(ctx, 0).ok_or(Exit::new(slot, Reason::RxMalformed))?;
    // SAFETY: bounds checked by xdp_bytes.
    let eth = unsafe { &*eth };
    let (dst0, ethertype) = (eth[ETH_DST], be16([eth[ETH_PROTO], eth[ETH_PROTO + 1]]));
    if ethertype == ETH_P_ARP {
        return arp(ctx, &me);
    }
    if ethertype == ETH_P_IPV6
        && let Some(verdict) = neighbour_discovery(ctx, &me)?
    {
        return Ok(verdict);
    }
    if !is_group_mac(dst0)
        && let Some(verdict) = crate::xdp_probe::echo(ctx, &me, ethertype)?
    {
        return Ok(verdict);
    }
    if is_group_mac(dst0) {
        let (action, reason) = if info.flags & MEMBER_F_CAST != 0 {
            (XDP_PASS, Reason::CastPass)
        } else {
            (XDP_DROP, Reason::CastDrop)
        };
        return Ok(Verdict::new(action, slot, reason));
    }
    Ok(Verdict::new(XDP_PASS, slot, Reason::RxPass))
}

/// ARP offsets in the frame.
const ARP: usize = ETH_HLEN;
const ARP_OP: usize = 6;
pub(crate) const ARP_SHA: usize = 8;
pub(crate) const ARP_SPA: usize = 14;
pub(crate) const ARP_THA: usize = 18;
pub(crate) const ARP_TPA: usize = 24;

/// ARP: requests for a data address bound here are answered, for one bound elsewhere (or to
/// no member) dropped; everything else goes to the stack on every member (each member's
/// kernel resolves its own test address).
#[inline(always)]
fn arp(ctx: &XdpContext, me: &Member) -> Result<Verdict<u32>, Exit> {
    let slot = me.info.stats_slot;
    let arp = xdp_bytes::<ARP_LEN>(ctx, ARP).ok_or(Exit::new(slot, Reason::RxMalformed))?;
    // SAFETY: bounds checked by xdp_bytes.
    let a = unsafe { &mut *arp };
    if be16([a[0], a[1]]) != ARPHRD_ETHER
        || be16([a[2], a[3]]) != ETH_P_IP
        || a[4] != ETH_ALEN as u8
        || a[5] != 4
    {
        return Err(Exit::new(slot, Reason::RxMalformed));
    }
    let op = be16([a[ARP_OP], a[ARP_OP + 1]]);
    if op == ARPOP_REPLY
        && let Some(verdict) = crate::xdp_probe::arp_reply(me, a)
    {
        return Ok(verdict);
    }
    if op != ARPOP_REQUEST {
        return Ok(Verdict::new(XDP_PASS, slot, Reason::RxPass));
    }
    let tpa = [a[ARP_TPA], a[ARP_TPA + 1], a[ARP_TPA + 2], a[ARP_TPA + 3]];
    // SAFETY: copied at once.
    let bound = match unsafe { IPMP_ADDRS.get(addr_key_v4(tpa)) } {
        Some(info) => info.bound_ifindex,
        None => return Ok(Verdict::new(XDP_PASS, slot, Reason::RxPass)),
    };
    if bound != me.ifindex {
        return Ok(Verdict::new(XDP_DROP, slot, Reason::ArpNotBound));
    }
    let eth = xdp_bytes::<ETH_HLEN>(ctx, 0).ok_or(Exit::new(slot, Reason::RxMalformed))?;
    // SAFETY: bounds checked by xdp_bytes.
    let e = unsafe { &mut *eth };
    let mac = me.info.mac;
    let mut sha = [0u8; ETH_ALEN];
    sha.copy_from_slice(&a[ARP_SHA..ARP_SHA + ETH_ALEN]);
    let spa = [a[ARP_SPA], a[ARP_SPA + 1], a[ARP_SPA + 2], a[ARP_SPA + 3]];
    // Ethernet: back to the requester, from this member.
    let mut requester = [0u8; ETH_ALEN];
    requester.copy_from_slice(&e[ETH_SRC..ETH_SRC + ETH_ALEN]);
    e[ETH_DST..ETH_DST + ETH_ALEN].copy_from_slice(&requester);
    e[ETH_SRC..ETH_SRC + ETH_ALEN].copy_from_slice(&mac);
    // ARP reply: the sender is now this member with the requested address; the target is the
    // requester (its sender address may be 0.0.0.0 for an RFC 5227 probe).
    a[ARP_OP..ARP_OP + 2].copy_from_slice(&ARPOP_REPLY.to_be_bytes());
    a[ARP_THA..ARP_THA + ETH_ALEN].copy_from_slice(&sha);
    a[ARP_TPA..ARP_TPA + 4].copy_from_slice(&spa);
    a[ARP_SHA..ARP_SHA + ETH_ALEN].copy_from_slice(&mac);
    a[ARP_SPA..ARP_SPA + 4].copy_from_slice(&tpa);
    Ok(Verdict::new(XDP_TX, slot, Reason::ArpReply))
}

/// IPv6 header offsets in the frame.
pub(crate) const IP6: usize = ETH_HLEN;
pub(crate) const IP6_PLEN: usize = 4;
pub(crate) const IP6_NEXT: usize = 6;
pub(crate) const IP6_HOPS: usize = 7;
pub(crate) const IP6_SRC: usize = 8;
pub(crate) const IP6_DST: usize = 24;
/// ICMPv6 in the frame (no extension headers: ND messages carry none).
pub(crate) const ICMP6: usize = ETH_HLEN + IPV6_HLEN;
/// A neighbour solicitation without options: ICMPv6 header (4), reserved (4), target (16).
const NS_LEN: usize = 24;
const ND_TARGET: usize = 8;
/// The answer: Ethernet + IPv6 + NA with one target link-layer option.
const NA_FRAME: usize = ETH_HLEN + IPV6_HLEN + ND_NA_LEN;

/// Neighbour discovery: solicitations for data addresses as for ARP; other ND messages go to
/// the stack on every member. `None` when the packet is no ND message.
#[inline(always)]
fn neighbour_discovery(ctx: &XdpContext, me: &Member) -> Result<Option<Verdict<u32>>, Exit> {
    let slot = me.info.stats_slot;
    let Some(ip) = xdp_bytes::<IPV6_HLEN>(ctx, IP6) else {
        return Ok(None);
    };
    // SAFETY: bounds checked by xdp_bytes.
    let ip = unsafe { &*ip };
    if ip[IP6_NEXT] != IPPROTO_ICMPV6 {
        return Ok(None);
    }
    let Some(icmp_type) = xdp_bytes::<1>(ctx, ICMP6) else {
        return Ok(None);
    };
    // SAFETY: bounds checked by xdp_bytes.
    let icmp_type = unsafe { (*icmp_type)[0] };
    if !(ND_ROUTER_SOLICIT..=ND_REDIRECT).contains(&icmp_type) {
        return Ok(None);
    }
    if icmp_type == ND_NEIGHBOR_ADVERT
        && let Some(verdict) = crate::xdp_probe::neighbour_advert(ctx, me, ip)
    {
        return Ok(Some(verdict));
    }
    if icmp_type != ND_NEIGHBOR_SOLICIT {
        return Ok(Some(Verdict::new(XDP_PASS, slot, Reason::RxPass)));
    }
    let ns = xdp_bytes::<NS_LEN>(ctx, ICMP6).ok_or(Exit::new(slot, Reason::RxMalformed))?;
    // SAFETY: bounds checked by xdp_bytes.
    let ns = unsafe { &*ns };
    // RFC 4861 7.1.1: hop limit 255, code 0, ICMP length 24 or more.
    if ip[IP6_HOPS] != 255
        || ns[1] != 0
        || usize::from(be16([ip[IP6_PLEN], ip[IP6_PLEN + 1]])) < NS_LEN
    {
        return Err(Exit::new(slot, Reason::RxMalformed));
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&ns[ND_TARGET..ND_TARGET + 16]);
    // SAFETY: copied at once.
    let bound = match unsafe { IPMP_ADDRS.get(AddrKey::v6(target)) } {
        Some(info) => info.bound_ifindex,
        None => return Ok(Some(Verdict::new(XDP_PASS, slot, Reason::RxPass))),
    };
    if bound != me.ifindex {
        return Ok(Some(Verdict::new(XDP_DROP, slot, Reason::NsNotBound)));
    }
    let eth = xdp_bytes::<ETH_HLEN>(ctx, 0).ok_or(Exit::new(slot, Reason::RxMalformed))?;
    // SAFETY: bounds checked by xdp_bytes.
    let eth = unsafe { &*eth };
    let mut requester = [0u8; ETH_ALEN];
    requester.copy_from_slice(&eth[ETH_SRC..ETH_SRC + ETH_ALEN]);
    let mut solicitor = [0u8; 16];
    solicitor.copy_from_slice(&ip[IP6_SRC..IP6_SRC + 16]);
    let na = neighbour_advert(requester, me.info.mac, solicitor, target);

    let delta = NA_FRAME as i32 - xdp_len(ctx) as i32;
    if delta != 0 {
        // SAFETY: plain helper call; every packet pointer is derived again below.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
            return Err(Exit::new(slot, Reason::PassError));
        }
    }
    let frame = xdp_bytes::<NA_FRAME>(ctx, 0).ok_or(Exit::new(slot, Reason::PassError))?;
    // SAFETY: bounds checked by xdp_bytes; the frame is exactly NA_FRAME bytes now.
    unsafe { *frame = na };
    Ok(Some(Verdict::new(XDP_TX, slot, Reason::NsReply)))
}

/// The neighbour advertisement answering a solicitation from `solicitor` (`::` for duplicate
/// address detection) at `requester` for `target`, from this member's `mac`.
#[inline(always)]
fn neighbour_advert(
    requester: [u8; ETH_ALEN],
    mac: [u8; ETH_ALEN],
    solicitor: [u8; 16],
    target: [u8; 16],
) -> [u8; NA_FRAME] {
    let dad = solicitor == [0u8; 16];
    // RFC 4861 7.2.4: to the solicitor, or to all-nodes when it had no address yet (DAD), in
    // which case the answer is unsolicited.
    let dst = if dad {
        [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    } else {
        solicitor
    };
    let flags = if dad {
        ND_NA_FLAG_OVERRIDE
    } else {
        ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE
    };
    let mut f = [0u8; NA_FRAME];
    f[ETH_DST..ETH_DST + ETH_ALEN].copy_from_slice(&requester);
    f[ETH_SRC..ETH_SRC + ETH_ALEN].copy_from_slice(&mac);
    f[ETH_PROTO..ETH_PROTO + 2].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    f[IP6] = 0x60;
    f[IP6 + IP6_PLEN + 1] = ND_NA_LEN as u8;
    f[IP6 + IP6_NEXT] = IPPROTO_ICMPV6;
    f[IP6 + IP6_HOPS] = 255;
    f[IP6 + IP6_SRC..IP6 + IP6_SRC + 16].copy_from_slice(&target);
    f[IP6 + IP6_DST..IP6 + IP6_DST + 16].copy_from_slice(&dst);
    f[ICMP6] = ND_NEIGHBOR_ADVERT;
    f[ICMP6 + 4] = flags;
    f[ICMP6 + ND_TARGET..ICMP6 + ND_TARGET + 16].copy_from_slice(&target);
    f[ICMP6 + 24] = ND_OPT_TARGET_LL;
    f[ICMP6 + 25] = 1;
    f[ICMP6 + 26..ICMP6 + 26 + ETH_ALEN].copy_from_slice(&mac);
    let csum = icmp6_checksum(&f);
    f[ICMP6 + 2..ICMP6 + 4].copy_from_slice(&csum.to_be_bytes());
    f
}

/// ICMPv6 checksum of the NA in `f` (checksum field zero): the pseudo-header (source,
/// destination, upper-layer length, next header; RFC 8200 8.1) plus the message.
#[inline(always)]
fn icmp6_checksum(f: &[u8; NA_FRAME]) -> u16 {
    let mut sum: u32 = ND_NA_LEN as u32 + u32::from(IPPROTO_ICMPV6);
    // Source and destination address, then the ICMPv6 message: 16-bit big-endian words.
    for word in f[IP6 + IP6_SRC..].chunks_exact(2) {
        sum += u32::from(be16([word[0], word[1]]));
    }
    // 34 words of at most 0xffff: two folds reach 16 bits.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
