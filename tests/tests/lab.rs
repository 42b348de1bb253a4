//! Self-test of the netns lab (needs root): topology, failure injection, traffic tools, capture,
//! the ipmpd helper (against a stand-in daemon) and teardown.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use ipmp_tests::{
    lab::{self, Lab, LabSpec, Netns},
    pcap::{IPPROTO_TCP, L4},
};

const SPEC: LabSpec = LabSpec {
    members: 3,
    peers: 2,
    router: true,
};

/// A test address for m0 inside the host namespace (the lab gives members none).
const M0_V4: &str = "198.51.100.50";
const M0_V6: &str = "2001:db8:1::50";

fn labtool_path_sanity() {
    // Integration tests get the package's binaries built; the lab finds them next to us.
    let path = lab::bin_path("labtool");
    assert!(path.is_file(), "labtool not found at {}", path.display());
}

fn address_m0(lab: &Lab) {
    let host = lab.host();
    host.ip(&format!("addr add {M0_V4}/24 dev m0"))
        .expect("add the v4 test address to m0");
    host.ip(&format!("-6 addr add {M0_V6}/64 dev m0 nodad"))
        .expect("add the v6 test address to m0");
}

#[test]
fn topology_reaches_peers_router_and_far_host() {
    if !lab::require_root("topology_reaches_peers_router_and_far_host") {
        return;
    }
    let lab = Lab::new(SPEC).unwrap();
    let ms = Duration::from_millis(10);

    for i in 0..SPEC.members {
        let link = lab.host().link(&lab.member(i)).unwrap();
        assert_eq!(link.mac, Some(lab.member_mac(i)), "m{i} has the fixed MAC");
        assert!(link.up && link.carrier, "m{i} is up with carrier: {link:?}");
        assert!(
            lab.host()
                .addrs(&lab.member(i))
                .unwrap()
                .iter()
                .all(|a| a.starts_with("fe80"))
        );
    }
    for (i, peer) in [lab.peer(0), lab.peer(1)].into_iter().enumerate() {
        for dst in [lab::ROUTER_V4, lab::ROUTER_V6, lab::FAR_V4, lab::FAR_V6] {
            let s = peer.ping(dst, 3, ms).unwrap();
            assert_eq!(s.received, 3, "peer {i} -> {dst}: {s:?}");
        }
        assert_eq!(peer.neigh(lab::ROUTER_V4), Some(lab::ROUTER_MAC));
    }
    for dst in [lab::peer_v4(1), lab::peer_v6(1)] {
        assert_eq!(
            lab.peer(0).ping(&dst, 3, ms).unwrap().received,
            3,
            "peer 0 -> {dst}"
        );
    }
    for dst in [lab::peer_v4(0), lab::peer_v6(1)] {
        let s = lab.far().ping(&dst, 3, ms).unwrap();
        assert_eq!(s.received, 3, "far -> {dst}: {s:?}");
    }
    assert_eq!(lab.peer(0).neigh(&lab::peer_v4(1)), Some(lab::peer_mac(1)));
    assert_eq!(lab.peer(0).neigh(&lab::peer_v6(1)), Some(lab::peer_mac(1)));
    // The far host is off-link for the L2: peers reach it through the router's MAC.
    assert_eq!(lab.peer(0).neigh(lab::FAR_V4), None);
    // No DAD anywhere.
    assert_eq!(
        lab.host()
            .sysctl_get("net.ipv6.conf.default.accept_dad")
            .unwrap(),
        "0"
    );
    // A dead address is not reachable (the checks above can fail).
    assert_eq!(
        lab.peer(0).ping("198.51.100.99", 2, ms).unwrap().received,
        0
    );
}

