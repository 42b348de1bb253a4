//! What a member does with a frame it receives, shared by `ipmp_xdp_member` and
//! `ipmp_tc_ingress` (DESIGN.md "XDP on members", "Inbound enters through the IPMP
//! interface"):
//!
//! - ARP requests and neighbour solicitations for a data address are answered from the
//!   member it is bound to and dropped on the others; replies from targets the member probes
//!   with ARP/NDP are timestamped; other ARP and ND go to the member's stack;
//! - broadcast and multicast are dropped on every member but the cast member;
//! - echo requests for a data address bound here or the member's test address are answered,
//!   replies to the daemon's probes timestamped (`probe`);
//! - delivery: IP unicast to the member's MAC for a data address of its group, and the
//!   group's broadcast/multicast IP on the cast member, enter through the IPMP interface;
//!   everything else stays on the member.

use ipmp_common::{
    AddrKey, FAMILY_V4, FAMILY_V6, MEMBER_F_CAST, PROBE_EV_ARP, PROBE_EV_NA, Reason,
    TARGET_F_NEIGH, TargetKey,
    packet::{
        ARPHRD_ETHER, ARPOP_REPLY, ARPOP_REQUEST, ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ICMP6,
        IPPROTO_ICMP, IPPROTO_ICMPV6, L3, ND_NA_FLAG_OVERRIDE, ND_NA_FLAG_SOLICITED,
        ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_OPT_TARGET_LL, is_nd,
    },
};

use super::{
    Bytes, World, be16,
    decision::{Action, Decision, Member, event},
    is_group_mac, take16,
};

/// The answers and filters of a member; `None` leaves the frame to [`deliver`] (TC) or the
/// stack (XDP). A malformed ARP/ND frame or echo header passes, counted as `RxMalformed`.
pub fn respond(w: &World, me: &Member, frame: &[u8]) -> Option<Decision> {
    let f = Bytes(frame);
    let Some(eth) = f.get::<ETH_HLEN>(0) else {
        return Some(me.decide(Action::Pass, Reason::RxMalformed, frame));
    };
    let ethertype = be16(&eth, 12);
    if ethertype == ETH_P_ARP {
        return Some(arp(w, me, frame));
    }
    if ethertype == ETH_P_IPV6
        && let Some(d) = neighbour_discovery(w, me, frame)
    {
        return Some(d);
    }
    if is_group_mac(eth[0]) {
        if me.info.flags & MEMBER_F_CAST == 0 {
            return Some(me.decide(Action::Drop, Reason::CastDrop, frame));
        }
        return None;
    }
    if eth[..6] != me.info.mac {
        return None;
    }
    match ethertype {
        ETH_P_IP => super::probe::echo4(w, me, frame),
        ETH_P_IPV6 => super::probe::echo6(w, me, frame),
        _ => None,
    }
}

/// Whether no answer or filter of [`respond`] can concern the frame: unicast (group bit of
/// the destination MAC clear) and not ARP, not an IPv4 header with protocol ICMP, not an IPv6
/// header with next header ICMPv6 (a truncated IP header counts as neither).
pub fn unanswerable(frame: &[u8]) -> bool {
    let f = Bytes(frame);
    let Some(eth) = f.get::<ETH_HLEN>(0) else {
        return false;
    };
    if is_group_mac(eth[0]) {
        return false;
    }
    match be16(&eth, 12) {
        ETH_P_ARP => false,
        ETH_P_IP => f.get::<20>(L3).is_none_or(|ip| ip[9] != IPPROTO_ICMP),
        ETH_P_IPV6 => f.get::<40>(L3).is_none_or(|ip| ip[6] != IPPROTO_ICMPV6),
        _ => true,
    }
}

