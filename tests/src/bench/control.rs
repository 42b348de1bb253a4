//! The control plane — ipmpd start to ready, its RSS and CPU at idle with four
//! probing members, and the latency of one atomic bucket-table update at the default and the
//! largest table size.

use std::{
    fmt::Write as _,
    fs,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail, ensure};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use super::{
    GoalRow, Opts, Plot, Section, Summary, svg,
    testbed::{Testbed, in_fresh_netns},
};
use crate::lab::{Lab, LabSpec, bin_path, wait_until};

const MEMBERS: usize = 4;

/// `ipmpd ready in N ms` from ipmpd's log.
pub fn ready_ms(log: &str) -> Option<f64> {
    let at = log.find("ipmpd ready in ")? + "ipmpd ready in ".len();
    let rest = &log[at..];
    let end = rest.find(" ms")?;
    rest[..end].trim().parse().ok()
}

/// utime + stime in clock ticks from `/proc/PID/stat` (fields 14 and 15; the command name in
/// field 2 may hold spaces and parentheses, so count from the last ')').
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// On-CPU nanoseconds of a task from `/proc/PID/task/TID/schedstat` (first field).
pub fn schedstat_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// On-CPU nanoseconds of every thread of `pid` (nanosecond resolution, where `/proc/PID/stat`
/// counts 10 ms ticks).
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for entry in fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
        let path = entry?.path().join("schedstat");
        // A thread that just ended has no file any more.
        if let Ok(text) = fs::read_to_string(&path) {
            total +=
                schedstat_ns(&text).ok_or_else(|| anyhow!("cannot parse {}", path.display()))?;
        }
    }
    Ok(total)
}

/// Whether `ip -j link show` output lists no IPMP interface (`ipmp0`) and no member (`m<N>`)
/// with an XDP program.
pub fn nothing_attached(ip_json: &str) -> bool {
    let Ok(serde_json::Value::Array(links)) = serde_json::from_str(ip_json) else {
        return false;
    };
    links.iter().all(|l| {
        let name = l["ifname"].as_str().unwrap_or_default();
        let member = name
            .strip_prefix('m')
            .is_some_and(|n| n.parse::<u32>().is_ok());
        name != "ipmp0" && !(member && l.get("xdp").is_some())
    })
}

/// A `Kb` field of `/proc/PID/status` (e.g. `VmRSS`) in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

// --- start to ready --------------------------------------------------------------------------

struct Started {
    child: Child,
    log: std::path::PathBuf,
}

fn spawn_ipmpd(lab: &Lab, config: &Path, n: usize) -> anyhow::Result<Started> {
    let ipmpd = bin_path("ipmpd");
    ensure!(ipmpd.is_file(), "ipmpd not found at {}", ipmpd.display());
    let log = lab.work_dir().join(format!("bench-ipmpd-{n}.log"));
    let out = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone()?;
    let pins = lab.pin_dir();
    let child = lab
        .host()
        .command(&[
            &ipmpd.to_string_lossy(),
            "--config",
            &config.to_string_lossy(),
            "--pin-dir",
            &pins.to_string_lossy(),
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("start ipmpd")?;
    Ok(Started { child, log })
}

fn stop(mut s: Started) -> anyhow::Result<()> {
    if let Ok(pid) = i32::try_from(s.child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let done = wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        !matches!(s.child.try_wait(), Ok(None))
    });
    if !done {
        let _ = s.child.kill();
        let _ = s.child.wait();
        bail!("ipmpd ignored SIGTERM");
    }
    Ok(())
}

/// One start: (ms from spawn to the ready line, ipmpd's own figure).
fn one_start(lab: &Lab, config: &Path, n: usize, socket: &Path) -> anyhow::Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut s = spawn_ipmpd(lab, config, n)?;
    let mut own = None;
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(1), || {
        own = fs::read_to_string(&s.log)
            .ok()
            .as_deref()
            .and_then(ready_ms);
        own.is_some() || !matches!(s.child.try_wait(), Ok(None))
    });
    let external = t0.elapsed().as_secs_f64() * 1000.0;
    let log = fs::read_to_string(&s.log).unwrap_or_default();
    let Some(own) = own.filter(|_| ok) else {
        let _ = stop(s);
        bail!("ipmpd did not log that it was ready within 10 s:\n{log}");
    };
    // Ready means loaded and attached: the daemon lists every attachment.
    let out = lab.host().run(&[
        &bin_path("ipmpadm").to_string_lossy(),
        "--socket",
        &socket.to_string_lossy(),
        "status",
        "--json",
    ]);
    let stopped = stop(s);
    let v: serde_json::Value = serde_json::from_str(&out?).context("ipmpadm status --json")?;
    let attached = v["groups"][0]["attachments"].as_array().map_or(0, Vec::len);
    ensure!(
        attached > MEMBERS,
        "only {attached} programs attached when ipmpd said it was ready: {v}"
    );
    stopped?;
    Ok((external, own))
}

