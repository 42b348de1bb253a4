//! Helpers shared by the scenario tests: atomic, badinput, bpftool, daemon, disruption,
//! failover, inbound, metrics, neighbours, offlink, probe, receive, service and spread use them. Import with
//! `pub mod common;` — `pub` keeps rustc from calling the helpers a test file does not use dead
//! code. This API is meant to stay small and stable: add, do not change.
//!
//! - [`Setup`]: a lab with ipmpd running and every member active.
//! - [`members`] / [`member`]: `ipmpstat --json -i` decoded into ipmpd's own type, as
//!   [`Member`] rows — the one reader of member state (every test file uses it);
//!   [`member_flags`]: their FLAGS;
//!   [`bindings`]: data address → member.
//! - [`PinnedMaps`]: ipmpd's pinned maps, read from the test process; predicts the member of a
//!   flow ([`Table::member_of`]) and sums reason counters ([`PinnedMaps::packets`]).
//! - [`PortCaptures`]: tcpdump on the switch-side ports of members, and which member carried
//!   which flow ([`flows_by_member`]).
//! - Closures on a thread inside a lab namespace (`Netns::run_in`, real sockets there), e.g.
//!   [`send_udp_flows`] from a data address; [`tcx_programs`] on an interface there.
//! - [`probe_stream`], [`wait_answered_probes`]: the `ipmpstat -p` stream.
//! - [`ping_while`]: pings in the background while a closure runs (loss across a disruption);
//!   [`cpu_seconds`]: a process's CPU time so far.
//! - [`PRIVATE_MOUNTS`], [`setpriv_caps`]: run a wrapper in a mount namespace of its own with
//!   only given capabilities (the unit's and the DaemonSet's views of the system).
//! - [`count_arrivals`], [`arrivals`]: an nft prerouting counter in a namespace (what reached
//!   a peer's stack).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use ipmp_common::{
    AddrKey, Counter, FlowKey, GroupInfo, MAP_BUCKETS, MAP_GROUPS, MAP_MEMBERS, MAP_NEIGHS,
    MAP_ROUTE_GEN, MAP_STATS, MemberInfo, NeighEntry, NeighKey, Reason, STATS_SLOTS, bucket_index,
    bucket_of, flow_hash, stats_index,
};
use ipmp_tests::{
    lab::{self, Capture, Daemon, IpmpdConfig, Lab, LabSpec, Netns},
    pcap::{FiveTuple, Record},
};

/// A lab with ipmpd started on it. Field order matters: the daemon stops before the lab goes.
pub struct Setup {
    pub daemon: Daemon,
    pub lab: Lab,
    /// ifindex of member `m<i>` at index i.
    ifindexes: Vec<u32>,
}

impl Setup {
    /// Builds a lab of `spec`, starts ipmpd with the lab's default config (fixed hash seed
    /// [`lab::LAB_HASH_SEED`]) changed by `tweak`, and waits up to 10 s until every member is
    /// active.
    pub fn start(spec: LabSpec, tweak: impl FnOnce(&mut IpmpdConfig)) -> anyhow::Result<Setup> {
        let lab = Lab::new(spec)?;
        let mut config = lab.config();
        tweak(&mut config);
        let daemon = lab.start_ipmpd(&config.to_toml())?;
        let ifindexes = lab
            .members()
            .iter()
            .map(|m| Ok(lab.host().link(m)?.ifindex))
            .collect::<anyhow::Result<_>>()?;
        let setup = Setup {
            daemon,
            lab,
            ifindexes,
        };
        let names = setup.lab.members();
        setup.wait_members(Duration::from_secs(10), |ms| {
            names
                .iter()
                .all(|n| ms.iter().any(|m| &m.name == n && m.active))
        })?;
        Ok(setup)
    }

