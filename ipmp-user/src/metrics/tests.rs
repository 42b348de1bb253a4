use std::time::Duration;

use ipmp_common::Reason;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::mpsc,
};

use super::*;
use crate::{
    control::{ControlCall, MemberState, Response, Snapshot},
    stat::testdata::{group, member, solaris_snapshot},
};

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

fn has(text: &str, line: &str) {
    assert!(lines(text).contains(&line), "missing `{line}` in:\n{text}");
}

/// The Solaris example snapshot with traffic on net0, net1 failed twice and repaired once,
/// and two probe RTTs on net0.
fn scrape() -> String {
    let mut s = solaris_snapshot();
    let net0 = &mut s.groups[0].members[0];
    net0.rx_packets = 7;
    net0.rx_bytes = 700;
    net0.tx_packets = 5;
    net0.tx_bytes = 500;
    net0.probe_totals.sent = 12;
    net0.probe_totals.answered = 10;
    net0.probe_totals.lost = 2;
    net0.counters.insert(Reason::ArpReply.label().to_owned(), 3);
    let events = Events::default();
    events.failed("ipmp0", "net1");
    events.failed("ipmp0", "net1");
    events.repaired("ipmp0", "net1");
    events.rtt("ipmp0", "net0", Duration::from_micros(300));
    events.rtt("ipmp0", "net0", Duration::from_millis(3));
    encode(s, events.counts(), 7)
}

