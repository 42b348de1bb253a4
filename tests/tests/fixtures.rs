//! Tier 2: packet fixtures for ipmp's four eBPF programs, run with BPF_PROG_TEST_RUN:
//! `ipmp_tc_egress` on the IPMP interface, and on the members `ipmp_xdp_member` (the member's
//! answers), `ipmp_tc_ingress` (the answers on members without XDP, and delivery through the
//! IPMP interface) and `ipmp_tc_member` (egress).
//!
//! Each fixture names a program, the device it runs on, map/route tweaks, an input frame, the
//! expected verdict, the expected output bytes, the expected counters (every counter of
//! `IPMP_STATS` is compared, so a fixture also proves nothing else was counted, or that
//! nothing was) and the expected `IPMP_PROBES` records. Every fixture runs in a fresh network
//! namespace (unshared by its own thread) with real veth devices, addresses and routes,
//! because `bpf_fib_lookup` and the test-run device selection need them, and with a freshly
//! loaded object (fresh, unpinned maps). Redirects are not carried out by a test run: a
//! redirecting program returns TC_ACT_REDIRECT and sends nothing. Needs root; under CI
//! (`lab::ci_requires_privilege`) a missing privilege fails the tests instead of skipping them.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::{Result, anyhow, bail, ensure};
use aya::{
    Ebpf,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{SchedClassifier, Xdp},
};
use ipmp_common::{
    AddrInfo, AddrKey, Counter, FAMILY_V4, FAMILY_V6, FlowKey, GroupInfo, MAP_CONFIG, MAP_PROBES,
    MAP_TARGETS, MAP_TESTADDRS, MAX_MEMBERS, MEMBER_F_ACTIVE, MEMBER_F_CAST, MEMBER_F_NO_ECHO,
    MEMBER_F_PROBE_RING_ONLY, MEMBER_F_XDP, MemberInfo, PROBE_CFG_F_ENABLED, PROBE_EV_ARP,
    PROBE_EV_ECHO, PROBE_EV_NA, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_TC_MEMBER, PROG_XDP_MEMBER,
    ProbeConfig, ProbeEvent, Reason, STATS_ENTRIES, STATS_SLOT_UNKNOWN, TARGET_F_NEIGH, TargetInfo,
    TargetKey, TestAddrInfo, bucket_index, bucket_of, flow_hash,
    packet::{
        ARPOP_REPLY, ARPOP_REQUEST, ETH_P_IPV6, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
        ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP,
        IPPROTO_TCP, IPPROTO_UDP, ND_NA_FLAG_OVERRIDE, ND_NA_FLAG_SOLICITED, ND_NEIGHBOR_ADVERT,
        ND_REDIRECT, ND_ROUTER_SOLICIT,
    },
};
use ipmp_tests::packets::{
    BROADCAST, Ipv4, Ipv6, Mac, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP, NEXTHDR_NONE,
    NEXTHDR_ROUTING, Pseudo, arp_frame, ethernet, icmp, icmpv4_checksums_ok, icmpv6,
    icmpv6_checksum_ok, icmpv6_echo, icmpv6_echo_payload, ipv6_ext, ipv6_fragment,
    ipv6_router_alert, mld_query, multicast_mac, multicast_mac_v4, nd_ll_option,
    neighbour_advertisement, neighbour_solicitation, pad60, probe_payload, tcp, udp,
};
use ipmp_tests::prog_lab::{
    BOUND, COOKIE, DATA1_4, DATA1_6, DATA4, DATA6, FAR4, FAR6, IPMP0_MAC, IPMP1_MAC, Lab,
    MEMBER_MAC, PEER_MAC, PEER4, PEER6, PROBE_ID, TARGET_MAC, TARGET4, TARGET6, TEST4, TEST6,
    in_fresh_netns, load_object, load_program,
};
use ipmp_tests::testrun::{ProgKind, test_run};

// --- verdicts -------------------------------------------------------------------------------

use ipmp_tests::model::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX};

// --- the lab --------------------------------------------------------------------------------

/// Devices of the lab. `M(0..=2)` are active members of ipmp0 (m0 is the cast member), `M(3)`
/// is a member of ipmp1, `M(4)` has no member entry. Every device is one end of a veth pair;
/// the peers of ipmp0 and ipmp1 (`ipmp0p`, `ipmp1p`) are where TC ingress sends what enters
/// through the IPMP interface (`MemberInfo::rx_ifindex`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dev {
    Ipmp0,
    Ipmp1,
    M(usize),
}

/// m0's link-local address (source of its neighbour solicitations).
const M0_LL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10);
const SEED: u32 = 0x5eed_1234;
const N_BUCKETS: u32 = 16;
/// Member (index) of each bucket in ipmp0's active half.
const BUCKETS: [usize; N_BUCKETS as usize] = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 1, 0, 1];
const ACTIVE_HALF: u32 = 1;
/// Counter slots of the IPMP interfaces.
const IPMP0_SLOT: u32 = MAX_MEMBERS;
const IPMP1_SLOT: u32 = MAX_MEMBERS + 1;

/// The member of ipmp0 that the shared flow hash assigns `key` to.
fn flow_member(key: &FlowKey) -> usize {
    BUCKETS[bucket_of(flow_hash(key, SEED), N_BUCKETS) as usize]
}

/// Changes to the standard lab and maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tweak {
    /// ipmp0 has no group entry.
    NoGroup,
    /// ipmp0's group has no buckets (no active member).
    NoBuckets,
    /// Every bucket of the active half is 0.
    EmptyBuckets,
    /// m0..m2 lose MEMBER_F_ACTIVE.
    InactiveMembers,
    /// Every bucket of the active half names this device.
    BucketsTo(Dev),
    /// The group has no cast member.
    NoCast,
    /// The group's cast member is this device.
    CastTo(Dev),
    /// ipmp0 has no default routes.
    NoRoutes,
    /// Forwarding stays off on the IPMP interfaces.
    NoForwarding,
    /// ipmp0's members have MEMBER_F_NO_ECHO.
    EchoOff,
    /// ipmp0's members have MEMBER_F_PROBE_RING_ONLY.
    RingOnly,
    /// `IPMP_CONFIG` is left zero (the daemon does not probe).
    ProbingOff,
    /// `IPMP_CONFIG` matches only the high byte of the echo id (in.mpathd's per-member ids).
    SaltedIds,
    /// Every member entry has MEMBER_F_XDP (XDP gives the answers; TC ingress only delivers).
    XdpMembers,
    /// Every member entry has rx_ifindex 0 (the IPMP interface's peer is not known yet).
    NoIpmpPeer,
}

impl Dev {
    fn ifindex(self, lab: &Lab) -> u32 {
        match self {
            Dev::Ipmp0 => lab.ipmp0,
            Dev::Ipmp1 => lab.ipmp1,
            Dev::M(i) => lab.members[i],
        }
    }
}

// --- loading and running --------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    TcEgress,
    XdpMember,
    TcIngress,
    TcMember,
}

impl Prog {
    fn name(self) -> &'static str {
        match self {
            Prog::TcEgress => PROG_TC_EGRESS,
            Prog::XdpMember => PROG_XDP_MEMBER,
            Prog::TcIngress => PROG_TC_INGRESS,
            Prog::TcMember => PROG_TC_MEMBER,
        }
    }

    fn kind(self) -> ProgKind {
        match self {
            Prog::TcEgress | Prog::TcIngress | Prog::TcMember => ProgKind::Tc,
            Prog::XdpMember => ProgKind::Xdp,
        }
    }
}

/// A lab with the object loaded and its maps filled in.
struct Session {
    lab: Lab,
    ebpf: Ebpf,
}

struct Run {
    verdict: u32,
    output: Vec<u8>,
}

impl Session {
    fn new(tweaks: &[Tweak], progs: &[Prog]) -> Result<Self> {
        let lab = Lab::create(
            !tweaks.contains(&Tweak::NoRoutes),
            !tweaks.contains(&Tweak::NoForwarding),
        )?;
        let mut ebpf = load_object()?;
        fill_maps(&mut ebpf, &lab, tweaks)?;
        for prog in progs {
            load_program(&mut ebpf, prog.name(), prog.kind())?;
        }
        Ok(Self { lab, ebpf })
    }

    fn run(&mut self, prog: Prog, on: Dev, input: &[u8]) -> Result<Run> {
        let ifindex = on.ifindex(&self.lab);
        let r = test_run(&mut self.ebpf, prog.name(), prog.kind(), ifindex, input, 1)?;
        Ok(Run {
            verdict: r.verdict,
            output: r.output,
        })
    }

    /// The records the member programs wrote into `IPMP_PROBES` (consumed).
    fn probe_events(&mut self) -> Result<Vec<ProbeEvent>> {
        let mut ring = RingBuf::try_from(
            self.ebpf
                .map_mut(MAP_PROBES)
                .ok_or_else(|| anyhow!("no map {MAP_PROBES}"))?,
        )?;
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            ensure!(
                item.len() == size_of::<ProbeEvent>(),
                "ring record of {} bytes (want {})",
                item.len(),
                size_of::<ProbeEvent>()
            );
            // SAFETY: ProbeEvent is plain #[repr(C)] data of exactly this many bytes.
            events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ProbeEvent>()) });
        }
        Ok(events)
    }

    /// Every non-zero counter, summed over CPUs.
    fn counters(&self) -> Result<BTreeMap<(u32, Reason), Counter>> {
        let stats: PerCpuArray<_, Counter> = PerCpuArray::try_from(
            self.ebpf
                .map("IPMP_STATS")
                .ok_or_else(|| anyhow!("no map IPMP_STATS"))?,
        )?;
        let mut found = BTreeMap::new();
        for index in 0..STATS_ENTRIES {
            let mut sum = Counter::default();
            for c in stats.get(&index, 0)?.iter() {
                sum.packets += c.packets;
                sum.bytes += c.bytes;
            }
            if sum != Counter::default() {
                let reason = Reason::from_u32(index % Reason::COUNT)
                    .ok_or_else(|| anyhow!("no reason for counter {index}"))?;
                found.insert((index / Reason::COUNT, reason), sum);
            }
        }
        Ok(found)
    }
}

fn fill_maps(ebpf: &mut Ebpf, lab: &Lab, tweaks: &[Tweak]) -> Result<()> {
    let m = |i: usize| lab.members[i];
    let has = |t: Tweak| tweaks.contains(&t);

    let mut group0 = GroupInfo {
        slot: 0,
        active_half: ACTIVE_HALF,
        n_buckets: N_BUCKETS,
        seed: SEED,
        cast_ifindex: m(0),
        stats_slot: IPMP0_SLOT,
        flags: 0,
        cast_mac: MEMBER_MAC[0],
        _pad: [0; 2],
    };
    if has(Tweak::NoBuckets) {
        group0.n_buckets = 0;
    }
    for t in tweaks {
        match t {
            Tweak::NoCast => group0.cast_ifindex = 0,
            Tweak::CastTo(dev) => group0.cast_ifindex = dev.ifindex(lab),
            _ => {}
        }
    }
    let group1 = GroupInfo {
        slot: 1,
        active_half: 0,
        n_buckets: 1,
        seed: 0,
        cast_ifindex: m(3),
        stats_slot: IPMP1_SLOT,
        flags: 0,
        cast_mac: MEMBER_MAC[3],
        _pad: [0; 2],
    };
    {
        let mut groups: HashMap<_, u32, GroupInfo> = HashMap::try_from(
            ebpf.map_mut("IPMP_GROUPS")
                .ok_or_else(|| anyhow!("IPMP_GROUPS"))?,
        )?;
        if !has(Tweak::NoGroup) {
            groups.insert(lab.ipmp0, group0, 0)?;
        }
        groups.insert(lab.ipmp1, group1, 0)?;
    }
    {
        let mut members: HashMap<_, u32, MemberInfo> = HashMap::try_from(
            ebpf.map_mut("IPMP_MEMBERS")
                .ok_or_else(|| anyhow!("IPMP_MEMBERS"))?,
        )?;
        let active = if has(Tweak::InactiveMembers) {
            0
        } else {
            MEMBER_F_ACTIVE
        };
        let arp_src = |a: Option<Ipv4Addr>| a.map_or(0, |a| u32::from_ne_bytes(a.octets()));
        let xdp = if has(Tweak::XdpMembers) {
            MEMBER_F_XDP
        } else {
            0
        };
        // The group switches ipmpd copies into each member of ipmp0.
        let mut switches = 0;
        if has(Tweak::EchoOff) {
            switches |= MEMBER_F_NO_ECHO;
        }
        if has(Tweak::RingOnly) {
            switches |= MEMBER_F_PROBE_RING_ONLY;
        }
        let peer = |group: (u32, Mac)| {
            if has(Tweak::NoIpmpPeer) { 0 } else { group.0 }
        };
        let ipmp0 = (lab.ipmp0_peer, IPMP0_MAC);
        let ipmp1 = (lab.ipmp1_peer, IPMP1_MAC);
        let entries = [
            (
                0,
                lab.ipmp0,
                active | MEMBER_F_CAST | switches,
                arp_src(Some(TEST4[0])),
                ipmp0,
            ),
            (
                1,
                lab.ipmp0,
                active | switches,
                arp_src(Some(TEST4[1])),
                ipmp0,
            ),
            (2, lab.ipmp0, active | switches, arp_src(None), ipmp0),
            (3, lab.ipmp1, MEMBER_F_ACTIVE | MEMBER_F_CAST, 0, ipmp1),
        ];
        for (i, group_ifindex, flags, arp_src, ipmp) in entries {
            let info = MemberInfo {
                group_ifindex,
                stats_slot: i as u32,
                flags: flags | xdp,
                arp_src,
                rx_ifindex: peer(ipmp),
                mac: MEMBER_MAC[i],
                ipmp_mac: ipmp.1,
            };
            members.insert(m(i), info, 0)?;
        }
    }
    {
        let mut buckets: Array<_, u32> = Array::try_from(
            ebpf.map_mut("IPMP_BUCKETS")
                .ok_or_else(|| anyhow!("IPMP_BUCKETS"))?,
        )?;
        let index = |slot: u32, half: u32, bucket: u32| {
            bucket_index(slot, half, bucket).ok_or_else(|| anyhow!("bucket {slot}/{half}/{bucket}"))
        };
        for (b, member) in BUCKETS.iter().enumerate() {
            let b = b as u32;
            let mut value = m(*member);
            for t in tweaks {
                match t {
                    Tweak::EmptyBuckets => value = 0,
                    Tweak::BucketsTo(dev) => value = dev.ifindex(lab),
                    _ => {}
                }
            }
            buckets.set(index(0, ACTIVE_HALF, b)?, value, 0)?;
            // The inactive half names a member of another group: reading it is a bad entry.
            buckets.set(index(0, 1 - ACTIVE_HALF, b)?, m(3), 0)?;
        }
        buckets.set(index(1, 0, 0)?, m(3), 0)?;
    }
    {
        let mut addrs: HashMap<_, AddrKey, AddrInfo> = HashMap::try_from(
            ebpf.map_mut("IPMP_ADDRS")
                .ok_or_else(|| anyhow!("IPMP_ADDRS"))?,
        )?;
        for i in 0..3 {
            let info = AddrInfo {
                group_ifindex: lab.ipmp0,
                bound_ifindex: BOUND[i].map_or(0, m),
            };
            addrs.insert(AddrKey::v4(DATA4[i].octets()), info, 0)?;
            addrs.insert(AddrKey::v6(DATA6[i].octets()), info, 0)?;
        }
        let info = AddrInfo {
            group_ifindex: lab.ipmp1,
            bound_ifindex: m(3),
        };
        addrs.insert(AddrKey::v4(DATA1_4.octets()), info, 0)?;
        addrs.insert(AddrKey::v6(DATA1_6.octets()), info, 0)?;
    }
    {
        let mut tests: HashMap<_, AddrKey, TestAddrInfo> = HashMap::try_from(
            ebpf.map_mut(MAP_TESTADDRS)
                .ok_or_else(|| anyhow!("{MAP_TESTADDRS}"))?,
        )?;
        let entries = [
            (AddrKey::v4(TEST4[0].octets()), 0),
            (AddrKey::v4(TEST4[1].octets()), 1),
            (AddrKey::v6(TEST6.octets()), 0),
        ];
        for (key, member) in entries {
            let info = TestAddrInfo {
                member_ifindex: m(member),
                group_ifindex: lab.ipmp0,
            };
            tests.insert(key, info, 0)?;
        }
    }
    {
        let mut targets: HashMap<_, TargetKey, TargetInfo> = HashMap::try_from(
            ebpf.map_mut(MAP_TARGETS)
                .ok_or_else(|| anyhow!("{MAP_TARGETS}"))?,
        )?;
        let entries = [
            (0, AddrKey::v4(TARGET4.octets()), TARGET_F_NEIGH),
            (0, AddrKey::v6(TARGET6.octets()), TARGET_F_NEIGH),
            (1, AddrKey::v4(TARGET4.octets()), 0),
        ];
        for (member, addr, flags) in entries {
            targets.insert(TargetKey::new(m(member), addr), TargetInfo { flags }, 0)?;
        }
    }
    if !has(Tweak::ProbingOff) {
        let mut config: Array<_, ProbeConfig> = Array::try_from(
            ebpf.map_mut(MAP_CONFIG)
                .ok_or_else(|| anyhow!("{MAP_CONFIG}"))?,
        )?;
        let echo_id_mask = if has(Tweak::SaltedIds) {
            0xff00
        } else {
            0xffff
        };
        let cfg = ProbeConfig {
            cookie: COOKIE,
            echo_id: u32::from(PROBE_ID),
            echo_id_mask,
            flags: PROBE_CFG_F_ENABLED,
            _pad: 0,
        };
        config.set(0, cfg, 0)?;
    }
    Ok(())
}

