//! XDP on members, the probing part: answers ICMP/ICMPv6 echo requests for data addresses bound
//! to this member and for this member's test addresses with XDP_TX (so ipmp hosts can be each
//! other's probe targets at line rate), and timestamps replies to ipmpd's own probes into
//! `IPMP_PROBES`: echo replies carrying the daemon's echo id, probe magic and cookie, and ARP
//! replies / solicited neighbour advertisements from targets a member probes with ARP/NDP.
//!
//! Every handler returns `None` when the packet is not its business; the dispatch in
//! `xdp_member` then goes on with its other rules.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::generated::bpf_ktime_get_ns,
    programs::XdpContext,
};
use ipmp_common::{
    AddrKey, FAMILY_V4, FAMILY_V6, GROUP_F_NO_ECHO, GROUP_F_PROBE_RING_ONLY, PROBE_CFG_F_ENABLED,
    PROBE_EV_ARP, PROBE_EV_ECHO, PROBE_EV_NA, ProbeEvent, Reason, TARGET_F_NEIGH, TargetKey,
    packet::{
        ARP_LEN, ETH_ALEN, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
        ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_ICMPV6, IPV6_HLEN,
        ND_NA_FLAG_SOLICITED,
    },
    probe::{
        PROBE_MAGIC, PROBE_OFF_COOKIE, PROBE_OFF_KIND, PROBE_OFF_MAGIC, PROBE_OFF_SEND_NS,
        PROBE_OFF_SEQ, PROBE_PAYLOAD_LEN,
    },
};

use crate::{
    maps::{
        Exit, IPMP_ADDRS, IPMP_CONFIG, IPMP_GROUPS, IPMP_PROBES, IPMP_TARGETS, IPMP_TESTADDRS,
        Verdict, addr_key_v4, target_key_v4, zero,
    },
    parse::{ETH_DST, ETH_SRC, IPV4_HLEN, be16, xdp_bytes, xdp_len},
    xdp_member::{
        ARP_SHA, ARP_SPA, ARP_THA, ARP_TPA, ICMP6, IP6, IP6_DST, IP6_HOPS, IP6_NEXT, IP6_PLEN,
        IP6_SRC, Member,
    },
};

/// ICMP/ICMPv6 echo header: type, code, checksum, identifier, sequence.
const ECHO_HLEN: usize = 8;
/// IPv4 header and ICMP in the frame. Only IHL 5 is handled here: requests with IP options
/// (record route, timestamp) need the stack's option processing.
const IP4: usize = ETH_HLEN;
const ICMP4: usize = ETH_HLEN + IPV4_HLEN;
/// TTL / hop limit of the answers (Linux's default, net.ipv4.ip_default_ttl).
const REPLY_HOPS: u8 = 64;
/// ND messages are only valid with hop limit 255 (RFC 4861 7.1.2).
const ND_HOPS: u8 = 255;
/// A neighbour advertisement up to its target: type, code, checksum, flags (4), target (16).
const NA_MIN: usize = 24;
const ND_TARGET: usize = 8;

/// Echo requests and replies to this member's MAC. `None`: not an echo handled here.
#[inline(always)]
pub fn echo(ctx: &XdpContext, me: &Member, ethertype: u16) -> Result<Option<Verdict<u32>>, Exit> {
    let slot = me.info.stats_slot;
    let eth = xdp_bytes::<ETH_HLEN>(ctx, 0).ok_or(Exit::new(slot, Reason::RxMalformed))?;
    // SAFETY: bounds checked by xdp_bytes.
    let eth = unsafe { &*eth };
    // Only frames for this member's own MAC: never answer what a promiscuous device overhears.
    if !mac_eq(eth, ETH_DST, me.info.mac) {
        return Ok(None);
    }
    match ethertype {
        ETH_P_IP => echo_v4(ctx, me),
        ETH_P_IPV6 => echo_v6(ctx, me),
        _ => Ok(None),
    }
}

