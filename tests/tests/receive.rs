//! What the IPMP interface receives: inbound traffic for the data addresses enters the stack
//! through ipmp0, so strict reverse-path filtering (`rp_filter` 1 and 2), a firewalld-style
//! `fib saddr . iif oif missing drop` rule, `iifname` rules, tcpdump, sockets bound to ipmp0
//! and multicast joined on it all work, while a member's own traffic (test addresses, probes)
//! stays on the member and the host forwards nothing. ipmpd weakens no host setting.
//!
//! The lab's host namespace has `all.rp_filter=1` (the lab library sets it); these tests add
//! the firewall rules and vary the mode.
#![expect(
    clippy::unwrap_used,
    reason = "the scenario helpers below fail their test on any lab error, with the error"
)]

pub mod common;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use ipmp_tests::{
    lab::{
        DATA_V4, DATA_V6, Daemon, FAR_V4, FAR_V6, Lab, LabSpec, Netns, peer_v4, peer_v6,
        require_root, wait_until,
    },
    pcap::{L4, Record},
};

const SPEC: LabSpec = LabSpec {
    members: 3,
    peers: 2,
    router: true,
};

const MEMBERS: [&str; 3] = ["m0", "m1", "m2"];
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// Datagrams per UDP check.
const N: u64 = 200;

/// firewalld's reverse-path rule in the host namespace, here for both families, with a
/// counter of what it dropped. Like firewalld it lets router advertisements and neighbour
/// solicitations through first: a solicitation from a global address to a solicited-node
/// group has no route back through the device it came in on, on any host.
const RPF_TABLE: &str = "table inet rpf {\n\
    \tchain pre { type filter hook prerouting priority raw; policy accept;\n\
    \t\ticmpv6 type { nd-router-advert, nd-neighbor-solicit } accept\n\
    \t\tfib saddr . iif oif missing counter drop\n\
    \t}\n\
    }\n";

/// How the host namespace is set up before ipmpd starts.
#[derive(Clone, Copy, Debug)]
struct Host {
    /// `net.ipv4.conf.{all,default}.rp_filter`.
    rp_filter: u8,
    /// Members get test addresses 198.51.100.21.. and 2001:db8:1::21.. (probing from them);
    /// without, they probe from no address of their own (ARP, link-local ICMPv6).
    test_addresses: bool,
    /// `xdp_mode` of the group (`None`: the default, no XDP on veth).
    xdp_mode: Option<&'static str>,
}

fn test_v4(i: usize) -> String {
    format!("198.51.100.{}", 21 + i)
}

fn test_v6(i: usize) -> String {
    format!("2001:db8:1::{}", 21 + i)
}

/// A lab with the host set up as `host`, the reverse-path rule loaded, and ipmpd probing with
/// FDT 1 s.
fn start(host: Host) -> (Lab, Daemon) {
    let lab = Lab::new(SPEC).expect("lab");
    let h = lab.host();
    for key in ["all", "default"] {
        h.sysctl(
            &format!("net.ipv4.conf.{key}.rp_filter"),
            &host.rp_filter.to_string(),
        )
        .unwrap();
    }
    nft(h, RPF_TABLE);
    let mut cfg = lab.config();
    cfg.failure_detection_time_ms = Some(1000);
    let g = cfg.group_mut();
    g.xdp_mode = host.xdp_mode.map(str::to_owned);
    g.link_layer_probes = Some(!host.test_addresses);
    if host.test_addresses {
        for (i, m) in MEMBERS.iter().enumerate() {
            // Two test addresses cannot share one member entry: IPv4 only here, the IPv6
            // test addresses are added below by hand like an operator would (deprecated).
            cfg.member_mut(m).test_address = Some(format!("{}/24", test_v4(i)));
        }
    }
    let d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
    (lab, d)
}

fn nft(ns: &Netns, rules: &str) {
    let file = std::env::temp_dir().join(format!("{}-{}.nft", ns.name(), rules.len()));
    std::fs::write(&file, rules).unwrap();
    ns.run(&["nft", "-f", &file.to_string_lossy()]).unwrap();
    let _ = std::fs::remove_file(file);
}