#[test]
fn cut_link_takes_the_carrier_away_and_restore_brings_it_back() {
    if !lab::require_root("cut_link_takes_the_carrier_away_and_restore_brings_it_back") {
        return;
    }
    let lab = Lab::new(SPEC).unwrap();
    let host = lab.host();
    let carrier = |i: usize| host.link(&lab.member(i)).unwrap().carrier;
    assert!(carrier(1));
    lab.cut_link(1).unwrap();
    assert!(lab::wait_until(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || !carrier(1)
    ));
    let link = host.link("m1").unwrap();
    assert!(link.up, "the member stays administratively up");
    assert!(link.flags.iter().any(|f| f == "NO-CARRIER"), "{link:?}");
    assert!(carrier(0) && carrier(2), "only m1 lost its carrier");
    lab.restore_link(1).unwrap();
    assert!(lab::wait_until(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || carrier(1)
    ));
}

#[test]
fn silent_drop_blocks_a_port_while_the_carrier_stays() {
    if !lab::require_root("silent_drop_blocks_a_port_while_the_carrier_stays") {
        return;
    }
    let lab = Lab::new(SPEC).unwrap();
    address_m0(&lab);
    let host = lab.host();
    let ms = Duration::from_millis(10);
    for dst in [lab::peer_v4(0), lab::peer_v6(0)] {
        assert_eq!(
            host.ping(&dst, 3, ms).unwrap().received,
            3,
            "{dst} before the drop"
        );
    }
    // Peers learnt m0's MAC for its address.
    assert_eq!(lab.peer(0).neigh(M0_V4), Some(lab.member_mac(0)));
    assert_eq!(lab.peer(0).neigh(M0_V6), Some(lab.member_mac(0)));

    let before = lab.switch().link_stats(&Lab::port(0)).unwrap();
    lab.silent_drop(0, true).unwrap();
    lab.silent_drop(0, true).unwrap(); // idempotent
    for dst in [lab::peer_v4(0), lab::peer_v6(0)] {
        let s = host.ping(&dst, 5, ms).unwrap();
        assert_eq!(s.received, 0, "{dst} during the drop: {s:?}");
    }
    assert!(host.link("m0").unwrap().carrier, "the carrier stays up");
    // The frames still reached the switch port: it is the bridge that drops them.
    let during = lab.switch().link_stats(&Lab::port(0)).unwrap();
    assert!(
        during.rx_packets >= before.rx_packets + 5,
        "{before:?} -> {during:?}"
    );
    // Other ports are unaffected.
    assert_eq!(
        lab.peer(1).ping(&lab::peer_v4(0), 3, ms).unwrap().received,
        3
    );

    lab.silent_drop(0, false).unwrap();
    lab.silent_drop(0, false).unwrap();
    for dst in [lab::peer_v4(0), lab::peer_v6(0)] {
        assert_eq!(
            host.ping(&dst, 3, ms).unwrap().received,
            3,
            "{dst} after the drop"
        );
    }
}

