//! Throughput over the netns lab — a plain veth path, ipmp over 2 and 4 members, and a kernel
//! resilient nexthop group over the same members — in both directions.
//!
//! Every setup is its own lab of the same shape (4 members, one peer on the shared L2, no
//! router). Outbound, the host sends from 198.51.100.10 to the peer with iperf3, so only the
//! host's egress path differs; inbound (`iperf3 -R`), the peer sends to 198.51.100.10, so
//! only the receive path does — for ipmp, the member's TC ingress program handing the frames
//! to the IPMP interface, and, as the alternative measured beside it, the same with the
//! member program in front as generic XDP (what `xdp_mode = "auto"` picked on veth before):
//! - plain: the address on m0, the connected route through m0, no ipmpd — the ceiling;
//! - ipmp N: ipmpd over m0..m(N-1), the address on the IPMP interface (inbound also with
//!   `xdp_mode = "generic"`);
//! - nexthop N: the address on lo, `198.51.100.0/24 nhid` a resilient group of device
//!   nexthops m0..m(N-1), `fib_multipath_hash_policy = 1` (L4) in the lab's host namespace.
//!
//! The destination is a peer on the link rather than the far host behind the router: every
//! setup expresses it natively, and no router namespace takes CPU from the two cores and
//! hides the egress path's own cost. Trials of all setups are interleaved so that background
//! load hits them alike.

use std::{
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use super::{GoalRow, Opts, Plot, Section, Summary, svg};
use crate::lab::{self, DATA_V4, Daemon, Lab, LabSpec};

/// Same shape for every setup: unused members stay up and idle.
const SPEC: LabSpec = LabSpec {
    members: 4,
    peers: 1,
    router: false,
};
const PORT: &str = "5201";
/// UDP payload: the largest that fits a 1500-byte MTU without fragments, in round numbers.
const UDP_LEN: &str = "1400";
/// Resilient nexthop group size, the same as ipmp's default bucket count.
const NH_BUCKETS: u32 = 1024;
const NH_GROUP_ID: u32 = 100;

/// What carries the host's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Plain,
    Ipmp(usize),
    /// ipmp with the member program attached as generic XDP as well (`xdp_mode = "generic"`).
    IpmpXdp(usize),
    Nexthop(usize),
}

impl Path {
    pub(crate) fn label(self) -> String {
        match self {
            Path::Plain => "plain veth".to_owned(),
            Path::Ipmp(n) => format!("ipmp {n} members"),
            Path::IpmpXdp(n) => format!("ipmp {n} members, generic XDP"),
            Path::Nexthop(n) => format!("nexthop group {n}"),
        }
    }

    pub(crate) fn members(self) -> usize {
        match self {
            Path::Plain => 1,
            Path::Ipmp(n) | Path::IpmpXdp(n) | Path::Nexthop(n) => n,
        }
    }
}

const PATHS: [Path; 6] = [
    Path::Plain,
    Path::Ipmp(2),
    Path::IpmpXdp(2),
    Path::Nexthop(2),
    Path::Ipmp(4),
    Path::Nexthop(4),
];

/// The setups a workload runs on: inbound, one data address arrives on one member whatever
/// the group's size, so two members suffice, and the generic-XDP variant is measured there.
fn runs_on(w: Workload, p: Path) -> bool {
    match p {
        Path::IpmpXdp(_) => w.inbound,
        Path::Ipmp(n) | Path::Nexthop(n) => !w.inbound || n == 2,
        Path::Plain => true,
    }
}

/// One iperf3 run's traffic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Workload {
    pub(crate) udp: bool,
    pub(crate) flows: u16,
    /// From the peer to the host's data address (`iperf3 -R`).
    pub(crate) inbound: bool,
}

impl Workload {
    pub(crate) const fn new(udp: bool, flows: u16, inbound: bool) -> Workload {
        Workload {
            udp,
            flows,
            inbound,
        }
    }

    pub(crate) fn label(self) -> String {
        let proto = if self.udp { "UDP" } else { "TCP" };
        let s = if self.flows == 1 { "" } else { "s" };
        let dir = if self.inbound { "inbound " } else { "" };
        format!("{dir}{proto} {} flow{s}", self.flows)
    }
}

const WORKLOADS: [Workload; 8] = [
    Workload::new(false, 1, false),
    Workload::new(false, 64, false),
    Workload::new(true, 1, false),
    Workload::new(true, 64, false),
    Workload::new(false, 1, true),
    Workload::new(false, 8, true),
    Workload::new(false, 64, true),
    Workload::new(true, 64, true),
];

/// Aggregate CPU times from the `cpu ` line of /proc/stat (USER_HZ ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
    /// `cpuN` lines: logical CPUs.
    pub cpus: usize,
}

/// Parses /proc/stat's aggregate line and counts the per-CPU lines.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some(CpuTimes {
        busy,
        total: busy + at(3) + at(4),
        cpus,
    })
}