struct StartFigures {
    cold_external: Vec<f64>,
    cold_own: Vec<f64>,
    warm_external: Vec<f64>,
    warm_own: Vec<f64>,
}

fn measure_start(opts: &Opts) -> anyhow::Result<StartFigures> {
    let trials = opts.pick(10, 3);
    let lab = Lab::new(LabSpec {
        members: MEMBERS,
        peers: 1,
        router: true,
    })?;
    let socket = lab.work_dir().join("bench.sock");
    let mut cfg = lab.config();
    cfg.control_socket = socket.to_string_lossy().into_owned();
    let config = lab.work_dir().join("bench-start.toml");
    fs::write(&config, cfg.to_toml())?;
    let ipmpd = bin_path("ipmpd").to_string_lossy().into_owned();
    let (cfg_s, pins_s) = (
        config.to_string_lossy().into_owned(),
        lab.pin_dir().to_string_lossy().into_owned(),
    );
    let cleanup = || {
        lab.host()
            .run(&[
                &ipmpd,
                "--config",
                &cfg_s,
                "--pin-dir",
                &pins_s,
                "--cleanup",
            ])
            .map(drop)?;
        // Removing the pins drops the last reference to the links, but the kernel detaches
        // them later (bpffs frees inodes after an RCU grace period and puts the links from a
        // work item), so a start right after `--cleanup` can still find the old XDP program.
        let ok = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
            lab.host()
                .run(&["ip", "-j", "link", "show"])
                .is_ok_and(|out| nothing_attached(&out))
        });
        ensure!(ok, "XDP programs still attached 5 s after ipmpd --cleanup");
        anyhow::Ok(())
    };
    let mut f = StartFigures {
        cold_external: Vec::new(),
        cold_own: Vec::new(),
        warm_external: Vec::new(),
        warm_own: Vec::new(),
    };
    for i in 0..trials {
        // Cold: nothing pinned, no IPMP interface; then warm: adopting what the first left.
        cleanup()?;
        let (e, o) = one_start(&lab, &config, 2 * i, &socket)?;
        f.cold_external.push(e);
        f.cold_own.push(o);
        let (e, o) = one_start(&lab, &config, 2 * i + 1, &socket)?;
        f.warm_external.push(e);
        f.warm_own.push(o);
    }
    cleanup()?;
    Ok(f)
}

// --- idle ------------------------------------------------------------------------------------

struct Idle {
    rss_mib: Vec<f64>,
    hwm_mib: f64,
    cpu_pct: Vec<f64>,
    /// The whole window from `/proc/PID/stat` ticks, as a cross-check.
    cpu_pct_ticks: f64,
    window: Duration,
    threads: usize,
}

/// `ipmpstat -iP -o interface,probe` through `socket`: every member's probes acknowledged.
fn probing(lab: &Lab, socket: &Path) -> anyhow::Result<bool> {
    let out = lab.host().run(&[
        &bin_path("ipmpstat").to_string_lossy(),
        "--socket",
        &socket.to_string_lossy(),
        "-iP",
        "-o",
        "interface,probe",
    ])?;
    let lines: Vec<&str> = out.lines().collect();
    Ok(lines.len() == MEMBERS && lines.iter().all(|l| l.ends_with(":ok")))
}

