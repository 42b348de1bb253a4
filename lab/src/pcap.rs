//! A reader for classic pcap files (`tcpdump -w`): each frame becomes a [`Record`] with its time,
//! MACs, ethertype and the parsed ARP or IP header with ports, so tests can tell which member
//! carried which flow (capture on the switch-side ports, [`crate::Lab::port`]).
//!
//! Link types: Ethernet (1), Linux cooked v1 (113, `-i any`) and v2 (276). pcapng is refused.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_LINUX_SLL2: u32 = 276;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PcapError {
    #[error(
        "pcap file shorter than its 24-byte header ({len} bytes): was tcpdump stopped before it wrote?"
    )]
    ShortHeader { len: usize },
    #[error(
        "not a classic pcap file (magic {magic:#010x}); pcapng is not supported: capture with tcpdump -w"
    )]
    BadMagic { magic: u32 },
    #[error("unsupported pcap link type {linktype}: capture on an Ethernet interface or `any`")]
    LinkType { linktype: u32 },
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    /// Length on the wire.
    pub wire_len: u32,
    /// None for cooked captures, which have only the source link address.
    pub dst_mac: Option<[u8; 6]>,
    pub src_mac: Option<[u8; 6]>,
    /// After VLAN tags.
    pub ethertype: u16,
    pub l3: L3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L3 {
    Arp(Arp),
    Ip(Ip),
    /// Another ethertype, or a header cut short.
    Other,
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    pub l4: L4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP or ICMPv6; `id` for echo request/reply; `target` for neighbour solicitations and
    /// advertisements (ICMPv6 135/136).
    Icmp {
        ty: u8,
        code: u8,
        id: Option<u16>,
        target: Option<Ipv6Addr>,
    },
    /// A non-first fragment, a truncated header or another protocol.
    Other,
}

/// What identifies a flow for the egress hash: protocol, addresses and ports (ICMP echo: the id
/// as source port, 0 as destination port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiveTuple {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Record {
    pub fn ip(&self) -> Option<&Ip> {
        match &self.l3 {
            L3::Ip(ip) => Some(ip),
            _ => None,
        }
    }

    pub fn arp(&self) -> Option<&Arp> {
        match &self.l3 {
            L3::Arp(arp) => Some(arp),
            _ => None,
        }
    }

    /// The flow this frame belongs to (IP frames only).
    pub fn five_tuple(&self) -> Option<FiveTuple> {
        let ip = self.ip()?;
        let (src_port, dst_port) = match ip.l4 {
            L4::Tcp {
                src_port, dst_port, ..
            }
            | L4::Udp { src_port, dst_port } => (src_port, dst_port),
            L4::Icmp { id, .. } => (id.unwrap_or(0), 0),
            L4::Other => (0, 0),
        };
        Some(FiveTuple {
            proto: ip.proto,
            src: ip.src,
            dst: ip.dst,
            src_port,
            dst_port,
        })
    }

    /// TCP or UDP source port.
    pub fn src_port(&self) -> Option<u16> {
        match self.ip()?.l4 {
            L4::Tcp { src_port, .. } | L4::Udp { src_port, .. } => Some(src_port),
            _ => None,
        }
    }

    /// TCP or UDP destination port.
    pub fn dst_port(&self) -> Option<u16> {
        match self.ip()?.l4 {
            L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } => Some(dst_port),
            _ => None,
        }
    }
}

struct Endian {
    big: bool,
}