impl CpuTimes {
    /// Cores kept busy on average between `self` and `later` (0..=cpus).
    pub fn busy_cores(&self, later: &CpuTimes) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        later.busy.saturating_sub(self.busy) as f64 / total as f64 * later.cpus.max(1) as f64
    }
}

/// The machine's CPU times now.
pub(crate) fn read_cpu() -> anyhow::Result<CpuTimes> {
    let text = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    parse_proc_stat(&text).ok_or_else(|| anyhow!("/proc/stat has no aggregate cpu line"))
}

/// What the receiver got, from iperf3's `-J` report (`end.sum_received`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Received {
    pub bytes: u64,
    pub seconds: f64,
}

/// Reads `end.sum_received` of an iperf3 3.x client JSON report; its `error` when it has one.
pub fn parse_iperf(json: &serde_json::Value) -> anyhow::Result<Received> {
    if let Some(e) = json["error"].as_str() {
        bail!("iperf3: {e}");
    }
    let s = &json["end"]["sum_received"];
    let bytes = s["bytes"]
        .as_u64()
        .ok_or_else(|| anyhow!("iperf3 report has no end.sum_received.bytes"))?;
    let seconds = s["seconds"]
        .as_f64()
        .filter(|s| *s > 0.0)
        .ok_or_else(|| anyhow!("iperf3 report has no end.sum_received.seconds"))?;
    Ok(Received { bytes, seconds })
}

/// CPU the iperf3 client and server processes used (`end.cpu_utilization_percent`, user and
/// system time over the run, each in percent of one core), summed, in cores. Unlike /proc/stat,
/// it leaves out what else runs on the machine.
pub fn parse_iperf_cpu(json: &serde_json::Value) -> Option<f64> {
    let c = &json["end"]["cpu_utilization_percent"];
    Some((c["host_total"].as_f64()? + c["remote_total"].as_f64()?) / 100.0)
}

/// One trial's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trial {
    gbps: f64,
    /// Frames the peer's eth0 took in (outbound) or sent (inbound) per second (TCP: GSO
    /// aggregates count once).
    pps: f64,
    /// Busy CPU time of the whole machine per gigabit received, in milliseconds.
    cpu_ms_per_gbit: f64,
    /// Members that sent (outbound) or received (inbound) at least a tenth of their fair
    /// share of the host's bytes.
    members_used: usize,
}

/// Members that carried at least a tenth of an equal share of `tx_bytes`.
pub fn members_used(tx_bytes: &[u64]) -> usize {
    let total: u64 = tx_bytes.iter().sum();
    if total == 0 || tx_bytes.is_empty() {
        return 0;
    }
    let fair = total as f64 / tx_bytes.len() as f64;
    tx_bytes
        .iter()
        .filter(|b| **b as f64 >= fair / 10.0)
        .count()
}

/// One lab set up for one [`Path`], with an iperf3 server on its peer.
pub(crate) struct Bed {
    path: Path,
    server: Child,
    daemon: Option<Daemon>,
    lab: Lab,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // The daemon goes before the lab (field order does the rest).
        self.daemon.take();
    }
}

fn host_setup(lab: &Lab, path: Path) -> anyhow::Result<Option<Daemon>> {
    let host = lab.host();
    match path {
        Path::Plain => {
            host.ip(&format!("addr add {DATA_V4}/{} dev m0", lab::LAN_PREFIX_V4))?;
            Ok(None)
        }
        Path::Nexthop(n) => {
            host.sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;
            host.ip(&format!("addr add {DATA_V4}/32 dev lo"))?;
            for i in 0..n {
                host.ip(&format!("nexthop add id {} dev m{i}", i + 1))?;
            }
            let ids: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
            host.ip(&format!(
                "nexthop add id {NH_GROUP_ID} group {} type resilient buckets {NH_BUCKETS}",
                ids.join("/")
            ))?;
            host.ip(&format!(
                "route add 198.51.100.0/{} nhid {NH_GROUP_ID} src {DATA_V4}",
                lab::LAN_PREFIX_V4
            ))?;
            Ok(None)
        }
        Path::Ipmp(n) | Path::IpmpXdp(n) => {
            let mut cfg = lab.config();
            cfg.group_mut().member.truncate(n);
            if matches!(path, Path::IpmpXdp(_)) {
                cfg.group_mut().xdp_mode = Some("generic".to_owned());
            }
            let daemon = lab.start_ipmpd(&cfg.to_toml())?;
            wait_active(&daemon, n, Duration::from_secs(10))?;
            Ok(Some(daemon))
        }
    }
}