fn measure_idle(opts: &Opts) -> anyhow::Result<Idle> {
    let window = Duration::from_secs(opts.pick(60, 10));
    let intervals = opts.pick(6u32, 5);
    let lab = Lab::new(LabSpec {
        members: MEMBERS,
        peers: 1,
        router: true,
    })?;
    let socket = lab.work_dir().join("bench-idle.sock");
    let mut cfg = lab.config();
    cfg.control_socket = socket.to_string_lossy().into_owned();
    cfg.failure_detection_time_ms = Some(1000);
    for i in 0..MEMBERS {
        cfg.member_mut(&format!("m{i}")).test_address = Some(format!("198.51.100.{}/24", 21 + i));
    }
    let config = lab.work_dir().join("bench-idle.toml");
    fs::write(&config, cfg.to_toml())?;
    // ipmpd's own default log level (info), as deployed: debug logging would cost CPU per probe.
    let d = spawn_ipmpd(&lab, &config, 1000)?;
    let acked = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        probing(&lab, &socket).unwrap_or(false)
    });
    if !acked {
        let log = fs::read_to_string(&d.log).unwrap_or_default();
        let _ = stop(d);
        bail!("the four members never got their probes acknowledged; ipmpd log:\n{log}");
    }
    let pid = d.child.id();
    let proc = format!("/proc/{pid}");
    let comm = fs::read_to_string(format!("{proc}/comm")).unwrap_or_default();
    ensure!(comm.trim() == "ipmpd", "pid {pid} is {comm:?}, not ipmpd");
    let ticks = || -> anyhow::Result<u64> {
        cpu_ticks(&fs::read_to_string(format!("{proc}/stat"))?)
            .ok_or_else(|| anyhow!("cannot parse {proc}/stat"))
    };
    let status = || fs::read_to_string(format!("{proc}/status")).unwrap_or_default();
    let hz = clock_ticks();
    let slice = window / intervals;
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    let start_ticks = ticks()?;
    let started = Instant::now();
    for _ in 0..intervals {
        let (t0, w0) = (cpu_ns(pid)?, Instant::now());
        let end = w0 + slice;
        while Instant::now() < end {
            if let Some(kib) = status_kib(&status(), "VmRSS") {
                rss.push(kib as f64 / 1024.0);
            }
            let left = end.saturating_duration_since(Instant::now());
            std::thread::sleep(Duration::from_millis(500).min(left));
        }
        let secs = w0.elapsed().as_secs_f64();
        cpu.push((cpu_ns(pid)? - t0) as f64 / 1e9 / secs * 100.0);
    }
    let whole = (ticks()? - start_ticks) as f64 / hz / started.elapsed().as_secs_f64() * 100.0;
    let hwm = status_kib(&status(), "VmHWM").unwrap_or(0) as f64 / 1024.0;
    let threads = fs::read_dir(format!("{proc}/task")).map_or(0, Iterator::count);
    let still = probing(&lab, &socket);
    stop(d)?;
    ensure!(still?, "probing stopped during the window");
    Ok(Idle {
        rss_mib: rss,
        hwm_mib: hwm,
        cpu_pct: cpu,
        cpu_pct_ticks: whole,
        window,
        threads,
    })
}

// --- atomic table update -----------------------------------------------------------------------

/// Table sizes the update is measured at: the default and the largest a group can have.
const TABLE_SIZES: [u32; 2] = [ipmp::config::DEFAULT_BUCKETS, ipmp_common::MAX_BUCKETS];
/// Goal for the flip of the largest table: the writer's apply for a failure, median.
const FLIP_GOAL_MS: f64 = 5.0;

/// The flip goal's name for a table of `buckets`.
fn flip_goal(buckets: u32) -> String {
    format!(
        "bucket table flip for {} buckets ≤ {FLIP_GOAL_MS} ms",
        spaced(buckets)
    )
}

