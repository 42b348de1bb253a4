//! Packet builders for fixture tests: Ethernet, ARP, IPv4 (with fragments), IPv6 (with
//! extension headers), TCP, UDP, ICMP, ICMPv6, neighbour discovery and MLD, all with correct
//! checksums, plus the checksum arithmetic itself (RFC 1071) so tests can verify what the
//! programs write.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipmp_common::packet::{
    ARPHRD_ETHER, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_OPT_SOURCE_LL, ND_OPT_TARGET_LL,
};

pub type Mac = [u8; 6];

pub const BROADCAST: Mac = [0xff; 6];

/// IPv6 next-header values of the extension headers the TC program walks.
pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_AUTH: u8 = 51;
pub const NEXTHDR_DEST: u8 = 60;
pub const NEXTHDR_NONE: u8 = 59;

/// ICMPv6 type of a multicast listener query (RFC 2710, RFC 3810).
pub const MLD_QUERY: u8 = 130;

/// Adds `data` as big-endian 16-bit words to `sum` (an odd last byte is padded with zero).
pub fn sum16(data: &[u8], mut sum: u32) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folds a 32-bit sum to 16 bits and complements it: the Internet checksum.
pub fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum16(data, 0))
}

/// Partial sum of the IPv4 pseudo-header (RFC 793/768).
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut sum = sum16(&src.octets(), 0);
    sum = sum16(&dst.octets(), sum);
    sum + u32::from(proto) + len as u32
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 8.1).
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> u32 {
    let mut sum = sum16(&src.octets(), 0);
    sum = sum16(&dst.octets(), sum);
    sum + u32::from(next) + len as u32
}

/// Whether an ICMPv6 message carries a correct checksum for these addresses.
pub fn icmpv6_checksum_ok(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> bool {
    fold(sum16(msg, pseudo_v6(src, dst, IPPROTO_ICMPV6, msg.len()))) == 0
}

/// An Ethernet frame.
pub fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet/IPv4 ARP message (28 bytes).
pub fn arp(op: u16, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = Vec::with_capacity(28);
    a.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
    a.extend_from_slice(&ETH_P_IP.to_be_bytes());
    a.push(6);
    a.push(4);
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// An ARP frame from `sha`, to `eth_dst`.
pub fn arp_frame(
    eth_dst: Mac,
    op: u16,
    sha: Mac,
    spa: Ipv4Addr,
    tha: Mac,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    ethernet(eth_dst, sha, ETH_P_ARP, &arp(op, sha, spa, tha, tpa))
}

/// Pads a frame with zeros to the Ethernet minimum of 60 bytes (without FCS).
pub fn pad60(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

/// An IPv4 header to build packets from.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub tos: u8,
    pub ttl: u8,
    pub id: u16,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// Options (padded to a multiple of 4 bytes by `build`).
    pub options: Vec<u8>,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            tos: 0,
            ttl: 64,
            id: 0x1234,
            more_fragments: false,
            frag_offset: 0,
            options: Vec::new(),
        }
    }

    /// The header followed by `payload`, with the header checksum filled in.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut options = self.options.clone();
        options.resize(options.len().next_multiple_of(4), 0);
        let hlen = 20 + options.len();
        let total = hlen + payload.len();
        let frag = (u16::from(self.more_fragments) << 13) | (self.frag_offset & 0x1fff);
        let mut h = Vec::with_capacity(total);
        h.push(0x40 | (hlen / 4) as u8);
        h.push(self.tos);
        h.extend_from_slice(&(total as u16).to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&frag.to_be_bytes());
        h.push(self.ttl);
        h.push(self.proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&options);
        let csum = checksum(&h);
        h[10..12].copy_from_slice(&csum.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    /// Ethernet frame carrying this header and `payload`.
    pub fn frame(&self, eth_dst: Mac, eth_src: Mac, payload: &[u8]) -> Vec<u8> {
        ethernet(eth_dst, eth_src, ETH_P_IP, &self.build(payload))
    }
}

/// An IPv6 header to build packets from.
#[derive(Clone, Debug)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Next header of the fixed header (the first extension header, or the upper layer).
    pub next: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6 {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next: u8) -> Self {
        Self {
            src,
            dst,
            next,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
    }

    /// The fixed header followed by `payload` (extension headers and upper layer).
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let word0 =
            (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xf_ffff);
        let mut h = Vec::with_capacity(40 + payload.len());
        h.extend_from_slice(&word0.to_be_bytes());
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.push(self.next);
        h.push(self.hop_limit);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(payload);
        h
    }

    /// Ethernet frame carrying this header and `payload`.
    pub fn frame(&self, eth_dst: Mac, eth_src: Mac, payload: &[u8]) -> Vec<u8> {
        ethernet(eth_dst, eth_src, ETH_P_IPV6, &self.build(payload))
    }
}

