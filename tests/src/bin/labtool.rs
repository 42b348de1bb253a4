//! labtool: small, time-bounded traffic generators and sinks run inside the lab namespaces.
//!
//! Servers print `ready` on stderr once they listen; every subcommand prints one JSON report
//! line on stdout when it ends. Nothing runs longer than its `--duration` (plus a short drain).

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, setsockopt, socket, sockopt,
};
use serde_json::json;

#[derive(Parser)]
#[command(about = "traffic tool for the ipmp netns lab")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Accept TCP connections and discard their data; report bytes per connection.
    TcpSink {
        #[arg(long)]
        port: u16,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
        /// Stop early once this many connections came and all of them closed.
        #[arg(long)]
        connections: Option<usize>,
        /// Local address to listen on (default: all, v4 and v6).
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Accept only what arrives on this interface (SO_BINDTODEVICE).
        #[arg(long)]
        device: Option<String>,
    },
    /// N concurrent TCP flows from fixed source ports, each at a modest rate.
    TcpFlows {
        #[arg(long)]
        to: IpAddr,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 1)]
        flows: u16,
        /// Flow i uses source port base + i.
        #[arg(long)]
        src_port_base: u16,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Source address to bind (e.g. a data address).
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Bytes per second per flow.
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        /// How long a flow may wait for the sink to confirm the end of its data.
        #[arg(long, default_value_t = 10.0)]
        drain: f64,
    },
    /// Sequenced UDP datagrams at a fixed rate.
    UdpSeqSend {
        #[arg(long)]
        to: IpAddr,
        #[arg(long)]
        port: u16,
        /// Datagrams per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Fixed source port (0: any).
        #[arg(long, default_value_t = 0)]
        src_port: u16,
        /// Send through this interface (SO_BINDTODEVICE; multicast leaves there too).
        #[arg(long)]
        device: Option<String>,
    },
    /// Send ICMP echo replies with guessed ids, sequences and payloads to an IPv4 address
    /// (forged probe replies); prints {"sent": N}.
    IcmpSpray {
        #[arg(long)]
        to: std::net::Ipv4Addr,
        /// Spoofed source address (IP_HDRINCL); the sender's own address when absent.
        #[arg(long)]
        from: Option<std::net::Ipv4Addr>,
        /// Replies per second.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 2.0)]
        duration: f64,
    },
    /// Receive sequenced UDP datagrams; report loss, reordering and the longest gap.
    UdpSeqRecv {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long)]
        bind: Option<IpAddr>,
        /// Stop early after this long without a datagram, once one has arrived.
        #[arg(long)]
        idle_exit: Option<f64>,
        /// At the end, write one line `SEQ UNIX_NS` per datagram (arrival order, wall-clock
        /// time of its receipt) to this file: per-millisecond timelines for the benchmarks.
        #[arg(long)]
        arrivals: Option<std::path::PathBuf>,
        /// Receive buffer in bytes (SO_RCVBUFFORCE, needs root), so that a receiver scheduled
        /// late does not drop datagrams that the network delivered.
        #[arg(long)]
        rcvbuf: Option<usize>,
        /// Receive only what arrives on this interface (SO_BINDTODEVICE); with --join, the
        /// interface the group is joined on.
        #[arg(long)]
        device: Option<String>,
        /// Join this multicast group (IPv4 or IPv6) on --device.
        #[arg(long, requires = "device")]
        join: Option<IpAddr>,
    },
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("bad duration {s}"))
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::TcpSink {
            port,
            duration,
            connections,
            bind,
            device,
        } => secs(duration).and_then(|d| tcp_sink(port, d, connections, bind, device.as_deref())),
        Cmd::TcpFlows {
            to,
            port,
            flows,
            src_port_base,
            duration,
            bind,
            rate,
            drain,
        } => secs(duration).and_then(|d| {
            tcp_flows(FlowsArgs {
                to: SocketAddr::new(to, port),
                flows,
                src_port_base,
                duration: d,
                bind,
                rate,
                drain: secs(drain)?,
            })
        }),
        Cmd::UdpSeqSend {
            to,
            port,
            rate,
            duration,
            bind,
            src_port,
            device,
        } => secs(duration).and_then(|d| {
            udp_seq_send(
                SocketAddr::new(to, port),
                rate,
                d,
                bind,
                src_port,
                device.as_deref(),
            )
        }),
        Cmd::IcmpSpray {
            to,
            from,
            rate,
            duration,
        } => secs(duration).and_then(|d| icmp_spray(to, from, rate, d)),
        Cmd::UdpSeqRecv {
            port,
            duration,
            bind,
            idle_exit,
            arrivals,
            rcvbuf,
            device,
            join,
        } => secs(duration).and_then(|d| {
            let idle = idle_exit.map(secs).transpose()?;
            udp_seq_recv(
                port,
                d,
                RecvOpts {
                    bind,
                    idle_exit: idle,
                    arrivals: arrivals.as_deref(),
                    rcvbuf,
                    device: device.as_deref(),
                    join,
                },
            )
        }),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            println!("{}", json!({ "error": format!("{e:#}") }));
            eprintln!("labtool: {e:#}");
            std::process::exit(2);
        }
    }
}