/// Packets counted by the `counter` of every rule of `table` (`inet`), keyed by the rule's
/// text as nft prints it.
fn counters(ns: &Netns, table: &str) -> BTreeMap<String, u64> {
    let out = ns.run(&["nft", "list", "table", "inet", table]).unwrap();
    out.lines()
        .filter_map(|l| {
            let (rule, rest) = l.trim().split_once(" counter packets ")?;
            let n = rest.split_whitespace().next()?.parse().ok()?;
            Some((rule.to_owned(), n))
        })
        .collect()
}

/// ACTIVE/STATE of every member from `ipmpstat -i`.
fn states(d: &Daemon) -> BTreeMap<String, String> {
    common::members(d)
        .expect("ipmpstat -i")
        .into_iter()
        .map(|m| (m.name, m.state))
        .collect()
}

/// The cast member (FLAGS `m` in `ipmpstat -i`).
fn cast_member(d: &Daemon) -> Option<String> {
    common::member_flags(d)
        .into_iter()
        .find(|(_, f)| f.contains('m'))
        .map(|(i, _)| i)
}

/// Waits until every member is ok and has had a probe answered (the quiet period hides
/// losses before the first answer).
fn wait_probing(d: &Daemon) {
    assert!(
        wait_until(WAIT, POLL, || states(d).values().all(|s| s == "ok")),
        "members not ok: {:?}\n{}",
        states(d),
        d.log()
    );
    common::wait_answered_probes(d, &MEMBERS);
}

/// `count` pings from `ns` to `dst`, all answered.
fn ping_ok(ns: &Netns, dst: &str, count: u32) {
    let p = ns.ping(dst, count, Duration::from_millis(20)).unwrap();
    assert_eq!(p.lost(), 0, "ping {dst} from {}: {p:?}", ns.name());
}

/// `N` UDP datagrams from peer 0 to `dst`:`port` arrive at a receiver in the host namespace
/// bound to `bind` (and to `device`, when given), exactly once each.
fn udp_arrives(
    lab: &Lab,
    dst: &str,
    bind: &str,
    device: Option<&str>,
    port: u16,
) -> serde_json::Value {
    let port_s = port.to_string();
    let mut args = vec![
        "udp-seq-recv",
        "--port",
        &port_s,
        "--duration",
        "10",
        "--idle-exit",
        "1",
    ];
    args.extend(["--bind", bind]);
    if let Some(dev) = device {
        args.extend(["--device", dev]);
    }
    let mut rx = lab.host().labtool(&args).unwrap();
    rx.wait_ready(Duration::from_secs(5)).unwrap();
    send_udp(lab.peer(0), dst, port, None);
    let r = rx.finish().unwrap();
    assert_eq!(r["received"], N, "UDP to {dst}: {r}");
    assert_eq!(r["duplicates"], 0, "UDP to {dst}: {r}");
    r
}

/// `N` datagrams at 1000/s from `ns` to `dst`:`port` (out of `device`, when given).
fn send_udp(ns: &Netns, dst: &str, port: u16, device: Option<&str>) {
    let (port_s, duration) = (port.to_string(), format!("{}", N as f64 / 1000.0));
    let mut args = vec![
        "udp-seq-send",
        "--to",
        dst,
        "--port",
        &port_s,
        "--rate",
        "1000",
        "--duration",
        &duration,
    ];
    if let Some(dev) = device {
        args.extend(["--device", dev]);
    }
    let s = ns.labtool(&args).unwrap().finish().unwrap();
    assert_eq!(s["sent"], N, "sent to {dst}: {s}");
}