#[inline(always)]
fn echo_v4(ctx: &XdpContext, me: &Member) -> Result<Option<Verdict<u32>>, Exit> {
    let slot = me.info.stats_slot;
    let Some(ip) = xdp_bytes::<IPV4_HLEN>(ctx, IP4) else {
        return Ok(None);
    };
    // SAFETY: bounds checked by xdp_bytes.
    let ip = unsafe { &mut *ip };
    // Version 4 and IHL 5, ICMP, not a fragment (the stack reassembles).
    if ip[0] != 0x45 || ip[9] != IPPROTO_ICMP || be16([ip[6], ip[7]]) & 0x3fff != 0 {
        return Ok(None);
    }
    let malformed = Exit::new(slot, Reason::RxMalformed);
    let icmp = xdp_bytes::<ECHO_HLEN>(ctx, ICMP4).ok_or(malformed)?;
    // SAFETY: bounds checked by xdp_bytes.
    let icmp = unsafe { &mut *icmp };
    let total = usize::from(be16([ip[2], ip[3]]));
    if total < IPV4_HLEN + ECHO_HLEN || IP4 + total > xdp_len(ctx) as usize {
        return Err(malformed);
    }
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    match icmp[0] {
        ICMP_ECHO_REQUEST => {
            if let Err(verdict) = request_owner(me, addr_key_v4(dst)) {
                return Ok(verdict);
            }
            // Not to broadcast, multicast, loopback or unspecified sources (no smurf
            // amplification); the stack applies its own rules to those.
            if src[0] == 0 || src[0] == 127 || src[0] >= 224 {
                return Ok(None);
            }
            ip[12..16].copy_from_slice(&dst);
            ip[16..20].copy_from_slice(&src);
            ip[8] = REPLY_HOPS;
            ip[10] = 0;
            ip[11] = 0;
            let check = ipv4_header_checksum(ip);
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            echo_to_reply(icmp, ICMP_ECHO_REPLY);
            reflect(ctx, me)?;
            Ok(Some(Verdict::new(XDP_TX, slot, Reason::EchoReply)))
        }
        ICMP_ECHO_REPLY => {
            let mut target = [0u8; 16];
            target[..4].copy_from_slice(&src);
            let mut local = [0u8; 16];
            local[..4].copy_from_slice(&dst);
            let reply = EchoReply {
                family: FAMILY_V4,
                payload_off: ICMP4 + ECHO_HLEN,
                icmp_len: total - IPV4_HLEN,
                id_seq: [icmp[4], icmp[5], icmp[6], icmp[7]],
                target,
                local,
            };
            probe_reply(ctx, me, &reply)
        }
        _ => Ok(None),
    }
}

#[inline(always)]
fn echo_v6(ctx: &XdpContext, me: &Member) -> Result<Option<Verdict<u32>>, Exit> {
    let slot = me.info.stats_slot;
    let Some(ip) = xdp_bytes::<IPV6_HLEN>(ctx, IP6) else {
        return Ok(None);
    };
    // SAFETY: bounds checked by xdp_bytes.
    let ip = unsafe { &mut *ip };
    // ICMPv6 right after the fixed header; echoes behind extension headers go to the stack.
    if ip[0] >> 4 != 6 || ip[IP6_NEXT] != IPPROTO_ICMPV6 {
        return Ok(None);
    }
    let malformed = Exit::new(slot, Reason::RxMalformed);
    let icmp = xdp_bytes::<ECHO_HLEN>(ctx, ICMP6).ok_or(malformed)?;
    // SAFETY: bounds checked by xdp_bytes.
    let icmp = unsafe { &mut *icmp };
    let payload = usize::from(be16([ip[IP6_PLEN], ip[IP6_PLEN + 1]]));
    if payload < ECHO_HLEN || ICMP6 + payload > xdp_len(ctx) as usize {
        return Err(malformed);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[IP6_SRC..IP6_SRC + 16]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&ip[IP6_DST..IP6_DST + 16]);
    match icmp[0] {
        ICMPV6_ECHO_REQUEST => {
            if let Err(verdict) = request_owner(me, AddrKey::v6(dst)) {
                return Ok(verdict);
            }
            // Not to multicast or unspecified sources; the stack decides about those.
            if src[0] == 0xff || src.iter().fold(0, |acc, b| acc | b) == 0 {
                return Ok(None);
            }
            // Swapping source and destination leaves the pseudo-header sum as it is.
            ip[IP6_SRC..IP6_SRC + 16].copy_from_slice(&dst);
            ip[IP6_DST..IP6_DST + 16].copy_from_slice(&src);
            ip[IP6_HOPS] = REPLY_HOPS;
            echo_to_reply(icmp, ICMPV6_ECHO_REPLY);
            reflect(ctx, me)?;
            Ok(Some(Verdict::new(XDP_TX, slot, Reason::EchoReply)))
        }
        ICMPV6_ECHO_REPLY => {
            let reply = EchoReply {
                family: FAMILY_V6,
                payload_off: ICMP6 + ECHO_HLEN,
                icmp_len: payload,
                id_seq: [icmp[4], icmp[5], icmp[6], icmp[7]],
                target: src,
                local: dst,
            };
            probe_reply(ctx, me, &reply)
        }
        _ => Ok(None),
    }
}

/// What to do with an echo request for an address.
enum Owner {
    /// A data address bound to this member or its test address; answer (unless echo
    /// answering is off in the group).
    Here { group_ifindex: u32 },
    /// A data address bound to another member (or to none) or another member's test address.
    Elsewhere,
    /// None of ipmp's addresses.
    Unknown,
}

