//! The probing part of the member programs: answers ICMP/ICMPv6 echo requests for data
//! addresses bound to this member and for this member's test addresses from the member itself
//! (so ipmp hosts can be each other's probe targets at line rate), and timestamps replies to
//! ipmpd's own probes into `IPMP_PROBES`: echo replies carrying the daemon's echo id, probe
//! magic and cookie, and ARP replies / solicited neighbour advertisements from targets a
//! member probes with ARP/NDP.
//!
//! Every handler returns `None` when the frame is not its business; the dispatch in `member`
//! then goes on with its other rules.

use aya_ebpf::helpers::generated::bpf_ktime_get_ns;
use ipmp_common::{
    AddrKey, FAMILY_V4, FAMILY_V6, MEMBER_F_NO_ECHO, MEMBER_F_PROBE_RING_ONLY, PROBE_CFG_F_ENABLED,
    PROBE_EV_ARP, PROBE_EV_ECHO, PROBE_EV_NA, ProbeEvent, Reason, TARGET_F_NEIGH, TargetKey,
    packet::{
        ARP_LEN, ARP_SHA, ARP_SPA, ARP_THA, ARP_TPA, ECHO_HLEN, ETH_ALEN, ETH_DST, ETH_HLEN,
        ETH_P_IP, ETH_P_IPV6, ETH_SRC, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP4, ICMP6,
        ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, IP4_CHECK, IP4_DST, IP4_FRAG, IP4_PROTO, IP4_SRC,
        IP4_TOTLEN, IP4_TTL, IP6_DST, IP6_HOPS, IP6_NEXT, IP6_PLEN, IP6_SRC, IPPROTO_ICMP,
        IPPROTO_ICMPV6, IPV4_HLEN, IPV6_HLEN, L3, ND_MIN, ND_NA_FLAG_SOLICITED, ND_TARGET,
    },
    probe::{
        PROBE_MAGIC, PROBE_OFF_COOKIE, PROBE_OFF_KIND, PROBE_OFF_MAGIC, PROBE_OFF_SEND_NS,
        PROBE_OFF_SEQ, PROBE_PAYLOAD_LEN,
    },
};

use crate::{
    device::Member,
    frame::{Action, Frame, Outcome, be32, be64, csum_replace, mac_eq, take},
    maps::{
        Exit, IPMP_ADDRS, IPMP_CONFIG, IPMP_PROBES, IPMP_TARGETS, IPMP_TESTADDRS, Verdict,
        addr_key_v4, target_key_v4, zero,
    },
    parse::be16,
};

/// TTL / hop limit of the answers (Linux's default, net.ipv4.ip_default_ttl).
const REPLY_HOPS: u8 = 64;
/// ND messages are only valid with hop limit 255 (RFC 4861 7.1.2).
const ND_HOPS: u8 = 255;
/// Ethernet, IPv4 (no options) and echo header of an IPv4 echo; likewise for IPv6.
const ECHO4_HDRS: usize = ICMP4 + ECHO_HLEN;
const ECHO6_HDRS: usize = ICMP6 + ECHO_HLEN;

/// Echo requests and replies to this member's MAC. `None`: not an echo handled here.
#[inline(always)]
pub fn echo<F: Frame>(
    f: &F,
    me: &Member,
    eth: &[u8; ETH_HLEN],
    ethertype: u16,
) -> Result<Option<Verdict<Action>>, Exit> {
    // Only frames for this member's own MAC: never answer what a promiscuous device overhears.
    if !mac_eq(eth, ETH_DST, me.info.mac) {
        return Ok(None);
    }
    match ethertype {
        ETH_P_IP => echo_v4(f, me).get(),
        ETH_P_IPV6 => echo_v6(f, me).get(),
        _ => Ok(None),
    }
}

/// A BPF subprogram of its own, like the handlers in `member`.
#[inline(never)]
fn echo_v4<F: Frame>(f: &F, me: &Member) -> Outcome {
    Outcome::new(echo4(f, me))
}