fn arp(w: &World, me: &Member, frame: &[u8]) -> Decision {
    let malformed = me.decide(Action::Pass, Reason::RxMalformed, frame);
    let Some(a) = Bytes(frame).get::<28>(ETH_HLEN) else {
        return malformed;
    };
    if be16(&a, 0) != ARPHRD_ETHER || be16(&a, 2) != ETH_P_IP || a[4] != 6 || a[5] != 4 {
        return malformed;
    }
    let op = be16(&a, 6);
    let (sha, spa, tha, tpa) = (&a[8..14], &a[14..18], &a[18..24], &a[24..28]);
    // A reply to this member from a target it probes with ARP: timestamped, passed.
    if op == ARPOP_REPLY && tha == me.info.mac {
        let spa4 = [spa[0], spa[1], spa[2], spa[3]];
        if neigh_target(w, TargetKey::new(me.ifindex, AddrKey::v4(spa4))) {
            let mut ev = event(me, FAMILY_V4, PROBE_EV_ARP);
            ev.target[..4].copy_from_slice(spa);
            ev.local[..4].copy_from_slice(tpa);
            ev.mac.copy_from_slice(sha);
            let mut d = me.decide(Action::Pass, Reason::ProbeNeigh, frame);
            d.event = Some(ev);
            return d;
        }
    }
    if op != ARPOP_REQUEST {
        return me.decide(Action::Pass, Reason::RxPass, frame);
    }
    let tpa4 = [tpa[0], tpa[1], tpa[2], tpa[3]];
    let Some(addr) = w.addrs.get(&AddrKey::v4(tpa4)) else {
        return me.decide(Action::Pass, Reason::RxPass, frame);
    };
    if addr.bound_ifindex != me.ifindex {
        return me.decide(Action::Drop, Reason::ArpNotBound, frame);
    }
    // The reply: to the requester from this member, sender = this member and the address,
    // target = the requester; the rest of the frame (padding) stays.
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&me.info.mac);
    let o = ETH_HLEN;
    out[o + 6..o + 8].copy_from_slice(&ARPOP_REPLY.to_be_bytes());
    out[o + 8..o + 14].copy_from_slice(&me.info.mac);
    out[o + 14..o + 18].copy_from_slice(tpa);
    out[o + 18..o + 24].copy_from_slice(sha);
    out[o + 24..o + 28].copy_from_slice(spa);
    let mut d = me.decide(Action::Tx, Reason::ArpReply, frame);
    d.output = out;
    d
}

/// Neighbour discovery (ICMPv6 right after the IPv6 header); `None` for anything else.
fn neighbour_discovery(w: &World, me: &Member, frame: &[u8]) -> Option<Decision> {
    let f = Bytes(frame);
    let ip = f.get::<40>(L3)?;
    if ip[6] != IPPROTO_ICMPV6 {
        return None;
    }
    let [ty] = f.get::<1>(ICMP6)?;
    if !is_nd(ty) {
        return None;
    }
    let nd = f.get::<24>(ICMP6);
    let target = nd.map(|nd| take16(&nd, 8));
    // A solicited advertisement to this member from a target it probes with NDP.
    if ty == ND_NEIGHBOR_ADVERT
        && frame[..6] == me.info.mac
        && let (Some(nd), Some(target)) = (nd, target)
        && ip[7] == 255
        && nd[1] == 0
        && nd[4] & ND_NA_FLAG_SOLICITED != 0
        && neigh_target(w, TargetKey::new(me.ifindex, AddrKey::v6(target)))
    {
        let mut ev = event(me, FAMILY_V6, PROBE_EV_NA);
        ev.target = target;
        ev.local = take16(&ip, 24);
        ev.mac.copy_from_slice(&frame[6..12]);
        let mut d = me.decide(Action::Pass, Reason::ProbeNeigh, frame);
        d.event = Some(ev);
        return Some(d);
    }
    if ty != ND_NEIGHBOR_SOLICIT {
        return Some(me.decide(Action::Pass, Reason::RxPass, frame));
    }
    let malformed = me.decide(Action::Pass, Reason::RxMalformed, frame);
    let (Some(ns), Some(target)) = (nd, target) else {
        return Some(malformed);
    };
    // RFC 4861 7.1.1: hop limit 255, code 0, ICMP length at least 24.
    if ip[7] != 255 || ns[1] != 0 || be16(&ip, 4) < 24 {
        return Some(malformed);
    }
    let Some(addr) = w.addrs.get(&AddrKey::v6(target)) else {
        return Some(me.decide(Action::Pass, Reason::RxPass, frame));
    };
    if addr.bound_ifindex != me.ifindex {
        return Some(me.decide(Action::Drop, Reason::NsNotBound, frame));
    }
    let mut d = me.decide(Action::Tx, Reason::NsReply, frame);
    d.output = advert(&frame[6..12], &me.info.mac, &take16(&ip, 8), &target);
    Some(d)
}