    /// Waits until `ok` holds for `ipmpstat --json -i`; the last rows and the end of the
    /// daemon's log are in the error.
    pub fn wait_members(
        &self,
        timeout: Duration,
        mut ok: impl FnMut(&[Member]) -> bool,
    ) -> anyhow::Result<Vec<Member>> {
        let mut last = Vec::new();
        let done = lab::wait_until(timeout, Duration::from_millis(20), || {
            match members(&self.daemon) {
                Ok(ms) => {
                    last = ms;
                    ok(&last)
                }
                Err(_) => false,
            }
        });
        if !done {
            let log = self.daemon.log();
            let lines: Vec<&str> = log.lines().collect();
            bail!(
                "members not as expected within {timeout:?}: {last:?}\nipmpd log (last 60 \
                 lines):\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        Ok(last)
    }

    /// Index `i` of member `m<i>` with this ifindex in the host namespace.
    pub fn member_index(&self, ifindex: u32) -> anyhow::Result<usize> {
        self.ifindexes
            .iter()
            .position(|&x| x == ifindex)
            .ok_or_else(|| anyhow!("ifindex {ifindex} is no member of the lab"))
    }

    /// ifindex of member `m<i>`.
    pub fn member_ifindex(&self, i: usize) -> u32 {
        self.ifindexes[i]
    }

    /// ifindex of the IPMP interface `ipmp0`.
    pub fn group_ifindex(&self) -> anyhow::Result<u32> {
        Ok(self.lab.host().link("ipmp0")?.ifindex)
    }

    /// ipmpd's maps, pinned in the lab's pin directory.
    pub fn maps(&self) -> anyhow::Result<PinnedMaps> {
        PinnedMaps::open(&self.lab.pin_dir())
    }
}

/// One row of `ipmpstat --json -i`, decoded into ipmpd's own wire type: a renamed or missing
/// field fails the decode instead of reading as zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub ifindex: u32,
    pub active: bool,
    /// `ok`, `failed`, `offline` or `unknown`.
    pub state: String,
    /// `ok`, `failed`, `unknown` or `disabled`.
    pub probe: String,
    /// `up`, `down` or `unknown`.
    pub link: String,
    /// The FLAGS column (`--mbM--`: `m` marks the cast member).
    pub flags: String,
    /// Buckets of the group's table that point here.
    pub buckets: u32,
    /// Packets the TC egress program sent here (tx-unicast + tx-cast).
    pub tx_packets: u64,
}

/// Data address → bound member name, from `ipmpstat -an --json` (INBOUND; "" when unbound).
pub fn bindings(daemon: &Daemon) -> anyhow::Result<BTreeMap<String, String>> {
    let rows: Vec<ipmp::control::AddressStatus> = typed(daemon, "-an")?;
    Ok(rows
        .into_iter()
        .map(|a| (a.address, a.inbound.unwrap_or_default()))
        .collect())
}

/// `ipmpstat --json -i` of a running ipmpd: the one reader of member state.
pub fn members(daemon: &Daemon) -> anyhow::Result<Vec<Member>> {
    let rows: Vec<ipmp::control::MemberStatus> = typed(daemon, "-i")?;
    Ok(rows
        .into_iter()
        .map(|m| Member {
            flags: ipmp::stat::iface::flags(&m.flags),
            name: m.name,
            ifindex: m.ifindex,
            active: m.active,
            state: m.state.to_string(),
            probe: m.probe.to_string(),
            link: m.link.to_string(),
            buckets: m.buckets,
            tx_packets: m.tx_packets,
        })
        .collect())
}

/// `ipmpstat --json MODE` decoded into ipmpd's own wire type: a renamed or missing field fails
/// the decode instead of reading as zero.
fn typed<T: serde::de::DeserializeOwned>(daemon: &Daemon, mode: &str) -> anyhow::Result<T> {
    let v = daemon.ipmpstat_json(&[mode])?;
    serde_json::from_value(v.clone())
        .with_context(|| format!("ipmpstat --json {mode} does not decode as ipmpd's type: {v}"))
}

/// `yes` / `no`, as ipmpstat prints ACTIVE.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// Member `name`'s row (panics naming the member when it is missing).
pub fn member(daemon: &Daemon, name: &str) -> Member {
    let all = members(daemon).expect("ipmpstat --json -i");
    all.iter()
        .find(|m| m.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} missing from ipmpstat -i: {all:?}"))
}

/// ipmpd's pinned maps, opened from the test process (maps are not per network namespace).
pub struct PinnedMaps {
    groups: BpfHashMap<MapData, u32, GroupInfo>,
    members: BpfHashMap<MapData, u32, MemberInfo>,
    buckets: Array<MapData, u32>,
    stats: PerCpuArray<MapData, Counter>,
    route_gen: Array<MapData, u64>,
    neighs: BpfHashMap<MapData, NeighKey, NeighEntry>,
}

fn open_map<T>(dir: &Path, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| format!("open {}", path.display()))?;
    let map = Map::from_map_data(data).with_context(|| format!("type of {}", path.display()))?;
    T::try_from(map).with_context(|| format!("layout of {}", path.display()))
}

