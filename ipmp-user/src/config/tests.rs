use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

/// A valid group; `{top}` goes before it, `{group}` into it, `{member}` into its first member.
fn doc(top: &str, group: &str, member: &str) -> String {
    format!(
        "{top}\n\
             [[group]]\n\
             name = \"ipmp0\"\n\
             data_addresses = [\"198.51.100.10/24\"]\n\
             {group}\n\
             [[group.member]]\n\
             name = \"eth1\"\n\
             {member}\n\
             [[group.member]]\n\
             name = \"eth2\"\n"
    )
}

fn ok(text: &str) -> Config {
    match Config::from_toml_str(text, "test.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- input ---\n{text}"),
    }
}

/// The validation problems of `text` (panics unless it parses but is invalid).
fn problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, "test.toml") {
        Err(e @ ConfigError::Invalid { .. }) => {
            assert_eq!(e.origin(), "test.toml");
            e.problems().to_vec()
        }
        other => panic!("expected validation problems, got {other:?}\n--- input ---\n{text}"),
    }
}

/// Asserts exactly one problem that mentions every word of `needles`.
fn one_problem(text: &str, needles: &[&str]) {
    let p = problems(text);
    assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
    for n in needles {
        assert!(
            p[0].contains(n),
            "problem {:?} does not mention {n:?}",
            p[0]
        );
    }
}

