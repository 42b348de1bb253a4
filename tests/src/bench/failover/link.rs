//! Link-based failover: the member carrying a 10 000 packets/s sequenced UDP stream loses its
//! carrier (its switch port goes down), outbound (host → peer) and inbound (peer → the host's
//! data address). Figures: carrier loss → ipmpd sees the link down and → the maps flip (from
//! ipmpd's log timestamps), and the receiver's outage (gap, packets lost).

use std::{os::fd::AsRawFd as _, thread, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use super::parse::{self, Outage};
use crate::{
    bench::throughput::wait_active,
    lab::{self, DATA_V4, Daemon, Lab, LabSpec, Netns},
    pcap,
};

/// Datagrams per second of the sequenced stream.
pub const RATE: u64 = 10_000;
/// The stream runs this long before the cut, and this long after it.
pub const BEFORE: Duration = Duration::from_millis(200);
const AFTER: Duration = Duration::from_millis(500);
/// The receiver listens this much longer than the sender sends.
const DRAIN: Duration = Duration::from_millis(150);
/// Timeline plots start this long before the cut and end at least this long after it, or
/// 20 ms after traffic came back, at most 500 ms (ms).
const TIMELINE_FROM_MS: i64 = -10;
const TIMELINE_TO_MS: i64 = 40;
const TIMELINE_MAX_MS: i64 = 500;

const SPEC: LabSpec = LabSpec {
    members: 2,
    peers: 1,
    router: false,
};

/// Which way the stream flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Host (data address) → peer: ipmp's TC program moves the flow to another member.
    Out,
    /// Peer → the host's data address: ipmpd rebinds the address and announces it.
    In,
}

impl Dir {
    pub fn label(self) -> &'static str {
        match self {
            Dir::Out => "outbound (host → peer)",
            Dir::In => "inbound (peer → data address)",
        }
    }
}

/// One carrier-loss trial.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkTrial {
    pub dir: Dir,
    /// Member whose carrier was cut.
    pub member: usize,
    /// Cut → ipmpd logs the link down.
    pub detect_ms: Option<f64>,
    /// Cut → ipmpd logs the maps updated (the flip).
    pub flip_ms: Option<f64>,
    /// The receiver's silence around the cut; `None` when traffic never came back.
    pub outage: Option<Outage>,
    pub cut_ns: i64,
    /// Sequence numbers that never arrived.
    pub lost: u64,
    pub sent: u64,
}

impl LinkTrial {
    pub fn gap_ms(&self) -> Option<f64> {
        self.outage.map(|o| o.gap_ms())
    }

    pub fn restored_ms(&self) -> Option<f64> {
        self.outage.map(|o| o.restored_ms(self.cut_ns))
    }
}

/// Packets per millisecond per member around one cut (ms relative to the cut).
#[derive(Debug, Clone)]
pub struct Timeline {
    pub dir: Dir,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    pub trial: LinkTrial,
}

/// Sets `port` in namespace `ns` up or down with SIOCSIFFLAGS from a thread that entered the
/// namespace, and returns the wall-clock time (ns since the Unix epoch) taken right before the
/// ioctl: the moment of the carrier change to within microseconds, where spawning `ip` would
/// blur it by milliseconds.
pub fn set_port(ns: &Netns, port: &str, up: bool) -> anyhow::Result<i64> {
    let name = port.to_owned();
    if name.len() >= libc::IFNAMSIZ {
        bail!("interface name {name} is too long");
    }
    ns.run_in(move || -> anyhow::Result<i64> {
        let sock = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .context("socket for SIOCSIFFLAGS")?;
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        // SAFETY: req is a live ifreq with a NUL-terminated name; the kernel writes ifru_flags.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) } < 0 {
            bail!("SIOCGIFFLAGS {name}: {}", std::io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        let iff_up = libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags = if up { flags | iff_up } else { flags & !iff_up };
        let at = now_ns();
        // SAFETY: as above; the kernel only reads req.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const req) } < 0 {
            bail!("SIOCSIFFLAGS {name}: {}", std::io::Error::last_os_error());
        }
        Ok(at)
    })
    .with_context(|| format!("set {port} {}", if up { "up" } else { "down" }))
}

