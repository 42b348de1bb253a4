//! The network-namespace test lab: a host with member NICs on one L2 (a bridge in a switch
//! namespace), peers on that L2, and a router with a second subnet behind it.
//!
//! ```text
//!  host ns                 switch ns (br0)            peer ns i: eth0 198.51.100.(100+i)/24
//!   m0 ─────────── veth ─── p0 ┐                                  2001:db8:1::(100+i)/64
//!   m1 ─────────── veth ─── p1 ├─ br0 ─ q<i> ─── veth ─── eth0 (peer i)
//!   ...                        │      └ rt0 ─── veth ─── lan0 (router) 198.51.100.1, 2001:db8:1::1
//!                                                        wan0 (router) 203.0.113.1, 2001:db8:2::1
//!                                                          └── veth ─── eth0 (far) 203.0.113.10,
//!                                                                                 2001:db8:2::10
//! ```
//!
//! Every command runs through `nsenter --net=/run/netns/NAME`: `ip netns exec` remounts /sys and
//! would hide the bpffs pins. Nothing here touches the root network namespace: veth pairs are
//! created inside the lab namespaces (`ip link add ... peer ... netns OTHER` run in the first).
//!
//! Names: namespaces are `ipmpt<pid>-<n>-<role>`, so a later run can tell leftovers of a crashed
//! run (dead pid) from a lab that another process is using, and remove them.

pub mod pcap;

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use nix::{
    errno::Errno,
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde::Serialize;

/// Every lab namespace name starts with this, followed by the owning pid.
pub const NETNS_PREFIX: &str = "ipmpt";
/// Per-run pin directories are `<PIN_ROOT>/ipmp-test-<prefix>`.
pub const PIN_ROOT: &str = "/sys/fs/bpf";
const PIN_DIR_PREFIX: &str = "ipmp-test-";

/// The group's first data addresses (owned by the host through ipmpd).
pub const DATA_V4: &str = "198.51.100.10";
pub const DATA_V6: &str = "2001:db8:1::10";
/// Second data addresses, for multi-address tests.
pub const DATA2_V4: &str = "198.51.100.11";
pub const DATA2_V6: &str = "2001:db8:1::11";
/// Prefix lengths of the shared L2 subnet.
pub const LAN_PREFIX_V4: u8 = 24;
pub const LAN_PREFIX_V6: u8 = 64;
/// The router on the shared L2 (the group's gateway).
pub const ROUTER_V4: &str = "198.51.100.1";
pub const ROUTER_V6: &str = "2001:db8:1::1";
/// The router's side of the far subnet.
pub const ROUTER_FAR_V4: &str = "203.0.113.1";
pub const ROUTER_FAR_V6: &str = "2001:db8:2::1";
/// The far host, off-link for the group (reached through the router).
pub const FAR_V4: &str = "203.0.113.10";
pub const FAR_V6: &str = "2001:db8:2::10";

/// IPv4 address of peer `i` on the shared L2.
pub fn peer_v4(i: usize) -> String {
    format!("198.51.100.{}", 100 + i)
}

/// IPv6 address of peer `i` on the shared L2.
pub fn peer_v6(i: usize) -> String {
    format!("2001:db8:1::{}", 100 + i)
}

/// MAC of member `i` (`m<i>` in the host namespace): `02:00:00:00:00:1<i>`.
pub fn member_mac(i: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 0x10 + i as u8]
}

/// MAC of peer `i`'s eth0: `02:00:00:00:00:2<i>`.
pub fn peer_mac(i: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 0x20 + i as u8]
}

/// MAC of the router's L2 interface (lan0).
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Polls `f` every `poll` until it returns true or `timeout` passes; returns its last answer.
pub fn wait_until(timeout: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(poll);
    }
}

/// True when the privileged tiers can run (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The one rule for every test tier (xtask test, the scenario tests, the fixture tables):
/// env `CI` set to anything but empty, `0` or `false` means the privileged tiers must run, so
/// a missing privilege fails instead of skipping.
pub fn ci_requires_privilege() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// For privileged tests: true when they can run. Not root: panics under
/// [`ci_requires_privilege`], otherwise prints a loud skip notice (straight to fd 2, which the
/// harness does not capture) and returns false.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if ci_requires_privilege() {
        panic!(
            "{test}: needs root (network namespaces, bpffs, BPF_PROG_TEST_RUN) and CI is set: run the tests as root"
        );
    }
    // Straight to fd 2: the test harness captures eprintln!, and a skip must be seen.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "\n!!! SKIPPED {test}: needs root (network namespaces, bpffs, BPF_PROG_TEST_RUN); run as root !!!\n\n"
        )
        .as_bytes(),
    );
    false
}

/// Where the project's binaries (ipmpd, ipmpstat, ipmpadm, labtool) are: env IPMP_BIN_DIR, else
/// the directory of the running executable (test binaries live in `<target>/debug/deps`), else
/// `$CARGO_TARGET_DIR/debug`, else `<workspace>/target/debug`.
pub fn bin_path(name: &str) -> PathBuf {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("IPMP_BIN_DIR") {
        // An explicit choice is final, found or not.
        return PathBuf::from(dir).join(name);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(up) = dir.parent()
        {
            dirs.push(up.to_path_buf());
        }
        dirs.push(dir.to_path_buf());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(target).join("debug"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/debug")
                .join(name)
        })
}

fn describe(argv: &[&str]) -> String {
    argv.join(" ")
}

/// Waits for a thread from [`Netns::spawn_in`]: its result, or an error when it panicked.
pub fn join<T>(handle: thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("a thread in a lab namespace panicked"))?
}

/// A network namespace, `/run/netns/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

/// Interface facts from `ip -j link show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP).
    pub carrier: bool,
    /// Kernel operstate, e.g. `UP`, `DOWN`, `LOWERLAYERDOWN`.
    pub operstate: String,
    pub flags: Vec<String>,
}

/// Interface counters from `ip -j -s link show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// A neighbour entry from `ip -j neigh show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighEntry {
    pub dst: String,
    pub dev: String,
    pub mac: Option<[u8; 6]>,
    /// e.g. `["REACHABLE"]`, `["STALE"]`, `["FAILED"]`.
    pub state: Vec<String>,
}

/// Summary of an iputils `ping -q` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingStats {
    pub transmitted: u64,
    pub received: u64,
}

impl PingStats {
    pub fn lost(&self) -> u64 {
        self.transmitted.saturating_sub(self.received)
    }

    /// Loss in percent (100 when nothing was sent).
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            return 100.0;
        }
        self.lost() as f64 * 100.0 / self.transmitted as f64
    }
}