#[test]
fn member_state_is_one_gauge_per_state() {
    let text = scrape();
    has(&text, "# TYPE ipmp_member_state gauge");
    has(
        &text,
        r#"ipmp_member_state{group="ipmp0",member="net1",state="failed"} 1"#,
    );
    for state in ["ok", "offline", "unknown"] {
        has(
            &text,
            &format!(r#"ipmp_member_state{{group="ipmp0",member="net1",state="{state}"}} 0"#),
        );
    }
    has(
        &text,
        r#"ipmp_member_state{group="ipmp0",member="net0",state="ok"} 1"#,
    );
    has(
        &text,
        r#"ipmp_member_active{group="ipmp0",member="net2"} 0"#,
    );
    has(
        &text,
        r#"ipmp_member_probe_state{group="ipmp0",member="net1",state="failed"} 1"#,
    );
}

#[test]
fn traffic_and_probe_counters_carry_the_snapshot_values() {
    let text = scrape();
    has(&text, "# TYPE ipmp_member_rx_bytes counter");
    has(&text, "# UNIT ipmp_member_rx_bytes bytes");
    for (name, v) in [
        ("rx_packets", 7),
        ("rx_bytes", 700),
        ("tx_packets", 5),
        ("tx_bytes", 500),
        ("probes_sent", 12),
        ("probes_answered", 10),
        ("probes_lost", 2),
    ] {
        has(
            &text,
            &format!(r#"ipmp_member_{name}_total{{group="ipmp0",member="net0"}} {v}"#),
        );
        has(
            &text,
            &format!(r#"ipmp_member_{name}_total{{group="ipmp0",member="net2"}} 0"#),
        );
    }
}

#[test]
fn every_reason_counter_is_exported_for_every_member() {
    let text = scrape();
    for m in ["net0", "net1", "net2"] {
        let prefix = format!(r#"ipmp_dataplane_packets_total{{group="ipmp0",member="{m}","#);
        let n = lines(&text)
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .count();
        assert_eq!(n, Reason::ALL.len(), "{m}:\n{text}");
    }
    has(
        &text,
        r#"ipmp_dataplane_packets_total{group="ipmp0",member="net0",reason="arp-reply"} 3"#,
    );
    has(
        &text,
        r#"ipmp_dataplane_packets_total{group="ipmp0",member="net0",reason="tx-unicast"} 0"#,
    );
}

#[test]
fn events_become_counters_and_a_histogram() {
    let text = scrape();
    has(
        &text,
        r#"ipmp_member_failures_total{group="ipmp0",member="net1"} 2"#,
    );
    has(
        &text,
        r#"ipmp_member_repairs_total{group="ipmp0",member="net1"} 1"#,
    );
    has(
        &text,
        r#"ipmp_member_failures_total{group="ipmp0",member="net0"} 0"#,
    );
    has(&text, "# TYPE ipmp_member_probe_rtt_seconds histogram");
    has(
        &text,
        r#"ipmp_member_probe_rtt_seconds_count{group="ipmp0",member="net0"} 2"#,
    );
    // Cumulative: 300 µs falls in le=0.0005, 3 ms in le=0.005.
    has(
        &text,
        r#"ipmp_member_probe_rtt_seconds_bucket{le="0.00025",group="ipmp0",member="net0"} 0"#,
    );
    has(
        &text,
        r#"ipmp_member_probe_rtt_seconds_bucket{le="0.0005",group="ipmp0",member="net0"} 1"#,
    );
    has(
        &text,
        r#"ipmp_member_probe_rtt_seconds_bucket{le="0.005",group="ipmp0",member="net0"} 2"#,
    );
    has(
        &text,
        r#"ipmp_member_probe_rtt_seconds_bucket{le="+Inf",group="ipmp0",member="net0"} 2"#,
    );
    has(
        &text,
        r#"ipmp_member_probe_rtt_seconds_bucket{le="+Inf",group="ipmp0",member="net2"} 0"#,
    );
}

#[test]
fn group_state_fdt_and_member_counts() {
    let text = scrape();
    has(
        &text,
        r#"ipmp_group_state{group="ipmp0",state="degraded"} 1"#,
    );
    has(&text, r#"ipmp_group_state{group="ipmp0",state="ok"} 0"#);
    has(&text, "# UNIT ipmp_group_fdt_seconds seconds");
    has(&text, r#"ipmp_group_fdt_seconds{group="ipmp0"} 10.0"#);
    has(&text, r#"ipmp_group_members{group="ipmp0",state="ok"} 2"#);
    has(
        &text,
        r#"ipmp_group_members{group="ipmp0",state="failed"} 1"#,
    );
    has(&text, r#"ipmp_group_active_members{group="ipmp0"} 1"#);
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn each_family_is_described_once_before_its_samples() {
    let text = scrape();
    let types: Vec<&str> = lines(&text)
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut unique = types.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(types.len(), unique.len(), "{types:?}");
    assert_eq!(types.len(), 20, "{types:?}");
}

#[test]
fn label_values_are_escaped() {
    let snapshot = Snapshot {
        pid: 1,
        version: "0".into(),
        uptime_ms: 0,
        groups: vec![group(
            "g\"1",
            vec![member("a\\b\nc", true, MemberState::Ok)],
        )],
    };
    let text = encode(snapshot, EventCounts::default(), 0);
    has(
        &text,
        r#"ipmp_member_active{group="g\"1",member="a\\b\nc"} 1"#,
    );
}

#[test]
fn rtt_histogram_buckets_are_upper_bounds() {
    let mut h = RttHistogram::default();
    h.observe(Duration::from_micros(100));
    h.observe(Duration::from_secs(3));
    assert_eq!(h.counts[0], 1, "100 µs is inside le=0.0001");
    assert_eq!(h.counts[RTT_BUCKETS.len()], 1, "3 s is past the last bound");
    assert_eq!(h.count, 2);
    assert!((h.sum_seconds - 3.0001).abs() < 1e-9);
}

#[test]
fn requests_are_parsed_strictly() {
    let req = |s: &str| parse_request(s.as_bytes());
    assert_eq!(
        req("GET /metrics HTTP/1.1\r\nHost: x"),
        Ok(HttpRequest::Metrics { head: false })
    );
    assert_eq!(
        req("GET /metrics?x=1 HTTP/1.0"),
        Ok(HttpRequest::Metrics { head: false })
    );
    assert_eq!(
        req("HEAD /metrics HTTP/1.1"),
        Ok(HttpRequest::Metrics { head: true })
    );
    let status = |s: &str| req(s).unwrap_err().status;
    assert_eq!(status("POST /metrics HTTP/1.1"), "405 Method Not Allowed");
    assert_eq!(status("GET / HTTP/1.1"), "404 Not Found");
    assert_eq!(status("GET /metricsx HTTP/1.1"), "404 Not Found");
    for bad in [
        "",
        "GET",
        "GET /metrics",
        "GET /metrics HTTP/2",
        "GET metrics HTTP/1.1",
        "GET  /metrics HTTP/1.1",
        "\u{0}\u{1}",
    ] {
        assert_eq!(status(bad), "400 Bad Request", "{bad:?}");
    }
    assert_eq!(
        parse_request(&[0xff, 0xfe]).unwrap_err().status,
        "400 Bad Request"
    );
}

/// A listener on loopback answered by a stand-in daemon that serves `snapshot`.
async fn serve_on_loopback() -> std::net::SocketAddr {
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr();
    let (tx, mut rx) = mpsc::channel::<ControlCall>(8);
    tokio::spawn(async move {
        while let Some(call) = rx.recv().await {
            let _ = call.reply.send(Response::Status(solaris_snapshot()));
        }
    });
    tokio::spawn(server.run(tx, Events::default()));
    addr
}

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("response within 10 s")
        .unwrap();
    out
}

#[tokio::test]
async fn the_endpoint_serves_metrics_and_refuses_the_rest() {
    let addr = serve_on_loopback().await;
    // A client that connects and says nothing must not hold up the scrape.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let r = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(
        body.contains(r#"ipmp_member_state{group="ipmp0",member="net1",state="failed"} 1"#),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let r = http(addr, "HEAD /metrics HTTP/1.0\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    let r = http(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD"),
        "{r}"
    );
    let r = http(addr, "GET /other HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = http(addr, "nonsense\n\n").await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    let r = http(addr, &long).await;
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
}

#[test]
fn binding_a_taken_port_names_the_key() {
    let first = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let e = MetricsServer::bind(first.local_addr()).unwrap_err();
    assert!(e.to_string().contains("metrics.listen"), "{e}");
}