/// A TCP connection from peer 0 to `dst`:`port` carries data to a sink in the host namespace
/// (bound to `device`, when given).
fn tcp_arrives(lab: &Lab, dst: &str, port: u16, device: Option<&str>) {
    let port_s = port.to_string();
    let mut args = vec![
        "tcp-sink",
        "--port",
        &port_s,
        "--duration",
        "10",
        "--connections",
        "1",
        "--bind",
        dst,
    ];
    if let Some(dev) = device {
        args.extend(["--device", dev]);
    }
    let mut sink = lab.host().labtool(&args).unwrap();
    sink.wait_ready(Duration::from_secs(5)).unwrap();
    let flows = lab
        .peer(0)
        .labtool(&[
            "tcp-flows",
            "--to",
            dst,
            "--port",
            &port_s,
            "--flows",
            "1",
            "--src-port-base",
            "41000",
            "--duration",
            "0.5",
        ])
        .unwrap()
        .finish()
        .unwrap();
    let got = sink.finish().unwrap();
    let bytes = got["connections"][0]["bytes"].as_u64().unwrap_or(0);
    assert!(
        bytes > 0,
        "TCP to {dst} (device {device:?}): sink {got}, flows {flows}"
    );
}

/// A TCP connection attempt from peer 0 to a closed port of `dst` is refused at once (the
/// host's RST came back), not timed out.
fn tcp_refused(lab: &Lab, dst: &str) {
    let target = format!("/dev/tcp/{dst}/9");
    let started = Instant::now();
    let out = lab
        .peer(0)
        .run_status(&["timeout", "5", "bash", "-c", &format!("exec 3<>{target}")])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && started.elapsed() < Duration::from_secs(4),
        "TCP to {dst}:9 not refused: {stderr}"
    );
}

/// Every check of "a peer reaches the host, the members keep their own traffic, probing
/// works" for one host setup.
fn reachable_under(host: Host) {
    let (lab, d) = start(host);
    let h = lab.host();
    if host.test_addresses {
        for (i, m) in MEMBERS.iter().enumerate() {
            h.ip(&format!(
                "-6 addr add {}/64 dev {m} nodad noprefixroute preferred_lft 0",
                test_v6(i)
            ))
            .unwrap();
        }
    }
    wait_probing(&d);
    let before = states(&d);
    let p = lab.peer(0);
    for dst in [DATA_V4, DATA_V6] {
        ping_ok(p, dst, 10);
        tcp_arrives(&lab, dst, 5001, None);
        tcp_refused(&lab, dst);
    }
    udp_arrives(&lab, DATA_V4, DATA_V4, None, 5002);
    udp_arrives(&lab, DATA_V6, DATA_V6, None, 5003);
    // From behind the router too (the reverse path is the default route via ipmp0).
    ping_ok(lab.far(), DATA_V4, 5);
    ping_ok(lab.far(), DATA_V6, 5);
    if host.test_addresses {
        // Each member's test address answers ARP (a peer with an empty cache resolves it to
        // that member) and ping, in both families.
        for (i, m) in MEMBERS.iter().enumerate() {
            p.neigh_flush().unwrap();
            ping_ok(p, &test_v4(i), 3);
            ping_ok(p, &test_v6(i), 3);
            assert_eq!(
                p.neigh(&test_v4(i)),
                Some(lab.member_mac(i)),
                "{m}'s test address resolved elsewhere"
            );
        }
    }
    let dropped = counters(h, "rpf");
    assert_eq!(
        states(&d),
        before,
        "{host:?}: a member failed while nothing was cut\n{}",
        d.log()
    );
    // A silent failure is detected within the FDT (generous bound), the others stay ok.
    lab.silent_drop(0, true).unwrap();
    let cut = Instant::now();
    assert!(
        wait_until(WAIT, POLL, || states(&d)["m0"] == "failed"),
        "{host:?}: silent cut of m0 not detected: {:?}\n{}",
        states(&d),
        d.log()
    );
    let took = cut.elapsed();
    eprintln!(
        "{host:?}: silent cut detected after {} ms (FDT 1000 ms)",
        took.as_millis()
    );
    assert!(
        took < Duration::from_millis(3000),
        "{host:?}: took {took:?}"
    );
    let after = states(&d);
    assert_eq!(
        (&after["m1"], &after["m2"]),
        (&"ok".into(), &"ok".into()),
        "{after:?}"
    );
    ping_ok(p, DATA_V4, 5);
    eprintln!("{host:?}: reverse-path rule counters {dropped:?}");
}

