//! What a member does with a frame it receives, whichever hook runs it (see `frame`).
//!
//! [`respond`] holds the answers given on the member itself: ARP requests and neighbour
//! solicitations for data addresses bound here are answered from the member's MAC and dropped
//! on the other members; echo requests and probe replies are `probe`'s; broadcast and
//! multicast are dropped on every member but the cast member. [`deliver`] decides where the
//! rest goes: IP for a data address of the member's group (unicast to the member's MAC), and
//! the group's broadcast and multicast IP on the cast member, enter the stack through the IPMP
//! interface; everything else (test and link-local addresses, ARP, neighbour discovery, other
//! protocols) stays on the member.
//!
//! Dispatch is a chain of handlers, each returning `Some(verdict)` when the frame is its
//! business; the first that answers wins.

use ipmp_common::{
    AddrKey, MEMBER_F_CAST, Reason,
    packet::{
        ARP_LEN, ARP_OP, ARP_SHA, ARP_SPA, ARP_THA, ARP_TPA, ARPHRD_ETHER, ARPOP_REPLY,
        ARPOP_REQUEST, ETH_ALEN, ETH_DST, ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_PROTO,
        ETH_SRC, ICMP6, IP4_DST, IP4_PROTO, IP6_DST, IP6_HOPS, IP6_NEXT, IP6_PLEN, IP6_SRC,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPV4_HLEN, IPV6_HLEN, L3, ND_MIN, ND_NA_FLAG_OVERRIDE,
        ND_NA_FLAG_SOLICITED, ND_NA_LEN, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_OPT_TARGET_LL,
        ND_TARGET, is_nd,
    },
};

use crate::{
    device::Member,
    frame::{Action, Bytes, Frame, Outcome, mac_eq, take},
    maps::{Exit, IPMP_ADDRS, Verdict, addr_key_v4},
    parse::{be16, is_group_mac},
};

/// The frame's Ethernet header.
#[inline(always)]
fn eth<'a, F: Frame>(f: &'a F, me: &Member) -> Result<&'a [u8; ETH_HLEN], Exit> {
    f.peek::<ETH_HLEN>(0)
        .ok_or(Exit::new(me.slot(), Reason::RxMalformed))
}

#[inline(always)]
fn ethertype(eth: &[u8; ETH_HLEN]) -> u16 {
    be16([eth[ETH_PROTO], eth[ETH_PROTO + 1]])
}

/// Whether [`respond`] cannot act on the frame, seen from its headers alone: unicast, and
/// neither ARP nor ICMP/ICMPv6 right after the IP header — every handler below answers,
/// timestamps or filters only those. Ordinary data then costs no member lookup at XDP, and
/// none of the answers' checks at TC ingress.
#[inline(always)]
pub fn unanswerable<F: Frame>(f: &F) -> bool {
    let Some(eth) = f.peek::<ETH_HLEN>(0) else {
        return false;
    };
    if is_group_mac(eth[ETH_DST]) {
        return false;
    }
    match ethertype(eth) {
        ETH_P_ARP => false,
        ETH_P_IP => f
            .peek::<IPV4_HLEN>(L3)
            .is_none_or(|ip| ip[IP4_PROTO] != IPPROTO_ICMP),
        ETH_P_IPV6 => f
            .peek::<IPV6_HLEN>(L3)
            .is_none_or(|ip| ip[IP6_NEXT] != IPPROTO_ICMPV6),
        _ => true,
    }
}

/// Everything the member answers or filters itself; `None` leaves the frame to [`deliver`].
///
/// The handlers below it are BPF subprograms of their own (`inline(never)`): inlined into one
/// function, their frame copies would together exceed the 512-byte BPF stack.
#[inline(always)]
pub fn respond<F: Frame>(f: &F, me: &Member) -> Result<Option<Verdict<Action>>, Exit> {
    let eth = eth(f, me)?;
    let ethertype = ethertype(eth);
    if ethertype == ETH_P_ARP {
        return arp(f, me, eth).get();
    }
    if ethertype == ETH_P_IPV6
        && let Some(verdict) = neighbour_discovery(f, me, eth).get()?
    {
        return Ok(Some(verdict));
    }
    if is_group_mac(eth[ETH_DST]) {
        if me.info.flags & MEMBER_F_CAST == 0 {
            return Ok(Some(me.verdict(Action::Drop, Reason::CastDrop)));
        }
        return Ok(None);
    }
    crate::probe::echo(f, me, eth, ethertype)
}

/// Where a frame that [`respond`] left alone goes: through the IPMP interface
/// (`Action::ToIpmp`) or to the member's own stack. A subprogram too, so that the entry
/// point's own frame stays small beside the handlers'.
#[inline(always)]
pub fn deliver<F: Frame>(f: &F, me: &Member) -> Result<Verdict<Action>, Exit> {
    delivery(f, me)
        .get()
        .map(|v| v.unwrap_or(me.verdict(Action::Pass, Reason::RxPass)))
}

