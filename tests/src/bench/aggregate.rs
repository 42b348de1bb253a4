//! Aggregate bandwidth: what spreading over several members buys when each member, not the
//! CPU, is the limit.
//!
//! veth has no line rate, so every member's egress in the lab's host namespace is shaped with
//! a token bucket ([`RATE_MBIT`] each). The host sends TCP to a peer on the shared L2 with 8
//! and 64 flows over the labs of [`throughput`](super::throughput): one shaped member (the
//! address on m0), ipmp over 2 and 4 shaped members, and the kernel's resilient nexthop group
//! over the same members. Each member's share comes from its tx byte counter over the trial.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{
    GoalRow, Opts, Plot, Section, Summary, svg,
    throughput::{self, Bed, Path, Workload, failures_note, interleaved, members_used},
};

/// Token-bucket rate of every member's egress.
const RATE_MBIT: u32 = 1000;
/// Bucket size: above a 64 KiB GSO aggregate, so that the shaper passes aggregates whole
/// rather than segmenting them (which costs CPU), and 1 ms at the rate.
const BURST: &str = "128kb";
/// Queue limit expressed as the longest a packet may wait.
const LATENCY: &str = "20ms";
/// Members shaped in every lab (the labs have four; unused ones stay idle).
const SHAPED: usize = 4;
/// TCP payload per byte the shaper counts: a 1448-byte segment (MSS with timestamps) is a
/// 1514-byte frame. The goodput ceiling as a fraction of the rate.
const GOODPUT_PER_WIRE: f64 = 1448.0 / 1514.0;

const PATHS: [Path; 5] = [
    Path::Plain,
    Path::Ipmp(2),
    Path::Nexthop(2),
    Path::Ipmp(4),
    Path::Nexthop(4),
];
const FLOWS: [u16; 2] = [8, 64];

fn label(p: Path) -> String {
    match p {
        Path::Plain => "one shaped member (plain)".to_owned(),
        _ => p.label(),
    }
}

fn rate_gbps() -> f64 {
    f64::from(RATE_MBIT) / 1000.0
}

/// Shapes the egress of members m0..m(SHAPED-1) of the bed's host namespace.
fn shape(bed: &Bed) -> anyhow::Result<()> {
    let host = bed.lab().host();
    let rate = format!("{RATE_MBIT}mbit");
    for i in 0..SHAPED {
        let dev = format!("m{i}");
        host.run(&[
            "tc", "qdisc", "replace", "dev", &dev, "root", "tbf", "rate", &rate, "burst", BURST,
            "latency", LATENCY,
        ])
        .with_context(|| format!("shape {dev} with tbf"))?;
    }
    Ok(())
}

/// One trial's figures.
#[derive(Debug, Clone, PartialEq)]
struct Trial {
    gbps: f64,
    /// Cores of the whole machine kept busy during the run, other work included.
    busy_cores: f64,
    /// Cores the iperf3 sender and receiver processes used (NaN: not reported).
    iperf_cores: f64,
    /// Bytes each member of the setup sent.
    member_bytes: Vec<u64>,
}

impl Trial {
    /// Busiest member's bytes over the mean of the setup's members.
    fn busiest_over_mean(&self) -> f64 {
        busiest_over_mean(&self.member_bytes)
    }
}

/// max / mean of `bytes`; NaN when nothing was sent.
fn busiest_over_mean(bytes: &[u64]) -> f64 {
    let total: u64 = bytes.iter().sum();
    if total == 0 || bytes.is_empty() {
        return f64::NAN;
    }
    let max = bytes.iter().copied().max().unwrap_or(0);
    max as f64 * bytes.len() as f64 / total as f64
}

/// All trials of one (flows, setup) cell.
type Cell = throughput::Cell<Trial>;

impl Cell {
    fn median_gbps(&self) -> Option<f64> {
        self.summary(|t| t.gbps).map(|s| s.median)
    }

    /// Median throughput over `n` × the shaped rate.
    fn of_aggregate(&self, n: usize) -> Option<f64> {
        self.median_gbps().map(|g| g / (n as f64 * rate_gbps()))
    }

