//! Inbound reachability and ARP/NDP binding: a peer with an empty neighbour cache
//! reaches every data address (ping and TCP, IPv4 and IPv6), learns the MAC of the member the
//! address is bound to, and keeps it while the host sends through every member (members must
//! not re-point the peer's cache when they resolve it themselves).
//!
//! Deterministic: the lab's fixed hash seed and fixed TCP source ports decide which member
//! carries each host→peer flow.

pub mod common;

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use common::{PortCaptures, Setup, members};
use ipmp_tests::{
    lab::{self, LabSpec},
    pcap::{L4, Record},
};

const SPEC: LabSpec = LabSpec {
    members: 3,
    peers: 1,
    router: false,
};

/// Two data addresses per family. In this order the least-loaded binding puts the two
/// addresses of each family on different members; the test checks that it did.
const ADDRS: [(&str, u8); 4] = [
    (lab::DATA_V4, lab::LAN_PREFIX_V4),
    (lab::DATA2_V4, lab::LAN_PREFIX_V4),
    (lab::DATA_V6, lab::LAN_PREFIX_V6),
    (lab::DATA2_V6, lab::LAN_PREFIX_V6),
];

/// Host→peer TCP flows per data address (fixed source ports).
const FLOWS: u16 = 16;

fn is_v4(addr: &str) -> bool {
    addr.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4())
}

/// Who (member index) sent a frame that claims a data address for itself: ARP with it as
/// sender, NS from it, NA for it. Returns (address, member, frame summary) triples.
fn claims(frames: &BTreeMap<usize, Vec<Record>>) -> Vec<(String, usize, String)> {
    let data: Vec<IpAddr> = ADDRS
        .iter()
        .map(|(a, _)| a.parse().expect("ADDRS holds IP addresses"))
        .collect();
    let mut out = Vec::new();
    for (&i, records) in frames {
        for r in records {
            let claimed = if let Some(arp) = r.arp() {
                Some((IpAddr::V4(arp.sender_ip), format!("ARP op {}", arp.op)))
            } else if let Some(ip) = r.ip() {
                match ip.l4 {
                    L4::Icmp { ty: 135, .. } => Some((ip.src, "NS from".to_owned())),
                    L4::Icmp {
                        ty: 136,
                        target: Some(t),
                        ..
                    } => Some((IpAddr::V6(t), "NA for".to_owned())),
                    _ => None,
                }
            } else {
                None
            };
            if let Some((addr, what)) = claimed
                && data.contains(&addr)
            {
                out.push((addr.to_string(), i, what));
            }
        }
    }
    out
}

fn check_entries(
    peer: &lab::Netns,
    bound: &BTreeMap<String, String>,
    macs: &BTreeMap<String, [u8; 6]>,
    when: &str,
) {
    for (addr, _) in ADDRS {
        let member = &bound[addr];
        let entry = peer.neigh_entry(addr);
        println!("{when}: peer's entry for {addr}: {entry:?} (bound to {member})");
        let entry = entry.unwrap_or_else(|| panic!("{when}: the peer has no entry for {addr}"));
        assert_eq!(
            entry.mac,
            Some(macs[member]),
            "{when}: the peer's entry for {addr} must hold the MAC of {member}, the bound member: {entry:?}"
        );
        assert!(
            !entry
                .state
                .iter()
                .any(|s| s == "FAILED" || s == "INCOMPLETE"),
            "{when}: {entry:?}"
        );
    }
}

