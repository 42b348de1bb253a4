//! `cargo xtask demo`: a lab with three members, ipmpd over them, pings and TCP flows through
//! the group, then a cut link and its repair, narrated one line per step (needs root).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Child,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};

use ipmp_lab::{self as lab, Daemon, Lab, LabSpec, pcap::Record};

const MEMBERS: usize = 3;
const FLOWS: u16 = 8;
const SRC_PORT_BASE: u16 = 40000;
const SINK_PORT: &str = "5001";
/// How long each phase (before the cut, during, after the repair) lasts.
const PHASE: Duration = Duration::from_secs(3);

fn say(line: &str) {
    println!("\n==> {line}");
}

fn show(daemon: &Daemon) {
    for args in [&["-g"][..], &["-i"][..], &["-an"][..]] {
        println!("$ ipmpstat {}", args.join(" "));
        match daemon.ipmpstat(args) {
            Ok(out) => print!("{out}"),
            Err(e) => println!("(ipmpstat failed: {e:#})"),
        }
    }
}

fn member_of(mac: Option<[u8; 6]>) -> String {
    match mac {
        Some(mac) => match (0..MEMBERS).find(|&i| lab::member_mac(i) == mac) {
            Some(i) => format!("{} (m{i})", lab::fmt_mac(&mac)),
            None => lab::fmt_mac(&mac),
        },
        None => "none".into(),
    }
}