    /// Mean throughput over the trials over `n` × the shaped rate: what the collision
    /// expectation compares with.
    fn mean_of_aggregate(&self, n: usize) -> Option<f64> {
        let v: Vec<f64> = self.trials.iter().map(|t| t.gbps).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64 / (n as f64 * rate_gbps()))
    }

    /// Each member's share of all bytes the cell's trials sent, in percent.
    fn shares(&self) -> Option<Vec<f64>> {
        let n = self.trials.first()?.member_bytes.len();
        let mut sum = vec![0u64; n];
        for t in &self.trials {
            for (s, b) in sum.iter_mut().zip(&t.member_bytes) {
                *s += b;
            }
        }
        let total: u64 = sum.iter().sum();
        (total > 0).then(|| {
            sum.iter()
                .map(|b| *b as f64 * 100.0 / total as f64)
                .collect()
        })
    }
}

/// Expected fraction of `n` members that get at least one of `k` flows hashed uniformly: with
/// every member shaped, a member with one flow or more runs at its rate and one with none
/// idles, so this is the expected fraction of the aggregate `k` flows reach.
pub fn expected_used_fraction(k: u32, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    1.0 - (1.0 - 1.0 / n as f64).powi(k as i32)
}

/// Probability that some of `n` members gets none of `k` flows hashed uniformly (inclusion and
/// exclusion over the members left empty).
pub fn prob_some_idle(k: u32, n: usize) -> f64 {
    let mut all_used = 0.0;
    let mut binom = 1.0;
    for j in 0..=n {
        let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
        all_used += sign * binom * (1.0 - j as f64 / n as f64).powi(k as i32);
        binom = binom * (n - j) as f64 / (j + 1) as f64;
    }
    1.0 - all_used
}

/// Expected busiest member's flows over the mean (k / n) for `k` flows hashed uniformly over
/// `n` members, by counting every assignment; `None` when there are more than 2^20 of them.
pub fn expected_flow_max_over_mean(k: u32, n: usize) -> Option<f64> {
    let total = (n as u64).checked_pow(k).filter(|t| *t <= 1 << 20)?;
    if n == 0 || k == 0 {
        return None;
    }
    let mut max_sum = 0u64;
    let mut counts = vec![0u32; n];
    for a in 0..total {
        counts.iter_mut().for_each(|c| *c = 0);
        let mut x = a;
        for _ in 0..k {
            counts[(x % n as u64) as usize] += 1;
            x /= n as u64;
        }
        max_sum += u64::from(counts.iter().copied().max().unwrap_or(0));
    }
    Some(max_sum as f64 / total as f64 / (f64::from(k) / n as f64))
}

/// Measures aggregate bandwidth over shaped members and returns the report section.
pub fn run(opts: &Opts) -> anyhow::Result<Section> {
    // Full: 10 cells × 3 × (4 s + start-up) ≈ 2.5 min.
    let trials = opts.pick(3, 1);
    let secs: u32 = opts.pick(4, 2);
    let started = Instant::now();
    let workloads = FLOWS.map(|f| Workload::new(false, f, false));
    let (cells, setup_s) = interleaved(&PATHS, shape, &workloads, trials, |bed, w| {
        Some(bed.measure(w, secs).map(|m| Trial {
            gbps: m.received.bytes as f64 * 8.0 / 1e9 / m.received.seconds,
            busy_cores: m.busy_cores,
            iperf_cores: m.iperf_cores.unwrap_or(f64::NAN),
            member_bytes: m.member_bytes,
        }))
    })?;
    Ok(section(&cells, trials, secs, setup_s, started.elapsed()))
}

fn path_index(p: Path) -> usize {
    PATHS.iter().position(|q| *q == p).unwrap_or(0)
}

fn fmt_opt(v: Option<f64>, prec: usize, unit: &str) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.prec$}{unit}"))
}

