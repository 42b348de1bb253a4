//! Link failover: a peer streams TCP to and pings (1000/s) data addresses bound to
//! m0, IPv4 and IPv6; m0 loses its carrier. The TCP connections survive, the peer's neighbour
//! entries move to the new members' MACs, ping loss stays small, and `ipmpstat -i` shows m0
//! failed. When the carrier comes back, m0 is active again with failback on, and stays inactive
//! (flag `i`) with failback off.
//!
//! Timings are bounded generously (≤ 100 ms of pings lost); the real figures belong to the
//! benchmarks and are only printed here.

pub mod common;

use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use common::{Setup, members};
use ipmp_tests::lab::{self, Daemon, LabSpec};

const SPEC: LabSpec = LabSpec {
    members: 3,
    peers: 1,
    router: false,
};

/// Pings per family at 1 ms intervals (about 5 s).
const PINGS: u32 = 5000;
/// At 1000 pings/s, 100 lost pings are 100 ms without traffic.
const MAX_LOST: u64 = 100;
/// TCP flows per family from the peer (fixed source ports).
const FLOWS: u16 = 4;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits (bounded) until `ok` holds for m0's `ipmpstat -i` row ([`common::members`]); returns
/// the row.
fn wait_row(
    daemon: &Daemon,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&common::Member) -> bool,
) -> anyhow::Result<common::Member> {
    let mut last = Err(anyhow!("not asked yet"));
    let done = lab::wait_until(timeout, ms(10), || {
        last = m0_row(daemon);
        last.as_ref().is_ok_and(&ok)
    });
    if !done {
        bail!(
            "m0 not {what} within {timeout:?}: {last:?}\nipmpd log:\n{}",
            daemon.log()
        );
    }
    last
}

/// m0's row of `ipmpstat -i`.
fn m0_row(daemon: &Daemon) -> anyhow::Result<common::Member> {
    members(daemon)?
        .into_iter()
        .find(|m| m.name == "m0")
        .ok_or_else(|| anyhow!("no row for m0 in ipmpstat -i"))
}

fn failed(row: &common::Member) -> bool {
    row.state == "failed" && row.link == "down" && !row.active
}

