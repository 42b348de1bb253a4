//! Echo on a member (README "Probing"): an echo request to the member's MAC for a data
//! address bound to it or for its own test address is answered in place (addresses and MACs
//! swapped, hop limit 64, ICMP and IPv4 header checksums updated incrementally), unless the
//! group turned echo answering off or the source is unspecified, loopback (IPv4), multicast or broadcast; one for another member's test address goes to the
//! member's stack. Only plain headers are answered: IPv4 without options or fragmentation,
//! ICMPv6 right after the IPv6 header. An echo reply with the daemon's echo id (under its
//! mask), the probe magic, cookie and a sequence that mirrors the ICMP one is timestamped
//! into `IPMP_PROBES` (and dropped with `MEMBER_F_PROBE_RING_ONLY`); with the id and magic but
//! a wrong cookie or sequence it is dropped as forged.

use ipmp_common::{
    AddrKey, FAMILY_V4, FAMILY_V6, MEMBER_F_NO_ECHO, MEMBER_F_PROBE_RING_ONLY, PROBE_CFG_F_ENABLED,
    PROBE_EV_ECHO, Reason,
    packet::{ICMP4, ICMP6, IPV4_HLEN, L3},
    probe::{
        PROBE_MAGIC, PROBE_OFF_COOKIE, PROBE_OFF_KIND, PROBE_OFF_MAGIC, PROBE_OFF_SEND_NS,
        PROBE_OFF_SEQ, PROBE_PAYLOAD_LEN,
    },
};

use super::{
    Bytes, World, be16, be32, be64,
    decision::{Action, Decision, Member, event},
    take16,
};

const ECHO_HLEN: usize = 8;

/// An IPv4 echo to this member's MAC; `None`: not an echo answered or recorded here.
pub fn echo4(w: &World, me: &Member, frame: &[u8]) -> Option<Decision> {
    let f = Bytes(frame);
    let ip = f.get::<IPV4_HLEN>(L3)?;
    if ip[0] != 0x45 || ip[9] != 1 || be16(&ip, 6) & 0x3fff != 0 {
        return None;
    }
    let malformed = Some(me.decide(Action::Pass, Reason::RxMalformed, frame));
    if frame.len() < ICMP4 + ECHO_HLEN {
        return malformed;
    }
    let total = usize::from(be16(&ip, 2));
    if total < IPV4_HLEN + ECHO_HLEN || L3 + total > frame.len() {
        return malformed;
    }
    let (src, dst) = (&ip[12..16], &ip[16..20]);
    match frame[ICMP4] {
        8 => {
            let dst4 = [dst[0], dst[1], dst[2], dst[3]];
            match request(w, me, AddrKey::v4(dst4)) {
                Request::Answer => {}
                Request::Pass => return Some(me.decide(Action::Pass, Reason::EchoPass, frame)),
                Request::Leave => return None,
            }
            if src[0] == 0 || src[0] == 127 || src[0] >= 224 {
                return None;
            }
            let mut out = frame.to_vec();
            out[L3 + 12..L3 + 16].copy_from_slice(dst);
            out[L3 + 16..L3 + 20].copy_from_slice(src);
            // Swapped addresses leave the sum as it was; the TTL's word changes.
            let old = be16(&out, L3 + 8);
            out[L3 + 8] = 64;
            let check = csum_replace(be16(&out, L3 + 10), old, be16(&out, L3 + 8));
            out[L3 + 10..L3 + 12].copy_from_slice(&check.to_be_bytes());
            Some(answer(me, frame, out, ICMP4, 0))
        }
        0 => {
            let mut target = [0u8; 16];
            target[..4].copy_from_slice(src);
            let mut local = [0u8; 16];
            local[..4].copy_from_slice(dst);
            probe_reply(
                w,
                me,
                frame,
                FAMILY_V4,
                ICMP4,
                total - IPV4_HLEN,
                target,
                local,
            )
        }
        _ => None,
    }
}

