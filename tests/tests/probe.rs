//! Probe-based failure detection against real traffic: a silent failure (frames dropped on
//! the switch while the carrier stays up) is detected by in.mpathd-style probes from the
//! members' test addresses, and repaired after 10 acknowledged probes.

pub mod common;

use std::time::{Duration, Instant};

use ipmp_tests::lab::{Daemon, Lab, LabSpec, require_root, wait_until};

const POLL: Duration = Duration::from_millis(20);

/// (active yes/no, state, probe) of member `name` ([`common::member`]).
fn member(d: &Daemon, name: &str) -> (String, String, String) {
    let m = common::member(d, name);
    (common::yes_no(m.active), m.state, m.probe)
}

/// Waits until every member's probes are acknowledged: PROBE ok (which it is from a member's
/// first answered probe on; until then its losses fall in the quiet period and cannot fail
/// it), and an answered probe of each in the `ipmpstat -p` stream; `what` names the probing.
fn wait_all_probing(d: &Daemon, what: &str) {
    let members = ["m0", "m1", "m2"];
    assert!(
        wait_until(Duration::from_secs(10), POLL, || {
            members.iter().all(|m| member(d, m).2 == "ok")
        }),
        "{what} never acknowledged: {:?}\n{}",
        members.map(|m| member(d, m)),
        d.log()
    );
    let acked = common::probe_stream(d, &["-pPn", "-o", "interface,netrtt"], 1.0);
    for m in members {
        assert!(
            acked.iter().any(|l| l
                .split_once(':')
                .is_some_and(|(i, rtt)| i == m && !rtt.is_empty())),
            "{what}: no answered probe of {m} in 1 s: {acked:?}\n{}",
            d.log()
        );
    }
}

/// Cuts m0 off silently (carrier up) and waits until it is declared failed, within a generous
/// order-of-magnitude bound of the 500 ms FDT (the real figure belongs to the benchmark).
fn cut_m0_silently(lab: &Lab, d: &Daemon, what: &str) {
    lab.silent_drop(0, true).expect("silent drop");
    let cut = Instant::now();
    wait_failed(d, "m0", what);
    let detected = cut.elapsed();
    eprintln!(
        "{what}: detected after {} ms (FDT 500 ms)",
        detected.as_millis()
    );
    assert!(detected <= Duration::from_millis(1500), "took {detected:?}");
}

/// Waits until `m` is declared failed; `what` says how it was cut off.
fn wait_failed(d: &Daemon, m: &str, what: &str) {
    assert!(
        wait_until(Duration::from_secs(5), POLL, || member(d, m).1 == "failed"),
        "{what}: {m} not declared failed: {:?}\n{}",
        member(d, m),
        d.log()
    );
}

/// The probing tests' lab: three members, one peer, the router.
fn lab3() -> Lab {
    Lab::new(LabSpec {
        members: 3,
        peers: 1,
        router: true,
    })
    .expect("lab")
}

/// Three members with test addresses 198.51.100.21-23 probing the router, FDT 500 ms.
fn probing_lab() -> (Lab, Daemon) {
    probing_lab_with(Vec::new())
}

/// Like [`probing_lab`], probing `targets` when given.
fn probing_lab_with(targets: Vec<String>) -> (Lab, Daemon) {
    let lab = lab3();
    let mut cfg = lab.config();
    cfg.failure_detection_time_ms = Some(500);
    cfg.group_mut().probe_targets = targets;
    for (i, m) in ["m0", "m1", "m2"].iter().enumerate() {
        cfg.member_mut(m).test_address = Some(format!("198.51.100.{}/24", 21 + i));
    }
    let d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
    (lab, d)
}

