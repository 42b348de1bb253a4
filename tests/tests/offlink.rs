//! Off-link destinations: a host behind the router is reached over every member,
//! IPv4 and IPv6, and every frame toward it carries the router's MAC. The TC egress program
//! must find the gateway with `bpf_fib_lookup` and pass it to `bpf_redirect_neigh`; without
//! the next hop the kernel would "assume on link" and ARP/NS for the far host itself.
//!
//! Deterministic: the lab's fixed hash seed and fixed TCP source ports decide which member
//! carries each flow, so "every member carries some" does not depend on chance.

pub mod common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use common::{PortCaptures, Setup, arrivals, count_arrivals, flows_by_member};
use ipmp_tests::{
    lab::{self, LabSpec},
    pcap::{IPPROTO_TCP, L4, Record},
};

const SPEC: LabSpec = LabSpec {
    members: 3,
    peers: 0,
    router: true,
};

/// TCP flows per address family (fixed source ports `base..base + FLOWS`).
const FLOWS: u16 = 24;
const PORT: &str = "5001";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a lab address")
}

/// Frames a member sent toward `dst`.
fn toward(frames: &[Record], dst: IpAddr) -> Vec<&Record> {
    frames
        .iter()
        .filter(|r| r.ip().is_some_and(|ip| ip.dst == dst))
        .collect()
}

/// ARP requests for `target` among `frames`.
fn arp_requests_for(frames: &[Record], target: Ipv4Addr) -> usize {
    frames
        .iter()
        .filter(|r| r.arp().is_some_and(|a| a.op == 1 && a.target_ip == target))
        .count()
}

/// Neighbour solicitations (ICMPv6 type 135) for `target` among `frames`.
fn solicitations_for(frames: &[Record], target: Ipv6Addr) -> usize {
    frames
        .iter()
        .filter(|r| {
            r.ip().is_some_and(
                |ip| matches!(ip.l4, L4::Icmp { ty: 135, target: Some(t), .. } if t == target),
            )
        })
        .count()
}

#[test]
fn far_host_is_reached_over_every_member_through_the_router_mac() {
    if !lab::require_root("far_host_is_reached_over_every_member_through_the_router_mac") {
        return;
    }
    let s = Setup::start(SPEC, |_| {}).unwrap();
    let (lab, host) = (&s.lab, s.lab.host());
    // Members must resolve the next hop while we watch: no neighbour entries left from start-up.
    host.neigh_flush().unwrap();
    let all: Vec<usize> = (0..SPEC.members).collect();
    let filter = [
        "arp",
        "or",
        "icmp6",
        "or",
        "host",
        lab::FAR_V4,
        "or",
        "host",
        lab::FAR_V6,
    ];
    let captures = PortCaptures::start(lab, &all, "offlink", &filter).unwrap();

    let connections = (2 * FLOWS).to_string();
    let mut sink = lab
        .far()
        .labtool(&[
            "tcp-sink",
            "--port",
            PORT,
            "--duration",
            "30",
            "--connections",
            &connections,
        ])
        .unwrap();
    sink.wait_ready(Duration::from_secs(5)).unwrap();
    let flows = FLOWS.to_string();
    let start = |to: &str, base: &str, bind: &str| {
        host.labtool(&[
            "tcp-flows",
            "--to",
            to,
            "--port",
            PORT,
            "--flows",
            &flows,
            "--src-port-base",
            base,
            "--duration",
            "1",
            "--rate",
            "50000",
            "--bind",
            bind,
        ])
        .unwrap()
    };
    let v4 = start(lab::FAR_V4, "40000", lab::DATA_V4);
    let v6 = start(lab::FAR_V6, "41000", lab::DATA_V6);
    let (v4, v6) = (v4.finish().unwrap(), v6.finish().unwrap());
    let sink = sink.finish().unwrap();
    let frames = captures.stop().unwrap();

    // Every byte of every flow arrived at the far host.
    let sent: u64 = [&v4, &v6]
        .iter()
        .flat_map(|r| r["flows"].as_array().unwrap())
        .map(|f| f["bytes"].as_u64().unwrap())
        .sum();
    assert!(sent > 0, "{v4} {v6}");
    assert_eq!(sink["total_bytes"].as_u64(), Some(sent), "sink {sink}");
    assert_eq!(
        sink["connections"].as_array().unwrap().len(),
        usize::from(2 * FLOWS),
        "{sink}"
    );

    for (far, data) in [(lab::FAR_V4, lab::DATA_V4), (lab::FAR_V6, lab::DATA_V6)] {
        let (far, data) = (ip(far), ip(data));
        let mut per_member = BTreeMap::new();
        for (&i, sent) in &frames {
            let out = toward(sent, far);
            assert!(
                !out.is_empty(),
                "m{i} sent nothing toward {far}: every member must carry some of the {FLOWS} flows"
            );
            for r in &out {
                assert_eq!(
                    r.dst_mac,
                    Some(lab::ROUTER_MAC),
                    "m{i} sent a frame toward off-link {far} to {:?}, not to the router's MAC: {r:?}",
                    r.dst_mac.map(|m| lab::fmt_mac(&m))
                );
            }
            per_member.insert(format!("m{i}"), out.len());
        }
        println!("frames toward {far} per member: {per_member:?}");

        // Each flow stayed on one member, and the flows are spread over all of them.
        let flows = flows_by_member(&frames, |t| {
            t.proto == IPPROTO_TCP && t.dst == far && t.src == data
        });
        assert_eq!(flows.len(), usize::from(FLOWS), "flows seen: {flows:?}");
        let mut load = BTreeMap::new();
        for (t, members) in &flows {
            assert_eq!(
                members.len(),
                1,
                "flow {t:?} left through several members {members:?}"
            );
            for m in members {
                *load.entry(*m).or_insert(0usize) += 1;
            }
        }
        println!("flows toward {far} per member: {load:?}");
        assert_eq!(load.len(), SPEC.members, "flows per member {load:?}");
    }

    // The host never resolved the far host itself; it did resolve the router while we
    // watched (so the capture covered next-hop resolution at all).
    let all_frames: Vec<Record> = frames.values().flatten().cloned().collect();
    let far_v4: Ipv4Addr = lab::FAR_V4.parse().unwrap();
    let far_v6: Ipv6Addr = lab::FAR_V6.parse().unwrap();
    assert_eq!(
        arp_requests_for(&all_frames, far_v4),
        0,
        "a member ARPed for the off-link far host {far_v4}"
    );
    assert_eq!(
        solicitations_for(&all_frames, far_v6),
        0,
        "a member sent a neighbour solicitation for the off-link far host {far_v6}"
    );
    let router_v4: Ipv4Addr = lab::ROUTER_V4.parse().unwrap();
    let router_v6: Ipv6Addr = lab::ROUTER_V6.parse().unwrap();
    assert!(
        arp_requests_for(&all_frames, router_v4) > 0,
        "no ARP request for the router {router_v4} after the host's neighbour flush"
    );
    assert!(
        solicitations_for(&all_frames, router_v6) > 0,
        "no neighbour solicitation for the router {router_v6} after the host's neighbour flush"
    );
}

