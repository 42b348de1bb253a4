//! Wire constants shared by the XDP responder and the userspace announcer.

pub const ETH_HLEN: usize = 14;
pub const ETH_ALEN: usize = 6;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86DD;

/// ARP over Ethernet for IPv4: 28 bytes after the Ethernet header.
pub const ARP_LEN: usize = 28;
pub const ARPHRD_ETHER: u16 = 1;
pub const ARPOP_REQUEST: u16 = 1;
pub const ARPOP_REPLY: u16 = 2;

pub const IPV6_HLEN: usize = 40;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
pub const ND_ROUTER_SOLICIT: u8 = 133;
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
pub const ND_REDIRECT: u8 = 137;
/// Neighbour advertisement flags (first byte after the ICMPv6 checksum).
pub const ND_NA_FLAG_ROUTER: u8 = 0x80;
pub const ND_NA_FLAG_SOLICITED: u8 = 0x40;
pub const ND_NA_FLAG_OVERRIDE: u8 = 0x20;
/// ND options: source and target link-layer address.
pub const ND_OPT_SOURCE_LL: u8 = 1;
pub const ND_OPT_TARGET_LL: u8 = 2;
/// A neighbour advertisement with one target link-layer option: ICMPv6 header (4), flags (4),
/// target (16), option (8).
pub const ND_NA_LEN: usize = 32;

/// Ethernet header field offsets.
pub const ETH_DST: usize = 0;
pub const ETH_SRC: usize = 6;
pub const ETH_PROTO: usize = 12;

/// ARP field offsets inside the ARP header (which starts at `ETH_HLEN`).
pub const ARP_OP: usize = 6;
pub const ARP_SHA: usize = 8;
pub const ARP_SPA: usize = 14;
pub const ARP_THA: usize = 18;
pub const ARP_TPA: usize = 24;

/// IPv4 header without options, and field offsets inside it.
pub const IPV4_HLEN: usize = 20;
pub const IP4_TOTLEN: usize = 2;
pub const IP4_FRAG: usize = 6;
pub const IP4_TTL: usize = 8;
pub const IP4_PROTO: usize = 9;
pub const IP4_CHECK: usize = 10;
pub const IP4_SRC: usize = 12;
pub const IP4_DST: usize = 16;

/// IPv6 header field offsets.
pub const IP6_PLEN: usize = 4;
pub const IP6_NEXT: usize = 6;
pub const IP6_HOPS: usize = 7;
pub const IP6_SRC: usize = 8;
pub const IP6_DST: usize = 24;

/// Where the network header and the ICMP/ICMPv6 header sit in an untagged frame (IPv4 without
/// options, IPv6 without extension headers).
pub const L3: usize = ETH_HLEN;
pub const ICMP4: usize = ETH_HLEN + IPV4_HLEN;
pub const ICMP6: usize = ETH_HLEN + IPV6_HLEN;

/// ICMP/ICMPv6 echo header: type, code, checksum, identifier, sequence.
pub const ECHO_HLEN: usize = 8;
/// ND target address offset inside an NS or NA (after type, code, checksum and 4 bytes).
pub const ND_TARGET: usize = 8;
/// A neighbour solicitation or advertisement up to the end of its target address.
pub const ND_MIN: usize = 24;
/// IPv4 fragment bits: more fragments and the offset.
pub const IP4_FRAG_MF: u16 = 0x2000;
pub const IP4_FRAG_OFFSET: u16 = 0x1fff;

/// Whether an ICMPv6 type is a neighbour discovery message (RFC 4861: RS, RA, NS, NA,
/// redirect), which belongs to the member it arrives on.
pub const fn is_nd(icmp6_type: u8) -> bool {
    icmp6_type >= ND_ROUTER_SOLICIT && icmp6_type <= ND_REDIRECT
}