#[test]
fn labtool_flows_udp_sequences_and_capture() {
    if !lab::require_root("labtool_flows_udp_sequences_and_capture") {
        return;
    }
    labtool_path_sanity();
    let lab = Lab::new(SPEC).unwrap();
    address_m0(&lab);
    let pcap = lab.work_dir().join("p0.pcap");
    let capture = lab
        .switch()
        .capture(&Lab::port(0), &pcap, &["tcp"])
        .unwrap();

    // TCP: 4 flows from fixed source ports over v4, 2 over v6.
    let mut sink = lab
        .peer(0)
        .labtool(&[
            "tcp-sink",
            "--port",
            "5001",
            "--duration",
            "20",
            "--connections",
            "6",
        ])
        .unwrap();
    sink.wait_ready(Duration::from_secs(5)).unwrap();
    let peer_v4 = lab::peer_v4(0);
    let peer_v6 = lab::peer_v6(0);
    let v4 = lab
        .host()
        .labtool(&[
            "tcp-flows",
            "--to",
            &peer_v4,
            "--port",
            "5001",
            "--flows",
            "4",
            "--src-port-base",
            "41000",
            "--duration",
            "1",
            "--bind",
            M0_V4,
        ])
        .unwrap();
    let v6 = lab
        .host()
        .labtool(&[
            "tcp-flows",
            "--to",
            &peer_v6,
            "--port",
            "5001",
            "--flows",
            "2",
            "--src-port-base",
            "42000",
            "--duration",
            "1",
            "--bind",
            M0_V6,
            "--rate",
            "50000",
        ])
        .unwrap();
    let v4 = v4.finish().unwrap();
    let v6 = v6.finish().unwrap();
    let sink = sink.finish().unwrap();
    let records = capture.stop().unwrap();

    let mut sent = 0;
    for (report, base, n) in [(&v4, 41000, 4), (&v6, 42000, 2)] {
        let flows = report["flows"].as_array().unwrap();
        assert_eq!(flows.len(), n);
        for (i, f) in flows.iter().enumerate() {
            assert_eq!(f["src_port"].as_u64(), Some(base + i as u64), "{report}");
            assert!(f["error"].is_null(), "{report}");
            // ~1 s at the flow's rate.
            assert!(f["bytes"].as_u64().unwrap() > 20_000, "{report}");
            sent += f["bytes"].as_u64().unwrap();
        }
    }
    assert_eq!(sink["total_bytes"].as_u64(), Some(sent), "sink {sink}");
    assert_eq!(sink["connections"].as_array().unwrap().len(), 6);

    // Every flow's packets crossed m0's switch port, from m0's MAC.
    for port in (41000..41004).chain(42000..42002) {
        let seen = records.iter().any(|r| {
            r.src_port() == Some(port)
                && r.src_mac == Some(lab.member_mac(0))
                && matches!(r.ip().map(|ip| ip.l4), Some(L4::Tcp { .. }))
        });
        assert!(seen, "no packet of source port {port} in the capture of p0");
    }
    assert!(
        records
            .iter()
            .all(|r| r.ip().is_some_and(|ip| ip.proto == IPPROTO_TCP))
    );

    // UDP: a clean second, then a 300 ms silent drop shows up as loss and a gap.
    let udp = |duration: &str, rate: &str| {
        let mut recv = lab
            .peer(1)
            .labtool(&[
                "udp-seq-recv",
                "--port",
                "6001",
                "--duration",
                "10",
                "--idle-exit",
                "1",
            ])
            .unwrap();
        recv.wait_ready(Duration::from_secs(5)).unwrap();
        let send = lab
            .host()
            .labtool(&[
                "udp-seq-send",
                "--to",
                &lab::peer_v4(1),
                "--port",
                "6001",
                "--rate",
                rate,
                "--duration",
                duration,
                "--bind",
                M0_V4,
            ])
            .unwrap();
        (recv, send)
    };
    let (recv, send) = udp("1", "500");
    let sent = send.finish().unwrap();
    let got = recv.finish().unwrap();
    assert_eq!(got["lost"].as_u64(), Some(0), "{got}");
    assert_eq!(
        got["received"].as_u64(),
        sent["sent"].as_u64(),
        "{got} vs {sent}"
    );
    assert!(got["max_gap_ms"].as_f64().unwrap() < 200.0, "{got}");

    let (recv, send) = udp("2", "500");
    thread::sleep(Duration::from_millis(500));
    lab.silent_drop(0, true).unwrap();
    let cut = Instant::now();
    thread::sleep(Duration::from_millis(300));
    lab.silent_drop(0, false).unwrap();
    let outage = cut.elapsed();
    send.finish().unwrap();
    let got = recv.finish().unwrap();
    let lost = got["lost"].as_u64().unwrap();
    assert!(
        (100..=300).contains(&lost),
        "~150 datagrams in 300 ms: {got}"
    );
    let gap = got["max_gap_ms"].as_f64().unwrap();
    assert!(
        gap >= 250.0 && gap <= outage.as_secs_f64() * 1000.0 + 150.0,
        "{got}"
    );
}