// --- fixtures -------------------------------------------------------------------------------

/// An extra check of a fixture's output frame.
type Check = fn(&[u8]) -> Result<()>;

struct Fixture {
    what: String,
    prog: Prog,
    on: Dev,
    tweaks: Vec<Tweak>,
    input: Vec<u8>,
    verdict: u32,
    /// Expected output frame; `None`: the input unchanged.
    output: Option<Vec<u8>>,
    /// Counter slots and reasons expected to count this one packet (all others stay zero).
    counts: Vec<(u32, Reason)>,
    /// Further checks of the output frame.
    check: Option<Check>,
    /// Records expected in `IPMP_PROBES` (`rx_ns` is checked to lie within the run; `ifindex`
    /// holds the member's number, m0 = 0); none unless given.
    events: Vec<ProbeEvent>,
}

impl Fixture {
    fn new(what: impl Into<String>, prog: Prog, on: Dev, input: Vec<u8>) -> Self {
        Self {
            what: what.into(),
            prog,
            on,
            tweaks: Vec::new(),
            input,
            verdict: u32::MAX,
            output: None,
            counts: Vec::new(),
            check: None,
            events: Vec::new(),
        }
    }

    fn event(mut self, event: ProbeEvent) -> Self {
        self.events.push(event);
        self
    }

    fn tweak(mut self, tweak: Tweak) -> Self {
        self.tweaks.push(tweak);
        self
    }

    fn expect(mut self, verdict: u32, slot: u32, reason: Reason) -> Self {
        self.verdict = verdict;
        self.counts.push((slot, reason));
        self
    }

    /// Expects `verdict` with no counter at all.
    fn expect_uncounted(mut self, verdict: u32) -> Self {
        self.verdict = verdict;
        self.counts.clear();
        self
    }

    fn output(mut self, output: Vec<u8>) -> Self {
        self.output = Some(output);
        self
    }

    fn check(mut self, check: Check) -> Self {
        self.check = Some(check);
        self
    }