/// Waits until members m0..m(n-1) are active in `ipmpstat -i`.
pub(crate) fn wait_active(daemon: &Daemon, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let mut last = String::new();
    let ok = lab::wait_until(timeout, Duration::from_millis(20), || {
        last = daemon
            .ipmpstat(&["-iP", "-o", "interface,active"])
            .unwrap_or_default();
        (0..n).all(|i| last.lines().any(|l| l == format!("m{i}:yes")))
    });
    if !ok {
        bail!(
            "members m0..m{} not all active within {timeout:?}: {last}\nipmpd log:\n{}",
            n.saturating_sub(1),
            daemon.log()
        );
    }
    Ok(())
}

impl Bed {
    pub(crate) fn new(path: Path) -> anyhow::Result<Bed> {
        let lab = Lab::new(SPEC)?;
        let daemon = host_setup(&lab, path).with_context(|| format!("set up {}", path.label()))?;
        let peer = lab.peer(0);
        let server = peer
            .command(&["iperf3", "-s", "-p", PORT])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start iperf3 -s in the peer (is iperf3 installed? cargo xtask setup)")?;
        let bed = Bed {
            path,
            server,
            daemon,
            lab,
        };
        let peer = bed.lab.peer(0);
        let listening = lab::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            peer.run(&["ss", "-Hltn", &format!("sport = :{PORT}")])
                .is_ok_and(|s| !s.trim().is_empty())
        });
        if !listening {
            bail!("iperf3 -s did not listen on port {PORT} within 5 s");
        }
        let target = lab::peer_v4(0);
        let reachable = lab::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            bed.lab.host().reachable(&target)
        });
        if !reachable {
            bail!("{}: the host does not reach {target}", path.label());
        }
        Ok(bed)
    }

    pub(crate) fn lab(&self) -> &Lab {
        &self.lab
    }

    /// Bytes each member sent (`inbound`: received).
    fn member_bytes(&self, inbound: bool) -> anyhow::Result<Vec<u64>> {
        (0..self.path.members())
            .map(|i| {
                let s = self.lab.host().link_stats(&format!("m{i}"))?;
                Ok(if inbound { s.rx_bytes } else { s.tx_bytes })
            })
            .collect()
    }

    /// Frames of the measured direction on the peer's eth0.
    fn peer_packets(&self, inbound: bool) -> anyhow::Result<u64> {
        let s = self.lab.peer(0).link_stats("eth0")?;
        Ok(if inbound { s.tx_packets } else { s.rx_packets })
    }

    /// One iperf3 run of `w` for `secs` seconds, with the counters around it; retried when
    /// iperf3 reports no result.
    pub(crate) fn measure(&self, w: Workload, secs: u32) -> anyhow::Result<Measured> {
        let host = self.lab.host();
        let (target, secs_s, flows) = (lab::peer_v4(0), secs.to_string(), w.flows.to_string());
        let limit = (secs + 20).to_string();
        let mut argv = vec![
            "timeout",
            limit.as_str(),
            "iperf3",
            "-c",
            &target,
            "-p",
            PORT,
            "-B",
            DATA_V4,
            "-t",
            &secs_s,
            "-P",
            &flows,
            "-J",
            "--connect-timeout",
            "3000",
        ];
        // Client (the host) on CPU 0, server (the peer) on CPU 1 in every trial, so the sender
        // is on CPU 0 outbound and on CPU 1 inbound (`-R`): left to the scheduler, the two
        // share a core in some trials and not in others, and the spread of a cell grows to 3×.
        if thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
            argv.extend(["-A", "0,1"]);
        }
        if w.udp {
            argv.extend(["-u", "-b", "0", "-l", UDP_LEN]);
        }
        if w.inbound {
            argv.push("-R");
        }
        let mut last_err = None;
        // The server answers one test at a time; a just-finished one can still hold it.
        for _ in 0..3 {
            let rx0 = self.peer_packets(w.inbound)?;
            let tx0 = self.member_bytes(w.inbound)?;
            let cpu0 = read_cpu()?;
            let out = host.run_status(&argv)?;
            let cpu1 = read_cpu()?;
            let rx1 = self.peer_packets(w.inbound)?;
            let tx1 = self.member_bytes(w.inbound)?;
            let text = String::from_utf8_lossy(&out.stdout);
            let got = serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| anyhow!("iperf3 printed no JSON ({e}): {}", text.trim()))
                .and_then(|j| Ok((parse_iperf(&j)?, parse_iperf_cpu(&j))));
            match got {
                Ok((received, iperf_cores)) => {
                    return Ok(Measured {
                        received,
                        iperf_cores,
                        busy_cores: cpu0.busy_cores(&cpu1),
                        member_bytes: tx1
                            .iter()
                            .zip(&tx0)
                            .map(|(a, b)| a.saturating_sub(*b))
                            .collect(),
                        peer_packets: rx1.saturating_sub(rx0),
                    });
                }
                Err(e) => {
                    last_err = Some(e);
                    thread::sleep(Duration::from_millis(500));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("iperf3 never ran")))
    }

    fn trial(&self, w: Workload, secs: u32) -> anyhow::Result<Trial> {
        let m = self.measure(w, secs)?;
        let got = m.received;
        let gbit = got.bytes as f64 * 8.0 / 1e9;
        let busy_core_s = m.busy_cores * got.seconds;
        Ok(Trial {
            gbps: gbit / got.seconds,
            pps: m.peer_packets as f64 / got.seconds,
            cpu_ms_per_gbit: if gbit > 0.0 {
                busy_core_s * 1000.0 / gbit
            } else {
                f64::NAN
            },
            members_used: members_used(&m.member_bytes),
        })
    }
}

