//! The flow key of an outgoing packet (docs/architecture.md, "Flow hash"): addresses,
//! protocol, ports for TCP/UDP/SCTP or the echo id for ICMP/ICMPv6 echoes; fragments (IPv4
//! MF or offset; an IPv6 fragment header) hash without ports. IPv6 extension headers
//! (hop-by-hop, routing, destination options in units of 8 bytes, AH in units of 4) are
//! walked, at most six, to the upper-layer protocol.

use ipmp_common::{
    FlowKey,
    packet::{
        ETH_HLEN, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN,
    },
};

use super::Bytes;
use crate::packets::{
    NEXTHDR_AUTH as AUTH, NEXTHDR_DEST as DEST, NEXTHDR_FRAGMENT as FRAGMENT, NEXTHDR_HOP as HOP,
    NEXTHDR_ROUTING as ROUTING,
};

/// Most extension headers walked.
const MAX_EXT_HEADERS: usize = 6;

/// The packet has no flow key: a header is cut short or malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The flow key of an IPv4 (`v6` false) or IPv6 packet behind an untagged Ethernet header.
pub fn flow_key(f: Bytes, v6: bool) -> Result<FlowKey, Malformed> {
    if v6 { flow_v6(f) } else { flow_v4(f) }
}

fn flow_v4(f: Bytes) -> Result<FlowKey, Malformed> {
    let ip = f.get::<IPV4_HLEN>(ETH_HLEN).ok_or(Malformed)?;
    let ihl = usize::from(ip[0] & 0xf) * 4;
    if ip[0] >> 4 != 4 || ihl < IPV4_HLEN {
        return Err(Malformed);
    }
    let proto = ip[9];
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let (sport, dport) = if fragment {
        (0, 0)
    } else {
        ports(f, ETH_HLEN + ihl, proto)?
    };
    let mut key = FlowKey::v4(
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
        proto,
        0,
        0,
    );
    key.sport = sport;
    key.dport = dport;
    Ok(key)
}

fn flow_v6(f: Bytes) -> Result<FlowKey, Malformed> {
    let ip = f.get::<IPV6_HLEN>(ETH_HLEN).ok_or(Malformed)?;
    if ip[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let mut next = ip[6];
    let mut at = ETH_HLEN + IPV6_HLEN;
    let mut fragment = false;
    for _ in 0..MAX_EXT_HEADERS {
        let unit = match next {
            HOP | ROUTING | DEST => 8,
            AUTH => 4,
            FRAGMENT => {
                next = f.get::<2>(at).ok_or(Malformed)?[0];
                fragment = true;
                break;
            }
            _ => break,
        };
        let h = f.get::<2>(at).ok_or(Malformed)?;
        next = h[0];
        // AH's length counts 4-byte units minus 2, the others 8-byte units minus 1.
        at += (usize::from(h[1]) + if unit == 4 { 2 } else { 1 }) * unit;
    }
    let (sport, dport) = if fragment {
        (0, 0)
    } else {
        ports(f, at, next)?
    };
    let mut key = FlowKey::v6(take16(&ip, 8), take16(&ip, 24), next, 0, 0);
    key.sport = sport;
    key.dport = dport;
    Ok(key)
}

fn take16(b: &[u8], at: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&b[at..at + 16]);
    out
}

/// Ports as the key holds them (the wire's bytes read native-endian).
fn ports(f: Bytes, at: usize, proto: u8) -> Result<(u16, u16), Malformed> {
    match proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            let p = f.get::<4>(at).ok_or(Malformed)?;
            Ok((
                u16::from_ne_bytes([p[0], p[1]]),
                u16::from_ne_bytes([p[2], p[3]]),
            ))
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let h = f.get::<6>(at).ok_or(Malformed)?;
            let echo = if proto == IPPROTO_ICMP {
                [ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY].contains(&h[0])
            } else {
                [ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY].contains(&h[0])
            };
            Ok((
                if echo {
                    u16::from_ne_bytes([h[4], h[5]])
                } else {
                    0
                },
                0,
            ))
        }
        _ => Ok((0, 0)),
    }
}