#[inline(never)]
fn delivery<F: Frame>(f: &F, me: &Member) -> Outcome {
    Outcome::new(destination(f, me).map(Some))
}

#[inline(always)]
fn destination<F: Frame>(f: &F, me: &Member) -> Result<Verdict<Action>, Exit> {
    let eth = eth(f, me)?;
    let ethertype = ethertype(eth);
    let group = is_group_mac(eth[ETH_DST]);
    let pass = if group {
        me.verdict(Action::Pass, Reason::CastPass)
    } else {
        me.verdict(Action::Pass, Reason::RxPass)
    };
    let dst = match ethertype {
        ETH_P_IP => {
            let Some(ip) = f.peek::<IPV4_HLEN>(L3) else {
                return Ok(pass);
            };
            addr_key_v4(take::<4, IPV4_HLEN>(ip, IP4_DST))
        }
        ETH_P_IPV6 => {
            let Some(ip) = f.peek::<IPV6_HLEN>(L3) else {
                return Ok(pass);
            };
            // Neighbour discovery belongs to the member: its neighbour table resolves the
            // next hops the IPMP interface sends to.
            if ip[IP6_NEXT] == IPPROTO_ICMPV6
                && let Some(&[ty]) = f.peek::<1>(ICMP6)
                && is_nd(ty)
            {
                return Ok(pass);
            }
            AddrKey::v6(take::<16, IPV6_HLEN>(ip, IP6_DST))
        }
        _ => return Ok(pass),
    };
    if group {
        // Only the cast member gets here (`respond` dropped the rest), so each datagram
        // enters the IPMP interface once.
        if me.info.flags & MEMBER_F_CAST == 0 {
            return Ok(me.verdict(Action::Drop, Reason::CastDrop));
        }
        return Ok(me.verdict(Action::ToIpmp, Reason::CastToIpmp));
    }
    // Unicast to this member's MAC for a data address of its group, wherever the address is
    // bound: a peer with a stale neighbour entry still reaches it. Frames a promiscuous
    // device overhears, and addresses the host does not have, stay here, where the member's
    // forwarding=0 keeps the host from routing them.
    if !mac_eq(eth, ETH_DST, me.info.mac) {
        return Ok(pass);
    }
    // SAFETY: copied at once.
    match unsafe { IPMP_ADDRS.get(dst) } {
        Some(a) if a.group_ifindex == me.info.group_ifindex => {
            Ok(me.verdict(Action::ToIpmp, Reason::RxToIpmp))
        }
        _ => Ok(pass),
    }
}

/// An Ethernet + ARP frame.
const ARP_FRAME: usize = ETH_HLEN + ARP_LEN;

/// ARP: requests for a data address bound here are answered, for one bound elsewhere (or to
/// no member) dropped; everything else goes to the stack on every member (each member's
/// kernel resolves its own test address and its next hops).
#[inline(never)]
fn arp<F: Frame>(f: &F, me: &Member, eth: &[u8; ETH_HLEN]) -> Outcome {
    Outcome::new(arp_request(f, me, eth).map(Some))
}

#[inline(always)]
fn arp_request<F: Frame>(
    f: &F,
    me: &Member,
    eth: &[u8; ETH_HLEN],
) -> Result<Verdict<Action>, Exit> {
    let malformed = Exit::new(me.slot(), Reason::RxMalformed);
    let a = f.peek::<ARP_LEN>(ETH_HLEN).ok_or(malformed)?;
    if be16([a[0], a[1]]) != ARPHRD_ETHER
        || be16([a[2], a[3]]) != ETH_P_IP
        || a[4] != ETH_ALEN as u8
        || a[5] != 4
    {
        return Err(malformed);
    }
    let op = be16([a[ARP_OP], a[ARP_OP + 1]]);
    if op == ARPOP_REPLY
        && let Some(verdict) = crate::probe::arp_reply(me, a)
    {
        return Ok(verdict);
    }
    if op != ARPOP_REQUEST {
        return Ok(me.verdict(Action::Pass, Reason::RxPass));
    }
    let tpa = take::<4, ARP_LEN>(a, ARP_TPA);
    // SAFETY: copied at once.
    let bound = match unsafe { IPMP_ADDRS.get(addr_key_v4(tpa)) } {
        Some(info) => info.bound_ifindex,
        None => return Ok(me.verdict(Action::Pass, Reason::RxPass)),
    };
    if bound != me.ifindex {
        return Ok(me.verdict(Action::Drop, Reason::ArpNotBound));
    }
    let mac = me.info.mac;
    let mut r = Bytes([0u8; ARP_FRAME]);
    // Ethernet: back to the requester, from this member.
    r[ETH_DST..ETH_DST + ETH_ALEN].copy_from_slice(&eth[ETH_SRC..ETH_SRC + ETH_ALEN]);
    r[ETH_SRC..ETH_SRC + ETH_ALEN].copy_from_slice(&mac);
    r[ETH_PROTO..ETH_PROTO + 2].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // ARP reply: the sender is now this member with the requested address; the target is the
    // requester (its sender address may be 0.0.0.0 for an RFC 5227 probe).
    let o = ETH_HLEN;
    r[o..o + ARP_OP].copy_from_slice(&a[..ARP_OP]);
    r[o + ARP_OP..o + ARP_OP + 2].copy_from_slice(&ARPOP_REPLY.to_be_bytes());
    r[o + ARP_SHA..o + ARP_SHA + ETH_ALEN].copy_from_slice(&mac);
    r[o + ARP_SPA..o + ARP_SPA + 4].copy_from_slice(&tpa);
    r[o + ARP_THA..o + ARP_THA + ETH_ALEN].copy_from_slice(&a[ARP_SHA..ARP_SHA + ETH_ALEN]);
    r[o + ARP_TPA..o + ARP_TPA + 4].copy_from_slice(&a[ARP_SPA..ARP_SPA + 4]);
    f.store(0, &r)
        .map_err(|()| Exit::new(me.slot(), Reason::PassError))?;
    Ok(me.verdict(Action::Tx, Reason::ArpReply))
}

