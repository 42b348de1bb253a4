//! Probe-based failover: detection time of a silent failure (the switch drops a member's
//! frames, its carrier stays up) against the configured FDT, and a soak with both cores busy
//! that counts false failures for several FDTs at once.

use std::{
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use super::{link::now_ns, parse};
use crate::{
    bench::throughput::read_cpu,
    lab::{self, Daemon, Lab, LabSpec, Netns},
};

/// Two probing members (test addresses .21 and .22) whose target is the router.
const SPEC: LabSpec = LabSpec {
    members: 2,
    peers: 0,
    router: true,
};

/// An `nft -i` session in the switch namespace with its own drop set, so that a silent failure
/// starts within a millisecond of the time taken (spawning `nft` per change would blur it).
pub struct Dropper {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

const TABLE: &str = "ipmpbench";

impl Dropper {
    pub fn new(switch: &Netns) -> anyhow::Result<Dropper> {
        let mut child = switch
            .command(&["nft", "-i"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start nft -i in the switch namespace")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("nft stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("nft stdout"))?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Dropper {
            child,
            stdin,
            lines,
        };
        // Priority -10: ahead of the lab's own drop chain; either drops, both never undo.
        // One write: `exec` lists the set afterwards, which must exist by then.
        d.exec(&format!(
            "add table bridge {TABLE}\n\
             add set bridge {TABLE} dropped {{ type ifname; }}\n\
             add chain bridge {TABLE} forward {{ type filter hook forward priority -10; policy accept; }}\n\
             add rule bridge {TABLE} forward iifname @dropped drop\n\
             add rule bridge {TABLE} forward oifname @dropped drop"
        ))?;
        Ok(d)
    }

    /// Runs one command and then lists the set; returns the wall-clock time (ns) taken just
    /// before the write and the listed set elements once nft answered.
    fn exec(&mut self, cmd: &str) -> anyhow::Result<(i64, String)> {
        while self.lines.try_recv().is_ok() {}
        let at = now_ns();
        writeln!(self.stdin, "{cmd}\nlist set bridge {TABLE} dropped")
            .and_then(|()| self.stdin.flush())
            .context("write to nft -i")?;
        let mut listed = String::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| anyhow!("nft -i did not answer `{cmd}` within 5 s"))?;
            if line.trim_start().starts_with("elements") {
                listed = line.clone();
            }
            if line == "}" {
                return Ok((at, listed));
            }
        }
    }

    /// Starts (`on`) or ends a silent failure of switch port `port`; the time it started.
    pub fn set(&mut self, port: &str, on: bool) -> anyhow::Result<i64> {
        let verb = if on { "add" } else { "delete" };
        let (at, listed) = self.exec(&format!(
            "{verb} element bridge {TABLE} dropped {{ \"{port}\" }}"
        ))?;
        if listed.contains(&format!("\"{port}\"")) != on {
            bail!("nft did not {verb} {port} to the drop set: {listed:?}");
        }
        Ok(at)
    }
}

impl Drop for Dropper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A probing lab: ipmpd with FDT `fdt_ms`, members m0 and m1 probing the router.
pub struct ProbeBed {
    pub fdt_ms: u64,
    dropper: Dropper,
    daemon: Daemon,
    /// Owns the namespaces (removed on drop, after the daemon).
    _lab: Lab,
}

/// `ipmpstat -iP -o interface,active,state,probe` rows.
fn members_line(d: &Daemon) -> String {
    d.ipmpstat(&["-iP", "-o", "interface,active,state,probe"])
        .unwrap_or_default()
}

fn healthy(rows: &str, n: usize) -> bool {
    (0..n).all(|i| rows.lines().any(|l| l == format!("m{i}:yes:ok:ok")))
}

impl ProbeBed {
    pub fn new(fdt_ms: u64) -> anyhow::Result<ProbeBed> {
        let lab = Lab::new(SPEC)?;
        let mut cfg = lab.config();
        cfg.failure_detection_time_ms = Some(fdt_ms);
        for i in 0..SPEC.members {
            cfg.member_mut(&format!("m{i}")).test_address =
                Some(format!("198.51.100.{}/{}", 21 + i, lab::LAN_PREFIX_V4));
        }
        let daemon = lab.start_ipmpd(&cfg.to_toml())?;
        let dropper = Dropper::new(lab.switch())?;
        let bed = ProbeBed {
            fdt_ms,
            dropper,
            daemon,
            _lab: lab,
        };
        bed.wait_healthy()?;
        Ok(bed)
    }

    fn fdt(&self) -> Duration {
        Duration::from_millis(self.fdt_ms)
    }

    /// Waits until every member is active with its probes acknowledged.
    pub fn wait_healthy(&self) -> anyhow::Result<()> {
        let timeout = Duration::from_secs(10) + self.fdt() * 3;
        let mut last = String::new();
        if !lab::wait_until(timeout, Duration::from_millis(20), || {
            last = members_line(&self.daemon);
            healthy(&last, SPEC.members)
        }) {
            bail!(
                "FDT {} ms: members not probing ok within {timeout:?}: {last:?}\nipmpd log:\n{}",
                self.fdt_ms,
                tail(&self.daemon.log(), 40)
            );
        }
        Ok(())
    }

    /// One silent failure of member `member`: drop start → ipmpd declares it failed (ms).
    /// `settle` is waited first, so that failures start at varied points of the probe cycle.
    pub fn detection(&mut self, member: usize, settle: Duration) -> anyhow::Result<f64> {
        self.wait_healthy()?;
        thread::sleep(settle);
        let port = Lab::port(member);
        let name = format!("m{member}");
        // Only what ipmpd logs from here on is read while polling.
        let from = std::fs::metadata(self.daemon.log_path()).map_or(0, |m| m.len());
        let at = self.dropper.set(&port, true)?;
        let at_us = at.div_euclid(1000);
        let timeout = Duration::from_secs(3) + self.fdt() * 3;
        let mut found = None;
        lab::wait_until(timeout, Duration::from_millis(5), || {
            let lines = parse::log_lines(&read_from(self.daemon.log_path(), from));
            found = parse::first_after(&lines, at_us, |t| parse::is_probe_failure(t, &name))
                .map(|l| l.at_us);
            found.is_some()
        });
        self.dropper.set(&port, false)?;
        let Some(failed_us) = found else {
            bail!(
                "FDT {} ms: {name}'s silent failure not declared within {timeout:?}\nipmpd log:\n{}",
                self.fdt_ms,
                tail(&self.daemon.log(), 40)
            );
        };
        Ok((failed_us - at_us) as f64 / 1000.0)
    }
}

/// What `path` holds from byte `from` on (empty when it cannot be read).
fn read_from(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        // A partial last line parses as no line or is read again next time.
        let _ = f.read_to_string(&mut text);
    }
    text
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A cheap generator for the settle delays (no need for a crate).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Detection trials for one FDT: alternate members, settle 0.3–1.3 × FDT before each.
pub fn detection_trials(fdt_ms: u64, trials: usize) -> anyhow::Result<Vec<f64>> {
    let mut bed = ProbeBed::new(fdt_ms)?;
    let mut rng = XorShift::new(now_ns().unsigned_abs() ^ fdt_ms);
    let mut out = Vec::with_capacity(trials);
    for k in 0..trials {
        let settle = bed.fdt().mul_f64(0.3 + rng.next_f64());
        out.push(bed.detection(k % SPEC.members, settle)?);
    }
    Ok(out)
}

/// What one daemon went through during the soak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoakResult {
    pub fdt_ms: u64,
    /// Member or group failures declared (none is real: nothing failed).
    pub failures: u64,
    /// "cannot meet requested failure detection time" notices (the FDT was raised).
    pub raises: u64,
    /// Probes not sent because the daemon ran late (sum of "missed sending N probes").
    pub missed: u64,
    /// Probes due in the soak: members × duration / (FDT / 7).
    pub due: u64,
    /// `ipmpstat -g` FDT at the end.
    pub fdt_end: String,
    /// The first failure line, for the report.
    pub first_failure: Option<String>,
}