/// Parses iputils ping's summary line `N packets transmitted, M received, ...`.
pub fn parse_ping(output: &str) -> Option<PingStats> {
    let line = output.lines().find(|l| l.contains("packets transmitted"))?;
    let mut fields = line.split(',');
    let transmitted = fields.next()?.split_whitespace().next()?.parse().ok()?;
    let received = fields.next()?.split_whitespace().next()?.parse().ok()?;
    Some(PingStats {
        transmitted,
        received,
    })
}

impl Netns {
    /// Refers to an existing namespace by name (does not create it).
    pub fn from_name(name: impl Into<String>) -> Netns {
        Netns { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `f` on a new thread that has entered this namespace (sockets it opens, devices it
    /// names and links it attaches are there) and returns the thread. The thread ends with
    /// `f`, so nothing else changes namespace.
    pub fn spawn_in<T, F>(&self, f: F) -> thread::JoinHandle<anyhow::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let path = self.path();
        thread::spawn(move || {
            let file = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns {}", path.display()))?;
            f()
        })
    }

    /// [`Netns::spawn_in`], waited for: `f`'s result.
    pub fn run_in<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        join(self.spawn_in(f))
    }

    /// A command that runs `argv` inside this namespace (via nsenter; /sys stays the host's).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--");
        cmd.args(argv);
        cmd
    }