/// One iperf3 run and the counters read around it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured {
    pub(crate) received: Received,
    /// CPU of the iperf3 sender plus receiver processes, in cores (when iperf3 reports it).
    pub(crate) iperf_cores: Option<f64>,
    /// Cores of the whole machine kept busy on average during the run.
    pub(crate) busy_cores: f64,
    /// Bytes each member sent (inbound: received) during the run, m0 first.
    pub(crate) member_bytes: Vec<u64>,
    /// Frames of the measured direction on the peer's eth0 during the run.
    pub(crate) peer_packets: u64,
}

/// All trials of one (workload, setup) cell: `T` is a trial's figures.
#[derive(Debug, Clone)]
pub(crate) struct Cell<T> {
    pub(crate) trials: Vec<T>,
    pub(crate) errors: Vec<String>,
}

impl<T> Default for Cell<T> {
    fn default() -> Self {
        Cell {
            trials: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl<T> Cell<T> {
    /// Keeps a trial, or its error.
    pub(crate) fn record(&mut self, r: anyhow::Result<T>) {
        match r {
            Ok(t) => self.trials.push(t),
            Err(e) => self.errors.push(format!("{e:#}")),
        }
    }

    pub(crate) fn summary(&self, f: impl Fn(&T) -> f64) -> Option<Summary> {
        Summary::of(&self.trials.iter().map(f).collect::<Vec<_>>())
    }
}

/// Sets up a [`Bed`] per path (then `prepare`s it) and runs `trials` rounds of every workload
/// on every bed, interleaved so that background load hits all setups alike; `trial` returns
/// `None` for a pair that does not run. Returns cells[workload][path] and the setup time (s).
pub(crate) fn interleaved<T>(
    paths: &[Path],
    prepare: impl Fn(&Bed) -> anyhow::Result<()>,
    workloads: &[Workload],
    trials: usize,
    trial: impl Fn(&Bed, Workload) -> Option<anyhow::Result<T>>,
) -> anyhow::Result<(Vec<Vec<Cell<T>>>, f64)> {
    let started = Instant::now();
    let beds = paths
        .iter()
        .map(|p| {
            let bed = Bed::new(*p)?;
            prepare(&bed)?;
            Ok(bed)
        })
        .collect::<anyhow::Result<Vec<Bed>>>()?;
    let setup_s = started.elapsed().as_secs_f64();
    let mut cells: Vec<Vec<Cell<T>>> = workloads
        .iter()
        .map(|_| paths.iter().map(|_| Cell::default()).collect())
        .collect();
    for _ in 0..trials {
        for (wi, w) in workloads.iter().enumerate() {
            for (pi, bed) in beds.iter().enumerate() {
                if let Some(r) = trial(bed, *w) {
                    cells[wi][pi].record(r);
                }
            }
        }
    }
    drop(beds);
    ensure_some_trial(&cells)?;
    Ok((cells, setup_s))
}

/// "N trial(s) failed; the first: …" for a row of cells with errors.
pub(crate) fn failures_note<T>(row: &[Cell<T>]) -> Option<String> {
    let errors: Vec<&String> = row.iter().flat_map(|c| &c.errors).collect();
    let e = errors.first()?;
    Some(format!(
        "{} trial(s) failed; the first: `{}`",
        errors.len(),
        e.replace('`', "'")
    ))
}

/// Fails with the first error when no trial of any cell succeeded.
fn ensure_some_trial<T>(cells: &[Vec<Cell<T>>]) -> anyhow::Result<()> {
    if cells.iter().flatten().all(|c| c.trials.is_empty()) {
        let first = cells
            .iter()
            .flatten()
            .flat_map(|c| c.errors.first())
            .next()
            .cloned()
            .unwrap_or_default();
        bail!("no iperf3 trial succeeded: {first}");
    }
    Ok(())
}

impl Cell<Trial> {
    fn median_gbps(&self) -> Option<f64> {
        self.summary(|t| t.gbps).map(|s| s.median)
    }
}

/// Measures throughput and returns the report section.
pub fn run(opts: &Opts) -> anyhow::Result<Section> {
    // Full: 36 cells × 5 × (2 s + start-up) ≈ 7 min. Five rounds, not three: inbound UDP's
    // per-round ratio spreads over 0.80–1.01×, and a median of three lands anywhere in it.
    let trials = opts.pick(5, 1);
    let secs: u32 = opts.pick(2, 1);
    let started = Instant::now();
    let (cells, setup_s) = interleaved(
        &PATHS,
        |_| Ok(()),
        &WORKLOADS,
        trials,
        |bed, w| runs_on(w, bed.path).then(|| bed.trial(w, secs)),
    )?;
    Ok(section(&cells, trials, secs, setup_s, started.elapsed()))
}

/// The lowest nexthop / plain ratio of a workload's row when every nexthop group beats the
/// plain path by more than 10 % (several veth pairs outrun one), else `None`.
fn plain_not_ceiling(row: &[Cell<Trial>]) -> Option<f64> {
    let plain = &row[path_index(Path::Plain)];
    let ratios: Vec<f64> = [2, 4]
        .iter()
        .map(|n| ratio(&row[path_index(Path::Nexthop(*n))], plain))
        .collect::<Option<_>>()?;
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    (low > 1.1).then_some(low)
}

/// Median ratio `a / b` of two cells, if both were measured.
fn ratio(a: &Cell<Trial>, b: &Cell<Trial>) -> Option<f64> {
    match (a.median_gbps(), b.median_gbps()) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn path_index(p: Path) -> usize {
    PATHS.iter().position(|q| *q == p).unwrap_or(0)
}

/// The lowest of the ratios ipmp N / `base(N)` over every workload and N: (ratio, workload
/// index, N).
fn worst_ratio(
    cells: &[Vec<Cell<Trial>>],
    inbound: bool,
    base: impl Fn(usize) -> Path,
) -> Option<(f64, usize, usize)> {
    let mut worst: Option<(f64, usize, usize)> = None;
    for (wi, row) in cells.iter().enumerate() {
        if WORKLOADS[wi].inbound != inbound {
            continue;
        }
        for n in [2, 4] {
            let r = ratio(&row[path_index(Path::Ipmp(n))], &row[path_index(base(n))]);
            if let Some(r) = r
                && worst.is_none_or(|(v, ..)| r < v)
            {
                worst = Some((r, wi, n));
            }
        }
    }
    worst
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
}

fn section(
    cells: &[Vec<Cell<Trial>>],
    trials: usize,
    secs: u32,
    setup_s: f64,
    took: Duration,
) -> Section {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "iperf3 from the host (198.51.100.10) to a peer on the shared L2 (outbound) and, with \
         `-R`, from the peer to 198.51.100.10 (inbound), {trials} trial(s) of \
         {secs} s per cell, trials of all setups interleaved; TCP uses iperf3's default \
         buffer, UDP sends {UDP_LEN}-byte datagrams as fast as it can (`-b 0`) and counts what \
         arrived; iperf3's client (the host) is pinned to CPU 0 and its server (the peer) to CPU 1 \
         (`-A 0,1`: the sender runs on CPU 0 outbound and on CPU 1 inbound), so that every \
         trial shares the two cores the same way. Each setup is its own lab of the same shape (4 members, 1 peer, no router):\n\n\
         - **plain veth**: the address on m0 and its connected route, no ipmpd — the ceiling;\n\
         - **ipmp N members**: ipmpd over m0..m(N-1), the address on the IPMP interface; \
         inbound frames enter through the members' TC ingress program, which hands them to the \
         IPMP interface (`xdp_mode = \"auto\"`, which attaches no XDP on veth);\n\
         - **ipmp N members, generic XDP** (inbound only): the same with `xdp_mode = \
         \"generic\"`, the member program in front of the stack as generic XDP too — the \
         alternative the inbound path was chosen against;\n\
         - **nexthop group N**: the address on lo and `198.51.100.0/24 nhid` a resilient \
         group ({NH_BUCKETS} buckets) of device nexthops m0..m(N-1), \
         `net.ipv4.fib_multipath_hash_policy = 1` (L4 hash) in the lab's host namespace.\n\n\
         A peer on the link (not the far host) is the destination because every setup expresses \
         it natively and no router namespace shares the two cores. veth has no line rate: every \
         path here is CPU-bound, so these figures compare the per-packet cost of the paths. \
         Gbit/s is what the receiver got; packets/s counts frames into (outbound) or out of \
         (inbound) the peer's eth0 (for TCP a GSO aggregate counts once); inbound, one data \
         address arrives on one member whatever the group's size, so it runs with 2 members; CPU per Gbit is the whole machine's busy time from \
         /proc/stat over the run (all namespaces share the cores) per gigabit received. \
         Figures are min / median / max. Setup took {setup_s:.1} s, the section {:.0} s.\n",
        took.as_secs_f64()
    );
    for (wi, w) in WORKLOADS.iter().enumerate() {
        let _ = writeln!(md, "\n#### {}\n", w.label());
        let _ = writeln!(
            md,
            "| setup | Gbit/s | packets/s (median) | CPU ms per Gbit (median) | members used | ipmp / plain | ipmp / nexthop |\n|---|---|---|---|---|---|---|"
        );
        for (pi, p) in PATHS.iter().enumerate() {
            if !runs_on(*w, *p) {
                continue;
            }
            let c = &cells[wi][pi];
            let gbps = c.summary(|t| t.gbps).map_or_else(
                || "not measured".to_owned(),
                |s| s.fmt(2, "").trim_end().to_owned(),
            );
            let pps = c
                .summary(|t| t.pps)
                .map_or_else(|| "–".to_owned(), |s| format!("{:.0} k", s.median / 1e3));
            let cpu = c
                .summary(|t| t.cpu_ms_per_gbit)
                .map_or_else(|| "–".to_owned(), |s| format!("{:.1}", s.median));
            let used = c.summary(|t| t.members_used as f64).map_or_else(
                || "–".to_owned(),
                |s| format!("{:.0}/{}", s.min, p.members()),
            );
            let (vs_plain, vs_nh) = match p {
                Path::Ipmp(n) | Path::IpmpXdp(n) => (
                    fmt_ratio(ratio(c, &cells[wi][path_index(Path::Plain)])),
                    fmt_ratio(ratio(c, &cells[wi][path_index(Path::Nexthop(*n))])),
                ),
                _ => (String::new(), String::new()),
            };
            let _ = writeln!(
                md,
                "| {} | {gbps} | {pps} | {cpu} | {used} | {vs_plain} | {vs_nh} |",
                p.label()
            );
        }
        if let Some(r) = plain_not_ceiling(&cells[wi]).filter(|_| !w.inbound) {
            let _ = writeln!(
                md,
                "\nWith this workload the nexthop group, too, beats the plain path (by {r:.2}× \
                 or more): spreading over several veth pairs is itself faster on this machine, \
                 so the plain path is no ceiling here and ipmp / nexthop is the comparison \
                 that counts."
            );
        }
        if let Some(note) = failures_note(&cells[wi]) {
            let _ = writeln!(md, "\n{note}");
        }
    }
    let _ = writeln!(
        md,
        "\n\"members used\" is the fewest members that carried at least a tenth of a fair share \
         in any trial (iperf3 picks new source ports each trial, so one flow lands on one \
         member and 64 flows should use all).\n\n\
         ![throughput](throughput.svg)\n\n![CPU per Gbit](throughput-cpu.svg)"
    );

    let groups = |f: &dyn Fn(&Cell<Trial>) -> Option<f64>| -> Vec<(String, Vec<(String, f64)>)> {
        WORKLOADS
            .iter()
            .enumerate()
            .map(|(wi, w)| {
                let bars = PATHS
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| runs_on(*w, **p))
                    .map(|(pi, p)| (p.label(), f(&cells[wi][pi]).unwrap_or(f64::NAN)))
                    .collect();
                (w.label(), bars)
            })
            .collect()
    };
    let plots = vec![
        Plot {
            file: "throughput.svg".to_owned(),
            svg: svg::bars(
                "Throughput between the host and a peer on the link (median)",
                "Gbit/s",
                &groups(&|c| c.median_gbps()),
            ),
        },
        Plot {
            file: "throughput-cpu.svg".to_owned(),
            svg: svg::bars(
                "CPU time per gigabit (median, whole machine)",
                "ms CPU per Gbit",
                &groups(&|c| c.summary(|t| t.cpu_ms_per_gbit).map(|s| s.median)),
            ),
        },
    ];
    Section {
        title: "2. Throughput".to_owned(),
        body_md: md,
        plots,
        goals: goals(cells),
    }
}

fn goals(cells: &[Vec<Cell<Trial>>]) -> Vec<GoalRow> {
    // Why a ratio is low, from the cell where it is lowest.
    let cpu_note = |wi: usize, n: usize, base: Path, inbound: bool| {
        let med = |p: Path| {
            cells[wi][path_index(p)]
                .summary(|t| t.cpu_ms_per_gbit)
                .map_or(f64::NAN, |s| s.median)
        };
        let why = if inbound {
            "an inbound ipmp frame is received twice (on the member, where the TC ingress \
             program looks it up and redirects it, then on the IPMP interface after crossing \
             its veth pair): one more backlog pass per frame, which any hand-over to another \
             device in the same namespace pays (docs/architecture.md, \"The inbound floor\")"
        } else {
            "an ipmp packet passes two egress paths (the IPMP interface's, where the TC \
             program hashes it and addresses it to its remembered next hop, then the \
             member's after bpf_redirect)"
        };
        format!(
            "veth has no line rate, so every path here is CPU-bound and per-packet cost \
             becomes throughput: {why}; CPU per Gbit in that cell {:.1} ms (ipmp {n}) vs \
             {:.1} ms ({})",
            med(Path::Ipmp(n)),
            med(base),
            base.label()
        )
    };
    let row = |goal: &str, inbound: bool, base: &dyn Fn(usize) -> Path, want: f64, what: &str| {
        let worst = worst_ratio(cells, inbound, base);
        let sizes: &[usize] = if inbound { &[2] } else { &[2, 4] };
        let all: Vec<String> = WORKLOADS
            .iter()
            .enumerate()
            .filter(|(_, w)| w.inbound == inbound)
            .flat_map(|(wi, w)| {
                sizes.iter().map(move |n| {
                    let mut r = format!(
                        "{} ×{n}: {}",
                        w.label(),
                        fmt_ratio(ratio(
                            &cells[wi][path_index(Path::Ipmp(*n))],
                            &cells[wi][path_index(base(*n))]
                        ))
                    );
                    if inbound {
                        r.push_str(&format!(
                            " (generic XDP {})",
                            fmt_ratio(ratio(
                                &cells[wi][path_index(Path::IpmpXdp(*n))],
                                &cells[wi][path_index(base(*n))]
                            ))
                        ));
                    }
                    r
                })
            })
            .collect();
        match worst {
            None => GoalRow {
                goal: goal.to_owned(),
                figure: "not measured".to_owned(),
                met: None,
                why: "no trial of one side succeeded".to_owned(),
            },
            Some((r, wi, n)) => GoalRow {
                goal: goal.to_owned(),
                figure: format!(
                    "lowest {r:.2}× ({}, {n} members); {}",
                    WORKLOADS[wi].label(),
                    all.join(", ")
                ),
                met: Some(r >= want),
                why: if r >= want {
                    String::new()
                } else {
                    format!("{what}; {}", cpu_note(wi, n, base(n), inbound))
                },
            },
        }
    };
    vec![
        row(
            "Throughput: ipmp ≥ 0.95× the plain veth path",
            false,
            &|_| Path::Plain,
            0.95,
            "below the plain path",
        ),
        row(
            "Throughput: ipmp ≥ 1.0× the kernel nexthop group",
            false,
            &Path::Nexthop,
            1.0,
            "below the nexthop group",
        ),
        row(
            "Inbound throughput: ipmp ≥ 0.95× the plain member",
            true,
            &|_| Path::Plain,
            0.95,
            "below the plain member",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 1000 10 3 7 2 0 0\n\
                        cpu0 50 2 25 500 5 1 3 1 0 0\n\
                        cpu1 50 3 25 500 5 2 4 1 0 0\n\
                        intr 12345\nctxt 99\n";

    #[test]
    fn proc_stat_busy_and_total() {
        let t = parse_proc_stat(STAT).expect("cpu line");
        assert_eq!(
            t,
            CpuTimes {
                busy: 100 + 5 + 50 + 3 + 7 + 2,
                total: 167 + 1000 + 10,
                cpus: 2
            }
        );
        let later = CpuTimes {
            busy: t.busy + 150,
            total: t.total + 200,
            cpus: 2,
        };
        assert!((t.busy_cores(&later) - 1.5).abs() < 1e-9);
        assert_eq!(t.busy_cores(&t), 0.0);
        assert_eq!(parse_proc_stat("intr 1\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2\n"), None);
    }

    #[test]
    fn iperf_report_received_and_error() {
        let ok: serde_json::Value = serde_json::from_str(
            r#"{"end":{"sum_sent":{"bytes":10},"sum_received":{"bytes":2500000000,"seconds":2.0}}}"#,
        )
        .unwrap();
        assert_eq!(
            parse_iperf(&ok).unwrap(),
            Received {
                bytes: 2_500_000_000,
                seconds: 2.0
            }
        );
        let err: serde_json::Value =
            serde_json::from_str(r#"{"start":{},"error":"the server is busy"}"#).unwrap();
        assert!(parse_iperf(&err).unwrap_err().to_string().contains("busy"));
        let empty: serde_json::Value = serde_json::from_str(r#"{"end":{}}"#).unwrap();
        assert!(parse_iperf(&empty).is_err());
        assert_eq!(parse_iperf_cpu(&empty), None);
        let cpu: serde_json::Value = serde_json::from_str(
            r#"{"end":{"cpu_utilization_percent":{"host_total":30.5,"remote_total":19.5}}}"#,
        )
        .unwrap();
        assert_eq!(parse_iperf_cpu(&cpu), Some(0.5));
    }

    #[test]
    fn members_used_counts_a_tenth_of_a_fair_share() {
        assert_eq!(members_used(&[100, 100, 100, 100]), 4);
        assert_eq!(members_used(&[1000, 0, 0, 0]), 1);
        // Fair share 250: 24 is under a tenth of it, 25 is not.
        assert_eq!(members_used(&[951, 24, 25, 0]), 2);
        assert_eq!(members_used(&[]), 0);
        assert_eq!(members_used(&[0, 0]), 0);
    }

    fn cell_or_none(gbps: f64) -> Cell<Trial> {
        if gbps.is_nan() {
            Cell::default()
        } else {
            cell(&[gbps])
        }
    }

    fn cell(gbps: &[f64]) -> Cell<Trial> {
        Cell {
            trials: gbps
                .iter()
                .map(|g| Trial {
                    gbps: *g,
                    pps: 1.0,
                    cpu_ms_per_gbit: 1.0,
                    members_used: 1,
                })
                .collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn worst_ratio_and_goals() {
        // PATHS order: plain, ipmp2, ipmp2 generic XDP, nh2, ipmp4, nh4; WORKLOADS: four
        // outbound, then four inbound; NaN: not measured.
        let row = |v: [f64; 6]| v.iter().map(|g| cell_or_none(*g)).collect::<Vec<_>>();
        let out = [10.0, 9.8, f64::NAN, 9.0, 9.9, 9.0];
        let inb = [10.0, 9.7, 9.0, 9.5, f64::NAN, f64::NAN];
        let mut cells = vec![
            row(out),
            row([10.0, 9.0, f64::NAN, 9.5, 9.7, 9.0]),
            row(out),
            row(out),
            row(inb),
            row([10.0, 9.2, 8.0, 9.5, f64::NAN, f64::NAN]),
            row(inb),
            row(inb),
        ];
        let (r, wi, n) = worst_ratio(&cells, false, |_| Path::Plain).unwrap();
        assert!((r - 0.9).abs() < 1e-9);
        assert_eq!((wi, n), (1, 2));
        let (r, wi, n) = worst_ratio(&cells, false, Path::Nexthop).unwrap();
        assert!((r - 9.0 / 9.5).abs() < 1e-9, "{r}");
        assert_eq!((wi, n), (1, 2));
        let (r, wi, n) = worst_ratio(&cells, true, |_| Path::Plain).unwrap();
        assert!((r - 0.92).abs() < 1e-9, "{r}");
        assert_eq!((wi, n), (5, 2));
        let g = goals(&cells);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].met, Some(false));
        assert!(
            g[0].figure
                .starts_with("lowest 0.90× (TCP 64 flows, 2 members)")
        );
        assert!(g[0].why.contains("below the plain path"), "{}", g[0].why);
        assert!(g[0].why.contains("(plain veth)"), "{}", g[0].why);
        assert!(g[1].why.contains("(nexthop group 2)"), "{}", g[1].why);
        assert_eq!(g[1].met, Some(false));
        assert_eq!(g[2].met, Some(false));
        assert!(
            g[2].figure
                .starts_with("lowest 0.92× (inbound TCP 8 flows, 2 members)"),
            "{}",
            g[2].figure
        );
        assert!(
            g[2].figure.contains("(generic XDP 0.80×)"),
            "{}",
            g[2].figure
        );
        assert!(g[2].why.contains("received twice"), "{}", g[2].why);
        // Fix the bad cells: every goal is met.
        cells[1][1] = cell(&[9.6]);
        cells[5][1] = cell(&[9.6]);
        let g = goals(&cells);
        assert_eq!(
            (g[0].met, g[1].met, g[2].met),
            (Some(true), Some(true), Some(true)),
            "{g:?}"
        );
        assert!(g[0].why.is_empty());
        // A side that never ran: not measured, not met.
        let empty = vec![vec![Cell::default(); PATHS.len()]; WORKLOADS.len()];
        assert_eq!(goals(&empty)[0].met, None);
    }

    #[test]
    fn plain_is_no_ceiling_when_every_nexthop_group_beats_it() {
        let row = |v: [f64; 6]| v.iter().map(|g| cell_or_none(*g)).collect::<Vec<_>>();
        // PATHS order: plain, ipmp2, ipmp2 generic XDP, nh2, ipmp4, nh4.
        let nan = f64::NAN;
        let r = plain_not_ceiling(&row([20.0, 39.0, nan, 45.0, 36.0, 42.0])).unwrap();
        assert!((r - 2.1).abs() < 1e-9, "{r}");
        assert_eq!(
            plain_not_ceiling(&row([20.0, 39.0, nan, 45.0, 36.0, 21.0])),
            None
        );
        let mut missing = row([20.0, 39.0, nan, 45.0, 36.0, 42.0]);
        missing[5] = Cell::default();
        assert_eq!(plain_not_ceiling(&missing), None);
    }

    #[test]
    fn labels() {
        assert_eq!(WORKLOADS[0].label(), "TCP 1 flow");
        assert_eq!(WORKLOADS[3].label(), "UDP 64 flows");
        assert_eq!(WORKLOADS[5].label(), "inbound TCP 8 flows");
        assert_eq!(Path::IpmpXdp(2).label(), "ipmp 2 members, generic XDP");
        assert_eq!(Path::Nexthop(4).label(), "nexthop group 4");
    }
}