/// The TC egress program remembers each flow's next hop (`IPMP_ROUTES4`, `IPMP_ROUTES6`); ipmpd retires what
/// it remembers on every route change. A flow already running follows a new, more specific
/// route at once, and goes back when the route is deleted: echo requests to the far host go
/// to the peer while a host route names it as gateway, and to the router before and after.
#[test]
fn a_running_flow_follows_a_changed_route() {
    if !lab::require_root("a_running_flow_follows_a_changed_route") {
        return;
    }
    let spec = LabSpec {
        members: 2,
        peers: 1,
        router: true,
    };
    let s = Setup::start(spec, |_| {}).unwrap();
    let host = s.lab.host();
    let (peer, router) = (s.lab.peer(0), s.lab.router());
    for ns in [peer, router] {
        count_arrivals(ns, "seen", &format!("ip daddr {}", lab::FAR_V4)).unwrap();
    }
    let seen = || {
        (
            arrivals(peer, "seen").unwrap(),
            arrivals(router, "seen").unwrap(),
        )
    };
    // One flow (one echo id) all along, up to 100 requests a second.
    let mut ping = host
        .spawn(&["ping", "-n", "-q", "-i", "0.01", "-c", "400", lab::FAR_V4])
        .unwrap();
    let settle = Duration::from_millis(100);
    let window = Duration::from_millis(1000);
    // Running through the router first.
    lab::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        seen().1 >= 20
    });
    let via_peer = format!(
        "route add {}/32 via {} dev ipmp0",
        lab::FAR_V4,
        lab::peer_v4(0)
    );
    let start = seen();
    host.ip(&via_peer).unwrap();
    std::thread::sleep(settle);
    let changed = seen();
    std::thread::sleep(window);
    let end = seen();
    host.ip(&format!("route del {}/32", lab::FAR_V4)).unwrap();
    std::thread::sleep(settle);
    let deleted = seen();
    std::thread::sleep(window);
    let last = seen();
    let _ = ping.kill();
    let _ = ping.wait();
    eprintln!(
        "(peer, router) counted: before the change {start:?}, {settle:?} after it {changed:?}, \
         {window:?} later {end:?}; {settle:?} after the delete {deleted:?}, {window:?} later {last:?}"
    );
    assert_eq!(start.0, 0, "the router is the next hop before the change");
    assert!(start.1 >= 20, "the far host was pinged through the router");
    assert!(
        end.0 - changed.0 >= 20,
        "echo requests did not go to the new next hop"
    );
    assert!(
        end.1 - changed.1 <= 1,
        "echo requests still went to the old next hop {settle:?} after the change"
    );
    assert!(
        last.0 - deleted.0 <= 1,
        "echo requests still went to the deleted route's gateway {settle:?} after the delete"
    );
    assert!(
        last.1 - deleted.1 >= 20,
        "echo requests did not go back to the router"
    );
}