    /// Runs `argv` in the namespace; returns stdout, or an error with the command and stderr.
    pub fn run(&self, argv: &[&str]) -> anyhow::Result<String> {
        let out = self.run_status(argv)?;
        if !out.status.success() {
            bail!(
                "in netns {}: `{}` failed ({}): {}{}",
                self.name,
                describe(argv),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `argv` in the namespace and returns its output whatever the exit status; errors
    /// only when it cannot be started.
    pub fn run_status(&self, argv: &[&str]) -> anyhow::Result<Output> {
        self.command(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("in netns {}: cannot run `{}`", self.name, describe(argv)))
    }

    /// Runs `ip ARGS` in the namespace, ARGS split on whitespace; e.g.
    /// `ns.ip("addr add 198.51.100.50/24 dev m0")`.
    pub fn ip(&self, args: &str) -> anyhow::Result<String> {
        let mut argv = vec!["ip"];
        argv.extend(args.split_whitespace());
        self.run(&argv)
    }

    /// Starts `argv` in the namespace with stdout and stderr piped.
    pub fn spawn(&self, argv: &[&str]) -> anyhow::Result<Child> {
        self.command(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("in netns {}: cannot start `{}`", self.name, describe(argv)))
    }

    /// Sets a sysctl of this namespace (`net.*` keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Reads a sysctl of this namespace.
    pub fn sysctl_get(&self, key: &str) -> anyhow::Result<String> {
        Ok(self.run(&["sysctl", "-n", key])?.trim().to_owned())
    }

    fn json(&self, argv: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = self.run(argv)?;
        if out.trim().is_empty() {
            return Ok(serde_json::Value::Array(Vec::new()));
        }
        serde_json::from_str(&out).with_context(|| {
            format!(
                "in netns {}: `{}` printed no JSON",
                self.name,
                describe(argv)
            )
        })
    }

    /// The neighbour entry (ARP/NDP) for `ip`, if any.
    pub fn neigh_entry(&self, ip: &str) -> Option<NeighEntry> {
        let v = self.json(&["ip", "-j", "neigh", "show", "to", ip]).ok()?;
        v.as_array()?
            .iter()
            .filter(|e| e["dst"].as_str() == Some(ip))
            .map(|e| NeighEntry {
                dst: ip.to_owned(),
                dev: e["dev"].as_str().unwrap_or_default().to_owned(),
                mac: e["lladdr"].as_str().and_then(parse_mac),
                state: str_list(&e["state"]),
            })
            .max_by_key(|e| e.mac.is_some())
    }

    /// The MAC this namespace's neighbour table holds for `ip` (any state with a lladdr).
    pub fn neigh(&self, ip: &str) -> Option<[u8; 6]> {
        self.neigh_entry(ip)?.mac
    }

    /// Empties the neighbour table of every interface.
    pub fn neigh_flush(&self) -> anyhow::Result<()> {
        self.run(&["ip", "neigh", "flush", "all"]).map(drop)
    }

    /// Facts about one interface.
    pub fn link(&self, ifname: &str) -> anyhow::Result<LinkInfo> {
        let v = self.json(&["ip", "-j", "link", "show", "dev", ifname])?;
        let e = v
            .get(0)
            .ok_or_else(|| anyhow!("in netns {}: no interface {ifname}", self.name))?;
        let flags = str_list(&e["flags"]);
        Ok(LinkInfo {
            ifindex: u32::try_from(e["ifindex"].as_u64().unwrap_or_default()).unwrap_or_default(),
            mac: e["address"].as_str().and_then(parse_mac),
            mtu: u32::try_from(e["mtu"].as_u64().unwrap_or_default()).unwrap_or_default(),
            up: flags.iter().any(|f| f == "UP"),
            carrier: flags.iter().any(|f| f == "LOWER_UP"),
            operstate: e["operstate"].as_str().unwrap_or_default().to_owned(),
            flags,
        })
    }

    /// Names of every interface in the namespace.
    pub fn links(&self) -> anyhow::Result<Vec<String>> {
        let v = self.json(&["ip", "-j", "link", "show"])?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["ifname"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Addresses (`addr/prefix`) on an interface.
    pub fn addrs(&self, ifname: &str) -> anyhow::Result<Vec<String>> {
        let v = self.json(&["ip", "-j", "addr", "show", "dev", ifname])?;
        let mut out = Vec::new();
        for info in v
            .get(0)
            .and_then(|e| e["addr_info"].as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(local), Some(len)) = (info["local"].as_str(), info["prefixlen"].as_u64()) {
                out.push(format!("{local}/{len}"));
            }
        }
        Ok(out)
    }

    /// Packet and byte counters of an interface.
    pub fn link_stats(&self, ifname: &str) -> anyhow::Result<LinkStats> {
        let v = self.json(&["ip", "-j", "-s", "link", "show", "dev", ifname])?;
        let s = &v[0]["stats64"];
        if s.is_null() {
            bail!("in netns {}: no counters for {ifname}", self.name);
        }
        let n = |dir: &str, key: &str| s[dir][key].as_u64().unwrap_or_default();
        Ok(LinkStats {
            rx_packets: n("rx", "packets"),
            tx_packets: n("tx", "packets"),
            rx_bytes: n("rx", "bytes"),
            tx_bytes: n("tx", "bytes"),
            rx_dropped: n("rx", "dropped"),
            tx_dropped: n("tx", "dropped"),
        })
    }

    /// `ping -q -c COUNT -i INTERVAL -W 1 DST` (v4 or v6 by the address); loss is not an error.
    pub fn ping(&self, dst: &str, count: u32, interval: Duration) -> anyhow::Result<PingStats> {
        self.ping_args(&[], dst, count, interval)
    }

    /// Like [`Netns::ping`], from source address (or interface) `src` (`ping -I`).
    pub fn ping_from(
        &self,
        src: &str,
        dst: &str,
        count: u32,
        interval: Duration,
    ) -> anyhow::Result<PingStats> {
        self.ping_args(&["-I", src], dst, count, interval)
    }

    fn ping_args(
        &self,
        extra: &[&str],
        dst: &str,
        count: u32,
        interval: Duration,
    ) -> anyhow::Result<PingStats> {
        let count = count.to_string();
        let interval = format!("{:.3}", interval.as_secs_f64());
        let mut argv = vec!["ping", "-n", "-q", "-c", &count, "-i", &interval, "-W", "1"];
        argv.extend_from_slice(extra);
        argv.push(dst);
        let out = self.run_status(&argv)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        parse_ping(&stdout).ok_or_else(|| {
            anyhow!(
                "in netns {}: `{}` printed no summary: {}{}",
                self.name,
                describe(&argv),
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
    }

    /// True when one ping to `dst` is answered within a second.
    pub fn reachable(&self, dst: &str) -> bool {
        self.ping(dst, 1, Duration::from_millis(200))
            .is_ok_and(|s| s.received == 1)
    }

    /// Starts `tcpdump -w FILE` on `ifname` (optional BPF filter words) and returns once it
    /// listens. Stop it with [`Capture::stop`] to read the records.
    pub fn capture(&self, ifname: &str, file: &Path, filter: &[&str]) -> anyhow::Result<Capture> {
        let file_s = file.to_string_lossy().into_owned();
        // -Z root: Debian's tcpdump otherwise drops to user tcpdump and cannot write the file.
        let mut argv = vec![
            "tcpdump", "-i", ifname, "-n", "-U", "-s", "256", "-Z", "root",
        ];
        argv.extend(["-w", &file_s]);
        argv.extend_from_slice(filter);
        let mut child = self.spawn(&argv)?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("tcpdump stderr not piped"))?;
        let lines = forward_lines(stderr);
        let ready = lines.recv_timeout(Duration::from_secs(5));
        let capture = Capture {
            child,
            file: file.to_path_buf(),
        };
        match ready {
            Ok(line) if line.contains("listening on") => Ok(capture),
            Ok(line) => bail!("in netns {}: tcpdump on {ifname}: {line}", self.name),
            Err(_) => bail!(
                "in netns {}: tcpdump on {ifname} did not start within 5 s",
                self.name
            ),
        }
    }

    /// Starts the lab traffic tool (`labtool ARGS...`) in this namespace.
    pub fn labtool(&self, args: &[&str]) -> anyhow::Result<LabTool> {
        let path = bin_path("labtool");
        if !path.is_file() {
            bail!(
                "labtool not found at {}: build it (cargo build -p ipmp-tests) or set IPMP_BIN_DIR",
                path.display()
            );
        }
        let path_s = path.to_string_lossy().into_owned();
        let mut argv = vec![path_s.as_str()];
        argv.extend_from_slice(args);
        let mut child = self.spawn(&argv)?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("labtool stderr not piped"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("labtool stdout not piped"))?;
        let stdout = thread::spawn(move || {
            let mut s = String::new();
            let mut stdout = stdout;
            // A read error leaves what was read; the exit status tells the rest.
            let _ = stdout.read_to_string(&mut s);
            s
        });
        Ok(LabTool {
            child,
            what: format!("labtool {} (netns {})", args.join(" "), self.name),
            stderr: forward_lines(stderr),
            stderr_seen: Vec::new(),
            stdout: Some(stdout),
        })
    }
}

fn str_list(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads lines from `r` on a thread and hands them over a channel (ends when `r` closes).
fn forward_lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running tcpdump (see [`Netns::capture`]); killed on drop if not stopped.
pub struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Stops tcpdump (SIGINT flushes the file) and parses what it captured.
    pub fn stop(mut self) -> anyhow::Result<Vec<pcap::Record>> {
        // tcpdump writes the file with -U per packet; give in-flight packets a moment.
        thread::sleep(Duration::from_millis(100));
        signal_and_wait(&mut self.child, Signal::SIGINT, Duration::from_secs(5));
        let bytes = fs::read(&self.file)
            .with_context(|| format!("read capture {}", self.file.display()))?;
        pcap::parse(&bytes).with_context(|| format!("parse capture {}", self.file.display()))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        signal_and_wait(&mut self.child, Signal::SIGKILL, Duration::from_secs(2));
    }
}

/// A running labtool (see [`Netns::labtool`]); killed on drop if not finished.
pub struct LabTool {
    child: Child,
    what: String,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
    stdout: Option<thread::JoinHandle<String>>,
}

impl LabTool {
    /// Waits (bounded) until the tool says it is listening (`ready` on stderr).
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.trim() == "ready";
                    self.stderr_seen.push(line);
                    if ready {
                        return Ok(());
                    }
                }
                Err(_) => bail!(
                    "{} not ready within {timeout:?}: {}",
                    self.what,
                    self.stderr_seen.join("; ")
                ),
            }
        }
    }

    /// Waits for the tool to exit and returns its JSON report (last stdout line) and whether it
    /// exited successfully.
    pub fn finish_status(mut self) -> anyhow::Result<(serde_json::Value, ExitStatus)> {
        let status = self
            .child
            .wait()
            .with_context(|| format!("wait for {}", self.what))?;
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        self.stderr_seen.extend(self.stderr.try_iter());
        let line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        let json = serde_json::from_str(line).with_context(|| {
            format!(
                "{} ({status}) printed no JSON report: stdout {:?}, stderr {:?}",
                self.what,
                stdout.trim(),
                self.stderr_seen.join("; ")
            )
        })?;
        Ok((json, status))
    }

    /// Like [`LabTool::finish_status`], and an error when the tool failed.
    pub fn finish(self) -> anyhow::Result<serde_json::Value> {
        let what = self.what.clone();
        let (json, status) = self.finish_status()?;
        if !status.success() {
            bail!("{what} failed ({status}): {json}");
        }
        Ok(json)
    }
}

impl Drop for LabTool {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_and_wait(&mut self.child, Signal::SIGKILL, Duration::from_secs(2));
        }
    }
}