    fn run(&self) -> Result<()> {
        in_fresh_netns(|| {
            let mut session = Session::new(&self.tweaks, &[self.prog])?;
            let before = monotonic_ns();
            let run = session.run(self.prog, self.on, &self.input)?;
            let after = monotonic_ns();
            ensure!(
                run.verdict == self.verdict,
                "verdict {} (want {}), counters {:?}",
                run.verdict,
                self.verdict,
                session.counters()?
            );
            let want = self.output.as_ref().unwrap_or(&self.input);
            ensure!(
                run.output == *want,
                "output differs\n got  {}\n want {}",
                hex(&run.output),
                hex(want)
            );
            if let Some(check) = self.check {
                check(&run.output)?;
            }
            let len = self.input.len() as u64;
            let want: BTreeMap<_, _> = self
                .counts
                .iter()
                .map(|&(slot, reason)| {
                    (
                        (slot, reason),
                        Counter {
                            packets: 1,
                            bytes: len,
                        },
                    )
                })
                .collect();
            let got = session.counters()?;
            ensure!(got == want, "counters {got:?} (want {want:?})");
            let mut events = session.probe_events()?;
            for e in &mut events {
                ensure!(
                    (before..=after).contains(&e.rx_ns),
                    "rx_ns {} outside the run [{before}, {after}]: {e:?}",
                    e.rx_ns
                );
                e.rx_ns = 0;
            }
            let want_events: Vec<ProbeEvent> = self
                .events
                .iter()
                .map(|e| ProbeEvent {
                    ifindex: Dev::M(e.ifindex as usize).ifindex(&session.lab),
                    ..*e
                })
                .collect();
            ensure!(
                events == want_events,
                "probe events {events:#?}\n want {want_events:#?}"
            );
            Ok(())
        })
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run_table(test: &str, fixtures: Vec<Fixture>) -> Result<()> {
    if !ipmp_tests::lab::require_root(test) {
        return Ok(());
    }
    let mut failures = Vec::new();
    for f in &fixtures {
        match f.run() {
            Ok(()) => println!("ok   {}", f.what),
            Err(e) => {
                println!("FAIL {}: {e:#}", f.what);
                failures.push(format!("{}: {e:#}", f.what));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} fixtures failed:\n{}",
            failures.len(),
            fixtures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

// --- frames ---------------------------------------------------------------------------------

/// Source of everything ipmp0 sends: its data address.
const SRC4: Ipv4Addr = DATA4[0];
const SRC6: Ipv6Addr = DATA6[0];

/// Frames the stack hands to the NOARP IPMP interface carry its own MAC as destination.
fn out4(ip: &Ipv4, l4: &[u8]) -> Vec<u8> {
    ip.frame(IPMP0_MAC, IPMP0_MAC, l4)
}

fn out6(ip: &Ipv6, payload: &[u8]) -> Vec<u8> {
    ip.frame(IPMP0_MAC, IPMP0_MAC, payload)
}

fn key4(dst: Ipv4Addr, proto: u8, sport: u16, dport: u16) -> FlowKey {
    FlowKey::v4(SRC4.octets(), dst.octets(), proto, sport, dport)
}

fn key6(dst: Ipv6Addr, proto: u8, sport: u16, dport: u16) -> FlowKey {
    FlowKey::v6(SRC6.octets(), dst.octets(), proto, sport, dport)
}

fn udp4(dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let ip = Ipv4::new(SRC4, dst, IPPROTO_UDP);
    out4(
        &ip,
        &udp(Pseudo::V4(SRC4, dst), sport, dport, b"ipmp fixture"),
    )
}

fn tcp4(dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let ip = Ipv4::new(SRC4, dst, IPPROTO_TCP);
    out4(&ip, &tcp(Pseudo::V4(SRC4, dst), sport, dport, b"GET /"))
}

fn udp6(dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let ip = Ipv6::new(SRC6, dst, IPPROTO_UDP);
    out6(
        &ip,
        &udp(Pseudo::V6(SRC6, dst), sport, dport, b"ipmp fixture"),
    )
}

fn tcp6(dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let ip = Ipv6::new(SRC6, dst, IPPROTO_TCP);
    out6(&ip, &tcp(Pseudo::V6(SRC6, dst), sport, dport, b"GET /"))
}

/// Ports for which the flow hash sends the datagram and its port-less fragments to different
/// members, so that a fixture shows fragments really hash without ports.
fn split_ports(with: impl Fn(u16) -> FlowKey, without: FlowKey) -> u16 {
    let frag_member = flow_member(&without);
    (40000..u16::MAX)
        .find(|&p| flow_member(&with(p)) != frag_member)
        .expect("some port moves the flow to another member")
}

/// A UDP datagram (8-byte header, 40 bytes of payload) cut into three fragments of 16 bytes
/// (first, middle, last), the unfragmented datagram, and the flow keys with and without
/// ports.
struct Fragments {
    whole: Vec<u8>,
    first: Vec<u8>,
    middle: Vec<u8>,
    last: Vec<u8>,
    key_ports: FlowKey,
    key_frag: FlowKey,
}

fn fragments4() -> Fragments {
    let key_frag = key4(FAR4, IPPROTO_UDP, 0, 0);
    let sport = split_ports(|p| key4(FAR4, IPPROTO_UDP, p, 53), key_frag);
    let datagram = udp(Pseudo::V4(SRC4, FAR4), sport, 53, &[0xab; 40]);
    let base = Ipv4::new(SRC4, FAR4, IPPROTO_UDP);
    let frag = |offset: usize, more: bool| {
        let mut ip = base.clone();
        ip.more_fragments = more;
        ip.frag_offset = (offset / 8) as u16;
        let end = (offset + 16).min(datagram.len());
        out4(&ip, &datagram[offset..end])
    };
    Fragments {
        whole: out4(&base, &datagram),
        first: frag(0, true),
        middle: frag(16, true),
        last: frag(32, false),
        key_ports: key4(FAR4, IPPROTO_UDP, sport, 53),
        key_frag,
    }
}

fn fragments6() -> Fragments {
    let key_frag = key6(FAR6, IPPROTO_UDP, 0, 0);
    let sport = split_ports(|p| key6(FAR6, IPPROTO_UDP, p, 53), key_frag);
    let datagram = udp(Pseudo::V6(SRC6, FAR6), sport, 53, &[0xcd; 40]);
    let frag = |offset: usize, more: bool| {
        let end = (offset + 16).min(datagram.len());
        let mut payload = ipv6_fragment(IPPROTO_UDP, (offset / 8) as u16, more, 0xfeed);
        payload.extend_from_slice(&datagram[offset..end]);
        out6(&Ipv6::new(SRC6, FAR6, NEXTHDR_FRAGMENT), &payload)
    };
    Fragments {
        whole: out6(&Ipv6::new(SRC6, FAR6, IPPROTO_UDP), &datagram),
        first: frag(0, true),
        middle: frag(16, true),
        last: frag(32, false),
        key_ports: key6(FAR6, IPPROTO_UDP, sport, 53),
        key_frag,
    }
}

// --- TC egress on the IPMP interface --------------------------------------------------------

fn unicast(what: &str, frame: Vec<u8>, key: FlowKey) -> Fixture {
    let member = flow_member(&key);
    Fixture::new(
        format!("{what} → m{member}"),
        Prog::TcEgress,
        Dev::Ipmp0,
        frame,
    )
    .expect(TC_ACT_REDIRECT, member as u32, Reason::TxUnicast)
}

fn egress_drop(what: &str, frame: Vec<u8>, slot: u32, reason: Reason) -> Fixture {
    Fixture::new(what, Prog::TcEgress, Dev::Ipmp0, frame).expect(TC_ACT_SHOT, slot, reason)
}

fn tc_egress_table() -> Vec<Fixture> {
    let mut t = Vec::new();
    // IPv4 × protocols.
    t.push(unicast(
        "v4 tcp off-link",
        tcp4(FAR4, 40001, 443),
        key4(FAR4, IPPROTO_TCP, 40001, 443),
    ));
    t.push(unicast(
        "v4 udp off-link",
        udp4(FAR4, 40002, 53),
        key4(FAR4, IPPROTO_UDP, 40002, 53),
    ));
    let on_link = Ipv4Addr::new(198, 51, 100, 77);
    t.push(unicast(
        "v4 udp on-link",
        udp4(on_link, 40003, 53),
        key4(on_link, IPPROTO_UDP, 40003, 53),
    ));
    let sctp = {
        let ip = Ipv4::new(SRC4, FAR4, IPPROTO_SCTP);
        let mut chunk = 38412u16.to_be_bytes().to_vec();
        chunk.extend_from_slice(&2905u16.to_be_bytes());
        chunk.extend_from_slice(&[0; 8]);
        out4(&ip, &chunk)
    };
    t.push(unicast(
        "v4 sctp",
        sctp,
        key4(FAR4, IPPROTO_SCTP, 38412, 2905),
    ));
    for (kind, name) in [(ICMP_ECHO_REQUEST, "request"), (ICMP_ECHO_REPLY, "reply")] {
        let ip = Ipv4::new(SRC4, FAR4, IPPROTO_ICMP);
        t.push(unicast(
            &format!("v4 icmp echo {name} (id as port)"),
            out4(&ip, &icmp(kind, 0, 0x4242, 1, b"ping")),
            key4(FAR4, IPPROTO_ICMP, 0x4242, 0),
        ));
    }
    let ip = Ipv4::new(SRC4, FAR4, IPPROTO_ICMP);
    t.push(unicast(
        "v4 icmp unreachable (no id)",
        out4(&ip, &icmp(3, 3, 0x4242, 0, &[0; 28])),
        key4(FAR4, IPPROTO_ICMP, 0, 0),
    ));
    let gre = Ipv4::new(SRC4, FAR4, 47);
    t.push(unicast(
        "v4 gre (no ports)",
        out4(&gre, &[0, 0, 0x08, 0x00, 1, 2, 3, 4]),
        key4(FAR4, 47, 0, 0),
    ));
    let mut opts = Ipv4::new(SRC4, FAR4, IPPROTO_UDP);
    opts.options = vec![0x94, 0x04, 0, 0]; // router alert: IHL 6
    t.push(unicast(
        "v4 udp with IP options (IHL 6)",
        out4(&opts, &udp(Pseudo::V4(SRC4, FAR4), 40004, 5353, b"x")),
        key4(FAR4, IPPROTO_UDP, 40004, 5353),
    ));
    let f4 = fragments4();
    t.push(unicast("v4 udp whole datagram", f4.whole, f4.key_ports));
    t.push(unicast(
        "v4 first fragment (no ports)",
        f4.first,
        f4.key_frag,
    ));
    t.push(unicast("v4 middle fragment", f4.middle, f4.key_frag));
    t.push(unicast("v4 last fragment", f4.last, f4.key_frag));

    // IPv6 × protocols.
    t.push(unicast(
        "v6 tcp off-link",
        tcp6(FAR6, 40011, 443),
        key6(FAR6, IPPROTO_TCP, 40011, 443),
    ));
    t.push(unicast(
        "v6 udp off-link",
        udp6(FAR6, 40012, 53),
        key6(FAR6, IPPROTO_UDP, 40012, 53),
    ));
    for (kind, name) in [
        (ICMPV6_ECHO_REQUEST, "request"),
        (ICMPV6_ECHO_REPLY, "reply"),
    ] {
        t.push(unicast(
            &format!("v6 icmpv6 echo {name} (id as port)"),
            out6(
                &Ipv6::new(SRC6, FAR6, IPPROTO_ICMPV6),
                &icmpv6_echo(SRC6, FAR6, kind, 0x5151, 3),
            ),
            key6(FAR6, IPPROTO_ICMPV6, 0x5151, 0),
        ));
    }
    t.push(unicast(
        "v6 icmpv6 packet too big (no id)",
        out6(
            &Ipv6::new(SRC6, FAR6, IPPROTO_ICMPV6),
            &icmpv6(SRC6, FAR6, 2, 0, &[0, 0, 5, 0xdc, 0x60, 0, 0, 0]),
        ),
        key6(FAR6, IPPROTO_ICMPV6, 0, 0),
    ));
    t.push(unicast(
        "v6 no next header (no ports)",
        out6(&Ipv6::new(SRC6, FAR6, NEXTHDR_NONE), &[]),
        key6(FAR6, NEXTHDR_NONE, 0, 0),
    ));
    let ext = {
        // hop-by-hop → destination options (16 bytes) → routing → UDP
        let mut p = ipv6_ext(NEXTHDR_DEST, 0);
        p.extend_from_slice(&ipv6_ext(NEXTHDR_ROUTING, 1));
        p.extend_from_slice(&ipv6_ext(IPPROTO_UDP, 0));
        p.extend_from_slice(&udp(Pseudo::V6(SRC6, FAR6), 40013, 4789, b"vxlan"));
        out6(&Ipv6::new(SRC6, FAR6, NEXTHDR_HOP), &p)
    };
    t.push(unicast(
        "v6 udp behind hop-by-hop, dest opts, routing",
        ext,
        key6(FAR6, IPPROTO_UDP, 40013, 4789),
    ));
    let f6 = fragments6();
    t.push(unicast("v6 udp whole datagram", f6.whole, f6.key_ports));
    t.push(unicast(
        "v6 first fragment (no ports)",
        f6.first,
        f6.key_frag,
    ));
    t.push(unicast("v6 middle fragment", f6.middle, f6.key_frag));
    t.push(unicast("v6 last fragment", f6.last, f6.key_frag));
    let ll_src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10);
    let ll_dst = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99);
    t.push(unicast(
        "v6 link-local destination (no FIB lookup)",
        out6(
            &Ipv6::new(ll_src, ll_dst, IPPROTO_UDP),
            &udp(Pseudo::V6(ll_src, ll_dst), 546, 547, b"dhcp"),
        ),
        FlowKey::v6(ll_src.octets(), ll_dst.octets(), IPPROTO_UDP, 546, 547),
    ));

    // Broadcast and multicast: out of the cast member, with its MAC.
    let bcast = {
        let dst = Ipv4Addr::new(198, 51, 100, 255);
        let ip = Ipv4::new(SRC4, dst, IPPROTO_UDP);
        ip.frame(
            BROADCAST,
            IPMP0_MAC,
            &udp(Pseudo::V4(SRC4, dst), 138, 138, b"nb"),
        )
    };
    let mcast = {
        let dst: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
        Ipv6::new(SRC6, dst, IPPROTO_UDP).frame(
            multicast_mac(dst),
            IPMP0_MAC,
            &udp(Pseudo::V6(SRC6, dst), 5353, 5353, b"mdns"),
        )
    };
    for (name, frame) in [("v4 broadcast", &bcast), ("v6 multicast", &mcast)] {
        let mut rewritten = frame.clone();
        rewritten[6..12].copy_from_slice(&MEMBER_MAC[0]);
        t.push(
            Fixture::new(
                format!("{name} → cast member m0, source MAC m0"),
                Prog::TcEgress,
                Dev::Ipmp0,
                frame.clone(),
            )
            .expect(TC_ACT_REDIRECT, 0, Reason::TxCast)
            .output(rewritten),
        );
        t.push(
            egress_drop(
                &format!("{name} without cast member"),
                frame.clone(),
                IPMP0_SLOT,
                Reason::TxNoMember,
            )
            .tweak(Tweak::NoCast),
        );
        t.push(
            egress_drop(
                &format!("{name}, cast member without member entry"),
                frame.clone(),
                IPMP0_SLOT,
                Reason::TxBadEntry,
            )
            .tweak(Tweak::CastTo(Dev::M(4))),
        );
    }

    let limited = {
        let dst = Ipv4Addr::BROADCAST;
        out4(
            &Ipv4::new(SRC4, dst, IPPROTO_UDP),
            &udp(Pseudo::V4(SRC4, dst), 68, 67, b"bootp"),
        )
    };
    let mut to_all = limited.clone();
    to_all[0..6].copy_from_slice(&BROADCAST);
    to_all[6..12].copy_from_slice(&MEMBER_MAC[0]);
    t.push(
        Fixture::new(
            "255.255.255.255 with the NOARP unicast MAC → cast member, broadcast MAC",
            Prog::TcEgress,
            Dev::Ipmp0,
            limited,
        )
        .expect(TC_ACT_REDIRECT, 0, Reason::TxCast)
        .output(to_all),
    );

    // Drops.
    t.push(
        egress_drop(
            "no group entry",
            tcp4(FAR4, 40020, 443),
            STATS_SLOT_UNKNOWN,
            Reason::TxNoGroup,
        )
        .tweak(Tweak::NoGroup),
    );
    t.push(
        Fixture::new(
            "run on a member (no group entry)",
            Prog::TcEgress,
            Dev::M(1),
            tcp4(FAR4, 40020, 443),
        )
        .expect(TC_ACT_SHOT, STATS_SLOT_UNKNOWN, Reason::TxNoGroup),
    );
    t.push(egress_drop(
        "not IP (ARP)",
        arp_frame(BROADCAST, ARPOP_REQUEST, IPMP0_MAC, SRC4, [0; 6], PEER4),
        IPMP0_SLOT,
        Reason::TxNotIp,
    ));
    t.push(egress_drop(
        "not IP (LLDP)",
        ethernet([0x01, 0x80, 0xc2, 0, 0, 0x0e], IPMP0_MAC, 0x88cc, &[0; 32]),
        IPMP0_SLOT,
        Reason::TxNotIp,
    ));
    // BPF_PROG_TEST_RUN (6.18) refuses skbs shorter than the base IPv4/IPv6 header, so a
    // truncated base header cannot be a fixture; truncations past it can.
    let full = tcp4(FAR4, 40021, 443);
    let mut ihl15 = full[..14 + 20].to_vec();
    ihl15[14] = 0x4f;
    t.push(egress_drop(
        "IPv4 IHL 15 beyond the end of the packet",
        ihl15,
        IPMP0_SLOT,
        Reason::TxMalformed,
    ));
    t.push(egress_drop(
        "truncated TCP header",
        full[..14 + 20 + 2].to_vec(),
        IPMP0_SLOT,
        Reason::TxMalformed,
    ));
    let mut ihl4 = full.clone();
    ihl4[14] = 0x44;
    t.push(egress_drop(
        "IPv4 IHL 4",
        ihl4,
        IPMP0_SLOT,
        Reason::TxMalformed,
    ));
    let mut v6_in_v4 = full.clone();
    v6_in_v4[14] = 0x65;
    t.push(egress_drop(
        "IPv4 ethertype, version 6",
        v6_in_v4,
        IPMP0_SLOT,
        Reason::TxMalformed,
    ));
    let full6 = tcp6(FAR6, 40022, 443);
    t.push(egress_drop(
        "truncated TCP header after IPv6",
        full6[..14 + 40 + 3].to_vec(),
        IPMP0_SLOT,
        Reason::TxMalformed,
    ));
    t.push(egress_drop(
        "truncated extension header chain",
        out6(
            &Ipv6::new(SRC6, FAR6, NEXTHDR_HOP),
            &ipv6_ext(IPPROTO_UDP, 0),
        ),
        IPMP0_SLOT,
        Reason::TxMalformed,
    ));
    t.push(
        egress_drop(
            "no buckets (no active member)",
            tcp4(FAR4, 40023, 443),
            IPMP0_SLOT,
            Reason::TxNoMember,
        )
        .tweak(Tweak::NoBuckets),
    );
    t.push(
        egress_drop(
            "bucket holds 0",
            tcp4(FAR4, 40024, 443),
            IPMP0_SLOT,
            Reason::TxNoMember,
        )
        .tweak(Tweak::EmptyBuckets),
    );
    t.push(
        egress_drop(
            "bucket names an inactive member",
            tcp4(FAR4, 40025, 443),
            IPMP0_SLOT,
            Reason::TxBadEntry,
        )
        .tweak(Tweak::InactiveMembers),
    );
    t.push(
        egress_drop(
            "bucket names a member of another group",
            tcp4(FAR4, 40026, 443),
            IPMP0_SLOT,
            Reason::TxBadEntry,
        )
        .tweak(Tweak::BucketsTo(Dev::M(3))),
    );
    t.push(
        egress_drop(
            "bucket names an interface without member entry",
            tcp4(FAR4, 40027, 443),
            IPMP0_SLOT,
            Reason::TxBadEntry,
        )
        .tweak(Tweak::BucketsTo(Dev::M(4))),
    );
    t.push(
        egress_drop(
            "v4 no route",
            tcp4(FAR4, 40028, 443),
            IPMP0_SLOT,
            Reason::TxNoRoute,
        )
        .tweak(Tweak::NoRoutes),
    );
    t.push(
        egress_drop(
            "v6 no route",
            tcp6(FAR6, 40029, 443),
            IPMP0_SLOT,
            Reason::TxNoRoute,
        )
        .tweak(Tweak::NoRoutes),
    );
    t.push(
        egress_drop(
            "v4 forwarding off",
            tcp4(FAR4, 40031, 443),
            IPMP0_SLOT,
            Reason::TxFwdDisabled,
        )
        .tweak(Tweak::NoForwarding),
    );
    t.push(
        egress_drop(
            "v6 forwarding off",
            tcp6(FAR6, 40032, 443),
            IPMP0_SLOT,
            Reason::TxFwdDisabled,
        )
        .tweak(Tweak::NoForwarding),
    );
    let (src1, dst1) = (
        Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x10),
        Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x99),
    );
    t.push(
        Fixture::new(
            "second group: its own buckets and member",
            Prog::TcEgress,
            Dev::Ipmp1,
            Ipv6::new(src1, dst1, IPPROTO_UDP).frame(
                IPMP1_MAC,
                IPMP1_MAC,
                &udp(Pseudo::V6(src1, dst1), 1, 2, b"x"),
            ),
        )
        .expect(TC_ACT_REDIRECT, 3, Reason::TxUnicast),
    );
    t.push(
        Fixture::new(
            "second group: no route, counted on its interface",
            Prog::TcEgress,
            Dev::Ipmp1,
            udp4(FAR4, 1, 2),
        )
        .expect(TC_ACT_SHOT, IPMP1_SLOT, Reason::TxNoRoute),
    );
    t.push(
        unicast(
            "v4 on-link destination without default route",
            udp4(on_link, 40030, 53),
            key4(on_link, IPPROTO_UDP, 40030, 53),
        )
        .tweak(Tweak::NoRoutes),
    );
    t
}

#[test]
fn tc_egress_fixtures() -> Result<()> {
    run_table("tc_egress_fixtures", tc_egress_table())
}

// --- XDP on members -------------------------------------------------------------------------

/// The counter slot of member `on` (m4 has no member entry).
fn member_slot(on: usize) -> u32 {
    if on < 4 {
        on as u32
    } else {
        STATS_SLOT_UNKNOWN
    }
}

fn xdp(what: &str, on: usize, frame: Vec<u8>, verdict: u32, reason: Reason) -> Fixture {
    Fixture::new(format!("m{on}: {what}"), Prog::XdpMember, Dev::M(on), frame).expect(
        verdict,
        member_slot(on),
        reason,
    )
}

/// A frame that is not XDP's business (`member::respond` has no answer for it): passed on to
/// TC ingress, which delivers and counts it; XDP counts nothing.
fn xdp_leaves(what: &str, on: usize, frame: Vec<u8>) -> Fixture {
    Fixture::new(
        format!("m{on}: {what} (left to TC ingress)"),
        Prog::XdpMember,
        Dev::M(on),
        frame,
    )
    .expect_uncounted(XDP_PASS)
}

fn arp_request(spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    pad60(arp_frame(
        BROADCAST,
        ARPOP_REQUEST,
        PEER_MAC,
        spa,
        [0; 6],
        tpa,
    ))
}

/// The reply m`member` sends for a request from the peer.
fn arp_reply(member: usize, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mac = MEMBER_MAC[member];
    pad60(arp_frame(PEER_MAC, ARPOP_REPLY, mac, tpa, PEER_MAC, spa))
}

fn na_checksum(frame: &[u8]) -> Result<()> {
    ensure!(frame.len() == 86, "NA frame is {} bytes", frame.len());
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38])?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54])?);
    ensure!(frame[54] == ND_NEIGHBOR_ADVERT, "not an NA");
    ensure!(
        icmpv6_checksum_ok(src, dst, &frame[54..]),
        "NA checksum does not verify"
    );
    Ok(())
}