/// `65536` as `65 536` (the report's way of writing large counts).
fn spaced(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

struct Update {
    buckets: u32,
    fail_us: Vec<f64>,
    repair_us: Vec<f64>,
    rebalance_fail_us: Vec<f64>,
    rebalance_repair_us: Vec<f64>,
    writes_fail: Vec<f64>,
    writes_repair: Vec<f64>,
    /// `MapWriter::settle` after each update, and the buckets it wrote.
    settle_fail_us: Vec<f64>,
    settle_repair_us: Vec<f64>,
    settled_fail: Vec<f64>,
    settled_repair: Vec<f64>,
}

/// One [`Update`] per size of [`TABLE_SIZES`], each on a fresh test bed.
fn measure_update(opts: &Opts) -> anyhow::Result<Vec<Update>> {
    TABLE_SIZES
        .iter()
        .map(|&n| measure_update_at(opts, n))
        .collect()
}

fn measure_update_at(opts: &Opts, buckets: u32) -> anyhow::Result<Update> {
    let trials = opts.pick(200, 50);
    in_fresh_netns(|| {
        let mut bed = Testbed::with_buckets(MEMBERS, buckets)?;
        let all: Vec<usize> = (0..MEMBERS).collect();
        let mut u = Update {
            buckets,
            fail_us: Vec::new(),
            repair_us: Vec::new(),
            rebalance_fail_us: Vec::new(),
            rebalance_repair_us: Vec::new(),
            writes_fail: Vec::new(),
            writes_repair: Vec::new(),
            settle_fail_us: Vec::new(),
            settle_repair_us: Vec::new(),
            settled_fail: Vec::new(),
            settled_repair: Vec::new(),
        };
        // As the daemon does after its first write.
        bed.writer.settle()?;
        for t in 0..trials {
            let failed = t % MEMBERS;
            let rest: Vec<usize> = all.iter().copied().filter(|&m| m != failed).collect();
            for (active, lat, writes, pure, settle, settled) in [
                (
                    &rest,
                    &mut u.fail_us,
                    &mut u.writes_fail,
                    &mut u.rebalance_fail_us,
                    &mut u.settle_fail_us,
                    &mut u.settled_fail,
                ),
                (
                    &all,
                    &mut u.repair_us,
                    &mut u.writes_repair,
                    &mut u.rebalance_repair_us,
                    &mut u.settle_repair_us,
                    &mut u.settled_repair,
                ),
            ] {
                // The group's part (pure), the writer's part up to and with the flip
                // (syscalls) and the catch-up after it, timed apart.
                let t0 = Instant::now();
                bed.table.rebalance(active);
                pure.push(t0.elapsed().as_secs_f64() * 1e6);
                let desired = bed.desired(active);
                let w0 = bed.writer.writes;
                let t1 = Instant::now();
                bed.writer.apply(&[desired])?;
                lat.push(t1.elapsed().as_secs_f64() * 1e6);
                writes.push((bed.writer.writes - w0) as f64);
                let t2 = Instant::now();
                let n = bed.writer.settle()?;
                settle.push(t2.elapsed().as_secs_f64() * 1e6);
                settled.push(n as f64);
            }
        }
        Ok(u)
    })
}

// --- the section -------------------------------------------------------------------------------

pub fn run(opts: &Opts) -> anyhow::Result<Section> {
    let start = measure_start(opts);
    let idle = measure_idle(opts);
    let update = measure_update(opts);
    let mut md = String::new();
    let mut goals = Vec::new();
    let not = |e: &anyhow::Error| format!("{e:#}").replace('\n', " ");

    let _ = writeln!(md, "### Start to ready\n");
    let mut plot_groups = Vec::new();
    match &start {
        Ok(f) => {
            let _ = writeln!(
                md,
                "ipmpd with one group of {MEMBERS} members (default lab config), started {} times \
                 *cold* (after `ipmpd --cleanup`: no pins, no IPMP interface) and each time \
                 again *warm* (adopting the pinned programs, links and maps the first left). \
                 *Spawn to ready*: from spawning the process (through nsenter) to the log line \
                 `ipmpd ready in N ms`, which ipmpd prints once every program is loaded and \
                 attached, the maps written and the control socket served; each start was \
                 checked with `ipmpadm status` listing the attachments. *Own figure*: the N of \
                 that line (from `Daemon::start`, so without exec and config parsing).\n",
                f.cold_external.len()
            );
            let _ = writeln!(md, "| start | spawn to ready | own figure |\n|---|---|---|");
            for (name, e, o) in [
                ("cold", &f.cold_external, &f.cold_own),
                ("warm (adopt pins)", &f.warm_external, &f.warm_own),
            ] {
                if let (Some(e), Some(o)) = (Summary::of(e), Summary::of(o)) {
                    let _ = writeln!(md, "| {name} | {} | {} |", e.fmt(0, "ms"), o.fmt(0, "ms"));
                    plot_groups.push((
                        name.to_string(),
                        vec![
                            ("spawn to ready".to_string(), e.median),
                            ("own figure".to_string(), o.median),
                        ],
                    ));
                }
            }
            md.push('\n');
            if let Some(s) = Summary::of(&f.cold_external) {
                let met = s.median <= 300.0;
                goals.push(GoalRow {
                    goal: "ipmpd start to ready ≤ 300 ms".into(),
                    figure: format!("cold {}", s.fmt(0, "ms")),
                    met: Some(met),
                    why: if met {
                        String::new()
                    } else {
                        "see the own figure: loading and verifying the eBPF object dominates".into()
                    },
                });
            }
        }
        Err(e) => {
            let _ = writeln!(md, "**Not measured:** {}\n", not(e));
            goals.push(GoalRow::unmeasured("ipmpd start to ready ≤ 300 ms", not(e)));
        }
    }

    let _ = writeln!(md, "### Idle with four probing members\n");
    match &idle {
        Ok(i) => {
            let _ = writeln!(
                md,
                "ipmpd with {MEMBERS} members, each with a test address probing the router at \
                 FDT = 1 s, measured for {} s once every member's probes were acknowledged (and \
                 checked again at the end). RSS sampled every 0.5 s from `/proc/PID/status`; CPU \
                 time of its threads ({}) from `/proc/PID/task/*/schedstat` (nanoseconds) over {} \
                 equal intervals, and over the whole window from `/proc/PID/stat` (10 ms ticks) \
                 as a cross-check.\n",
                i.window.as_secs(),
                i.threads,
                i.cpu_pct.len()
            );
            let _ = writeln!(md, "| figure | min / median / max |\n|---|---|");
            let rss = Summary::of(&i.rss_mib);
            let cpu = Summary::of(&i.cpu_pct);
            if let Some(r) = rss {
                let _ = writeln!(
                    md,
                    "| RSS | {} (peak VmHWM {:.1} MiB) |",
                    r.fmt(1, "MiB"),
                    i.hwm_mib
                );
            }
            if let Some(c) = cpu {
                let _ = writeln!(
                    md,
                    "| CPU, % of one core | {} (whole window from ticks: {:.2} %) |",
                    c.fmt(2, "%"),
                    i.cpu_pct_ticks
                );
            }
            md.push('\n');
            if let Some(r) = rss {
                let met = r.max <= 16.0;
                goals.push(GoalRow {
                    goal: "ipmpd RSS ≤ 16 MiB at idle, 4 probing members".into(),
                    figure: r.fmt(1, "MiB"),
                    met: Some(met),
                    why: if met {
                        String::new()
                    } else {
                        format!(
                            "steady RSS after a peak of {:.1} MiB while loading and verifying \
                             the eBPF object; the allocator keeps those pages",
                            i.hwm_mib
                        )
                    },
                });
            }
            if let Some(c) = cpu {
                let met = c.median <= 1.0;
                goals.push(GoalRow {
                    goal: "ipmpd CPU ≤ 1 % of a core at idle, 4 probing members (FDT 1 s)".into(),
                    figure: c.fmt(2, "%"),
                    met: Some(met),
                    why: if met {
                        String::new()
                    } else {
                        "each member probes 7 times per FDT (in.mpathd's NUM_PROBE_FAILS + \
                         2), so ~28 probes/s with their replies, timers and state updates"
                            .into()
                    },
                });
            }
        }
        Err(e) => {
            let _ = writeln!(md, "**Not measured:** {}\n", not(e));
            goals.push(GoalRow::unmeasured(
                "ipmpd RSS ≤ 16 MiB and CPU ≤ 1 % at idle",
                not(e),
            ));
        }
    }

    let _ = writeln!(md, "### One atomic table update\n");
    match &update {
        Ok(sizes) => {
            let sizes_text = sizes
                .iter()
                .map(|u| spaced(u.buckets))
                .collect::<Vec<_>>()
                .join(" and ");
            let _ = writeln!(
                md,
                "The daemon's own code on real (unpinned) maps in a private namespace, with tables \
                 of {sizes_text} buckets over {MEMBERS} members: the group's \
                 `BucketTable::rebalance` for a member failing or coming back, then \
                 `MapWriter::apply` with the group's whole desired state — the changed buckets \
                 of the inactive half in one `BPF_MAP_UPDATE_BATCH`, one `GroupInfo` \
                 replacement that flips `active_half` (the moment readers switch), the member's \
                 active flag and the address bindings (the writer looks each of those entries up \
                 before writing it) — and then, as the daemon does once the change is \
                 announced, `MapWriter::settle`, which writes the same buckets into the half \
                 just left (one more batch). Timed in-process around each call, {} failures and \
                 {} repairs per size (the failing member rotates).\n",
                sizes.first().map_or(0, |u| u.fail_us.len()),
                sizes.first().map_or(0, |u| u.repair_us.len())
            );
            let _ = writeln!(
                md,
                "| buckets | change | `BucketTable::rebalance` (pure) | `MapWriter::apply` (the update) | its map writes | `MapWriter::settle` (after) | buckets it wrote |\n|---|---|---|---|---|---|---|"
            );
            for u in sizes {
                for (name, pure, lat, w, settle, settled) in [
                    (
                        "member fails",
                        &u.rebalance_fail_us,
                        &u.fail_us,
                        &u.writes_fail,
                        &u.settle_fail_us,
                        &u.settled_fail,
                    ),
                    (
                        "member repaired",
                        &u.rebalance_repair_us,
                        &u.repair_us,
                        &u.writes_repair,
                        &u.settle_repair_us,
                        &u.settled_repair,
                    ),
                ] {
                    if let (Some(p), Some(l), Some(w), Some(s), Some(sw)) = (
                        Summary::of(pure),
                        Summary::of(lat),
                        Summary::of(w),
                        Summary::of(settle),
                        Summary::of(settled),
                    ) {
                        let _ = writeln!(
                            md,
                            "| {} | {name} | {} | {} | {} | {} | {} |",
                            spaced(u.buckets),
                            p.fmt(1, "µs"),
                            l.fmt(1, "µs"),
                            w.fmt(0, ""),
                            s.fmt(1, "µs"),
                            sw.fmt(0, "")
                        );
                    }
                }
            }
            let _ = writeln!(
                md,
                "\nBefore its flip the writer writes every bucket that differs from what the \
                 inactive half holds. Caught up after each change, that half holds the table \
                 before the change, so a failure writes the failed member's buckets (1/{MEMBERS} of \
                 the table here) and a repair the same buckets back; the catch-up writes them \
                 once more, off the failover's path. Without it the inactive half would hold the \
                 table of two changes earlier, when here another member had failed: a failure \
                 would write about twice the failed member's share before its flip (and a \
                 repair nothing). The two map writes beyond the buckets are the member's flag \
                 and the `GroupInfo` flip; the address bindings change when the cast member \
                 fails."
            );
            md.push('\n');
            let largest = sizes.iter().max_by_key(|u| u.buckets);
            match largest.and_then(|u| {
                Some((
                    u,
                    Summary::of(&u.fail_us)?,
                    Summary::of(&u.writes_fail)?,
                    Summary::of(&u.rebalance_fail_us)?,
                    Summary::of(&u.settle_fail_us)?,
                ))
            }) {
                Some((u, l, w, p, s)) => {
                    let met = l.median / 1000.0 <= FLIP_GOAL_MS;
                    goals.push(GoalRow {
                        goal: flip_goal(u.buckets),
                        figure: format!(
                            "median {:.2} ms ({}): `MapWriter::apply` for a member failure of \
                             {MEMBERS}: {:.0} map writes, the changed buckets in one batch, \
                             the `GroupInfo` flip, the member's flag, the address bindings; \
                             not included: the pure rebalance before it (median {:.2} ms) and \
                             the catch-up of the other half after it (median {:.2} ms)",
                            l.median / 1000.0,
                            l.fmt(0, "µs"),
                            w.median,
                            p.median / 1000.0,
                            s.median / 1000.0
                        ),
                        met: Some(met),
                        why: if met {
                            String::new()
                        } else {
                            "the kernel writes a batch element by element (two copies from user \
                             memory and an array update each, ~0.2 µs here)"
                                .into()
                        },
                    });
                }
                None => goals.push(GoalRow::unmeasured(
                    flip_goal(ipmp_common::MAX_BUCKETS),
                    "no failure measured",
                )),
            }
        }
        Err(e) => {
            let _ = writeln!(md, "**Not measured:** {}\n", not(e));
            goals.push(GoalRow::unmeasured(
                flip_goal(ipmp_common::MAX_BUCKETS),
                not(e),
            ));
        }
    }
    let mut plots = Vec::new();
    if !plot_groups.is_empty() {
        let _ = writeln!(md, "![start to ready](control-start.svg)\n");
        plots.push(Plot {
            file: "control-start.svg".into(),
            svg: svg::bars("ipmpd start to ready (median)", "ms", &plot_groups),
        });
    }
    if start.is_err() && idle.is_err() && update.is_err() {
        bail!(
            "nothing measured: {}",
            start.err().map(|e| not(&e)).unwrap_or_default()
        );
    }
    Ok(Section {
        title: "6. Control plane".into(),
        body_md: md,
        plots,
        goals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_parses() {
        let log =
            "2026-01-01T00:00:00Z  INFO ipmpd::daemon: ipmpd ready in 87 ms groups=1 socket=/x\n";
        assert_eq!(ready_ms(log), Some(87.0));
        assert_eq!(ready_ms("starting\n"), None);
    }

    #[test]
    fn attachment_check_reads_ip_json() {
        let clean = r#"[{"ifindex":1,"ifname":"lo"},{"ifindex":2,"ifname":"m0"}]"#;
        assert!(nothing_attached(clean));
        let xdp = r#"[{"ifname":"m0","xdp":{"mode":2,"prog":{"id":8570}}}]"#;
        assert!(!nothing_attached(xdp));
        assert!(!nothing_attached(r#"[{"ifname":"ipmp0"}]"#));
        assert!(!nothing_attached("not json"));
    }

    #[test]
    fn counts_are_spaced_in_threes() {
        assert_eq!(spaced(7), "7");
        assert_eq!(spaced(1024), "1 024");
        assert_eq!(spaced(65_536), "65 536");
        assert_eq!(spaced(1_000_000), "1 000 000");
    }

    #[test]
    fn schedstat_parses() {
        assert_eq!(schedstat_ns("1041945 82999 2\n"), Some(1_041_945));
        assert_eq!(schedstat_ns(""), None);
    }

    #[test]
    fn proc_stat_and_status_parse() {
        // A command name with spaces and a parenthesis must not shift the fields.
        let stat =
            "1234 (ip md) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 17 4 0 0 20 0 3 0 100 1000 200";
        assert_eq!(cpu_ticks(stat), Some(21));
        let status = "Name:\tipmpd\nVmHWM:\t    9000 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(8192));
        assert_eq!(status_kib(status, "VmHWM"), Some(9000));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }
}