#[test]
fn probe_state_is_unknown_until_the_first_answered_probe() {
    if !require_root("probe_state_is_unknown_until_the_first_answered_probe") {
        return;
    }
    let lab = lab3();
    // m0's probes go out but nothing comes back from the start.
    lab.silent_drop(0, true).expect("silent drop");
    let mut cfg = lab.config();
    cfg.failure_detection_time_ms = Some(500);
    for (i, m) in ["m0", "m1", "m2"].iter().enumerate() {
        cfg.member_mut(m).test_address = Some(format!("198.51.100.{}/24", 21 + i));
    }
    let d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let (m0, m1) = (member(&d, "m0").2, member(&d, "m1").2);
        if !seen.contains(&(m0.clone(), m1.clone())) {
            seen.push((m0, m1));
        }
        std::thread::sleep(POLL);
    }
    eprintln!("(m0, m1) PROBE while m0 hears nothing: {seen:?}");
    assert!(
        seen.iter().all(|(m0, _)| m0 != "ok"),
        "m0 shown ok without an answered probe: {seen:?}\n{}",
        d.log()
    );
    assert!(
        seen.iter().any(|(m0, m1)| m0 == "unknown" && m1 == "ok"),
        "never unknown beside an answered member: {seen:?}\n{}",
        d.log()
    );
    lab.silent_drop(0, false).expect("lift the drop");
    assert!(
        wait_until(Duration::from_secs(5), POLL, || member(&d, "m0").2 == "ok"),
        "m0's probes answered, PROBE still {:?}\n{}",
        member(&d, "m0"),
        d.log()
    );
}

#[test]
fn silent_failure_is_detected_by_probes_and_repaired() {
    if !require_root("silent_failure_is_detected_by_probes_and_repaired") {
        return;
    }
    let (lab, d) = probing_lab();
    let fdt = d.ipmpstat(&["-gP", "-o", "fdt"]).unwrap();
    assert_eq!(fdt.trim(), "0.50s", "ipmpstat -g FDT");
    wait_all_probing(&d, "probes");
    let t = d
        .ipmpstat(&["-tP", "-o", "interface,mode,testaddr,targets"])
        .unwrap();
    assert_eq!(
        t.lines().collect::<Vec<_>>(),
        [
            "m0:routes:198.51.100.21:198.51.100.1",
            "m1:routes:198.51.100.22:198.51.100.1",
            "m2:routes:198.51.100.23:198.51.100.1",
        ],
        "ipmpstat -t"
    );
    cut_m0_silently(&lab, &d, "silent failure");
    assert_eq!(member(&d, "m0").0, "no");
    // Its carrier is up all along: only the probes can tell.
    assert!(lab.host().link("m0").unwrap().carrier);
    for m in ["m1", "m2"] {
        assert_eq!(member(&d, m).1, "ok", "{m} blamed for m0's failure");
    }
    lab.silent_drop(0, false).unwrap();
    let healed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), POLL, || member(&d, "m0")
            == ("yes".into(), "ok".into(), "ok".into())),
        "m0 not repaired: {:?}\n{}",
        member(&d, "m0"),
        d.log()
    );
    eprintln!("repaired after {} ms", healed.elapsed().as_millis());
}

/// All targets die at once (the router goes away): in.mpathd's group failure — every member
/// fails together, no data address hops from member to member, and the group comes back when
/// the target answers again.
#[test]
fn all_targets_dying_is_a_group_failure_without_address_moves() {
    if !require_root("all_targets_dying_is_a_group_failure_without_address_moves") {
        return;
    }
    let (lab, d) = probing_lab();
    wait_all_probing(&d, "probes");
    let inbound_before = d.ipmpstat(&["-aP", "-o", "address,inbound"]).unwrap();
    // Moves from one member to another (a move to "none" is the group losing its members).
    let rebinds = |d: &Daemon| {
        d.log()
            .lines()
            .filter(|l| {
                l.contains("data address rebound")
                    && !l.contains(" from=none ")
                    && !l.contains(" to=none ")
            })
            .count()
    };
    let before = rebinds(&d);
    lab.router().ip("link set lan0 down").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), POLL, || {
            d.ipmpstat(&["-gP", "-o", "state"])
                .is_ok_and(|s| s.trim() == "failed")
        }),
        "no group failure: {:?}\n{}",
        ["m0", "m1", "m2"].map(|m| member(&d, m)),
        d.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        rebinds(&d),
        before,
        "data addresses moved during a group failure"
    );
    lab.router().ip("link set lan0 up").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), POLL, || {
            d.ipmpstat(&["-gP", "-o", "state"])
                .is_ok_and(|s| s.trim() == "ok")
        }),
        "group not repaired: {:?}\n{}",
        ["m0", "m1", "m2"].map(|m| member(&d, m)),
        d.log()
    );
    // Back in service: every data address is bound again and answers.
    let inbound_after = d.ipmpstat(&["-aP", "-o", "inbound"]).unwrap();
    assert!(
        inbound_after.lines().all(|l| !l.is_empty()),
        "unbound addresses after the repair: {inbound_after:?} (before: {inbound_before:?})"
    );
    let ping = lab
        .peer(0)
        .ping(ipmp_tests::lab::DATA_V4, 10, Duration::from_millis(20))
        .unwrap();
    assert!(ping.received >= 9, "{ping:?}");
}