/// A hop-by-hop, destination options or routing header of `len8` 8-byte units after the
/// first 8 bytes, padded with PadN (options) or zeros (routing).
pub fn ipv6_ext(next: u8, len8: u8) -> Vec<u8> {
    let total = (usize::from(len8) + 1) * 8;
    let mut h = vec![0u8; total];
    h[0] = next;
    h[1] = len8;
    // PadN option covering the rest (harmless for a routing header fixture too).
    h[2] = 1;
    h[3] = (total - 4) as u8;
    h
}

/// An IPv6 fragment header; `offset` in 8-byte units.
pub fn ipv6_fragment(next: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

/// The addresses of an L3 header, for L4 checksums.
#[derive(Clone, Copy, Debug)]
pub enum Pseudo {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Pseudo {
    fn sum(self, proto: u8, len: usize) -> u32 {
        match self {
            Pseudo::V4(s, d) => pseudo_v4(s, d, proto, len),
            Pseudo::V6(s, d) => pseudo_v6(s, d, proto, len),
        }
    }
}

/// A TCP segment (20-byte header, ACK set) with its checksum.
pub fn tcp(pseudo: Pseudo, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.push(5 << 4);
    t.push(0x10);
    t.extend_from_slice(&0xffffu16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let csum = fold(sum16(&t, pseudo.sum(IPPROTO_TCP, t.len())));
    t[16..18].copy_from_slice(&csum.to_be_bytes());
    t
}

/// A UDP datagram with its checksum.
pub fn udp(pseudo: Pseudo, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut csum = fold(sum16(&u, pseudo.sum(IPPROTO_UDP, len)));
    if csum == 0 {
        csum = 0xffff;
    }
    u[6..8].copy_from_slice(&csum.to_be_bytes());
    u
}

/// An ICMP (IPv4) message of `kind` with an echo-style header (id, sequence).
pub fn icmp(kind: u8, code: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let csum = checksum(&m);
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

/// An ICMPv6 message: type, code, then `body`, with the checksum over the pseudo-header.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(body);
    let csum = fold(sum16(&m, pseudo_v6(src, dst, IPPROTO_ICMPV6, m.len())));
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

/// An ICMPv6 echo message (`kind` request or reply) with `id` and `seq`.
pub fn icmpv6_echo(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(b"ipmp");
    icmpv6(src, dst, kind, 0, &body)
}

/// An ICMPv6 echo message (`kind` request or reply) with `id`, `seq` and `payload`.
pub fn icmpv6_echo_payload(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    kind: u8,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(payload);
    icmpv6(src, dst, kind, 0, &body)
}

/// The payload of one of ipmpd's echo probes (`ipmp_common::ProbePayload` on the wire),
/// followed by `pad` filler bytes as a prober may add.
pub fn probe_payload(cookie: u64, seq: u32, send_ns: u64, pad: usize) -> Vec<u8> {
    let mut p = ipmp_common::ProbePayload::echo(cookie, seq, send_ns)
        .to_bytes()
        .to_vec();
    p.extend(std::iter::repeat_n(0xa5, pad));
    p
}

/// Whether an IPv4 packet (header without Ethernet) carries a correct header checksum and a
/// correct ICMP checksum.
pub fn icmpv4_checksums_ok(ip: &[u8]) -> bool {
    let Some(&first) = ip.first() else {
        return false;
    };
    let hlen = usize::from(first & 0x0f) * 4;
    let Some(total) = ip
        .get(2..4)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return false;
    };
    match (ip.get(..hlen), ip.get(hlen..total)) {
        (Some(header), Some(msg)) => checksum(header) == 0 && checksum(msg) == 0,
        _ => false,
    }
}

/// Solicited-node multicast address of `addr` (RFC 4291 2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 7).
pub fn multicast_mac(addr: Ipv6Addr) -> Mac {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// Ethernet multicast MAC of an IPv4 multicast address (RFC 1112 6.4: 01:00:5e and the low
/// 23 bits of the group).
pub fn multicast_mac_v4(addr: Ipv4Addr) -> Mac {
    let o = addr.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// A hop-by-hop options header (8 bytes) holding a router alert for MLD (RFC 2711, value 0),
/// as every MLD message carries (RFC 3810 5).
pub fn ipv6_router_alert(next: u8) -> Vec<u8> {
    vec![next, 0, 5, 2, 0, 0, 1, 0]
}

/// An MLDv2 general query (RFC 3810 5.1) from the router `src` to all-nodes, hop limit 1,
/// behind a hop-by-hop router alert.
pub fn mld_query(eth_src: Mac, src: Ipv6Addr) -> Vec<u8> {
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    // Maximum response code (10 s), reserved, multicast address ::, S/QRV 2, QQIC 125 s,
    // no sources.
    let mut body = 10_000u16.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    body.extend_from_slice(&[2, 125, 0, 0]);
    let mut payload = ipv6_router_alert(IPPROTO_ICMPV6);
    payload.extend_from_slice(&icmpv6(src, dst, MLD_QUERY, 0, &body));
    let mut ip = Ipv6::new(src, dst, NEXTHDR_HOP);
    ip.hop_limit = 1;
    ip.frame(multicast_mac(dst), eth_src, &payload)
}

/// A link-layer address option (source or target) for `mac`.
pub fn nd_ll_option(kind: u8, mac: Mac) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&mac);
    o
}

/// A neighbour solicitation frame from `src` (`::` for DAD) for `target`, to its
/// solicited-node address, optionally with a source link-layer option and extra options.
pub fn neighbour_solicitation(
    eth_src: Mac,
    src: Ipv6Addr,
    target: Ipv6Addr,
    source_ll: bool,
    extra_options: &[u8],
) -> Vec<u8> {
    let dst = solicited_node(target);
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&target.octets());
    if source_ll {
        body.extend_from_slice(&nd_ll_option(ND_OPT_SOURCE_LL, eth_src));
    }
    body.extend_from_slice(extra_options);
    let msg = icmpv6(src, dst, ND_NEIGHBOR_SOLICIT, 0, &body);
    let mut ip = Ipv6::new(src, dst, IPPROTO_ICMPV6);
    ip.hop_limit = 255;
    ip.frame(multicast_mac(dst), eth_src, &msg)
}

/// A neighbour advertisement frame with one target link-layer option.
pub fn neighbour_advertisement(
    eth_dst: Mac,
    eth_src: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    flags: u8,
    target: Ipv6Addr,
) -> Vec<u8> {
    let mut body = vec![flags, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&nd_ll_option(ND_OPT_TARGET_LL, eth_src));
    let msg = icmpv6(src, dst, ND_NEIGHBOR_ADVERT, 0, &body);
    let mut ip = Ipv6::new(src, dst, IPPROTO_ICMPV6);
    ip.hop_limit = 255;
    ip.frame(eth_dst, eth_src, &msg)
}

#[cfg(test)]
mod tests {
    use ipmp_common::packet::ICMPV6_ECHO_REQUEST;

    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (before complement).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = Ipv4::new(
            Ipv4Addr::new(198, 51, 100, 10),
            Ipv4Addr::new(203, 0, 113, 7),
            IPPROTO_UDP,
        )
        .build(&[1, 2, 3]);
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 23);
    }

    #[test]
    fn l4_checksums_verify() {
        let (s, d) = (
            Ipv4Addr::new(198, 51, 100, 10),
            Ipv4Addr::new(203, 0, 113, 7),
        );
        let t = tcp(Pseudo::V4(s, d), 40000, 443, b"abc");
        assert_eq!(fold(sum16(&t, pseudo_v4(s, d, IPPROTO_TCP, t.len()))), 0);
        let u = udp(Pseudo::V4(s, d), 40000, 53, b"abcd");
        assert_eq!(fold(sum16(&u, pseudo_v4(s, d, IPPROTO_UDP, u.len()))), 0);
        let (s6, d6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:1::10".parse().unwrap(),
            "2001:db8:2::7".parse().unwrap(),
        );
        let u6 = udp(Pseudo::V6(s6, d6), 1, 2, b"x");
        assert_eq!(
            fold(sum16(&u6, pseudo_v6(s6, d6, IPPROTO_UDP, u6.len()))),
            0
        );
        let e = icmpv6_echo(s6, d6, ICMPV6_ECHO_REQUEST, 7, 1);
        assert!(icmpv6_checksum_ok(s6, d6, &e));
        assert!(!icmpv6_checksum_ok(s6, s6, &e));
    }

    #[test]
    fn echo_builders_verify() {
        let (s6, d6): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:1::10".parse().unwrap(),
            "fe80::2".parse().unwrap(),
        );
        let payload = probe_payload(7, 0x0001_0002, 99, 3);
        assert_eq!(payload.len(), ipmp_common::probe::PROBE_PAYLOAD_LEN + 3);
        assert_eq!(
            ipmp_common::ProbePayload::from_bytes(&payload),
            Some(ipmp_common::ProbePayload::echo(7, 0x0001_0002, 99))
        );
        let e = icmpv6_echo_payload(s6, d6, ICMPV6_ECHO_REQUEST, 1, 2, &payload);
        assert!(icmpv6_checksum_ok(s6, d6, &e));
        assert_eq!(&e[8..], payload.as_slice());
        let ip = Ipv4::new(
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 10),
            1,
        )
        .build(&icmp(8, 0, 1, 2, &payload));
        assert!(icmpv4_checksums_ok(&ip));
        let mut bad = ip.clone();
        bad[30] ^= 1;
        assert!(!icmpv4_checksums_ok(&bad));
        assert!(!icmpv4_checksums_ok(&ip[..30]));
    }

    #[test]
    fn solicited_node_and_multicast_mac() {
        let a: Ipv6Addr = "2001:db8:1::abcd:1234".parse().unwrap();
        assert_eq!(
            solicited_node(a),
            "ff02::1:ffcd:1234".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(solicited_node(a)),
            [0x33, 0x33, 0xff, 0xcd, 0x12, 0x34]
        );
    }

    #[test]
    fn ipv4_multicast_mac() {
        assert_eq!(
            multicast_mac_v4(Ipv4Addr::new(224, 0, 0, 251)),
            [0x01, 0x00, 0x5e, 0, 0, 0xfb]
        );
        // Only 23 bits of the group survive.
        assert_eq!(
            multicast_mac_v4(Ipv4Addr::new(239, 129, 2, 3)),
            [0x01, 0x00, 0x5e, 0x01, 2, 3]
        );
    }

    #[test]
    fn mld_query_layout() {
        let s: Ipv6Addr = "fe80::1".parse().unwrap();
        let all: Ipv6Addr = "ff02::1".parse().unwrap();
        let f = mld_query([2, 0, 0, 0, 0, 1], s);
        assert_eq!(f.len(), 14 + 40 + 8 + 28);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f[20], NEXTHDR_HOP);
        assert_eq!(f[21], 1);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 8 + 28);
        assert_eq!(f[54], IPPROTO_ICMPV6);
        assert_eq!(f[62], MLD_QUERY);
        assert!(icmpv6_checksum_ok(s, all, &f[62..]));
    }

    #[test]
    fn ns_layout() {
        let t: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let s: Ipv6Addr = "2001:db8:1::99".parse().unwrap();
        let f = neighbour_solicitation([2, 0, 0, 0, 0, 9], s, t, true, &[]);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(f[20], IPPROTO_ICMPV6);
        assert_eq!(f[21], 255);
        assert_eq!(f[54], ND_NEIGHBOR_SOLICIT);
        assert_eq!(&f[62..78], &t.octets());
        assert!(icmpv6_checksum_ok(s, solicited_node(t), &f[54..]));
    }
}