/// The NA answering a solicitation (RFC 4861 7.2.4): to the solicitor, or to all-nodes
/// without the solicited flag when it came from `::` (DAD); one target link-layer option.
fn advert(requester: &[u8], mac: &[u8; 6], solicitor: &[u8; 16], target: &[u8; 16]) -> Vec<u8> {
    let dad = *solicitor == [0u8; 16];
    let dst = if dad {
        std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets()
    } else {
        *solicitor
    };
    let mut icmp = vec![ND_NEIGHBOR_ADVERT, 0, 0, 0];
    icmp.push(if dad {
        ND_NA_FLAG_OVERRIDE
    } else {
        ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE
    });
    icmp.extend_from_slice(&[0, 0, 0]);
    icmp.extend_from_slice(target);
    icmp.extend_from_slice(&[ND_OPT_TARGET_LL, 1]);
    icmp.extend_from_slice(mac);
    let csum = crate::packets::fold(crate::packets::sum16(
        &icmp,
        crate::packets::sum16(target, crate::packets::sum16(&dst, 0))
            + icmp.len() as u32
            + u32::from(IPPROTO_ICMPV6),
    ));
    icmp[2..4].copy_from_slice(&csum.to_be_bytes());
    let mut out = Vec::with_capacity(86);
    out.extend_from_slice(requester);
    out.extend_from_slice(mac);
    out.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    out.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    out.extend_from_slice(target);
    out.extend_from_slice(&dst);
    out.extend_from_slice(&icmp);
    out
}

fn neigh_target(w: &World, key: TargetKey) -> bool {
    w.targets
        .get(&key)
        .is_some_and(|t| t.flags & TARGET_F_NEIGH != 0)
}

/// Where a frame [`respond`] left alone goes (TC ingress only).
pub fn deliver(w: &World, me: &Member, frame: &[u8]) -> Decision {
    let f = Bytes(frame);
    let Some(eth) = f.get::<ETH_HLEN>(0) else {
        return me.decide(Action::Pass, Reason::RxMalformed, frame);
    };
    let group = is_group_mac(eth[0]);
    let pass = me.decide(
        Action::Pass,
        if group {
            Reason::CastPass
        } else {
            Reason::RxPass
        },
        frame,
    );
    let dst = match be16(&eth, 12) {
        ETH_P_IP => match f.get::<20>(L3) {
            Some(ip) => AddrKey::v4([ip[16], ip[17], ip[18], ip[19]]),
            None => return pass,
        },
        ETH_P_IPV6 => {
            let Some(ip) = f.get::<40>(L3) else {
                return pass;
            };
            // Neighbour discovery stays on the member (its neighbour table).
            if ip[6] == IPPROTO_ICMPV6 && f.get::<1>(ICMP6).is_some_and(|[t]| is_nd(t)) {
                return pass;
            }
            AddrKey::v6(take16(&ip, 24))
        }
        _ => return pass,
    };
    if group {
        if me.info.flags & MEMBER_F_CAST == 0 {
            return me.decide(Action::Drop, Reason::CastDrop, frame);
        }
        return me.decide(Action::ToIpmp, Reason::CastToIpmp, frame);
    }
    if eth[..6] != me.info.mac {
        return pass;
    }
    match w.addrs.get(&dst) {
        Some(a) if a.group_ifindex == me.info.group_ifindex => {
            me.decide(Action::ToIpmp, Reason::RxToIpmp, frame)
        }
        _ => pass,
    }
}