/// One of two targets dies: it is dropped from the firing order, and no member is blamed.
#[test]
fn a_dead_target_is_dropped_not_blamed_on_the_members() {
    if !require_root("a_dead_target_is_dropped_not_blamed_on_the_members") {
        return;
    }
    let peer = ipmp_tests::lab::peer_v4(0);
    let (lab, d) = probing_lab_with(vec![ipmp_tests::lab::ROUTER_V4.to_string(), peer.clone()]);
    let targets = |d: &Daemon| {
        d.ipmpstat(&["-tP", "-o", "interface,targets"])
            .expect("ipmpstat -t")
    };
    assert!(
        wait_until(Duration::from_secs(10), POLL, || {
            ["m0", "m1", "m2"].iter().all(|m| member(&d, m).2 == "ok")
                && targets(&d).lines().all(|l| l.contains(&peer))
        }),
        "probes to both targets never settled: {}\n{}",
        targets(&d),
        d.log()
    );
    lab.peer(0).ip("link set eth0 down").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), POLL, || !targets(&d)
            .contains(&peer)),
        "the dead target is still fired at: {}\n{}",
        targets(&d),
        d.log()
    );
    // A few more FDTs: the members keep answering through the router and stay in service.
    std::thread::sleep(Duration::from_millis(1500));
    for m in ["m0", "m1", "m2"] {
        assert_eq!(
            member(&d, m),
            ("yes".into(), "ok".into(), "ok".into()),
            "{m}\n{}",
            d.log()
        );
    }
}

/// While m0 is cut off from the link in one direction (its frames are dropped at the switch, so
/// its probes never reach the target) a peer sprays echo replies at m0's test address that
/// claim to come from the target, with guessed ids, sequences and payloads. They reach m0, but
/// they must not keep it alive, and they are counted.
#[test]
fn forged_replies_do_not_keep_a_dead_member_alive() {
    if !require_root("forged_replies_do_not_keep_a_dead_member_alive") {
        return;
    }
    let (lab, d) = probing_lab();
    wait_all_probing(&d, "probes");
    let sw = lab.switch();
    sw.run(&["nft", "add", "table", "bridge", "oneway"])
        .unwrap();
    sw.run(&[
        "nft",
        "add",
        "chain",
        "bridge",
        "oneway",
        "spray",
        "{ type filter hook forward priority -1; policy accept; }",
    ])
    .unwrap();
    sw.run(&[
        "nft",
        "add",
        "rule",
        "bridge",
        "oneway",
        "spray",
        "iifname",
        &Lab::port(0),
        "drop",
    ])
    .unwrap();
    // m0's ARP replies are dropped at the switch too: tell the peer its MAC directly.
    let mac = ipmp_tests::lab::fmt_mac(&lab.member_mac(0));
    lab.peer(0)
        .ip(&format!(
            "neigh replace 198.51.100.21 lladdr {mac} dev eth0 nud permanent"
        ))
        .unwrap();
    let spray = lab
        .peer(0)
        .labtool(&[
            "icmp-spray",
            "--from",
            ipmp_tests::lab::ROUTER_V4,
            "--to",
            "198.51.100.21",
            "--rate",
            "2000",
            "--duration",
            "2",
        ])
        .unwrap();
    let failed = wait_until(Duration::from_secs(2), POLL, || {
        member(&d, "m0").1 == "failed"
    });
    let sent = spray.finish().unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&d.ipmpadm(&["status", "--json"]).unwrap()).unwrap();
    let forged = status["groups"][0]["members"][0]["probe_forged"]
        .as_u64()
        .unwrap_or(0);
    eprintln!("forged replies sent {sent}, counted by ipmpd {forged}");
    assert!(
        failed,
        "forged replies kept m0 alive: {:?}\n{}",
        member(&d, "m0"),
        d.log()
    );
    assert!(forged > 0, "no forged reply counted ({sent})");
    sw.run(&["nft", "delete", "table", "bridge", "oneway"])
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), POLL, || member(&d, "m0").1 == "ok"),
        "m0 not repaired\n{}",
        d.log()
    );
}