impl Endian {
    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

/// Parses a whole classic pcap file. A record cut short at the end (tcpdump killed while
/// writing) ends the list without an error.
pub fn parse(bytes: &[u8]) -> Result<Vec<Record>, PcapError> {
    let header = bytes
        .get(..24)
        .ok_or(PcapError::ShortHeader { len: bytes.len() })?;
    let magic_le = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let (endian, nanos) = match magic_le {
        0xa1b2_c3d4 => (Endian { big: false }, false),
        0xa1b2_3c4d => (Endian { big: false }, true),
        0xd4c3_b2a1 => (Endian { big: true }, false),
        0x4d3c_b2a1 => (Endian { big: true }, true),
        magic => return Err(PcapError::BadMagic { magic }),
    };
    let linktype = endian.u32(&header[20..24]) & 0x0fff_ffff;
    if ![LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2].contains(&linktype) {
        return Err(PcapError::LinkType { linktype });
    }
    let mut records = Vec::new();
    let mut rest = &bytes[24..];
    while let Some(rh) = rest.get(..16) {
        let secs = u64::from(endian.u32(&rh[0..4]));
        let frac = endian.u32(&rh[4..8]);
        let incl = endian.u32(&rh[8..12]) as usize;
        let wire_len = endian.u32(&rh[12..16]);
        let Some(frame) = rest.get(16..16 + incl) else {
            break;
        };
        rest = &rest[16 + incl..];
        let ts = Duration::from_secs(secs)
            + if nanos {
                Duration::from_nanos(u64::from(frac))
            } else {
                Duration::from_micros(u64::from(frac))
            };
        records.push(parse_frame(linktype, ts, wire_len, frame));
    }
    Ok(records)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn mac_at(b: &[u8], at: usize) -> Option<[u8; 6]> {
    b.get(at..at + 6)?.try_into().ok()
}

fn parse_frame(linktype: u32, ts: Duration, wire_len: u32, frame: &[u8]) -> Record {
    let (dst_mac, src_mac, mut ethertype, mut off) = match linktype {
        LINKTYPE_ETHERNET => (mac_at(frame, 0), mac_at(frame, 6), be16(frame, 12), 14),
        // SLL: pkttype(2) hatype(2) halen(2) addr(8) protocol(2).
        LINKTYPE_LINUX_SLL => (None, mac_at(frame, 6), be16(frame, 14), 16),
        // SLL2: protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8).
        _ => (None, mac_at(frame, 12), be16(frame, 0), 20),
    };
    while matches!(ethertype, Some(ETH_P_8021Q | ETH_P_8021AD)) && linktype == LINKTYPE_ETHERNET {
        ethertype = be16(frame, off + 2);
        off += 4;
    }
    let ethertype = ethertype.unwrap_or(0);
    let payload = frame.get(off..).unwrap_or_default();
    let l3 = match ethertype {
        ETH_P_ARP => parse_arp(payload).map_or(L3::Other, L3::Arp),
        ETH_P_IP => parse_ipv4(payload).map_or(L3::Other, L3::Ip),
        ETH_P_IPV6 => parse_ipv6(payload).map_or(L3::Other, L3::Ip),
        _ => L3::Other,
    };
    Record {
        ts,
        wire_len,
        dst_mac,
        src_mac,
        ethertype,
        l3,
    }
}

fn ipv4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

fn ipv6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

fn parse_arp(p: &[u8]) -> Option<Arp> {
    // Ethernet (1) / IPv4 (0x0800), hlen 6, plen 4.
    if be16(p, 0)? != 1 || be16(p, 2)? != ETH_P_IP || *p.get(4)? != 6 || *p.get(5)? != 4 {
        return None;
    }
    Some(Arp {
        op: be16(p, 6)?,
        sender_mac: mac_at(p, 8)?,
        sender_ip: ipv4_at(p, 14)?,
        target_mac: mac_at(p, 18)?,
        target_ip: ipv4_at(p, 24)?,
    })
}

fn parse_ipv4(p: &[u8]) -> Option<Ip> {
    let vihl = *p.first()?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    let frag_offset = be16(p, 6)? & 0x1fff;
    let proto = *p.get(9)?;
    let src = ipv4_at(p, 12)?;
    let dst = ipv4_at(p, 16)?;
    let l4 = if frag_offset != 0 {
        L4::Other
    } else {
        parse_l4(proto, p.get(ihl..).unwrap_or_default())
    };
    Some(Ip {
        src: src.into(),
        dst: dst.into(),
        proto,
        l4,
    })
}

fn parse_ipv6(p: &[u8]) -> Option<Ip> {
    if *p.first()? >> 4 != 6 {
        return None;
    }
    let src = ipv6_at(p, 8)?;
    let dst = ipv6_at(p, 24)?;
    let mut next = *p.get(6)?;
    let mut off = 40;
    let mut first_fragment = true;
    // Hop-by-hop (0), routing (43), fragment (44), destination options (60).
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let len = (usize::from(*p.get(off + 1)?) + 1) * 8;
                next = *p.get(off)?;
                off += len;
            }
            44 => {
                first_fragment = be16(p, off + 2)? & 0xfff8 == 0;
                next = *p.get(off)?;
                off += 8;
            }
            _ => break,
        }
    }
    let l4 = if first_fragment {
        parse_l4(next, p.get(off..).unwrap_or_default())
    } else {
        L4::Other
    };
    Some(Ip {
        src: src.into(),
        dst: dst.into(),
        proto: next,
        l4,
    })
}