fn xdp_member_table() -> Vec<Fixture> {
    let mut t = Vec::new();
    let [d0, d1, d2] = DATA4;
    // ARP.
    t.push(
        xdp(
            "ARP request for an address bound here",
            0,
            arp_request(PEER4, d0),
            XDP_TX,
            Reason::ArpReply,
        )
        .output(arp_reply(0, PEER4, d0)),
    );
    t.push(
        xdp(
            "ARP request bound here (unpadded)",
            1,
            arp_frame(BROADCAST, ARPOP_REQUEST, PEER_MAC, PEER4, [0; 6], d1),
            XDP_TX,
            Reason::ArpReply,
        )
        .output(arp_reply(1, PEER4, d1)[..42].to_vec()),
    );
    t.push(
        xdp(
            "ARP probe (sender 0.0.0.0) for an address bound here",
            0,
            arp_request(Ipv4Addr::UNSPECIFIED, d0),
            XDP_TX,
            Reason::ArpReply,
        )
        .output(arp_reply(0, Ipv4Addr::UNSPECIFIED, d0)),
    );
    t.push(xdp(
        "ARP request for an address bound to m1",
        0,
        arp_request(PEER4, d1),
        XDP_DROP,
        Reason::ArpNotBound,
    ));
    t.push(xdp(
        "ARP request for an address bound to no member",
        0,
        arp_request(PEER4, d2),
        XDP_DROP,
        Reason::ArpNotBound,
    ));
    t.push(xdp(
        "ARP request for an address bound to no member",
        2,
        arp_request(PEER4, d2),
        XDP_DROP,
        Reason::ArpNotBound,
    ));
    t.push(xdp(
        "ARP request for an unknown address (non-cast member)",
        1,
        arp_request(PEER4, TEST4[1]),
        XDP_PASS,
        Reason::RxPass,
    ));
    t.push(xdp(
        "gratuitous ARP request of a peer",
        1,
        arp_request(PEER4, PEER4),
        XDP_PASS,
        Reason::RxPass,
    ));
    t.push(xdp(
        "gratuitous ARP reply of a peer",
        2,
        pad60(arp_frame(
            BROADCAST,
            ARPOP_REPLY,
            PEER_MAC,
            PEER4,
            BROADCAST,
            PEER4,
        )),
        XDP_PASS,
        Reason::RxPass,
    ));
    t.push(xdp(
        "ARP reply for a data address",
        0,
        pad60(arp_frame(
            MEMBER_MAC[0],
            ARPOP_REPLY,
            PEER_MAC,
            PEER4,
            MEMBER_MAC[0],
            d0,
        )),
        XDP_PASS,
        Reason::RxPass,
    ));
    let req = arp_request(PEER4, d0);
    t.push(xdp(
        "truncated ARP",
        0,
        req[..14 + 20].to_vec(),
        XDP_PASS,
        Reason::RxMalformed,
    ));
    let mut bad_htype = req.clone();
    bad_htype[15] = 6;
    t.push(xdp(
        "ARP with hardware type 6",
        0,
        bad_htype,
        XDP_PASS,
        Reason::RxMalformed,
    ));
    let mut bad_plen = req.clone();
    bad_plen[19] = 16;
    t.push(xdp(
        "ARP with protocol length 16",
        0,
        bad_plen,
        XDP_PASS,
        Reason::RxMalformed,
    ));

    // Neighbour solicitation.
    let [t0, t1, t2] = DATA6;
    let sol = PEER6;
    let na = |member: usize, target: Ipv6Addr| {
        neighbour_advertisement(
            PEER_MAC,
            MEMBER_MAC[member],
            target,
            sol,
            ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE,
            target,
        )
    };
    t.push(
        xdp(
            "NS with source link-layer option, bound here",
            0,
            neighbour_solicitation(PEER_MAC, sol, t0, true, &[]),
            XDP_TX,
            Reason::NsReply,
        )
        .output(na(0, t0))
        .check(na_checksum),
    );
    t.push(
        xdp(
            "NS without options, bound here (frame grows)",
            1,
            neighbour_solicitation(PEER_MAC, sol, t1, false, &[]),
            XDP_TX,
            Reason::NsReply,
        )
        .output(na(1, t1))
        .check(na_checksum),
    );
    let nonce = [14, 1, 1, 2, 3, 4, 5, 6];
    t.push(
        xdp(
            "NS with source link-layer and nonce options, bound here (frame shrinks)",
            0,
            neighbour_solicitation(PEER_MAC, sol, t0, true, &nonce),
            XDP_TX,
            Reason::NsReply,
        )
        .output(na(0, t0))
        .check(na_checksum),
    );
    t.push(
        xdp(
            "NS for DAD (source ::), bound here",
            0,
            neighbour_solicitation(PEER_MAC, Ipv6Addr::UNSPECIFIED, t0, false, &nonce),
            XDP_TX,
            Reason::NsReply,
        )
        .output(neighbour_advertisement(
            PEER_MAC,
            MEMBER_MAC[0],
            t0,
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            ND_NA_FLAG_OVERRIDE,
            t0,
        ))
        .check(na_checksum),
    );
    t.push(xdp(
        "NS for an address bound to m1",
        0,
        neighbour_solicitation(PEER_MAC, sol, t1, true, &[]),
        XDP_DROP,
        Reason::NsNotBound,
    ));
    t.push(xdp(
        "NS for an address bound to no member",
        1,
        neighbour_solicitation(PEER_MAC, sol, t2, true, &[]),
        XDP_DROP,
        Reason::NsNotBound,
    ));
    let ll_target = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11);
    t.push(xdp(
        "NS for an unknown address (non-cast member)",
        1,
        neighbour_solicitation(PEER_MAC, sol, ll_target, true, &[]),
        XDP_PASS,
        Reason::RxPass,
    ));
    let short_ns = {
        let dst = ipmp_tests::packets::solicited_node(t0);
        let mut ip = Ipv6::new(sol, dst, IPPROTO_ICMPV6);
        ip.hop_limit = 255;
        ip.frame(
            multicast_mac(dst),
            PEER_MAC,
            &icmpv6(sol, dst, 135, 0, &[0; 4]),
        )
    };
    t.push(xdp(
        "truncated NS (8 bytes of ICMPv6)",
        0,
        short_ns,
        XDP_PASS,
        Reason::RxMalformed,
    ));
    let full_ns = neighbour_solicitation(PEER_MAC, sol, t0, true, &[]);
    t.push(xdp(
        "NS cut short of its target",
        0,
        full_ns[..14 + 40 + 16].to_vec(),
        XDP_PASS,
        Reason::RxMalformed,
    ));
    let mut hop64 = full_ns.clone();
    hop64[21] = 64;
    t.push(xdp(
        "NS with hop limit 64",
        0,
        hop64,
        XDP_PASS,
        Reason::RxMalformed,
    ));
    let mut code1 = full_ns.clone();
    code1[55] = 1;
    t.push(xdp(
        "NS with code 1",
        0,
        code1,
        XDP_PASS,
        Reason::RxMalformed,
    ));
    for kind in ND_ROUTER_SOLICIT..=ND_REDIRECT {
        if kind == 135 {
            continue;
        }
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        let mut ip = Ipv6::new(sol, dst, IPPROTO_ICMPV6);
        ip.hop_limit = 255;
        let mut body = vec![0u8; 20];
        body.extend_from_slice(&nd_ll_option(1, PEER_MAC));
        let frame = ip.frame(
            multicast_mac(dst),
            PEER_MAC,
            &icmpv6(sol, dst, kind, 0, &body),
        );
        t.push(xdp(
            &format!("ND type {kind} to all-nodes (non-cast member)"),
            2,
            frame,
            XDP_PASS,
            Reason::RxPass,
        ));
    }

    // Broadcast / multicast / unicast.
    let bcast = {
        let dst = Ipv4Addr::new(198, 51, 100, 255);
        Ipv4::new(PEER4, dst, IPPROTO_UDP).frame(
            BROADCAST,
            PEER_MAC,
            &udp(Pseudo::V4(PEER4, dst), 67, 68, b"dhcp"),
        )
    };
    t.push(xdp_leaves(
        "IPv4 broadcast on the cast member",
        0,
        bcast.clone(),
    ));
    t.push(xdp(
        "IPv4 broadcast on a non-cast member",
        1,
        bcast,
        XDP_DROP,
        Reason::CastDrop,
    ));
    let mcast = {
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        Ipv6::new(sol, dst, IPPROTO_ICMPV6).frame(
            multicast_mac(dst),
            PEER_MAC,
            &icmpv6_echo(sol, dst, ICMPV6_ECHO_REQUEST, 9, 9),
        )
    };
    t.push(xdp_leaves(
        "IPv6 multicast echo on the cast member",
        0,
        mcast.clone(),
    ));
    t.push(xdp(
        "IPv6 multicast echo on a non-cast member",
        2,
        mcast,
        XDP_DROP,
        Reason::CastDrop,
    ));
    let mld = {
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
        let mut p = ipv6_ext(IPPROTO_ICMPV6, 0);
        p.extend_from_slice(&icmpv6(sol, dst, 143, 0, &[0; 4]));
        Ipv6::new(sol, dst, NEXTHDR_HOP).frame(multicast_mac(dst), PEER_MAC, &p)
    };
    t.push(xdp(
        "MLDv2 report (hop-by-hop) on a non-cast member",
        1,
        mld,
        XDP_DROP,
        Reason::CastDrop,
    ));
    let uni = Ipv4::new(PEER4, d1, IPPROTO_TCP).frame(
        MEMBER_MAC[1],
        PEER_MAC,
        &tcp(Pseudo::V4(PEER4, d1), 443, 40000, b"data"),
    );
    t.push(xdp_leaves(
        "IPv4 unicast on a non-cast member",
        1,
        uni.clone(),
    ));
    let uni6 = Ipv6::new(sol, t0, IPPROTO_UDP).frame(
        MEMBER_MAC[0],
        PEER_MAC,
        &udp(Pseudo::V6(sol, t0), 53, 40000, b"dns"),
    );
    t.push(xdp_leaves("IPv6 unicast", 0, uni6));
    t.push(xdp_leaves(
        "Ethernet header only",
        1,
        ethernet(MEMBER_MAC[1], PEER_MAC, ETH_P_IPV6, &[]),
    ));
    t.push(xdp(
        "not a member",
        4,
        arp_request(PEER4, d0),
        XDP_PASS,
        Reason::NotMember,
    ));
    t.push(xdp(
        "not a member (echo request)",
        4,
        echo4_request(4, d1, 5, 6),
        XDP_PASS,
        Reason::NotMember,
    ));
    // Unicast data none of the answers concern passes before the member lookup.
    t.push(xdp_leaves("not a member (unicast TCP)", 4, uni));
    t
}

#[test]
fn xdp_member_fixtures() -> Result<()> {
    run_table("xdp_member_fixtures", xdp_member_table())
}

// --- XDP on members: echo answering and probe timestamps -----------------------------------

/// An echo request from the peer to `dst` on member `on`, with TTL 57.
fn echo4_request(on: usize, dst: Ipv4Addr, id: u16, seq: u16) -> Vec<u8> {
    let mut ip = Ipv4::new(PEER4, dst, IPPROTO_ICMP);
    ip.ttl = 57;
    ip.frame(
        MEMBER_MAC[on],
        PEER_MAC,
        &icmp(ICMP_ECHO_REQUEST, 0, id, seq, b"ipmp echo fixture"),
    )
}

/// The answer member `on` sends for [`echo4_request`].
fn echo4_answer(on: usize, dst: Ipv4Addr, id: u16, seq: u16) -> Vec<u8> {
    let mut ip = Ipv4::new(dst, PEER4, IPPROTO_ICMP);
    ip.ttl = 64;
    ip.frame(
        PEER_MAC,
        MEMBER_MAC[on],
        &icmp(ICMP_ECHO_REPLY, 0, id, seq, b"ipmp echo fixture"),
    )
}

