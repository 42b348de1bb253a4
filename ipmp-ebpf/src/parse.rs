//! Flow keys of the TC programs on the way out.
//!
//! Headers at fixed offsets (Ethernet, the IP header, the ports behind an IPv4 header without
//! options or an IPv6 header without extensions) are read directly from the packet when the
//! linear part holds them (the IP headers and ports a word at a time), as it does for what
//! the host's stack sends; anything else is copied to the stack with `bpf_skb_load_bytes`,
//! which also works when headers are not in the linear part and keeps variable offsets (IHL,
//! IPv6 extension headers) away from the verifier's packet-pointer tracking. The member programs on the way in use [`crate::frame`].

use aya_ebpf::programs::TcContext;

use crate::frame::Frame as _;
use ipmp_common::{
    FlowKey,
    packet::{
        ETH_HLEN, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
        IP4_DST, IP4_FRAG, IP4_FRAG_MF, IP4_FRAG_OFFSET, IP4_PROTO, IP4_SRC, IP6_DST, IP6_NEXT,
        IP6_SRC, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPV4_HLEN,
        IPV6_HLEN,
    },
};

/// IPv6 extension headers walked to find the upper-layer protocol.
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
/// Where the ports are behind an IPv4 header without options and behind an IPv6 header
/// without extension headers.
const V4_L4: usize = ETH_HLEN + IPV4_HLEN;
const V6_L4: usize = ETH_HLEN + IPV6_HLEN;
/// Most extension headers walked before giving up on finding ports.
const MAX_EXT_HEADERS: usize = 6;

/// Whether a MAC address is broadcast or multicast (the I/G bit of its first byte).
#[inline(always)]
pub const fn is_group_mac(first_byte: u8) -> bool {
    first_byte & 1 != 0
}

/// Copies `N` bytes at `offset` of an skb to the stack.
#[inline(always)]
pub fn skb_bytes<const N: usize>(ctx: &TcContext, offset: usize) -> Option<[u8; N]> {
    ctx.load::<[u8; N]>(offset).ok()
}

/// [`skb_bytes`] for a constant `offset`: read directly when the linear part holds the bytes
/// (no helper call), copied with the helper when it does not.
#[inline(always)]
pub fn head_bytes<const N: usize>(ctx: &TcContext, offset: usize) -> Option<[u8; N]> {
    match crate::frame::Tc(ctx).peek::<N>(offset) {
        Some(bytes) => Some(*bytes),
        None => skb_bytes(ctx, offset),
    }
}

/// [`head_bytes`] in whole words (`frame::word`: one load per 4 bytes, not one per byte).
#[inline(always)]
fn head_words<const N: usize>(ctx: &TcContext, offset: usize) -> Option<[u32; N]> {
    match crate::frame::Tc(ctx).peek_words::<N>(offset) {
        Some(words) => Some(words),
        None => ctx.load::<[u32; N]>(offset).ok(),
    }
}

#[inline(always)]
pub const fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// The byte at offset `at` of a header read as words.
#[inline(always)]
const fn byte<const N: usize>(words: &[u32; N], at: usize) -> u8 {
    words[at / 4].to_ne_bytes()[at % 4]
}

/// The word at offset `at` (a multiple of 4) of a header read as words.
#[inline(always)]
const fn word<const N: usize>(words: &[u32; N], at: usize) -> u32 {
    assert!(at.is_multiple_of(4));
    words[at / 4]
}

/// Flow key plus what `bpf_fib_lookup` wants besides it.
pub struct Flow {
    pub key: FlowKey,
    /// IPv4 TOS byte, or the first word of the IPv6 header (version, traffic class, flow
    /// label; the kernel masks the version off).
    pub tos: u8,
    pub flowinfo: u32,
}

/// Why a packet has no flow key.
pub enum FlowError {
    /// Neither IPv4 nor IPv6.
    NotIp,
    /// Truncated or malformed header.
    Malformed,
}

/// Builds the flow key of an IPv4 or IPv6 packet as `ipmp_common::flow` documents it.
#[inline(always)]
pub fn tc_flow(ctx: &TcContext, ethertype: u16) -> Result<Flow, FlowError> {
    match ethertype {
        ipmp_common::packet::ETH_P_IP => tc_flow_v4(ctx),
        ipmp_common::packet::ETH_P_IPV6 => tc_flow_v6(ctx),
        _ => Err(FlowError::NotIp),
    }
}