/// The answer: Ethernet + IPv6 + NA with one target link-layer option.
const NA_FRAME: usize = ETH_HLEN + IPV6_HLEN + ND_NA_LEN;

/// Neighbour discovery: solicitations for data addresses as for ARP; other ND messages go to
/// the stack on every member. `None` when the frame is no ND message.
#[inline(never)]
fn neighbour_discovery<F: Frame>(f: &F, me: &Member, eth: &[u8; ETH_HLEN]) -> Outcome {
    Outcome::new(solicitation(f, me, eth))
}

#[inline(always)]
fn solicitation<F: Frame>(
    f: &F,
    me: &Member,
    eth: &[u8; ETH_HLEN],
) -> Result<Option<Verdict<Action>>, Exit> {
    let Some(ip) = f.peek::<IPV6_HLEN>(L3) else {
        return Ok(None);
    };
    if ip[IP6_NEXT] != IPPROTO_ICMPV6 {
        return Ok(None);
    }
    let Some(&[icmp_type]) = f.peek::<1>(ICMP6) else {
        return Ok(None);
    };
    if !is_nd(icmp_type) {
        return Ok(None);
    }
    if icmp_type == ND_NEIGHBOR_ADVERT
        && let Some(verdict) = crate::probe::neighbour_advert(f, me, eth, ip)
    {
        return Ok(Some(verdict));
    }
    if icmp_type != ND_NEIGHBOR_SOLICIT {
        return Ok(Some(me.verdict(Action::Pass, Reason::RxPass)));
    }
    let malformed = Exit::new(me.slot(), Reason::RxMalformed);
    let ns = f.peek::<ND_MIN>(ICMP6).ok_or(malformed)?;
    // RFC 4861 7.1.1: hop limit 255, code 0, ICMP length 24 or more.
    if ip[IP6_HOPS] != 255
        || ns[1] != 0
        || usize::from(be16([ip[IP6_PLEN], ip[IP6_PLEN + 1]])) < ND_MIN
    {
        return Err(malformed);
    }
    let target = f.peek_words::<4>(ICMP6 + ND_TARGET).ok_or(malformed)?;
    // SAFETY: copied at once.
    let bound = match unsafe { IPMP_ADDRS.get(AddrKey::v6_words(target)) } {
        Some(info) => info.bound_ifindex,
        None => return Ok(Some(me.verdict(Action::Pass, Reason::RxPass))),
    };
    if bound != me.ifindex {
        return Ok(Some(me.verdict(Action::Drop, Reason::NsNotBound)));
    }
    // Bytes 4..12: the end of the destination MAC and the requester's (source) MAC.
    let [w1, w2] = f.peek_words::<2>(4).ok_or(malformed)?;
    let requester = [w1 >> 16 | w2 << 16, w2 >> 16];
    let solicitor = f.peek_words::<4>(L3 + IP6_SRC).ok_or(malformed)?;
    let na = neighbour_advert(requester, me.info.mac, solicitor, target);
    let failed = Exit::new(me.slot(), Reason::PassError);
    f.resize(NA_FRAME as u32).map_err(|()| failed)?;
    f.store(0, &na).map_err(|()| failed)?;
    Ok(Some(me.verdict(Action::Tx, Reason::NsReply)))
}