fn echo6_request(on: usize, src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16) -> Vec<u8> {
    let mut ip = Ipv6::new(src, dst, IPPROTO_ICMPV6);
    ip.hop_limit = 50;
    ip.frame(
        MEMBER_MAC[on],
        PEER_MAC,
        &icmpv6_echo(src, dst, ICMPV6_ECHO_REQUEST, id, seq),
    )
}

fn echo6_answer(on: usize, src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16) -> Vec<u8> {
    Ipv6::new(dst, src, IPPROTO_ICMPV6).frame(
        PEER_MAC,
        MEMBER_MAC[on],
        &icmpv6_echo(dst, src, ICMPV6_ECHO_REPLY, id, seq),
    )
}

fn echo4_checksums(frame: &[u8]) -> Result<()> {
    ensure!(
        icmpv4_checksums_ok(&frame[14..]),
        "IPv4 or ICMP checksum of the answer does not verify"
    );
    Ok(())
}

fn echo6_checksum(frame: &[u8]) -> Result<()> {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38])?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54])?);
    ensure!(
        icmpv6_checksum_ok(src, dst, &frame[54..]),
        "ICMPv6 checksum of the answer does not verify"
    );
    Ok(())
}

/// A reply from `from` to one of m0's probes (sequence `seq`, ICMP sequence its low 16 bits),
/// with the given identifier and cookie.
fn probe4_reply(from: Ipv4Addr, to: Ipv4Addr, id: u16, cookie: u64, seq: u32) -> Vec<u8> {
    let payload = probe_payload(cookie, seq, SEND_NS, 8);
    Ipv4::new(from, to, IPPROTO_ICMP).frame(
        MEMBER_MAC[0],
        PEER_MAC,
        &icmp(ICMP_ECHO_REPLY, 0, id, seq as u16, &payload),
    )
}

fn probe6_reply(from: Ipv6Addr, to: Ipv6Addr, id: u16, cookie: u64, seq: u32) -> Vec<u8> {
    let payload = probe_payload(cookie, seq, SEND_NS, 0);
    Ipv6::new(from, to, IPPROTO_ICMPV6).frame(
        MEMBER_MAC[0],
        PEER_MAC,
        &icmpv6_echo_payload(from, to, ICMPV6_ECHO_REPLY, id, seq as u16, &payload),
    )
}

/// `send_ns` the fixtures' probes carry.
const SEND_NS: u64 = 0x0000_1234_5678_9abc;

fn v4_16(a: Ipv4Addr) -> [u8; 16] {
    AddrKey::v4(a.octets()).addr
}

/// The record of an echo probe reply on m0.
fn echo_event(family: u32, target: [u8; 16], local: [u8; 16], seq: u32) -> ProbeEvent {
    ProbeEvent {
        send_ns: SEND_NS,
        cookie: COOKIE,
        ifindex: 0,
        family,
        kind: PROBE_EV_ECHO,
        id: u32::from(PROBE_ID),
        seq,
        msg: ipmp_common::PROBE_MSG_ECHO,
        target,
        local,
        mac: PEER_MAC,
        ..ProbeEvent::default()
    }
}

fn xdp_probe_table() -> Vec<Fixture> {
    let mut t = Vec::new();
    let [d0, d1, d2] = DATA4;
    let [t0, t1, t2] = DATA6;

    // Echo requests (IPv4).
    t.push(
        xdp(
            "echo request to a data address bound here",
            0,
            echo4_request(0, d0, 0x77, 1),
            XDP_TX,
            Reason::EchoReply,
        )
        .output(echo4_answer(0, d0, 0x77, 1))
        .check(echo4_checksums),
    );
    t.push(
        xdp(
            "echo request to a data address bound here",
            1,
            echo4_request(1, d1, 0xfffe, 0xffff),
            XDP_TX,
            Reason::EchoReply,
        )
        .output(echo4_answer(1, d1, 0xfffe, 0xffff))
        .check(echo4_checksums),
    );
    t.push(
        xdp(
            "echo request to this member's test address",
            1,
            echo4_request(1, TEST4[1], 3, 4),
            XDP_TX,
            Reason::EchoReply,
        )
        .output(echo4_answer(1, TEST4[1], 3, 4))
        .check(echo4_checksums),
    );
    t.push(
        xdp(
            "echo request without payload, Ethernet padding kept",
            0,
            {
                let mut ip = Ipv4::new(PEER4, TEST4[0], IPPROTO_ICMP);
                ip.ttl = 57;
                pad60(ip.frame(
                    MEMBER_MAC[0],
                    PEER_MAC,
                    &icmp(ICMP_ECHO_REQUEST, 0, 5, 6, b""),
                ))
            },
            XDP_TX,
            Reason::EchoReply,
        )
        .output(pad60(Ipv4::new(TEST4[0], PEER4, IPPROTO_ICMP).frame(
            PEER_MAC,
            MEMBER_MAC[0],
            &icmp(ICMP_ECHO_REPLY, 0, 5, 6, b""),
        )))
        .check(echo4_checksums),
    );
    t.push(xdp_leaves(
        "echo request to a data address bound to m1",
        0,
        echo4_request(0, d1, 1, 1),
    ));
    t.push(xdp_leaves(
        "echo request to a data address bound to no member",
        2,
        echo4_request(2, d2, 1, 1),
    ));
    t.push(xdp(
        "echo request to m1's test address",
        0,
        echo4_request(0, TEST4[1], 1, 1),
        XDP_PASS,
        Reason::EchoPass,
    ));
    t.push(xdp_leaves(
        "echo request to an unknown address",
        0,
        echo4_request(0, Ipv4Addr::new(198, 51, 100, 77), 1, 1),
    ));
    t.push(
        xdp_leaves(
            "echo request to a data address bound here, echo off",
            0,
            echo4_request(0, d0, 1, 1),
        )
        .tweak(Tweak::EchoOff),
    );
    t.push(
        xdp_leaves(
            "echo request to the test address, echo off",
            1,
            echo4_request(1, TEST4[1], 1, 1),
        )
        .tweak(Tweak::EchoOff),
    );
    let mut other_mac = echo4_request(0, d0, 1, 1);
    other_mac[0..6].copy_from_slice(&MEMBER_MAC[1]);
    t.push(xdp_leaves(
        "echo request for a data address bound here, to another MAC",
        0,
        other_mac,
    ));
    let mut rr = Ipv4::new(PEER4, d0, IPPROTO_ICMP);
    rr.options = vec![7, 7, 4, 0, 0, 0, 0, 0]; // record route: IHL 7
    t.push(xdp_leaves(
        "echo request with IP options (left to the stack)",
        0,
        rr.frame(
            MEMBER_MAC[0],
            PEER_MAC,
            &icmp(ICMP_ECHO_REQUEST, 0, 1, 1, b"x"),
        ),
    ));
    let mut frag = Ipv4::new(PEER4, d0, IPPROTO_ICMP);
    frag.more_fragments = true;
    t.push(xdp_leaves(
        "first fragment of an echo request (left to the stack)",
        0,
        frag.frame(
            MEMBER_MAC[0],
            PEER_MAC,
            &icmp(ICMP_ECHO_REQUEST, 0, 1, 1, &[0; 16]),
        ),
    ));
    let mcast_src = Ipv4::new(Ipv4Addr::new(224, 0, 0, 5), d0, IPPROTO_ICMP).frame(
        MEMBER_MAC[0],
        PEER_MAC,
        &icmp(ICMP_ECHO_REQUEST, 0, 1, 1, b"x"),
    );
    t.push(xdp_leaves(
        "echo request from a multicast source",
        0,
        mcast_src,
    ));
    let full = echo4_request(0, d0, 1, 1);
    t.push(xdp(
        "ICMP cut short of its echo header",
        0,
        full[..14 + 20 + 4].to_vec(),
        XDP_PASS,
        Reason::RxMalformed,
    ));
    t.push(xdp(
        "echo request shorter than its IP total length",
        0,
        full[..full.len() - 3].to_vec(),
        XDP_PASS,
        Reason::RxMalformed,
    ));
    t.push(xdp_leaves(
        "ICMP timestamp request to a data address bound here",
        0,
        Ipv4::new(PEER4, d0, IPPROTO_ICMP).frame(
            MEMBER_MAC[0],
            PEER_MAC,
            &icmp(13, 0, 1, 1, &[0; 12]),
        ),
    ));

    // Echo requests (IPv6).
    t.push(
        xdp(
            "v6 echo request to a data address bound here",
            0,
            echo6_request(0, PEER6, t0, 0x99, 7),
            XDP_TX,
            Reason::EchoReply,
        )
        .output(echo6_answer(0, PEER6, t0, 0x99, 7))
        .check(echo6_checksum),
    );
    let peer_ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99);
    t.push(
        xdp(
            "v6 echo request to this member's link-local test address",
            0,
            echo6_request(0, peer_ll, TEST6, 0x1234, 0x8000),
            XDP_TX,
            Reason::EchoReply,
        )
        .output(echo6_answer(0, peer_ll, TEST6, 0x1234, 0x8000))
        .check(echo6_checksum),
    );
    t.push(xdp_leaves(
        "v6 echo request to a data address bound to m0",
        1,
        echo6_request(1, PEER6, t0, 1, 1),
    ));
    t.push(xdp_leaves(
        "v6 echo request to a data address bound to no member",
        1,
        echo6_request(1, PEER6, t2, 1, 1),
    ));
    t.push(xdp(
        "v6 echo request to m0's test address",
        1,
        echo6_request(1, peer_ll, TEST6, 1, 1),
        XDP_PASS,
        Reason::EchoPass,
    ));
    t.push(xdp_leaves(
        "v6 echo request to an unknown address",
        1,
        echo6_request(
            1,
            PEER6,
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x77),
            1,
            1,
        ),
    ));
    t.push(
        xdp_leaves(
            "v6 echo request to a data address bound here, echo off",
            1,
            echo6_request(1, PEER6, t1, 1, 1),
        )
        .tweak(Tweak::EchoOff),
    );
    let full6 = echo6_request(0, PEER6, t0, 1, 1);
    t.push(xdp(
        "ICMPv6 cut short of its echo header",
        0,
        full6[..14 + 40 + 6].to_vec(),
        XDP_PASS,
        Reason::RxMalformed,
    ));
    let behind_ext = {
        let mut p = ipv6_ext(IPPROTO_ICMPV6, 0);
        p.extend_from_slice(&icmpv6_echo(PEER6, t0, ICMPV6_ECHO_REQUEST, 1, 1));
        Ipv6::new(PEER6, t0, NEXTHDR_DEST).frame(MEMBER_MAC[0], PEER_MAC, &p)
    };
    t.push(xdp_leaves(
        "v6 echo request behind a destination options header (left to the stack)",
        0,
        behind_ext,
    ));

    // Replies to the daemon's probes.
    let seq = 0x0003_0005;
    t.push(
        xdp(
            "probe reply with the daemon's id and cookie",
            0,
            probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE, seq),
            XDP_PASS,
            Reason::ProbeReply,
        )
        .event(echo_event(FAMILY_V4, v4_16(PEER4), v4_16(TEST4[0]), seq)),
    );
    t.push(
        xdp(
            "probe reply, ring only: timestamped and consumed",
            0,
            probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE, seq),
            XDP_DROP,
            Reason::ProbeRingOnly,
        )
        .tweak(Tweak::RingOnly)
        .event(echo_event(FAMILY_V4, v4_16(PEER4), v4_16(TEST4[0]), seq)),
    );
    t.push(
        xdp(
            "v6 probe reply with the daemon's id and cookie",
            0,
            probe6_reply(TARGET6, TEST6, PROBE_ID, COOKIE, 9),
            XDP_PASS,
            Reason::ProbeReply,
        )
        .event(echo_event(FAMILY_V6, TARGET6.octets(), TEST6.octets(), 9)),
    );
    t.push(xdp(
        "probe reply with a wrong cookie",
        0,
        probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE ^ 1, seq),
        XDP_DROP,
        Reason::ProbeForged,
    ));
    t.push(xdp(
        "v6 probe reply with a wrong cookie",
        0,
        probe6_reply(TARGET6, TEST6, PROBE_ID, 0, 9),
        XDP_DROP,
        Reason::ProbeForged,
    ));
    let mut unmirrored = probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE, seq);
    // ICMP sequence 6 while the payload says 5 (checksum left as it is: XDP does not check).
    unmirrored[14 + 20 + 7] = 6;
    t.push(xdp(
        "probe reply whose ICMP sequence does not mirror the payload's",
        0,
        unmirrored,
        XDP_DROP,
        Reason::ProbeForged,
    ));
    t.push(
        xdp(
            "forged probe reply, ring only",
            0,
            probe4_reply(PEER4, TEST4[0], PROBE_ID, 0, seq),
            XDP_DROP,
            Reason::ProbeForged,
        )
        .tweak(Tweak::RingOnly),
    );
    t.push(xdp_leaves(
        "echo reply with another id (someone's ping)",
        0,
        probe4_reply(PEER4, TEST4[0], PROBE_ID + 1, COOKIE, seq),
    ));
    let mut salted = echo_event(FAMILY_V4, v4_16(PEER4), v4_16(TEST4[0]), seq);
    salted.id = u32::from(PROBE_ID & 0xff00 | 0x07);
    t.push(
        xdp(
            "probe reply with a per-member id under the salt mask",
            0,
            probe4_reply(PEER4, TEST4[0], PROBE_ID & 0xff00 | 0x07, COOKIE, seq),
            XDP_PASS,
            Reason::ProbeReply,
        )
        .tweak(Tweak::SaltedIds)
        .event(salted),
    );
    t.push(
        xdp_leaves(
            "echo reply with another salt under the salt mask",
            0,
            probe4_reply(PEER4, TEST4[0], PROBE_ID ^ 0x0100, COOKIE, seq),
        )
        .tweak(Tweak::SaltedIds),
    );
    t.push(xdp_leaves(
        "echo reply with the daemon's id but no probe payload",
        0,
        Ipv4::new(PEER4, TEST4[0], IPPROTO_ICMP).frame(
            MEMBER_MAC[0],
            PEER_MAC,
            &icmp(ICMP_ECHO_REPLY, 0, PROBE_ID, 1, &[0x55; 40]),
        ),
    ));
    let mut short = probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE ^ 1, seq);
    // The IP total length ends the packet before the payload's cookie; the rest is padding.
    short.truncate(14 + 20 + 8 + 32);
    short[16..18].copy_from_slice(&(20u16 + 8 + 4).to_be_bytes());
    t.push(xdp_leaves(
        "echo reply whose IP length ends inside the probe payload",
        0,
        short,
    ));
    t.push(
        xdp_leaves(
            "probe reply while the daemon does not probe",
            0,
            probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE, seq),
        )
        .tweak(Tweak::ProbingOff),
    );

    // ARP replies and neighbour advertisements from targets probed without test addresses.
    t.push(
        xdp(
            "ARP reply from an ARP-probed target",
            0,
            pad60(arp_frame(
                MEMBER_MAC[0],
                ARPOP_REPLY,
                TARGET_MAC,
                TARGET4,
                MEMBER_MAC[0],
                Ipv4Addr::UNSPECIFIED,
            )),
            XDP_PASS,
            Reason::ProbeNeigh,
        )
        .event(ProbeEvent {
            ifindex: 0,
            family: FAMILY_V4,
            kind: PROBE_EV_ARP,
            target: v4_16(TARGET4),
            mac: TARGET_MAC,
            ..ProbeEvent::default()
        }),
    );
    t.push(xdp(
        "ARP reply from a target m1 probes with ICMP only",
        1,
        pad60(arp_frame(
            MEMBER_MAC[1],
            ARPOP_REPLY,
            TARGET_MAC,
            TARGET4,
            MEMBER_MAC[1],
            TEST4[1],
        )),
        XDP_PASS,
        Reason::RxPass,
    ));
    t.push(xdp(
        "gratuitous ARP reply of an ARP-probed target",
        0,
        pad60(arp_frame(
            BROADCAST,
            ARPOP_REPLY,
            TARGET_MAC,
            TARGET4,
            BROADCAST,
            TARGET4,
        )),
        XDP_PASS,
        Reason::RxPass,
    ));
    t.push(xdp(
        "ARP reply from an ARP-probed target to another member",
        0,
        pad60(arp_frame(
            MEMBER_MAC[0],
            ARPOP_REPLY,
            TARGET_MAC,
            TARGET4,
            MEMBER_MAC[2],
            Ipv4Addr::UNSPECIFIED,
        )),
        XDP_PASS,
        Reason::RxPass,
    ));
    let na = |flags: u8, dst_mac: Mac| {
        neighbour_advertisement(dst_mac, TARGET_MAC, TARGET6, M0_LL6, flags, TARGET6)
    };
    t.push(
        xdp(
            "solicited NA from an NDP-probed target",
            0,
            na(ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE, MEMBER_MAC[0]),
            XDP_PASS,
            Reason::ProbeNeigh,
        )
        .event(ProbeEvent {
            ifindex: 0,
            family: FAMILY_V6,
            kind: PROBE_EV_NA,
            target: TARGET6.octets(),
            local: M0_LL6.octets(),
            mac: TARGET_MAC,
            ..ProbeEvent::default()
        }),
    );
    t.push(xdp(
        "unsolicited NA from an NDP-probed target",
        0,
        na(ND_NA_FLAG_OVERRIDE, MEMBER_MAC[0]),
        XDP_PASS,
        Reason::RxPass,
    ));
    t.push(xdp(
        "solicited NA from an NDP-probed target to another MAC",
        0,
        na(ND_NA_FLAG_SOLICITED, MEMBER_MAC[1]),
        XDP_PASS,
        Reason::RxPass,
    ));
    t.push(xdp(
        "solicited NA from the target on a member that does not NDP-probe it",
        1,
        na(ND_NA_FLAG_SOLICITED, MEMBER_MAC[1]),
        XDP_PASS,
        Reason::RxPass,
    ));
    t
}