/// Sends `sig` to a child and waits up to `grace`, then kills it.
fn signal_and_wait(child: &mut Child, sig: Signal, grace: Duration) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
    let exited = wait_until(grace, Duration::from_millis(20), || {
        !matches!(child.try_wait(), Ok(None))
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// What to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabSpec {
    /// Member NICs m0..m{members-1} in the host namespace.
    pub members: usize,
    /// Peer namespaces on the shared L2.
    pub peers: usize,
    /// A router on the L2 with a far subnet (and far host) behind it.
    pub router: bool,
}

impl Default for LabSpec {
    /// Three members, two peers, a router.
    fn default() -> Self {
        LabSpec {
            members: 3,
            peers: 2,
            router: true,
        }
    }
}

/// A built lab; everything it made is removed on drop.
pub struct Lab {
    spec: LabSpec,
    prefix: String,
    host: Netns,
    switch: Netns,
    peers: Vec<Netns>,
    router: Option<Netns>,
    far: Option<Netns>,
    /// Every namespace created so far, for teardown (also after a failed build).
    created: Vec<Netns>,
    pin_dir: PathBuf,
    work_dir: PathBuf,
    /// Members whose switch port drops frames ([`Lab::silent_drop`]).
    dropping: Mutex<BTreeSet<usize>>,
}

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// The nftables table in the switch namespace holding the silent-drop set.
const NFT_TABLE: &str = "ipmplab";

impl Lab {
    /// Removes leftovers of crashed runs, then builds the topology of `spec`.
    pub fn new(spec: LabSpec) -> anyhow::Result<Lab> {
        if spec.members == 0 || spec.members > 16 || spec.peers > 16 {
            bail!("lab spec {spec:?}: members must be 1..=16 and peers 0..=16");
        }
        if !is_root() {
            bail!("the lab needs root (network namespaces, bpffs)");
        }
        cleanup_stale();
        ensure_bpffs()?;
        let pid = std::process::id();
        let seq = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NETNS_PREFIX}{pid}-{seq}-");
        let ns = |role: &str| Netns::from_name(format!("{prefix}{role}"));
        let work_dir =
            std::env::temp_dir().join(format!("ipmp-lab-{}", prefix.trim_end_matches('-')));
        let pin_dir =
            Path::new(PIN_ROOT).join(format!("{PIN_DIR_PREFIX}{}", prefix.trim_end_matches('-')));
        let mut lab = Lab {
            spec,
            host: ns("host"),
            switch: ns("sw"),
            peers: (0..spec.peers).map(|i| ns(&format!("p{i}"))).collect(),
            router: spec.router.then(|| ns("rt")),
            far: spec.router.then(|| ns("far")),
            prefix,
            created: Vec::new(),
            pin_dir,
            work_dir,
            dropping: Mutex::new(BTreeSet::new()),
        };
        // On error, dropping `lab` removes whatever was made.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.work_dir)
            .with_context(|| format!("create {}", self.work_dir.display()))?;
        if self.pin_dir.exists() {
            let _ = fs::remove_dir_all(&self.pin_dir);
        }
        fs::create_dir_all(&self.pin_dir)
            .with_context(|| format!("create pin dir {}", self.pin_dir.display()))?;
        let mut all = vec![self.host.clone(), self.switch.clone()];
        all.extend(self.peers.iter().cloned());
        all.extend(self.router.iter().cloned());
        all.extend(self.far.iter().cloned());
        for ns in all {
            // Same pid and sequence as a crashed run of an earlier process: stale.
            if ns.path().exists() {
                remove_netns(&ns);
            }
            create_netns(&ns)?;
            self.created.push(ns.clone());
            // No DAD anywhere: tests must not wait for tentative addresses.
            for key in ["all", "default"] {
                ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
                ns.sysctl(&format!("net.ipv6.conf.{key}.dad_transmits"), "0")?;
            }
            ns.ip("link set lo up")?;
        }

        // The host keeps strict reverse-path filtering, as RHEL and the CIS/STIG baselines
        // have it (a new namespace starts with 0); `default` covers the members made below.
        for key in ["all", "default"] {
            self.host
                .sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "1")?;
        }

        // The switch is pure L2: no IPv6 on its ports, no multicast snooping (no querier here,
        // and the group's NDP multicast must reach every port).
        let sw = &self.switch;
        for key in ["all", "default"] {
            sw.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "1")?;
        }
        sw.ip("link add br0 type bridge mcast_snooping 0 stp_state 0")?;
        sw.ip("link set br0 up")?;
        let nft = format!(
            "table bridge {NFT_TABLE} {{\n\
             \tset dropped {{ type ifname; }}\n\
             \tchain forward {{ type filter hook forward priority 0; policy accept;\n\
             \t\tiifname @dropped drop\n\
             \t\toifname @dropped drop\n\
             \t}}\n\
             }}\n"
        );
        let nft_file = self.work_dir.join("switch.nft");
        fs::write(&nft_file, nft).with_context(|| format!("write {}", nft_file.display()))?;
        sw.run(&["nft", "-f", &nft_file.to_string_lossy()])?;

        // Members: created in the host namespace with their peer end moved to the switch.
        let host = &self.host;
        for i in 0..self.spec.members {
            let (m, p) = (self.member(i), Lab::port(i));
            let (mac, port_mac) = (fmt_mac(&member_mac(i)), fmt_mac(&switch_mac(0x30 + i)));
            host.ip(&format!(
                "link add {m} address {mac} type veth peer name {p} address {port_mac} netns {}",
                sw.name()
            ))?;
            sw.ip(&format!("link set {p} master br0 up"))?;
            host.ip(&format!("link set {m} up"))?;
        }

        for (i, peer) in self.peers.iter().enumerate() {
            let q = Lab::peer_port(i);
            let (mac, port_mac) = (fmt_mac(&peer_mac(i)), fmt_mac(&switch_mac(0x40 + i)));
            sw.ip(&format!(
                "link add {q} address {port_mac} type veth peer name eth0 address {mac} netns {}",
                peer.name()
            ))?;
            sw.ip(&format!("link set {q} master br0 up"))?;
            peer.ip("link set eth0 up")?;
            peer.ip(&format!("addr add {}/{LAN_PREFIX_V4} dev eth0", peer_v4(i)))?;
            peer.ip(&format!(
                "-6 addr add {}/{LAN_PREFIX_V6} dev eth0 nodad",
                peer_v6(i)
            ))?;
            if self.spec.router {
                peer.ip(&format!("route add default via {ROUTER_V4}"))?;
                peer.ip(&format!("-6 route add default via {ROUTER_V6}"))?;
            }
        }

        if let (Some(rt), Some(far)) = (&self.router, &self.far) {
            let (mac, port_mac) = (fmt_mac(&ROUTER_MAC), fmt_mac(&switch_mac(0x50)));
            sw.ip(&format!(
                "link add rt0 address {port_mac} type veth peer name lan0 address {mac} netns {}",
                rt.name()
            ))?;
            sw.ip("link set rt0 master br0 up")?;
            rt.sysctl("net.ipv4.ip_forward", "1")?;
            rt.sysctl("net.ipv6.conf.all.forwarding", "1")?;
            rt.ip("link set lan0 up")?;
            rt.ip(&format!("addr add {ROUTER_V4}/{LAN_PREFIX_V4} dev lan0"))?;
            rt.ip(&format!(
                "-6 addr add {ROUTER_V6}/{LAN_PREFIX_V6} dev lan0 nodad"
            ))?;
            rt.ip(&format!(
                "link add wan0 type veth peer name eth0 netns {}",
                far.name()
            ))?;
            rt.ip("link set wan0 up")?;
            rt.ip(&format!("addr add {ROUTER_FAR_V4}/24 dev wan0"))?;
            rt.ip(&format!("-6 addr add {ROUTER_FAR_V6}/64 dev wan0 nodad"))?;
            far.ip("link set eth0 up")?;
            far.ip(&format!("addr add {FAR_V4}/24 dev eth0"))?;
            far.ip(&format!("-6 addr add {FAR_V6}/64 dev eth0 nodad"))?;
            far.ip(&format!("route add default via {ROUTER_FAR_V4}"))?;
            far.ip(&format!("-6 route add default via {ROUTER_FAR_V6}"))?;
        }
        Ok(())
    }

    pub fn spec(&self) -> LabSpec {
        self.spec
    }

    /// This run's name prefix, e.g. `ipmpt1234-0-`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace that runs ipmpd and holds the members.
    pub fn host(&self) -> &Netns {
        &self.host
    }

    /// The namespace with the bridge `br0` and the switch ports.
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// Peer `i` (interface eth0, [`peer_v4`]/[`peer_v6`]). Panics when the lab has no such peer.
    pub fn peer(&self, i: usize) -> &Netns {
        self.peers
            .get(i)
            .unwrap_or_else(|| panic!("lab has {} peers, no peer {i}", self.peers.len()))
    }

    /// The router (lan0 on the L2, wan0 to the far host). Panics when built without one.
    pub fn router(&self) -> &Netns {
        self.router
            .as_ref()
            .unwrap_or_else(|| panic!("lab built with router: false has no router"))
    }

    /// The far host behind the router. Panics when built without a router.
    pub fn far(&self) -> &Netns {
        self.far
            .as_ref()
            .unwrap_or_else(|| panic!("lab built with router: false has no far host"))
    }

    /// Every namespace of the lab.
    pub fn namespaces(&self) -> &[Netns] {
        &self.created
    }

    /// Name of member `i` in the host namespace (`m<i>`).
    pub fn member(&self, i: usize) -> String {
        assert!(
            i < self.spec.members,
            "lab has {} members, no member {i}",
            self.spec.members
        );
        format!("m{i}")
    }

    /// All member names.
    pub fn members(&self) -> Vec<String> {
        (0..self.spec.members).map(|i| self.member(i)).collect()
    }

    /// MAC of member `i`.
    pub fn member_mac(&self, i: usize) -> [u8; 6] {
        member_mac(i)
    }

    /// The switch-side port (in [`Lab::switch`]) of member `i`: capture here to see what the
    /// member sent and received.
    pub fn port(i: usize) -> String {
        format!("p{i}")
    }

    /// The switch-side port of peer `i`.
    pub fn peer_port(i: usize) -> String {
        format!("q{i}")
    }

    /// Carrier loss on member `i`: its switch-side veth goes down.
    pub fn cut_link(&self, i: usize) -> anyhow::Result<()> {
        self.switch
            .run(&["ip", "link", "set", &Lab::port(i), "down"])
            .map(drop)
    }

    /// Undoes [`Lab::cut_link`].
    pub fn restore_link(&self, i: usize) -> anyhow::Result<()> {
        self.switch
            .run(&["ip", "link", "set", &Lab::port(i), "up"])
            .map(drop)
    }

    /// Creates member `i` again after it was deleted (same name and MAC, a new ifindex,
    /// plugged into the switch and up), as a driver reload or hot-plug does.
    pub fn replug_member(&self, i: usize) -> anyhow::Result<()> {
        let (name, mac, port) = (self.member(i), fmt_mac(&self.member_mac(i)), Self::port(i));
        self.host().ip(&format!(
            "link add {name} address {mac} type veth peer name {port} netns {}",
            self.switch().name()
        ))?;
        self.switch()
            .ip(&format!("link set {port} master br0 up"))?;
        self.host().ip(&format!("link set {name} up")).map(drop)
    }

    /// Silent failure of member `i`: the switch drops every frame from or to its port while the
    /// carrier stays up (`on: false` undoes it).
    pub fn silent_drop(&self, i: usize, on: bool) -> anyhow::Result<()> {
        let mut dropping = self.dropping.lock().unwrap_or_else(|e| e.into_inner());
        if dropping.contains(&i) == on {
            return Ok(());
        }
        let verb = if on { "add" } else { "delete" };
        let elem = format!("{{ \"{}\" }}", Lab::port(i));
        self.switch.run(&[
            "nft", verb, "element", "bridge", NFT_TABLE, "dropped", &elem,
        ])?;
        if on {
            dropping.insert(i);
        } else {
            dropping.remove(&i);
        }
        Ok(())
    }

    /// The per-run bpffs directory to pass to `ipmpd --pin-dir`; removed on drop.
    pub fn pin_dir(&self) -> PathBuf {
        self.pin_dir.clone()
    }

    /// A temporary directory for configs, sockets, captures and logs; removed on drop unless
    /// the thread is panicking or env IPMP_KEEP_WORK is set.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The default ipmpd configuration for this lab (see [`default_config`]).
    pub fn config(&self) -> IpmpdConfig {
        default_config(self.spec, &self.work_dir)
    }

    /// Starts ipmpd in the host namespace with `config_toml` (see [`start_ipmpd`]).
    pub fn start_ipmpd(&self, config_toml: &str) -> anyhow::Result<Daemon> {
        start_ipmpd(self, config_toml)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            remove_netns(ns);
        }
        let _ = fs::remove_dir_all(&self.pin_dir);
        let keep = thread::panicking() || std::env::var_os("IPMP_KEEP_WORK").is_some();
        if keep {
            eprintln!(
                "lab {}: kept {} for inspection",
                self.prefix,
                self.work_dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.work_dir);
        }
    }
}