/// No test addresses at all: every member probes the router with ARP requests (IPv4) and
/// ICMPv6 echo from its link-local address (IPv6); a silent failure is still detected, and
/// repaired once the answers come back.
#[test]
fn without_test_addresses_link_layer_probes_detect_a_silent_failure() {
    if !require_root("without_test_addresses_link_layer_probes_detect_a_silent_failure") {
        return;
    }
    let lab = lab3();
    let mut cfg = lab.config();
    cfg.failure_detection_time_ms = Some(500);
    cfg.group_mut().link_layer_probes = None; // ipmpd's default: on
    let d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
    wait_all_probing(&d, "link-layer probes");
    let t = d
        .ipmpstat(&["-tP", "-o", "interface,testaddr,targets"])
        .unwrap();
    // IPv4 by ARP (no test address); IPv6 by ICMPv6 echo from the member's link-local
    // address (Solaris' IPv6 test address).
    let v6_target = ipmp_tests::lab::ROUTER_V6.replace(':', "\\:");
    for m in ["m0", "m1", "m2"] {
        let v4 = format!("{m}::{}", ipmp_tests::lab::ROUTER_V4);
        assert!(t.lines().any(|l| l == v4), "{m}: no ARP probing:\n{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with(&format!("{m}:fe80"))
                    && l.ends_with(&format!(":{v6_target}"))),
            "{m}: no IPv6 probing from its link-local address:\n{t}"
        );
    }
    // The members really have no address of their own: only link-layer probes can work.
    assert!(
        lab.host()
            .addrs("m0")
            .unwrap()
            .iter()
            .all(|a| a.starts_with("fe80:")),
        "{:?}",
        lab.host().addrs("m0")
    );
    cut_m0_silently(&lab, &d, "silent failure without test addresses");
    assert!(lab.host().link("m0").unwrap().carrier);
    for m in ["m1", "m2"] {
        assert_eq!(member(&d, m).1, "ok", "{m} blamed for m0's failure");
    }
    // Its traffic moved: a peer still reaches the data address.
    let ping = lab
        .peer(0)
        .ping(ipmp_tests::lab::DATA_V4, 10, Duration::from_millis(20))
        .unwrap();
    assert!(ping.received >= 9, "{ping:?}");
    lab.silent_drop(0, false).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), POLL, || member(&d, "m0")
            == ("yes".into(), "ok".into(), "ok".into())),
        "m0 not repaired: {:?}\n{}",
        member(&d, "m0"),
        d.log()
    );
}

/// Milliseconds of an `ipmpstat -p` duration such as `0.51ms`.
fn ms_of(v: &str) -> f64 {
    v.strip_suffix("ms")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a duration in ms: {v:?}"))
}

/// `ipmpstat -p` streams every probe as it completes in Solaris' columns; replies reach ipmpd
/// only through XDP's ring buffer (the sockets never see them), so NETRTT is XDP's receive
/// time and never exceeds RTT; lost probes have empty RTT fields; `-P` escapes ':'.
#[test]
fn ipmpstat_p_streams_probes_with_xdp_timestamps() {
    if !require_root("ipmpstat_p_streams_probes_with_xdp_timestamps") {
        return;
    }
    let (lab, d) = probing_lab();
    wait_all_probing(&d, "probes");
    // FDT 500 ms: a probe every ~71 ms per member.
    let lines = common::probe_stream(&d, &["-pn"], 1.5);
    assert_eq!(
        lines.first().map(|l| l.trim_end()),
        Some("TIME      INTERFACE   PROBE  NETRTT    RTT       RTTAVG    TARGET"),
        "{lines:?}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.len() >= 20, "too few probes in 1.5 s: {lines:?}");
    for r in &rows {
        assert_eq!(r.len(), 7, "{r:?}: {lines:#?}");
        let t: f64 = r[0].strip_suffix('s').unwrap().parse().unwrap();
        assert!((-1.0..3.0).contains(&t), "TIME {t}");
        assert!(["m0", "m1", "m2"].contains(&r[1]), "{r:?}");
        r[2].parse::<u16>().expect("PROBE is the sequence number");
        assert_ne!(
            r[3], "--",
            "a probe lost while every member is healthy: {lines:#?}"
        );
        let (netrtt, rtt) = (ms_of(r[3]), ms_of(r[4]));
        assert!(netrtt <= rtt, "NETRTT {netrtt} > RTT {rtt}: {r:?}");
        assert!(rtt < 100.0, "{r:?}");
        ms_of(r[5]);
        assert_eq!(r[6], ipmp_tests::lab::ROUTER_V4);
    }
    // Parsable, every field; m0 cut off silently: its probes are lost, RTT fields empty.
    lab.silent_drop(0, true).unwrap();
    let lines = common::probe_stream(
        &d,
        &[
            "-pPn",
            "-o",
            "time,interface,probe,netrtt,rtt,rttavg,target,rttdev",
        ],
        1.0,
    );
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(':').collect()).collect();
    assert!(fields.iter().all(|f| f.len() == 8), "{lines:?}");
    let lost: Vec<_> = fields
        .iter()
        .filter(|f| f[1] == "m0" && f[3].is_empty() && f[4].is_empty())
        .collect();
    assert!(!lost.is_empty(), "no lost probe of m0 shown: {lines:?}");
    assert!(
        fields
            .iter()
            .filter(|f| f[1] != "m0")
            .all(|f| !f[3].is_empty()),
        "{lines:?}"
    );
    // --json: one object per probe.
    let lines = common::probe_stream(&d, &["-p", "--json"], 0.5);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON line");
    assert!(v["seq"].is_u64() && v["interface"].is_string(), "{v}");
}

