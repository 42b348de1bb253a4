//! The Prometheus endpoint (`[metrics]`): scraped with curl inside the lab's host namespace
//! across a link failover, its output read by the strict OpenMetrics reader of
//! `ipmp_tests::openmetrics`. Also: the encoder's output for a made-up snapshot parses, and the
//! README lists exactly the series ipmpd exports.

pub mod common;

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context as _, ensure};
use common::Setup;
use ipmp_tests::{
    lab::{self, LabSpec, MetricsConfig, Netns},
    openmetrics::{self, Exposition},
};

const SPEC: LabSpec = LabSpec {
    members: 3,
    peers: 1,
    router: true,
};

/// Loopback of the lab's host namespace (its own, not the machine's).
const LISTEN: &str = "127.0.0.1:9474";

/// `curl` of the endpoint from inside `ns`: the status, Content-Type and body are checked,
/// the body parsed.
fn scrape(ns: &Netns) -> anyhow::Result<Exposition> {
    let url = format!("http://{LISTEN}/metrics");
    let out = ns.run(&["curl", "-sS", "-i", "--max-time", "10", &url])?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .with_context(|| format!("no header/body split in {out:?}"))?;
    ensure!(head.starts_with("HTTP/1.1 200 "), "status: {head}");
    ensure!(
        head.lines()
            .any(|l| l == format!("Content-Type: {}", ipmp::metrics::CONTENT_TYPE)),
        "content type: {head}"
    );
    openmetrics::parse(body).with_context(|| format!("the scrape does not parse:\n{body}"))
}

fn member_value(e: &Exposition, name: &str, member: &str) -> f64 {
    e.value(name, &[("group", "ipmp0"), ("member", member)])
        .unwrap_or_else(|| panic!("{name} of {member} missing"))
}

fn state(e: &Exposition, family: &str, extra: &[(&str, &str)], s: &str) -> f64 {
    let mut labels = vec![("group", "ipmp0")];
    labels.extend_from_slice(extra);
    labels.push(("state", s));
    e.value(family, &labels)
        .unwrap_or_else(|| panic!("{family}{labels:?} missing"))
}

#[test]
fn metrics_follow_a_member_through_failure_and_repair() {
    if !lab::require_root("metrics_follow_a_member_through_failure_and_repair") {
        return;
    }
    let s = Setup::start(SPEC, |c| {
        c.failure_detection_time_ms = Some(1000);
        for i in 0..3 {
            c.member_mut(&format!("m{i}")).test_address = Some(format!("198.51.100.{}/24", 21 + i));
        }
        c.metrics = Some(MetricsConfig {
            listen: LISTEN.into(),
        });
    })
    .unwrap();
    let (host, daemon) = (s.lab.host(), &s.daemon);
    common::wait_answered_probes(daemon, &["m0", "m1", "m2"]);
    let bound = common::bindings(daemon).unwrap()[lab::DATA_V4].clone();
    let index: usize = bound.trim_start_matches('m').parse().unwrap();

    // From the data address: requests leave through ipmp0 (tx), the replies come in through
    // the member the data address is bound to (rx). Echo requests *to* the data address would
    // be answered on the member itself and never reach ipmp0.
    let pings = host
        .ping(&lab::peer_v4(0), 50, Duration::from_millis(10))
        .unwrap();
    assert!(pings.received >= 45, "{pings:?}");
    let before = scrape(host).unwrap();
    assert_eq!(state(&before, "ipmp_group_state", &[], "ok"), 1.0);
    assert_eq!(
        state(&before, "ipmp_member_state", &[("member", &bound)], "ok"),
        1.0
    );
    let rx = member_value(&before, "ipmp_member_rx_packets_total", &bound);
    assert!(rx >= 45.0, "{bound} handed {rx} packets in");
    let rx_ipmp = before
        .value(
            "ipmp_dataplane_packets_total",
            &[
                ("group", "ipmp0"),
                ("member", &bound),
                ("reason", "rx-ipmp"),
            ],
        )
        .unwrap();
    assert!(rx_ipmp >= 45.0, "rx-ipmp of {bound}: {rx_ipmp}");
    assert!(member_value(&before, "ipmp_member_rx_bytes_total", &bound) >= rx * 84.0);
    let tx: f64 = ["m0", "m1", "m2"]
        .iter()
        .map(|m| member_value(&before, "ipmp_member_tx_packets_total", m))
        .sum();
    assert!(tx >= 45.0, "echo requests sent: {tx}");
    for m in ["m0", "m1", "m2"] {
        let sent = member_value(&before, "ipmp_member_probes_sent_total", m);
        let answered = member_value(&before, "ipmp_member_probes_answered_total", m);
        let rtts = member_value(&before, "ipmp_member_probe_rtt_seconds_count", m);
        assert!(
            sent >= 1.0 && answered >= 1.0 && rtts >= 1.0,
            "{m}: sent {sent}, answered {answered}, RTTs {rtts}"
        );
        assert_eq!(member_value(&before, "ipmp_member_failures_total", m), 0.0);
    }
    let fdt = before
        .value("ipmp_group_fdt_seconds", &[("group", "ipmp0")])
        .unwrap();
    assert!(fdt > 0.0 && fdt < 60.0, "FDT {fdt} s");

    s.lab.cut_link(index).unwrap();
    s.wait_members(Duration::from_secs(5), |ms| {
        ms.iter().any(|m| m.name == bound && m.state == "failed")
    })
    .unwrap();
    let failed = scrape(host).unwrap();
    assert_eq!(
        state(
            &failed,
            "ipmp_member_state",
            &[("member", &bound)],
            "failed"
        ),
        1.0
    );
    assert_eq!(
        state(&failed, "ipmp_member_state", &[("member", &bound)], "ok"),
        0.0
    );
    assert_eq!(member_value(&failed, "ipmp_member_active", &bound), 0.0);
    assert_eq!(
        member_value(&failed, "ipmp_member_failures_total", &bound),
        1.0
    );
    assert_eq!(state(&failed, "ipmp_group_state", &[], "degraded"), 1.0);
    assert_eq!(state(&failed, "ipmp_group_members", &[], "failed"), 1.0);
    assert_eq!(state(&failed, "ipmp_group_members", &[], "ok"), 2.0);
    assert_eq!(
        failed.value("ipmp_group_active_members", &[("group", "ipmp0")]),
        Some(2.0)
    );
    assert!(member_value(&failed, "ipmp_member_rx_packets_total", &bound) >= rx);

    s.lab.restore_link(index).unwrap();
    s.wait_members(Duration::from_secs(10), |ms| {
        ms.iter().any(|m| m.name == bound && m.active)
    })
    .unwrap();
    let repaired = scrape(host).unwrap();
    assert_eq!(
        member_value(&repaired, "ipmp_member_repairs_total", &bound),
        1.0
    );
    assert_eq!(state(&repaired, "ipmp_group_state", &[], "ok"), 1.0);
    println!(
        "{bound}: rx {rx} packets, FDT {fdt} s, probe RTT sum {} s",
        member_value(&repaired, "ipmp_member_probe_rtt_seconds_sum", &bound)
    );
}

