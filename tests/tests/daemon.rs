//! ipmpd as a whole: group failure and the IPMP interface's carrier, restart without loss
//! (pinned programs, links and maps adopted), planned offline/online, and broadcast/multicast
//! reaching the host's stack once.

pub mod common;

use std::{thread, time::Duration};

use ipmp_tests::lab::{DATA_V4, Lab, LabSpec, Netns, ROUTER_V4, peer_v4, require_root, wait_until};

const WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

fn lab(members: usize) -> Lab {
    Lab::new(LabSpec {
        members,
        peers: 1,
        router: true,
    })
    .expect("lab")
}

/// `ipmpstat -gP -o state`: the group's state.
fn group_state(d: &ipmp_tests::lab::Daemon) -> String {
    d.ipmpstat(&["-gP", "-o", "state"])
        .expect("ipmpstat -g")
        .trim()
        .to_string()
}

/// (name, active yes/no, state) of every member ([`common::members`]).
fn members(d: &ipmp_tests::lab::Daemon) -> Vec<(String, String, String)> {
    common::members(d)
        .expect("ipmpstat -i")
        .into_iter()
        .map(|m| (m.name, common::yes_no(m.active), m.state))
        .collect()
}

/// (active yes/no, state) of member `name`.
fn member_row(d: &ipmp_tests::lab::Daemon, name: &str) -> (String, String) {
    let m = common::member(d, name);
    (common::yes_no(m.active), m.state)
}

/// Sends one second of sequenced UDP (200/s) from `from` to `to`:`port`, received in `at`;
/// asserts every datagram arrived exactly once.
fn udp_arrives_once(from: &Netns, at: &Netns, to: &str, port: &str) {
    let mut rx = at
        .labtool(&["udp-seq-recv", "--port", port, "--duration", "3"])
        .expect("start udp-seq-recv");
    rx.wait_ready(Duration::from_secs(5))
        .expect("udp-seq-recv ready");
    let tx = from
        .labtool(&[
            "udp-seq-send",
            "--to",
            to,
            "--port",
            port,
            "--rate",
            "200",
            "--duration",
            "1",
        ])
        .expect("start udp-seq-send")
        .finish()
        .expect("udp-seq-send");
    let got = rx.finish().expect("udp-seq-recv");
    let sent = tx["sent"].as_u64().expect("sent count");
    assert!(sent >= 150, "{tx}");
    assert_eq!(tx["send_errors"].as_u64(), Some(0), "{to}: {tx}");
    assert_eq!(got["received"].as_u64(), Some(sent), "{to}: {got}");
    assert_eq!(got["duplicates"].as_u64(), Some(0), "{to}: {got}");
}

#[test]
fn group_failure_turns_the_ipmp_carrier_off_and_back_on() {
    if !require_root("group_failure_turns_the_ipmp_carrier_off_and_back_on") {
        return;
    }
    let lab = lab(2);
    let d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    assert!(lab.host().link("ipmp0").expect("ipmp0").carrier);
    lab.cut_link(0).unwrap();
    lab.cut_link(1).unwrap();
    assert!(
        wait_until(WAIT, POLL, || group_state(&d) == "failed"),
        "group not failed: {}",
        d.log()
    );
    assert!(
        wait_until(WAIT, POLL, || !lab.host().link("ipmp0").unwrap().carrier),
        "ipmp0 keeps its carrier although no member is usable"
    );
    lab.restore_link(1).unwrap();
    assert!(wait_until(WAIT, POLL, || group_state(&d) == "degraded"));
    assert!(wait_until(WAIT, POLL, || lab
        .host()
        .link("ipmp0")
        .unwrap()
        .carrier));
    let ping = lab
        .host()
        .ping(&peer_v4(0), 20, Duration::from_millis(10))
        .unwrap();
    assert!(ping.received >= 19, "after repair: {ping:?}");
    lab.restore_link(0).unwrap();
    assert!(wait_until(WAIT, POLL, || group_state(&d) == "ok"));
}

