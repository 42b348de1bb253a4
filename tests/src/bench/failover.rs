//! Failover — link-based (carrier loss) and probe-based (silent failure).
//!
//! - Link-based ([`link`]): the member carrying a 10 000 packets/s sequenced UDP stream loses
//!   its carrier; ipmpd's log timestamps give carrier loss → link down seen → maps flipped, the
//!   receiver's arrival log gives the outage (gap, packets lost); outbound and inbound.
//! - Probe-based ([`probe`]): a silent failure (frames dropped at the switch) → ipmpd declares
//!   the member failed, for FDT 100 ms, 500 ms and 1 s; and one soak with both cores busy
//!   counting false failures for several FDTs at once.

mod link;
mod parse;
mod probe;

use std::{
    fmt::Write as _,
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;

use super::{GoalRow, Opts, Plot, Section, Summary, svg};
use link::{Dir, LinkBed, LinkTrial, Timeline};
use probe::SoakResult;

/// FDTs of the detection trials (ms) and their trial counts (full, quick).
const DETECTION: [(u64, usize, usize); 3] = [(100, 20, 3), (500, 10, 2), (1000, 5, 1)];
/// FDTs soaked at once under full CPU load (ms).
const SOAK_FDTS: [u64; 5] = [10, 25, 50, 100, 200];
/// The goals.
const GAP_GOAL_MS: f64 = 5.0;
const DETECTION_GOAL: f64 = 1.2;
const SOAK_GOAL_FDT_MS: u64 = 100;

/// Everything the link-based part measured.
#[derive(Default)]
struct LinkPart {
    trials: Vec<LinkTrial>,
    timelines: Vec<Timeline>,
    errors: Vec<String>,
}

fn link_part(trials: usize) -> anyhow::Result<LinkPart> {
    let bed = LinkBed::new()?;
    let mut part = LinkPart::default();
    let mut n = 0u16;
    for _ in 0..trials {
        for dir in [Dir::Out, Dir::In] {
            n += 1;
            match bed.trial(dir, n, false) {
                Ok((t, _)) => part.trials.push(t),
                Err(e) => part.errors.push(format!("{}: {e:#}", dir.label())),
            }
            if part.errors.len() > trials {
                bail!("too many failed link trials; the first: {}", part.errors[0]);
            }
        }
    }
    // One more trial each way with tcpdump on the members, for the timelines only (capturing
    // costs CPU, so these do not count among the trials).
    for dir in [Dir::Out, Dir::In] {
        n += 1;
        match bed.trial(dir, n, true) {
            Ok((_, Some(t))) => part.timelines.push(t),
            Ok((_, None)) => {}
            Err(e) => part.errors.push(format!("timeline {}: {e:#}", dir.label())),
        }
    }
    Ok(part)
}

/// Measures failover and returns the report section.
pub fn run(opts: &Opts) -> anyhow::Result<Section> {
    let started = Instant::now();
    let link = link_part(opts.pick(20, 3));
    let link_s = started.elapsed();

    // The three FDTs are independent labs: run them side by side.
    let t = Instant::now();
    let detection: Vec<(u64, anyhow::Result<Vec<f64>>)> = thread::scope(|s| {
        let handles: Vec<_> = DETECTION
            .iter()
            .map(|(fdt, full, quick)| {
                let n = opts.pick(*full, *quick);
                (*fdt, s.spawn(move || probe::detection_trials(*fdt, n)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(fdt, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("detection thread panicked")));
                (fdt, r)
            })
            .collect()
    });
    let detection_s = t.elapsed();

    let t = Instant::now();
    let soak_time = opts.pick(Duration::from_secs(600), Duration::from_secs(30));
    let soak = probe::soak(&SOAK_FDTS, soak_time);
    let soak_s = t.elapsed();

    if link.is_err() && detection.iter().all(|(_, r)| r.is_err()) && soak.is_err() {
        let e = link.err().map(|e| format!("{e:#}")).unwrap_or_default();
        bail!("no part of the failover benchmark ran; link-based: {e}");
    }
    let took = [link_s, detection_s, soak_s, started.elapsed()];
    Ok(section(&link, &detection, &soak, soak_time, took))
}

fn fmt_summary(v: &[f64], prec: usize, unit: &str) -> String {
    Summary::of(v).map_or_else(
        || "–".to_owned(),
        |s| s.fmt(prec, unit).trim_end().to_owned(),
    )
}

fn err_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('`', "'").replace('\n', " ")
}

fn section(
    link: &anyhow::Result<LinkPart>,
    detection: &[(u64, anyhow::Result<Vec<f64>>)],
    soak: &anyhow::Result<(Vec<SoakResult>, f64)>,
    soak_time: Duration,
    took: [Duration; 4],
) -> Section {
    let mut md = String::new();
    let mut plots = Vec::new();
    let _ = writeln!(
        md,
        "Took {:.0} s: link-based {:.0} s, probe detection {:.0} s, soak {:.0} s.\n",
        took[3].as_secs_f64(),
        took[0].as_secs_f64(),
        took[1].as_secs_f64(),
        took[2].as_secs_f64()
    );
    let _ = writeln!(
        md,
        "#### Link-based: carrier loss\n\n\
         Two members, one peer, ipmpd with link-based detection. A sequenced UDP stream of \
         {} datagrams/s runs through the member that carries it (outbound: the member the \
         flow hashes to, found from the members' counters; inbound: the member the data \
         address is bound to); {} ms in, that member's switch port is set down (SIOCSIFFLAGS \
         from a thread in the switch namespace; the time is taken right before the call). \
         *Link down seen* and *maps flipped* are ipmpd's own log timestamps (its \"link state \
         changed\" line and the \"maps updated\" line after it). *Gap* is the silence at the \
         receiving application (labtool's arrival log) across which datagrams went missing, \
         the first after the cut, or the silence spanning the cut when none did; silences \
         without loss are the sender or receiver scheduled late on this 2-core machine, not \
         outages. The stream goes out in bursts every ~0.5 ms, so about 0.5 ms is no outage \
         at all. *Restored* is carrier loss → the first datagram after the gap; *lost* counts \
         sequence numbers that never arrived. min / median / max.\n",
        link::RATE,
        link::BEFORE.as_millis()
    );
    let mut link_goal = GoalRow {
        goal: format!("Link-based failover: median traffic gap ≤ {GAP_GOAL_MS} ms"),
        figure: "not measured".to_owned(),
        met: None,
        why: String::new(),
    };
    match link {
        Err(e) => {
            let _ = writeln!(md, "Not measured: `{}`\n", err_line(e));
            link_goal.why = err_line(e);
        }
        Ok(part) => {
            let _ = writeln!(
                md,
                "| direction | trials | carrier loss → link down seen | → maps flipped | gap at the receiver | → traffic restored | datagrams lost |\n|---|---|---|---|---|---|---|"
            );
            let mut medians = Vec::new();
            for dir in [Dir::Out, Dir::In] {
                let t: Vec<&LinkTrial> = part.trials.iter().filter(|t| t.dir == dir).collect();
                let col = |f: &dyn Fn(&LinkTrial) -> Option<f64>| -> Vec<f64> {
                    t.iter().filter_map(|t| f(t)).collect()
                };
                let gaps = col(&|t| t.gap_ms());
                let never = t.iter().filter(|t| t.outage.is_none()).count();
                let _ = writeln!(
                    md,
                    "| {} | {}{} | {} | {} | {} | {} | {} |",
                    dir.label(),
                    t.len(),
                    if never > 0 {
                        format!(" ({never} never restored)")
                    } else {
                        String::new()
                    },
                    fmt_summary(&col(&|t| t.detect_ms), 2, "ms"),
                    fmt_summary(&col(&|t| t.flip_ms), 2, "ms"),
                    fmt_summary(&gaps, 2, "ms"),
                    fmt_summary(&col(&|t| t.restored_ms()), 2, "ms"),
                    fmt_summary(&col(&|t| Some(t.lost as f64)), 0, ""),
                );
                medians.push((
                    dir,
                    Summary::of(&gaps).map(|s| s.median),
                    Summary::of(&col(&|t| t.flip_ms)).map(|s| s.median),
                    Summary::of(&col(&|t| t.restored_ms())).map(|s| s.median),
                    never,
                ));
            }
            if let Some(e) = part.errors.first() {
                let _ = writeln!(
                    md,
                    "\n{} trial(s) failed; the first: `{}`",
                    part.errors.len(),
                    e.replace('`', "'").replace('\n', " ")
                );
            }
            link_goal = link_gap_goal(&medians);
            for tl in &part.timelines {
                let (file, what) = match tl.dir {
                    Dir::Out => (
                        "failover-timeline-out.svg",
                        "outbound: datagrams each member sent",
                    ),
                    Dir::In => (
                        "failover-timeline-in.svg",
                        "inbound: datagrams each member received",
                    ),
                };
                let title = format!("Carrier loss, {what}, per ms");
                plots.push(Plot {
                    file: file.to_owned(),
                    svg: svg::lines(
                        &title,
                        "ms from carrier loss",
                        "datagrams per ms",
                        &tl.series,
                    ),
                });
                let t = &tl.trial;
                let _ = writeln!(
                    md,
                    "\n![{title}]({file})\n\n{}: m{} lost its carrier at 0 ms; maps flipped at \
                     {}, gap {}, {} datagrams lost (tcpdump on the members, host side; this \
                     trial is not among those above). The members' lines count what the host \
                     put on each member (outbound) or what arrived on it (inbound); *receiver* \
                     is what the receiving application got.",
                    tl.dir.label(),
                    t.member,
                    t.flip_ms
                        .map_or_else(|| "–".into(), |v| format!("{v:.2} ms")),
                    t.gap_ms()
                        .map_or_else(|| "–".into(), |v| format!("{v:.2} ms")),
                    t.lost
                );
            }
        }
    }

    let _ = writeln!(
        md,
        "\n#### Probe-based: detection time\n\n\
         Two members with test addresses probing the router (ICMP), one lab per FDT, the three \
         run side by side. A silent failure starts when an `nft -i` session already running in \
         the switch namespace adds the member's port to a drop set (carrier stays up; the time \
         is taken right before the write); detection ends at ipmpd's first \"IP interface \
         failure detected\" / \"failed (Probe)\" log line. Trials alternate the members and \
         wait 0.3–1.3 × FDT after the repair, so failures start at varied points of the probe \
         cycle.\n\n\
         | FDT | trials | silent drop → declared failed | worst / FDT |\n|---|---|---|---|"
    );
    let mut worst_ratio: Option<(f64, u64)> = None;
    let mut det_missing = Vec::new();
    for (fdt, r) in detection {
        match r {
            Ok(v) if !v.is_empty() => {
                let s = Summary::of(v);
                let ratio = s.map(|s| s.max / *fdt as f64);
                if let Some(r) = ratio
                    && worst_ratio.is_none_or(|(w, _)| r > w)
                {
                    worst_ratio = Some((r, *fdt));
                }
                let _ = writeln!(
                    md,
                    "| {fdt} ms | {} | {} | {} |",
                    v.len(),
                    fmt_summary(v, 1, "ms"),
                    ratio.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
                );
            }
            Ok(_) => det_missing.push(format!("FDT {fdt} ms: no trial")),
            Err(e) => {
                let _ = writeln!(md, "| {fdt} ms | 0 | not measured: `{}` | |", err_line(e));
                det_missing.push(format!("FDT {fdt} ms: {}", err_line(e)));
            }
        }
    }
    let detect_goal = GoalRow {
        goal: format!("Probe-based: detection ≤ {DETECTION_GOAL} × FDT"),
        figure: worst_ratio.map_or_else(
            || "not measured".to_owned(),
            |(r, fdt)| format!("worst trial {r:.2} × FDT (FDT {fdt} ms)"),
        ),
        met: if det_missing.is_empty() {
            worst_ratio.map(|(r, _)| r <= DETECTION_GOAL)
        } else {
            None
        },
        why: if !det_missing.is_empty() {
            det_missing.join("; ")
        } else if worst_ratio.is_some_and(|(r, _)| r > DETECTION_GOAL) {
            "a silent failure is declared after 5 probes in a row are lost; probes go out at a \
             random point of each FDT/7 interval and count as lost only after the target's \
             RTT (or an interval) has passed, so the worst case exceeds the FDT when a drop \
             starts just after a probe was acknowledged"
                .to_owned()
        } else {
            String::new()
        },
    };

    let _ = writeln!(
        md,
        "\n#### Probe-based: false failures under full CPU load\n\n\
         One probing lab per FDT ({}), all at once, for {:.0} s while {} busy-loop processes \
         (as many as CPUs, same priority as ipmpd) keep every core busy. Nothing fails, so \
         every failure ipmpd declares is false. \"FDT raised\" counts in.mpathd's \"cannot meet \
         requested failure detection time\": the daemon lengthened its FDT because probe RTTs \
         grew; an FDT only *holds* with no false failure and no raise.\n",
        SOAK_FDTS.map(|f| format!("{f} ms")).join(", "),
        soak_time.as_secs_f64(),
        thread::available_parallelism().map_or(2, usize::from)
    );
    let soak_goal = match soak {
        Err(e) => {
            let _ = writeln!(md, "Not measured: `{}`", err_line(e));
            GoalRow {
                goal: format!(
                    "Probe-based: zero false failures at FDT ≤ {SOAK_GOAL_FDT_MS} ms under full CPU load"
                ),
                figure: "not measured".to_owned(),
                met: None,
                why: err_line(e),
            }
        }
        Ok((results, busy)) => {
            let _ = writeln!(
                md,
                "The machine was {:.1} % busy over the soak (/proc/stat). *Probes missed* \
                 sums ipmpd's \"missed sending N probes: the daemon ran late\" notices \
                 against the probes due (2 members × FDT/7 intervals): probes that never went \
                 out cannot be lost, so a high share weakens detection even without false \
                 failures.\n\n\
                 | FDT | false failures | FDT raised | probes missed / due | ipmpstat FDT at the end |\n|---|---|---|---|---|",
                busy * 100.0
            );
            for r in results {
                let _ = writeln!(
                    md,
                    "| {} ms | {} | {} | {} / {} ({:.1} %) | {} |",
                    r.fdt_ms,
                    r.failures,
                    r.raises,
                    r.missed,
                    r.due,
                    r.missed as f64 * 100.0 / r.due.max(1) as f64,
                    r.fdt_end
                );
            }
            if let Some(r) = results.iter().find(|r| r.first_failure.is_some()) {
                let _ = writeln!(
                    md,
                    "\nFirst false failure (FDT {} ms): `{}`",
                    r.fdt_ms,
                    r.first_failure
                        .as_deref()
                        .unwrap_or_default()
                        .replace('`', "'")
                );
            }
            soak_goal(results, *busy)
        }
    };
    Section {
        title: "3. Failover".to_owned(),
        body_md: md,
        plots,
        goals: vec![link_goal, detect_goal, soak_goal],
    }
}

/// (direction, median gap, median flip, median restored, trials never restored).
type LinkMedians = (Dir, Option<f64>, Option<f64>, Option<f64>, usize);

fn link_gap_goal(medians: &[LinkMedians]) -> GoalRow {
    let goal = format!("Link-based failover: median traffic gap ≤ {GAP_GOAL_MS} ms");
    let fmt = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2} ms"));
    let figure = medians
        .iter()
        .map(|(d, gap, ..)| {
            let short = match d {
                Dir::Out => "outbound",
                Dir::In => "inbound",
            };
            format!("{short} {}", fmt(*gap))
        })
        .collect::<Vec<_>>()
        .join(", ");
    if medians.iter().any(|(_, gap, ..)| gap.is_none()) {
        return GoalRow {
            goal,
            figure,
            met: None,
            why: "a direction has no trial with traffic before and after the cut".to_owned(),
        };
    }
    let missed: Vec<String> = medians
        .iter()
        .filter(|(_, gap, ..)| gap.is_some_and(|g| g > GAP_GOAL_MS))
        .map(|(d, gap, flip, restored, never)| {
            let mut s = format!(
                "{}: gap {}, the maps flipped {} and traffic came back {} after the carrier loss",
                d.label(),
                fmt(*gap),
                fmt(*flip),
                fmt(*restored)
            );
            if *d == Dir::In {
                s.push_str(
                    " (inbound waits for the peer to take the gratuitous ARP that moves the \
                     data address to the other member's MAC)",
                );
            }
            if *never > 0 {
                let _ = write!(s, "; {never} trial(s) never restored");
            }
            s
        })
        .collect();
    GoalRow {
        goal,
        figure,
        met: Some(missed.is_empty()),
        why: missed.join("; "),
    }
}