fn show_neigh(lab: &Lab) {
    let v4 = lab.peer(0).neigh(lab::DATA_V4);
    let v6 = lab.router().neigh(lab::DATA_V6);
    println!("peer0 neighbour {} -> {}", lab::DATA_V4, member_of(v4));
    println!("router neighbour {} -> {}", lab::DATA_V6, member_of(v6));
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn ping_summary(what: &str, child: Child) {
    match child.wait_with_output() {
        Ok(out) => match lab::parse_ping(&String::from_utf8_lossy(&out.stdout)) {
            Some(s) => println!(
                "{what}: {} sent, {} received, {} lost ({:.1}% loss, ~{} ms without replies at 10 ms spacing)",
                s.transmitted,
                s.received,
                s.lost(),
                s.loss_percent(),
                s.lost() * 10
            ),
            None => println!(
                "{what}: no summary ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        },
        Err(e) => println!("{what}: {e}"),
    }
}

pub fn run() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo builds network namespaces: run `cargo xtask demo` as root");
    }
    crate::setup::run()?;
    crate::test::build(&["--bins"])?;
    let bin_dir = match std::env::var_os("IPMP_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::test::target_dir()?.join("debug"),
    };

    say("building the lab: host (m0 m1 m2) ─ switch br0 ─ peer0, peer1, router ─ far host");
    let lab = Lab::new(LabSpec {
        members: MEMBERS,
        peers: 2,
        router: true,
    })?;
    println!(
        "namespaces: {}",
        lab.namespaces()
            .iter()
            .map(|n| n.name())
            .collect::<Vec<_>>()
            .join(" ")
    );

    say(&format!(
        "starting ipmpd: group ipmp0 over m0 m1 m2, data addresses {} and {}",
        lab::DATA_V4,
        lab::DATA_V6
    ));
    let daemon = lab::start_ipmpd_with(&lab, &lab.config().to_toml(), Some(&bin_dir))?;
    println!("ipmpd is up (log: {})", daemon.log_path().display());
    show(&daemon);

    say(
        "starting traffic: pings to the data addresses (peer0 on-link v4, far host off-link v6) and 8 TCP flows to peer1",
    );
    let mut captures = Vec::new();
    for i in 0..MEMBERS {
        let file = lab.work_dir().join(format!("p{i}.pcap"));
        captures.push(
            lab.switch()
                .capture(&Lab::port(i), &file, &["tcp", "port", SINK_PORT])?,
        );
    }
    let mut sink = lab.peer(1).labtool(&[
        "tcp-sink",
        "--port",
        SINK_PORT,
        "--duration",
        "40",
        "--connections",
        &FLOWS.to_string(),
    ])?;
    sink.wait_ready(Duration::from_secs(5))?;
    let pings = ((PHASE.as_millis() * 3 + 1000) / 10).to_string();
    let ping4 = lab.peer(0).spawn(&[
        "ping",
        "-n",
        "-q",
        "-i",
        "0.01",
        "-W",
        "1",
        "-c",
        &pings,
        lab::DATA_V4,
    ])?;
    let ping6 = lab.far().spawn(&[
        "ping",
        "-n",
        "-q",
        "-i",
        "0.01",
        "-W",
        "1",
        "-c",
        &pings,
        lab::DATA_V6,
    ])?;
    let flow_secs = (PHASE.as_secs() * 3 + 1).to_string();
    let flows = lab.host().labtool(&[
        "tcp-flows",
        "--to",
        &lab::peer_v4(1),
        "--port",
        SINK_PORT,
        "--flows",
        &FLOWS.to_string(),
        "--src-port-base",
        &SRC_PORT_BASE.to_string(),
        "--duration",
        &flow_secs,
        "--bind",
        lab::DATA_V4,
    ])?;
    thread::sleep(PHASE);
    println!("after {} s of traffic:", PHASE.as_secs());
    show(&daemon);
    show_neigh(&lab);

    say("cutting m0's link (its switch port goes down: carrier loss)");
    let cut_at = now();
    let started = Instant::now();
    lab.cut_link(0)?;
    thread::sleep(PHASE);
    println!("{:.1} s after the cut:", started.elapsed().as_secs_f64());
    show(&daemon);
    show_neigh(&lab);

    say("restoring m0's link");
    let restore_at = now();
    lab.restore_link(0)?;
    thread::sleep(PHASE);
    println!("{} s after the repair:", PHASE.as_secs());
    show(&daemon);
    show_neigh(&lab);

    say("waiting for the traffic to finish");
    ping_summary("ping peer0 -> 198.51.100.10", ping4);
    ping_summary("ping far -> 2001:db8:1::10", ping6);
    match flows.finish_status() {
        Ok((report, status)) => {
            println!("TCP flows ({status}):");
            for f in report["flows"].as_array().into_iter().flatten() {
                println!(
                    "  src port {}: {} bytes{}",
                    f["src_port"],
                    f["bytes"],
                    f["error"]
                        .as_str()
                        .map(|e| format!(", error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        Err(e) => println!("TCP flows: {e:#}"),
    }
    if let Ok(report) = sink.finish() {
        println!("peer1 received {} bytes in total", report["total_bytes"]);
    }

    say("which member carried each flow (from captures on the switch ports)");
    let mut carried: BTreeMap<u16, [Vec<String>; 3]> = BTreeMap::new();
    for (i, capture) in captures.into_iter().enumerate() {
        let records: Vec<Record> = capture.stop().context("read a capture")?;
        for r in records {
            let Some(ip) = r.ip() else { continue };
            let Some(port) = r.src_port() else { continue };
            if ip.src.to_string() != lab::DATA_V4
                || !(SRC_PORT_BASE..SRC_PORT_BASE + FLOWS).contains(&port)
            {
                continue;
            }
            let phase = if r.ts < cut_at {
                0
            } else if r.ts < restore_at {
                1
            } else {
                2
            };
            let slot = &mut carried.entry(port).or_default()[phase];
            let m = format!("m{i}");
            if !slot.contains(&m) {
                slot.push(m);
            }
        }
    }
    println!(
        "  {:<9} {:<12} {:<12} {:<12}",
        "src port", "before cut", "m0 cut", "after repair"
    );
    for (port, phases) in &carried {
        let cell = |v: &Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(",")
            }
        };
        println!(
            "  {:<9} {:<12} {:<12} {:<12}",
            port,
            cell(&phases[0]),
            cell(&phases[1]),
            cell(&phases[2])
        );
    }

    say("stopping ipmpd and tearing the lab down");
    match daemon.stop() {
        Ok(st) => println!("ipmpd exited: {st}"),
        Err(e) => println!("ipmpd: {e:#}"),
    }
    drop(lab);
    println!("done: every lab namespace and pin is gone");
    Ok(())
}