#[test]
fn xdp_probe_fixtures() -> Result<()> {
    run_table("xdp_probe_fixtures", xdp_probe_table())
}

// --- TC ingress on members ------------------------------------------------------------------

fn tc_in(what: &str, on: usize, frame: Vec<u8>, verdict: u32, reason: Reason) -> Fixture {
    Fixture::new(format!("m{on}: {what}"), Prog::TcIngress, Dev::M(on), frame).expect(
        verdict,
        member_slot(on),
        reason,
    )
}

/// The MAC of member `on`'s IPMP interface (`MemberInfo::ipmp_mac`): m3 is ipmp1's.
fn ipmp_mac_of(on: usize) -> Mac {
    if on == 3 { IPMP1_MAC } else { IPMP0_MAC }
}

/// Unicast for a data address of the member's group: redirected into the IPMP interface's
/// peer, readdressed to the IPMP interface's MAC, nothing else changed.
fn rx_ipmp(what: &str, on: usize, frame: Vec<u8>) -> Fixture {
    let mut readdressed = frame.clone();
    readdressed[0..6].copy_from_slice(&ipmp_mac_of(on));
    tc_in(
        &format!("{what} → IPMP interface"),
        on,
        frame,
        TC_ACT_REDIRECT,
        Reason::RxToIpmp,
    )
    .output(readdressed)
}

/// Broadcast or multicast IP on the cast member: redirected into the IPMP interface's peer
/// with its group MAC.
fn cast_ipmp(what: &str, on: usize, frame: Vec<u8>) -> Fixture {
    tc_in(
        &format!("{what} → IPMP interface"),
        on,
        frame,
        TC_ACT_REDIRECT,
        Reason::CastToIpmp,
    )
}

/// A TCP segment from the peer (`src`) to `dst`, sent to `eth_dst`.
fn peer_tcp4(eth_dst: Mac, dst: Ipv4Addr) -> Vec<u8> {
    Ipv4::new(PEER4, dst, IPPROTO_TCP).frame(
        eth_dst,
        PEER_MAC,
        &tcp(Pseudo::V4(PEER4, dst), 40000, 443, b"inbound"),
    )
}

fn peer_udp4(eth_dst: Mac, dst: Ipv4Addr) -> Vec<u8> {
    Ipv4::new(PEER4, dst, IPPROTO_UDP).frame(
        eth_dst,
        PEER_MAC,
        &udp(Pseudo::V4(PEER4, dst), 40000, 53, b"inbound"),
    )
}

fn peer_tcp6(eth_dst: Mac, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    Ipv6::new(src, dst, IPPROTO_TCP).frame(
        eth_dst,
        PEER_MAC,
        &tcp(Pseudo::V6(src, dst), 40000, 443, b"inbound"),
    )
}

fn peer_udp6(eth_dst: Mac, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    Ipv6::new(src, dst, IPPROTO_UDP).frame(
        eth_dst,
        PEER_MAC,
        &udp(Pseudo::V6(src, dst), 40000, 53, b"inbound"),
    )
}

/// The peer's link-local address, and a router's on the link.
const PEER_LL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99);
const ROUTER_LL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// An ND message of `kind` from `src` to all-nodes (router advertisement, unsolicited NA).
fn nd_to_all_nodes(src: Ipv6Addr, kind: u8, flags: u8) -> Vec<u8> {
    let mut ip = Ipv6::new(src, ALL_NODES, IPPROTO_ICMPV6);
    ip.hop_limit = 255;
    let mut body = vec![flags, 0, 0, 0];
    body.extend_from_slice(&[0u8; 16]);
    body.extend_from_slice(&nd_ll_option(1, PEER_MAC));
    ip.frame(
        multicast_mac(ALL_NODES),
        PEER_MAC,
        &icmpv6(src, ALL_NODES, kind, 0, &body),
    )
}

/// A UDP datagram from the peer to the IPv4 broadcast or multicast address `dst` (to `eth_dst`).
fn peer_cast4(eth_dst: Mac, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    Ipv4::new(PEER4, dst, IPPROTO_UDP).frame(
        eth_dst,
        PEER_MAC,
        &udp(Pseudo::V4(PEER4, dst), port, port, b"to everyone"),
    )
}

fn peer_cast6(src: Ipv6Addr, dst: Ipv6Addr, port: u16) -> Vec<u8> {
    Ipv6::new(src, dst, IPPROTO_UDP).frame(
        multicast_mac(dst),
        PEER_MAC,
        &udp(Pseudo::V6(src, dst), port, port, b"to everyone"),
    )
}

/// LLDP to the nearest-bridge group address: not IP.
fn lldp() -> Vec<u8> {
    ethernet(
        [0x01, 0x80, 0xc2, 0, 0, 0x0e],
        PEER_MAC,
        0x88cc,
        &[0x02; 46],
    )
}

/// What `member::deliver` decides, the same with and without `MEMBER_F_XDP`: with it, TC
/// ingress runs `deliver` alone; without, after `member::respond` found nothing to answer.
fn delivery_rows(xdp: bool) -> Vec<Fixture> {
    let mut t = Vec::new();
    let [d0, d1, d2] = DATA4;
    let [t0, t1, t2] = DATA6;
    let mac = MEMBER_MAC;
    // Unicast for a data address of the group, wherever it is bound.
    t.push(rx_ipmp(
        "v4 TCP to a data address bound here",
        0,
        peer_tcp4(mac[0], d0),
    ));
    t.push(rx_ipmp(
        "v4 UDP to a data address bound here",
        0,
        peer_udp4(mac[0], d0),
    ));
    t.push(rx_ipmp(
        "v4 TCP to a data address bound to m0",
        1,
        peer_tcp4(mac[1], d0),
    ));
    t.push(rx_ipmp(
        "v4 UDP to a data address bound to m0",
        2,
        peer_udp4(mac[2], d0),
    ));
    t.push(rx_ipmp(
        "v4 TCP to a data address bound to no member",
        2,
        peer_tcp4(mac[2], d2),
    ));
    t.push(rx_ipmp(
        "v4 UDP to a data address bound to no member",
        0,
        peer_udp4(mac[0], d2),
    ));
    t.push(rx_ipmp(
        "v6 TCP to a data address bound here",
        1,
        peer_tcp6(mac[1], PEER6, t1),
    ));
    t.push(rx_ipmp(
        "v6 UDP to a data address bound here",
        0,
        peer_udp6(mac[0], PEER6, t0),
    ));
    t.push(rx_ipmp(
        "v6 TCP to a data address bound to m1",
        0,
        peer_tcp6(mac[0], PEER6, t1),
    ));
    t.push(rx_ipmp(
        "v6 UDP to a data address bound to m0",
        2,
        peer_udp6(mac[2], PEER6, t0),
    ));
    t.push(rx_ipmp(
        "v6 TCP to a data address bound to no member",
        0,
        peer_tcp6(mac[0], PEER6, t2),
    ));
    t.push(rx_ipmp(
        "v6 UDP to a data address bound to no member",
        1,
        peer_udp6(mac[1], PEER6, t2),
    ));
    t.push(rx_ipmp(
        "second group: v4 TCP to its data address",
        3,
        peer_tcp4(mac[3], DATA1_4),
    ));
    t.push(rx_ipmp(
        "second group: v6 UDP to its data address",
        3,
        peer_udp6(mac[3], PEER6, DATA1_6),
    ));
    let middle = {
        let mut ip = Ipv4::new(PEER4, d0, IPPROTO_UDP);
        ip.more_fragments = true;
        ip.frag_offset = 2;
        ip.frame(mac[0], PEER_MAC, &[0xab; 16])
    };
    t.push(rx_ipmp(
        "v4 non-first fragment to a data address",
        0,
        middle,
    ));
    let last6 = {
        let mut p = ipv6_fragment(IPPROTO_UDP, 2, false, 0xfeed);
        p.extend_from_slice(&[0xcd; 16]);
        Ipv6::new(PEER6, t0, NEXTHDR_FRAGMENT).frame(mac[0], PEER_MAC, &p)
    };
    t.push(rx_ipmp("v6 non-first fragment to a data address", 0, last6));
    let first_echo = {
        let mut ip = Ipv4::new(PEER4, d0, IPPROTO_ICMP);
        ip.more_fragments = true;
        ip.frame(
            mac[0],
            PEER_MAC,
            &icmp(ICMP_ECHO_REQUEST, 0, 1, 1, &[0; 16]),
        )
    };
    t.push(rx_ipmp(
        "first fragment of an echo request to a data address",
        0,
        first_echo,
    ));
    let mut rr = Ipv4::new(PEER4, d0, IPPROTO_ICMP);
    rr.options = vec![7, 7, 4, 0, 0, 0, 0, 0]; // record route: IHL 7
    t.push(rx_ipmp(
        "echo request with IP options to a data address",
        0,
        rr.frame(mac[0], PEER_MAC, &icmp(ICMP_ECHO_REQUEST, 0, 1, 1, b"x")),
    ));
    t.push(rx_ipmp(
        "echo request to a data address bound to m1",
        0,
        echo4_request(0, d1, 1, 1),
    ));
    t.push(rx_ipmp(
        "v6 echo request to a data address bound to no member",
        2,
        echo6_request(2, PEER6, t2, 1, 1),
    ));

    // Unicast that stays on the member.
    let pass = |what: &str, on: usize, frame: Vec<u8>| {
        tc_in(
            &format!("{what} stays on the member"),
            on,
            frame,
            TC_ACT_OK,
            Reason::RxPass,
        )
    };
    t.push(pass(
        "v4 to a data address, to another MAC",
        0,
        peer_tcp4(mac[1], d0),
    ));
    t.push(pass(
        "v6 to a data address, to another MAC",
        1,
        peer_udp6(mac[0], PEER6, t1),
    ));
    t.push(pass("v4 to a foreign address", 0, peer_tcp4(mac[0], FAR4)));
    t.push(pass(
        "v6 to a foreign address",
        1,
        peer_udp6(mac[1], PEER6, FAR6),
    ));
    t.push(pass(
        "v4 to a data address of the other group",
        0,
        peer_tcp4(mac[0], DATA1_4),
    ));
    t.push(pass(
        "v6 to a data address of the other group",
        1,
        peer_udp6(mac[1], PEER6, DATA1_6),
    ));
    t.push(pass(
        "second group: v4 to a data address of ipmp0",
        3,
        peer_tcp4(mac[3], d0),
    ));
    t.push(pass(
        "v4 to the member's test address",
        0,
        peer_tcp4(mac[0], TEST4[0]),
    ));
    t.push(pass(
        "v4 to another member's test address",
        0,
        peer_udp4(mac[0], TEST4[1]),
    ));
    t.push(pass(
        "v6 to the member's link-local test address",
        0,
        peer_udp6(mac[0], PEER_LL6, TEST6),
    ));
    t.push(
        pass(
            "echo request to the test address, echo off",
            1,
            echo4_request(1, TEST4[1], 1, 1),
        )
        .tweak(Tweak::EchoOff),
    );

    // Broadcast and multicast: through the IPMP interface from the cast member only.
    let bcast = peer_cast4(BROADCAST, Ipv4Addr::new(198, 51, 100, 255), 138);
    let limited = peer_cast4(BROADCAST, Ipv4Addr::BROADCAST, 67);
    let mdns4 = Ipv4Addr::new(224, 0, 0, 251);
    let mcast4 = peer_cast4(multicast_mac_v4(mdns4), mdns4, 5353);
    let mcast6 = Ipv6::new(PEER_LL6, ALL_NODES, IPPROTO_ICMPV6).frame(
        multicast_mac(ALL_NODES),
        PEER_MAC,
        &icmpv6_echo(PEER_LL6, ALL_NODES, ICMPV6_ECHO_REQUEST, 9, 9),
    );
    let global6 = peer_cast6(PEER6, Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, 0x101), 123);
    let query = mld_query(PEER_MAC, ROUTER_LL6);
    let report = {
        let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
        let mut p = ipv6_router_alert(IPPROTO_ICMPV6);
        p.extend_from_slice(&icmpv6(PEER_LL6, dst, 143, 0, &[0; 4]));
        let mut ip = Ipv6::new(PEER_LL6, dst, NEXTHDR_HOP);
        ip.hop_limit = 1;
        ip.frame(multicast_mac(dst), PEER_MAC, &p)
    };
    let casts = [
        ("IPv4 subnet broadcast", bcast, 1),
        ("IPv4 limited broadcast", limited, 2),
        ("IPv4 multicast (mDNS)", mcast4, 2),
        ("IPv6 multicast echo to ff02::1", mcast6, 1),
        ("IPv6 global-scope multicast (ff0e::101)", global6, 2),
        ("MLDv2 general query (hop-by-hop)", query, 1),
        ("MLDv2 report (hop-by-hop)", report, 2),
    ];
    for (what, frame, other) in casts {
        t.push(cast_ipmp(
            &format!("{what} on the cast member"),
            0,
            frame.clone(),
        ));
        t.push(tc_in(
            &format!("{what} on a non-cast member"),
            other,
            frame,
            TC_ACT_SHOT,
            Reason::CastDrop,
        ));
    }
    t.push(cast_ipmp(
        "second group: IPv4 broadcast on its cast member",
        3,
        peer_cast4(BROADCAST, Ipv4Addr::new(203, 0, 113, 255), 138),
    ));
    t.push(tc_in(
        "LLDP (not IP) on the cast member",
        0,
        lldp(),
        TC_ACT_OK,
        Reason::CastPass,
    ));

    // The IPMP interface's peer not known yet: the frame stays on the member.
    t.push(
        tc_in(
            "v4 TCP to a data address bound here, no IPMP peer",
            0,
            peer_tcp4(mac[0], d0),
            TC_ACT_OK,
            Reason::PassError,
        )
        .tweak(Tweak::NoIpmpPeer),
    );
    t.push(
        tc_in(
            "v6 UDP to a data address bound to m0, no IPMP peer",
            1,
            peer_udp6(mac[1], PEER6, t0),
            TC_ACT_OK,
            Reason::PassError,
        )
        .tweak(Tweak::NoIpmpPeer),
    );
    t.push(
        tc_in(
            "IPv4 broadcast on the cast member, no IPMP peer",
            0,
            peer_cast4(BROADCAST, Ipv4Addr::new(198, 51, 100, 255), 138),
            TC_ACT_OK,
            Reason::PassError,
        )
        .tweak(Tweak::NoIpmpPeer),
    );
    t.push(
        tc_in(
            "v4 to a foreign address, no IPMP peer",
            0,
            peer_tcp4(mac[0], FAR4),
            TC_ACT_OK,
            Reason::RxPass,
        )
        .tweak(Tweak::NoIpmpPeer),
    );
    if xdp {
        t = t
            .into_iter()
            .map(|mut f| {
                f.what = format!("XDP on, {}", f.what);
                f.tweak(Tweak::XdpMembers)
            })
            .collect();
    }
    t
}

