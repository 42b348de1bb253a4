//! Probe packets: the ICMP / ICMPv6 echo message ipmpd sends, and the check of a reply.
//!
//! The body after the 8-byte echo header is [`ipmp_common::ProbePayload`], the one layout the
//! XDP program also reads (to timestamp replies into `IPMP_PROBES`); network byte order:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | type: 8 / 128 echo request, 0 / 129 echo reply |
//! | 1 | 1 | code: 0 |
//! | 2 | 2 | checksum (IPv4: computed here; IPv6: left 0, the kernel fills it for raw ICMPv6 sockets) |
//! | 4 | 2 | identifier: per member ([`icmp_id`]) |
//! | 6 | 2 | sequence number |
//! | 8 | 4 | magic "IPMP" |
//! | 12 | 4 | message type: 0x1234 probe, 0x5678 multicast discovery, 0x9abc RTT only (in.mpathd's) |
//! | 16 | 8 | cookie: random per daemon |
//! | 24 | 4 | sequence number again (XDP checks it against the header's) |
//! | 28 | 4 | 0 |
//! | 32 | 8 | start time: ns since the prober's epoch |
//!
//! Echo responders copy the body back, so a reply that carries the daemon's cookie, the
//! member's identifier and a known message type answers one of our probes. A blind forger
//! has to guess 64 random bits; replies that fail a check are dropped and counted under a
//! [`RejectReason`].

use ipmp_common::{PROBE_PAYLOAD_LEN, ProbePayload};

use super::defs::{Family, ProbeKind, RejectReason};

/// Length of the echo message ipmpd sends (ICMP header included).
pub const ECHO_LEN: usize = 8 + PROBE_PAYLOAD_LEN;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// The fields of a probe or probe reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    pub id: u16,
    pub seq: u16,
    /// Start time in ns since the prober's epoch.
    pub timestamp_ns: u64,
    pub kind: ProbeKind,
    pub cookie: u64,
}

/// The salt of this daemon's ICMP identifiers: the cookie's top byte (in.mpathd uses its pid).
pub fn id_salt(cookie: u64) -> u8 {
    (cookie >> 56) as u8
}

/// in.mpathd's identifier: `(salt << 8) | (member index & 0xff)`. XDP matches the salt only
/// ([`id_salt_mask`]), the prober the whole identifier.
pub fn icmp_id(salt: u8, member_index: u32) -> u16 {
    (u16::from(salt) << 8) | (member_index & 0xff) as u16
}

/// (identifier, mask) under which XDP takes an echo reply for one of this daemon's probes.
pub fn id_salt_mask(cookie: u64) -> (u32, u32) {
    (u32::from(id_salt(cookie)) << 8, 0xff00)
}

fn request_type(family: Family) -> u8 {
    match family {
        Family::V4 => ICMP_ECHO_REQUEST,
        Family::V6 => ICMPV6_ECHO_REQUEST,
    }
}

