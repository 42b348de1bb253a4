//! The systemd service: `dist/ipmpd.service` passes `systemd-analyze verify`, its sandbox scores
//! an exposure of at most 3.0 in `systemd-analyze security`, and ipmpd, run with only the
//! unit's capabilities, its read-only view of the kernel's tunables and a notify socket the test
//! owns, says READY=1 only once the data plane is in place, feeds the watchdog, reports state
//! changes in STATUS=, reloads with RELOADING=1 / READY=1 and says STOPPING=1 on SIGTERM.

pub mod common;

use std::{
    fs,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ipmp_tests::lab::{self, DATA_V4, Lab, LabSpec, bin_path, require_root};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// The unit as shipped.
fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/ipmpd.service")
}

fn unit_text() -> String {
    fs::read_to_string(unit_path()).expect("read dist/ipmpd.service")
}

/// The values of `key=` in the unit, in order.
fn unit_values(key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit_text()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

/// A directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ipmp-{what}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("run systemd-analyze (package systemd; `cargo xtask setup` installs it)")
}

/// `verify` checks that ExecStart= binaries exist, so a copy of the unit points at the built
/// ipmpd; everything else is the shipped unit.
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let ipmpd = bin_path("ipmpd");
    assert!(
        ipmpd.is_file(),
        "{} missing: build the workspace first",
        ipmpd.display()
    );
    let text = unit_text();
    assert!(
        text.contains("/usr/sbin/ipmpd"),
        "the unit runs /usr/sbin/ipmpd"
    );
    let dir = TempDir::new("unit");
    let copy = dir.0.join("ipmpd.service");
    fs::write(
        &copy,
        text.replace("/usr/sbin/ipmpd", &ipmpd.to_string_lossy()),
    )
    .expect("write the unit's copy");
    let out = systemd_analyze(&["verify", &copy.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {} ({}):\n{stderr}{}",
        copy.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_unit_is_sandboxed_to_an_exposure_of_at_most_3() {
    let unit = unit_path();
    let out = systemd_analyze(&["security", "--offline=true", &unit.to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ipmpd.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure figure in systemd-analyze security's output ({}):\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    println!("systemd-analyze security: exposure {exposure} (of 10; at most 3.0 wanted)");
    assert!(exposure <= 3.0, "exposure {exposure} > 3.0:\n{text}");
    assert_eq!(unit_values("Type"), ["notify"]);
    assert!(!unit_values("WatchdogSec").is_empty(), "no WatchdogSec=");
}

/// The unit's CapabilityBoundingSet= as a setpriv list (`-all,+bpf,...`) and as a CapEff mask.
fn unit_capabilities() -> (String, u64) {
    let caps = unit_values("CapabilityBoundingSet");
    assert_eq!(caps.len(), 1, "one CapabilityBoundingSet= line: {caps:?}");
    let mut mask = 0u64;
    for cap in caps[0].split_whitespace() {
        let bit = match cap {
            "CAP_NET_ADMIN" => 12,
            "CAP_NET_RAW" => 13,
            "CAP_SYS_ADMIN" => 21,
            "CAP_PERFMON" => 38,
            "CAP_BPF" => 39,
            other => panic!("the test does not know {other}: add its bit"),
        };
        mask |= 1 << bit;
    }
    (common::setpriv_caps(caps[0].split_whitespace()), mask)
}

/// `sh -ec SANDBOX sandbox CAPS IPMPD ARGS...`, in a new mount namespace: the unit's
/// ProtectKernelTunables= with ReadWritePaths=/proc/sys/net /sys/fs/bpf as systemd builds it
/// (each writable path bind-mounted onto itself before its parent is made read-only), then
/// ipmpd with only CAPS (`setpriv --bounding-set`) and no new privileges.
const SANDBOX: &str = r#"
caps=$1; shift
mount --bind /proc/sys /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys
exec setpriv --bounding-set "$caps" --no-new-privs -- "$@"
"#;

/// The log line of m0's failure when its link is cut: the human text, then the fields.
const M0_FAILED: &str = "m0 failed (LinkDown) group=ipmp0 member=m0 from=ok to=failed \
                         reason=\"link down on m0\"";

/// ipmpd started by the test (with env and setpriv the lab's helper does not take); SIGKILL on
/// drop if still running.
struct Ipmpd {
    child: Child,
    log: PathBuf,
}

impl Ipmpd {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }
}

impl Drop for Ipmpd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The notify socket's datagrams, as systemd would receive them.
struct NotifySocket {
    socket: UnixDatagram,
    /// Every datagram so far, in order.
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        NotifySocket {
            socket,
            seen: Vec::new(),
        }
    }

    /// Datagrams until one satisfies `want` (returned) or `timeout` passes (`None`).
    fn until(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket
                .set_read_timeout(Some(left))
                .expect("socket timeout");
            let Ok(len) = self.socket.recv(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..len]).into_owned();
            self.seen.push(msg.clone());
            if want(&msg) {
                return Some(msg);
            }
        }
    }

    /// The first datagram within `timeout` with the line `line`; panics with what came and
    /// ipmpd's `log` otherwise.
    fn expect_line(&mut self, line: &str, timeout: Duration, log: impl Fn() -> String) -> String {
        self.until(timeout, |m| m.lines().any(|l| l == line))
            .unwrap_or_else(|| {
                panic!(
                    "no {line} within {timeout:?}; seen {:?}; ipmpd log:\n{}",
                    self.seen,
                    log()
                )
            })
    }

    fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}