/// Router targets follow the routing table: a route added through the IPMP interface makes
/// its gateway a target, and removing the route drops it.
#[test]
fn router_targets_follow_the_routing_table() {
    if !require_root("router_targets_follow_the_routing_table") {
        return;
    }
    let (lab, d) = probing_lab();
    let targets = |d: &Daemon| {
        d.ipmpstat(&["-tPn", "-o", "interface,targets"])
            .expect("ipmpstat -t")
    };
    let gw = ipmp_tests::lab::peer_v4(0);
    assert!(!targets(&d).contains(&gw), "{}", targets(&d));
    lab.host()
        .ip(&format!("route add 203.0.113.128/25 via {gw} dev ipmp0"))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), POLL, || {
            targets(&d)
                .lines()
                .filter(|l| l.split(':').nth(1).is_some_and(|t| t.contains(&gw)))
                .count()
                == 3
        }),
        "the new gateway {gw} is not a target of every member: {}\n{}",
        targets(&d),
        d.log()
    );
    lab.host()
        .ip(&format!("route del 203.0.113.128/25 via {gw} dev ipmp0"))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), POLL, || !targets(&d).contains(&gw)),
        "the removed gateway {gw} is still a target: {}",
        targets(&d)
    );
    // The router stays, and nobody failed on the way.
    assert!(targets(&d).contains(ipmp_tests::lab::ROUTER_V4));
    for m in ["m0", "m1", "m2"] {
        assert_eq!(member(&d, m).1, "ok");
    }
}

/// A member NIC re-created with a new ifindex probes again from new sockets: it is repaired by
/// 10 acknowledged probes, as after any link-up.
#[test]
fn a_recreated_member_probes_again() {
    if !require_root("a_recreated_member_probes_again") {
        return;
    }
    let (lab, d) = probing_lab();
    wait_all_probing(&d, "probes");
    lab.host().ip("link del m0").unwrap();
    let m0_failed = || member(&d, "m0").1 == "failed";
    assert!(wait_until(Duration::from_secs(5), POLL, m0_failed));
    lab.replug_member(0).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), POLL, || member(&d, "m0")
            == ("yes".into(), "ok".into(), "ok".into())),
        "the re-created m0 is not repaired by probes: {:?}\n{}",
        member(&d, "m0"),
        d.log()
    );
}

/// Without configured targets or routes, members find targets by multicast echo (224.0.0.1),
/// as in.mpathd does, and a silent failure is still detected.
#[test]
fn multicast_discovery_finds_targets() {
    if !require_root("multicast_discovery_finds_targets") {
        return;
    }
    let lab = Lab::new(LabSpec {
        members: 3,
        peers: 2,
        router: false,
    })
    .expect("lab");
    // Linux ignores echo requests to multicast addresses by default; these hosts answer.
    for i in 0..2 {
        lab.peer(i)
            .sysctl("net.ipv4.icmp_echo_ignore_broadcasts", "0")
            .unwrap();
    }
    let mut cfg = lab.config();
    cfg.failure_detection_time_ms = Some(500);
    cfg.group_mut().routes.clear();
    for (i, m) in ["m0", "m1", "m2"].iter().enumerate() {
        cfg.member_mut(m).test_address = Some(format!("198.51.100.{}/24", 21 + i));
    }
    let d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
    let want = [ipmp_tests::lab::peer_v4(0), ipmp_tests::lab::peer_v4(1)];
    assert!(
        wait_until(Duration::from_secs(10), POLL, || {
            let t = d
                .ipmpstat(&["-tPn", "-o", "interface,mode,targets"])
                .unwrap_or_default();
            t.lines().count() == 3
                && t.lines().all(|l| {
                    l.split(':').nth(1) == Some("multicast")
                        && want.iter().all(|w| l.contains(w.as_str()))
                })
        }),
        "no multicast-discovered targets: {}\n{}",
        d.ipmpstat(&["-tPn", "-o", "interface,mode,targets"])
            .unwrap_or_default(),
        d.log()
    );
    wait_all_probing(&d, "probes to discovered targets");
    lab.silent_drop(0, true).unwrap();
    wait_failed(&d, "m0", "silent failure with discovered targets");
    for m in ["m1", "m2"] {
        assert_eq!(member(&d, m).1, "ok", "{m} blamed for m0's failure");
    }
}