/// MACs of switch-side ports: `02:00:00:00:00:XX`.
fn switch_mac(low: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, low as u8]
}

fn create_netns(ns: &Netns) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "add", ns.name()])
        .output()
        .context("run `ip netns add`")?;
    if !out.status.success() {
        bail!(
            "ip netns add {}: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Kills what still runs inside `ns`, then deletes it (its interfaces go with it).
fn remove_netns(ns: &Netns) {
    let pids = || -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", ns.name()])
            .stderr(Stdio::null())
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for pid in pids() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    // Let them go so the namespace (and its veths) really disappears on delete.
    wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
        pids().is_empty()
    });
    let _ = Command::new("ip")
        .args(["netns", "del", ns.name()])
        .stderr(Stdio::null())
        .status();
}

/// The owning pid in a lab name `ipmpt<pid>-...` (netns or pin dir suffix).
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(NETNS_PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !rest[digits.len()..].starts_with('-') {
        return None;
    }
    digits.parse().ok()
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

/// Runs `sysctl -qw SETTINGS...` (in the calling thread's network namespace, which the child
/// inherits: only per-namespace keys belong here).
pub fn sysctl_here(settings: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("sysctl")
        .arg("-qw")
        .args(settings)
        .output()
        .context("spawn sysctl")?;
    if !out.status.success() {
        bail!(
            "sysctl {settings:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Runs `ip -batch -` (in the calling thread's network namespace, which the child inherits).
pub fn ip_batch(batch: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn ip (iproute2)")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("ip has no stdin"))?
        .write_all(batch.as_bytes())
        .context("write the ip batch")?;
    let out = child.wait_with_output().context("wait for ip")?;
    if !out.status.success() {
        bail!(
            "ip -batch failed: {}\n{batch}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Removes namespaces and pin directories of lab runs whose process is gone.
pub fn cleanup_stale() {
    if let Ok(dir) = fs::read_dir("/run/netns") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(|pid| !pid_alive(pid)) {
                eprintln!("lab: removing leftover namespace {name}");
                remove_netns(&Netns::from_name(name));
            }
        }
    }
    if let Ok(dir) = fs::read_dir(PIN_ROOT) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name
                .strip_prefix(PIN_DIR_PREFIX)
                .and_then(owner_pid)
                .is_some_and(|pid| !pid_alive(pid));
            if stale {
                eprintln!("lab: removing leftover pin dir {}", entry.path().display());
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// True when bpffs is mounted at [`PIN_ROOT`].
pub fn bpffs_mounted() -> bool {
    fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next(), f.next(), f.next());
            at == Some(PIN_ROOT) && kind == Some("bpf")
        })
    })
}

/// Mounts bpffs at [`PIN_ROOT`] if it is not (as `cargo xtask setup` does).
pub fn ensure_bpffs() -> anyhow::Result<()> {
    if bpffs_mounted() {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "bpf", "bpf", PIN_ROOT])
        .status()
        .context("run mount")?;
    if !status.success() || !bpffs_mounted() {
        bail!(
            "bpffs is not mounted at {PIN_ROOT} and `mount -t bpf bpf {PIN_ROOT}` failed: mount it (cargo xtask setup)"
        );
    }
    Ok(())
}

/// The lab's default ipmpd configuration: control socket in `work_dir`, one group `ipmp0` over
/// every member, data addresses [`DATA_V4`]/24 and [`DATA_V6`]/64, default routes via the
/// router (when there is one), announcements 3 × 100 ms, a fixed hash seed, failback on, no
/// test addresses (link-based detection only).
pub fn default_config(spec: LabSpec, work_dir: &Path) -> IpmpdConfig {
    IpmpdConfig {
        failure_detection_time_ms: None,
        failback: true,
        control_socket: work_dir.join("ipmpd.sock").to_string_lossy().into_owned(),
        link_flap_max_ups: None,
        link_flap_window_ms: None,
        netlink_rcvbuf_bytes: None,
        metrics: None,
        group: vec![GroupConfig {
            name: "ipmp0".into(),
            data_addresses: vec![
                format!("{DATA_V4}/{LAN_PREFIX_V4}"),
                format!("{DATA_V6}/{LAN_PREFIX_V6}"),
            ],
            routes: if spec.router {
                vec![
                    RouteConfig {
                        to: "default".into(),
                        via: ROUTER_V4.into(),
                    },
                    RouteConfig {
                        to: "default".into(),
                        via: ROUTER_V6.into(),
                    },
                ]
            } else {
                Vec::new()
            },
            xdp_mode: None,
            announce: AnnounceConfig {
                count: 3,
                interval_ms: 100,
            },
            buckets: None,
            hash_seed: Some(LAB_HASH_SEED),
            probe_targets: Vec::new(),
            xdp_echo: None,
            // Scenarios watch link state only unless they ask for probes (ARP/NDP probing
            // would make every repair after a link-up wait for 10 acks).
            link_layer_probes: Some(false),
            member: (0..spec.members)
                .map(|i| MemberConfig {
                    name: format!("m{i}"),
                    test_address: None,
                    standby: false,
                })
                .collect(),
        }],
    }
}

/// The flow hash seed of the lab's default config (fixed, so flow placement is predictable).
pub const LAB_HASH_SEED: u32 = 0x1b4d_5eed;

/// ipmpd's configuration file as the lab writes it: the keys of `config/ipmpd.toml` (`None`
/// leaves a key out, i.e. ipmpd's default). Edit the fields, then [`IpmpdConfig::to_toml`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpmpdConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_detection_time_ms: Option<u64>,
    pub failback: bool,
    pub control_socket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_flap_max_ups: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_flap_window_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netlink_rcvbuf_bytes: Option<u32>,
    /// `[metrics]`; `None` leaves the endpoint off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    pub group: Vec<GroupConfig>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsConfig {
    /// `address:port`.
    pub listen: String,
}

