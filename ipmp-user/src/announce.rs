//! The announcer: after a data address moves to another member (or at start), tells the link
//! with gratuitous ARP requests (RFC 5227 announcements) and unsolicited neighbour
//! advertisements (RFC 4861 §7.2.6, Override set) sent from the new member's MAC, `count` times
//! `interval` apart. A newer announcement for the same address cancels the older one.
//!
//! When the group's cast member changes, it also asks the IPMP interface's own stack to report
//! its multicast memberships again ([`Announcer::requery`]): an IGMPv3 and an MLDv2 general
//! query go into the IPMP interface through its veth peer, and the kernel's reports leave
//! through the new cast member, so that a snooping switch forwards the groups to that port.
//!
//! Frames are built by pure functions (unit-tested) and sent on one AF_PACKET socket.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::Arc,
    time::Duration,
};

use ipmp_common::packet::{
    ARPHRD_ETHER, ARPOP_REQUEST, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMPV6,
    ND_NA_FLAG_OVERRIDE, ND_NA_LEN, ND_NEIGHBOR_ADVERT, ND_OPT_TARGET_LL,
};
use tokio::{sync::mpsc, task::JoinHandle};

/// The announcer's socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open an AF_PACKET socket for announcements: {0} (ipmpd needs CAP_NET_RAW)")]
pub struct AnnounceError(#[source] io::Error);

/// One request: announce `addrs` from member `ifindex` with source MAC `mac`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub ifindex: u32,
    pub ifname: String,
    pub mac: [u8; 6],
    pub addrs: Vec<IpAddr>,
    pub count: u32,
    pub interval: Duration,
}

/// Gratuitous ARP request: sender = target = `addr`, broadcast.
pub fn garp_frame(mac: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    arp_request_frame(mac, addr, addr)
}

/// Broadcast ARP request from `mac` with sender address `spa` for `tpa` (`spa` 0.0.0.0: an
/// RFC 5227 probe, which updates no one's cache).
pub fn arp_request_frame(mac: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&ARPOP_REQUEST.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f.resize(60, 0); // minimum Ethernet frame without FCS
    f
}

/// Unsolicited neighbour advertisement to ff02::1 with Override and a target link-layer option.
pub fn unsolicited_na_frame(mac: [u8; 6], addr: Ipv6Addr) -> Vec<u8> {
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(ND_NA_LEN);
    icmp.extend_from_slice(&[ND_NEIGHBOR_ADVERT, 0, 0, 0]);
    icmp.extend_from_slice(&[ND_NA_FLAG_OVERRIDE, 0, 0, 0]);
    icmp.extend_from_slice(&addr.octets());
    icmp.extend_from_slice(&[ND_OPT_TARGET_LL, 1]);
    icmp.extend_from_slice(&mac);
    nd_frame([0x33, 0x33, 0, 0, 0, 1], mac, addr, dst, icmp)
}

/// An ND message (`icmp` with its checksum field 0) in an IPv6 frame with hop limit 255, as
/// RFC 4861 requires; fills the checksum.
pub fn nd_frame(
    eth_dst: [u8; 6],
    mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let sum = icmpv6_checksum(&src, &dst, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

/// How long the kernel may wait before it reports its memberships after a query, in units of
/// 100 ms (IGMPv3 Max Resp Code) and in ms (MLDv2 Maximum Response Code): soon, spread over
/// 0.2 s.
const QUERY_MAX_RESPONSE_DS: u8 = 2;
const QUERY_MAX_RESPONSE_MS: u16 = 200;

/// IPv4 header + Router Alert option (RFC 2113), as IGMP carries it.
const IGMP_IP_HLEN: usize = 24;

/// An IGMPv3 general query (RFC 3376 4.1) to 224.0.0.1 from 0.0.0.0 (a source the
/// reverse-path filter does not judge) with Router Alert, from `mac`.
pub fn igmp_query_frame(mac: [u8; 6]) -> Vec<u8> {
    let mut igmp = vec![0x11, QUERY_MAX_RESPONSE_DS, 0, 0];
    igmp.extend_from_slice(&[0; 4]); // group: general query
    igmp.extend_from_slice(&[2, 125, 0, 0]); // QRV 2, QQIC 125 s, no sources
    let sum = inet_checksum(&igmp);
    igmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let total = (IGMP_IP_HLEN + igmp.len()) as u16;
    let mut ip = vec![0x46, 0xc0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 1, 2, 0, 0]); // id, frag, TTL 1, IGMP, checksum
    ip.extend_from_slice(&Ipv4Addr::UNSPECIFIED.octets());
    ip.extend_from_slice(&Ipv4Addr::new(224, 0, 0, 1).octets());
    ip.extend_from_slice(&[0x94, 0x04, 0, 0]); // Router Alert
    let sum = inet_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + ip.len() + igmp.len());
    f.extend_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&igmp);
    f
}