#[test]
fn strict_rp_filter_and_firewall_rule_with_test_addresses() {
    if !require_root("strict_rp_filter_and_firewall_rule_with_test_addresses") {
        return;
    }
    reachable_under(Host {
        rp_filter: 1,
        test_addresses: true,
        xdp_mode: None,
    });
}

#[test]
fn strict_rp_filter_and_firewall_rule_without_test_addresses() {
    if !require_root("strict_rp_filter_and_firewall_rule_without_test_addresses") {
        return;
    }
    reachable_under(Host {
        rp_filter: 1,
        test_addresses: false,
        xdp_mode: None,
    });
}

#[test]
fn rp_filter_off() {
    if !require_root("rp_filter_off") {
        return;
    }
    reachable_under(Host {
        rp_filter: 0,
        test_addresses: true,
        xdp_mode: None,
    });
}

#[test]
fn loose_rp_filter_with_and_without_test_addresses() {
    if !require_root("loose_rp_filter_with_and_without_test_addresses") {
        return;
    }
    for test_addresses in [true, false] {
        reachable_under(Host {
            rp_filter: 2,
            test_addresses,
            xdp_mode: None,
        });
    }
}

#[test]
fn strict_rp_filter_with_generic_xdp_in_front() {
    if !require_root("strict_rp_filter_with_generic_xdp_in_front") {
        return;
    }
    reachable_under(Host {
        rp_filter: 1,
        test_addresses: true,
        xdp_mode: Some("generic"),
    });
}

/// nft `iifname "ipmp0"` counts every inbound data datagram and the members' rule none; tcpdump
/// on ipmp0 sees them (and on the members, whose captures clone the frames the member program
/// writes); ipmp0's rx counter grows by at least as many; a TCP listener bound to ipmp0
/// accepts a peer.
#[test]
fn ipmp0_is_where_inbound_traffic_arrives() {
    if !require_root("ipmp0_is_where_inbound_traffic_arrives") {
        return;
    }
    let (lab, d) = start(Host {
        rp_filter: 1,
        test_addresses: false,
        xdp_mode: None,
    });
    let h = lab.host();
    nft(
        h,
        "table inet acct {\n\
         \tchain input { type filter hook input priority 0; policy accept;\n\
         \t\tiifname \"ipmp0\" udp dport 5101 counter\n\
         \t\tiifname { \"m0\", \"m1\", \"m2\" } udp dport 5101 counter\n\
         \t}\n\
         }\n",
    );
    let pcap = lab.work_dir().join("ipmp0.pcap");
    let capture = h.capture("ipmp0", &pcap, &["udp", "port", "5101"]).unwrap();
    // Captures on the members too: the frames reach the member program cloned then, and the
    // program's direct MAC write unclones them first.
    let member_captures: Vec<_> = ["m0", "m1", "m2"]
        .iter()
        .map(|m| {
            let pcap = lab.work_dir().join(format!("{m}.pcap"));
            h.capture(m, &pcap, &["udp", "port", "5101"]).unwrap()
        })
        .collect();
    let rx_before = h.link_stats("ipmp0").unwrap().rx_packets;
    udp_arrives(&lab, DATA_V4, DATA_V4, None, 5101);
    udp_arrives(&lab, DATA_V6, DATA_V6, None, 5101);
    let rx = h.link_stats("ipmp0").unwrap().rx_packets - rx_before;
    // libpcap hands over its last block within a second.
    thread::sleep(Duration::from_millis(1200));
    let records = capture.stop().unwrap();
    let on_members: usize = member_captures
        .into_iter()
        .map(|c| c.stop().unwrap().len())
        .sum();
    assert_eq!(
        on_members as u64,
        2 * N,
        "captures on the members saw {on_members} datagrams"
    );
    let c = counters(h, "acct");
    let ipmp0 = c
        .iter()
        .find(|(r, _)| r.starts_with("iifname \"ipmp0\""))
        .map(|(_, n)| *n);
    let members = c
        .iter()
        .find(|(r, _)| r.starts_with("iifname {"))
        .map(|(_, n)| *n);
    assert_eq!(ipmp0, Some(2 * N), "iifname ipmp0 counter: {c:?}");
    assert_eq!(members, Some(0), "members' counter: {c:?}");
    let inbound = records
        .iter()
        .filter(|r| {
            r.ip().is_some_and(|ip| {
                ip.dst == DATA_V4.parse::<IpAddr>().unwrap()
                    || ip.dst == DATA_V6.parse::<IpAddr>().unwrap()
            })
        })
        .count() as u64;
    assert_eq!(
        inbound,
        2 * N,
        "tcpdump -i ipmp0 saw {inbound} inbound datagrams"
    );
    assert!(rx >= 2 * N, "ipmp0 rx_packets grew by {rx} only");
    // SO_BINDTODEVICE(ipmp0) on a data address; `ping -I ipmp0` gets its replies.
    tcp_arrives(&lab, DATA_V4, 5102, Some("ipmp0"));
    tcp_arrives(&lab, DATA_V6, 5103, Some("ipmp0"));
    for peer in [peer_v4(0), peer_v6(0)] {
        let p = h
            .ping_from("ipmp0", &peer, 5, Duration::from_millis(20))
            .unwrap();
        assert_eq!(p.lost(), 0, "ping -I ipmp0 {peer}: {p:?}");
    }
    // ipmpadm accounts for the frames handed to ipmp0, per member: the rx-ipmp reason
    // counters cover at least the unicast datagrams sent, and rx (rx-ipmp + cast-ipmp) them.
    let status: ipmp::control::Snapshot =
        serde_json::from_str(&d.ipmpadm(&["status", "--json"]).unwrap()).unwrap();
    let members = &status.groups[0].members;
    let rx: u64 = members.iter().map(|m| m.rx_packets).sum();
    let by_reason: u64 = members
        .iter()
        .map(|m| m.counters.get("rx-ipmp").copied().unwrap_or(0))
        .sum();
    assert!(
        by_reason >= 2 * N,
        "members' rx-ipmp {by_reason}: {members:?}"
    );
    assert!(
        rx >= by_reason,
        "members' rx_packets {rx} < rx-ipmp {by_reason}"
    );
}