/// One `[[group]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupConfig {
    /// The IPMP interface ipmpd creates (also the group's name).
    pub name: String,
    /// `address/prefix-length`.
    pub data_addresses: Vec<String>,
    pub routes: Vec<RouteConfig>,
    /// `auto`, `native` or `generic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    pub announce: AnnounceConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_seed: Option<u32>,
    /// Explicit probe targets (empty: the routes' gateways).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probe_targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_echo: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_layer_probes: Option<bool>,
    pub member: Vec<MemberConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteConfig {
    /// `default` or a prefix.
    pub to: String,
    pub via: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AnnounceConfig {
    pub count: u32,
    pub interval_ms: u64,
}

/// One `[[group.member]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberConfig {
    pub name: String,
    /// `address/prefix-length`, used only for probing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_address: Option<String>,
    pub standby: bool,
}

impl IpmpdConfig {
    /// The first group (the default config has exactly one).
    pub fn group_mut(&mut self) -> &mut GroupConfig {
        assert!(!self.group.is_empty(), "the config has no group");
        &mut self.group[0]
    }

    /// Member `name` of the first group.
    pub fn member_mut(&mut self, name: &str) -> &mut MemberConfig {
        self.group_mut()
            .member
            .iter_mut()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("the config's first group has no member {name}"))
    }

    pub fn to_toml(&self) -> String {
        // Strings, numbers, booleans and tables always serialise.
        toml::to_string(self).unwrap_or_else(|e| panic!("lab config does not serialise: {e}"))
    }
}