fn tc_ingress_table() -> Vec<Fixture> {
    let mut t = delivery_rows(false);
    let [d0, d1, d2] = DATA4;
    let [t0, t1, _] = DATA6;

    // The member's answers (`member::respond`), as at XDP; answers leave through the member.
    t.push(
        tc_in(
            "ARP request for an address bound here",
            0,
            arp_request(PEER4, d0),
            TC_ACT_REDIRECT,
            Reason::ArpReply,
        )
        .output(arp_reply(0, PEER4, d0)),
    );
    t.push(
        tc_in(
            "ARP request bound here (unpadded)",
            1,
            arp_frame(BROADCAST, ARPOP_REQUEST, PEER_MAC, PEER4, [0; 6], d1),
            TC_ACT_REDIRECT,
            Reason::ArpReply,
        )
        .output(arp_reply(1, PEER4, d1)[..42].to_vec()),
    );
    let unicast_arp = |on: usize, tpa: Ipv4Addr| {
        pad60(arp_frame(
            MEMBER_MAC[on],
            ARPOP_REQUEST,
            PEER_MAC,
            PEER4,
            MEMBER_MAC[on],
            tpa,
        ))
    };
    t.push(
        tc_in(
            "unicast ARP request for an address bound here",
            0,
            unicast_arp(0, d0),
            TC_ACT_REDIRECT,
            Reason::ArpReply,
        )
        .output(arp_reply(0, PEER4, d0)),
    );
    t.push(
        tc_in(
            "ARP request for an address bound here, no IPMP peer (answers need none)",
            0,
            arp_request(PEER4, d0),
            TC_ACT_REDIRECT,
            Reason::ArpReply,
        )
        .tweak(Tweak::NoIpmpPeer)
        .output(arp_reply(0, PEER4, d0)),
    );
    t.push(tc_in(
        "ARP request for an address bound to m1",
        0,
        arp_request(PEER4, d1),
        TC_ACT_SHOT,
        Reason::ArpNotBound,
    ));
    t.push(tc_in(
        "ARP request for an address bound to no member",
        2,
        arp_request(PEER4, d2),
        TC_ACT_SHOT,
        Reason::ArpNotBound,
    ));
    t.push(tc_in(
        "ARP request for an unknown address",
        1,
        arp_request(PEER4, TEST4[1]),
        TC_ACT_OK,
        Reason::RxPass,
    ));
    t.push(tc_in(
        "truncated ARP",
        0,
        arp_request(PEER4, d0)[..14 + 20].to_vec(),
        TC_ACT_OK,
        Reason::RxMalformed,
    ));
    let na = |member: usize, target: Ipv6Addr| {
        neighbour_advertisement(
            PEER_MAC,
            MEMBER_MAC[member],
            target,
            PEER6,
            ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE,
            target,
        )
    };
    t.push(
        tc_in(
            "NS with source link-layer option, bound here",
            0,
            neighbour_solicitation(PEER_MAC, PEER6, t0, true, &[]),
            TC_ACT_REDIRECT,
            Reason::NsReply,
        )
        .output(na(0, t0))
        .check(na_checksum),
    );
    t.push(
        tc_in(
            "NS without options, bound here (frame grows)",
            1,
            neighbour_solicitation(PEER_MAC, PEER6, t1, false, &[]),
            TC_ACT_REDIRECT,
            Reason::NsReply,
        )
        .output(na(1, t1))
        .check(na_checksum),
    );
    t.push(
        tc_in(
            "NS with source link-layer and nonce options, bound here (frame shrinks)",
            0,
            neighbour_solicitation(PEER_MAC, PEER6, t0, true, &[14, 1, 1, 2, 3, 4, 5, 6]),
            TC_ACT_REDIRECT,
            Reason::NsReply,
        )
        .output(na(0, t0))
        .check(na_checksum),
    );
    let mut unicast_ns = neighbour_solicitation(PEER_MAC, PEER6, t0, true, &[]);
    unicast_ns[0..6].copy_from_slice(&MEMBER_MAC[0]);
    t.push(
        tc_in(
            "unicast NS (unreachability detection), bound here",
            0,
            unicast_ns,
            TC_ACT_REDIRECT,
            Reason::NsReply,
        )
        .output(na(0, t0))
        .check(na_checksum),
    );
    t.push(tc_in(
        "NS for an address bound to m1",
        0,
        neighbour_solicitation(PEER_MAC, PEER6, t1, true, &[]),
        TC_ACT_SHOT,
        Reason::NsNotBound,
    ));
    let mut hop64 = neighbour_solicitation(PEER_MAC, PEER6, t0, true, &[]);
    hop64[21] = 64;
    t.push(tc_in(
        "NS with hop limit 64",
        0,
        hop64,
        TC_ACT_OK,
        Reason::RxMalformed,
    ));
    t.push(tc_in(
        "router advertisement to all-nodes on the cast member",
        0,
        nd_to_all_nodes(ROUTER_LL6, 134, 0),
        TC_ACT_OK,
        Reason::RxPass,
    ));
    t.push(tc_in(
        "router advertisement to all-nodes on a non-cast member",
        1,
        nd_to_all_nodes(ROUTER_LL6, 134, 0),
        TC_ACT_OK,
        Reason::RxPass,
    ));
    t.push(tc_in(
        "unsolicited NA to all-nodes",
        2,
        nd_to_all_nodes(PEER_LL6, ND_NEIGHBOR_ADVERT, ND_NA_FLAG_OVERRIDE),
        TC_ACT_OK,
        Reason::RxPass,
    ));
    t.push(
        tc_in(
            "echo request to a data address bound here",
            0,
            echo4_request(0, d0, 0x77, 1),
            TC_ACT_REDIRECT,
            Reason::EchoReply,
        )
        .output(echo4_answer(0, d0, 0x77, 1))
        .check(echo4_checksums),
    );
    t.push(
        tc_in(
            "echo request to this member's test address",
            1,
            echo4_request(1, TEST4[1], 3, 4),
            TC_ACT_REDIRECT,
            Reason::EchoReply,
        )
        .output(echo4_answer(1, TEST4[1], 3, 4))
        .check(echo4_checksums),
    );
    t.push(
        tc_in(
            "v6 echo request to a data address bound here",
            0,
            echo6_request(0, PEER6, t0, 0x99, 7),
            TC_ACT_REDIRECT,
            Reason::EchoReply,
        )
        .output(echo6_answer(0, PEER6, t0, 0x99, 7))
        .check(echo6_checksum),
    );
    t.push(
        tc_in(
            "v6 echo request to this member's link-local test address",
            0,
            echo6_request(0, PEER_LL6, TEST6, 0x1234, 0x8000),
            TC_ACT_REDIRECT,
            Reason::EchoReply,
        )
        .output(echo6_answer(0, PEER_LL6, TEST6, 0x1234, 0x8000))
        .check(echo6_checksum),
    );
    t.push(tc_in(
        "echo request to m1's test address",
        0,
        echo4_request(0, TEST4[1], 1, 1),
        TC_ACT_OK,
        Reason::EchoPass,
    ));
    t.push(tc_in(
        "v6 echo request to m0's test address",
        1,
        echo6_request(1, PEER_LL6, TEST6, 1, 1),
        TC_ACT_OK,
        Reason::EchoPass,
    ));
    t.push(
        rx_ipmp(
            "echo request to a data address bound here, echo off",
            0,
            echo4_request(0, d0, 1, 1),
        )
        .tweak(Tweak::EchoOff),
    );
    t.push(tc_in(
        "echo request to an unknown address",
        0,
        echo4_request(0, Ipv4Addr::new(198, 51, 100, 77), 1, 1),
        TC_ACT_OK,
        Reason::RxPass,
    ));
    let full = echo4_request(0, d0, 1, 1);
    t.push(tc_in(
        "echo request shorter than its IP total length",
        0,
        full[..full.len() - 3].to_vec(),
        TC_ACT_OK,
        Reason::RxMalformed,
    ));
    let full6 = echo6_request(0, PEER6, t0, 1, 1);
    t.push(tc_in(
        "ICMPv6 cut short of its echo header",
        0,
        full6[..14 + 40 + 6].to_vec(),
        TC_ACT_OK,
        Reason::RxMalformed,
    ));
    let seq = 0x0003_0005;
    t.push(
        tc_in(
            "probe reply with the daemon's id and cookie",
            0,
            probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE, seq),
            TC_ACT_OK,
            Reason::ProbeReply,
        )
        .event(echo_event(FAMILY_V4, v4_16(PEER4), v4_16(TEST4[0]), seq)),
    );
    t.push(
        tc_in(
            "v6 probe reply with the daemon's id and cookie",
            0,
            probe6_reply(TARGET6, TEST6, PROBE_ID, COOKIE, 9),
            TC_ACT_OK,
            Reason::ProbeReply,
        )
        .event(echo_event(FAMILY_V6, TARGET6.octets(), TEST6.octets(), 9)),
    );
    t.push(
        tc_in(
            "probe reply, ring only: timestamped and consumed",
            0,
            probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE, seq),
            TC_ACT_SHOT,
            Reason::ProbeRingOnly,
        )
        .tweak(Tweak::RingOnly)
        .event(echo_event(FAMILY_V4, v4_16(PEER4), v4_16(TEST4[0]), seq)),
    );
    t.push(tc_in(
        "probe reply with a wrong cookie",
        0,
        probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE ^ 1, seq),
        TC_ACT_SHOT,
        Reason::ProbeForged,
    ));
    t.push(tc_in(
        "echo reply with another id (someone's ping) to the test address",
        0,
        probe4_reply(PEER4, TEST4[0], PROBE_ID + 1, COOKIE, seq),
        TC_ACT_OK,
        Reason::RxPass,
    ));
    t.push(rx_ipmp(
        "echo reply with another id to a data address",
        0,
        probe4_reply(PEER4, d0, PROBE_ID + 1, COOKIE, seq),
    ));
    t.push(
        tc_in(
            "ARP reply from an ARP-probed target",
            0,
            pad60(arp_frame(
                MEMBER_MAC[0],
                ARPOP_REPLY,
                TARGET_MAC,
                TARGET4,
                MEMBER_MAC[0],
                Ipv4Addr::UNSPECIFIED,
            )),
            TC_ACT_OK,
            Reason::ProbeNeigh,
        )
        .event(ProbeEvent {
            ifindex: 0,
            family: FAMILY_V4,
            kind: PROBE_EV_ARP,
            target: v4_16(TARGET4),
            mac: TARGET_MAC,
            ..ProbeEvent::default()
        }),
    );
    t.push(
        tc_in(
            "solicited NA from an NDP-probed target",
            0,
            neighbour_advertisement(
                MEMBER_MAC[0],
                TARGET_MAC,
                TARGET6,
                M0_LL6,
                ND_NA_FLAG_SOLICITED | ND_NA_FLAG_OVERRIDE,
                TARGET6,
            ),
            TC_ACT_OK,
            Reason::ProbeNeigh,
        )
        .event(ProbeEvent {
            ifindex: 0,
            family: FAMILY_V6,
            kind: PROBE_EV_NA,
            target: TARGET6.octets(),
            local: M0_LL6.octets(),
            mac: TARGET_MAC,
            ..ProbeEvent::default()
        }),
    );
    t.push(tc_in(
        "LLDP (not IP) on a non-cast member",
        1,
        lldp(),
        TC_ACT_SHOT,
        Reason::CastDrop,
    ));
    t.push(tc_in(
        "not a member",
        4,
        peer_tcp4(MEMBER_MAC[4], d0),
        TC_ACT_OK,
        Reason::NotMember,
    ));

    // With MEMBER_F_XDP, XDP gave the answers already: TC ingress delivers only.
    t.extend(delivery_rows(true));
    let deliver_only = |what: &str, on: usize, frame: Vec<u8>, reason: Reason| {
        tc_in(
            &format!("XDP on, {what}: not answered, stays on the member"),
            on,
            frame,
            TC_ACT_OK,
            reason,
        )
        .tweak(Tweak::XdpMembers)
    };
    t.push(deliver_only(
        "broadcast ARP request for an address bound here",
        0,
        arp_request(PEER4, d0),
        Reason::CastPass,
    ));
    t.push(deliver_only(
        "broadcast ARP request for an address bound to m0",
        1,
        arp_request(PEER4, d0),
        Reason::CastPass,
    ));
    t.push(deliver_only(
        "unicast ARP request for an address bound here",
        0,
        unicast_arp(0, d0),
        Reason::RxPass,
    ));
    t.push(deliver_only(
        "NS for an address bound here",
        0,
        neighbour_solicitation(PEER_MAC, PEER6, t0, true, &[]),
        Reason::CastPass,
    ));
    let mut unicast_ns = neighbour_solicitation(PEER_MAC, PEER6, t0, true, &[]);
    unicast_ns[0..6].copy_from_slice(&MEMBER_MAC[0]);
    t.push(deliver_only(
        "unicast NS for an address bound here",
        0,
        unicast_ns,
        Reason::RxPass,
    ));
    t.push(deliver_only(
        "router advertisement to all-nodes",
        1,
        nd_to_all_nodes(ROUTER_LL6, 134, 0),
        Reason::CastPass,
    ));
    t.push(deliver_only(
        "echo request to this member's test address",
        1,
        echo4_request(1, TEST4[1], 3, 4),
        Reason::RxPass,
    ));
    t.push(deliver_only(
        "echo request to m1's test address",
        0,
        echo4_request(0, TEST4[1], 1, 1),
        Reason::RxPass,
    ));
    t.push(deliver_only(
        "probe reply with the daemon's id and cookie (no timestamp)",
        0,
        probe4_reply(PEER4, TEST4[0], PROBE_ID, COOKIE, seq),
        Reason::RxPass,
    ));
    t.push(deliver_only(
        "LLDP (not IP) on a non-cast member",
        1,
        lldp(),
        Reason::CastPass,
    ));
    t.push(
        rx_ipmp(
            "XDP on, echo request to a data address bound here (not answered)",
            0,
            echo4_request(0, d0, 0x77, 1),
        )
        .tweak(Tweak::XdpMembers),
    );
    t.push(
        rx_ipmp(
            "XDP on, v6 echo request to a data address bound here (not answered)",
            0,
            echo6_request(0, PEER6, t0, 0x99, 7),
        )
        .tweak(Tweak::XdpMembers),
    );
    t.push(
        tc_in(
            "XDP on, not a member",
            4,
            peer_tcp4(MEMBER_MAC[4], d0),
            TC_ACT_OK,
            Reason::NotMember,
        )
        .tweak(Tweak::XdpMembers),
    );
    t
}

