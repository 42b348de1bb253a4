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