fn section(cells: &[Vec<Cell>], trials: usize, secs: u32, setup_s: f64, took: Duration) -> Section {
    use std::fmt::Write as _;
    let rate = rate_gbps();
    let medians = |f: &dyn Fn(&Trial) -> f64| -> Vec<f64> {
        cells
            .iter()
            .flatten()
            .filter_map(|c| c.summary(f).map(|s| s.median))
            .collect()
    };
    let hi = |v: Vec<f64>| v.into_iter().fold(f64::NAN, f64::max);
    let lo = |v: Vec<f64>| v.into_iter().fold(f64::NAN, f64::min);
    let iperf_cpu = hi(medians(&|t| t.iperf_cores));
    let machine_cpu = hi(medians(&|t| t.busy_cores));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Fraction of the header-limited ceiling reached (median per cell), in the cells where
    // every trial had all members carrying traffic (hash collisions aside).
    let reached: Vec<f64> = cells
        .iter()
        .flat_map(|row| {
            PATHS
                .iter()
                .zip(row)
                .filter(|(p, c)| {
                    c.trials
                        .iter()
                        .all(|t| members_used(&t.member_bytes) == p.members())
                })
                .filter_map(|(p, c)| c.of_aggregate(p.members()).map(|r| r / GOODPUT_PER_WIRE))
        })
        .collect();
    let (reached_lo, reached_hi) = (lo(reached.clone()), hi(reached));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "veth has no line rate, so here every member's egress in the host namespace is shaped \
         with a token bucket (`tc qdisc replace dev mN root tbf rate {RATE_MBIT}mbit burst \
         {BURST} latency {LATENCY}`), and the link, not the CPU, is the limit. iperf3 TCP from \
         the host (198.51.100.10) to a peer on the shared L2 with 8 and 64 flows (`-P`), \
         {trials} trial(s) of {secs} s per cell, trials of all setups interleaved, sender and \
         receiver pinned as in the throughput section. The labs are those of the throughput \
         section: **one shaped member (plain)** is the address on m0 and its connected route; \
         **ipmp N members** is ipmpd over m0..m(N-1); **nexthop group N** a resilient group of \
         device nexthops m0..m(N-1) with the L4 hash.\n\n\
         The rate, {RATE_MBIT} Mbit/s per member, is chosen to keep the machine below \
         CPU-bound with room for other work on the 2 cores: unshaped, these paths carry 20–30 \
         Gbit/s of 64-flow TCP here (throughput section); at 2 Gbit/s per member, tried when \
         choosing, the iperf3 processes of the 4-member 64-flow cell used 1.1 cores (the whole \
         machine 1.2 of 2 while otherwise quiet), too close to the 2 cores once other work \
         shares them; the last column gives the figures at this rate. The shaper counts frames, so goodput cannot exceed {GOODPUT_PER_WIRE:.3} × \
         N × the rate (1448 bytes of payload per 1514-byte frame); the median of every cell \
         whose trials all had every member carrying traffic reached {reached_lo:.3}–\
         {reached_hi:.3} of that ceiling, which a CPU-bound path would not. The iperf3 sender \
         and receiver used at most {iperf_cpu:.2} cores (median of a cell; their user and \
         system time, softirq work done in their context included), the whole machine, \
         whatever else ran on it included, at most {machine_cpu:.2} of {cpus}. Gbit/s is the \
         goodput the receiver got. \"of N × \
         rate\" is the median over N × {rate:.1} Gbit/s; \"busiest / mean\" is the busiest \
         member's tx bytes over the mean of the setup's members per trial; \"share per member\" \
         is each member's part of the bytes of all trials of the cell (tx byte counters of \
         m0..m(N-1) over each trial). Figures are min / median / max. Setup took {setup_s:.1} \
         s, the section {:.0} s.\n",
        took.as_secs_f64()
    );
    for (fi, flows) in FLOWS.iter().enumerate() {
        let _ = writeln!(md, "\n#### TCP {flows} flows\n");
        let _ = writeln!(
            md,
            "| setup | Gbit/s | of N × rate | of N × one member | busiest / mean | members carrying (fewest) | share per member | iperf3 / machine cores (median) |\n|---|---|---|---|---|---|---|---|"
        );
        let single = cells[fi][path_index(Path::Plain)].median_gbps();
        for (pi, p) in PATHS.iter().enumerate() {
            let c = &cells[fi][pi];
            let n = p.members();
            let gbps = c.summary(|t| t.gbps).map_or_else(
                || "not measured".to_owned(),
                |s| s.fmt(2, "").trim_end().to_owned(),
            );
            let of_rate = fmt_opt(c.of_aggregate(n), 2, "×");
            let of_single = match (c.median_gbps(), single) {
                (Some(g), Some(s)) if s > 0.0 && n > 1 => format!("{:.2}×", g / (n as f64 * s)),
                _ => String::new(),
            };
            let (bom, used, shares) = if n > 1 {
                (
                    c.summary(Trial::busiest_over_mean)
                        .map_or_else(|| "–".to_owned(), |s| s.fmt(2, "×")),
                    c.summary(|t| members_used(&t.member_bytes) as f64)
                        .map_or_else(|| "–".to_owned(), |s| format!("{:.0}/{n}", s.min)),
                    c.shares().map_or_else(
                        || "–".to_owned(),
                        |v| {
                            v.iter()
                                .map(|s| format!("{s:.0} %"))
                                .collect::<Vec<_>>()
                                .join(" · ")
                        },
                    ),
                )
            } else {
                (String::new(), String::new(), String::new())
            };
            let cpu = format!(
                "{} / {}",
                fmt_opt(c.summary(|t| t.iperf_cores).map(|s| s.median), 2, ""),
                fmt_opt(c.summary(|t| t.busy_cores).map(|s| s.median), 2, "")
            );
            let _ = writeln!(
                md,
                "| {} | {gbps} | {of_rate} | {of_single} | {bom} | {used} | {shares} | {cpu} |",
                label(*p)
            );
        }
        if let Some(note) = failures_note(&cells[fi]) {
            let _ = writeln!(md, "\n{note}");
        }
    }
    let _ = writeln!(md, "\n{}", collisions_note(cells));
    let _ = writeln!(md, "\n![aggregate bandwidth](aggregate.svg)");

    let groups: Vec<(String, Vec<(String, f64)>)> = FLOWS
        .iter()
        .enumerate()
        .map(|(fi, flows)| {
            let bars = PATHS
                .iter()
                .enumerate()
                .map(|(pi, p)| (label(*p), cells[fi][pi].median_gbps().unwrap_or(f64::NAN)))
                .collect();
            (format!("TCP {flows} flows"), bars)
        })
        .collect();
    Section {
        title: "7. Aggregate bandwidth".to_owned(),
        body_md: md,
        plots: vec![Plot {
            file: "aggregate.svg".to_owned(),
            svg: svg::bars(
                &format!("Aggregate over members shaped to {RATE_MBIT} Mbit/s each (median)"),
                "Gbit/s",
                &groups,
            ),
        }],
        goals: goals(cells),
    }
}