#[test]
fn tc_ingress_fixtures() -> Result<()> {
    run_table("tc_ingress_fixtures", tc_ingress_table())
}

// --- TC egress on members -------------------------------------------------------------------

fn member_tx(what: &str, on: usize, frame: Vec<u8>, reason: Reason) -> Fixture {
    Fixture::new(format!("m{on}: {what}"), Prog::TcMember, Dev::M(on), frame).expect(
        TC_ACT_OK,
        member_slot(on),
        reason,
    )
}

fn tc_member_table() -> Vec<Fixture> {
    let mut t = Vec::new();
    let [d0, d1, d2] = DATA4;
    let request = |member: usize, spa: Ipv4Addr| {
        arp_frame(
            BROADCAST,
            ARPOP_REQUEST,
            MEMBER_MAC[member],
            spa,
            [0; 6],
            PEER4,
        )
    };
    let with_spa = |mut f: Vec<u8>, spa: Ipv4Addr| {
        f[28..32].copy_from_slice(&spa.octets());
        f
    };
    t.push(
        member_tx(
            "ARP request naming a data address bound to m0",
            1,
            request(1, d0),
            Reason::ArpSrcRewrite,
        )
        .output(with_spa(request(1, d0), TEST4[1])),
    );
    t.push(
        member_tx(
            "ARP request naming a data address bound to no member",
            1,
            request(1, d2),
            Reason::ArpSrcRewrite,
        )
        .output(with_spa(request(1, d2), TEST4[1])),
    );
    t.push(
        member_tx(
            "ARP request naming m1's address, no test address (probe form)",
            2,
            request(2, d1),
            Reason::ArpSrcRewrite,
        )
        .output(with_spa(request(2, d1), Ipv4Addr::UNSPECIFIED)),
    );
    t.push(
        member_tx(
            "padded ARP request naming m1's address",
            0,
            pad60(request(0, d1)),
            Reason::ArpSrcRewrite,
        )
        .output(pad60(with_spa(request(0, d1), TEST4[0]))),
    );
    t.push(member_tx(
        "ARP request naming the address bound here",
        0,
        request(0, d0),
        Reason::MemberTxPass,
    ));
    t.push(member_tx(
        "ARP request naming m1's address, on m1",
        1,
        request(1, d1),
        Reason::MemberTxPass,
    ));
    t.push(member_tx(
        "ARP request from the test address",
        1,
        request(1, TEST4[1]),
        Reason::MemberTxPass,
    ));
    t.push(member_tx(
        "ARP reply naming a data address bound elsewhere",
        1,
        arp_frame(PEER_MAC, ARPOP_REPLY, MEMBER_MAC[1], d0, PEER_MAC, PEER4),
        Reason::MemberTxPass,
    ));
    t.push(member_tx(
        "truncated ARP request",
        1,
        request(1, d0)[..30].to_vec(),
        Reason::MemberTxPass,
    ));
    let ipv4 = Ipv4::new(TEST4[1], PEER4, IPPROTO_ICMP).frame(
        PEER_MAC,
        MEMBER_MAC[1],
        &icmp(ICMP_ECHO_REQUEST, 0, 1, 1, b"probe"),
    );
    t.push(member_tx("IPv4 probe", 1, ipv4, Reason::MemberTxPass));
    t.push(member_tx(
        "IPv6 from the member",
        0,
        neighbour_solicitation(MEMBER_MAC[0], DATA6[0], PEER6, true, &[]),
        Reason::MemberTxPass,
    ));
    t.push(member_tx(
        "not a member",
        4,
        request(4, d0),
        Reason::NotMember,
    ));
    // What the kernel sends when it releases a packet from a member's neighbour queue: the
    // IPMP interface's MAC as source and destination. It is sent again with bpf_redirect_neigh.
    let requeued4 = Ipv4::new(DATA4[0], FAR4, IPPROTO_UDP).frame(
        IPMP0_MAC,
        IPMP0_MAC,
        &udp(Pseudo::V4(DATA4[0], FAR4), 40000, 53, b"first"),
    );
    t.push(
        Fixture::new(
            "m1: IPv4 frame released from the neighbour queue".to_string(),
            Prog::TcMember,
            Dev::M(1),
            requeued4,
        )
        .expect(TC_ACT_REDIRECT, 1, Reason::MemberRequeued),
    );
    let requeued6 = Ipv6::new(DATA6[0], PEER6, IPPROTO_UDP).frame(
        IPMP0_MAC,
        IPMP0_MAC,
        &udp(Pseudo::V6(DATA6[0], PEER6), 40000, 53, b"first"),
    );
    t.push(
        Fixture::new(
            "m0: IPv6 frame released from the neighbour queue".to_string(),
            Prog::TcMember,
            Dev::M(0),
            requeued6,
        )
        .expect(TC_ACT_REDIRECT, 0, Reason::MemberRequeued),
    );
    t
}

#[test]
fn tc_member_fixtures() -> Result<()> {
    run_table("tc_member_fixtures", tc_member_table())
}

// --- properties across packets ---------------------------------------------------------------

/// Runs `frames` through TC egress one by one in one lab and returns, per frame, the member
/// whose TxUnicast counter went up.
fn egress_members(frames: &[Vec<u8>]) -> Result<Vec<usize>> {
    in_fresh_netns(|| {
        let mut session = Session::new(&[], &[Prog::TcEgress])?;
        let mut before = session.counters()?;
        let mut members = Vec::new();
        for frame in frames {
            let run = session.run(Prog::TcEgress, Dev::Ipmp0, frame)?;
            ensure!(run.verdict == TC_ACT_REDIRECT, "verdict {}", run.verdict);
            let after = session.counters()?;
            let moved: Vec<_> = after
                .iter()
                .filter(|(k, v)| before.get(k) != Some(v))
                .map(|(k, _)| *k)
                .collect();
            match moved.as_slice() {
                [(slot, Reason::TxUnicast)] => members.push(*slot as usize),
                other => bail!("one packet moved counters {other:?}"),
            }
            before = after;
        }
        Ok(members)
    })
}

#[test]
fn fragments_of_a_datagram_leave_through_one_member() -> Result<()> {
    if !ipmp_tests::lab::require_root("fragments_of_a_datagram_leave_through_one_member") {
        return Ok(());
    }
    for f in [fragments4(), fragments6()] {
        let got = egress_members(&[f.whole, f.first, f.middle, f.last])?;
        let whole = flow_member(&f.key_ports);
        let frag = flow_member(&f.key_frag);
        ensure!(whole != frag, "the fixture must separate the two members");
        assert_eq!(
            got,
            vec![whole, frag, frag, frag],
            "whole datagram, then its fragments"
        );
    }
    Ok(())
}

#[test]
fn flows_take_the_member_the_shared_hash_names() -> Result<()> {
    if !ipmp_tests::lab::require_root("flows_take_the_member_the_shared_hash_names") {
        return Ok(());
    }
    let mut frames = Vec::new();
    let mut want = Vec::new();
    for i in 0..24u16 {
        let dst4 = Ipv4Addr::new(203, 0, 113, 1 + i as u8);
        let dst6 = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1 + i);
        frames.push(tcp4(dst4, 30000 + i * 7, 443));
        want.push(flow_member(&key4(dst4, IPPROTO_TCP, 30000 + i * 7, 443)));
        frames.push(udp6(dst6, 5000, 20000 + i));
        want.push(flow_member(&key6(dst6, IPPROTO_UDP, 5000, 20000 + i)));
        let ip = Ipv4::new(SRC4, dst4, IPPROTO_ICMP);
        frames.push(out4(&ip, &icmp(ICMP_ECHO_REQUEST, 0, 100 + i, 1, b"x")));
        want.push(flow_member(&key4(dst4, IPPROTO_ICMP, 100 + i, 0)));
    }
    let got = egress_members(&frames)?;
    assert_eq!(got, want);
    // Three members share the buckets: the flows must not all land on one.
    for m in 0..3 {
        assert!(got.contains(&m), "no flow on m{m}");
    }
    Ok(())
}

#[test]
fn programs_pass_the_verifier() -> Result<()> {
    if !ipmp_tests::lab::require_root("programs_pass_the_verifier") {
        return Ok(());
    }
    in_fresh_netns(|| {
        let progs = [
            Prog::TcEgress,
            Prog::XdpMember,
            Prog::TcIngress,
            Prog::TcMember,
        ];
        let session = Session::new(&[], &progs)?;
        for prog in progs {
            let program = session
                .ebpf
                .program(prog.name())
                .ok_or_else(|| anyhow!("no program {}", prog.name()))?;
            let info = match prog {
                Prog::XdpMember => <&Xdp>::try_from(program)?.info()?,
                _ => <&SchedClassifier>::try_from(program)?.info()?,
            };
            println!(
                "{:16} verified insns {:>6}  xlated bytes {:>6}",
                prog.name(),
                info.verified_instruction_count().unwrap_or(0),
                info.size_translated().unwrap_or(0),
            );
        }
        Ok(())
    })
}