/// Multicast joined on ipmp0 and subnet broadcast reach a listener on ipmp0 exactly once, also
/// after the cast member failed; the IPMP interface reports its memberships again through the
/// new cast member.
#[test]
fn multicast_and_broadcast_arrive_once_through_ipmp0() {
    if !require_root("multicast_and_broadcast_arrive_once_through_ipmp0") {
        return;
    }
    let (lab, d) = start(Host {
        rp_filter: 1,
        test_addresses: false,
        xdp_mode: None,
    });
    let groups = [("239.1.2.3", 5201u16), ("ff15::4242", 5202u16)];
    let once = |lab: &Lab, when: &str| {
        for (group, port) in groups {
            let port_s = port.to_string();
            let mut rx = lab
                .host()
                .labtool(&[
                    "udp-seq-recv",
                    "--port",
                    &port_s,
                    "--duration",
                    "10",
                    "--idle-exit",
                    "1",
                    "--device",
                    "ipmp0",
                    "--join",
                    group,
                ])
                .unwrap();
            rx.wait_ready(Duration::from_secs(5)).unwrap();
            // Let the membership report reach the link.
            thread::sleep(Duration::from_millis(100));
            send_udp(lab.peer(0), group, port, Some("eth0"));
            let r = rx.finish().unwrap();
            assert_eq!(r["received"], N, "{when}: {group}: {r}");
            assert_eq!(r["duplicates"], 0, "{when}: {group}: {r}");
        }
        let bcast = "198.51.100.255";
        let mut rx = lab
            .host()
            .labtool(&[
                "udp-seq-recv",
                "--port",
                "5203",
                "--duration",
                "10",
                "--idle-exit",
                "1",
                "--bind",
                "0.0.0.0",
                "--device",
                "ipmp0",
            ])
            .unwrap();
        rx.wait_ready(Duration::from_secs(5)).unwrap();
        send_udp(lab.peer(0), bcast, 5203, None);
        let r = rx.finish().unwrap();
        assert_eq!(r["received"], N, "{when}: broadcast: {r}");
        assert_eq!(r["duplicates"], 0, "{when}: broadcast: {r}");
    };
    once(&lab, "before failover");
    // Fail the cast member; the reports must follow to the new one.
    let cast = cast_member(&d).expect("a cast member");
    let ci: usize = cast[1..].parse().unwrap();
    // Keep a listener joined so there are memberships to report.
    let mut joined = lab
        .host()
        .labtool(&[
            "udp-seq-recv",
            "--port",
            "5209",
            "--duration",
            "8",
            "--device",
            "ipmp0",
            "--join",
            "239.9.9.9",
        ])
        .unwrap();
    joined.wait_ready(Duration::from_secs(5)).unwrap();
    let sw = lab.switch();
    let captures: Vec<_> = (0..SPEC.members)
        .filter(|&i| i != ci)
        .map(|i| {
            let file = lab.work_dir().join(format!("reports-{i}.pcap"));
            // MLD reports carry a hop-by-hop header, which `icmp6` (next header 58) misses.
            let filter = ["igmp", "or", "icmp6", "or", "ip6[6]", "==", "0"];
            (i, sw.capture(&Lab::port(i), &file, &filter).unwrap())
        })
        .collect();
    lab.cut_link(ci).unwrap();
    assert!(
        wait_until(WAIT, POLL, || cast_member(&d).is_some_and(|c| c != cast)),
        "no new cast member after {cast} failed: {:?}",
        common::member_flags(&d)
    );
    let new_cast = cast_member(&d).unwrap();
    let ni: usize = new_cast[1..].parse().unwrap();
    thread::sleep(Duration::from_millis(1500));
    for (i, capture) in captures {
        let records = capture.stop().unwrap();
        if i != ni {
            continue;
        }
        let igmp = records.iter().any(|r| is_report(r, 4, "239.9.9.9"));
        let mld = records.iter().any(|r| is_report(r, 6, ""));
        assert!(
            igmp && mld,
            "no IGMP ({igmp}) / MLD ({mld}) membership report from the new cast member {new_cast}: {records:?}"
        );
    }
    drop(joined);
    once(&lab, "after the cast member failed");
}