/// A stand-in for ipmpd: records how it was started, "listens" by creating the control socket
/// path from its config, and exits cleanly on SIGTERM. ipmpstat/ipmpadm answer when it exists.
fn fake_binaries(dir: &Path) {
    let ipmpd = r#"#!/bin/sh
echo "args: $*"
echo "RUST_LOG=$RUST_LOG"
echo "netns: $(readlink /proc/self/ns/net)"
config="$2"
socket=$(sed -n 's/^control_socket = "\(.*\)"$/\1/p' "$config")
echo "socket: $socket"
trap 'echo "got TERM"; rm -f "$socket"; exit 0' TERM
touch "$socket"
while true; do sleep 0.05; done
"#;
    let tool = r#"#!/bin/sh
[ "$1" = "--socket" ] && [ -e "$2" ] || { echo "no daemon at $2" >&2; exit 1; }
echo "$(basename "$0") $*"
"#;
    for (name, text) in [("ipmpd", ipmpd), ("ipmpstat", tool), ("ipmpadm", tool)] {
        let path = dir.join(name);
        fs::write(&path, text).expect("write a stand-in binary");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod it");
    }
}

#[test]
fn daemon_helper_starts_queries_and_stops_ipmpd() {
    if !lab::require_root("daemon_helper_starts_queries_and_stops_ipmpd") {
        return;
    }
    let lab = Lab::new(SPEC).unwrap();
    let bins = lab.work_dir().join("fake-bin");
    fs::create_dir(&bins).unwrap();
    fake_binaries(&bins);

    // The default config names every member, both data addresses and both default routes.
    let config = lab.config();
    let text = config.to_toml();
    let parsed: toml::Table = text.parse().unwrap();
    let group = &parsed["group"][0];
    let members: Vec<_> = group["member"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(members, lab.members());
    assert_eq!(
        group["data_addresses"][0].as_str(),
        Some("198.51.100.10/24")
    );
    assert_eq!(group["routes"][1]["via"].as_str(), Some(lab::ROUTER_V6));

    // A config without control_socket gets one in the work dir.
    let no_socket = text
        .lines()
        .filter(|l| !l.starts_with("control_socket"))
        .collect::<Vec<_>>()
        .join("\n");
    let daemon = lab::start_ipmpd_with(&lab, &no_socket, Some(&bins)).unwrap();
    assert_eq!(daemon.socket(), lab.work_dir().join("ipmpd.sock"));
    assert!(daemon.socket().exists());
    let out = daemon.ipmpstat(&["-g"]).unwrap();
    assert!(
        out.contains("ipmpstat --socket") && out.trim_end().ends_with("-g"),
        "{out}"
    );
    let out = daemon.ipmpadm(&["offline", "m0"]).unwrap();
    assert!(out.trim_end().ends_with("offline m0"), "{out}");
    let log = daemon.log();
    let pin_arg = format!("--pin-dir {}", lab.pin_dir().display());
    assert!(log.contains(&pin_arg), "{log}");
    assert!(log.contains("RUST_LOG=debug"), "{log}");
    let host_ns = lab.host().run(&["readlink", "/proc/self/ns/net"]).unwrap();
    assert!(log.contains(&format!("netns: {}", host_ns.trim())), "{log}");
    let written = fs::read_to_string(daemon.config_path()).unwrap();
    assert!(written.starts_with("control_socket = "), "{written}");
    let log_path = daemon.log_path().to_path_buf();
    let status = daemon.stop().unwrap();
    assert!(status.success(), "{status}");
    assert!(fs::read_to_string(log_path).unwrap().contains("got TERM"));

    // A daemon that dies at start-up is reported with its log.
    let broken = lab.work_dir().join("broken-bin");
    fs::create_dir(&broken).unwrap();
    fake_binaries(&broken);
    fs::write(
        broken.join("ipmpd"),
        "#!/bin/sh\necho 'bad config: no such member m9'\nexit 3\n",
    )
    .unwrap();
    let err = match lab::start_ipmpd_with(&lab, &text, Some(&broken)) {
        Ok(_) => panic!("a daemon that exits at once must not count as started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("exited during start-up") && err.contains("no such member m9"),
        "{err}"
    );
}

/// Runs without root: the lab's default config must be one ipmpd accepts.
#[test]
fn default_config_is_accepted_by_ipmpd() {
    let work = Path::new("/tmp/ipmp-lab-config-check");
    for spec in [
        SPEC,
        LabSpec {
            members: 2,
            peers: 0,
            router: false,
        },
    ] {
        let mut cfg = lab::default_config(spec, work);
        let text = cfg.to_toml();
        let parsed = ipmp::config::Config::from_toml_str(&text, "lab config")
            .unwrap_or_else(|e| panic!("ipmpd rejects the lab config:\n{text}\n{e}"));
        assert_eq!(parsed.control_socket, work.join("ipmpd.sock"));
        assert!(parsed.failback);
        let group = &parsed.groups[0];
        assert_eq!(group.name, "ipmp0");
        assert_eq!(group.members.len(), spec.members);
        assert_eq!(group.hash_seed, Some(lab::LAB_HASH_SEED));
        assert_eq!(group.routes.len(), if spec.router { 2 } else { 0 });
        assert_eq!(group.announce.interval, Duration::from_millis(100));

        // The knobs tests turn are accepted too.
        cfg.failure_detection_time_ms = Some(1000);
        cfg.member_mut("m1").standby = true;
        cfg.member_mut("m0").test_address = Some("198.51.100.20/24".into());
        cfg.group_mut().xdp_mode = Some("generic".into());
        let text = cfg.to_toml();
        let parsed = ipmp::config::Config::from_toml_str(&text, "lab config")
            .unwrap_or_else(|e| panic!("ipmpd rejects the lab config:\n{text}\n{e}"));
        assert!(parsed.groups[0].members[1].standby);
        assert_eq!(parsed.failure_detection_time, Duration::from_millis(1000));
    }
}

fn netns_exists(ns: &Netns) -> bool {
    ns.path().exists()
}

#[test]
fn drop_removes_namespaces_and_pins_and_start_removes_leftovers() {
    if !lab::require_root("drop_removes_namespaces_and_pins_and_start_removes_leftovers") {
        return;
    }
    // Leftovers of a "crashed" run: a pid above pid_max can never be alive.
    let pid_max: u64 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dead = format!("{}{}-0-", lab::NETNS_PREFIX, pid_max + 1);
    let stale = Netns::from_name(format!("{dead}host"));
    let out = std::process::Command::new("ip")
        .args(["netns", "add", stale.name()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    lab::ensure_bpffs().unwrap();
    let stale_pins =
        Path::new(lab::PIN_ROOT).join(format!("ipmp-test-{}", dead.trim_end_matches('-')));
    fs::create_dir_all(&stale_pins).unwrap();

    let lab = Lab::new(SPEC).unwrap();
    assert!(
        !netns_exists(&stale),
        "leftover namespace {} was not removed",
        stale.name()
    );
    assert!(
        !stale_pins.exists(),
        "leftover pin dir {} was not removed",
        stale_pins.display()
    );

    let namespaces: Vec<Netns> = lab.namespaces().to_vec();
    assert_eq!(namespaces.len(), 2 + SPEC.peers + 2);
    assert!(namespaces.iter().all(netns_exists));
    let pins = lab.pin_dir();
    assert!(pins.is_dir());
    // A pinned map inside the pin dir (as ipmpd leaves them) goes too.
    let map = pins.join("IPMP_LABTEST");
    lab.host()
        .run(&[
            "bpftool",
            "map",
            "create",
            &map.to_string_lossy(),
            "type",
            "array",
            "key",
            "4",
            "value",
            "4",
            "entries",
            "1",
            "name",
            "ipmp_labtest",
        ])
        .unwrap();
    assert!(map.exists());
    // A process left running in a lab namespace does not keep it alive.
    let mut sleeper = lab.peer(0).spawn(&["sleep", "30"]).unwrap();
    let work = lab.work_dir().to_path_buf();
    assert!(work.is_dir());

    drop(lab);
    for ns in &namespaces {
        assert!(
            !netns_exists(ns),
            "namespace {} survived the drop",
            ns.name()
        );
    }
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for ns in &namespaces {
        assert!(
            !listed.contains(ns.name()),
            "ip netns list still has {}",
            ns.name()
        );
    }
    assert!(
        !pins.exists(),
        "pin dir {} survived the drop",
        pins.display()
    );
    assert!(
        !work.exists(),
        "work dir {} survived the drop",
        work.display()
    );
    // The lab killed what still ran inside it.
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "the sleeper was killed: {status}");
}