/// The link-local source of the MLD queries ipmpd puts into the IPMP interface (MLD ignores
/// queries from other than link-local sources, RFC 3810 5.1.14).
const MLD_QUERIER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// An MLDv2 general query (RFC 3810 5.1) to ff02::1 with hop limit 1 and a hop-by-hop Router
/// Alert option, from `mac`.
pub fn mld_query_frame(mac: [u8; 6]) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![130, 0, 0, 0];
    icmp.extend_from_slice(&QUERY_MAX_RESPONSE_MS.to_be_bytes());
    icmp.extend_from_slice(&[0, 0]);
    icmp.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets()); // general query
    icmp.extend_from_slice(&[2, 125, 0, 0]); // QRV 2, QQIC 125 s, no sources
    let sum = icmpv6_checksum(&MLD_QUERIER, &all_nodes, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    // Hop-by-hop: next header ICMPv6, Router Alert (MLD), PadN.
    let hbh = [IPPROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0];
    let mut f = Vec::with_capacity(14 + 40 + hbh.len() + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((hbh.len() + icmp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1]); // next header hop-by-hop, hop limit 1
    f.extend_from_slice(&MLD_QUERIER.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&hbh);
    f.extend_from_slice(&icmp);
    f
}

/// RFC 1071 checksum of `bytes` (checksum field 0).
fn inet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// RFC 4443 checksum over the IPv6 pseudo-header and the ICMPv6 message (checksum field 0).
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for chunk in bytes.chunks(2) {
            let word = match chunk {
                [a, b] => u16::from_be_bytes([*a, *b]),
                [a] => u16::from_be_bytes([*a, 0]),
                _ => 0,
            };
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, IPPROTO_ICMPV6]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An AF_PACKET socket that only sends (protocol 0: it receives nothing).
pub(crate) struct PacketSocket(OwnedFd);

impl PacketSocket {
    pub(crate) fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `frame` (Ethernet header included) out of `ifindex`.
    pub(crate) fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and sll outlive the call; lengths match the buffers.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Handle to the announcer task.
#[derive(Clone)]
pub struct Announcer {
    tx: mpsc::UnboundedSender<Announcement>,
    socket: Arc<PacketSocket>,
}

impl Announcer {
    /// Opens the socket and spawns the task.
    pub fn spawn() -> Result<Self, AnnounceError> {
        let socket = Arc::new(PacketSocket::open().map_err(AnnounceError)?);
        let (tx, mut rx) = mpsc::unbounded_channel::<Announcement>();
        let task_socket = Arc::clone(&socket);
        tokio::spawn(async move {
            let socket = task_socket;
            let mut running: HashMap<IpAddr, JoinHandle<()>> = HashMap::new();
            while let Some(a) = rx.recv().await {
                for addr in &a.addrs {
                    if let Some(old) = running.remove(addr) {
                        old.abort();
                    }
                    let frame = match addr {
                        IpAddr::V4(v4) => garp_frame(a.mac, *v4),
                        IpAddr::V6(v6) => unsolicited_na_frame(a.mac, *v6),
                    };
                    let socket = Arc::clone(&socket);
                    let (ifindex, count, interval, addr, ifname) =
                        (a.ifindex, a.count, a.interval, *addr, a.ifname.clone());
                    running.insert(
                        addr,
                        tokio::spawn(async move {
                            for i in 0..count {
                                if i > 0 {
                                    tokio::time::sleep(interval).await;
                                }
                                if let Err(e) = socket.send(ifindex, &frame) {
                                    tracing::warn!(%addr, interface = %ifname, "announcement failed: {e}");
                                }
                            }
                            tracing::debug!(%addr, interface = %ifname, count, "announced");
                        }),
                    );
                }
                running.retain(|_, h| !h.is_finished());
            }
        });
        Ok(Self { tx, socket })
    }

    /// Has the IPMP interface whose veth peer is `peer_ifindex` report its IPv4 and IPv6
    /// multicast memberships again: general queries sent into the peer arrive on the IPMP
    /// interface, and the kernel answers within `QUERY_MAX_RESPONSE_*` through the IPMP
    /// interface, that is through the group's cast member. `mac` is the queries' source MAC.
    pub fn requery(&self, peer_ifindex: u32, ifname: &str, mac: [u8; 6]) {
        for frame in [igmp_query_frame(mac), mld_query_frame(mac)] {
            if let Err(e) = self.socket.send(peer_ifindex, &frame) {
                tracing::warn!(interface = %ifname, "membership query failed: {e}");
            }
        }
    }

    pub fn announce(&self, announcement: Announcement) {
        if announcement.count == 0 || announcement.addrs.is_empty() {
            return;
        }
        if self.tx.send(announcement).is_err() {
            tracing::warn!("announcer task has stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];

    #[test]
    fn igmp_query_layout_and_checksums() {
        let f = igmp_query_frame(MAC);
        assert_eq!(f.len(), 14 + IGMP_IP_HLEN + 12);
        assert_eq!(&f[..6], &[0x01, 0x00, 0x5e, 0, 0, 1]);
        assert_eq!(&f[12..14], &ETH_P_IP.to_be_bytes());
        let ip = &f[14..14 + IGMP_IP_HLEN];
        assert_eq!((ip[0], ip[8], ip[9]), (0x46, 1, 2), "IHL 6, TTL 1, IGMP");
        assert_eq!(&ip[20..24], &[0x94, 0x04, 0, 0], "Router Alert");
        assert_eq!(inet_checksum(ip), 0, "IP header checksum verifies");
        let igmp = &f[14 + IGMP_IP_HLEN..];
        assert_eq!((igmp[0], igmp[1]), (0x11, QUERY_MAX_RESPONSE_DS));
        assert_eq!(&igmp[4..8], &[0; 4], "general query");
        assert_eq!(inet_checksum(igmp), 0, "IGMP checksum verifies");
    }

    #[test]
    fn mld_query_layout_and_checksum() {
        let f = mld_query_frame(MAC);
        assert_eq!(f.len(), 14 + 40 + 8 + 28);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let ip = &f[14..54];
        assert_eq!((ip[6], ip[7]), (0, 1), "hop-by-hop first, hop limit 1");
        assert_eq!(
            &f[54..58],
            &[IPPROTO_ICMPV6, 0, 5, 2],
            "Router Alert follows"
        );
        let icmp = &f[62..];
        assert_eq!(icmp[0], 130);
        assert_eq!(&icmp[4..6], &QUERY_MAX_RESPONSE_MS.to_be_bytes());
        let src: [u8; 16] = ip[8..24].try_into().unwrap();
        let dst: [u8; 16] = ip[24..40].try_into().unwrap();
        assert!(Ipv6Addr::from(src).is_unicast_link_local());
        assert_eq!(
            icmpv6_checksum(&Ipv6Addr::from(src), &Ipv6Addr::from(dst), icmp),
            0,
            "checksum verifies in place"
        );
    }

    #[test]
    fn garp_layout() {
        let f = garp_frame(MAC, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[22..28], &MAC, "sender MAC");
        assert_eq!(&f[28..32], &[198, 51, 100, 10], "sender IP");
        assert_eq!(&f[38..42], &[198, 51, 100, 10], "target IP = sender IP");
    }

    #[test]
    fn na_layout_and_checksum() {
        let addr: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let f = unsolicited_na_frame(MAC, addr);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f[20], IPPROTO_ICMPV6);
        assert_eq!(f[21], 255, "hop limit must be 255 or receivers drop it");
        assert_eq!(&f[22..38], &addr.octets());
        let icmp = &f[54..];
        assert_eq!(icmp[0], ND_NEIGHBOR_ADVERT);
        assert_eq!(icmp[4], ND_NA_FLAG_OVERRIDE, "unsolicited: no S flag");
        assert_eq!(&icmp[8..24], &addr.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &MAC);
        // Summing the message with its checksum in place gives 0 (RFC 1071).
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(icmpv6_checksum(&addr, &dst, icmp), 0);
    }

    #[test]
    fn checksum_verifies_in_place() {
        // Echo request from 2001:db8::1 to 2001:db8::2, id 1 seq 1, no payload: with its
        // checksum in place the message must verify to zero.
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut msg = vec![128, 0, 0, 0, 0, 1, 0, 1];
        let sum = icmpv6_checksum(&src, &dst, &msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(icmpv6_checksum(&src, &dst, &msg), 0);
        assert_ne!(sum, 0);
    }
}
