//! Worst days: ipmpd killed with SIGKILL under traffic, a member's link flapping 1000 times in
//! 10 s, hostile control clients, and a log nobody reads. Each ends with the group healthy and
//! ipmpd alive, and prints its figures (loss, time to repair, CPU, control latency) on stderr.

pub mod common;

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::Setup;
use ipmp::control::{MAX_REQUEST_LINE, Response};
use ipmp_common::FlowKey;
use ipmp_tests::lab::{DATA_V4, Daemon, Lab, LabSpec, peer_v4, require_root, wait_until};

const POLL: Duration = Duration::from_millis(10);

fn spec(members: usize) -> LabSpec {
    LabSpec {
        members,
        peers: 1,
        router: false,
    }
}

/// CPU time (user + system) ipmpd has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let field = |i: usize| -> u64 { fields[i].parse().expect("a tick count in /proc/PID/stat") };
    let ticks = field(11) + field(12);
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Duration::from_millis(ticks * 1000 / hz)
}

/// `ipmpstat -g` says the group is healthy.
fn assert_group_ok(d: &Daemon) {
    let out = d.ipmpstat(&["-gP", "-o", "state"]).expect("ipmpstat");
    assert_eq!(out.trim(), "ok", "group state");
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// ipmpd's log lines at INFO and above (what an operator reads) from byte `from` on, without
/// colour codes.
fn operator_lines(d: &Daemon, from: usize) -> Vec<String> {
    d.log_synced()
        .get(from..)
        .unwrap_or_default()
        .lines()
        .map(strip_colour)
        .filter(|l| l.contains(" INFO ") || l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_colour(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// kill -9 under a 10 000 datagrams/s UDP stream and a TCP stream

const UDP_PORT: &str = "6100";
const UDP_SRC_PORT: u16 = 6101;
const TCP_PORT: &str = "6200";

/// The streams of one phase: UDP from the data address to the peer at 10 000/s, and one TCP
/// flow from the peer to the data address.
struct Streams {
    udp_rx: ipmp_tests::lab::LabTool,
    udp_tx: ipmp_tests::lab::LabTool,
    tcp_sink: ipmp_tests::lab::LabTool,
    tcp_flow: ipmp_tests::lab::LabTool,
    arrivals: std::path::PathBuf,
}

struct StreamReport {
    sent: u64,
    received: u64,
    duplicates: u64,
    /// (end of the longest gap between datagrams, its length).
    gap: Option<(SystemTime, Duration)>,
    tcp_sent: u64,
    tcp_received: u64,
    tcp_error: Option<String>,
}

impl Streams {
    fn start(lab: &Lab, secs: f64, tag: &str) -> Streams {
        let arrivals = lab.work_dir().join(format!("arrivals-{tag}.txt"));
        let arrivals_s = arrivals.to_string_lossy().into_owned();
        let wait = format!("{}", secs + 6.0);
        let mut udp_rx = lab
            .peer(0)
            .labtool(&[
                "udp-seq-recv",
                "--port",
                UDP_PORT,
                "--duration",
                &wait,
                "--idle-exit",
                "3",
                "--rcvbuf",
                "8388608",
                "--arrivals",
                &arrivals_s,
            ])
            .expect("udp-seq-recv");
        udp_rx.wait_ready(Duration::from_secs(5)).expect("udp rx");
        let mut tcp_sink = lab
            .host()
            .labtool(&[
                "tcp-sink",
                "--port",
                TCP_PORT,
                "--duration",
                &wait,
                "--connections",
                "1",
            ])
            .expect("tcp-sink");
        tcp_sink
            .wait_ready(Duration::from_secs(5))
            .expect("tcp sink");
        let secs_s = format!("{secs}");
        let src_port = UDP_SRC_PORT.to_string();
        let udp_tx = lab
            .host()
            .labtool(&[
                "udp-seq-send",
                "--to",
                &peer_v4(0),
                "--port",
                UDP_PORT,
                "--rate",
                "10000",
                "--duration",
                &secs_s,
                "--bind",
                DATA_V4,
                "--src-port",
                &src_port,
            ])
            .expect("udp-seq-send");
        let tcp_flow = lab
            .peer(0)
            .labtool(&[
                "tcp-flows",
                "--to",
                DATA_V4,
                "--port",
                TCP_PORT,
                "--src-port-base",
                "41000",
                "--rate",
                "2000000",
                "--duration",
                &secs_s,
            ])
            .expect("tcp-flows");
        Streams {
            udp_rx,
            udp_tx,
            tcp_sink,
            tcp_flow,
            arrivals,
        }
    }

    fn finish(self) -> StreamReport {
        let tx = self.udp_tx.finish().expect("udp-seq-send");
        let rx = self.udp_rx.finish().expect("udp-seq-recv");
        let flow = self.tcp_flow.finish_status().expect("tcp-flows").0;
        let sink = self.tcp_sink.finish_status().expect("tcp-sink").0;
        let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
        StreamReport {
            sent: n(&tx, "sent"),
            received: n(&rx, "received"),
            duplicates: n(&rx, "duplicates"),
            gap: longest_gap(&self.arrivals),
            tcp_sent: n(&flow["flows"][0], "bytes"),
            tcp_received: n(&sink, "total_bytes"),
            tcp_error: flow["flows"][0]["error"].as_str().map(str::to_owned),
        }
    }
}

/// The longest silence in an arrivals file (`SEQ UNIX_NS` lines): when it ended and how long.
fn longest_gap(path: &Path) -> Option<(SystemTime, Duration)> {
    let text = fs::read_to_string(path).ok()?;
    let mut times: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    times.sort_unstable();
    times.windows(2).max_by_key(|w| w[1] - w[0]).map(|w| {
        (
            UNIX_EPOCH + Duration::from_nanos(w[1]),
            Duration::from_nanos(w[1] - w[0]),
        )
    })
}

#[test]
fn worst_day_kill_9_under_traffic() {
    if !require_root("worst_day_kill_9_under_traffic") {
        return;
    }
    let lab = Lab::new(spec(2)).expect("lab");
    let toml = lab.config().to_toml();
    let d = lab.start_ipmpd(&toml).expect("ipmpd");
    let all_active = |d: &Daemon| {
        common::members(d).is_ok_and(|ms| ms.len() == 2 && ms.iter().all(|m| m.active))
    };
    assert!(wait_until(Duration::from_secs(10), POLL, || all_active(&d)));

    // Phase 1: killed for 2 s while nothing else changes: nothing is lost.
    let streams = Streams::start(&lab, 5.0, "plain");
    thread::sleep(Duration::from_secs(1));
    d.crash().expect("kill -9");
    let down = Instant::now();
    thread::sleep(Duration::from_secs(2));
    let d = lab.start_ipmpd(&toml).expect("ipmpd restart");
    let down_for = down.elapsed();
    let r = streams.finish();
    eprintln!(
        "kill -9: lost {} of {} datagrams (10 000/s) with ipmpd down {:.1} s and restarted; \
         {} duplicates; longest gap {:.1} ms; TCP {} of {} bytes ({})",
        r.sent - r.received.min(r.sent),
        r.sent,
        down_for.as_secs_f64(),
        r.duplicates,
        r.gap.map_or(0.0, |g| g.1.as_secs_f64() * 1000.0),
        r.tcp_received,
        r.tcp_sent,
        r.tcp_error.as_deref().unwrap_or("no error"),
    );
    assert!(r.sent >= 45_000, "the sender fell behind: {} sent", r.sent);
    assert_eq!(
        r.received, r.sent,
        "datagrams lost across kill -9 and restart"
    );
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.tcp_error, None, "the TCP flow broke");
    assert_eq!(r.tcp_received, r.tcp_sent, "TCP bytes lost");
    assert!(
        d.log_synced()
            .contains("adopting the existing IPMP interface")
    );

    // Phase 2: the member carrying the UDP flow loses its link while ipmpd is dead; restarted,
    // ipmpd finds it down and fails it over.
    let group_ifindex = lab.host().link("ipmp0").expect("ipmp0").ifindex;
    let maps = common::PinnedMaps::open(&lab.pin_dir()).expect("pinned maps");
    let peer: std::net::Ipv4Addr = peer_v4(0).parse().unwrap();
    let data: std::net::Ipv4Addr = DATA_V4.parse().unwrap();
    let key = FlowKey::v4(
        data.octets(),
        peer.octets(),
        17,
        UDP_SRC_PORT,
        UDP_PORT.parse().unwrap(),
    );
    let carrier = maps
        .table(group_ifindex)
        .expect("bucket table")
        .member_of(&key);
    let victim = lab
        .members()
        .iter()
        .position(|m| lab.host().link(m).is_ok_and(|l| l.ifindex == carrier))
        .expect("the UDP flow's member is a lab member");
    let victim_name = lab.member(victim);
    let streams = Streams::start(&lab, 6.0, "failed");
    thread::sleep(Duration::from_secs(1));
    d.crash().expect("kill -9");
    thread::sleep(Duration::from_millis(500));
    lab.cut_link(victim).expect("cut the link");
    thread::sleep(Duration::from_millis(1500));
    let restart = Instant::now();
    let restart_wall = SystemTime::now();
    let d = lab.start_ipmpd(&toml).expect("ipmpd restart");
    let answering = restart.elapsed();
    let failed_over = || {
        let row = common::member(&d, &victim_name);
        row.state == "failed"
            && !row.active
            && maps
                .table(group_ifindex)
                .is_ok_and(|t| t.member_of(&key) != carrier)
    };
    assert!(
        wait_until(Duration::from_secs(5), POLL, failed_over),
        "{victim_name} not failed over after the restart:\n{}",
        d.log()
    );
    let to_failover = restart.elapsed();
    let r = streams.finish();
    let resumed = r
        .gap
        .and_then(|(end, _)| end.duration_since(restart_wall).ok())
        .unwrap_or_default();
    eprintln!(
        "kill -9 + link cut while down: {victim_name} failed over {:.2} s after the restart \
         (ipmpd answering after {:.2} s; UDP flowing again {:.2} s after the restart); lost {} \
         of {} datagrams (longest gap {:.2} s, from the cut: the outage; the sender was held \
         back meanwhile, so few were dropped); TCP {} of {} bytes ({})",
        to_failover.as_secs_f64(),
        answering.as_secs_f64(),
        resumed.as_secs_f64(),
        r.sent - r.received.min(r.sent),
        r.sent,
        r.gap.map_or(0.0, |g| g.1.as_secs_f64()),
        r.tcp_received,
        r.tcp_sent,
        r.tcp_error.as_deref().unwrap_or("no error"),
    );
    assert!(
        to_failover <= Duration::from_secs(1),
        "failed over {to_failover:?} after the restart (bound 1 s)"
    );
    assert!(
        resumed <= Duration::from_secs(1),
        "UDP resumed {resumed:?} after the restart (bound 1 s)"
    );
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.tcp_error, None, "the TCP flow broke");
    assert_eq!(r.tcp_received, r.tcp_sent, "TCP bytes lost");
    // Healthy again once the link is back.
    lab.restore_link(victim).expect("restore the link");
    assert!(
        wait_until(Duration::from_secs(10), POLL, || all_active(&d)),
        "{victim_name} not repaired:\n{}",
        d.log()
    );
}

// ---------------------------------------------------------------------------------------------
// A member's link flapping 1000 times in 10 s

#[test]
fn worst_day_link_flapping_1000_times_in_10_s() {
    if !require_root("worst_day_link_flapping_1000_times_in_10_s") {
        return;
    }
    // Longer than any pause in the storm, shorter than FDT.
    const WINDOW_MS: u64 = 3000;
    let s = Setup::start(spec(2), |c| {
        c.link_flap_max_ups = Some(2);
        c.link_flap_window_ms = Some(WINDOW_MS);
    })
    .expect("lab with ipmpd");
    let pid = s.daemon.pid().expect("ipmpd pid");
    // 50 batches of 20 down/up cycles, one batch every 200 ms; the last leaves the link up.
    let batch: String = (0..20)
        .map(|_| format!("link set {p} down\nlink set {p} up\n", p = Lab::port(0)))
        .collect();
    let batch_path = s.lab.work_dir().join("flap.batch");
    fs::write(&batch_path, batch).expect("write the batch file");
    let batch_s = batch_path.to_string_lossy().into_owned();
    let log_from = s.daemon.log().len();
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let mut failed_seen = false;
    for i in 0..50u32 {
        s.lab
            .switch()
            .run(&["ip", "-batch", &batch_s])
            .expect("ip -batch");
        if i == 25 {
            failed_seen = common::member(&s.daemon, "m0").state == "failed";
        }
        let next = Duration::from_millis(200) * (i + 1);
        thread::sleep(next.saturating_sub(started.elapsed()));
    }
    let storm = started.elapsed();
    let last_flap = Instant::now();
    let repaired = s.wait_members(Duration::from_secs(15), |ms| {
        ms.iter().all(|m| m.active && m.state == "ok")
    });
    let to_repair = last_flap.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let wall = started.elapsed();
    let lines = operator_lines(&s.daemon, log_from);
    // What the kernel reported: it folds quick changes of a carrier into fewer events.
    let events = s
        .daemon
        .log()
        .get(log_from..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("link state changed") && l.contains("m0"))
        .count();
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    let episodes = lines
        .iter()
        .filter(|l| l.contains("link flapping, repair withheld"))
        .count();
    eprintln!(
        "link flap: 1000 down/up cycles of m0 in {:.1} s ({events} link changes reported to \
         ipmpd); ipmpd CPU {:.2} s over {:.1} s \
         ({:.1} % of one core); {} log lines at INFO or above, {episodes} flapping \
         episode(s); m0 repaired {:.2} s after the \
         last flap (hold-down window {WINDOW_MS} ms)",
        storm.as_secs_f64(),
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        share * 100.0,
        lines.len(),
        to_repair.as_secs_f64(),
    );
    for l in &lines {
        eprintln!("  | {l}");
    }
    repaired.expect("m0 repaired after the storm");
    assert!(alive(pid), "ipmpd died in the storm");
    assert!(failed_seen, "m0 was not failed in the middle of the storm");
    assert!(
        share < 0.5,
        "ipmpd used {:.0} % of a core in the storm",
        share * 100.0
    );
    // Not one per toggle: per episode the hold-down's quick repairs, one withheld line, and
    // the repair that ends it (a pause in the storm longer than the window ends an episode).
    let mut announced = false;
    for l in &lines {
        if l.contains("m0 link flapping, repair withheld") {
            assert!(
                !announced,
                "a second flapping line in one episode:\n{lines:#?}"
            );
            announced = true;
        } else if l.contains("m0 repaired") {
            announced = false;
        }
    }
    assert!(episodes >= 1, "the storm was never held down");
    assert!(lines.len() <= 80, "{} log lines for one storm", lines.len());
    // Correct within the hold-down window after the last flap, and within FDT (10 s).
    assert!(
        to_repair < Duration::from_millis(WINDOW_MS) + Duration::from_secs(2),
        "repaired {to_repair:?} after the last flap"
    );
    assert_group_ok(&s.daemon);
}

// ---------------------------------------------------------------------------------------------
// Hostile control clients

/// One status request on a fresh connection from this process, timed: ipmpd's own answer time,
/// without a tool's start-up.
fn raw_status(socket: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let mut c = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"{\"request\":\"status\"}\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut line = String::new();
    BufReader::new(c)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    match serde_json::from_str::<Response>(&line) {
        Ok(Response::Status(_)) => Ok(started.elapsed()),
        other => Err(format!("not a status: {other:?}")),
    }
}

/// What a hostile connection was told: the error message, or `None` for another answer.
fn read_error(c: UnixStream, timeout: Duration) -> Result<Option<String>, String> {
    c.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(c)
        .read_line(&mut line)
        .map_err(|e| format!("no answer: {e}"))?;
    match serde_json::from_str::<Response>(&line) {
        Ok(Response::Error { message }) => Ok(Some(message)),
        Ok(_) => Ok(None),
        Err(e) => Err(format!("{e}: {line:?}")),
    }
}

/// One round of the watcher: two status requests at once.
struct Round {
    at: Instant,
    /// The faster answer: how long ipmpd took.
    ipmpd: Duration,
    slowest: Duration,
}

fn raise_fd_limit(to: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to fill and then read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < to {
            lim.rlim_cur = to.min(lim.rlim_max.max(to));
            lim.rlim_max = lim.rlim_max.max(to);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn worst_day_hostile_control_clients() {
    if !require_root("worst_day_hostile_control_clients") {
        return;
    }
    let s = Setup::start(spec(2), |_| {}).expect("lab with ipmpd");
    // For this process's 1000 connections; ipmpd keeps the limit it started with.
    raise_fd_limit(4096);
    let pid = s.daemon.pid().expect("ipmpd pid");
    let socket = s.daemon.socket().to_path_buf();
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        // The well-behaved client: every 10 ms two status requests at once from two threads,
        // and ipmpstat now and then. The faster of the two is ipmpd's answer time: a stall of
        // ipmpd delays both, a thread of this process scheduled late only one.
        let watcher = scope.spawn(|| {
            let (go, go_rx) = mpsc::channel::<()>();
            let (done_tx, done) = mpsc::channel();
            let socket = &socket;
            thread::scope(|inner| {
                inner.spawn(move || {
                    while go_rx.recv().is_ok() {
                        let _ = done_tx.send(raw_status(socket));
                    }
                });
                let mut rounds = Vec::new();
                let mut tool = Vec::new();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let _ = go.send(());
                    let mine = raw_status(socket);
                    let theirs = done.recv().unwrap_or_else(|_| Err("partner gone".into()));
                    match (mine, theirs) {
                        (Ok(a), Ok(b)) => rounds.push(Round {
                            at,
                            ipmpd: a.min(b),
                            slowest: a.max(b),
                        }),
                        (a, b) => failures.extend([a.err(), b.err()].into_iter().flatten()),
                    }
                    if rounds.len() % 10 == 0 {
                        let t = Instant::now();
                        match s.daemon.ipmpstat(&["-g"]) {
                            Ok(_) => tool.push(t.elapsed()),
                            Err(e) => failures.push(format!("ipmpstat: {e}")),
                        }
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                drop(go);
                (rounds, tool, failures)
            })
        });

        // A second without attack: the machine's own noise, for comparison.
        thread::sleep(Duration::from_secs(1));
        let baseline_end = Instant::now();

        // 1000 connections at once, silent; then each asks for the status.
        // (The clients below come after it: the flood would give them the slots' rule, not
        // the timeouts, to meet.)
        let opened = Instant::now();
        let conns: Vec<UnixStream> = (0..1000)
            .map(|_| UnixStream::connect(&socket).expect("connect"))
            .collect();
        let open_took = opened.elapsed();
        let flood = opened;
        let (mut answered, mut refused, mut other) = (0, 0, Vec::new());
        for mut c in conns {
            // An evicted connection may be closed already; its error line is still there.
            let _ = c.write_all(b"{\"request\":\"status\"}\n");
            match read_error(c, Duration::from_secs(10)) {
                Ok(None) => answered += 1,
                Ok(Some(m)) if m.contains("closed to make room") || m.contains("all busy") => {
                    refused += 1;
                }
                Ok(Some(m)) => other.push(m),
                Err(e) => other.push(e),
            }
        }

        let flood_end = Instant::now();

        // One byte a second.
        let slow = scope.spawn(|| {
            let c = UnixStream::connect(&socket).expect("connect");
            let mut w = c.try_clone().expect("clone");
            let started = Instant::now();
            let writer = thread::spawn(move || {
                for b in b"{\"request\":\"status\"}" {
                    if w.write_all(&[*b]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_secs(1));
                }
            });
            let told = read_error(c, Duration::from_secs(15));
            let took = started.elapsed();
            let _ = writer.join();
            (told, took)
        });

        // A 100 MiB request.
        let big = scope.spawn(|| {
            let c = UnixStream::connect(&socket).expect("connect");
            let mut w = c.try_clone().expect("clone");
            let writer = thread::spawn(move || {
                let chunk = vec![b'x'; 1 << 20];
                let mut written = 0usize;
                while written < 100 << 20 {
                    match w.write(&chunk) {
                        Ok(n) => written += n,
                        Err(_) => break,
                    }
                }
                written
            });
            let told = read_error(c, Duration::from_secs(15));
            (told, writer.join().unwrap_or(usize::MAX))
        });

        // Invalid and truncated requests.
        let invalid = scope.spawn(|| {
            let mut out = Vec::new();
            let cases: [(&str, &[u8], bool); 4] = [
                ("not JSON", b"hello\n", false),
                ("not UTF-8", b"\xff\xfe\x00\x01\n", false),
                ("unknown request", b"{\"request\":\"format-disk\"}\n", false),
                ("truncated, then EOF", b"{\"request\":\"sta", true),
            ];
            for (what, bytes, eof) in cases {
                let mut c = UnixStream::connect(&socket).expect("connect");
                c.write_all(bytes).expect("write");
                if eof {
                    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
                }
                out.push((what, read_error(c, Duration::from_secs(5))));
            }
            // Truncated, then silence: the request timeout.
            let mut c = UnixStream::connect(&socket).expect("connect");
            c.write_all(b"{\"request\":\"sta").expect("write");
            out.push((
                "truncated, then silence",
                read_error(c, Duration::from_secs(15)),
            ));
            out
        });

        let (slow_told, slow_took) = slow.join().expect("slow client");
        let (big_told, big_written) = big.join().expect("big client");
        let invalid = invalid.join().expect("invalid clients");
        stop.store(true, Ordering::Relaxed);
        let (rounds, mut tool, failures) = watcher.join().expect("watcher");
        let max_where = |keep: &dyn Fn(&Round) -> bool, f: fn(&Round) -> Duration| {
            rounds.iter().filter(|r| keep(r)).map(f).max()
        };
        let baseline_max = max_where(&|r| r.at < baseline_end, |r| r.ipmpd);
        // The flood: from the first connection until each of the 1000 was answered.
        let flood_max = max_where(&|r| r.at >= flood && r.at <= flood_end, |r| r.ipmpd);
        let attack = |r: &Round| r.at >= baseline_end;
        let slowest_single = max_where(&attack, |r| r.slowest);
        let mut raw: Vec<Duration> = rounds
            .iter()
            .filter(|r| attack(r))
            .map(|r| r.ipmpd)
            .collect();
        raw.sort_unstable();
        tool.sort_unstable();
        let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
        eprintln!(
            "hostile control clients: 1000 connections opened in {:.0} ms: {answered} \
             answered, {refused} closed with an error to make room, {} otherwise",
            open_took.as_secs_f64() * 1000.0,
            other.len()
        );
        eprintln!(
            "  one byte a second: {slow_told:?} after {:.1} s; 100 MiB request: {big_told:?} \
             after {:.2} MiB taken",
            slow_took.as_secs_f64(),
            big_written as f64 / f64::from(1 << 20)
        );
        for (what, told) in &invalid {
            eprintln!("  {what}: {told:?}");
        }
        eprintln!(
            "  meanwhile, ipmpd's answer to another client's status request (the faster of two \
             at once, {} times): median {:.1} ms, 99 % {:.1} ms, max {:.1} ms (max {:.1} ms \
             during the flood; \
             max {:.1} ms in a second before the attacks; slowest single request {:.1} ms, \
             this box's scheduling included); {} ipmpstat -g runs: median {:.0} ms, max {:.0} \
             ms wall (process start-up included); {} failed",
            raw.len(),
            ms(raw.get(raw.len() / 2)),
            ms(raw.get(raw.len() * 99 / 100)),
            ms(raw.last()),
            ms(flood_max.as_ref()),
            ms(baseline_max.as_ref()),
            ms(slowest_single.as_ref()),
            tool.len(),
            ms(tool.get(tool.len() / 2)),
            ms(tool.last()),
            failures.len()
        );

        assert!(alive(pid), "ipmpd died");
        assert!(other.is_empty(), "unexpected answers: {other:?}");
        assert_eq!(answered + refused, 1000);
        let slow_told = slow_told
            .expect("the slow client got an answer")
            .unwrap_or_default();
        assert!(slow_told.contains("request not complete"), "{slow_told}");
        assert!(slow_took < Duration::from_secs(10), "{slow_took:?}");
        let big_told = big_told
            .expect("the big request got an answer")
            .unwrap_or_default();
        assert_eq!(
            big_told,
            format!("request line longer than {MAX_REQUEST_LINE} bytes")
        );
        assert!(big_written < 16 << 20, "{big_written} bytes taken");
        for (what, told) in invalid {
            let told = told
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .unwrap_or_else(|| panic!("{what}: answered as if valid"));
            let expected = if what == "truncated, then silence" {
                "request not complete"
            } else {
                "malformed request"
            };
            assert!(told.contains(expected), "{what}: {told}");
        }
        assert!(failures.is_empty(), "the watcher was refused: {failures:?}");
        assert!(raw.len() >= 50, "only {} status samples", raw.len());
        // ipmpd's answer (the faster of two requests at once, so that this process's own
        // scheduling does not count) within 100 ms throughout: before, during and after the
        // flood, the slow client, the big request and the invalid ones. Its log is written
        // by a thread of its own, so a burst of debug lines cannot hold the loop up.
        let flood_max = flood_max.unwrap_or_default();
        assert!(
            flood_max < Duration::from_millis(100),
            "a status request took {flood_max:?} during the flood (bound 100 ms)"
        );
        let worst = raw.last().copied().unwrap_or_default();
        assert!(
            worst < Duration::from_millis(100),
            "a status request took {worst:?} under attack (bound 100 ms); 99 % within {:?}",
            raw[raw.len() * 99 / 100]
        );
    });
    assert_group_ok(&s.daemon);
}

// ---------------------------------------------------------------------------------------------
// A log nobody reads

/// `sh -ec STDERR_FIFO stderr FIFO ARGV...`: ipmpd's stdout and stderr go into FIFO, which
/// ipmpd itself holds open for reading (fd 3) and nobody reads — a journal that stalled, a
/// supervisor that never drains its pipe. Once 64 KiB are queued every write(2) blocks.
const STDERR_FIFO: &str = r#"
fifo=$1; shift
mkfifo "$fifo"
exec 3<>"$fifo"
exec >"$fifo" 2>&1
exec "$@"
"#;

/// Bytes queued in the pipe behind `fifo` (FIONREAD), read without draining it.
fn queued_bytes(fifo: &Path) -> usize {
    use std::os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _};
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .expect("open the fifo");
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    usize::try_from(n).unwrap_or_default()
}

#[test]
fn worst_day_a_log_nobody_reads() {
    if !require_root("worst_day_a_log_nobody_reads") {
        return;
    }
    const LISTEN: &str = "127.0.0.1:9474";
    let lab = Lab::new(spec(2)).expect("lab");
    let mut config = lab.config();
    config.metrics = Some(ipmp_tests::lab::MetricsConfig {
        listen: LISTEN.into(),
    });
    let fifo = lab.work_dir().join("stderr.fifo");
    let fifo_s = fifo.to_string_lossy().into_owned();
    let d = ipmp_tests::lab::start_ipmpd_wrapped(
        &lab,
        &config.to_toml(),
        None,
        &lab.pin_dir(),
        &["sh", "-ec", STDERR_FIFO, "stderr", &fifo_s],
        &[],
    )
    .expect("ipmpd with its stderr into a fifo");
    let pid = d.pid().expect("ipmpd pid");
    let ready = || common::members(&d).is_ok_and(|ms| ms.len() == 2 && ms.iter().all(|m| m.active));
    assert!(
        wait_until(Duration::from_secs(10), POLL, ready),
        "members not active"
    );

    // Status requests (each logs a line at debug) from 4 clients at once until the pipe is
    // full — from then on a blocking log would stop ipmpd — and on until the writer's queue
    // is full too and lines are dropped.
    let url = format!("http://{LISTEN}/metrics");
    let dropped = || {
        let scrape = lab
            .host()
            .run(&["curl", "-sS", "--max-time", "5", &url])
            .expect("scrape");
        ipmp_tests::openmetrics::parse(&scrape)
            .expect("the scrape parses")
            .value("ipmp_log_lines_dropped_total", &[])
            .unwrap_or_else(|| panic!("no ipmp_log_lines_dropped_total in\n{scrape}"))
    };
    let started = Instant::now();
    let mut requests = 0u64;
    let mut full_after = None;
    while started.elapsed() < Duration::from_secs(60) {
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..250 {
                        raw_status(d.socket()).expect("status while the log backs up");
                    }
                });
            }
        });
        requests += 1000;
        if full_after.is_none() && queued_bytes(&fifo) >= 60 << 10 {
            full_after = Some((requests, started.elapsed()));
        }
        if full_after.is_some() && dropped() > 0.0 {
            break;
        }
    }
    let filled_in = started.elapsed();
    let full = queued_bytes(&fifo);
    // ipmpd still answers, fails m0 over and repairs it.
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(raw_status(d.socket()).expect("status with a full stderr"));
        thread::sleep(POLL);
    }
    answers.sort_unstable();
    let worst = answers.last().copied().unwrap_or_default();
    let m0_failed = || common::member(&d, "m0").state == "failed";
    let m0_ok = || {
        let m = common::member(&d, "m0");
        m.state == "ok" && m.active
    };
    lab.switch()
        .run(&["ip", "link", "set", &Lab::port(0), "down"])
        .expect("port down");
    let down = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), POLL, m0_failed),
        "m0 not failed with stderr blocked"
    );
    let failed_in = down.elapsed();
    let ping = lab
        .peer(0)
        .ping(DATA_V4, 5, Duration::from_millis(50))
        .expect("ping");
    lab.switch()
        .run(&["ip", "link", "set", &Lab::port(0), "up"])
        .expect("port up");
    assert!(
        wait_until(Duration::from_secs(10), POLL, m0_ok),
        "m0 not repaired with stderr blocked"
    );
    let dropped = dropped();
    let (full_requests, full_in) = full_after.unwrap_or_default();
    eprintln!(
        "a log nobody reads: stderr pipe full ({full} bytes queued) after {full_requests} \
         status requests ({:.1} s), log lines dropped after {requests} ({:.1} s); then: status \
         answers median {:.1} ms, max {:.1} ms; m0 failed {:.0} ms after its port went down, \
         ping to the data address lost {} of {}; {dropped:.0} log lines dropped",
        full_in.as_secs_f64(),
        filled_in.as_secs_f64(),
        answers[answers.len() / 2].as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0,
        failed_in.as_secs_f64() * 1000.0,
        ping.lost(),
        ping.transmitted,
    );
    assert!(
        full >= 60 << 10,
        "the pipe never filled: {full} bytes queued"
    );
    assert!(alive(pid), "ipmpd died");
    assert!(worst < Duration::from_secs(1), "status took {worst:?}");
    assert_eq!(ping.lost(), 0, "{ping:?}");
    assert!(
        dropped > 0.0,
        "no line was dropped: was the writer queue ever full?"
    );
}