fn reply_type(family: Family) -> u8 {
    match family {
        Family::V4 => ICMP_ECHO_REPLY,
        Family::V6 => ICMPV6_ECHO_REPLY,
    }
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn encode(ty: u8, family: Family, e: &Echo) -> [u8; ECHO_LEN] {
    let mut b = [0u8; ECHO_LEN];
    b[0] = ty;
    b[4..6].copy_from_slice(&e.id.to_be_bytes());
    b[6..8].copy_from_slice(&e.seq.to_be_bytes());
    let body = ProbePayload {
        kind: e.kind.code(),
        ..ProbePayload::echo(e.cookie, u32::from(e.seq), e.timestamp_ns)
    };
    b[8..].copy_from_slice(&body.to_bytes());
    if family == Family::V4 {
        let c = checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
    }
    b
}

/// The echo request for `e`.
pub fn build_request(family: Family, e: &Echo) -> [u8; ECHO_LEN] {
    encode(request_type(family), family, e)
}

/// What an echo responder sends back for `e` (tests and lab fixtures).
pub fn build_reply(family: Family, e: &Echo) -> [u8; ECHO_LEN] {
    encode(reply_type(family), family, e)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses an echo reply (`icmp` starts at the ICMP header; extra trailing bytes are allowed).
/// Checks the form only: type, code, length, IPv4 checksum, message type.
pub fn parse_reply(family: Family, icmp: &[u8]) -> Result<Echo, RejectReason> {
    if icmp.len() < ECHO_LEN {
        return Err(RejectReason::Malformed);
    }
    if icmp[0] != reply_type(family) || icmp[1] != 0 {
        return Err(RejectReason::Malformed);
    }
    if family == Family::V4 && checksum(icmp) != 0 {
        return Err(RejectReason::Malformed);
    }
    let body = ProbePayload::from_bytes(&icmp[8..]).ok_or(RejectReason::Malformed)?;
    let kind = ProbeKind::from_code(body.kind).ok_or(RejectReason::Malformed)?;
    let seq = be16(icmp, 6);
    if body.seq != u32::from(seq) {
        return Err(RejectReason::Malformed);
    }
    Ok(Echo {
        id: be16(icmp, 4),
        seq,
        timestamp_ns: body.send_ns,
        kind,
        cookie: body.cookie,
    })
}

/// Parses a reply and checks that it carries `id` and `cookie`.
pub fn validate_reply(
    family: Family,
    icmp: &[u8],
    id: u16,
    cookie: u64,
) -> Result<Echo, RejectReason> {
    let e = parse_reply(family, icmp)?;
    if e.id != id {
        return Err(RejectReason::ForeignId);
    }
    if e.cookie != cookie {
        return Err(RejectReason::BadCookie);
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn echo() -> Echo {
        Echo {
            id: 0x1203,
            seq: 77,
            timestamp_ns: 0x0102_0304_0506_0708,
            kind: ProbeKind::Unicast,
            cookie: 0xdead_beef_cafe_f00d,
        }
    }

    #[test]
    fn request_layout() {
        let b = build_request(Family::V4, &echo());
        assert_eq!(b[0], 8);
        assert_eq!(b[1], 0);
        assert_eq!(&b[4..6], &[0x12, 0x03]);
        assert_eq!(&b[6..8], &[0, 77]);
        assert_eq!(&b[8..12], b"IPMP");
        assert_eq!(&b[12..16], &[0, 0, 0x12, 0x34]);
        assert_eq!(
            &b[16..24],
            &[0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d]
        );
        assert_eq!(&b[24..28], &[0, 0, 0, 77]);
        assert_eq!(&b[32..40], &[1, 2, 3, 4, 5, 6, 7, 8]);
        // The XDP program reads the same body.
        let p = ProbePayload::from_bytes(&b[8..]).expect("payload");
        assert_eq!(
            (p.cookie, p.seq, p.send_ns),
            (echo().cookie, 77, echo().timestamp_ns)
        );
        // A valid IPv4 checksum sums to zero.
        assert_eq!(checksum(&b), 0);
        let b6 = build_request(Family::V6, &echo());
        assert_eq!(b6[0], 128);
        assert_eq!(&b6[2..4], &[0, 0]);
    }

    #[test]
    fn message_types_are_in_mpathd_s() {
        assert_eq!(ProbeKind::Unicast.code(), 0x1234);
        assert_eq!(ProbeKind::Discovery.code(), 0x5678);
        assert_eq!(ProbeKind::RttOnly.code(), 0x9abc);
        assert_eq!(icmp_id(0xab, 0x1_0203), 0xab03);
    }

    #[test]
    fn xdp_matches_every_member_s_identifier_by_the_salt() {
        let cookie = 0xab00_0000_0000_1234;
        let (id, mask) = id_salt_mask(cookie);
        for member in 0..300 {
            let ours = u32::from(icmp_id(id_salt(cookie), member));
            assert_eq!(ours & mask, id, "member {member}");
        }
        let other = u32::from(icmp_id(0xac, 3));
        assert_ne!(other & mask, id);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 sums to 0xddf2, checksum 0x220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // Odd length pads with zero.
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn replies_round_trip_for_both_families() {
        for family in [Family::V4, Family::V6] {
            let r = build_reply(family, &echo());
            assert_eq!(
                validate_reply(family, &r, 0x1203, echo().cookie),
                Ok(echo())
            );
            // Trailing bytes (padding some responders add) are fine for IPv6; for IPv4 they
            // are covered by the checksum, so append zeros which do not change it.
            let mut long = r.to_vec();
            long.extend_from_slice(&[0, 0]);
            assert_eq!(parse_reply(family, &long), Ok(echo()));
        }
    }

    #[test]
    fn bad_replies_are_typed() {
        let f = Family::V4;
        let good = build_reply(f, &echo());
        let id = 0x1203;
        let cookie = echo().cookie;
        assert_eq!(
            validate_reply(f, &good[..ECHO_LEN - 1], id, cookie),
            Err(RejectReason::Malformed)
        );
        // A request is not a reply; an IPv6 reply is not an IPv4 one.
        let req = build_request(f, &echo());
        assert_eq!(
            validate_reply(f, &req, id, cookie),
            Err(RejectReason::Malformed)
        );
        let v6 = build_reply(Family::V6, &echo());
        assert_eq!(
            validate_reply(f, &v6, id, cookie),
            Err(RejectReason::Malformed)
        );
        // Corrupted IPv4 checksum.
        let mut bad = good;
        bad[10] ^= 1;
        assert_eq!(
            validate_reply(f, &bad, id, cookie),
            Err(RejectReason::Malformed)
        );
        // Unknown message type.
        let mut e = build_reply(Family::V6, &echo());
        e[15] = 0x99;
        assert_eq!(
            validate_reply(Family::V6, &e, id, cookie),
            Err(RejectReason::Malformed)
        );
        // The body's sequence number disagrees with the header's.
        let mut e = build_reply(Family::V6, &echo());
        e[27] ^= 1;
        assert_eq!(
            validate_reply(Family::V6, &e, id, cookie),
            Err(RejectReason::Malformed)
        );
        // No magic.
        let mut e = build_reply(Family::V6, &echo());
        e[8] = 0;
        assert_eq!(
            validate_reply(Family::V6, &e, id, cookie),
            Err(RejectReason::Malformed)
        );
        assert_eq!(
            validate_reply(f, &good, id + 1, cookie),
            Err(RejectReason::ForeignId)
        );
        assert_eq!(
            validate_reply(f, &good, id, cookie ^ 1),
            Err(RejectReason::BadCookie)
        );
    }

    proptest! {
        #[test]
        fn any_echo_round_trips(
            id in any::<u16>(), seq in any::<u16>(), ts in any::<u64>(), cookie in any::<u64>(),
            kind in prop_oneof![
                Just(ProbeKind::Unicast), Just(ProbeKind::Discovery), Just(ProbeKind::RttOnly)
            ],
            v6 in any::<bool>(),
        ) {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let e = Echo { id, seq, timestamp_ns: ts, kind, cookie };
            let r = build_reply(family, &e);
            prop_assert_eq!(validate_reply(family, &r, id, cookie), Ok(e));
        }

        /// A forger that does not know the cookie never passes, whatever else it gets right.
        #[test]
        fn a_guessed_cookie_is_rejected(
            seq in any::<u16>(), ts in any::<u64>(), guess in any::<u64>(), cookie in any::<u64>(),
        ) {
            prop_assume!(guess != cookie);
            let e = Echo { id: 7, seq, timestamp_ns: ts, kind: ProbeKind::Unicast, cookie: guess };
            let r = build_reply(Family::V4, &e);
            prop_assert_eq!(validate_reply(Family::V4, &r, 7, cookie), Err(RejectReason::BadCookie));
        }

        /// Random bytes never parse as a reply with the right cookie.
        #[test]
        fn random_bytes_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(validate_reply(Family::V6, &bytes, 7, 0x5eed_5eed_5eed_5eed).is_err()
                || bytes[16..24] == 0x5eed_5eed_5eed_5eed_u64.to_be_bytes());
        }
    }
}