fn parse_l4(proto: u8, p: &[u8]) -> L4 {
    let parsed = match proto {
        IPPROTO_TCP => (|| {
            Some(L4::Tcp {
                src_port: be16(p, 0)?,
                dst_port: be16(p, 2)?,
                flags: *p.get(13)?,
            })
        })(),
        IPPROTO_UDP => (|| {
            Some(L4::Udp {
                src_port: be16(p, 0)?,
                dst_port: be16(p, 2)?,
            })
        })(),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => (|| {
            let ty = *p.first()?;
            let code = *p.get(1)?;
            let echo = if proto == IPPROTO_ICMP {
                matches!(ty, 0 | 8)
            } else {
                matches!(ty, 128 | 129)
            };
            let nd = proto == IPPROTO_ICMPV6 && matches!(ty, 135 | 136);
            Some(L4::Icmp {
                ty,
                code,
                id: if echo { be16(p, 4) } else { None },
                target: if nd { ipv6_at(p, 8) } else { None },
            })
        })(),
        _ => None,
    };
    parsed.unwrap_or(L4::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0x20];

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = MAC_B.to_vec();
        f.extend_from_slice(&MAC_A);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0];
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0, 198, 51, 100, 10, 203, 0, 113, 10]);
        h.extend_from_slice(l4);
        h
    }

    fn ipv6(next: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        h.extend_from_slice(&"2001:db8:1::10".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(&"2001:db8:1::100".parse::<Ipv6Addr>().unwrap().octets());
        h.extend_from_slice(ext);
        h.extend_from_slice(l4);
        h
    }

    fn tcp(src: u16, dst: u16) -> Vec<u8> {
        let mut t = src.to_be_bytes().to_vec();
        t.extend_from_slice(&dst.to_be_bytes());
        t.extend_from_slice(&[0; 9]);
        t.push(0x02); // SYN
        t.extend_from_slice(&[0; 6]);
        t
    }

    /// A file with the given frames; `big` writes a big-endian header, `nanos` the ns magic.
    fn file(linktype: u32, big: bool, nanos: bool, frames: &[Vec<u8>]) -> Vec<u8> {
        let w = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend_from_slice(&w(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
        f.extend_from_slice(
            &(if big {
                2u16.to_be_bytes()
            } else {
                2u16.to_le_bytes()
            }),
        );
        f.extend_from_slice(
            &(if big {
                4u16.to_be_bytes()
            } else {
                4u16.to_le_bytes()
            }),
        );
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&w(65535));
        f.extend_from_slice(&w(linktype));
        for (i, frame) in frames.iter().enumerate() {
            f.extend_from_slice(&w(100 + i as u32));
            f.extend_from_slice(&w(500));
            f.extend_from_slice(&w(frame.len() as u32));
            f.extend_from_slice(&w(frame.len() as u32 + 4));
            f.extend_from_slice(frame);
        }
        f
    }

    #[test]
    fn tcp_over_ipv4_gives_the_five_tuple() {
        let frame = eth(ETH_P_IP, &ipv4(IPPROTO_TCP, 0, &tcp(40000, 5001)));
        let frame_len = frame.len() as u32;
        let recs = parse(&file(1, false, false, &[frame])).unwrap();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.ts, Duration::from_secs(100) + Duration::from_micros(500));
        assert_eq!(r.src_mac, Some(MAC_A));
        assert_eq!(r.dst_mac, Some(MAC_B));
        assert_eq!(r.ethertype, ETH_P_IP);
        assert_eq!(
            r.five_tuple(),
            Some(FiveTuple {
                proto: IPPROTO_TCP,
                src: "198.51.100.10".parse().unwrap(),
                dst: "203.0.113.10".parse().unwrap(),
                src_port: 40000,
                dst_port: 5001,
            })
        );
        assert!(matches!(r.ip().unwrap().l4, L4::Tcp { flags: 0x02, .. }));
        assert_eq!(r.wire_len, frame_len + 4);
    }

    #[test]
    fn big_endian_nanosecond_files_parse() {
        let frame = eth(
            ETH_P_IP,
            &ipv4(IPPROTO_UDP, 0, &[0x13, 0x88, 0x13, 0x89, 0, 8, 0, 0]),
        );
        let recs = parse(&file(1, true, true, &[frame])).unwrap();
        assert_eq!(
            recs[0].ts,
            Duration::from_secs(100) + Duration::from_nanos(500)
        );
        assert_eq!(recs[0].src_port(), Some(5000));
        assert_eq!(recs[0].dst_port(), Some(5001));
    }

    #[test]
    fn non_first_fragments_have_no_ports() {
        let frame = eth(ETH_P_IP, &ipv4(IPPROTO_UDP, 185, &[0x13, 0x88, 0x13, 0x89]));
        let recs = parse(&file(1, false, false, &[frame])).unwrap();
        assert_eq!(recs[0].ip().unwrap().l4, L4::Other);
        assert_eq!(recs[0].src_port(), None);
    }

    #[test]
    fn icmp_echo_ids_and_vlan_tags() {
        let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let mut tagged = MAC_B.to_vec();
        tagged.extend_from_slice(&MAC_A);
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
        tagged.extend_from_slice(&ipv4(IPPROTO_ICMP, 0, &echo));
        let recs = parse(&file(1, false, false, &[tagged])).unwrap();
        assert_eq!(recs[0].ethertype, ETH_P_IP);
        assert_eq!(
            recs[0].ip().unwrap().l4,
            L4::Icmp {
                ty: 8,
                code: 0,
                id: Some(0x1234),
                target: None
            }
        );
        assert_eq!(recs[0].five_tuple().unwrap().src_port, 0x1234);
    }

    #[test]
    fn ipv6_skips_extension_headers_and_reads_nd_targets() {
        // Hop-by-hop header (8 bytes) in front of a neighbour solicitation.
        let hbh = [IPPROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0];
        let target: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&target.octets());
        let frame = eth(ETH_P_IPV6, &ipv6(0, &hbh, &ns));
        let recs = parse(&file(1, false, false, &[frame])).unwrap();
        let ip = recs[0].ip().unwrap();
        assert_eq!(ip.proto, IPPROTO_ICMPV6);
        assert_eq!(
            ip.l4,
            L4::Icmp {
                ty: 135,
                code: 0,
                id: None,
                target: Some(target)
            }
        );

        let frame = eth(ETH_P_IPV6, &ipv6(IPPROTO_TCP, &[], &tcp(1, 2)));
        let recs = parse(&file(1, false, false, &[frame])).unwrap();
        assert_eq!(recs[0].src_port(), Some(1));
    }

    #[test]
    fn arp_is_decoded() {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&MAC_A);
        arp.extend_from_slice(&[198, 51, 100, 10]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[198, 51, 100, 1]);
        let recs = parse(&file(1, false, false, &[eth(ETH_P_ARP, &arp)])).unwrap();
        let a = recs[0].arp().unwrap();
        assert_eq!(a.op, 1);
        assert_eq!(a.sender_mac, MAC_A);
        assert_eq!(a.sender_ip, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(a.target_ip, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(recs[0].five_tuple(), None);
    }

    #[test]
    fn cooked_captures_parse() {
        let mut sll = vec![0, 4, 0, 1, 0, 6];
        sll.extend_from_slice(&MAC_A);
        sll.extend_from_slice(&[0, 0]);
        sll.extend_from_slice(&ETH_P_IP.to_be_bytes());
        sll.extend_from_slice(&ipv4(IPPROTO_TCP, 0, &tcp(7, 8)));
        let recs = parse(&file(113, false, false, &[sll])).unwrap();
        assert_eq!(recs[0].src_mac, Some(MAC_A));
        assert_eq!(recs[0].dst_mac, None);
        assert_eq!(recs[0].dst_port(), Some(8));
    }

    #[test]
    fn bad_files_are_refused_and_truncation_tolerated() {
        assert_eq!(parse(&[0; 10]), Err(PcapError::ShortHeader { len: 10 }));
        let mut ng = file(1, false, false, &[]);
        ng[..4].copy_from_slice(&0x0a0d_0d0au32.to_le_bytes());
        assert!(matches!(parse(&ng), Err(PcapError::BadMagic { .. })));
        assert_eq!(
            parse(&file(105, false, false, &[])),
            Err(PcapError::LinkType { linktype: 105 })
        );
        let frame = eth(ETH_P_IP, &ipv4(IPPROTO_TCP, 0, &tcp(1, 2)));
        let mut two = file(1, false, false, &[frame.clone(), frame]);
        two.truncate(two.len() - 5);
        assert_eq!(parse(&two).unwrap().len(), 1);
        // A frame cut by the snap length keeps what it has.
        let short = eth(ETH_P_IP, &ipv4(IPPROTO_TCP, 0, &[0, 1]));
        let recs = parse(&file(1, false, false, &[short])).unwrap();
        assert_eq!(recs[0].ip().unwrap().l4, L4::Other);
    }
}