/// A running ipmpd in a lab's host namespace; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon {
    child: Option<Child>,
    bin_dir: Option<PathBuf>,
    host: Netns,
    socket: PathBuf,
    log: PathBuf,
    config: PathBuf,
}

/// Starts ipmpd in the lab's host namespace with `config_toml` (adding `control_socket` in the
/// work dir when the TOML has none), `--pin-dir <lab.pin_dir()>`, RUST_LOG=debug and output to
/// `<work_dir>/ipmpd.log`, and waits up to 10 s until `ipmpstat -g` answers.
pub fn start_ipmpd(lab: &Lab, config_toml: &str) -> anyhow::Result<Daemon> {
    start_ipmpd_with(lab, config_toml, None)
}

/// Like [`start_ipmpd`], with ipmpd, ipmpstat and ipmpadm taken from `bin_dir` when given
/// (otherwise from [`bin_path`]).
pub fn start_ipmpd_with(
    lab: &Lab,
    config_toml: &str,
    bin_dir: Option<&Path>,
) -> anyhow::Result<Daemon> {
    start_ipmpd_pinned(lab, config_toml, bin_dir, &lab.pin_dir())
}

/// Like [`start_ipmpd_with`], with `--pin-dir <pin_dir>` instead of the lab's (a bpffs the
/// test mounted itself, say).
pub fn start_ipmpd_pinned(
    lab: &Lab,
    config_toml: &str,
    bin_dir: Option<&Path>,
    pin_dir: &Path,
) -> anyhow::Result<Daemon> {
    start_ipmpd_wrapped(lab, config_toml, bin_dir, pin_dir, &[], &[])
}