#[inline(always)]
fn echo4<F: Frame>(f: &F, me: &Member) -> Result<Option<Verdict<Action>>, Exit> {
    let slot = me.slot();
    let Some(ip) = f.peek::<IPV4_HLEN>(L3) else {
        return Ok(None);
    };
    // Version 4 and IHL 5 (requests with IP options, record route or timestamp, need the
    // stack's option processing), ICMP, not a fragment (the stack reassembles).
    if ip[0] != 0x45
        || ip[IP4_PROTO] != IPPROTO_ICMP
        || be16([ip[IP4_FRAG], ip[IP4_FRAG + 1]]) & 0x3fff != 0
    {
        return Ok(None);
    }
    let malformed = Exit::new(slot, Reason::RxMalformed);
    let mut h = f.copy::<ECHO4_HDRS>(0).ok_or(malformed)?;
    let total = usize::from(be16([ip[IP4_TOTLEN], ip[IP4_TOTLEN + 1]]));
    if total < IPV4_HLEN + ECHO_HLEN || L3 + total > f.len() as usize {
        return Err(malformed);
    }
    let src = take::<4, IPV4_HLEN>(ip, IP4_SRC);
    let dst = take::<4, IPV4_HLEN>(ip, IP4_DST);
    match h[ICMP4] {
        ICMP_ECHO_REQUEST => {
            if let Err(verdict) = request_owner(me, addr_key_v4(dst)) {
                return Ok(verdict);
            }
            // Not to broadcast, multicast, loopback or unspecified sources (no smurf
            // amplification); the stack applies its own rules to those.
            if src[0] == 0 || src[0] == 127 || src[0] >= 224 {
                return Ok(None);
            }
            // Swapping the addresses leaves the header's sum as it was; only the TTL's word
            // changes, so the checksum is updated for it (RFC 1624), as the ICMP one is.
            let ip = L3;
            let old = be16([h[ip + IP4_TTL], h[ip + IP4_TTL + 1]]);
            h[ip + IP4_SRC..ip + IP4_SRC + 4].copy_from_slice(&dst);
            h[ip + IP4_DST..ip + IP4_DST + 4].copy_from_slice(&src);
            h[ip + IP4_TTL] = REPLY_HOPS;
            let new = be16([h[ip + IP4_TTL], h[ip + IP4_TTL + 1]]);
            let check = csum_replace(be16([h[ip + IP4_CHECK], h[ip + IP4_CHECK + 1]]), old, new);
            h[ip + IP4_CHECK..ip + IP4_CHECK + 2].copy_from_slice(&check.to_be_bytes());
            echo_to_reply(&mut h, ICMP4, ICMP_ECHO_REPLY);
            reflect(&mut h, me);
            f.store(0, &h)
                .map_err(|()| Exit::new(slot, Reason::PassError))?;
            Ok(Some(me.verdict(Action::Tx, Reason::EchoReply)))
        }
        ICMP_ECHO_REPLY => {
            let mut target = [0u8; 16];
            target[..4].copy_from_slice(&src);
            let mut local = [0u8; 16];
            local[..4].copy_from_slice(&dst);
            let reply = EchoReply {
                family: FAMILY_V4,
                payload_off: ECHO4_HDRS,
                icmp_len: total - IPV4_HLEN,
                id_seq: take::<4, ECHO4_HDRS>(&h, ICMP4 + 4),
                target,
                local,
                mac: take::<ETH_ALEN, ECHO4_HDRS>(&h, ETH_SRC),
            };
            probe_reply(f, me, &reply)
        }
        _ => Ok(None),
    }
}

#[inline(never)]
fn echo_v6<F: Frame>(f: &F, me: &Member) -> Outcome {
    Outcome::new(echo6(f, me))
}

