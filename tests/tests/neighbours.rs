//! The TC egress program addresses frames itself to a next hop whose MAC ipmpd copied from the
//! member's confirmed neighbour entry (`IPMP_NEIGHS`). The kernel still owns the neighbour:
//! when the peer's MAC changes silently, the member's entry goes stale, is revalidated (ipmpd
//! asks for that, since the program's frames do not count as use), fails, and is resolved
//! again; the program must follow, or the flow would go on to the old MAC for good.
//!
//! A remembered flow marks its neighbour used once per neighbour epoch, not on every packet;
//! every second ipmpd reports the marked neighbours' use to the kernel (which moves an expired
//! entry to STALE without a notification), clears the marks and starts an epoch, so a
//! neighbour in use is revalidated and stays in `IPMP_NEIGHS` throughout.
//!
//! Short neighbour timers on the members make the whole cycle take seconds.

pub mod common;

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use common::{Setup, arrivals, count_arrivals};
use ipmp_common::NEIGH_EPOCH;
use ipmp_tests::lab::{self, LabSpec, Netns};

const SPEC: LabSpec = LabSpec {
    members: 2,
    peers: 1,
    router: false,
};

#[test]
fn a_flow_follows_a_peer_whose_mac_changed_silently() {
    if !lab::require_root("a_flow_follows_a_peer_whose_mac_changed_silently") {
        return;
    }
    let s = Setup::start(SPEC, |_| {}).unwrap();
    let (host, peer) = (s.lab.host(), s.lab.peer(0));
    short_neighbour_timers(host);
    // Echo requests that reached the peer's stack (frames to a MAC the peer no longer has are
    // dropped before).
    let matches = format!("ip daddr {} icmp type echo-request", lab::peer_v4(0));
    count_arrivals(peer, "seen", &matches).unwrap();
    let received = |peer: &Netns| arrivals(peer, "seen").unwrap();

    let target = lab::peer_v4(0);
    let mut ping = host
        .spawn(&["ping", "-n", "-q", "-i", "0.01", "-c", "1000", &target])
        .unwrap();
    // Long enough for the member's entry to go stale and be revalidated a few times.
    std::thread::sleep(Duration::from_millis(3000));
    let before = received(peer);
    assert!(before >= 100, "{before} echo requests reached the peer");
    peer.ip("link set dev eth0 address 02:00:00:00:99:01")
        .unwrap();
    let changed = Instant::now();
    let at_change = received(peer);
    let resumed = lab::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        received(peer) > at_change + 10
    });
    let took = changed.elapsed();
    let entries = host
        .run(&["ip", "neigh", "show", "to", &target])
        .unwrap_or_default();
    let _ = ping.kill();
    let _ = ping.wait();
    eprintln!(
        "{before} requests before the change; traffic resumed after {took:?}; the members' \
         entries now:\n{entries}"
    );
    assert!(
        resumed,
        "echo requests still went to the old MAC {took:?} after the change:\n{entries}"
    );
}

/// Members' neighbour entries go stale within a second and are revalidated within another.
fn short_neighbour_timers(host: &Netns) {
    for m in ["m0", "m1"] {
        for (key, value) in [
            ("base_reachable_time_ms", "500"),
            ("delay_first_probe_time", "1"),
            ("retrans_time_ms", "200"),
        ] {
            host.sysctl(&format!("net.ipv4.neigh.{m}.{key}"), value)
                .expect("set a member's neighbour timer");
        }
    }
}

#[test]
fn a_neighbour_in_use_stays_remembered_through_revalidations() {
    if !lab::require_root("a_neighbour_in_use_stays_remembered_through_revalidations") {
        return;
    }
    let s = Setup::start(SPEC, |_| {}).unwrap();
    let host = s.lab.host();
    short_neighbour_timers(host);
    let maps = s.maps().unwrap();
    // An address of the peer that no prober uses: a probe target's neighbour entry is kept in
    // use by the probes themselves (REACHABLE goes straight to DELAY, never STALE).
    let target = "198.51.100.201";
    s.lab
        .peer(0)
        .ip(&format!("addr add {target}/24 dev eth0"))
        .unwrap();
    let peer: Ipv4Addr = target.parse().unwrap();
    let members = [s.member_ifindex(0), s.member_ifindex(1)];
    // Slow enough that a frame sent to a neighbour ipmpd had dropped would leave it missing
    // for a while; fast enough to send several times per revalidation cycle.
    let mut ping = host
        .spawn(&["ping", "-n", "-q", "-i", "0.1", "-c", "100", target])
        .unwrap();
    // The member the flow leaves through is the one whose entry the program marks used (the
    // prober's own traffic never does).
    let mut carrier = None;
    lab::wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        carrier = members
            .into_iter()
            .find(|&m| maps.neighbour_v4(m, peer).is_some_and(|e| e.used != 0));
        carrier.is_some()
    });
    let Some(carrier) = carrier else {
        let _ = ping.kill();
        panic!("no member's entry for {peer} was marked used by the flow");
    };
    let first_epoch = maps.route_gen(NEIGH_EPOCH).unwrap();
    let (mut samples, mut missing) = (0u32, 0u32);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        samples += 1;
        if maps.neighbour_v4(carrier, peer).is_none() {
            missing += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let epochs = maps.route_gen(NEIGH_EPOCH).unwrap() - first_epoch;
    let _ = ping.kill();
    let _ = ping.wait();
    let entries = host
        .run(&["ip", "neigh", "show", "to", target])
        .unwrap_or_default();
    eprintln!("{epochs} neighbour epochs; entry missing in {missing} of {samples} samples");
    assert!(
        epochs >= 2,
        "only {epochs} neighbour epochs in 5 s: the flow's use was not reported \
         (members' entries now:\n{entries})"
    );
    assert_eq!(
        missing, 0,
        "the flow's neighbour was dropped from IPMP_NEIGHS in {missing} of {samples} samples \
         (members' entries now:\n{entries})"
    );
}