/// Like [`start_ipmpd_pinned`], with ipmpd started as the last arguments of `wrapper` (a
/// command that sets up its environment and execs them: a mount namespace, setpriv) and with
/// `extra` after its own arguments.
pub fn start_ipmpd_wrapped(
    lab: &Lab,
    config_toml: &str,
    bin_dir: Option<&Path>,
    pin_dir: &Path,
    wrapper: &[&str],
    extra: &[&str],
) -> anyhow::Result<Daemon> {
    let table: toml::Table = config_toml
        .parse()
        .context("the ipmpd config is not valid TOML")?;
    let (socket, text) = match table.get("control_socket") {
        Some(v) => {
            let s = v
                .as_str()
                .ok_or_else(|| anyhow!("control_socket must be a string"))?;
            (PathBuf::from(s), config_toml.to_owned())
        }
        None => {
            let s = lab.work_dir().join("ipmpd.sock");
            // Top-level keys must precede the tables.
            let text = format!("control_socket = {:?}\n{config_toml}", s.to_string_lossy());
            (s, text)
        }
    };
    let n = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
    let config = lab.work_dir().join(format!("ipmpd-{n}.toml"));
    fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
    let log = lab.work_dir().join(format!("ipmpd-{n}.log"));
    let bin = |name: &str| bin_dir.map_or_else(|| bin_path(name), |d| d.join(name));
    let ipmpd = bin("ipmpd");
    if !ipmpd.is_file() {
        bail!(
            "ipmpd not found at {}: run `cargo build` first or set IPMP_BIN_DIR",
            ipmpd.display()
        );
    }
    let out = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone().context("clone the log file handle")?;
    let (ipmpd_s, config_s, pins_s) = (
        ipmpd.to_string_lossy().into_owned(),
        config.to_string_lossy().into_owned(),
        pin_dir.to_string_lossy().into_owned(),
    );
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.extend([
        ipmpd_s.as_str(),
        "--config",
        &config_s,
        "--pin-dir",
        &pins_s,
    ]);
    argv.extend(extra);
    let child = lab
        .host()
        .command(&argv)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("start {}", ipmpd.display()))?;
    let mut daemon = Daemon {
        child: Some(child),
        bin_dir: bin_dir.map(Path::to_path_buf),
        host: lab.host().clone(),
        socket,
        log,
        config,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = daemon
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            bail!(
                "ipmpd exited during start-up ({status}); log:\n{}",
                daemon.log()
            );
        }
        if daemon.ipmpstat(&["-g"]).is_ok() {
            return Ok(daemon);
        }
        if Instant::now() >= deadline {
            bail!(
                "ipmpd did not answer `ipmpstat -g` within 10 s; log:\n{}",
                daemon.log()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

impl Daemon {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything ipmpd printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Everything ipmpd logged before this call. ipmpd writes its log from a thread of its
    /// own, so a line may reach the file a moment after the change it reports (a STATUS= line,
    /// an `ipmpstat` answer). A status request is logged at debug (the lab's level) behind
    /// every earlier line; once its line is in the file, so are they. When ipmpd does not
    /// answer, the file as it is.
    pub fn log_synced(&self) -> String {
        const MARK: &str = "control request";
        let before = self.log().matches(MARK).count();
        if self.ipmpstat(&["-g"]).is_err() {
            return self.log();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.matches(MARK).count() > before || Instant::now() >= deadline {
                return log;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn tool(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let path = self
            .bin_dir
            .as_ref()
            .map_or_else(|| bin_path(tool), |d| d.join(tool));
        let (path_s, socket_s) = (
            path.to_string_lossy().into_owned(),
            self.socket.to_string_lossy().into_owned(),
        );
        let mut argv = vec![path_s.as_str(), "--socket", &socket_s];
        argv.extend_from_slice(args);
        self.host.run(&argv)
    }

    /// Starts `ipmpstat --socket S ARGS...` in the host namespace with stdout piped (for the
    /// `-p` stream); the caller kills it.
    pub fn spawn_ipmpstat(&self, args: &[&str]) -> anyhow::Result<Child> {
        let path = self
            .bin_dir
            .as_ref()
            .map_or_else(|| bin_path("ipmpstat"), |d| d.join("ipmpstat"));
        let socket = self.socket.to_string_lossy().into_owned();
        let path = path.to_string_lossy().into_owned();
        let mut argv = vec![path.as_str(), "--socket", &socket];
        argv.extend_from_slice(args);
        let mut cmd = self.host.command(&argv);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().with_context(|| format!("spawning {argv:?}"))
    }

    /// Runs `ipmpstat --socket S ARGS...` in the host namespace; its stdout.
    pub fn ipmpstat(&self, args: &[&str]) -> anyhow::Result<String> {
        self.tool("ipmpstat", args)
    }

    /// `ipmpstat --json ARGS...` parsed.
    pub fn ipmpstat_json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut argv = vec!["--json"];
        argv.extend_from_slice(args);
        let out = self.ipmpstat(&argv)?;
        serde_json::from_str(&out).with_context(|| format!("ipmpstat --json printed: {out}"))
    }

    /// Runs `ipmpadm --socket S ARGS...` in the host namespace; its stdout.
    pub fn ipmpadm(&self, args: &[&str]) -> anyhow::Result<String> {
        self.tool("ipmpadm", args)
    }

    /// Member name → MAC of every member of the first group, from `ipmpadm status --json`.
    pub fn member_macs(&self) -> anyhow::Result<std::collections::BTreeMap<String, [u8; 6]>> {
        let out = self.ipmpadm(&["status", "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let rows = v["groups"][0]["members"]
            .as_array()
            .ok_or_else(|| anyhow!("ipmpadm status --json has no members: {v}"))?;
        rows.iter()
            .map(|m| {
                let name = m["name"].as_str().unwrap_or_default();
                let mac = m["mac"].as_str().unwrap_or_default();
                let mac = parse_mac(mac).ok_or_else(|| anyhow!("bad MAC of {name}: {m}"))?;
                Ok((name.to_owned(), mac))
            })
            .collect()
    }

    /// Sends SIGTERM and waits up to 10 s for the exit status (then SIGKILL).
    pub fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("ipmpd already stopped"))?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let exited = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            !matches!(child.try_wait(), Ok(None))
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            bail!("ipmpd ignored SIGTERM for 10 s; log:\n{}", self.log());
        }
        child.wait().context("wait for ipmpd")
    }

    /// Kills ipmpd with SIGKILL (a crash: pins stay) and reaps it.
    pub fn crash(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("kill ipmpd")?;
            child.wait().context("wait for ipmpd")?;
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            signal_and_wait(child, Signal::SIGTERM, Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_parses() {
        let out = "PING 198.51.100.1 (198.51.100.1) 56(84) bytes of data.\n\n\
                   --- 198.51.100.1 ping statistics ---\n\
                   100 packets transmitted, 97 received, 3% packet loss, time 120ms\n\
                   rtt min/avg/max/mdev = 0.01/0.02/0.05/0.01 ms\n";
        let s = parse_ping(out).unwrap();
        assert_eq!(
            s,
            PingStats {
                transmitted: 100,
                received: 97
            }
        );
        assert_eq!(s.lost(), 3);
        assert!((s.loss_percent() - 3.0).abs() < 1e-9);
        let errors = "5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4ms\n";
        assert_eq!(parse_ping(errors).unwrap().received, 0);
        assert_eq!(parse_ping("ping: connect: Network is unreachable"), None);
    }

    #[test]
    fn macs_round_trip() {
        assert_eq!(fmt_mac(&member_mac(2)), "02:00:00:00:00:12");
        assert_eq!(parse_mac("02:00:00:00:00:12"), Some(member_mac(2)));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:12:34"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:12"), None);
    }

    #[test]
    fn owner_pid_only_matches_lab_names() {
        assert_eq!(owner_pid("ipmpt1234-0-host"), Some(1234));
        assert_eq!(owner_pid("ipmpt1234"), None);
        assert_eq!(owner_pid("ipmptx-0-host"), None);
        assert_eq!(owner_pid("ipmp0"), None);
        assert_eq!(owner_pid("other"), None);
    }

    #[test]
    fn default_config_has_the_lab_group() {
        let mut cfg = default_config(LabSpec::default(), Path::new("/tmp/w"));
        cfg.member_mut("m2").standby = true;
        cfg.member_mut("m1").test_address = Some("198.51.100.21/24".into());
        cfg.failure_detection_time_ms = Some(1000);
        let back: toml::Table = cfg.to_toml().parse().unwrap();
        assert_eq!(back["control_socket"].as_str(), Some("/tmp/w/ipmpd.sock"));
        assert_eq!(back["failure_detection_time_ms"].as_integer(), Some(1000));
        assert!(back.get("link_flap_max_ups").is_none());
        let group = &back["group"][0];
        assert_eq!(group["name"].as_str(), Some("ipmp0"));
        assert_eq!(
            group["data_addresses"][1].as_str(),
            Some("2001:db8:1::10/64")
        );
        assert_eq!(group["routes"][1]["via"].as_str(), Some(ROUTER_V6));
        assert_eq!(group["announce"]["interval_ms"].as_integer(), Some(100));
        let members = group["member"].as_array().unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[2]["standby"].as_bool(), Some(true));
        assert_eq!(
            members[1]["test_address"].as_str(),
            Some("198.51.100.21/24")
        );
        assert!(members[0].get("test_address").is_none());
        let bare = default_config(
            LabSpec {
                router: false,
                ..LabSpec::default()
            },
            Path::new("/w"),
        );
        assert!(bare.group[0].routes.is_empty());
    }

    #[test]
    fn wait_until_reports_timeout_and_success() {
        let mut n = 0;
        assert!(wait_until(
            Duration::from_secs(1),
            Duration::from_millis(1),
            || {
                n += 1;
                n == 3
            }
        ));
        assert!(!wait_until(
            Duration::from_millis(20),
            Duration::from_millis(5),
            || false
        ));
    }
}