fn status_of(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("STATUS="))
}

#[test]
fn ipmpd_under_a_notify_socket_with_the_units_capabilities() {
    if !require_root("ipmpd_under_a_notify_socket_with_the_units_capabilities") {
        return;
    }
    let lab = Lab::new(LabSpec {
        members: 3,
        peers: 1,
        router: true,
    })
    .expect("lab");
    let config = lab.work_dir().join("ipmpd.toml");
    fs::write(&config, lab.config().to_toml()).expect("write the config");
    let notify_path = lab.work_dir().join("notify.sock");
    let mut notify = NotifySocket::bind(&notify_path);
    let log = lab.work_dir().join("ipmpd.log");
    let out = fs::File::create(&log).expect("create the log");
    let err = out.try_clone().expect("clone the log handle");
    let (caps, cap_mask) = unit_capabilities();
    let (ipmpd, config_s, pins) = (
        bin_path("ipmpd").to_string_lossy().into_owned(),
        config.to_string_lossy().into_owned(),
        lab.pin_dir().to_string_lossy().into_owned(),
    );
    // Root with only the unit's capabilities and NoNewPrivileges, as systemd runs it, in a
    // mount namespace with the unit's view of the kernel's tunables: /proc/sys and /sys
    // read-only (ProtectKernelTunables=) except /proc/sys/net and bpffs (ReadWritePaths=).
    let mut argv = common::PRIVATE_MOUNTS.to_vec();
    argv.extend([
        "sh",
        "-ec",
        SANDBOX,
        "sandbox",
        &caps,
        &ipmpd,
        "--config",
        &config_s,
        "--pin-dir",
        &pins,
    ]);
    let child = lab
        .host()
        .command(&argv)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start ipmpd under setpriv");
    let mut d = Ipmpd { child, log };

    let ready = notify.expect_line("READY=1", Duration::from_secs(15), || d.log());
    // Right at READY=1: programs attached and pinned, the data address placed, traffic flowing.
    let links = lab.pin_dir().join("links");
    for pin in [
        "tc_egress@ipmp0",
        "tc_ingress@m0",
        "tc_ingress@m1",
        "tc_ingress@m2",
    ] {
        assert!(
            links.join(pin).exists(),
            "READY=1 before {pin} was pinned; log:\n{}",
            d.log()
        );
    }
    let (_, egress) = common::tcx_programs(lab.host(), "ipmp0").expect("TCX on ipmp0");
    assert!(
        !egress.is_empty(),
        "READY=1 before ipmp0's egress program was attached"
    );
    let addrs = lab.host().addrs("ipmp0").expect("addresses of ipmp0");
    assert!(
        addrs.iter().any(|a| a.starts_with(&format!("{DATA_V4}/"))),
        "READY=1 before {DATA_V4} was on ipmp0: {addrs:?}"
    );
    let ping = lab
        .peer(0)
        .ping(DATA_V4, 3, Duration::from_millis(100))
        .expect("ping the data address");
    assert_eq!(
        ping.lost(),
        0,
        "the data address does not answer at READY=1: {ping:?}"
    );
    assert_eq!(
        status_of(&ready),
        Some("ipmp0: ok, 3/3 members usable"),
        "{ready:?}"
    );

    // Only the unit's capabilities, in the unit's view of /proc/sys and /sys.
    let mounts =
        fs::read_to_string(format!("/proc/{}/mountinfo", d.child.id())).expect("mountinfo");
    for (point, mode) in [
        ("/proc/sys", "ro"),
        ("/proc/sys/net", "rw"),
        ("/sys", "ro"),
        ("/sys/fs/bpf", "rw"),
    ] {
        assert!(
            mounts.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(4) == Some(&point)
                    && f.get(5).is_some_and(|o| o.split(',').any(|o| o == mode))
            }),
            "ipmpd does not see {point} {mode}:\n{mounts}"
        );
    }
    let status = fs::read_to_string(format!("/proc/{}/status", d.child.id())).expect("status");
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff");
    assert_eq!(eff, cap_mask, "ipmpd's effective capabilities {eff:x}");

    // The watchdog every WATCHDOG_USEC/2 = 200 ms: at least 3 in 1.5 s, however loaded.
    let start = notify.count("WATCHDOG=1");
    let _ = notify.until(Duration::from_millis(1500), |_| false);
    let fed = notify.count("WATCHDOG=1") - start;
    assert!((3..=12).contains(&fed), "{fed} WATCHDOG=1 in 1.5 s");

    // A member's link cut: a new STATUS= names it, and the log has the structured line.
    lab.cut_link(0).expect("cut m0");
    let degraded = notify.until(Duration::from_secs(5), |m| {
        status_of(m).is_some_and(|s| s.starts_with("ipmp0: degraded"))
    });
    assert_eq!(
        degraded.as_deref().and_then(status_of),
        Some("ipmp0: degraded, 2/3 members usable; m0 failed (link down)"),
        "seen {:?}",
        notify.seen
    );
    // The log is written by a thread of ipmpd's own: the line may follow the STATUS= by a
    // moment.
    let logged = || d.log().lines().any(|l| l.ends_with(M0_FAILED));
    let _ = lab::wait_until(Duration::from_secs(2), Duration::from_millis(10), logged);
    let log = d.log();
    assert!(
        log.lines().any(|l| l.ends_with(M0_FAILED)),
        "no structured line for m0's failure:\n{log}"
    );
    lab.restore_link(0).expect("restore m0");
    assert!(
        notify
            .until(Duration::from_secs(5), |m| status_of(m)
                == Some("ipmp0: ok, 3/3 members usable"))
            .is_some(),
        "no STATUS= back to ok; seen {:?}",
        notify.seen
    );

    // Reload: RELOADING=1, then the re-executed ipmpd (same pid, same capabilities) READY=1.
    assert_eq!(
        notify.count("READY=1"),
        1,
        "READY=1 repeated: {:?}",
        notify.seen
    );
    kill(d.pid(), Signal::SIGHUP).expect("SIGHUP");
    notify.expect_line("RELOADING=1", Duration::from_secs(5), || d.log());
    notify.expect_line("READY=1", Duration::from_secs(15), || d.log());
    assert_eq!(
        notify.count("READY=1"),
        2,
        "one READY=1 per start: {:?}",
        notify.seen
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    kill(d.pid(), Signal::SIGTERM).expect("SIGTERM");
    notify.expect_line("STOPPING=1", Duration::from_secs(5), || d.log());
    let exited = lab::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        !matches!(d.child.try_wait(), Ok(None))
    });
    assert!(exited, "ipmpd still runs 10 s after SIGTERM");
    let status = d.child.wait().expect("wait for ipmpd");
    assert!(
        status.success(),
        "ipmpd exited with {status}; log:\n{}",
        d.log()
    );
}