/// Whether `r` is an IGMP (version 4: to 224.0.0.22, IGMPv3, or to `group`, IGMPv2) or MLD
/// (version 6: ICMPv6 143 or 131) membership report.
fn is_report(r: &Record, version: u8, group: &str) -> bool {
    let Some(ip) = r.ip() else {
        return false;
    };
    match version {
        4 => {
            ip.proto == 2
                && (ip.dst == "224.0.0.22".parse::<IpAddr>().unwrap()
                    || ip.dst == group.parse::<IpAddr>().unwrap())
        }
        _ => matches!(ip.l4, L4::Icmp { ty: 143 | 131, .. }),
    }
}

/// A peer that routes a foreign address through the host's data address gets nothing
/// forwarded, IPv4 and IPv6.
#[test]
fn the_host_forwards_nothing_for_foreign_addresses() {
    if !require_root("the_host_forwards_nothing_for_foreign_addresses") {
        return;
    }
    let (lab, _d) = start(Host {
        rp_filter: 1,
        test_addresses: false,
        xdp_mode: None,
    });
    let p = lab.peer(1);
    p.ip(&format!("route add {FAR_V4}/32 via {DATA_V4}"))
        .unwrap();
    p.ip(&format!("-6 route add {FAR_V6}/128 via {DATA_V6}"))
        .unwrap();
    let pcap = lab.work_dir().join("far.pcap");
    let capture = lab
        .far()
        .capture("eth0", &pcap, &["icmp", "or", "icmp6"])
        .unwrap();
    for dst in [FAR_V4, FAR_V6] {
        let r = p.ping(dst, 5, Duration::from_millis(20)).unwrap();
        assert_eq!(r.received, 0, "ping {dst} via the host answered: {r:?}");
    }
    thread::sleep(Duration::from_millis(1200));
    let records = capture.stop().unwrap();
    let from_peer: Vec<_> = records
        .iter()
        .filter(|r| {
            r.ip().is_some_and(|ip| {
                ip.src == peer_v4(1).parse::<IpAddr>().unwrap()
                    || ip.src == peer_v6(1).parse::<IpAddr>().unwrap()
            })
        })
        .collect();
    assert!(from_peer.is_empty(), "the host forwarded: {from_peer:?}");
}