/// The rendered parse error of `text` (panics unless parsing fails).
fn parse_error(text: &str) -> String {
    match Config::from_toml_str(text, "test.toml") {
        Err(e @ ConfigError::Parse { .. }) => e.to_string(),
        other => panic!("expected a parse error, got {other:?}\n--- input ---\n{text}"),
    }
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

#[test]
fn shipped_example_parses_to_documented_values() {
    let text = include_str!("../../../config/ipmpd.toml");
    let c = ok(text);
    let expected = Config {
        failure_detection_time: DEFAULT_FAILURE_DETECTION_TIME,
        failback: true,
        control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        link_flap_max_ups: DEFAULT_LINK_FLAP_MAX_UPS,
        link_flap_window: DEFAULT_LINK_FLAP_WINDOW,
        netlink_rcvbuf: DEFAULT_NETLINK_RCVBUF,
        metrics: None,
        groups: vec![GroupConfig {
            name: "ipmp0".into(),
            data_addresses: vec![
                Prefix::new(v4("198.51.100.10"), 24),
                Prefix::new(v6("2001:db8:1::10"), 64),
            ],
            routes: vec![
                RouteConfig {
                    to: Prefix::new(v4("0.0.0.0"), 0),
                    via: v4("198.51.100.1"),
                },
                RouteConfig {
                    to: Prefix::new(v6("::"), 0),
                    via: v6("2001:db8:1::1"),
                },
            ],
            xdp_mode: XdpMode::Auto,
            announce: AnnounceConfig::default(),
            buckets: DEFAULT_BUCKETS,
            hash_seed: None,
            probe_targets: Vec::new(),
            xdp_echo: true,
            link_layer_probes: true,
            members: ["eth1", "eth2", "eth3"]
                .iter()
                .enumerate()
                .map(|(i, n)| MemberConfig {
                    name: (*n).into(),
                    test_address: Some(Prefix::new(v4(&format!("198.51.100.2{}", i + 1)), 24)),
                    standby: *n == "eth3",
                })
                .collect(),
        }],
    };
    assert_eq!(c, expected);
    // Where the example states a default, removing the line changes nothing.
    let stripped: String = text
        .lines()
        .filter(|l| {
            ![
                "failure_detection_time_ms",
                "failback",
                "control_socket",
                "link_flap_",
                "xdp_mode",
                "announce",
                "buckets",
                "xdp_echo",
                "link_layer_probes",
                "standby = false",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(ok(&stripped), expected);
}

#[test]
fn shipped_example_loads_from_disk() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ipmpd.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.groups[0].members.len(), 3);
    assert_eq!(DEFAULT_PATH, "/etc/ipmp/ipmpd.toml");
}

#[test]
fn missing_file_names_the_path() {
    let e = Config::load(Path::new("/nonexistent/ipmpd.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(e.origin(), "/nonexistent/ipmpd.toml");
    assert!(e.to_string().contains("/nonexistent/ipmpd.toml"), "{e}");
}

#[test]
fn minimal_config_gets_defaults() {
    let c = ok(&doc("", "", ""));
    assert_eq!(c.failure_detection_time, Duration::from_secs(10));
    assert!(c.failback);
    assert_eq!(c.control_socket, Path::new("/run/ipmp/ipmpd.sock"));
    assert_eq!(c.link_flap_max_ups, 2);
    assert_eq!(c.link_flap_window, Duration::from_secs(60));
    let g = &c.groups[0];
    assert!(g.routes.is_empty());
    assert_eq!(g.xdp_mode, XdpMode::Auto);
    assert_eq!(g.announce.count, 3);
    assert_eq!(g.announce.interval, Duration::from_millis(100));
    assert_eq!(g.buckets, 1024);
    assert_eq!(g.hash_seed, None);
    assert_eq!(g.members[0].test_address, None);
    assert!(!g.members[0].standby);
    assert_eq!(c.group("ipmp0").map(|g| g.members.len()), Some(2));
    assert_eq!(g.member("eth2").map(|(i, _)| i), Some(1));
    assert!(c.group("ipmp1").is_none());
}

#[test]
fn every_key_is_read() {
    let c = ok(&doc(
        "failure_detection_time_ms = 500\nfailback = false\ncontrol_socket = \"/tmp/x.sock\"\n\
             link_flap_max_ups = 5\nlink_flap_window_ms = 1000",
        "xdp_mode = \"generic\"\nannounce = { count = 0, interval_ms = 10000 }\nbuckets = 4096\n\
             hash_seed = 4294967295\nroutes = [{ to = \"203.0.113.0/24\", via = \"198.51.100.1\" }]",
        "test_address = \"198.51.100.21/24\"\nstandby = true",
    ));
    assert_eq!(c.failure_detection_time, Duration::from_millis(500));
    assert!(!c.failback);
    assert_eq!(c.control_socket, Path::new("/tmp/x.sock"));
    assert_eq!(c.link_flap_max_ups, 5);
    assert_eq!(c.link_flap_window, Duration::from_secs(1));
    let g = &c.groups[0];
    assert_eq!(g.xdp_mode, XdpMode::Generic);
    assert_eq!(g.announce.count, 0);
    assert_eq!(g.announce.interval, Duration::from_secs(10));
    assert_eq!(g.buckets, 4096);
    assert_eq!(g.hash_seed, Some(u32::MAX));
    assert_eq!(
        g.routes,
        vec![RouteConfig {
            to: "203.0.113.0/24".parse().unwrap(),
            via: v4("198.51.100.1")
        }]
    );
    assert_eq!(
        g.members[0].test_address,
        Some("198.51.100.21/24".parse().unwrap())
    );
    assert!(g.members[0].standby);
    // Partial announce table keeps the other default.
    let c = ok(&doc("", "announce = { count = 7 }", ""));
    assert_eq!(c.groups[0].announce.count, 7);
    assert_eq!(c.groups[0].announce.interval, DEFAULT_ANNOUNCE_INTERVAL);
}

#[test]
fn prefix_parse_display_and_maths() {
    let p: Prefix = "198.51.100.10/24".parse().unwrap();
    assert_eq!(p, Prefix::new(v4("198.51.100.10"), 24));
    assert_eq!(p.to_string(), "198.51.100.10/24");
    assert_eq!(p.network(), v4("198.51.100.0"));
    assert!(p.contains(v4("198.51.100.255")));
    assert!(!p.contains(v4("198.51.101.1")));
    assert!(!p.contains(v6("::1")));
    let p: Prefix = "2001:db8:1::10/64".parse().unwrap();
    assert_eq!(p.to_string(), "2001:db8:1::10/64");
    assert_eq!(p.network(), v6("2001:db8:1::"));
    assert!(p.contains(v6("2001:db8:1::ffff")));
    assert!(!p.contains(v6("2001:db8:2::1")));
    assert_eq!("198.51.100.7".parse::<Prefix>().unwrap().len, 32);
    assert_eq!("2001:db8::7".parse::<Prefix>().unwrap().len, 128);
    assert_eq!(Prefix::host(v6("::1")).len, 128);
    let zero: Prefix = "0.0.0.0/0".parse().unwrap();
    assert!(zero.contains(v4("203.0.113.1")));
    assert_eq!(Prefix::default_for(v6("2001:db8::1")).to_string(), "::/0");
    let p: Prefix = "10.1.2.3/32".parse().unwrap();
    assert_eq!(p.network(), v4("10.1.2.3"));
    assert!(!p.contains(v4("10.1.2.4")));
    for bad in [
        "",
        "/24",
        "198.51.100.1/",
        "198.51.100.1/x",
        "198.51.100.1/-1",
        "198.51.100.1/+4",
        "198.51.100.1/33",
        "2001:db8::1/129",
        "example.com/24",
        "198.51.100.1/24/1",
        "198.51.100.1/999",
    ] {
        assert!(bad.parse::<Prefix>().is_err(), "{bad} parsed");
    }
    assert!(matches!(
        "2001:db8::1/129".parse::<Prefix>(),
        Err(PrefixError::TooLong {
            max: 128,
            family: 6,
            ..
        })
    ));
}

#[test]
fn prefix_serde_is_a_string() {
    let p = Prefix::new(v4("198.51.100.10"), 24);
    assert_eq!(serde_json::to_string(&p).unwrap(), "\"198.51.100.10/24\"");
    let back: Prefix = serde_json::from_str("\"198.51.100.10/24\"").unwrap();
    assert_eq!(back, p);
    assert!(serde_json::from_str::<Prefix>("\"nope\"").is_err());
}

#[test]
fn xdp_mode_names() {
    for (mode, name) in [
        (XdpMode::Auto, "auto"),
        (XdpMode::Native, "native"),
        (XdpMode::Generic, "generic"),
        (XdpMode::Off, "off"),
    ] {
        assert_eq!(mode.to_string(), name);
        let c = ok(&doc("", &format!("xdp_mode = \"{name}\""), ""));
        assert_eq!(c.groups[0].xdp_mode, mode);
    }
    let e = parse_error(&doc("", "xdp_mode = \"Native\"", ""));
    assert!(e.contains("Native") && e.contains("line"), "{e}");
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    for (top, group, member, key) in [
        ("failback_time = 1", "", "", "failback_time"),
        ("", "bukets = 12", "", "bukets"),
        ("", "", "standy = true", "standy"),
        ("", "announce = { count = 1, interval = 5 }", "", "interval"),
        (
            "",
            "routes = [{ to = \"default\", via = \"198.51.100.1\", dev = \"x\" }]",
            "",
            "dev",
        ),
        (
            "Failure_Detection_Time_Ms = 100",
            "",
            "",
            "Failure_Detection_Time_Ms",
        ),
    ] {
        let e = parse_error(&doc(top, group, member));
        assert!(e.contains(key), "error for {key} does not name it:\n{e}");
        assert!(e.contains("test.toml"), "{e}");
    }
}

#[test]
fn probe_targets_must_be_other_unicast_hosts() {
    let c = ok(&doc("", "probe_targets = [\"198.51.100.1\"]", ""));
    assert_eq!(c.groups[0].probe_targets, vec![v4("198.51.100.1")]);
    for bad in ["224.0.0.1", "198.51.100.10", "127.0.0.1"] {
        let text = doc("", &format!("probe_targets = [\"{bad}\"]"), "");
        let e = Config::from_toml_str(&text, "test.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("probe target") && e.contains(bad), "{e}");
    }
}

#[test]
fn syntax_errors_keep_line_and_column() {
    let e = parse_error("failback = true\nfailback = \n");
    assert!(
        e.starts_with("config test.toml: line 2, column 12: "),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "not one line: {e}");
    let e = parse_error(&doc("", "buckets = \"many\"", ""));
    assert!(e.contains("line 5"), "{e}");
    let e = parse_error(&doc("", "hash_seed = -1", ""));
    assert!(e.contains("hash_seed") || e.contains("line 5"), "{e}");
    let e = parse_error(&doc("", "hash_seed = 4294967296", ""));
    assert!(e.contains("line 5"), "{e}");
    let e = parse_error(
        "[[group]]\nname = \"ipmp0\"\ndata_addresses = [\"198.51.100.10/40\"]\n\
             [[group.member]]\nname = \"eth1\"\n",
    );
    assert!(e.contains("40") && e.contains("line 3"), "{e}");
    let e = parse_error(&doc(
        "",
        "routes = [{ to = \"everywhere\", via = \"198.51.100.1\" }]",
        "",
    ));
    assert!(e.contains("everywhere") && e.contains("default"), "{e}");
    let e = parse_error("[[group]]\ndata_addresses = [\"198.51.100.10/24\"]\n");
    assert!(e.contains("name"), "{e}");
}

#[test]
fn mpathd_keys_with_solaris_meaning() {
    let c = ok(&doc(
        "FAILURE_DETECTION_TIME = 5000\nFAILBACK = \"no\"\nTRACK_INTERFACES_ONLY_WITH_GROUPS = \"yes\"",
        "",
        "",
    ));
    assert_eq!(c.failure_detection_time, Duration::from_millis(5000));
    assert!(!c.failback);
    // Key names in any case, values yes/no in any case.
    let c = ok(&doc(
        "failure_detection_time = 250\nFailBack = \"YES\"\ntrack_interfaces_only_with_groups = \"Yes\"",
        "",
        "",
    ));
    assert_eq!(c.failure_detection_time, Duration::from_millis(250));
    assert!(c.failback);
    // All-lowercase `failback` with "yes"/"no" is the mpathd key.
    assert!(!ok(&doc("failback = \"no\"", "", "")).failback);
    assert!(!ok(&doc("failback = false", "", "")).failback);
}

#[test]
fn mpathd_keys_conflicts_and_bad_values() {
    one_problem(
        &doc(
            "FAILURE_DETECTION_TIME = 5000\nfailure_detection_time_ms = 5000",
            "",
            "",
        ),
        &[
            "FAILURE_DETECTION_TIME",
            "failure_detection_time_ms",
            "keep one",
        ],
    );
    one_problem(
        &doc("FAILBACK = \"no\"\nfailback = true", "", ""),
        &["FAILBACK", "failback"],
    );
    one_problem(
        &doc("FAILBACK = \"no\"\nFailback = \"no\"", "", ""),
        &["FAILBACK is given 2 times"],
    );
    one_problem(
        &doc("TRACK_INTERFACES_ONLY_WITH_GROUPS = \"no\"", "", ""),
        &["anonymous group", "not support"],
    );
    for (top, needle) in [
        ("FAILBACK = \"maybe\"", "maybe"),
        ("FAILBACK = true", "string"),
        ("Failback = false", "string"),
        ("FAILURE_DETECTION_TIME = -5", "milliseconds"),
        ("FAILURE_DETECTION_TIME = \"10000\"", "milliseconds"),
        ("FAILURE_DETECTION_TIME = 1.5", "milliseconds"),
        ("TRACK_INTERFACES_ONLY_WITH_GROUPS = 1", "string"),
    ] {
        let e = parse_error(&doc(top, "", ""));
        assert!(e.contains(needle) && e.contains("line 1"), "{top}:\n{e}");
    }
}

#[test]
fn failure_detection_time_floor() {
    one_problem(
        &doc("failure_detection_time_ms = 9", "", ""),
        &["9 ms", "minimum of 10 ms"],
    );
    one_problem(
        &doc("FAILURE_DETECTION_TIME = 0", "", ""),
        &["0 ms", "raise"],
    );
    assert_eq!(
        ok(&doc("failure_detection_time_ms = 10", "", "")).failure_detection_time,
        Duration::from_millis(10)
    );
}

#[test]
fn daemon_wide_ranges() {
    one_problem(
        &doc("link_flap_window_ms = 0", "", ""),
        &["link_flap_window_ms = 0"],
    );
    one_problem(
        &doc("link_flap_window_ms = 3600001", "", ""),
        &["link_flap_window_ms"],
    );
    ok(&doc(
        "link_flap_window_ms = 3600000\nlink_flap_max_ups = 0",
        "",
        "",
    ));
    one_problem(
        &doc("netlink_rcvbuf_bytes = 100", "", ""),
        &["netlink_rcvbuf_bytes = 100"],
    );
    ok(&doc("netlink_rcvbuf_bytes = 4096", "", ""));
    one_problem(
        &doc("control_socket = \"ipmpd.sock\"", "", ""),
        &["control_socket", "absolute"],
    );
}

#[test]
fn groups_members_and_addresses_are_required() {
    one_problem("failback = true\n", &["no group", "[[group]]"]);
    one_problem(
        "[[group]]\nname = \"ipmp0\"\ndata_addresses = [\"198.51.100.10/24\"]\n",
        &["group `ipmp0` has no member"],
    );
    one_problem(
        "[[group]]\nname = \"ipmp0\"\n[[group.member]]\nname = \"eth1\"\n",
        &["group `ipmp0` has no data address"],
    );
}

#[test]
fn interface_names() {
    ok(&doc("", "", "").replace("\"eth1\"", "\"abcdefghijklmno\""));
    for (bad, needle) in [
        ("abcdefghijklmnop", "16 bytes"),
        ("", "empty"),
        ("eth/1", "'/'"),
        ("eth:1", "':'"),
        ("eth 1", "' '"),
        ("eth\\t1", "'\\t'"),
        (".", "not a valid"),
        ("..", "not a valid"),
    ] {
        let text = doc("", "", "").replace("\"eth1\"", &format!("\"{bad}\""));
        one_problem(&text, &["member", needle]);
    }
    let text = doc("", "", "").replace("\"ipmp0\"", "\"ipmp/0\"");
    one_problem(&text, &["group `ipmp/0`", "'/'"]);
}

#[test]
fn names_are_unique_everywhere() {
    one_problem(
        &doc("", "", "").replace("\"eth2\"", "\"eth1\""),
        &["member `eth1`", "already used"],
    );
    one_problem(
        &doc("", "", "").replace("\"eth2\"", "\"ipmp0\""),
        &["`ipmp0`", "already used by group `ipmp0`"],
    );
    let two = format!(
        "{}\n[[group]]\nname = \"ipmp1\"\ndata_addresses = [\"203.0.113.10/24\"]\n\
             [[group.member]]\nname = \"eth2\"\n",
        doc("", "", "")
    );
    one_problem(
        &two,
        &[
            "member `eth2` of group `ipmp1`",
            "member `eth2` of group `ipmp0`",
        ],
    );
    let same_group = two
        .replacen("\"ipmp1\"", "\"ipmp0\"", 1)
        .replace("name = \"eth2\"\n\n", "name = \"eth3\"\n\n");
    one_problem(
        &same_group,
        &["group `ipmp0`: the name `ipmp0` is already used by group `ipmp0`"],
    );
}

#[test]
fn data_address_rules() {
    let with = |addrs: &str| doc("", "", "").replace("[\"198.51.100.10/24\"]", addrs);
    ok(&with(
        "[\"198.51.100.10/31\", \"198.51.100.20/32\", \"2001:db8::1/64\", \"fe80::1/64\"]",
    ));
    for (addrs, needle) in [
        ("[\"0.0.0.0/24\"]", "unspecified"),
        ("[\"::/64\"]", "unspecified"),
        ("[\"224.0.0.5/24\"]", "multicast"),
        ("[\"ff02::1/64\"]", "multicast"),
        ("[\"127.0.0.2/8\"]", "loopback"),
        ("[\"::1/128\"]", "loopback"),
        ("[\"255.255.255.255/32\"]", "broadcast"),
        ("[\"198.51.100.0/24\"]", "network address"),
        ("[\"198.51.100.255/24\"]", "broadcast address"),
        ("[\"198.51.100.10/0\"]", "prefix length 0"),
        (
            "[\"198.51.100.10/24\", \"198.51.100.10/25\"]",
            "listed twice",
        ),
    ] {
        one_problem(&with(addrs), &["data address", needle]);
    }
    let two = format!(
        "{}\n[[group]]\nname = \"ipmp1\"\ndata_addresses = [\"198.51.100.10/24\"]\n\
             [[group.member]]\nname = \"eth9\"\n",
        doc("", "", "")
    );
    one_problem(
        &two,
        &["group `ipmp1`", "also a data address of group `ipmp0`"],
    );
}

#[test]
fn route_rules() {
    let with = |routes: &str| {
        doc(
            "",
            &format!(
                "data_addresses = [\"198.51.100.10/24\", \"2001:db8:1::10/64\"]\nroutes = {routes}"
            ),
            "",
        )
        .replacen("data_addresses = [\"198.51.100.10/24\"]\n", "", 1)
    };
    let c = ok(&with(
        "[{ to = \"default\", via = \"2001:db8:1::1\" }, { to = \"DEFAULT\", via = \"198.51.100.1\" }, { to = \"203.0.113.0/24\", via = \"198.51.100.2\" }]",
    ));
    assert_eq!(c.groups[0].routes[0].to, Prefix::new(v6("::"), 0));
    assert_eq!(c.groups[0].routes[1].to, Prefix::new(v4("0.0.0.0"), 0));
    for (routes, needle) in [
        (
            "[{ to = \"::/0\", via = \"198.51.100.1\" }]",
            "different address families",
        ),
        (
            "[{ to = \"default\", via = \"203.0.113.1\" }]",
            "not on-link",
        ),
        (
            "[{ to = \"default\", via = \"198.51.100.10\" }]",
            "own data addresses",
        ),
        (
            "[{ to = \"203.0.113.5/24\", via = \"198.51.100.1\" }]",
            "write 203.0.113.0/24",
        ),
        (
            "[{ to = \"default\", via = \"198.51.100.1\" }, { to = \"0.0.0.0/0\", via = \"198.51.100.2\" }]",
            "same destination",
        ),
        ("[{ to = \"default\", via = \"224.0.0.1\" }]", "multicast"),
    ] {
        one_problem(&with(routes), &["route to", needle]);
    }
}

#[test]
fn bucket_and_announce_ranges() {
    for (group, needle) in [
        ("buckets = 0", "buckets = 0"),
        ("buckets = 65537", "1..=65536"),
        ("announce = { count = 101 }", "announce.count = 101"),
        ("announce = { interval_ms = 0 }", "announce.interval_ms = 0"),
        ("announce = { interval_ms = 10001 }", "1..=10000"),
    ] {
        one_problem(&doc("", group, ""), &["group `ipmp0`", needle]);
    }
    ok(&doc(
        "",
        "buckets = 1\nannounce = { count = 100, interval_ms = 1 }",
        "",
    ));
    ok(&doc("", "buckets = 65536", ""));
}

#[test]
fn test_address_rules() {
    ok(&doc("", "", "test_address = \"198.51.100.21/24\""));
    ok(&doc("", "", "test_address = \"203.0.113.21/24\""));
    for (t, needle) in [
        ("2001:db8::21/64", "no IPv6 data address"),
        ("198.51.100.10/24", "is a data address of group `ipmp0`"),
        ("224.0.0.1/24", "multicast"),
        ("198.51.100.21/0", "prefix length 0"),
    ] {
        one_problem(
            &doc("", "", &format!("test_address = \"{t}\"")),
            &["member `eth1`", needle],
        );
    }
    let dup = doc("", "", "test_address = \"198.51.100.21/24\"")
        + "test_address = \"198.51.100.21/24\"\n";
    one_problem(
        &dup,
        &["member `eth2`", "also the test address of member `eth1`"],
    );
}

#[test]
fn limits_over_all_groups() {
    let mut text = String::new();
    for g in 0..=MAX_GROUPS {
        text += &format!(
            "[[group]]\nname = \"ipmp{g}\"\ndata_addresses = [\"198.51.{g}.10/24\"]\n\
                 [[group.member]]\nname = \"eth{g}\"\n"
        );
    }
    one_problem(&text, &["17 groups", "at most 16"]);
}

#[test]
fn every_problem_is_reported_on_its_own_line() {
    let text =
        doc("failure_detection_time_ms = 1", "buckets = 0", "").replace("\"eth2\"", "\"eth1\"");
    let e = Config::from_toml_str(&text, "/etc/ipmp/ipmpd.toml").unwrap_err();
    assert_eq!(e.problems().len(), 3, "{e}");
    let rendered = e.to_string();
    assert_eq!(rendered.lines().count(), 3);
    assert!(
        rendered
            .lines()
            .all(|l| l.starts_with("config /etc/ipmp/ipmpd.toml: ")),
        "{rendered}"
    );
}

/// The shipped example documents `[metrics]` commented out; uncommented, its lines give the
/// documented defaults.
#[test]
fn shipped_example_metrics_section_uncommented_gives_its_defaults() {
    let text = include_str!("../../../config/ipmpd.toml");
    let metrics: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            *l == "[metrics]" || l.starts_with("listen = ") || l.starts_with("allow_remote = ")
        })
        .collect();
    assert_eq!(metrics.len(), 3, "{metrics:?}");
    let c = ok(&doc(&metrics.join("\n"), "", ""));
    let expected = MetricsConfig {
        listen: DEFAULT_METRICS_LISTEN.parse().unwrap(),
        allow_remote: false,
    };
    assert_eq!(c.metrics, Some(expected));
    // The section alone means the same.
    assert_eq!(ok(&doc("[metrics]", "", "")).metrics, Some(expected));
}

#[test]
fn metrics_are_off_without_their_section() {
    assert_eq!(ok(&doc("", "", "")).metrics, None);
}

#[test]
fn metrics_listen_accepts_loopback_and_remote_only_when_allowed() {
    let c = ok(&doc("[metrics]\nlisten = \"[::1]:9100\"", "", ""));
    assert_eq!(c.metrics.unwrap().listen, "[::1]:9100".parse().unwrap());
    let c = ok(&doc(
        "[metrics]\nlisten = \"0.0.0.0:9474\"\nallow_remote = true",
        "",
        "",
    ));
    assert_eq!(
        c.metrics,
        Some(MetricsConfig {
            listen: "0.0.0.0:9474".parse().unwrap(),
            allow_remote: true
        })
    );
}

#[test]
fn bad_metrics_values_name_the_key() {
    for (section, want) in [
        ("listen = \"0.0.0.0:9474\"", "metrics.allow_remote = true"),
        ("listen = \"198.51.100.10:9474\"", "not a loopback address"),
        ("listen = \"localhost:9474\"", "is not an address:port"),
        ("listen = \"127.0.0.1\"", "is not an address:port"),
        ("listen = \"127.0.0.1:0\"", "port 0"),
    ] {
        let p = problems(&doc(&format!("[metrics]\n{section}"), "", ""));
        assert_eq!(p.len(), 1, "{section}: {p:?}");
        assert!(p[0].contains("metrics.listen"), "{section}: {p:?}");
        assert!(p[0].contains(want), "{section}: {p:?}");
    }
    let e = Config::from_toml_str(&doc("[metrics]\nport = 9474", "", ""), "t.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    assert!(e.to_string().contains("port"), "{e}");
}

/// The field names serde accepts for `T` (a struct deriving Deserialize), taken from the
/// derive's own list so that a new key is seen without a list of ours to update.
fn accepted_keys<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    use serde::de::{self, Error as _, Visitor};

    struct Grab(Vec<&'static str>);
    impl<'de> de::Deserializer<'de> for &mut Grab {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend(fields);
            Err(Self::Error::custom("fields taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut grab = Grab(Vec::new());
    let _ = T::deserialize(&mut grab);
    grab.0
}

#[test]
fn shipped_example_documents_every_accepted_key() {
    // ipmpd.toml(5) is generated from this file, so a key described here is in the man page.
    let text = include_str!("../../../config/ipmpd.toml");
    let mut keys = Vec::new();
    keys.extend(accepted_keys::<RawConfig>());
    keys.extend(accepted_keys::<RawGroup>());
    keys.extend(accepted_keys::<raw::RawMember>());
    keys.extend(accepted_keys::<raw::RawAnnounce>());
    keys.extend(accepted_keys::<raw::RawRoute>());
    keys.extend(accepted_keys::<RawMetrics>());
    assert!(
        keys.contains(&"link_layer_probes") && keys.contains(&"interval_ms"),
        "{keys:?}"
    );
    keys.extend([MPATHD_FDT, MPATHD_FAILBACK, raw::MPATHD_TRACK]);
    let set = |key: &str| {
        text.lines().any(|line| {
            // Tables (metrics, possibly commented out) and arrays of tables (group, member) by
            // their header.
            let line = line.trim();
            let header = line.trim_start_matches(['#', ' ']);
            (header.starts_with('[')
                && header.trim_matches(['[', ']']).rsplit('.').next() == Some(key))
                || line.match_indices(&format!("{key} = ")).any(|(at, _)| {
                    !line[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        })
    };
    let missing: Vec<&str> = keys.into_iter().filter(|k| !set(k)).collect();
    assert!(
        missing.is_empty(),
        "config/ipmpd.toml shows no `KEY = value` (or `[KEY]`, `[[KEY]]`) for {missing:?}: document them there \
         (ipmpd.toml(5) is generated from it by `cargo xtask man`)"
    );
}