/// An IPv6 echo to this member's MAC; `None` as for [`echo4`].
pub fn echo6(w: &World, me: &Member, frame: &[u8]) -> Option<Decision> {
    let f = Bytes(frame);
    let ip = f.get::<40>(L3)?;
    if ip[0] >> 4 != 6 || ip[6] != 58 {
        return None;
    }
    let malformed = Some(me.decide(Action::Pass, Reason::RxMalformed, frame));
    if frame.len() < ICMP6 + ECHO_HLEN {
        return malformed;
    }
    let payload = usize::from(be16(&ip, 4));
    if payload < ECHO_HLEN || ICMP6 + payload > frame.len() {
        return malformed;
    }
    let (src, dst) = (take16(&ip, 8), take16(&ip, 24));
    match frame[ICMP6] {
        128 => {
            match request(w, me, AddrKey::v6(dst)) {
                Request::Answer => {}
                Request::Pass => return Some(me.decide(Action::Pass, Reason::EchoPass, frame)),
                Request::Leave => return None,
            }
            if src[0] == 0xff || src == [0u8; 16] {
                return None;
            }
            let mut out = frame.to_vec();
            out[L3 + 8..L3 + 24].copy_from_slice(&dst);
            out[L3 + 24..L3 + 40].copy_from_slice(&src);
            out[L3 + 7] = 64;
            Some(answer(me, frame, out, ICMP6, 129))
        }
        129 => probe_reply(w, me, frame, FAMILY_V6, ICMP6, payload, src, dst),
        _ => None,
    }
}

/// What a member does with an echo request for an address.
enum Request {
    Answer,
    /// To the member's stack, counted (another member's test address).
    Pass,
    /// Not decided here (the ordinary rules apply).
    Leave,
}

fn request(w: &World, me: &Member, dst: AddrKey) -> Request {
    let here = if let Some(a) = w.addrs.get(&dst) {
        a.bound_ifindex == me.ifindex
    } else {
        match w.testaddrs.get(&dst) {
            Some(t) if t.member_ifindex == me.ifindex => true,
            Some(_) => return Request::Pass,
            None => false,
        }
    };
    if here && me.info.flags & MEMBER_F_NO_ECHO == 0 {
        Request::Answer
    } else {
        Request::Leave
    }
}

/// The reply in `out` (addresses already swapped): echo type, checksum adjusted for the new
/// type word (RFC 1624), MACs reflected.
fn answer(me: &Member, frame: &[u8], mut out: Vec<u8>, at: usize, reply: u8) -> Decision {
    let old = be16(&out, at);
    out[at] = reply;
    let check = csum_replace(be16(&out, at + 2), old, be16(&out, at));
    out[at + 2..at + 4].copy_from_slice(&check.to_be_bytes());
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&me.info.mac);
    let mut d = me.decide(Action::Tx, Reason::EchoReply, frame);
    d.output = out;
    d
}

/// RFC 1624 eqn. 3: checksum `check` after one 16-bit word went from `old` to `new`.
fn csum_replace(check: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// An echo reply whose ICMP header is at `icmp` and whose IP header says `icmp_len` bytes.
#[expect(clippy::too_many_arguments, reason = "the fields of one parsed reply")]
fn probe_reply(
    w: &World,
    me: &Member,
    frame: &[u8],
    family: u32,
    icmp: usize,
    icmp_len: usize,
    target: [u8; 16],
    local: [u8; 16],
) -> Option<Decision> {
    let cfg = w.config;
    if cfg.flags & PROBE_CFG_F_ENABLED == 0 || icmp_len < ECHO_HLEN + PROBE_PAYLOAD_LEN {
        return None;
    }
    let id = be16(frame, icmp + 4);
    if !cfg.id_matches(id) {
        return None;
    }
    let p = Bytes(frame).get::<PROBE_PAYLOAD_LEN>(icmp + ECHO_HLEN)?;
    if be32(&p, PROBE_OFF_MAGIC) != PROBE_MAGIC {
        return None;
    }
    let (cookie, seq) = (be64(&p, PROBE_OFF_COOKIE), be32(&p, PROBE_OFF_SEQ));
    if cookie != cfg.cookie || seq as u16 != be16(frame, icmp + 6) {
        return Some(me.decide(Action::Drop, Reason::ProbeForged, frame));
    }
    let mut ev = event(me, family, PROBE_EV_ECHO);
    ev.send_ns = be64(&p, PROBE_OFF_SEND_NS);
    ev.cookie = cookie;
    ev.id = u32::from(id);
    ev.seq = seq;
    ev.msg = be32(&p, PROBE_OFF_KIND);
    ev.target = target;
    ev.local = local;
    ev.mac.copy_from_slice(&frame[6..12]);
    let ring_only = me.info.flags & MEMBER_F_PROBE_RING_ONLY != 0;
    let mut d = if ring_only {
        me.decide(Action::Drop, Reason::ProbeRingOnly, frame)
    } else {
        me.decide(Action::Pass, Reason::ProbeReply, frame)
    };
    d.event = Some(ev);
    Some(d)
}
