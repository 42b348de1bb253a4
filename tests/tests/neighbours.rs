//! The TC egress program addresses frames itself to a next hop whose MAC ipmpd copied from the
//! member's confirmed neighbour entry (`IPMP_NEIGHS`). The kernel still owns the neighbour:
//! when the peer's MAC changes silently, the member's entry goes stale, is revalidated (ipmpd
//! asks for that, since the program's frames do not count as use), fails, and is resolved
//! again; the program must follow, or the flow would go on to the old MAC for good.
//!
//! Short neighbour timers on the members make the whole cycle take seconds.

pub mod common;

use std::time::{Duration, Instant};

use common::{Setup, arrivals, count_arrivals};
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
    for m in ["m0", "m1"] {
        for (key, value) in [
            ("base_reachable_time_ms", "500"),
            ("delay_first_probe_time", "1"),
            ("retrans_time_ms", "200"),
        ] {
            host.sysctl(&format!("net.ipv4.neigh.{m}.{key}"), value)
                .unwrap();
        }
    }
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
