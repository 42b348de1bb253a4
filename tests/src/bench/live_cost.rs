//! Live cost of ipmp's programs under real traffic (part of the per-packet cost section).
//!
//! In a lab with ipmpd running, run-time statistics are switched on with BPF_ENABLE_STATS
//! (held only while the returned fd is open; the `kernel.bpf_stats_enabled` sysctl is left
//! alone), traffic flows, and `run_time_ns / run_cnt` of every attached program is read from
//! its prog info. These include the kernel's two clock reads around each run and the cache
//! misses of traffic that is not a tight loop, which the test runs do not; so the no-op is
//! attached in front of ipmp's programs on the same hooks (TCX, first), one object per hook,
//! and timed by the same statistics: what any program attached there costs under that load.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use anyhow::{Context as _, anyhow, bail, ensure};
use aya::{
    Ebpf,
    programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
};
use ipmp::dataplane::loader::{link_pin, pinned_link_ids, pinned_links};

use super::{GoalRow, Opts, Summary};
use crate::{
    lab::{DATA_V4, Lab, LabSpec, peer_v4},
    prog_lab::{PROG_TC_NOOP, load_object},
    testrun::ProgKind,
};

/// Per program id: name, interfaces it is attached to, run_time_ns, run_cnt.
type ProgStats = BTreeMap<u32, (String, Vec<String>, u64, u64)>;