/// A snapshot of one group with two members, one failed, through ipmpd's encoder.
fn made_up_scrape() -> Exposition {
    let member = |name: &str, state: &str| {
        serde_json::json!({
            "name": name, "ifindex": 3, "mac": "02:00:00:00:00:01", "active": state == "ok",
            "flags": {"inactive": false, "standby": false, "v4_multicast": false,
                      "v4_broadcast": false, "v6_multicast": false, "all_down": false,
                      "duplicate_hwaddr": false},
            "link": "up", "probe": "ok", "state": state, "test_addresses": [], "buckets": 1,
            "bound_addresses": 1, "tx_packets": 5, "tx_bytes": 500,
            "counters": {"tx-unicast": 5},
            "probe_totals": {"sent": 3, "answered": 2, "lost": 1}
        })
    };
    let snapshot: ipmp::control::Snapshot = serde_json::from_value(serde_json::json!({
        "pid": 1, "version": "0", "uptime_ms": 0,
        "groups": [{"interface": "ipmp0", "name": "ipmp0", "ifindex": 2, "state": "degraded",
                    "fdt_ms": 10000, "failback": true, "n_buckets": 4, "hash_seed": 1,
                    "members": [member("m0", "ok"), member("m1", "failed")],
                    "addresses": []}]
    }))
    .expect("a snapshot");
    let events = ipmp::metrics::Events::default();
    events.failed("ipmp0", "m1");
    events.rtt("ipmp0", "m0", Duration::from_micros(700));
    let text = ipmp::metrics::encode(snapshot, events.counts(), 3);
    openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"))
}

#[test]
fn the_encoder_output_parses_strictly() {
    let e = made_up_scrape();
    assert_eq!(member_value(&e, "ipmp_member_failures_total", "m1"), 1.0);
    assert_eq!(member_value(&e, "ipmp_member_probes_lost_total", "m0"), 1.0);
    assert_eq!(
        e.value(
            "ipmp_member_probe_rtt_seconds_bucket",
            &[("group", "ipmp0"), ("member", "m0"), ("le", "0.001")]
        ),
        Some(1.0)
    );
    assert_eq!(state(&e, "ipmp_group_state", &[], "degraded"), 1.0);
    assert_eq!(e.value("ipmp_log_lines_dropped_total", &[]), Some(3.0));
}

/// The README's Metrics table names every exported series, and only those.
#[test]
fn the_readme_lists_every_series() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a ## Metrics section");
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `ipmp_"))
        .filter_map(|l| l.split(['`', '{']).next())
        .map(|n| format!("ipmp_{n}"))
        .collect();
    let exported: BTreeSet<String> = made_up_scrape()
        .families
        .iter()
        .map(|(name, f)| match f.kind.as_str() {
            "counter" => format!("{name}_total"),
            _ => name.clone(),
        })
        .collect();
    assert_eq!(documented, exported);
}