/// Wall clock in ns since the Unix epoch (the clock of ipmpd's log and of labtool's arrivals).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A two-member lab with ipmpd (link-based detection only) and one peer.
pub struct LinkBed {
    daemon: Daemon,
    lab: Lab,
}

impl LinkBed {
    pub fn new() -> anyhow::Result<LinkBed> {
        let lab = Lab::new(SPEC)?;
        let mut cfg = lab.config();
        cfg.failback = true;
        // Trials cut the same links again and again: no flap damping.
        cfg.link_flap_max_ups = Some(1_000_000);
        let daemon = lab.start_ipmpd(&cfg.to_toml())?;
        wait_active(&daemon, SPEC.members, Duration::from_secs(10))?;
        let peer = lab::peer_v4(0);
        if !lab::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            lab.host().reachable(&peer) && lab.peer(0).reachable(DATA_V4)
        }) {
            bail!("host and peer do not reach each other through ipmp");
        }
        Ok(LinkBed { daemon, lab })
    }

    fn bound_member(&self) -> anyhow::Result<usize> {
        let v = self.daemon.ipmpstat_json(&["-an"])?;
        let name = v
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["address"].as_str() == Some(DATA_V4)))
            .and_then(|r| r["inbound"].as_str())
            .ok_or_else(|| anyhow!("ipmpstat -an has no binding for {DATA_V4}: {v}"))?;
        member_index(name)
    }

    fn tx_packets(&self) -> anyhow::Result<Vec<u64>> {
        (0..SPEC.members)
            .map(|i| Ok(self.lab.host().link_stats(&format!("m{i}"))?.tx_packets))
            .collect()
    }

    /// One trial; `n` makes ports unique (and varies the outbound flow's hash); with `capture`
    /// tcpdump on every member gives a per-member timeline.
    pub fn trial(
        &self,
        dir: Dir,
        n: u16,
        capture: bool,
    ) -> anyhow::Result<(LinkTrial, Option<Timeline>)> {
        let (host, peer) = (self.lab.host(), self.lab.peer(0));
        let port = (7000 + n).to_string();
        let src_port = (40_000 + 7 * n).to_string();
        let work = self.lab.work_dir();
        let arrivals = work.join(format!("arrivals-{n}.txt"));
        let arrivals_s = arrivals.to_string_lossy().into_owned();
        let (sender_ns, receiver_ns) = match dir {
            Dir::Out => (host, peer),
            Dir::In => (peer, host),
        };
        let bound = match dir {
            Dir::In => Some(self.bound_member()?),
            Dir::Out => None,
        };
        // A fixed listening time, not --idle-exit: a long outage must not end the receiver.
        let listen = format!("{:.3}", (BEFORE + AFTER + DRAIN).as_secs_f64());
        let mut recv = receiver_ns.labtool(&[
            "udp-seq-recv",
            "--port",
            &port,
            "--duration",
            &listen,
            "--arrivals",
            &arrivals_s,
            // 8 MiB: a receiver scheduled late must not turn into datagrams lost.
            "--rcvbuf",
            "8388608",
        ])?;
        recv.wait_ready(Duration::from_secs(5))?;
        let captures = if capture {
            (0..SPEC.members)
                .map(|i| {
                    let file = work.join(format!("cap-{n}-m{i}.pcap"));
                    host.capture(&format!("m{i}"), &file, &["udp", "port", &port])
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let to = match dir {
            Dir::Out => lab::peer_v4(0),
            Dir::In => DATA_V4.to_owned(),
        };
        let secs = format!("{:.3}", (BEFORE + AFTER).as_secs_f64());
        let rate = RATE.to_string();
        let mut args = vec![
            "udp-seq-send",
            "--to",
            &to,
            "--port",
            &port,
            "--rate",
            &rate,
            "--duration",
            &secs,
            "--src-port",
            &src_port,
        ];
        if dir == Dir::Out {
            args.extend(["--bind", DATA_V4]);
        }
        let tx0 = self.tx_packets()?;
        let send = sender_ns.labtool(&args)?;
        thread::sleep(BEFORE);
        let member = match bound {
            Some(m) => m,
            None => {
                let tx1 = self.tx_packets()?;
                busiest(&tx0, &tx1).ok_or_else(|| {
                    anyhow!("no member carries the outbound stream: tx {tx0:?} -> {tx1:?}")
                })?
            }
        };
        let cut_ns = set_port(self.lab.switch(), &Lab::port(member), false)?;
        let sent = send.finish();
        let got = recv.finish();
        if !captures.is_empty() {
            // libpcap hands packets over in blocks that retire after tcpdump's 1 s timeout; a
            // member that stopped carrying traffic leaves its last block unfilled, and
            // stopping now would lose it.
            thread::sleep(Duration::from_millis(1100));
        }
        let records = captures
            .into_iter()
            .map(|c| c.stop())
            .collect::<anyhow::Result<Vec<_>>>();
        // Put the link back whatever happened, then wait for the member to be active again
        // and for the announcements of a failback to end.
        set_port(self.lab.switch(), &Lab::port(member), true)?;
        let (sent, got, records) = (sent?, got?, records?);
        wait_active(&self.daemon, SPEC.members, Duration::from_secs(5))?;
        thread::sleep(Duration::from_millis(300));

        let lines = parse::log_lines(&self.daemon.log());
        let name = format!("m{member}");
        let cut_us = cut_ns.div_euclid(1000);
        let down = parse::first_after(&lines, cut_us, |t| parse::is_link_down(t, &name));
        let flip = down.and_then(|d| parse::first_after(&lines, d.at_us, parse::is_maps_updated));
        let ms = |at_us: i64| (at_us - cut_us) as f64 / 1000.0;
        let text = std::fs::read_to_string(&arrivals)
            .with_context(|| format!("read {}", arrivals.display()))?;
        let arrivals = parse::parse_arrivals(&text)
            .ok_or_else(|| anyhow!("{} is not `SEQ NS` lines", arrivals.display()))?;
        let trial = LinkTrial {
            dir,
            member,
            detect_ms: down.map(|l| ms(l.at_us)),
            flip_ms: flip.map(|l| ms(l.at_us)),
            outage: parse::outage(&arrivals, cut_ns),
            cut_ns,
            lost: got["lost"].as_u64().unwrap_or(0),
            sent: sent["sent"].as_u64().unwrap_or(0),
        };
        let to_ms = trial
            .restored_ms()
            .map_or(TIMELINE_TO_MS, |r| {
                (r.ceil() as i64 + 20).max(TIMELINE_TO_MS)
            })
            .min(TIMELINE_MAX_MS);
        let timeline = capture.then(|| {
            let mut series: Vec<(String, Vec<(f64, f64)>)> = records
                .iter()
                .enumerate()
                .map(|(i, recs)| {
                    let times: Vec<i64> = recs.iter().map(record_ns).collect();
                    let label = if i == member {
                        format!("m{i} (cut)")
                    } else {
                        format!("m{i}")
                    };
                    let pts = parse::per_ms(&times, cut_ns, TIMELINE_FROM_MS, to_ms);
                    (label, pts)
                })
                .collect();
            let times: Vec<i64> = arrivals.iter().map(|(_, t)| *t).collect();
            series.push((
                "receiver".to_owned(),
                parse::per_ms(&times, cut_ns, TIMELINE_FROM_MS, to_ms),
            ));
            Timeline {
                dir,
                series,
                trial: trial.clone(),
            }
        });
        Ok((trial, timeline))
    }
}

fn record_ns(r: &pcap::Record) -> i64 {
    i64::try_from(r.ts.as_nanos()).unwrap_or(i64::MAX)
}

/// `m<i>` → i.
fn member_index(name: &str) -> anyhow::Result<usize> {
    name.strip_prefix('m')
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| anyhow!("{name:?} is not a lab member name"))
}

/// The member whose counter grew the most (and at all) between two readings.
pub fn busiest(before: &[u64], after: &[u64]) -> Option<usize> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.saturating_sub(*b))
        .enumerate()
        .filter(|(_, d)| *d > 0)
        .max_by_key(|(_, d)| *d)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_member_and_names() {
        assert_eq!(busiest(&[10, 10], &[12, 2510]), Some(1));
        assert_eq!(busiest(&[10, 10], &[10, 10]), None);
        assert_eq!(busiest(&[5], &[3]), None);
        assert_eq!(member_index("m1").unwrap(), 1);
        assert!(member_index("eth0").is_err());
        assert!(member_index("").is_err());
    }
}