/// A word of the answer from its 4 bytes (the layout [`frame::word`] reads and writes).
///
/// [`frame::word`]: crate::frame
#[inline(always)]
const fn w(bytes: [u8; 4]) -> u32 {
    u32::from_ne_bytes(bytes)
}

/// The words a 16-byte value `v` (four words) spans when it starts 2 bytes into a word, with
/// the 2 bytes before it in `before` and after it in `after` (each in its low half).
/// Little-endian (bpfel): a word's first byte is its lowest.
#[inline(always)]
const fn spread(before: u32, v: [u32; 4], after: u32) -> [u32; 5] {
    [
        (before & 0xffff) | v[0] << 16,
        v[0] >> 16 | v[1] << 16,
        v[1] >> 16 | v[2] << 16,
        v[2] >> 16 | v[3] << 16,
        v[3] >> 16 | after << 16,
    ]
}

/// The neighbour advertisement answering a solicitation from `solicitor` (`::` for duplicate
/// address detection) at `requester` (its MAC as a word and a half) for `target`, from this
/// member's `mac`, built a word at a time with its checksum summed from the same words.
#[inline(always)]
fn neighbour_advert(
    requester: [u32; 2],
    mac: [u8; ETH_ALEN],
    solicitor: [u32; 4],
    target: [u32; 4],
) -> Bytes<NA_FRAME> {
    const ALL_NODES: [u32; 4] = [w([0xff, 0x02, 0, 0]), 0, 0, w([0, 0, 0, 1])];
    const {
        // The layout below: the IPv6 addresses, the ICMPv6 header and the target each 2 bytes
        // into a word.
        assert!(L3 + IP6_SRC == 22 && L3 + IP6_DST == 38 && ICMP6 == 54);
        assert!(ICMP6 + ND_TARGET == 62 && NA_FRAME == 86);
    }
    let dad = solicitor[0] | solicitor[1] | solicitor[2] | solicitor[3] == 0;
    // RFC 4861 7.2.4: to the solicitor, or to all-nodes when it had no address yet (DAD), in
    // which case the answer is unsolicited.
    let dst = if dad { ALL_NODES } else { solicitor };
    let flags = if dad {
        ND_NA_FLAG_OVERRIDE
    } else {
        ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE
    };
    let mac_lo = w([mac[0], mac[1], mac[2], mac[3]]);
    let mac_hi = u32::from(u16::from_ne_bytes([mac[4], mac[5]]));
    let type_code = w([ND_NEIGHBOR_ADVERT, 0, 0, 0]);
    let option = u32::from(u16::from_ne_bytes([ND_OPT_TARGET_LL, 1]));
    // RFC 8200 8.1: source, destination, upper-layer length, next header, then the message
    // (checksum zero). A one's complement sum may take the 16-bit words in memory order and
    // two at a time (RFC 1071 2): the result is then in memory order too.
    let sum = words_sum(target) * 2
        + words_sum(dst)
        + u64::from(w([0, 0, 0, ND_NA_LEN as u8]))
        + u64::from(w([0, 0, 0, IPPROTO_ICMPV6]))
        + u64::from(type_code)
        + u64::from(flags)
        + u64::from(option)
        + u64::from(mac_lo)
        + u64::from(mac_hi);
    let check = u32::from(fold64(sum));

    let [a0, a1, a2, a3, a4] = spread(
        u32::from(u16::from_ne_bytes([IPPROTO_ICMPV6, 255])),
        target,
        dst[0],
    );
    let [_, b1, b2, b3, b4] = spread(a4, dst, type_code);
    let [c0, c1, c2, c3, c4] = spread(0, target, option);
    let words = [
        requester[0],
        requester[1] | mac_lo << 16,
        mac_lo >> 16 | mac_hi << 16,
        w([0x86, 0xdd, 0x60, 0]),
        w([0, 0, 0, ND_NA_LEN as u8]),
        a0,
        a1,
        a2,
        a3,
        a4,
        b1,
        b2,
        b3,
        b4,
        check | u32::from(flags) << 16,
        c0,
        c1,
        c2,
        c3,
        c4,
        mac_lo,
    ];
    let mut f = Bytes([0u8; NA_FRAME]);
    let mut i = 0;
    while i < words.len() {
        f.set_word(i, words[i]);
        i += 1;
    }
    f[NA_FRAME - 2..].copy_from_slice(&[mac[4], mac[5]]);
    f
}

/// The sum of four words, for a one's complement sum.
#[inline(always)]
fn words_sum(v: [u32; 4]) -> u64 {
    u64::from(v[0]) + u64::from(v[1]) + u64::from(v[2]) + u64::from(v[3])
}

/// A one's complement sum folded to 16 bits and complemented.
#[inline(always)]
fn fold64(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    crate::frame::fold(sum as u32)
}
