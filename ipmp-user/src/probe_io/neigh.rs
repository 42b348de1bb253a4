//! Link-layer probes for members without a test address: ARP requests (IPv4) and neighbour
//! solicitations (IPv6) to the targets, the way bonding's ARP monitor works. XDP timestamps the
//! answers (ARP replies / solicited NAs from targets listed in `IPMP_TARGETS` with
//! `TARGET_F_NEIGH`) into `IPMP_PROBES`; the daemon reads them there.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipmp_common::packet::{ND_NEIGHBOR_SOLICIT, ND_OPT_SOURCE_LL};

use crate::announce::{arp_request_frame, nd_frame};

/// An ARP request for `target` in RFC 5227 probe form (sender address 0.0.0.0): a member
/// without an IPv4 address has nothing better to name, and a probe updates no one's ARP
/// cache. Linux answers it with a unicast reply to `mac` (target address 0.0.0.0).
pub fn arp_probe_frame(mac: [u8; 6], target: Ipv4Addr) -> Vec<u8> {
    arp_request_frame(mac, Ipv4Addr::UNSPECIFIED, target)
}

/// The solicited-node multicast address of `addr` (RFC 4291 2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// A neighbour solicitation for `target` from link-local `src` with a source link-layer
/// option, to the target's solicited-node group: the target answers with a solicited NA to
/// `src` at `mac`.
pub fn ns_frame(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(target);
    let d = dst.octets();
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[ND_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[ND_OPT_SOURCE_LL, 1]);
    icmp.extend_from_slice(&mac);
    nd_frame(
        [0x33, 0x33, d[12], d[13], d[14], d[15]],
        mac,
        src,
        dst,
        icmp,
    )
}

/// The member's IPv6 link-local address (the kernel's, from the member's MAC unless
/// configured otherwise), found among the host's addresses; `None` when it has none (IPv6
/// disabled, or DAD not finished).
pub fn link_local_of(ifname: &str) -> Option<Ipv6Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        if a.interface_name != ifname {
            return None;
        }
        let ip = a.address?.as_sockaddr_in6()?.ip();
        ip.is_unicast_link_local().then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::icmpv6_checksum;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

    #[test]
    fn arp_probe_names_no_sender_address() {
        let f = arp_probe_frame(MAC, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &MAC);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]); // request
        assert_eq!(&f[22..28], &MAC); // sender MAC
        assert_eq!(&f[28..32], &[0, 0, 0, 0]); // sender IP: probe form
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[198, 51, 100, 1]);
    }

    #[test]
    fn solicitation_goes_to_the_solicited_node_group_with_a_valid_checksum() {
        let src: Ipv6Addr = "fe80::ff:fe00:10".parse().unwrap();
        let target: Ipv6Addr = "2001:db8:1::1:2:3".parse().unwrap();
        assert_eq!(
            solicited_node(target),
            "ff02::1:ff02:3".parse::<Ipv6Addr>().unwrap()
        );
        let f = ns_frame(MAC, src, target);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0x02, 0x00, 0x03]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[20], 58); // ICMPv6
        assert_eq!(f[21], 255); // hop limit ND requires
        assert_eq!(&f[22..38], &src.octets());
        assert_eq!(&f[38..54], &solicited_node(target).octets());
        let icmp = &f[54..];
        assert_eq!(icmp.len(), 32);
        assert_eq!(icmp[0], 135);
        assert_eq!(&icmp[8..24], &target.octets());
        assert_eq!(&icmp[24..26], &[1, 1]);
        assert_eq!(&icmp[26..32], &MAC);
        // A correct checksum makes the sum over the message (checksum included) zero.
        assert_eq!(icmpv6_checksum(&src, &solicited_node(target), icmp), 0);
        assert_eq!(usize::from(u16::from_be_bytes([f[18], f[19]])), icmp.len());
    }
}