fn listen_addr(bind: Option<IpAddr>, port: u16) -> SocketAddr {
    // [::] accepts IPv4 too (bindv6only is 0 by default).
    SocketAddr::new(bind.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), port)
}

fn ready() {
    eprintln!("ready");
}

/// SO_BINDTODEVICE on `sock`.
fn bind_device(sock: &impl std::os::fd::AsFd, device: &str) -> anyhow::Result<()> {
    setsockopt(
        sock,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(device),
    )
    .with_context(|| format!("SO_BINDTODEVICE {device}"))
}

/// The ifindex of `name` in this namespace.
fn ifindex(name: &str) -> anyhow::Result<u32> {
    nix::net::if_::if_nametoindex(name).with_context(|| format!("no interface {name}"))
}

/// Returns Ok(true) when the report says everything went well.
fn tcp_sink(
    port: u16,
    duration: Duration,
    connections: Option<usize>,
    bind: Option<IpAddr>,
    device: Option<&str>,
) -> anyhow::Result<bool> {
    let addr = listen_addr(bind, port);
    let listener = match device {
        None => TcpListener::bind(addr).with_context(|| format!("listen on {addr}"))?,
        Some(device) => {
            let family = if addr.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
                .context("TCP socket")?;
            setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
            bind_device(&fd, device)?;
            nix::sys::socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))
                .with_context(|| format!("bind {addr}"))?;
            nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::new(64).context("backlog")?)
                .with_context(|| format!("listen on {addr}"))?;
            TcpListener::from(fd)
        }
    };
    listener
        .set_nonblocking(true)
        .context("nonblocking listener")?;
    ready();
    let deadline = Instant::now() + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    while Instant::now() < deadline {
        if connections.is_some_and(|n| handles.len() >= n) {
            if handles.iter().all(thread::JoinHandle::is_finished) {
                break;
            }
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let (stop, results) = (Arc::clone(&stop), Arc::clone(&results));
                handles.push(thread::spawn(move || {
                    let mut bytes = 0u64;
                    let mut error = None;
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => bytes += n as u64,
                            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                                if stop.load(Ordering::Relaxed) {
                                    error = Some("still open at the end".to_owned());
                                    break;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => {
                                error = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    // Closing tells the sender that every byte arrived.
                    drop(stream);
                    let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                    r.push(json!({ "peer": peer.to_string(), "src_port": peer.port(), "bytes": bytes, "error": error }));
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) => bail!("accept on {addr}: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let conns = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    let total: u64 = conns.iter().map(|c| c["bytes"].as_u64().unwrap_or(0)).sum();
    println!("{}", json!({ "connections": conns, "total_bytes": total }));
    Ok(true)
}

struct FlowsArgs {
    to: SocketAddr,
    flows: u16,
    src_port_base: u16,
    duration: Duration,
    bind: Option<IpAddr>,
    rate: u64,
    drain: Duration,
}

/// Opens a TCP connection from `src` (fixed port, SO_REUSEADDR so reruns do not hit TIME_WAIT).
fn connect_from(src: SocketAddr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let family = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).context("socket")?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(src)).with_context(|| format!("bind {src}"))?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(to))
        .with_context(|| format!("connect {src} -> {to}"))?;
    Ok(TcpStream::from(fd))
}

/// One flow: send at `rate` for `duration`, then half-close and wait for the sink to close,
/// which confirms that everything arrived.
fn run_flow(src: SocketAddr, a: &FlowsArgs, start: Instant) -> (u64, Option<String>) {
    let mut stream = match connect_from(src, a.to) {
        Ok(s) => s,
        Err(e) => return (0, Some(format!("{e:#}"))),
    };
    let _ = stream.set_nodelay(true);
    // A write blocked this long means the path is gone for good.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let chunk = vec![0x5au8; 1024];
    let mut sent = 0u64;
    let end = start + a.duration;
    while Instant::now() < end {
        let due = (start.elapsed().as_secs_f64() * a.rate as f64) as u64;
        if sent >= due {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let n = (due - sent).min(chunk.len() as u64) as usize;
        if let Err(e) = stream.write_all(&chunk[..n]) {
            return (sent, Some(format!("write after {sent} bytes: {e}")));
        }
        sent += n as u64;
    }
    if let Err(e) = stream.shutdown(Shutdown::Write) {
        return (sent, Some(format!("shutdown: {e}")));
    }
    let _ = stream.set_read_timeout(Some(a.drain));
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (sent, None),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (
                    sent,
                    Some(format!("sink did not confirm within {:?}", a.drain)),
                );
            }
            Err(e) => return (sent, Some(format!("waiting for the sink: {e}"))),
        }
    }
}

fn tcp_flows(a: FlowsArgs) -> anyhow::Result<bool> {
    let local = a.bind.unwrap_or(if a.to.is_ipv4() {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    if u32::from(a.src_port_base) + u32::from(a.flows) > 65536 {
        bail!(
            "source ports {}+{} run past 65535",
            a.src_port_base,
            a.flows
        );
    }
    let a = Arc::new(a);
    let start = Instant::now();
    let handles: Vec<_> = (0..a.flows)
        .map(|i| {
            let a = Arc::clone(&a);
            let src = SocketAddr::new(local, a.src_port_base + i);
            thread::spawn(move || (src.port(), run_flow(src, &a, start)))
        })
        .collect();
    let mut flows = Vec::new();
    let mut ok = true;
    for h in handles {
        let (port, (bytes, error)) = h
            .join()
            .unwrap_or((0, (0, Some("flow thread panicked".into()))));
        ok &= error.is_none();
        flows.push(json!({ "src_port": port, "bytes": bytes, "error": error }));
    }
    println!("{}", json!({ "flows": flows, "ok": ok }));
    Ok(ok)
}

fn udp_seq_send(
    to: SocketAddr,
    rate: u64,
    duration: Duration,
    bind: Option<IpAddr>,
    src_port: u16,
    device: Option<&str>,
) -> anyhow::Result<bool> {
    if rate == 0 {
        bail!("--rate must be at least 1");
    }
    let local = bind.unwrap_or(if to.is_ipv4() {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    let sock = UdpSocket::bind(SocketAddr::new(local, src_port)).context("bind the UDP socket")?;
    if let Some(device) = device {
        bind_device(&sock, device)?;
        if let IpAddr::V6(group) = to.ip()
            && group.is_multicast()
        {
            let index = ifindex(device)? as libc::c_int;
            // SAFETY: index is a live c_int of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_MULTICAST_IF,
                    (&raw const index).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                bail!(
                    "IPV6_MULTICAST_IF {device}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    if to.is_ipv4() {
        // Tests send to the subnet broadcast address too.
        sock.set_broadcast(true).context("SO_BROADCAST")?;
    }
    let mut errors = 0u64;
    let mut last_error = None;
    let seq = paced(rate, duration, |seq| {
        let mut payload = [0u8; 64];
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        // Send errors (e.g. no route while failing over) count as sent-but-lost.
        if let Err(e) = sock.send_to(&payload, to) {
            errors += 1;
            last_error = Some(e.to_string());
        }
    });
    println!(
        "{}",
        json!({ "sent": seq, "send_errors": errors, "last_error": last_error })
    );
    Ok(true)
}

/// Calls `send` with 0, 1, .. for exactly rate x duration datagrams, paced at `rate` per
/// second (a count the receiver can be held to); returns how many.
fn paced(rate: u64, duration: Duration, mut send: impl FnMut(u64)) -> u64 {
    let total = (duration.as_secs_f64() * rate as f64).round() as u64;
    let start = Instant::now();
    let mut seq = 0u64;
    while seq < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while seq < due {
            send(seq);
            seq += 1;
        }
        if seq < total {
            thread::sleep(Duration::from_micros(500));
        }
    }
    seq
}

/// Loss, reordering and gap bookkeeping for sequenced datagrams (pure; times passed in).
#[derive(Debug, Default)]
struct SeqStats {
    received: u64,
    duplicates: u64,
    reordered: u64,
    max_seq: Option<u64>,
    seen: std::collections::HashSet<u64>,
    last_arrival: Option<Duration>,
    max_gap: Duration,
}

impl SeqStats {
    fn record(&mut self, seq: u64, at: Duration) {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return;
        }
        self.received += 1;
        match self.max_seq {
            Some(max) if seq < max => self.reordered += 1,
            _ => self.max_seq = Some(seq),
        }
        if let Some(last) = self.last_arrival {
            self.max_gap = self.max_gap.max(at.saturating_sub(last));
        }
        self.last_arrival = Some(at);
    }

    /// Sequence numbers up to the highest seen that never arrived.
    fn lost(&self) -> u64 {
        self.max_seq.map_or(0, |m| m + 1 - self.received)
    }
}

/// What `udp-seq-recv` listens on, besides its port and duration.
struct RecvOpts<'a> {
    bind: Option<IpAddr>,
    idle_exit: Option<Duration>,
    arrivals: Option<&'a std::path::Path>,
    rcvbuf: Option<usize>,
    device: Option<&'a str>,
    join: Option<IpAddr>,
}

fn udp_seq_recv(port: u16, duration: Duration, opts: RecvOpts<'_>) -> anyhow::Result<bool> {
    let RecvOpts {
        bind,
        idle_exit,
        arrivals,
        rcvbuf,
        device,
        join,
    } = opts;
    // An IPv4 group is joined on an IPv4 socket.
    let bind = bind.or(match join {
        Some(IpAddr::V4(_)) => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        _ => None,
    });
    let addr = listen_addr(bind, port);
    let sock = UdpSocket::bind(addr).with_context(|| format!("bind {addr}"))?;
    if let Some(device) = device {
        bind_device(&sock, device)?;
    }
    match (join, device) {
        (Some(IpAddr::V4(group)), Some(device)) => {
            let mreq = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(group.octets()),
                },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: ifindex(device)? as i32,
            };
            // SAFETY: mreq is a live ip_mreqn of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_ADD_MEMBERSHIP,
                    (&raw const mreq).cast(),
                    size_of::<libc::ip_mreqn>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                bail!(
                    "join {group} on {device}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        (Some(IpAddr::V6(group)), Some(device)) => sock
            .join_multicast_v6(&group, ifindex(device)?)
            .with_context(|| format!("join {group} on {device}"))?,
        _ => {}
    }
    if let Some(bytes) = rcvbuf {
        setsockopt(&sock, sockopt::RcvBufForce, &bytes).context("SO_RCVBUFFORCE")?;
    }
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .context("read timeout")?;
    ready();
    let start = Instant::now();
    let mut stats = SeqStats::default();
    let mut buf = [0u8; 2048];
    // (seq, ns since the Unix epoch); written out only at the end.
    let mut log: Vec<(u64, u128)> = Vec::new();
    while start.elapsed() < duration {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n >= 8 => {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&buf[..8]);
                let seq = u64::from_be_bytes(seq);
                stats.record(seq, start.elapsed());
                if arrivals.is_some() {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    log.push((seq, now.as_nanos()));
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => bail!("recv on {addr}: {e}"),
        }
        if let (Some(idle), Some(last)) = (idle_exit, stats.last_arrival)
            && start.elapsed().saturating_sub(last) >= idle
        {
            break;
        }
    }
    if let Some(path) = arrivals {
        let text: String = log
            .iter()
            .map(|(seq, ns)| format!("{seq} {ns}\n"))
            .collect();
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    println!(
        "{}",
        json!({
            "received": stats.received,
            "lost": stats.lost(),
            "reordered": stats.reordered,
            "duplicates": stats.duplicates,
            "max_seq": stats.max_seq,
            "max_gap_ms": stats.max_gap.as_secs_f64() * 1000.0,
        })
    );
    Ok(true)
}

/// Forged echo replies: id, sequence and 28 bytes of payload from a xorshift generator, with a
/// valid ICMP checksum so that only the content can give them away.
fn icmp_spray(
    to: std::net::Ipv4Addr,
    from: Option<std::net::Ipv4Addr>,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<bool> {
    // SAFETY: plain socket(2); the fd is closed at the end of this function.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        bail!("raw ICMP socket: {}", std::io::Error::last_os_error());
    }
    if from.is_some() {
        let one: libc::c_int = 1;
        // SAFETY: one is a live c_int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_HDRINCL,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            bail!("IP_HDRINCL: {}", std::io::Error::last_os_error());
        }
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(to.octets()),
        },
        sin_zero: [0; 8],
    };
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let sent = paced(rate, duration, |_| {
        let mut msg = [0u8; 36];
        msg[0] = 0; // echo reply
        msg[4..8].copy_from_slice(&(next() as u32).to_be_bytes()); // id + seq
        for chunk in msg[8..].chunks_mut(8) {
            let r = next().to_be_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        let mut sum: u32 = msg
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        msg[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let mut packet = Vec::with_capacity(20 + msg.len());
        if let Some(src) = from {
            // IPv4 header; the kernel fills in the checksum and the id with IP_HDRINCL.
            packet.extend_from_slice(&[0x45, 0, 0, (20 + msg.len()) as u8, 0, 0, 0, 0, 64, 1]);
            packet.extend_from_slice(&[0, 0]);
            packet.extend_from_slice(&src.octets());
            packet.extend_from_slice(&to.octets());
        }
        packet.extend_from_slice(&msg);
        // SAFETY: packet and sin outlive the call; lengths match.
        unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw const sin).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
        }
    });
    // SAFETY: fd is ours and still open.
    unsafe { libc::close(fd) };
    println!("{}", json!({ "sent": sent }));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_sends_exactly_rate_times_duration_in_order() {
        let mut seen = Vec::new();
        let n = paced(2000, Duration::from_millis(15), |seq| seen.push(seq));
        assert_eq!(n, 30);
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
        assert_eq!(paced(1000, Duration::ZERO, |_| unreachable!()), 0);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn seq_stats_count_loss_reorder_duplicates_and_gaps() {
        let mut s = SeqStats::default();
        for (seq, at) in [(0, 0), (1, 1), (3, 2), (2, 3), (3, 4), (7, 104)] {
            s.record(seq, ms(at));
        }
        assert_eq!(s.received, 5);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.max_seq, Some(7));
        assert_eq!(s.lost(), 3); // 4, 5, 6
        assert_eq!(s.max_gap, ms(101));
    }

    #[test]
    fn nothing_received_is_no_loss_and_no_gap() {
        let s = SeqStats::default();
        assert_eq!(s.lost(), 0);
        assert_eq!(s.max_gap, Duration::ZERO);
    }
}