/// How far 8 flows fall short of the aggregate, measured and expected from hash collisions.
fn collisions_note(cells: &[Vec<Cell>]) -> String {
    let fi = FLOWS.iter().position(|f| *f == 8).unwrap_or(0);
    let k = u32::from(FLOWS[fi]);
    let per_n: Vec<String> = [2, 4]
        .iter()
        .map(|n| {
            let expect = expected_used_fraction(k, *n);
            let flow_max = expected_flow_max_over_mean(k, *n).map_or_else(String::new, |m| {
                format!(
                    "; the busiest member gets {m:.2}× the mean number of flows, which costs \
                     nothing while every member has one"
                )
            });
            let measured = |p: Path| {
                let c = &cells[fi][path_index(p)];
                let idle = c
                    .trials
                    .iter()
                    .filter(|t| members_used(&t.member_bytes) < *n)
                    .count();
                format!(
                    "{} (a member idle in {idle} of {} trials, expected in {:.0} %)",
                    fmt_opt(c.mean_of_aggregate(*n), 2, "×"),
                    c.trials.len(),
                    prob_some_idle(k, *n) * 100.0
                )
            };
            format!(
                "{n} members: expected from collisions alone {expect:.3} of the aggregate \
                 ({:.1} % lost to members no flow lands on{flow_max}), {:.2}× N × rate after \
                 headers; measured, mean over the trials, ipmp {} and nexthop group {}",
                (1.0 - expect) * 100.0,
                expect * GOODPUT_PER_WIRE,
                measured(Path::Ipmp(*n)),
                measured(Path::Nexthop(*n)),
            )
        })
        .collect();
    format!(
        "**8 flows and hash collisions.** With every member shaped, a member that one flow or \
         more hashes to runs at its rate (TCP flows sharing it split it) and a member no flow \
         hashes to idles; so what {k} flows lose is the expected fraction of members left \
         empty, (1 − 1/N)^{k}, not the spread of flows per member. {}. With 64 flows the \
         expected loss is below 10⁻⁷ for 4 members. Beyond collisions, goodput is at most \
         {GOODPUT_PER_WIRE:.3}× the shaped rate (headers).",
        per_n.join("; ")
    )
}