#[test]
fn tcp_survives_m0_losing_its_carrier_and_m0_fails_back() {
    if !lab::require_root("tcp_survives_m0_losing_its_carrier_and_m0_fails_back") {
        return;
    }
    // In this order the least-loaded binding puts DATA_V4 and DATA_V6 on m0 (checked below).
    let s = Setup::start(SPEC, |c| {
        c.failback = true;
        c.group_mut().data_addresses = vec![
            format!("{}/{}", lab::DATA_V4, lab::LAN_PREFIX_V4),
            format!("{}/{}", lab::DATA2_V4, lab::LAN_PREFIX_V4),
            format!("{}/{}", lab::DATA2_V6, lab::LAN_PREFIX_V6),
            format!("{}/{}", lab::DATA_V6, lab::LAN_PREFIX_V6),
        ];
    })
    .unwrap();
    let (lab, host, peer, daemon) = (&s.lab, s.lab.host(), s.lab.peer(0), &s.daemon);
    let macs = daemon.member_macs().unwrap();
    let bound = common::bindings(daemon).unwrap();
    for addr in [lab::DATA_V4, lab::DATA_V6] {
        assert_eq!(bound[addr], "m0", "{addr} should be bound to m0: {bound:?}");
    }

    let mut sink = host
        .labtool(&[
            "tcp-sink",
            "--port",
            "5001",
            "--duration",
            "40",
            "--connections",
            &(2 * FLOWS).to_string(),
        ])
        .unwrap();
    sink.wait_ready(Duration::from_secs(5)).unwrap();
    peer.neigh_flush().unwrap();
    for addr in [lab::DATA_V4, lab::DATA_V6] {
        assert!(peer.reachable(addr), "peer -> {addr} before the cut");
        assert_eq!(
            peer.neigh(addr),
            Some(macs["m0"]),
            "peer's entry for {addr}"
        );
    }

    let flows = FLOWS.to_string();
    let stream = |to: &str, base: &str| {
        peer.labtool(&[
            "tcp-flows",
            "--to",
            to,
            "--port",
            "5001",
            "--flows",
            &flows,
            "--src-port-base",
            base,
            "--duration",
            "5",
            "--rate",
            "200000",
        ])
        .unwrap()
    };
    let tcp_v4 = stream(lab::DATA_V4, "45000");
    let tcp_v6 = stream(lab::DATA_V6, "46000");
    // Sequenced UDP at 1000/s per family, to see the longest gap across the failover.
    let udp = |to: &str, port: &str| {
        let mut recv = host
            .labtool(&[
                "udp-seq-recv",
                "--port",
                port,
                "--duration",
                "20",
                "--idle-exit",
                "1",
            ])
            .unwrap();
        recv.wait_ready(Duration::from_secs(5)).unwrap();
        let send = peer
            .labtool(&[
                "udp-seq-send",
                "--to",
                to,
                "--port",
                port,
                "--rate",
                "1000",
                "--duration",
                "5",
                "--src-port",
                port,
            ])
            .unwrap();
        (recv, send)
    };
    let udp_v4 = udp(lab::DATA_V4, "6001");
    let udp_v6 = udp(lab::DATA_V6, "6002");
    let (ping_v4, ping_v6, after) = thread::scope(|sc| {
        let p4 = sc.spawn(|| peer.ping(lab::DATA_V4, PINGS, ms(1)).unwrap());
        let p6 = sc.spawn(|| peer.ping(lab::DATA_V6, PINGS, ms(1)).unwrap());
        thread::sleep(ms(1500));
        lab.cut_link(0).unwrap();
        let cut = Instant::now();
        let row = wait_row(daemon, "failed", Duration::from_secs(5), failed).unwrap();
        let detected = cut.elapsed();
        println!("ipmpstat -i m0 after the cut: {row:?} ({detected:?} after the cut)");
        let after = common::bindings(daemon).unwrap();
        for addr in [lab::DATA_V4, lab::DATA_V6] {
            assert!(
                !after[addr].is_empty() && after[addr] != "m0",
                "{addr} must move off the failed m0: {after:?}"
            );
        }
        let mut last = BTreeMap::new();
        let moved = lab::wait_until(Duration::from_secs(3), ms(5), || {
            last = [lab::DATA_V4, lab::DATA_V6]
                .into_iter()
                .map(|a| (a, peer.neigh(a)))
                .collect();
            [lab::DATA_V4, lab::DATA_V6]
                .iter()
                .all(|a| last[a] == Some(macs[&after[*a]]))
        });
        assert!(
            moved,
            "the peer's entries did not move to the new members {after:?} within 3 s: {last:?}"
        );
        println!(
            "peer's entries moved {:?} after the cut: {last:?}",
            cut.elapsed()
        );
        (p4.join().unwrap(), p6.join().unwrap(), after)
    });
    let tcp_v4 = tcp_v4.finish();
    let tcp_v6 = tcp_v6.finish();
    let sink = sink.finish().unwrap();
    println!("ping IPv4 {ping_v4:?} lost {}", ping_v4.lost());
    println!("ping IPv6 {ping_v6:?} lost {}", ping_v6.lost());
    for (family, (recv, send)) in [("IPv4", udp_v4), ("IPv6", udp_v6)] {
        let sent = send.finish().unwrap();
        let got = recv.finish().unwrap();
        println!("UDP {family}: sent {sent}, received {got}");
        let lost = got["lost"].as_u64().unwrap();
        assert!(
            got["received"].as_u64().unwrap() >= 4000,
            "{family} UDP: {got}"
        );
        assert!(
            lost <= MAX_LOST,
            "{family} UDP: {lost} datagrams lost across the failover (at most {MAX_LOST}): {got}"
        );
    }
    let (tcp_v4, tcp_v6) = (
        tcp_v4.unwrap_or_else(|e| panic!("IPv4 TCP did not survive: {e:#}")),
        tcp_v6.unwrap_or_else(|e| panic!("IPv6 TCP did not survive: {e:#}")),
    );
    let sent: u64 = [&tcp_v4, &tcp_v6]
        .iter()
        .flat_map(|r| r["flows"].as_array().unwrap())
        .map(|f| f["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(sink["total_bytes"].as_u64(), Some(sent), "sink {sink}");
    assert!(
        sink["connections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["error"].is_null()),
        "{sink}"
    );
    for (family, ping) in [("IPv4", ping_v4), ("IPv6", ping_v6)] {
        assert!(
            ping.transmitted >= u64::from(PINGS) * 9 / 10,
            "{family}: {ping:?}"
        );
        assert!(
            ping.lost() <= MAX_LOST,
            "{family}: {} of {} pings lost across the failover (at most {MAX_LOST})",
            ping.lost(),
            ping.transmitted
        );
    }
    // Still bound where the failover put them (nothing moved back while m0 was down).
    assert_eq!(common::bindings(daemon).unwrap(), after);

    // Carrier back: with failback on, m0 carries traffic again.
    lab.restore_link(0).unwrap();
    let row = wait_row(daemon, "active again", Duration::from_secs(5), |r| {
        r.state == "ok" && r.link == "up" && r.active
    })
    .unwrap();
    println!("ipmpstat -i m0 after the repair: {row:?}");
    assert!(!row.flags.contains('i'), "m0 is not inactive: {row:?}");
    assert!(row.buckets > 0, "m0 takes buckets back: {row:?}");
}

#[test]
fn with_failback_off_a_repaired_member_stays_inactive() {
    if !lab::require_root("with_failback_off_a_repaired_member_stays_inactive") {
        return;
    }
    let s = Setup::start(SPEC, |c| c.failback = false).unwrap();
    let (lab, host, peer, daemon) = (&s.lab, s.lab.host(), s.lab.peer(0), &s.daemon);

    lab.cut_link(0).unwrap();
    wait_row(daemon, "failed", Duration::from_secs(5), failed).unwrap();
    lab.restore_link(0).unwrap();
    let row = wait_row(daemon, "repaired", Duration::from_secs(5), |r| {
        r.state == "ok" && r.link == "up"
    })
    .unwrap();
    println!("ipmpstat -i m0 after the repair: {row:?}");
    // Repaired but not brought back: it must stay so (check for a while, not just once).
    let deadline = Instant::now() + ms(1000);
    while Instant::now() < deadline {
        let row = m0_row(daemon).unwrap();
        assert!(!row.active, "failback off: m0 stays inactive: {row:?}");
        assert!(
            row.flags.starts_with('i'),
            "failback off: m0 has flag i: {row:?}"
        );
        assert_eq!(row.state, "ok", "{row:?}");
        thread::sleep(ms(100));
    }
    let bound = common::bindings(daemon).unwrap();
    assert!(
        bound.values().all(|m| !m.is_empty() && m != "m0"),
        "no data address on the inactive m0: {bound:?}"
    );
    for addr in [lab::DATA_V4, lab::DATA_V6] {
        assert!(peer.reachable(addr), "peer -> {addr} after the repair");
    }

    // Outbound traffic avoids m0 (fixed source ports; 16 flows per family).
    let mut sink = peer
        .labtool(&[
            "tcp-sink",
            "--port",
            "5002",
            "--duration",
            "30",
            "--connections",
            "32",
        ])
        .unwrap();
    sink.wait_ready(Duration::from_secs(5)).unwrap();
    let before = members(daemon).unwrap();
    let send = |to: &str, bind: &str, base: &str| {
        host.labtool(&[
            "tcp-flows",
            "--to",
            to,
            "--port",
            "5002",
            "--flows",
            "16",
            "--src-port-base",
            base,
            "--duration",
            "0.5",
            "--rate",
            "20000",
            "--bind",
            bind,
        ])
        .unwrap()
    };
    let v4 = send(&lab::peer_v4(0), lab::DATA_V4, "52000");
    let v6 = send(&lab::peer_v6(0), lab::DATA_V6, "53000");
    v4.finish().unwrap();
    v6.finish().unwrap();
    sink.finish().unwrap();
    let after = members(daemon).unwrap();
    for (b, a) in before.iter().zip(&after) {
        let sent = a.tx_packets - b.tx_packets;
        println!("{} sent {sent} packets ({a:?})", a.name);
        if a.name == "m0" {
            assert_eq!(sent, 0, "the inactive m0 carried traffic: {a:?}");
            assert_eq!(a.buckets, 0, "{a:?}");
            assert!(!a.active, "{a:?}");
        } else {
            assert!(sent > 0, "{} carried nothing: {a:?}", a.name);
        }
    }
}