#[inline(always)]
fn echo6<F: Frame>(f: &F, me: &Member) -> Result<Option<Verdict<Action>>, Exit> {
    let slot = me.slot();
    let Some(ip) = f.peek::<IPV6_HLEN>(L3) else {
        return Ok(None);
    };
    // ICMPv6 right after the fixed header; echoes behind extension headers go to the stack.
    if ip[0] >> 4 != 6 || ip[IP6_NEXT] != IPPROTO_ICMPV6 {
        return Ok(None);
    }
    let malformed = Exit::new(slot, Reason::RxMalformed);
    let mut h = f.copy::<ECHO6_HDRS>(0).ok_or(malformed)?;
    let payload = usize::from(be16([ip[IP6_PLEN], ip[IP6_PLEN + 1]]));
    if payload < ECHO_HLEN || ICMP6 + payload > f.len() as usize {
        return Err(malformed);
    }
    let src = take::<16, IPV6_HLEN>(ip, IP6_SRC);
    let dst = take::<16, IPV6_HLEN>(ip, IP6_DST);
    match h[ICMP6] {
        ICMPV6_ECHO_REQUEST => {
            if let Err(verdict) = request_owner(me, AddrKey::v6(dst)) {
                return Ok(verdict);
            }
            // Not to multicast or unspecified sources; the stack decides about those.
            if src[0] == 0xff || src.iter().fold(0, |acc, b| acc | b) == 0 {
                return Ok(None);
            }
            // Swapping source and destination leaves the pseudo-header sum as it is.
            h[L3 + IP6_SRC..L3 + IP6_SRC + 16].copy_from_slice(&dst);
            h[L3 + IP6_DST..L3 + IP6_DST + 16].copy_from_slice(&src);
            h[L3 + IP6_HOPS] = REPLY_HOPS;
            echo_to_reply(&mut h, ICMP6, ICMPV6_ECHO_REPLY);
            reflect(&mut h, me);
            f.store(0, &h)
                .map_err(|()| Exit::new(slot, Reason::PassError))?;
            Ok(Some(me.verdict(Action::Tx, Reason::EchoReply)))
        }
        ICMPV6_ECHO_REPLY => {
            let reply = EchoReply {
                family: FAMILY_V6,
                payload_off: ECHO6_HDRS,
                icmp_len: payload,
                id_seq: take::<4, ECHO6_HDRS>(&h, ICMP6 + 4),
                target: src,
                local: dst,
                mac: take::<ETH_ALEN, ECHO6_HDRS>(&h, ETH_SRC),
            };
            probe_reply(f, me, &reply)
        }
        _ => Ok(None),
    }
}

/// What to do with an echo request for an address.
enum Owner {
    /// A data address bound to this member or its test address; answer (unless echo
    /// answering is off in the group).
    Here,
    /// Another member's test address.
    OtherTestAddress,
    /// A data address bound to another member (or to none), or none of ipmp's addresses.
    Other,
}

#[inline(always)]
fn owner(me: &Member, dst: AddrKey) -> Owner {
    // SAFETY: copied at once; updates replace elements under RCU.
    if let Some(a) = unsafe { IPMP_ADDRS.get(dst) } {
        if a.bound_ifindex == me.ifindex {
            return Owner::Here;
        }
        return Owner::Other;
    }
    // SAFETY: as above.
    match unsafe { IPMP_TESTADDRS.get(dst) } {
        Some(t) if t.member_ifindex == me.ifindex => Owner::Here,
        Some(_) => Owner::OtherTestAddress,
        None => Owner::Other,
    }
}

/// `Ok` when this member answers an echo request for `dst`; otherwise the verdict: `EchoPass`
/// for another member's test address (the request came here through a stale neighbour entry
/// of the sender; this member's kernel sees it), `None` (the ordinary rules: a data address
/// enters through the IPMP interface, whose kernel answers) for the rest, and when echo
/// answering is off in the group.
#[inline(always)]
fn request_owner(me: &Member, dst: AddrKey) -> Result<(), Option<Verdict<Action>>> {
    match owner(me, dst) {
        Owner::Here if me.info.flags & MEMBER_F_NO_ECHO == 0 => Ok(()),
        Owner::Here | Owner::Other => Err(None),
        Owner::OtherTestAddress => Err(Some(me.verdict(Action::Pass, Reason::EchoPass))),
    }
}