/// Test addresses never carry data traffic: the host's own connections to peers take a data
/// address as source (the test addresses have no prefix route and are deprecated), while the
/// prober still sends from them, in both families.
#[test]
fn test_addresses_are_never_the_source_of_data_traffic() {
    if !require_root("test_addresses_are_never_the_source_of_data_traffic") {
        return;
    }
    let lab = lab3();
    let mut cfg = lab.config();
    cfg.failure_detection_time_ms = Some(500);
    cfg.member_mut("m0").test_address = Some("198.51.100.21/24".into());
    cfg.member_mut("m1").test_address = Some("2001:db8:1::22/64".into());
    cfg.member_mut("m2").test_address = Some("198.51.100.23/24".into());
    let d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
    // m1 probes IPv6 only: its answered probes come from its IPv6 test address.
    wait_all_probing(&d, "probes from IPv4 and IPv6 test addresses");
    for (dst, want) in [
        (ipmp_tests::lab::peer_v4(0), ipmp_tests::lab::DATA_V4),
        (ipmp_tests::lab::peer_v6(0), ipmp_tests::lab::DATA_V6),
        ("203.0.113.10".to_string(), ipmp_tests::lab::DATA_V4),
    ] {
        let route: serde_json::Value =
            serde_json::from_str(&lab.host().run(&["ip", "-j", "route", "get", &dst]).unwrap())
                .unwrap();
        assert_eq!(
            route[0]["prefsrc"].as_str(),
            Some(want),
            "source for {dst}: {route}"
        );
    }
    let m1 = lab.host().ip("-6 addr show dev m1").unwrap();
    assert!(m1.contains("deprecated"), "{m1}");
}

/// A member whose IPv6 link-local address appears only after ipmpd started probes IPv6 with
/// neighbour solicitations from it; XDP timestamps the target's solicited advertisements.
#[test]
fn neighbour_solicitation_probes_when_the_link_local_address_comes_late() {
    if !require_root("neighbour_solicitation_probes_when_the_link_local_address_comes_late") {
        return;
    }
    let lab = lab3();
    // m0 gets no automatic link-local address and loses the one it had.
    lab.host()
        .sysctl("net.ipv6.conf.m0.addr_gen_mode", "1")
        .unwrap();
    lab.host().ip("-6 addr flush dev m0 scope link").unwrap();
    let mut cfg = lab.config();
    cfg.failure_detection_time_ms = Some(500);
    cfg.group_mut().link_layer_probes = None;
    cfg.group_mut().probe_targets = vec![ipmp_tests::lab::ROUTER_V6.to_string()];
    let d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
    lab.host()
        .ip("-6 addr add fe80::ff:fe00:10/64 dev m0 nodad")
        .unwrap();
    wait_all_probing(&d, "IPv6 probes (m0 by neighbour solicitation)");
    let t = d
        .ipmpstat(&["-tPn", "-o", "interface,testaddr,targets"])
        .unwrap();
    // m0 has no test address (NS), the others probe from their link-local addresses.
    assert!(t.lines().any(|l| l == "m0::2001\\:db8\\:1\\:\\:1"), "{t}");
    assert!(t.lines().any(|l| l.starts_with("m1:fe80")), "{t}");
    lab.silent_drop(0, true).unwrap();
    wait_failed(&d, "m0", "silent failure with NS probes");
    lab.silent_drop(0, false).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), POLL, || member(&d, "m0").1 == "ok"),
        "m0 not repaired by NS probes: {:?}\n{}",
        member(&d, "m0"),
        d.log()
    );
}