fn soak_goal(results: &[SoakResult], busy: f64) -> GoalRow {
    let goal = format!(
        "Probe-based: zero false failures at FDT ≤ {SOAK_GOAL_FDT_MS} ms under full CPU load"
    );
    let triples: Vec<(u64, u64, u64)> = results
        .iter()
        .map(|r| (r.fdt_ms, r.failures, r.raises))
        .collect();
    let lowest = parse::lowest_clean_fdt(&triples);
    let per = results
        .iter()
        .map(|r| {
            let raised = if r.raises > 0 {
                format!(", raised ×{}", r.raises)
            } else {
                String::new()
            };
            format!("{} ms: {} false{raised}", r.fdt_ms, r.failures)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let held = lowest
        .and_then(|f| results.iter().find(|r| r.fdt_ms == f))
        .map_or_else(
            || "none".to_owned(),
            |r| {
                let floor = if results.iter().all(|o| o.fdt_ms >= r.fdt_ms) {
                    " (the lowest tried)"
                } else {
                    ""
                };
                format!(
                    "{} ms{floor}, {:.1} % of its probes missed",
                    r.fdt_ms,
                    r.missed as f64 * 100.0 / r.due.max(1) as f64
                )
            },
        );
    let figure = format!(
        "lowest FDT that held: {held} ({per}; CPU {:.0} % busy)",
        busy * 100.0
    );
    let met = lowest.is_some_and(|f| f <= SOAK_GOAL_FDT_MS);
    let why = if met {
        String::new()
    } else {
        let bad: Vec<String> = results
            .iter()
            .filter(|r| r.fdt_ms <= SOAK_GOAL_FDT_MS && (r.failures > 0 || r.raises > 0))
            .map(|r| {
                format!(
                    "FDT {} ms: {} false failure(s), {} FDT raise(s){}",
                    r.fdt_ms,
                    r.failures,
                    r.raises,
                    r.first_failure
                        .as_deref()
                        .map(|l| format!(", first: {l}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        format!(
            "with every core busy, probe replies are handled late: {}",
            bad.join("; ")
        )
    };
    GoalRow {
        goal,
        figure,
        met: Some(met),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soak_row(fdt_ms: u64, failures: u64, raises: u64) -> SoakResult {
        SoakResult {
            fdt_ms,
            failures,
            raises,
            missed: 0,
            due: 1000,
            fdt_end: String::new(),
            first_failure: (failures > 0).then(|| "m0 failed (Probe)".to_owned()),
        }
    }

    #[test]
    fn soak_goal_needs_a_held_fdt_at_or_below_100_ms() {
        let ok = soak_goal(
            &[
                soak_row(25, 2, 0),
                soak_row(50, 0, 0),
                soak_row(100, 0, 0),
                soak_row(200, 0, 0),
            ],
            0.99,
        );
        assert_eq!(ok.met, Some(true));
        assert!(
            ok.figure
                .starts_with("lowest FDT that held: 50 ms, 0.0 % of its probes missed"),
            "{}",
            ok.figure
        );
        let low = soak_goal(&[soak_row(25, 0, 0), soak_row(50, 0, 0)], 0.99);
        assert!(
            low.figure
                .starts_with("lowest FDT that held: 25 ms (the lowest tried), 0.0 %"),
            "{}",
            low.figure
        );
        let raised = soak_goal(&[soak_row(100, 0, 1), soak_row(200, 0, 0)], 0.99);
        assert_eq!(raised.met, Some(false));
        assert!(
            raised
                .why
                .contains("FDT 100 ms: 0 false failure(s), 1 FDT raise(s)")
        );
        let none = soak_goal(&[soak_row(200, 3, 0)], 0.99);
        assert_eq!(none.met, Some(false));
        assert!(none.figure.contains("none"));
    }

    #[test]
    fn link_goal_uses_both_directions() {
        let ok = link_gap_goal(&[
            (Dir::Out, Some(1.0), Some(0.3), Some(0.8), 0),
            (Dir::In, Some(4.9), Some(0.3), Some(4.5), 0),
        ]);
        assert_eq!(ok.met, Some(true));
        assert_eq!(ok.figure, "outbound 1.00 ms, inbound 4.90 ms");
        let missed = link_gap_goal(&[
            (Dir::Out, Some(1.0), Some(0.3), Some(0.8), 0),
            (Dir::In, Some(12.0), Some(0.3), Some(11.0), 1),
        ]);
        assert_eq!(missed.met, Some(false));
        assert!(missed.why.contains("inbound"), "{}", missed.why);
        assert!(missed.why.contains("1 trial(s) never restored"));
        let unmeasured = link_gap_goal(&[(Dir::Out, None, None, None, 3)]);
        assert_eq!(unmeasured.met, None);
    }
}