/// A group's bucket table as the TC egress program reads it at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub group: GroupInfo,
    /// Member ifindex per bucket of the active half (`group.n_buckets` long; 0: none).
    pub buckets: Vec<u32>,
}

impl Table {
    /// The member ifindex the TC egress program picks for `key`: flow hash with the group's
    /// seed, bucket, entry (what `ipmp_tc_egress` does, with the same ipmp-common functions).
    pub fn member_of(&self, key: &FlowKey) -> u32 {
        let bucket = bucket_of(flow_hash(key, self.group.seed), self.group.n_buckets);
        self.buckets.get(bucket as usize).copied().unwrap_or(0)
    }

    /// Buckets per member ifindex.
    pub fn load(&self) -> BTreeMap<u32, u32> {
        let mut load = BTreeMap::new();
        for m in &self.buckets {
            *load.entry(*m).or_default() += 1;
        }
        load
    }
}

impl PinnedMaps {
    /// Opens IPMP_GROUPS, IPMP_MEMBERS, IPMP_BUCKETS, IPMP_STATS, IPMP_ROUTE_GEN and
    /// IPMP_NEIGHS under `pin_dir`.
    pub fn open(pin_dir: &Path) -> anyhow::Result<PinnedMaps> {
        Ok(PinnedMaps {
            groups: open_map(pin_dir, MAP_GROUPS)?,
            members: open_map(pin_dir, MAP_MEMBERS)?,
            buckets: open_map(pin_dir, MAP_BUCKETS)?,
            stats: open_map(pin_dir, MAP_STATS)?,
            route_gen: open_map(pin_dir, MAP_ROUTE_GEN)?,
            neighs: open_map(pin_dir, MAP_NEIGHS)?,
        })
    }

    /// `IPMP_ROUTE_GEN[index]` (`ROUTE_GEN` or `NEIGH_EPOCH`).
    pub fn route_gen(&self, index: u32) -> anyhow::Result<u64> {
        self.route_gen
            .get(&index, 0)
            .with_context(|| format!("IPMP_ROUTE_GEN[{index}]"))
    }

    /// The `IPMP_NEIGHS` entry of IPv4 next hop `addr` on member `ifindex`, if ipmpd holds it.
    pub fn neighbour_v4(&self, ifindex: u32, addr: Ipv4Addr) -> Option<NeighEntry> {
        let key = NeighKey::new(ifindex, AddrKey::v4(addr.octets()));
        self.neighs.get(&key, 0).ok()
    }

    /// The `IPMP_GROUPS` entry of the IPMP interface `group_ifindex`.
    pub fn group(&self, group_ifindex: u32) -> anyhow::Result<GroupInfo> {
        self.groups
            .get(&group_ifindex, 0)
            .with_context(|| format!("IPMP_GROUPS has no entry for ifindex {group_ifindex}"))
    }

    /// The `IPMP_MEMBERS` entry of member `ifindex`.
    pub fn member(&self, ifindex: u32) -> anyhow::Result<MemberInfo> {
        self.members
            .get(&ifindex, 0)
            .with_context(|| format!("IPMP_MEMBERS has no entry for ifindex {ifindex}"))
    }

    /// The active half of the group's bucket table. Read while ipmpd is not changing it.
    pub fn table(&self, group_ifindex: u32) -> anyhow::Result<Table> {
        let group = self.group(group_ifindex)?;
        let buckets = (0..group.n_buckets)
            .map(|b| {
                let index = bucket_index(group.slot, group.active_half, b)
                    .ok_or_else(|| anyhow!("bucket {b} of {group:?} is out of range"))?;
                self.buckets
                    .get(&index, 0)
                    .with_context(|| format!("IPMP_BUCKETS[{index}]"))
            })
            .collect::<anyhow::Result<Vec<u32>>>()?;
        Ok(Table { group, buckets })
    }

    /// Packets counted for `reason` in counter slot `slot`, summed over CPUs.
    pub fn packets(&self, slot: u32, reason: Reason) -> anyhow::Result<u64> {
        let index = stats_index(slot, reason);
        let values = self
            .stats
            .get(&index, 0)
            .with_context(|| format!("IPMP_STATS[{index}]"))?;
        Ok(values.iter().map(|c| c.packets).sum())
    }

    /// Packets counted for `reason` over every counter slot.
    pub fn packets_all_slots(&self, reason: Reason) -> anyhow::Result<u64> {
        (0..STATS_SLOTS).map(|s| self.packets(s, reason)).sum()
    }
}