/// Turns the echo request header at `at` of `h` into the reply: new type, checksum updated
/// incrementally (RFC 1624 eqn. 3), so a request that arrived corrupted leaves with a
/// checksum that is still wrong instead of being laundered. Identifier, sequence and payload
/// stay.
#[inline(always)]
fn echo_to_reply<const N: usize>(h: &mut [u8; N], at: usize, reply_type: u8) {
    let old = be16([h[at], h[at + 1]]);
    h[at] = reply_type;
    let new = be16([h[at], h[at + 1]]);
    let check = csum_replace(be16([h[at + 2], h[at + 3]]), old, new);
    h[at + 2..at + 4].copy_from_slice(&check.to_be_bytes());
}

/// Addresses the frame whose headers are `h` back to its sender, from this member.
#[inline(always)]
fn reflect<const N: usize>(h: &mut [u8; N], me: &Member) {
    let sender = take::<ETH_ALEN, N>(h, ETH_SRC);
    h[ETH_DST..ETH_DST + ETH_ALEN].copy_from_slice(&sender);
    h[ETH_SRC..ETH_SRC + ETH_ALEN].copy_from_slice(&me.info.mac);
}

/// An echo reply as the parsers found it.
#[derive(Clone, Copy)]
struct EchoReply {
    family: u32,
    /// Offset of the echo payload in the frame.
    payload_off: usize,
    /// ICMP length from the IP header (header and payload).
    icmp_len: usize,
    /// Identifier and sequence as on the wire.
    id_seq: [u8; 4],
    /// Source address (the target that answered) and destination address.
    target: [u8; 16],
    local: [u8; 16],
    /// Ethernet source.
    mac: [u8; ETH_ALEN],
}

/// An echo reply: timestamped when it answers one of the daemon's probes (its echo id, probe
/// magic and cookie), dropped as forged when it has the id and magic but not the cookie or
/// sequence; `None` for every other reply.
#[inline(always)]
fn probe_reply<F: Frame>(
    f: &F,
    me: &Member,
    reply: &EchoReply,
) -> Result<Option<Verdict<Action>>, Exit> {
    let EchoReply {
        family,
        payload_off,
        icmp_len,
        id_seq,
        target,
        local,
        mac,
    } = *reply;
    let Some(cfg) = IPMP_CONFIG.get(0) else {
        return Ok(None);
    };
    let cfg = *cfg;
    if cfg.flags & PROBE_CFG_F_ENABLED == 0 || icmp_len < ECHO_HLEN + PROBE_PAYLOAD_LEN {
        return Ok(None);
    }
    let id = be16([id_seq[0], id_seq[1]]);
    if !cfg.id_matches(id) {
        return Ok(None);
    }
    let Some(p) = f.peek::<PROBE_PAYLOAD_LEN>(payload_off) else {
        return Ok(None);
    };
    if be32(p, PROBE_OFF_MAGIC) != PROBE_MAGIC {
        return Ok(None);
    }
    let cookie = be64(p, PROBE_OFF_COOKIE);
    let seq = be32(p, PROBE_OFF_SEQ);
    let msg = be32(p, PROBE_OFF_KIND);
    if cookie != cfg.cookie || seq as u16 != be16([id_seq[2], id_seq[3]]) {
        return Ok(Some(me.verdict(Action::Drop, Reason::ProbeForged)));
    }
    let send_ns = be64(p, PROBE_OFF_SEND_NS);
    let pushed = push(me, family, PROBE_EV_ECHO, |ev| {
        ev.send_ns = send_ns;
        ev.cookie = cookie;
        ev.id = u32::from(id);
        ev.seq = seq;
        ev.msg = msg;
        ev.target = target;
        ev.local = local;
        ev.mac = mac;
    });
    if !pushed {
        return Ok(Some(me.verdict(Action::Pass, Reason::ProbeRingFull)));
    }
    if me.info.flags & MEMBER_F_PROBE_RING_ONLY != 0 {
        return Ok(Some(me.verdict(Action::Drop, Reason::ProbeRingOnly)));
    }
    Ok(Some(me.verdict(Action::Pass, Reason::ProbeReply)))
}

