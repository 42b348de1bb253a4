//! The announcer: after a data address moves to another member (or at start), tells the link
//! with gratuitous ARP requests (RFC 5227 announcements) and unsolicited neighbour
//! advertisements (RFC 4861 §7.2.6, Override set) sent from the new member's MAC, `count` times
//! `interval` apart. A newer announcement for the same address cancels the older one.
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
}

impl Announcer {
    /// Opens the socket and spawns the task.
    pub fn spawn() -> Result<Self, AnnounceError> {
        let socket = Arc::new(PacketSocket::open().map_err(AnnounceError)?);
        let (tx, mut rx) = mpsc::unbounded_channel::<Announcement>();
        tokio::spawn(async move {
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
        Ok(Self { tx })
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