/// The ids of the TCX programs on `ifname` in `ns`: (ingress, egress), as the kernel has them.
pub fn tcx_programs(ns: &Netns, ifname: &str) -> anyhow::Result<(Vec<u32>, Vec<u32>)> {
    let ifname = ifname.to_owned();
    ns.run_in(move || {
        let ids = |attach| -> anyhow::Result<Vec<u32>> {
            let (_, progs) = aya::programs::SchedClassifier::query_tcx(&ifname, attach)
                .with_context(|| format!("query TCX on {ifname}"))?;
            Ok(progs.iter().map(|p| p.id()).collect())
        };
        Ok((
            ids(aya::programs::tc::TcAttachType::Ingress)?,
            ids(aya::programs::tc::TcAttachType::Egress)?,
        ))
    })
}

/// From namespace `ns`, sends `per_flow` datagrams of 32 bytes from `src:port` to `dst` for
/// every port in `ports` (one socket per flow, so each flow has a fixed source port). Pauses
/// 1 ms after every 50 flows so capture buffers keep up. Returns the datagrams sent.
pub fn send_udp_flows(
    ns: &Netns,
    src: Ipv4Addr,
    ports: std::ops::Range<u16>,
    dst: SocketAddr,
    per_flow: u32,
) -> anyhow::Result<u64> {
    ns.run_in(move || {
        let mut sent = 0u64;
        for (n, port) in ports.enumerate() {
            let sock = UdpSocket::bind(SocketAddrV4::new(src, port))
                .with_context(|| format!("bind {src}:{port}"))?;
            for _ in 0..per_flow {
                sock.send_to(&[0x5a; 32], dst)
                    .with_context(|| format!("send {src}:{port} -> {dst}"))?;
                sent += 1;
            }
            if n % 50 == 49 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(sent)
    })
}

/// How long tcpdump may hold captured frames before writing them (its 1 s ring block
/// timeout, plus a margin).
pub const CAPTURE_BLOCK_TIMEOUT: Duration = Duration::from_millis(1200);

/// tcpdump on the switch-side port of each listed member.
pub struct PortCaptures {
    captures: Vec<(usize, Capture)>,
}

impl PortCaptures {
    /// Starts a capture with `filter` on `Lab::port(i)` for every `i` in `members`.
    pub fn start(lab: &Lab, members: &[usize], tag: &str, filter: &[&str]) -> anyhow::Result<Self> {
        let captures = members
            .iter()
            .map(|&i| {
                let file = lab.work_dir().join(format!("{tag}-p{i}.pcap"));
                Ok((i, lab.switch().capture(&Lab::port(i), &file, filter)?))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(PortCaptures { captures })
    }

    /// Stops every capture; the frames each member sent (source MAC = that member's MAC, so
    /// frames the switch forwarded to the member do not count).
    pub fn stop(self) -> anyhow::Result<BTreeMap<usize, Vec<Record>>> {
        // tcpdump (libpcap, TPACKET_V3) reads the capture ring a block at a time; a block is
        // handed over when full or after the 1 s timeout tcpdump sets, and SIGINT loses the
        // block being filled. Waiting out that timeout delivers every frame.
        thread::sleep(CAPTURE_BLOCK_TIMEOUT);
        self.captures
            .into_iter()
            .map(|(i, c)| {
                let records = c.stop()?;
                let sent = records
                    .into_iter()
                    .filter(|r| r.src_mac == Some(lab::member_mac(i)))
                    .collect();
                Ok((i, sent))
            })
            .collect()
    }
}

/// Which members carried each flow, from [`PortCaptures::stop`]'s frames (only frames whose
/// 5-tuple passes `keep`).
pub fn flows_by_member(
    frames: &BTreeMap<usize, Vec<Record>>,
    keep: impl Fn(&FiveTuple) -> bool,
) -> BTreeMap<FiveTuple, BTreeSet<usize>> {
    let mut out: BTreeMap<FiveTuple, BTreeSet<usize>> = BTreeMap::new();
    for (member, records) in frames {
        for t in records.iter().filter_map(Record::five_tuple) {
            if keep(&t) {
                out.entry(t).or_default().insert(*member);
            }
        }
    }
    out
}

/// The [`FlowKey`] of a captured flow (what the TC egress program hashes).
pub fn flow_key(t: &FiveTuple) -> anyhow::Result<FlowKey> {
    match (t.src, t.dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => Ok(FlowKey::v4(
            s.octets(),
            d.octets(),
            t.proto,
            t.src_port,
            t.dst_port,
        )),
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => Ok(FlowKey::v6(
            s.octets(),
            d.octets(),
            t.proto,
            t.src_port,
            t.dst_port,
        )),
        _ => bail!("flow {t:?} mixes address families"),
    }
}

/// Reads `ipmpstat ARGS` (a `-p` stream) for `secs`, then stops it; its lines.
pub fn probe_stream(d: &Daemon, args: &[&str], secs: f64) -> Vec<String> {
    use std::io::BufRead as _;
    let mut child = d.spawn_ipmpstat(args).expect("ipmpstat -p");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut lines = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let out = child.wait_with_output().expect("ipmpstat output");
                panic!(
                    "ipmpstat {args:?} ended early: {:?} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

/// Waits until each of `members` has had a probe answered (an `ipmpstat -p` row with NETRTT):
/// before its first answer a member's lost probes fall in the quiet period and cannot fail it.
pub fn wait_answered_probes(d: &Daemon, members: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    while seen.len() < members.len() && Instant::now() < deadline {
        for l in probe_stream(d, &["-pPn", "-o", "interface,netrtt"], 0.5) {
            if let Some((i, rtt)) = l.split_once(':')
                && !rtt.is_empty()
                && members.contains(&i)
            {
                seen.insert(i.to_owned());
            }
        }
    }
    assert_eq!(
        seen.len(),
        members.len(),
        "answered probes only from {seen:?} of {members:?}\n{}",
        d.log()
    );
}

/// Each member's FLAGS column of `ipmpstat -i` (Solaris letters: `m` marks the cast member).
pub fn member_flags(d: &Daemon) -> BTreeMap<String, String> {
    members(d)
        .expect("ipmpstat --json -i")
        .into_iter()
        .map(|m| (m.name, m.flags))
        .collect()
}

/// Pings `dst` from `ns` every `interval` for `duration` on a thread, runs `f` once the pings
/// have started, and returns the ping summary with `f`'s result.
pub fn ping_while<T>(
    ns: &Netns,
    dst: &str,
    duration: Duration,
    interval: Duration,
    f: impl FnOnce() -> T,
) -> anyhow::Result<(lab::PingStats, T)> {
    let count =
        u32::try_from(duration.as_millis() / interval.as_millis().max(1)).unwrap_or(u32::MAX);
    let (ns, dst) = (ns.clone(), dst.to_owned());
    let pinger = thread::spawn(move || ns.ping(&dst, count, interval));
    thread::sleep(Duration::from_millis(300));
    let out = f();
    let stats = pinger
        .join()
        .map_err(|_| anyhow!("the ping thread panicked"))??;
    Ok((stats, out))
}

/// CPU time (user + system) process `pid` has used so far, in seconds, from /proc.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th, stime the 13th.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat: {stat}"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no field {i} in /proc/{pid}/stat"))
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((ticks(11)? + ticks(12)?) as f64 / hz)
}

/// The argv prefix that runs the rest in a new mount namespace whose mounts do not propagate
/// back: a sandbox may remount /proc/sys and bind directories without touching the host.
pub const PRIVATE_MOUNTS: [&str; 5] = ["unshare", "--mount", "--propagation", "private", "--"];

/// `CAP_*` names as a setpriv bounding-set list that keeps only them (`-all,+bpf,...`).
pub fn setpriv_caps<'a>(caps: impl IntoIterator<Item = &'a str>) -> String {
    let mut list = String::from("-all");
    for cap in caps {
        list.push_str(",+");
        list.push_str(&cap.trim_start_matches("CAP_").to_lowercase());
    }
    list
}

/// Counts, in table `inet TABLE` of `ns`, the packets that reach prerouting and match `matches`
/// (nft syntax, e.g. `ip daddr 203.0.113.10`); [`arrivals`] reads the count.
pub fn count_arrivals(ns: &Netns, table: &str, matches: &str) -> anyhow::Result<()> {
    ns.run(&["nft", "add", "table", "inet", table])?;
    ns.run(&[
        "nft",
        &format!("add chain inet {table} pre {{ type filter hook prerouting priority 0; }}"),
    ])?;
    ns.run(&[
        "nft",
        &format!("add rule inet {table} pre {matches} counter"),
    ])?;
    Ok(())
}

/// Packets [`count_arrivals`] counted in table `inet TABLE` of `ns`.
pub fn arrivals(ns: &Netns, table: &str) -> anyhow::Result<u64> {
    let out = ns.run(&["nft", "list", "table", "inet", table])?;
    out.split_once(" counter packets ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no counter in table inet {table}:\n{out}"))
}