/// Per (load, program, where attached): ns per run in each trial, runs per trial.
pub type Live = BTreeMap<(&'static str, String, String), (Vec<f64>, Vec<u64>)>;

/// The live loads, in the order they run and are reported.
const LOAD_UDP: &str = "UDP 20 000/s out + ping flood in";
const LOAD_TCP: &str = "TCP out, 8 iperf3 streams";

/// The iperf3 server's port on the peer.
const LIVE_TCP_PORT: &str = "5299";

/// The programs every outbound unicast packet passes: the IPMP interface's, then the member's.
const OUTBOUND: [&str; 2] = ["ipmp_tc_egress", "ipmp_tc_member"];

/// The most the programs an outbound packet passes may cost together, live: half the 300 ns
/// they cost before the fast-path work.
const OUTBOUND_BUDGET_NS: f64 = 150.0;

/// The no-op attached first on the egress of the interfaces named (ipmp0; the members).
struct Noop {
    _object: Ebpf,
    id: u32,
    ifaces: Vec<String>,
}

/// No-ops in front of `ipmp_tc_egress` (ipmp0) and `ipmp_tc_member` (m0, m1), attached from a
/// thread in the lab's host namespace; they stay attached while the returned objects live.
fn attach_noops(lab: &Lab) -> anyhow::Result<Vec<Noop>> {
    lab.host().run_in(|| {
        let mut noops = Vec::new();
        for ifaces in [vec!["ipmp0"], vec!["m0", "m1"]] {
            let mut object = load_object()?;
            crate::prog_lab::load_program(&mut object, PROG_TC_NOOP, ProgKind::Tc)?;
            let prog: &mut SchedClassifier = object
                .program_mut(PROG_TC_NOOP)
                .ok_or_else(|| anyhow!("no program {PROG_TC_NOOP}"))?
                .try_into()?;
            for ifname in &ifaces {
                prog.attach_with_options(
                    ifname,
                    TcAttachType::Egress,
                    TcAttachOptions::TcxOrder(LinkOrder::first()),
                )
                .with_context(|| format!("attach {PROG_TC_NOOP} to {ifname} egress"))?;
            }
            let id = prog.info().context("prog info of the no-op")?.id();
            noops.push(Noop {
                _object: object,
                id,
                ifaces: ifaces.iter().map(|s| (*s).to_owned()).collect(),
            });
        }
        Ok(noops)
    })
}

/// run_time_ns and run_cnt of every program attached by ipmpd (found by its pinned links) and
/// of the no-ops.
fn attached_stats(lab: &Lab, noops: &[Noop]) -> anyhow::Result<ProgStats> {
    let pins = lab.pin_dir();
    let mut by_prog = ProgStats::new();
    for (what, ifname) in pinned_links(&pins) {
        let Some((_, prog_id)) = pinned_link_ids(&link_pin(&pins, &ifname, &what)) else {
            continue;
        };
        by_prog
            .entry(prog_id)
            .or_insert_with(|| (what.clone(), Vec::new(), 0, 0))
            .1
            .push(ifname);
    }
    ensure!(
        !by_prog.is_empty(),
        "no pinned links under {}",
        pins.display()
    );
    for noop in noops {
        by_prog.insert(noop.id, (String::new(), noop.ifaces.clone(), 0, 0));
    }
    for info in aya::programs::loaded_programs() {
        let info = info.context("read prog info")?;
        if let Some(e) = by_prog.get_mut(&info.id()) {
            if let Some(name) = info.name_as_str() {
                e.0 = name.to_owned();
            }
            e.2 = info.run_time().as_nanos() as u64;
            e.3 = info.run_count();
        }
    }
    for e in by_prog.values_mut() {
        e.1.sort();
    }
    Ok(by_prog)
}

/// Runs both loads and returns every program's ns per run in each trial.
pub fn measure(opts: &Opts) -> anyhow::Result<Live> {
    let trials = opts.pick(5, 3);
    let secs = opts.pick(3.0, 1.0);
    let lab = Lab::new(LabSpec {
        members: 2,
        peers: 1,
        router: true,
    })?;
    let daemon = lab.start_ipmpd(&lab.config().to_toml())?;
    let noops = attach_noops(&lab)?;
    // Stats count only while this fd is open (kernel ≥ 5.8).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("BPF_ENABLE_STATS (run time statistics)")?;
    let mut live: Live = BTreeMap::new();
    let dur = format!("{secs}");
    for _ in 0..trials {
        let before = attached_stats(&lab, &noops)?;
        let mut sink = lab.peer(0).labtool(&[
            "udp-seq-recv",
            "--port",
            "9000",
            "--duration",
            &format!("{}", secs + 2.0),
            "--idle-exit",
            "0.5",
        ])?;
        sink.wait_ready(Duration::from_secs(5))?;
        // Outbound: 20 000 UDP datagrams/s from the data address (TC egress on ipmp0, then
        // the members' TC). Inbound: a ping flood to the data address.
        let send = udp_load(&lab, &dur)?;
        let ping = lab
            .peer(0)
            .spawn(&["ping", "-f", "-q", "-w", &dur, DATA_V4])?;
        let ping_out = ping.wait_with_output().context("wait for ping -f")?;
        send.finish()?;
        let _ = sink.finish();
        add_runs(&mut live, LOAD_UDP, &before, &attached_stats(&lab, &noops)?);
        let text = String::from_utf8_lossy(&ping_out.stdout);
        if crate::lab::parse_ping(&text).is_none_or(|p| p.received == 0) {
            bail!("the ping flood to {DATA_V4} got no answer: {}", text.trim());
        }
    }
    // TCP's segments leave cloned (the socket keeps the original for retransmission): the
    // load that shows what a program pays for writing into a cloned skb.
    let mut server = lab
        .peer(0)
        .command(&["iperf3", "-s", "-p", LIVE_TCP_PORT])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("start iperf3 -s in the peer (is iperf3 installed? cargo xtask setup)")?;
    let measured = (|| {
        let peer = lab.peer(0);
        let listening =
            crate::lab::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                peer.run(&["ss", "-Hltn", &format!("sport = :{LIVE_TCP_PORT}")])
                    .is_ok_and(|s| !s.trim().is_empty())
            });
        ensure!(listening, "iperf3 -s did not listen within 5 s");
        let limit = format!("{}", secs + 20.0);
        for _ in 0..trials {
            let before = attached_stats(&lab, &noops)?;
            let out = lab.host().run_status(&[
                "timeout",
                &limit,
                "iperf3",
                "-c",
                &peer_v4(0),
                "-p",
                LIVE_TCP_PORT,
                "-B",
                DATA_V4,
                "-t",
                &dur,
                "-P",
                "8",
            ])?;
            ensure!(
                out.status.success(),
                "iperf3 -c: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            add_runs(&mut live, LOAD_TCP, &before, &attached_stats(&lab, &noops)?);
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    measured?;
    drop(noops);
    drop(daemon);
    Ok(live)
}

/// Adds each program's ns per run between `before` and `after` to `live` under `load`.
fn add_runs(live: &mut Live, load: &'static str, before: &ProgStats, after: &ProgStats) {
    for (id, (name, ifaces, t1, c1)) in after {
        let Some((_, _, t0, c0)) = before.get(id) else {
            continue;
        };
        let runs = c1.saturating_sub(*c0);
        if runs == 0 {
            continue;
        }
        let e = live
            .entry((load, name.clone(), ifaces.join(", ")))
            .or_default();
        e.0.push(t1.saturating_sub(*t0) as f64 / runs as f64);
        e.1.push(runs);
    }
}

/// 20 000 UDP datagrams/s from the data address to peer 0 for `dur` seconds.
fn udp_load(lab: &Lab, dur: &str) -> anyhow::Result<crate::lab::LabTool> {
    lab.host().labtool(&[
        "udp-seq-send",
        "--to",
        &peer_v4(0),
        "--port",
        "9000",
        "--rate",
        "20000",
        "--duration",
        dur,
        "--bind",
        DATA_V4,
    ])
}

/// Median ns per run of `name` attached to `ifaces` (any interfaces when `None`) under `load`.
fn median(live: &Live, load: &str, name: &str, ifaces: Option<&str>) -> Option<f64> {
    live.iter()
        .find(|((l, n, i), _)| *l == load && n == name && ifaces.is_none_or(|want| i == want))
        .and_then(|(_, (ns, _))| Summary::of(ns))
        .map(|s| s.median)
}

/// Per load: the medians of the programs an outbound packet passes, and of the no-ops in
/// front of them on the same hooks, each summed.
fn outbound_sums(live: &Live) -> Vec<(&'static str, f64, Option<f64>)> {
    [LOAD_UDP, LOAD_TCP]
        .into_iter()
        .filter_map(|load| {
            let ipmp: Option<f64> = OUTBOUND
                .iter()
                .map(|name| median(live, load, name, None))
                .sum();
            let noop: Option<f64> = ["ipmp0", "m0, m1"]
                .iter()
                .map(|at| median(live, load, PROG_TC_NOOP, Some(at)))
                .sum();
            Some((load, ipmp?, noop))
        })
        .collect()
}

/// The live-cost subsection (markdown) and its goal.
pub fn report(live: &anyhow::Result<Live>, opts: &Opts) -> (String, Vec<GoalRow>) {
    let mut md = String::from("### Live cost under load\n\n");
    let goal = format!(
        "Live: the programs an outbound packet passes ({}) ≤ {OUTBOUND_BUDGET_NS:.0} ns per \
         packet together",
        OUTBOUND.join(" + ")
    );
    let live = match live {
        Ok(live) if !live.is_empty() => live,
        Ok(_) | Err(_) => {
            let why = match live {
                Err(e) => format!("{e:#}").replace('\n', " "),
                Ok(_) => "no attached program ran during the load".to_owned(),
            };
            let _ = writeln!(md, "**Not measured:** {why}\n");
            let row = GoalRow::unmeasured(goal, why);
            return (md, vec![row]);
        }
    };
    let _ = writeln!(
        md,
        "ipmpd with 2 members in the lab; run-time statistics switched on with BPF_ENABLE_STATS \
         for the measurement only (the `kernel.bpf_stats_enabled` sysctl was not touched). \
         Loads, {} s per trial, {} trials each: *{LOAD_UDP}* — 20 000 UDP datagrams/s from the \
         data address to a peer and a `ping -f` flood from that peer to the data address; \
         *{LOAD_TCP}* — `iperf3 -P 8` from the data address to the peer, whose segments reach \
         the programs cloned (TCP keeps the original for retransmission). `run_time_ns / \
         run_cnt` of every attached program. These include the kernel's clock reads around \
         every run and the cache misses of real traffic, which the test-run figures above do \
         not: `{PROG_TC_NOOP}` is attached first on the same egress hooks (ipmp0's, and the \
         members' as a second program) and timed by the same statistics — what any program \
         there costs under the same load.\n",
        opts.pick(3, 1),
        opts.pick(5, 3)
    );
    let _ = writeln!(
        md,
        "| load | program | attached to | ns/run | runs per trial |\n|---|---|---|---|---|"
    );
    let order = |load: &str| usize::from(load != LOAD_UDP);
    let mut rows: Vec<_> = live.iter().collect();
    rows.sort_by_key(|((load, name, at), _)| (order(load), name.clone(), at.clone()));
    for ((load, name, at), (ns, runs)) in rows {
        let runs: Vec<f64> = runs.iter().map(|r| *r as f64).collect();
        if let (Some(n), Some(r)) = (Summary::of(ns), Summary::of(&runs)) {
            let name = if name == PROG_TC_NOOP {
                format!("{name} (reference)")
            } else {
                name.clone()
            };
            let _ = writeln!(
                md,
                "| {load} | {name} | {at} | {} | {} |",
                n.fmt(1, "ns"),
                r.fmt(0, "").trim_end()
            );
        }
    }
    md.push('\n');
    let sums = outbound_sums(live);
    let Some(worst) = sums.iter().map(|s| s.1).reduce(f64::max) else {
        let why = format!("no figure for {}", OUTBOUND.join(" and "));
        let row = GoalRow::unmeasured(goal, why);
        return (md, vec![row]);
    };
    let per_load: Vec<String> = sums
        .iter()
        .map(|(load, ipmp, noop)| {
            let noop = noop.map_or_else(String::new, |n| format!(" (two no-ops there: {n:.0} ns)"));
            format!("{load}: {ipmp:.0} ns{noop}")
        })
        .collect();
    let _ = writeln!(
        md,
        "An outbound unicast packet passes {}: together {}.\n",
        OUTBOUND.join(" and "),
        per_load.join("; ")
    );
    let met = worst <= OUTBOUND_BUDGET_NS;
    let floor = sums.iter().filter_map(|s| s.2).reduce(f64::max);
    let why = if met {
        String::new()
    } else {
        floor.map_or_else(
            || "no no-op figure".to_owned(),
            |f| {
                format!(
                    "two programs on the way, and the statistics time each run with its own \
                     clock reads: two no-ops on the same hooks under the same load already \
                     cost {f:.0} ns; the rest is the programs' work with the caches the \
                     traffic between packets left cold"
                )
            },
        )
    };
    let row = GoalRow {
        goal,
        figure: format!("worst {worst:.0} ns; {}", per_load.join("; ")),
        met: Some(met),
        why,
    };
    (md, vec![row])
}