#[test]
fn peer_reaches_every_data_address_on_its_bound_member_and_keeps_the_binding() {
    if !lab::require_root(
        "peer_reaches_every_data_address_on_its_bound_member_and_keeps_the_binding",
    ) {
        return;
    }
    let s = Setup::start(SPEC, |c| {
        c.group_mut().data_addresses = ADDRS.iter().map(|(a, p)| format!("{a}/{p}")).collect();
    })
    .unwrap();
    let (lab, host, peer, daemon) = (&s.lab, s.lab.host(), s.lab.peer(0), &s.daemon);
    let bound = common::bindings(daemon).unwrap();
    assert!(
        bound.values().all(|m| !m.is_empty()),
        "a data address is bound to no member: {bound:?}"
    );
    let macs = daemon.member_macs().unwrap();
    println!("bindings: {bound:?}");
    for i in 0..SPEC.members {
        assert_eq!(
            macs[&lab.member(i)],
            lab.member_mac(i),
            "ipmpadm status MACs"
        );
    }
    assert_eq!(bound.len(), ADDRS.len(), "{bound:?}");
    assert_ne!(
        bound[lab::DATA_V4],
        bound[lab::DATA2_V4],
        "the two IPv4 data addresses should be bound to different members"
    );
    assert_ne!(
        bound[lab::DATA_V6],
        bound[lab::DATA2_V6],
        "the two IPv6 data addresses should be bound to different members"
    );

    // 1. From an empty neighbour cache: ping and TCP to every data address.
    let mut sink = host
        .labtool(&[
            "tcp-sink",
            "--port",
            "5001",
            "--duration",
            "30",
            "--connections",
            &ADDRS.len().to_string(),
        ])
        .unwrap();
    sink.wait_ready(Duration::from_secs(5)).unwrap();
    peer.neigh_flush().unwrap();
    for (addr, _) in ADDRS {
        assert_eq!(peer.neigh(addr), None, "flushed, yet {addr} is known");
    }
    // (The host's answers may teach the peer another data address on the way: a member's ARP
    // request carries the data address bound to it as sender. Checked below.)
    for (k, (addr, _)) in ADDRS.iter().enumerate() {
        let ping = peer.ping(addr, 3, Duration::from_millis(20)).unwrap();
        assert_eq!(ping.received, 3, "peer -> {addr}: {ping:?}");
        let base = (47000 + k).to_string();
        let flow = peer
            .labtool(&[
                "tcp-flows",
                "--to",
                addr,
                "--port",
                "5001",
                "--flows",
                "1",
                "--src-port-base",
                &base,
                "--duration",
                "0.3",
            ])
            .unwrap()
            .finish()
            .unwrap_or_else(|e| panic!("TCP from the peer to {addr}: {e:#}"));
        assert!(flow["flows"][0]["bytes"].as_u64().unwrap() > 0, "{flow}");
    }
    let sink = sink.finish().unwrap();
    assert_eq!(
        sink["connections"].as_array().unwrap().len(),
        ADDRS.len(),
        "{sink}"
    );
    assert!(
        sink["connections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["error"].is_null()),
        "{sink}"
    );
    check_entries(peer, &bound, &macs, "after ping and TCP");

    // 2. The host sends to the peer through every member, from every data address. Its
    //    neighbour cache is flushed first, so each member resolves the peer itself.
    let mut sink = peer
        .labtool(&[
            "tcp-sink",
            "--port",
            "5002",
            "--duration",
            "30",
            "--connections",
            &(usize::from(FLOWS) * ADDRS.len()).to_string(),
        ])
        .unwrap();
    sink.wait_ready(Duration::from_secs(5)).unwrap();
    host.neigh_flush().unwrap();
    let all: Vec<usize> = (0..SPEC.members).collect();
    let captures = PortCaptures::start(lab, &all, "inbound", &["arp", "or", "icmp6"]).unwrap();
    let before = members(daemon).unwrap();
    let flows = FLOWS.to_string();
    let senders: Vec<_> = ADDRS
        .iter()
        .enumerate()
        .map(|(k, (addr, _))| {
            let to = if is_v4(addr) {
                lab::peer_v4(0)
            } else {
                lab::peer_v6(0)
            };
            let base = (50000 + 100 * k).to_string();
            host.labtool(&[
                "tcp-flows",
                "--to",
                &to,
                "--port",
                "5002",
                "--flows",
                &flows,
                "--src-port-base",
                &base,
                "--duration",
                "1",
                "--rate",
                "20000",
                "--bind",
                addr,
            ])
            .unwrap()
        })
        .collect();
    for (sender, (addr, _)) in senders.into_iter().zip(ADDRS) {
        sender
            .finish()
            .unwrap_or_else(|e| panic!("TCP from {addr} to the peer: {e:#}"));
    }
    let sink = sink.finish().unwrap();
    assert_eq!(
        sink["connections"].as_array().unwrap().len(),
        usize::from(FLOWS) * ADDRS.len(),
        "{sink}"
    );
    let after = members(daemon).unwrap();
    let frames = captures.stop().unwrap();
    for (b, a) in before.iter().zip(&after) {
        let sent = a.tx_packets - b.tx_packets;
        println!("{} sent {sent} packets to the peer", a.name);
        assert!(
            sent >= 50,
            "{} carried only {sent} packets of {} flows: the host must send through every member",
            a.name,
            usize::from(FLOWS) * ADDRS.len()
        );
    }

    // The members did resolve the peer while we watched (the host's cache was flushed).
    let (peer_v4, peer_v6) = (lab::peer_v4(0), lab::peer_v6(0));
    let mut resolutions = BTreeMap::new();
    for (&i, records) in &frames {
        let arp = records
            .iter()
            .filter(|r| {
                r.arp()
                    .is_some_and(|a| a.op == 1 && a.target_ip.to_string() == peer_v4)
            })
            .count();
        let ns = records
            .iter()
            .filter(|r| {
                r.ip().is_some_and(|ip| {
                    matches!(ip.l4, L4::Icmp { ty: 135, target: Some(t), .. } if t.to_string() == peer_v6)
                })
            })
            .count();
        resolutions.insert(lab.member(i), (arp, ns));
    }
    println!("(ARP requests, NS) for the peer per member: {resolutions:?}");
    assert!(
        resolutions.values().any(|(arp, _)| *arp > 0)
            && resolutions.values().any(|(_, ns)| *ns > 0),
        "no member resolved the peer after the host's neighbour flush: {resolutions:?}"
    );

    // No member claimed a data address bound elsewhere (ARP sender, NS source, NA target).
    let claims = claims(&frames);
    println!("frames naming a data address: {}", claims.len());
    for (addr, i, what) in &claims {
        assert_eq!(
            &bound[addr.as_str()],
            &lab.member(*i),
            "m{i} sent {what} {addr}, which is bound to {}: peers would re-point their cache",
            bound[addr.as_str()]
        );
    }

    check_entries(peer, &bound, &macs, "after host->peer traffic");
    // Late updates (a delayed NUD probe answered by the wrong member) show up a bit later.
    std::thread::sleep(Duration::from_millis(500));
    check_entries(peer, &bound, &macs, "500 ms later");
    for (addr, _) in ADDRS {
        let ping = peer.ping(addr, 3, Duration::from_millis(20)).unwrap();
        assert_eq!(ping.received, 3, "peer -> {addr} at the end: {ping:?}");
    }
    check_entries(peer, &bound, &macs, "after the last pings");
}