#[test]
fn restart_keeps_forwarding_and_adopts_the_pins() {
    if !require_root("restart_keeps_forwarding_and_adopts_the_pins") {
        return;
    }
    let lab = lab(3);
    let toml = lab.config().to_toml();
    let d = lab.start_ipmpd(&toml).expect("ipmpd");
    let before = lab.host().link("ipmp0").unwrap().ifindex;
    // 3000 pings at 1 ms from the peer to the data address (inbound) and the host pinging the
    // router (outbound, off the group's table) while ipmpd is killed and started again.
    let inbound = lab
        .peer(0)
        .spawn(&["ping", "-n", "-q", "-c", "3000", "-i", "0.001", DATA_V4])
        .unwrap();
    let outbound = lab
        .host()
        .spawn(&["ping", "-n", "-q", "-c", "3000", "-i", "0.001", ROUTER_V4])
        .unwrap();
    thread::sleep(Duration::from_millis(500));
    d.crash().unwrap();
    thread::sleep(Duration::from_millis(500));
    let d = lab.start_ipmpd(&toml).expect("ipmpd restart");
    for (what, child) in [("inbound", inbound), ("outbound", outbound)] {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let stats = ipmp_tests::lab::parse_ping(&text).expect("ping summary");
        assert_eq!(
            stats.received,
            stats.transmitted,
            "{what} pings lost across the restart: {stats:?}\n{}",
            d.log()
        );
    }
    assert_eq!(
        lab.host().link("ipmp0").unwrap().ifindex,
        before,
        "the IPMP interface was recreated instead of adopted"
    );
    assert!(
        d.log_synced()
            .contains("adopting the existing IPMP interface")
    );
    assert_eq!(group_state(&d), "ok");
}