#[inline(always)]
fn owner(me: &Member, dst: AddrKey) -> Owner {
    // SAFETY: copied at once; updates replace elements under RCU.
    let found = match unsafe { IPMP_ADDRS.get(dst) } {
        Some(a) => Some((a.bound_ifindex, a.group_ifindex)),
        // SAFETY: as above.
        None => unsafe { IPMP_TESTADDRS.get(dst) }.map(|t| (t.member_ifindex, t.group_ifindex)),
    };
    match found {
        Some((owner, group_ifindex)) if owner == me.ifindex => Owner::Here { group_ifindex },
        Some(_) => Owner::Elsewhere,
        None => Owner::Unknown,
    }
}

/// `Ok` when this member answers an echo request for `dst`; otherwise the verdict: `EchoPass`
/// when another member owns the address (the request came here through a stale neighbour
/// entry of the sender; the kernel answers it), `None` (the ordinary rules) when the address
/// is none of ipmp's or echo answering is off in the group.
#[inline(always)]
fn request_owner(me: &Member, dst: AddrKey) -> Result<(), Option<Verdict<u32>>> {
    match owner(me, dst) {
        Owner::Here { group_ifindex } if group_flags(group_ifindex) & GROUP_F_NO_ECHO == 0 => {
            Ok(())
        }
        Owner::Here { .. } | Owner::Unknown => Err(None),
        Owner::Elsewhere => Err(Some(Verdict::new(
            XDP_PASS,
            me.info.stats_slot,
            Reason::EchoPass,
        ))),
    }
}

/// `GroupInfo::flags` of a group; 0 (the defaults) when it has no entry.
#[inline(always)]
fn group_flags(group_ifindex: u32) -> u32 {
    // SAFETY: copied at once.
    unsafe { IPMP_GROUPS.get(group_ifindex) }.map_or(0, |g| g.flags)
}

/// Turns an echo request header into the reply: new type, checksum updated incrementally
/// (RFC 1624 eqn. 3), so a request that arrived corrupted leaves with a checksum that is
/// still wrong instead of being laundered. Identifier, sequence and payload stay.
#[inline(always)]
fn echo_to_reply(icmp: &mut [u8; ECHO_HLEN], reply_type: u8) {
    let old = be16([icmp[0], icmp[1]]);
    icmp[0] = reply_type;
    let new = be16([icmp[0], icmp[1]]);
    let check = csum_replace(be16([icmp[2], icmp[3]]), old, new);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
}

/// Addresses the frame back to its sender, from this member.
#[inline(always)]
fn reflect(ctx: &XdpContext, me: &Member) -> Result<(), Exit> {
    let eth =
        xdp_bytes::<ETH_HLEN>(ctx, 0).ok_or(Exit::new(me.info.stats_slot, Reason::PassError))?;
    // SAFETY: bounds checked by xdp_bytes.
    let eth = unsafe { &mut *eth };
    let mut sender = [0u8; ETH_ALEN];
    sender.copy_from_slice(&eth[ETH_SRC..ETH_SRC + ETH_ALEN]);
    eth[ETH_DST..ETH_DST + ETH_ALEN].copy_from_slice(&sender);
    eth[ETH_SRC..ETH_SRC + ETH_ALEN].copy_from_slice(&me.info.mac);
    Ok(())
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
}

/// An echo reply: timestamped when it answers one of the daemon's probes (its echo id, probe
/// magic and cookie), dropped as forged when it has the id and magic but not the cookie or
/// sequence; `None` for every other reply.
#[inline(always)]
fn probe_reply(
    ctx: &XdpContext,
    me: &Member,
    reply: &EchoReply,
) -> Result<Option<Verdict<u32>>, Exit> {
    let EchoReply {
        family,
        payload_off,
        icmp_len,
        id_seq,
        target,
        local,
    } = *reply;
    let slot = me.info.stats_slot;
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
    let Some(p) = xdp_bytes::<PROBE_PAYLOAD_LEN>(ctx, payload_off) else {
        return Ok(None);
    };
    // SAFETY: bounds checked by xdp_bytes.
    let p = unsafe { &*p };
    if be32(p, PROBE_OFF_MAGIC) != PROBE_MAGIC {
        return Ok(None);
    }
    let cookie = be64(p, PROBE_OFF_COOKIE);
    let seq = be32(p, PROBE_OFF_SEQ);
    let msg = be32(p, PROBE_OFF_KIND);
    if cookie != cfg.cookie || seq as u16 != be16([id_seq[2], id_seq[3]]) {
        return Ok(Some(Verdict::new(XDP_DROP, slot, Reason::ProbeForged)));
    }
    let send_ns = be64(p, PROBE_OFF_SEND_NS);
    let mac = eth_src(ctx).ok_or(Exit::new(slot, Reason::RxMalformed))?;
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
        return Ok(Some(Verdict::new(XDP_PASS, slot, Reason::ProbeRingFull)));
    }
    if group_flags(me.info.group_ifindex) & GROUP_F_PROBE_RING_ONLY != 0 {
        return Ok(Some(Verdict::new(XDP_DROP, slot, Reason::ProbeRingOnly)));
    }
    Ok(Some(Verdict::new(XDP_PASS, slot, Reason::ProbeReply)))
}