/// The soak: one probing lab per FDT, all at once, both cores kept busy by busy-loop
/// processes for `duration`. Returns the results and the machine's busy fraction (0..1).
pub fn soak(fdts: &[u64], duration: Duration) -> anyhow::Result<(Vec<SoakResult>, f64)> {
    let beds = fdts
        .iter()
        .map(|f| ProbeBed::new(*f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for b in &beds {
        b.wait_healthy()?;
    }
    let offsets: Vec<usize> = beds.iter().map(|b| b.daemon.log().len()).collect();
    let cpus = thread::available_parallelism().map_or(2, usize::from);
    let cpu0 = read_cpu()?;
    let started = Instant::now();
    let mut hogs = Vec::new();
    for _ in 0..cpus {
        hogs.push(Hog::start()?);
    }
    while started.elapsed() < duration {
        thread::sleep(Duration::from_millis(200).min(duration.saturating_sub(started.elapsed())));
    }
    let cpu1 = read_cpu()?;
    drop(hogs);
    let busy = cpu0.busy_cores(&cpu1) / cpu1.cpus.max(1) as f64;
    let results = beds
        .iter()
        .zip(offsets)
        .map(|(b, off)| {
            let log = b.daemon.log();
            let lines = parse::log_lines(log.get(off..).unwrap_or_default());
            let failures: Vec<&parse::LogLine> = lines
                .iter()
                .filter(|l| parse::is_any_failure(&l.text))
                .collect();
            SoakResult {
                fdt_ms: b.fdt_ms,
                failures: failures.len() as u64,
                raises: lines
                    .iter()
                    .filter(|l| parse::is_fdt_raised(&l.text))
                    .count() as u64,
                missed: lines
                    .iter()
                    .filter_map(|l| parse::missed_probes(&l.text))
                    .sum(),
                due: (SPEC.members as f64 * duration.as_secs_f64() * 7000.0 / b.fdt_ms as f64)
                    as u64,
                fdt_end: b
                    .daemon
                    .ipmpstat(&["-gP", "-o", "fdt"])
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default(),
                first_failure: failures.first().map(|l| l.text.clone()),
            }
        })
        .collect();
    Ok((results, busy))
}

/// A busy-loop process (`sh` spinning), killed on drop and when the thread that started it
/// dies (PR_SET_PDEATHSIG), so that it cannot outlive the benchmark.
struct Hog(Child);

impl Hog {
    fn start() -> anyhow::Result<Hog> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(Hog(cmd.spawn().context("start a busy loop (sh -c)")?))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_rows() {
        assert!(healthy("m0:yes:ok:ok\nm1:yes:ok:ok\n", 2));
        assert!(!healthy("m0:yes:ok:ok\nm1:no:failed:failed\n", 2));
        assert!(!healthy("m0:yes:ok:ok\n", 2));
    }

    #[test]
    fn xorshift_stays_in_unit_interval() {
        let mut r = XorShift::new(0);
        let v: Vec<f64> = (0..1000).map(|_| r.next_f64()).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