/// ipmpd reads no rp_filter and writes none: what the host had before start is there while it
/// runs and after it stops.
#[test]
fn rp_filter_is_left_as_found() {
    if !require_root("rp_filter_is_left_as_found") {
        return;
    }
    let lab = Lab::new(SPEC).expect("lab");
    let h = lab.host();
    let set = [
        ("net.ipv4.conf.all.rp_filter", "2"),
        ("net.ipv4.conf.default.rp_filter", "1"),
        ("net.ipv4.conf.m0.rp_filter", "1"),
        ("net.ipv4.conf.m1.rp_filter", "2"),
        ("net.ipv4.conf.m2.rp_filter", "0"),
    ];
    for (k, v) in set {
        h.sysctl(k, v).unwrap();
    }
    let read = || -> Vec<(String, String)> {
        set.iter()
            .map(|(k, _)| (k.to_string(), h.sysctl_get(k).unwrap()))
            .collect()
    };
    let before = read();
    let d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    ping_ok(lab.peer(0), DATA_V4, 3);
    assert_eq!(read(), before, "while ipmpd runs");
    d.stop().unwrap();
    assert_eq!(read(), before, "after ipmpd stopped");
}

/// The members' routing rules of one family in the host namespace (`ip rule` lines other
/// than the kernel's own local, main and default).
fn member_rules(ns: &Netns, family: &str) -> Vec<String> {
    ns.run(&["ip", family, "rule", "show"])
        .unwrap()
        .lines()
        .filter(|l| {
            !["lookup local", "lookup main", "lookup default"]
                .iter()
                .any(|t| l.ends_with(t))
        })
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn ipv4_rules_only_for_members_with_an_ipv4_address() {
    if !require_root("ipv4_rules_only_for_members_with_an_ipv4_address") {
        return;
    }
    let (lab, d) = start(Host {
        rp_filter: 1,
        test_addresses: false,
        xdp_mode: None,
    });
    let h = lab.host();
    // Without IPv4 addresses on the members, IPv4 keeps no rule at all, so the host's IPv4
    // route lookups stay on the kernel's merged local+main table; IPv6 has its oif rules.
    assert!(
        member_rules(h, "-4").is_empty(),
        "{:?}",
        member_rules(h, "-4")
    );
    let v6 = member_rules(h, "-6");
    for m in MEMBERS {
        assert!(
            v6.iter().any(|r| r.contains(&format!("oif {m} "))),
            "{m}: {v6:?}"
        );
    }
    // An operator puts an IPv4 address on m0: ipmpd follows with its rules, and the address
    // answers through m0 under strict rp_filter.
    h.ip("addr add 198.51.100.41/24 dev m0 noprefixroute")
        .unwrap();
    assert!(
        wait_until(WAIT, POLL, || {
            let v4 = member_rules(h, "-4");
            v4.iter().any(|r| r.contains("from 198.51.100.41 "))
                && v4.iter().any(|r| r.contains("oif m0 "))
                && v4.len() == 2
        }),
        "{:?}\n{}",
        member_rules(h, "-4"),
        d.log()
    );
    ping_ok(lab.peer(0), "198.51.100.41", 3);
    ping_ok(lab.peer(0), DATA_V4, 3);
    // And takes it away again: the IPv4 rules go with it.
    h.ip("addr del 198.51.100.41/24 dev m0").unwrap();
    assert!(
        wait_until(WAIT, POLL, || member_rules(h, "-4").is_empty()),
        "{:?}\n{}",
        member_rules(h, "-4"),
        d.log()
    );
    ping_ok(lab.peer(0), DATA_V4, 3);
}