/// An ARP reply to this member from one of its ARP-probed targets: timestamped, passed.
#[inline(always)]
pub fn arp_reply(me: &Member, a: &[u8; ARP_LEN]) -> Option<Verdict<u32>> {
    // The reply answers this member's request: its target hardware address is this member.
    if !mac_eq(a, ARP_THA, me.info.mac) {
        return None;
    }
    let spa = [a[ARP_SPA], a[ARP_SPA + 1], a[ARP_SPA + 2], a[ARP_SPA + 3]];
    if !neigh_target(target_key_v4(me.ifindex, spa)) {
        return None;
    }
    let tpa = [a[ARP_TPA], a[ARP_TPA + 1], a[ARP_TPA + 2], a[ARP_TPA + 3]];
    let mut sha = [0u8; ETH_ALEN];
    sha.copy_from_slice(&a[ARP_SHA..ARP_SHA + ETH_ALEN]);
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
pub fn neighbour_advert(
    ctx: &XdpContext,
    me: &Member,
    ip: &[u8; IPV6_HLEN],
) -> Option<Verdict<u32>> {
    let eth = xdp_bytes::<ETH_HLEN>(ctx, 0)?;
    // SAFETY: bounds checked by xdp_bytes.
    let eth = unsafe { &*eth };
    if !mac_eq(eth, ETH_DST, me.info.mac) {
        return None;
    }
    let na = xdp_bytes::<NA_MIN>(ctx, ICMP6)?;
    // SAFETY: bounds checked by xdp_bytes.
    let na = unsafe { &*na };
    if ip[IP6_HOPS] != ND_HOPS || na[1] != 0 || na[4] & ND_NA_FLAG_SOLICITED == 0 {
        return None;
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&na[ND_TARGET..ND_TARGET + 16]);
    if !neigh_target(TargetKey::new(me.ifindex, AddrKey::v6(target))) {
        return None;
    }
    let mut local = [0u8; 16];
    local.copy_from_slice(&ip[IP6_DST..IP6_DST + 16]);
    let mut mac = [0u8; ETH_ALEN];
    mac.copy_from_slice(&eth[ETH_SRC..ETH_SRC + ETH_ALEN]);
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
fn neigh_verdict(me: &Member, pushed: bool) -> Verdict<u32> {
    let reason = if pushed {
        Reason::ProbeNeigh
    } else {
        Reason::ProbeRingFull
    };
    Verdict::new(XDP_PASS, me.info.stats_slot, reason)
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

/// Ethernet source of the frame.
#[inline(always)]
fn eth_src(ctx: &XdpContext) -> Option<[u8; ETH_ALEN]> {
    let eth = xdp_bytes::<ETH_HLEN>(ctx, 0)?;
    // SAFETY: bounds checked by xdp_bytes.
    let eth = unsafe { &*eth };
    let mut mac = [0u8; ETH_ALEN];
    mac.copy_from_slice(&eth[ETH_SRC..ETH_SRC + ETH_ALEN]);
    Some(mac)
}

/// Whether the 6 bytes at `at` of `b` are `mac` (byte by byte: no `bcmp` call in BPF).
#[inline(always)]
fn mac_eq<const N: usize>(b: &[u8; N], at: usize, mac: [u8; ETH_ALEN]) -> bool {
    let mut diff = 0;
    let mut i = 0;
    while i < ETH_ALEN {
        diff |= b[at + i] ^ mac[i];
        i += 1;
    }
    diff == 0
}

#[inline(always)]
fn be32<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn be64<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// One's complement sum folded to 16 bits and complemented.
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The header checksum of an IPv4 header without options (checksum field zero).
#[inline(always)]
fn ipv4_header_checksum(ip: &[u8; IPV4_HLEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_HLEN {
        sum += u32::from(be16([ip[i], ip[i + 1]]));
        i += 2;
    }
    fold(sum)
}

/// RFC 1624 eqn. 3: the checksum `check` after a 16-bit word changed from `old` to `new`.
#[inline(always)]
fn csum_replace(check: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}