/// ipmp's 64-flow figures for one group size.
struct Ipmp64 {
    n: usize,
    /// Median throughput over N × the rate.
    of_rate: Option<f64>,
    /// Busiest member over the mean, per trial.
    spread: Option<Summary>,
    /// The nexthop group's `of_rate` beside it.
    nexthop_of_rate: Option<f64>,
}

fn goals(cells: &[Vec<Cell>]) -> Vec<GoalRow> {
    let fi = FLOWS.iter().position(|f| *f == 64).unwrap_or(0);
    let row = &cells[fi];
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let ipmp: Vec<Ipmp64> = [2, 4]
        .iter()
        .map(|n| {
            let c = &row[path_index(Path::Ipmp(*n))];
            Ipmp64 {
                n: *n,
                of_rate: c.of_aggregate(*n),
                spread: c.summary(Trial::busiest_over_mean),
                nexthop_of_rate: row[path_index(Path::Nexthop(*n))].of_aggregate(*n),
            }
        })
        .collect();
    let why_low = |n: usize| {
        let c = &row[path_index(Path::Ipmp(n))];
        let cores = c.summary(|t| t.busy_cores).map_or(f64::NAN, |s| s.median);
        let used = c
            .summary(|t| members_used(&t.member_bytes) as f64)
            .map_or(0.0, |s| s.min);
        if cores > 0.9 * cpus {
            format!(
                "the machine was CPU-bound ({cores:.2} of {cpus:.0} cores busy), not the shaped \
                 links"
            )
        } else if (used as usize) < n {
            format!("in some trial only {used:.0} of {n} members carried traffic")
        } else {
            format!(
                "every member carried traffic and {cores:.2} of {cpus:.0} cores were busy: the \
                 shortfall is the shaped links' own (TCP not filling a token bucket, headers: \
                 goodput ≤ {GOODPUT_PER_WIRE:.3}× the rate)"
            )
        }
    };
    let rate = fmt_list(&ipmp, |i| {
        format!(
            "{} members {} (nexthop group {})",
            i.n,
            fmt_opt(i.of_rate, 2, "×"),
            fmt_opt(i.nexthop_of_rate, 2, "×")
        )
    });
    let worst_rate = ipmp
        .iter()
        .filter_map(|i| i.of_rate.map(|r| (i.n, r)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let rate_row = goal_row(
        "Aggregate: ipmp with 64 TCP flows ≥ 0.9 × N × the shaped rate",
        worst_rate.map(|(n, r)| {
            (
                format!("lowest {r:.2}× ({n} members); {rate}"),
                r >= 0.9,
                why_low(n),
            )
        }),
    );
    let spread = fmt_list(&ipmp, |i| {
        format!(
            "{} members {}",
            i.n,
            i.spread.map_or_else(|| "–".to_owned(), |s| s.fmt(2, "×"))
        )
    });
    let worst_spread = ipmp
        .iter()
        .filter_map(|i| i.spread.map(|s| (i.n, s.median)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let spread_row = goal_row(
        "Aggregate: busiest member ≤ 1.1× the mean (ipmp, 64 TCP flows)",
        worst_spread.map(|(n, m)| {
            (
                format!("highest median {m:.2}× ({n} members); {spread}"),
                m <= 1.1,
                format!(
                    "with every member shaped, a member runs at its rate whenever a flow \
                     hashes to it, so an uneven share means a member ran below its rate: {}",
                    why_low(n)
                ),
            )
        }),
    );
    vec![rate_row, spread_row]
}

/// A goal's row from (figure, met, why if missed), or "not measured".
fn goal_row(goal: &str, measured: Option<(String, bool, String)>) -> GoalRow {
    match measured {
        None => GoalRow {
            goal: goal.to_owned(),
            figure: "not measured".to_owned(),
            met: None,
            why: "no ipmp trial succeeded".to_owned(),
        },
        Some((figure, met, why)) => GoalRow {
            goal: goal.to_owned(),
            figure,
            met: Some(met),
            why: if met { String::new() } else { why },
        },
    }
}

fn fmt_list<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    v.iter().map(f).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collision_expectations() {
        assert!((expected_used_fraction(8, 2) - (1.0 - 1.0 / 256.0)).abs() < 1e-12);
        assert!((expected_used_fraction(8, 4) - (1.0 - 0.75f64.powi(8))).abs() < 1e-12);
        assert_eq!(expected_used_fraction(8, 1), 1.0);
        assert_eq!(expected_used_fraction(8, 0), 0.0);
        // 2 flows over 2 members: max is 1 or 2 with equal odds, mean 1 → 1.5.
        assert!((expected_flow_max_over_mean(2, 2).expect("small") - 1.5).abs() < 1e-12);
        let m = expected_flow_max_over_mean(8, 4).expect("65 536 assignments");
        assert!(m > 1.5 && m < 2.0, "{m}");
        assert_eq!(expected_flow_max_over_mean(64, 4), None);
        // 8 flows fill 4 members in 4! S(8, 4) = 24 × 1701 of the 4^8 assignments.
        let p = prob_some_idle(8, 4);
        assert!((p - (1.0 - 24.0 * 1701.0 / 65536.0)).abs() < 1e-12, "{p}");
        assert!((prob_some_idle(8, 2) - 2.0 / 256.0).abs() < 1e-12);
        assert!(prob_some_idle(64, 4) < 1e-7);
    }

    fn trial(gbps: f64, bytes: &[u64]) -> Trial {
        Trial {
            gbps,
            busy_cores: 0.5,
            iperf_cores: 0.25,
            member_bytes: bytes.to_vec(),
        }
    }

    fn cell(t: Vec<Trial>) -> Cell {
        Cell {
            trials: t,
            errors: Vec::new(),
        }
    }

    #[test]
    fn busiest_and_shares() {
        assert!((busiest_over_mean(&[30, 10]) - 1.5).abs() < 1e-12);
        assert!(busiest_over_mean(&[0, 0]).is_nan());
        let c = cell(vec![trial(1.0, &[30, 10]), trial(1.0, &[10, 30])]);
        assert_eq!(c.shares(), Some(vec![50.0, 50.0]));
        assert_eq!(Cell::default().shares(), None);
    }

    /// cells[flows][path] with every ipmp/nexthop cell at `gbps` and `bytes`.
    fn grid(gbps: f64, bytes4: &[u64]) -> Vec<Vec<Cell>> {
        FLOWS
            .iter()
            .map(|_| {
                PATHS
                    .iter()
                    .map(|p| {
                        let n = p.members();
                        cell(vec![trial(gbps * n as f64, &bytes4[..n])])
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn goals_met_and_missed() {
        let g = goals(&grid(0.95 * rate_gbps(), &[100, 100, 100, 100]));
        assert_eq!((g[0].met, g[1].met), (Some(true), Some(true)), "{g:?}");
        assert!(g[0].figure.starts_with("lowest 0.95×"), "{}", g[0].figure);
        // 2 members: [300, 0], busiest 2× the mean; 4 members: busiest 3× the mean.
        let g = goals(&grid(0.8 * rate_gbps(), &[300, 0, 100, 0]));
        assert_eq!((g[0].met, g[1].met), (Some(false), Some(false)), "{g:?}");
        assert!(g[0].why.contains("only 1 of 2 members"), "{}", g[0].why);
        assert!(
            g[1].figure.starts_with("highest median 3.00× (4 members)"),
            "{}",
            g[1].figure
        );
        assert!(g[1].why.contains("only 2 of 4 members"), "{}", g[1].why);
        let empty = vec![vec![Cell::default(); PATHS.len()]; FLOWS.len()];
        assert_eq!(goals(&empty)[0].met, None);
    }

    #[test]
    fn section_renders_tables_and_note() {
        let s = section(
            &grid(0.9 * rate_gbps(), &[100, 100, 100, 100]),
            1,
            2,
            0.5,
            Duration::from_secs(3),
        );
        assert!(s.body_md.contains("#### TCP 8 flows"));
        assert!(
            s.body_md
                .contains("| ipmp 4 members | 3.60 / 3.60 / 3.60 | 0.90× | 1.00× |")
        );
        assert!(s.body_md.contains("25 % · 25 % · 25 % · 25 %"));
        assert!(
            s.body_md
                .contains("expected from collisions alone 0.900 of the aggregate (10.0 % lost"),
            "{}",
            s.body_md
        );
        assert!(s.body_md.contains("0.86× N × rate after headers"));
        assert!(
            s.body_md
                .contains("ipmp 0.90× (a member idle in 0 of 1 trials, expected in 38 %)")
        );
        assert_eq!(s.plots[0].file, "aggregate.svg");
    }
}