/// An ARP reply to this member from one of its ARP-probed targets: timestamped, passed.
#[inline(always)]
pub fn arp_reply(me: &Member, a: &[u8; ARP_LEN]) -> Option<Verdict<Action>> {
    // The reply answers this member's request: its target hardware address is this member.
    if !mac_eq(a, ARP_THA, me.info.mac) {
        return None;
    }
    let spa = take::<4, ARP_LEN>(a, ARP_SPA);
    if !neigh_target(target_key_v4(me.ifindex, spa)) {
        return None;
    }
    let tpa = take::<4, ARP_LEN>(a, ARP_TPA);
    let sha = take::<ETH_ALEN, ARP_LEN>(a, ARP_SHA);
    let pushed = push(me, FAMILY_V4, PROBE_EV_ARP, |ev| {
        ev.target[..4].copy_from_slice(&spa);
        ev.local[..4].copy_from_slice(&tpa);
        ev.mac = sha;
    });
    Some(neigh_verdict(me, pushed))
}

/// A solicited neighbour advertisement to this member from one of its NDP-probed targets:
/// timestamped, passed. `ip` is the frame's IPv6 header (next header ICMPv6, type NA).
#[inline(always)]
pub fn neighbour_advert<F: Frame>(
    f: &F,
    me: &Member,
    eth: &[u8; ETH_HLEN],
    ip: &[u8; IPV6_HLEN],
) -> Option<Verdict<Action>> {
    if !mac_eq(eth, ETH_DST, me.info.mac) {
        return None;
    }
    let na = f.peek::<ND_MIN>(ICMP6)?;
    if ip[IP6_HOPS] != ND_HOPS || na[1] != 0 || na[4] & ND_NA_FLAG_SOLICITED == 0 {
        return None;
    }
    let target = take::<16, ND_MIN>(na, ND_TARGET);
    if !neigh_target(TargetKey::new(me.ifindex, AddrKey::v6(target))) {
        return None;
    }
    let local = take::<16, IPV6_HLEN>(ip, IP6_DST);
    let mac = take::<ETH_ALEN, ETH_HLEN>(eth, ETH_SRC);
    let pushed = push(me, FAMILY_V6, PROBE_EV_NA, |ev| {
        ev.target = target;
        ev.local = local;
        ev.mac = mac;
    });
    Some(neigh_verdict(me, pushed))
}

/// Whether `key` is a target its member probes with ARP/NDP.
#[inline(always)]
fn neigh_target(key: TargetKey) -> bool {
    // SAFETY: copied at once.
    unsafe { IPMP_TARGETS.get(key) }.is_some_and(|t| t.flags & TARGET_F_NEIGH != 0)
}

#[inline(always)]
fn neigh_verdict(me: &Member, pushed: bool) -> Verdict<Action> {
    let reason = if pushed {
        Reason::ProbeNeigh
    } else {
        Reason::ProbeRingFull
    };
    me.verdict(Action::Pass, reason)
}

/// Writes one event, stamped now, into `IPMP_PROBES`; false when the ring is full.
#[inline(always)]
fn push(me: &Member, family: u32, kind: u32, fill: impl FnOnce(&mut ProbeEvent)) -> bool {
    // SAFETY: plain helper call.
    let rx_ns = unsafe { bpf_ktime_get_ns() };
    let Some(mut entry) = IPMP_PROBES.reserve(0) else {
        return false;
    };
    {
        let ev = zero(&mut entry);
        ev.rx_ns = rx_ns;
        ev.ifindex = me.ifindex;
        ev.family = family;
        ev.kind = kind;
        fill(ev);
    }
    entry.submit(0);
    true
}