#[test]
fn planned_offline_loses_nothing_and_online_brings_the_member_back() {
    if !require_root("planned_offline_loses_nothing_and_online_brings_the_member_back") {
        return;
    }
    let lab = lab(2);
    let d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    let inbound = lab
        .peer(0)
        .spawn(&["ping", "-n", "-q", "-c", "2000", "-i", "0.001", DATA_V4])
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let out = d.ipmpadm(&["offline", "m0"]).expect("ipmpadm offline m0");
    assert!(out.contains("offline"), "{out}");
    assert_eq!(member_row(&d, "m0"), ("no".into(), "offline".into()));
    // The last usable member cannot go offline.
    let refused = d.ipmpadm(&["offline", "m1"]);
    assert!(
        refused.is_err(),
        "offlining the last usable member was accepted"
    );
    thread::sleep(Duration::from_millis(300));
    d.ipmpadm(&["online", "m0"]).expect("ipmpadm online m0");
    assert_eq!(member_row(&d, "m0"), ("yes".into(), "ok".into()));
    let out = inbound.wait_with_output().unwrap();
    let stats = ipmp_tests::lab::parse_ping(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(
        stats.received, stats.transmitted,
        "pings lost across a planned offline/online: {stats:?}"
    );
}

/// Every member hears the link's broadcasts; only the cast member may hand them to the stack.
#[test]
fn broadcast_and_multicast_reach_the_stack_once() {
    if !require_root("broadcast_and_multicast_reach_the_stack_once") {
        return;
    }
    let lab = lab(3);
    let d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    for (to, port) in [("198.51.100.255", "7001"), ("ff02::1", "7002")] {
        udp_arrives_once(lab.peer(0), lab.host(), to, port);
    }
    drop(d);
}

/// The first packet to a next hop that no member has resolved yet must arrive: the kernel
/// releases it from the member's neighbour queue with the IPMP interface's MACs, and the
/// member's TC program sends it again through the resolved neighbour.
#[test]
fn first_packet_to_an_unresolved_neighbour_arrives() {
    if !require_root("first_packet_to_an_unresolved_neighbour_arrives") {
        return;
    }
    let lab = lab(2);
    let d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    for dst in [peer_v4(0), ipmp_tests::lab::peer_v6(0)] {
        for _ in 0..3 {
            lab.host().neigh_flush().unwrap();
            let ping = lab
                .host()
                .ping(&dst, 1, Duration::from_millis(200))
                .unwrap();
            assert_eq!(
                ping.received,
                1,
                "the first ping to {dst} was lost\n{}",
                d.log()
            );
        }
    }
}

/// A subnet-directed broadcast from the host leaves once, through the cast member (the IPMP
/// interface is NOARP, so without ipmpd's broadcast neighbour the kernel would address it to
/// the interface's own MAC and the TC program would treat it as unicast).
#[test]
fn subnet_broadcast_from_the_host_reaches_the_link_once() {
    if !require_root("subnet_broadcast_from_the_host_reaches_the_link_once") {
        return;
    }
    let lab = lab(3);
    let _d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    udp_arrives_once(lab.host(), lab.peer(0), "198.51.100.255", "7003");
}

/// `ipmpadm reload` with a broken file is refused and changes nothing; with a good file ipmpd
/// restarts on it (adopting its pins) without losing traffic, and a member dropped from the
/// file is detached.
#[test]
fn reload_applies_a_new_config_without_loss() {
    if !require_root("reload_applies_a_new_config_without_loss") {
        return;
    }
    let lab = lab(3);
    let d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    let pid = d.pid();
    std::fs::write(d.config_path(), "this is [not toml").unwrap();
    let refused = d.ipmpadm(&["reload"]);
    assert!(
        refused.is_err(),
        "a broken config was accepted: {refused:?}"
    );
    assert_eq!(members(&d).len(), 3);

    let mut cfg = lab.config();
    cfg.group_mut().member.retain(|m| m.name != "m2");
    std::fs::write(d.config_path(), cfg.to_toml()).unwrap();
    let inbound = lab
        .peer(0)
        .spawn(&["ping", "-n", "-q", "-c", "2000", "-i", "0.001", DATA_V4])
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    d.ipmpadm(&["reload"]).expect("ipmpadm reload");
    assert!(
        wait_until(WAIT, POLL, || d
            .ipmpstat(&["-iP", "-o", "interface"])
            .is_ok_and(|out| out.lines().count() == 2)),
        "the reloaded ipmpd does not show the new member set\n{}",
        d.log()
    );
    assert_eq!(d.pid(), pid, "reload re-executes in place");
    let m2 = lab.host().run(&["ip", "-d", "link", "show", "m2"]).unwrap();
    assert!(
        !m2.contains("xdp"),
        "m2 still has XDP after leaving the group: {m2}"
    );
    let out = inbound.wait_with_output().unwrap();
    let stats = ipmp_tests::lab::parse_ping(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(
        stats.received,
        stats.transmitted,
        "pings lost across a reload: {stats:?}\n{}",
        d.log()
    );
}

/// The IPMP interface's MTU is the smallest member MTU, also when a member's MTU changes.
#[test]
fn ipmp_mtu_follows_the_smallest_member() {
    if !require_root("ipmp_mtu_follows_the_smallest_member") {
        return;
    }
    let lab = lab(2);
    let d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    let mtu = || lab.host().link("ipmp0").expect("ipmp0").mtu;
    assert_eq!(mtu(), 1500);
    lab.host().ip("link set m1 mtu 1400").unwrap();
    assert!(
        wait_until(WAIT, POLL, || mtu() == 1400),
        "ipmp0 mtu {} after m1 went to 1400\n{}",
        mtu(),
        d.log()
    );
    lab.host().ip("link set m1 mtu 1500").unwrap();
    assert!(
        wait_until(WAIT, POLL, || mtu() == 1500),
        "ipmp0 mtu {}",
        mtu()
    );
}

/// A member NIC that disappears and comes back (driver reload, hot-plug) gets a new ifindex;
/// ipmpd prepares it again and it carries traffic.
#[test]
fn member_that_comes_back_with_a_new_ifindex_is_used_again() {
    if !require_root("member_that_comes_back_with_a_new_ifindex_is_used_again") {
        return;
    }
    let lab = lab(2);
    let d = lab.start_ipmpd(&lab.config().to_toml()).expect("ipmpd");
    let before = lab.host().link("m0").unwrap().ifindex;
    lab.host().ip("link del m0").unwrap();
    assert!(wait_until(WAIT, POLL, || member_row(&d, "m0").1 == "failed"));
    lab.replug_member(0).unwrap();
    assert_ne!(lab.host().link("m0").unwrap().ifindex, before);
    assert!(
        wait_until(WAIT, POLL, || member_row(&d, "m0")
            == ("yes".into(), "ok".into())),
        "m0 not back: {:?}\n{}",
        members(&d),
        d.log()
    );
    let (ingress, egress) = common::tcx_programs(lab.host(), "m0").unwrap();
    assert!(
        !ingress.is_empty() && !egress.is_empty(),
        "the new m0 lacks its TC programs: ingress {ingress:?}, egress {egress:?}"
    );
    // With m1 cut, everything goes through the new m0.
    lab.cut_link(1).unwrap();
    assert!(wait_until(WAIT, POLL, || member_row(&d, "m1").1 == "failed"));
    lab.peer(0).neigh_flush().unwrap();
    let ping = lab
        .peer(0)
        .ping(DATA_V4, 20, Duration::from_millis(10))
        .unwrap();
    assert!(
        ping.received >= 19,
        "through the new m0: {ping:?}\n{}",
        d.log()
    );
}

/// A map pinned by an ipmpd whose maps have another shape is refused with the fix, not reused
/// (the programs would index past its end).
#[test]
fn incompatible_pinned_map_is_refused() {
    if !require_root("incompatible_pinned_map_is_refused") {
        return;
    }
    let lab = lab(2);
    let pin_dir = lab.pin_dir();
    std::fs::create_dir_all(&pin_dir).unwrap();
    let stats = pin_dir.join("IPMP_STATS");
    let out = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&stats)
        .args([
            "type",
            "percpu_array",
            "key",
            "4",
            "value",
            "16",
            "entries",
            "10",
            "name",
            "IPMP_STATS",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "bpftool: {out:?}");
    let started = lab.start_ipmpd(&lab.config().to_toml());
    let err = format!(
        "{:#}",
        started.err().expect("ipmpd adopted an incompatible map")
    );
    assert!(
        err.contains("incompatible") && err.contains("--cleanup"),
        "{err}"
    );
    assert!(
        lab.host().link("ipmp0").is_err(),
        "ipmpd left its IPMP interface behind"
    );
}

/// A standby member carries nothing until an active member fails, then takes its share, and
/// steps back when the failed member is repaired (failback on).
#[test]
fn standby_member_takes_over_and_steps_back() {
    if !require_root("standby_member_takes_over_and_steps_back") {
        return;
    }
    let lab = lab(3);
    let mut cfg = lab.config();
    cfg.member_mut("m2").standby = true;
    let d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
    let m2 = |d: &ipmp_tests::lab::Daemon| {
        let s = d.ipmpadm(&["status", "--json"]).expect("ipmpadm status");
        let v: serde_json::Value = serde_json::from_str(&s).expect("json");
        let m = v["groups"][0]["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["name"] == "m2").cloned())
            .expect("m2");
        (
            m["active"].as_bool().unwrap_or(true),
            m["buckets"].as_u64().unwrap_or(u64::MAX),
            m["tx_packets"].as_u64().unwrap_or(0),
        )
    };
    let traffic = |lab: &Lab| {
        lab.host()
            .ping(&peer_v4(0), 10, Duration::from_millis(2))
            .expect("ping")
    };
    assert_eq!(member_row(&d, "m2"), ("no".into(), "ok".into()));
    traffic(&lab);
    let (active, buckets, tx) = m2(&d);
    assert!(
        !active && buckets == 0 && tx == 0,
        "standby m2 carried traffic: {active} {buckets} {tx}"
    );

    lab.cut_link(0).unwrap();
    assert!(wait_until(WAIT, POLL, || member_row(&d, "m2").0 == "yes"));
    // Each ping run is one ICMP flow (its own id); with 12 of them over two members the
    // chance that none hashes onto m2's half is 1 in 4096.
    for _ in 0..12 {
        traffic(&lab);
    }
    let (active, buckets, tx) = m2(&d);
    assert!(
        active && buckets > 300 && tx > 0,
        "m2 did not take over: {active} {buckets} {tx}"
    );

    lab.restore_link(0).unwrap();
    assert!(
        wait_until(WAIT, POLL, || member_row(&d, "m2").0 == "no"),
        "m2 stays active after m0's repair"
    );
    let (active, buckets, _) = m2(&d);
    assert!(
        !active && buckets == 0,
        "m2 not back to standby: {active} {buckets}"
    );
}

/// The kernel's count of echo requests it answered in `ns` (/proc/net/snmp `Icmp: InEchos`).
fn kernel_in_echos(ns: &Netns) -> u64 {
    let snmp = ns.run(&["cat", "/proc/net/snmp"]).expect("/proc/net/snmp");
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (
        icmp.next().expect("Icmp header"),
        icmp.next().expect("Icmp values"),
    );
    let i = names
        .split_whitespace()
        .position(|n| n == "InEchos")
        .expect("InEchos column");
    values
        .split_whitespace()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .expect("InEchos value")
}

/// Echo requests to a data address are answered by XDP on the member (the kernel never sees
/// them) unless `xdp_echo = false` leaves them to the kernel.
#[test]
fn xdp_echo_answers_pings_unless_switched_off() {
    if !require_root("xdp_echo_answers_pings_unless_switched_off") {
        return;
    }
    for xdp_echo in [true, false] {
        let lab = lab(2);
        let mut cfg = lab.config();
        cfg.group_mut().xdp_echo = Some(xdp_echo);
        let _d = lab.start_ipmpd(&cfg.to_toml()).expect("ipmpd");
        let before = kernel_in_echos(lab.host());
        let ping = lab
            .peer(0)
            .ping(DATA_V4, 20, Duration::from_millis(10))
            .unwrap();
        assert_eq!(ping.received, 20, "xdp_echo = {xdp_echo}: {ping:?}");
        let answered_by_kernel = kernel_in_echos(lab.host()) - before;
        if xdp_echo {
            assert_eq!(
                answered_by_kernel, 0,
                "XDP left echo requests to the kernel"
            );
        } else {
            assert!(
                answered_by_kernel >= 20,
                "kernel answered {answered_by_kernel}"
            );
        }
    }
}

/// `ipmpd --cleanup` removes what ipmpd made and returns only once the kernel has let go of
/// the members: an ipmpd started right after it attaches again.
#[test]
fn cleanup_then_immediate_start_works() {
    if !require_root("cleanup_then_immediate_start_works") {
        return;
    }
    let lab = lab(2);
    let toml = lab.config().to_toml();
    let d = lab.start_ipmpd(&toml).expect("ipmpd");
    let config = d.config_path().to_path_buf();
    d.stop().unwrap();
    let ipmpd = ipmp_tests::lab::bin_path("ipmpd");
    let out = lab
        .host()
        .run_status(&[
            &ipmpd.to_string_lossy(),
            "--config",
            &config.to_string_lossy(),
            "--pin-dir",
            &lab.pin_dir().to_string_lossy(),
            "--cleanup",
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "ipmpd --cleanup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lab.host().links().unwrap().contains(&"ipmp0".to_string()));
    assert!(!lab.pin_dir().exists());
    let d = lab.start_ipmpd(&toml).expect("ipmpd right after --cleanup");
    assert!(
        wait_until(WAIT, POLL, || group_state(&d) == "ok"),
        "{}",
        d.log()
    );
}