#[inline(always)]
fn tc_flow_v4(ctx: &TcContext) -> Result<Flow, FlowError> {
    let ip: [u32; IPV4_HLEN / 4] = head_words(ctx, ETH_HLEN).ok_or(FlowError::Malformed)?;
    let version_ihl = byte(&ip, 0);
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < IPV4_HLEN {
        return Err(FlowError::Malformed);
    }
    let proto = byte(&ip, IP4_PROTO);
    let frag = be16([byte(&ip, IP4_FRAG), byte(&ip, IP4_FRAG + 1)]);
    // Every fragment of a datagram, the first included, hashes without ports so that all of
    // them leave through the same member.
    let fragment = frag & (IP4_FRAG_MF | IP4_FRAG_OFFSET) != 0;
    let mut key = FlowKey {
        src: [word(&ip, IP4_SRC), 0, 0, 0],
        dst: [word(&ip, IP4_DST), 0, 0, 0],
        sport: 0,
        dport: 0,
        proto,
        ip_version: 4,
    };
    if !fragment {
        l4_ports(ctx, ETH_HLEN + ihl, proto, &mut key)?;
    }
    Ok(Flow {
        key,
        tos: byte(&ip, 1),
        flowinfo: 0,
    })
}

#[inline(always)]
fn tc_flow_v6(ctx: &TcContext) -> Result<Flow, FlowError> {
    let ip: [u32; IPV6_HLEN / 4] = head_words(ctx, ETH_HLEN).ok_or(FlowError::Malformed)?;
    if byte(&ip, 0) >> 4 != 6 {
        return Err(FlowError::Malformed);
    }
    let mut next = byte(&ip, IP6_NEXT);
    let mut offset = ETH_HLEN + IPV6_HLEN;
    let mut fragment = false;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let h: [u8; 2] = skb_bytes(ctx, offset).ok_or(FlowError::Malformed)?;
                next = h[0];
                offset += (usize::from(h[1]) + 1) * 8;
            }
            NEXTHDR_AUTH => {
                let h: [u8; 2] = skb_bytes(ctx, offset).ok_or(FlowError::Malformed)?;
                next = h[0];
                offset += (usize::from(h[1]) + 2) * 4;
            }
            NEXTHDR_FRAGMENT => {
                // The fragment header names the same upper-layer protocol in every fragment;
                // stop here so that all fragments hash alike (without ports).
                let h: [u8; 2] = skb_bytes(ctx, offset).ok_or(FlowError::Malformed)?;
                next = h[0];
                fragment = true;
                break;
            }
            _ => break,
        }
    }
    let mut key = FlowKey {
        src: [
            word(&ip, IP6_SRC),
            word(&ip, IP6_SRC + 4),
            word(&ip, IP6_SRC + 8),
            word(&ip, IP6_SRC + 12),
        ],
        dst: [
            word(&ip, IP6_DST),
            word(&ip, IP6_DST + 4),
            word(&ip, IP6_DST + 8),
            word(&ip, IP6_DST + 12),
        ],
        sport: 0,
        dport: 0,
        proto: next,
        ip_version: 6,
    };
    if !fragment {
        l4_ports(ctx, offset, next, &mut key)?;
    }
    Ok(Flow {
        key,
        tos: 0,
        flowinfo: word(&ip, 0),
    })
}

/// Fills in ports (TCP, UDP, SCTP) or the echo id (ICMP, ICMPv6) from the L4 header at
/// `offset`; other protocols have none.
#[inline(always)]
fn l4_ports(ctx: &TcContext, offset: usize, proto: u8, key: &mut FlowKey) -> Result<(), FlowError> {
    match proto {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            // The usual offsets as constants, so that they can be read directly.
            let [ports] = match offset {
                V4_L4 => head_words(ctx, V4_L4),
                V6_L4 => head_words(ctx, V6_L4),
                _ => ctx.load::<[u32; 1]>(offset).ok(),
            }
            .ok_or(FlowError::Malformed)?;
            let p = ports.to_ne_bytes();
            key.sport = u16::from_ne_bytes([p[0], p[1]]);
            key.dport = u16::from_ne_bytes([p[2], p[3]]);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let h: [u8; 6] = skb_bytes(ctx, offset).ok_or(FlowError::Malformed)?;
            let echo = if proto == IPPROTO_ICMP {
                h[0] == ICMP_ECHO_REQUEST || h[0] == ICMP_ECHO_REPLY
            } else {
                h[0] == ICMPV6_ECHO_REQUEST || h[0] == ICMPV6_ECHO_REPLY
            };
            if echo {
                key.sport = u16::from_ne_bytes([h[4], h[5]]);
            }
        }
        _ => {}
    }
    Ok(())
}
