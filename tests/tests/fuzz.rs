//! The data-plane fuzz test: every TC and XDP program of ipmp is run with BPF_PROG_TEST_RUN
//! on generated packets (`ipmp_tests::fuzz`: structured frames, truncated, bytes flipped,
//! random) and each result is compared with the userspace model of the program
//! (`ipmp_tests::model`) fed the same map contents: the verdict, the frame it leaves, the one
//! counter it bumps (all counters together must account for every packet) and the record it
//! writes into `IPMP_PROBES`. For the first frames of each program every truncation is run
//! too.
//!
//! The bounded run here does `IPMP_FUZZ_PACKETS` packets per program (default 100 000) from
//! seed `IPMP_FUZZ_SEED` (default fixed; the seed is printed so a failure can be replayed);
//! `cargo xtask fuzz` is the long run. Needs root; under CI it must run, never skip.

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
};
use ipmp_common::{
    AddrInfo, AddrKey, Counter, GroupInfo, MAP_CONFIG, MAP_PROBES, MAP_STATS, MAP_TARGETS,
    MAP_TESTADDRS, MAX_MEMBERS, MEMBER_F_ACTIVE, MEMBER_F_CAST, MEMBER_F_NO_ECHO,
    MEMBER_F_PROBE_RING_ONLY, MEMBER_F_XDP, MemberInfo, PROBE_CFG_F_ENABLED, PROG_TC_EGRESS,
    PROG_TC_INGRESS, PROG_TC_MEMBER, PROG_XDP_MEMBER, ProbeConfig, ProbeEvent, Reason,
    STATS_ENTRIES, TARGET_F_NEIGH, TargetInfo, TargetKey, TestAddrInfo, bucket_index, stats_index,
};
use ipmp_tests::{
    fuzz::{Generator, Palette},
    model::{self, Outcome, Prediction, Prefixes, Routes, World},
    packets::Mac,
    prog_lab::{
        BOUND, COOKIE, DATA1_4, DATA1_6, DATA4, DATA6, FAR4, FAR6, IPMP0_MAC, IPMP1_MAC, Lab,
        MEMBER_MAC, PEER_MAC, PEER4, PEER6, PROBE_ID, TARGET_MAC, TARGET4, TARGET6, TEST4, TEST6,
        in_fresh_netns, load_object, load_program,
    },
    testrun::{ProgKind, test_run},
};

/// Packets per program in the bounded run.
const DEFAULT_PACKETS: u64 = 100_000;
const DEFAULT_SEED: u64 = 0x1b3d_5eed;
/// Frames per program that are also run truncated at every offset.
const EVERY_OFFSET: usize = 40;
/// A progress line every this many packets (long runs).
const PROGRESS: u64 = 1_000_000;
/// Disagreements printed in full per program.
const SHOWN: usize = 5;

/// The lab's own IPv6 link-local peer (a source the kernel never forwards from).
const PEER_LL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99);

/// The map contents: m0 is ipmp0's cast member, m1 has XDP (TC ingress only delivers), m2
/// is inactive and its IPMP peer unknown; ipmp0's buckets name m0 and m1 and, to be refused,
/// m2, nobody, a device without entry (m4) and ipmp1's member m3; ipmp1 answers no echo and
/// keeps probe replies from the stack.
fn world(lab: &Lab) -> World {
    let m = lab.members;
    let ipmp = [lab.ipmp0, lab.ipmp1];
    let ipmp_peer = [lab.ipmp0_peer, lab.ipmp1_peer];
    let ipmp_mac = [IPMP0_MAC, IPMP1_MAC];
    let mut w = World::default();
    w.groups.insert(
        ipmp[0],
        GroupInfo {
            slot: 0,
            active_half: 1,
            n_buckets: 16,
            seed: 0x5eed_1234,
            cast_ifindex: m[0],
            stats_slot: MAX_MEMBERS,
            flags: 0,
            cast_mac: MEMBER_MAC[0],
            _pad: [0; 2],
        },
    );
    w.groups.insert(
        ipmp[1],
        GroupInfo {
            slot: 1,
            active_half: 0,
            n_buckets: 1,
            seed: 0,
            cast_ifindex: m[3],
            stats_slot: MAX_MEMBERS + 1,
            flags: 0,
            cast_mac: MEMBER_MAC[3],
            _pad: [0; 2],
        },
    );
    let arp_src = |a: Ipv4Addr| u32::from_ne_bytes(a.octets());
    let entries = [
        (
            0,
            0,
            MEMBER_F_ACTIVE | MEMBER_F_CAST,
            arp_src(TEST4[0]),
            true,
        ),
        (
            1,
            0,
            MEMBER_F_ACTIVE | MEMBER_F_XDP,
            arp_src(TEST4[1]),
            true,
        ),
        (2, 0, 0, 0, false),
        (
            3,
            1,
            // Group 1 turned echo answering off and keeps probe replies in the ring.
            MEMBER_F_ACTIVE | MEMBER_F_CAST | MEMBER_F_NO_ECHO | MEMBER_F_PROBE_RING_ONLY,
            0,
            true,
        ),
    ];
    for (i, group, flags, arp_src, peer) in entries {
        let info = MemberInfo {
            group_ifindex: ipmp[group],
            stats_slot: i as u32,
            flags,
            arp_src,
            rx_ifindex: if peer { ipmp_peer[group] } else { 0 },
            mac: MEMBER_MAC[i],
            ipmp_mac: ipmp_mac[group],
        };
        w.members.insert(m[i], info);
    }
    let active = [
        m[0], m[1], m[0], m[1], m[0], m[1], m[0], m[1], m[0], m[1], m[2], 0, m[4], m[3], m[0], m[1],
    ];
    for (b, ifindex) in active.into_iter().enumerate() {
        let b = b as u32;
        let at = |half| bucket_index(0, half, b).unwrap_or(u32::MAX);
        w.buckets.insert(at(1), ifindex);
        w.buckets.insert(at(0), m[3]);
    }
    w.buckets
        .insert(bucket_index(1, 0, 0).unwrap_or(u32::MAX), m[3]);
    w.buckets.retain(|_, v| *v != 0);
    for i in 0..3 {
        let info = AddrInfo {
            group_ifindex: ipmp[0],
            bound_ifindex: BOUND[i].map_or(0, |b| m[b]),
        };
        w.addrs.insert(AddrKey::v4(DATA4[i].octets()), info);
        w.addrs.insert(AddrKey::v6(DATA6[i].octets()), info);
    }
    let info = AddrInfo {
        group_ifindex: ipmp[1],
        bound_ifindex: m[3],
    };
    w.addrs.insert(AddrKey::v4(DATA1_4.octets()), info);
    w.addrs.insert(AddrKey::v6(DATA1_6.octets()), info);
    for (key, member) in [
        (AddrKey::v4(TEST4[0].octets()), 0),
        (AddrKey::v4(TEST4[1].octets()), 1),
        (AddrKey::v6(TEST6.octets()), 0),
    ] {
        let info = TestAddrInfo {
            member_ifindex: m[member],
            group_ifindex: ipmp[0],
        };
        w.testaddrs.insert(key, info);
    }
    for (member, addr, flags) in [
        (0, AddrKey::v4(TARGET4.octets()), TARGET_F_NEIGH),
        (0, AddrKey::v6(TARGET6.octets()), TARGET_F_NEIGH),
        (1, AddrKey::v4(TARGET4.octets()), 0),
    ] {
        w.targets
            .insert(TargetKey::new(m[member], addr), TargetInfo { flags });
    }
    w.config = ProbeConfig {
        cookie: COOKIE,
        echo_id: u32::from(PROBE_ID),
        echo_id_mask: 0xff00,
        flags: PROBE_CFG_F_ENABLED,
        _pad: 0,
    };
    // As measured against the kernel: a lookup on ipmp0 (default routes) finds a next hop
    // for every destination but the host's own addresses, even loopback, multicast and
    // class E ones (the stack never routes those to ipmp0); one restricted to ipmp1 finds
    // no IPv4 route (there is none there), while IPv6 prefers, not requires, the device.
    // Subnet broadcast and subnet-router anycast are not predicted.
    let own4 = (DATA4[0].octets(), 32);
    let all4 = ([0; 4], 0);
    let v6 = |a: Ipv6Addr, len| (a.octets(), len);
    let subnet_router = |a: Ipv6Addr| {
        let mut b = a.octets();
        b[8..].fill(0);
        (b, 128)
    };
    let v6_routes = Prefixes {
        unknown: vec![subnet_router(DATA6[0]), subnet_router(DATA1_6)],
        none: vec![v6(DATA6[0], 128), v6(DATA1_6, 128)],
        found: vec![v6(Ipv6Addr::UNSPECIFIED, 0)],
    };
    let broadcast4 = vec![([198, 51, 100, 255], 32)];
    w.routes = Routes {
        v4: HashMap::from([
            (
                ipmp[0],
                Prefixes {
                    unknown: broadcast4.clone(),
                    none: vec![own4],
                    found: vec![all4],
                },
            ),
            (
                ipmp[1],
                Prefixes {
                    unknown: broadcast4,
                    none: vec![all4],
                    found: Vec::new(),
                },
            ),
        ]),
        v6: HashMap::from([(ipmp[0], v6_routes.clone()), (ipmp[1], v6_routes)]),
    };
    w
}

/// Addresses and MACs for the generators: everything the maps and routes know, the data
/// addresses twice (they decide the most).
fn palette() -> Palette {
    let mut macs = MEMBER_MAC.to_vec();
    macs.extend_from_slice(&[IPMP0_MAC, IPMP1_MAC]);
    macs.extend_from_slice(&[PEER_MAC, TARGET_MAC]);
    let mut v4: Vec<[u8; 4]> = DATA4.iter().chain(&DATA4).map(|a| a.octets()).collect();
    v4.extend(
        [DATA1_4, TEST4[0], TEST4[1], TARGET4, PEER4, FAR4]
            .iter()
            .map(|a| a.octets()),
    );
    let mut v6: Vec<[u8; 16]> = DATA6.iter().chain(&DATA6).map(|a| a.octets()).collect();
    v6.extend(
        [DATA1_6, TEST6, TARGET6, PEER6, FAR6, PEER_LL6]
            .iter()
            .map(|a| a.octets()),
    );
    Palette {
        macs,
        v4,
        v6,
        probe_id: PROBE_ID,
        cookie: COOKIE,
    }
}

/// Loads the object with fresh maps holding `w`, and the four programs.
fn load(w: &World) -> Result<Ebpf> {
    let mut ebpf = load_object()?;
    fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
        ebpf.map_mut(name).ok_or_else(|| anyhow!("no map {name}"))
    }
    let mut groups: BpfHashMap<_, u32, GroupInfo> = map(&mut ebpf, "IPMP_GROUPS")?.try_into()?;
    for (k, v) in &w.groups {
        groups.insert(k, v, 0)?;
    }
    let mut members: BpfHashMap<_, u32, MemberInfo> = map(&mut ebpf, "IPMP_MEMBERS")?.try_into()?;
    for (k, v) in &w.members {
        members.insert(k, v, 0)?;
    }
    let mut buckets: Array<_, u32> = map(&mut ebpf, "IPMP_BUCKETS")?.try_into()?;
    for (k, v) in &w.buckets {
        buckets.set(*k, v, 0)?;
    }
    let mut addrs: BpfHashMap<_, AddrKey, AddrInfo> = map(&mut ebpf, "IPMP_ADDRS")?.try_into()?;
    for (k, v) in &w.addrs {
        addrs.insert(k, v, 0)?;
    }
    let mut tests: BpfHashMap<_, AddrKey, TestAddrInfo> =
        map(&mut ebpf, MAP_TESTADDRS)?.try_into()?;
    for (k, v) in &w.testaddrs {
        tests.insert(k, v, 0)?;
    }
    let mut targets: BpfHashMap<_, TargetKey, TargetInfo> =
        map(&mut ebpf, MAP_TARGETS)?.try_into()?;
    for (k, v) in &w.targets {
        targets.insert(k, v, 0)?;
    }
    let mut config: Array<_, ProbeConfig> = map(&mut ebpf, MAP_CONFIG)?.try_into()?;
    config.set(0, w.config, 0)?;
    for prog in PROGS {
        load_program(&mut ebpf, prog.name, prog.kind)?;
    }
    Ok(ebpf)
}

/// A program under test, its model, and the devices it runs on (by lab index: 0..=4 the
/// members, 5 and 6 ipmp0 and ipmp1), repeated for weight.
struct Prog {
    name: &'static str,
    kind: ProgKind,
    model: fn(&World, u32, &[u8]) -> Prediction,
    devices: &'static [usize],
}

const PROGS: [Prog; 4] = [
    Prog {
        name: PROG_TC_EGRESS,
        kind: ProgKind::Tc,
        model: model::tc_egress::predict,
        devices: &[5, 5, 5, 5, 5, 5, 5, 6, 0],
    },
    Prog {
        name: PROG_XDP_MEMBER,
        kind: ProgKind::Xdp,
        model: model::xdp_member::predict,
        devices: &[0, 0, 0, 1, 1, 1, 2, 3, 4, 5],
    },
    Prog {
        name: PROG_TC_INGRESS,
        kind: ProgKind::Tc,
        model: model::tc_ingress::predict,
        devices: &[0, 0, 0, 1, 1, 1, 2, 3, 4, 5],
    },
    Prog {
        name: PROG_TC_MEMBER,
        kind: ProgKind::Tc,
        model: model::tc_member::predict,
        devices: &[0, 0, 0, 1, 1, 1, 2, 3, 4, 5],
    },
];

/// The counters and the probe ring, with what the model says they must hold by now.
struct Ledger {
    stats: PerCpuArray<MapData, Counter>,
    ring: RingBuf<MapData>,
    want: BTreeMap<u32, Counter>,
}

impl Ledger {
    fn counter(&self, index: u32) -> Result<Counter> {
        let mut sum = Counter::default();
        for c in self.stats.get(&index, 0)?.iter() {
            sum.packets += c.packets;
            sum.bytes += c.bytes;
        }
        Ok(sum)
    }

    fn events(&mut self) -> Result<Vec<ProbeEvent>> {
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            ensure!(
                item.len() == size_of::<ProbeEvent>(),
                "ring record of {} bytes",
                item.len()
            );
            // SAFETY: ProbeEvent is plain #[repr(C)] data of exactly this many bytes.
            let mut ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ProbeEvent>()) };
            ensure!(ev.rx_ns != 0, "probe record without a timestamp");
            ev.rx_ns = 0;
            events.push(ev);
        }
        Ok(events)
    }

    /// Every counter against the model's tally: nothing counted that the model did not say.
    fn check_all(&self) -> Result<()> {
        let mut wrong = Vec::new();
        for index in 0..STATS_ENTRIES {
            let got = self.counter(index)?;
            let want = self.want.get(&index).copied().unwrap_or_default();
            if got != want {
                wrong.push(format!(
                    "slot {} {:?}: {got:?}, model {want:?}",
                    index / Reason::COUNT,
                    Reason::from_u32(index % Reason::COUNT)
                ));
            }
        }
        ensure!(wrong.is_empty(), "counters differ:\n{}", wrong.join("\n"));
        Ok(())
    }
}

/// What one program's run found.
#[derive(Default)]
struct Tally {
    packets: u64,
    refused: u64,
    /// Packets whose next-hop lookup the model could not predict, by what happened.
    fib_unknown: BTreeMap<String, u64>,
    disagreements: u64,
    shown: Vec<String>,
    reasons: BTreeMap<Reason, u64>,
    /// Time spent generating frames, in the test runs, and in the rest (model, checks).
    generating: Duration,
    running: Duration,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs one packet and compares; `Err` only when the test cannot go on.
fn check_one(
    ebpf: &mut Ebpf,
    ledger: &mut Ledger,
    w: &World,
    prog: &Prog,
    ifindex: u32,
    frame: &[u8],
    tally: &mut Tally,
) -> Result<()> {
    let prediction = (prog.model)(w, ifindex, frame);
    let started = Instant::now();
    let run = test_run(ebpf, prog.name, prog.kind, ifindex, frame, 1);
    tally.running += started.elapsed();
    let candidates = match (prediction, run) {
        (Prediction::Refused, Err(_)) => {
            tally.refused += 1;
            return Ok(());
        }
        (Prediction::Refused, Ok(r)) => {
            return disagree(
                tally,
                frame,
                ifindex,
                format!("ran (verdict {}), model: the kernel refuses it", r.verdict),
            );
        }
        (Prediction::OneOf(_), Err(e)) => {
            return disagree(tally, frame, ifindex, format!("test run failed: {e:#}"));
        }
        (Prediction::OneOf(c), Ok(r)) => (c, r),
    };
    let (candidates, run) = candidates;
    tally.packets += 1;
    let len = frame.len() as u64;
    let events = ledger.events()?;
    // The counters each candidate would bump, as they are now.
    let mut moved = Vec::new();
    for c in &candidates {
        if let Some((slot, reason)) = c.count {
            let index = stats_index(slot, reason);
            let was = ledger.want.get(&index).copied().unwrap_or_default();
            let now = ledger.counter(index)?;
            moved.push((
                index,
                now != was,
                now == Counter {
                    packets: was.packets + 1,
                    bytes: was.bytes + len,
                },
            ));
        }
    }
    let matches = |c: &Outcome| -> bool {
        if c.verdict != run.verdict || c.output != run.output {
            return false;
        }
        if events != c.event.iter().copied().collect::<Vec<_>>() {
            return false;
        }
        let want = c.count.map(|(s, r)| stats_index(s, r));
        moved.iter().all(|&(index, changed, by_one)| {
            if Some(index) == want {
                by_one
            } else {
                !changed
            }
        })
    };
    let Some(hit) = candidates.iter().find(|c| matches(c)) else {
        let mut what = format!(
            "program: verdict {} output {} events {events:?}; counters moved: {:?}",
            run.verdict,
            hex(&run.output),
            moved
                .iter()
                .filter(|m| m.1)
                .map(|m| (m.0 / Reason::COUNT, Reason::from_u32(m.0 % Reason::COUNT)))
                .collect::<Vec<_>>()
        );
        for c in &candidates {
            what.push_str(&format!(
                "\n  model: verdict {} output {} count {:?} event {:?}",
                c.verdict,
                hex(&c.output),
                c.count,
                c.event
            ));
        }
        // Resynchronise with what the program counted, so one disagreement is reported once.
        for (index, changed, _) in moved {
            if changed {
                ledger.want.insert(index, ledger.counter(index)?);
            }
        }
        return disagree(tally, frame, ifindex, what);
    };
    if let Some((slot, reason)) = hit.count {
        let c = ledger.want.entry(stats_index(slot, reason)).or_default();
        c.packets += 1;
        c.bytes += len;
        *tally.reasons.entry(reason).or_default() += 1;
    }
    if candidates.len() > 1 {
        let what = hit
            .count
            .map_or("uncounted".to_owned(), |c| c.1.label().to_owned());
        *tally.fib_unknown.entry(what).or_default() += 1;
    }
    Ok(())
}

fn disagree(tally: &mut Tally, frame: &[u8], ifindex: u32, what: String) -> Result<()> {
    tally.disagreements += 1;
    if tally.shown.len() < SHOWN {
        tally.shown.push(format!(
            "on ifindex {ifindex}, frame {}\n  {what}",
            hex(frame)
        ));
    }
    Ok(())
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.with_context(|| format!("{name}={v}: want a number"))
        }
        Err(_) => Ok(default),
    }
}

#[test]
fn programs_agree_with_the_model() -> Result<()> {
    if !ipmp_tests::lab::require_root("programs_agree_with_the_model") {
        return Ok(());
    }
    let packets = env_u64("IPMP_FUZZ_PACKETS", DEFAULT_PACKETS)?;
    let seed = env_u64("IPMP_FUZZ_SEED", DEFAULT_SEED)?;
    println!(
        "fuzz: {packets} packets per program, seed {seed:#x} (IPMP_FUZZ_PACKETS, IPMP_FUZZ_SEED)"
    );
    let tallies = in_fresh_netns(|| run_all(packets, seed))?;
    let disagreements: u64 = tallies.iter().map(|t| t.disagreements).sum();
    if disagreements > 0 {
        bail!("{disagreements} disagreements between the programs and the model (seed {seed:#x})");
    }
    Ok(())
}

fn run_all(packets: u64, seed: u64) -> Result<Vec<Tally>> {
    let lab = Lab::create(true, true)?;
    let w = world(&lab);
    let mut ebpf = load(&w)?;
    let stats = PerCpuArray::try_from(
        ebpf.take_map(MAP_STATS)
            .ok_or_else(|| anyhow!("no map {MAP_STATS}"))?,
    )?;
    let ring = RingBuf::try_from(
        ebpf.take_map(MAP_PROBES)
            .ok_or_else(|| anyhow!("no map {MAP_PROBES}"))?,
    )?;
    let mut ledger = Ledger {
        stats,
        ring,
        want: BTreeMap::new(),
    };
    let devices: Vec<(u32, Mac)> = lab
        .members
        .iter()
        .chain(&[lab.ipmp0, lab.ipmp1])
        .copied()
        .zip(MEMBER_MAC.iter().chain(&[IPMP0_MAC, IPMP1_MAC]).copied())
        .collect();
    let palette = palette();
    let mut tallies = Vec::new();
    for (p, prog) in PROGS.iter().enumerate() {
        let started = Instant::now();
        let mut generator = Generator::new(&palette, seed ^ (p as u64) << 56);
        let mut tally = Tally::default();
        let mut i = 0usize;
        let mut report = PROGRESS;
        while tally.packets < packets {
            if tally.packets >= report {
                println!(
                    "fuzz: {:16} {} packets, {} disagreements so far",
                    prog.name, tally.packets, tally.disagreements
                );
                report += PROGRESS;
            }
            let (ifindex, mac) = devices[prog.devices[i % prog.devices.len()]];
            let generating = Instant::now();
            let frame = if i < EVERY_OFFSET {
                generator.frame(mac)
            } else {
                generator.next_frame(mac)
            };
            tally.generating += generating.elapsed();
            // The first frames at every length, the rest whole.
            let cuts = if i < EVERY_OFFSET { 0 } else { frame.len() };
            for cut in cuts..=frame.len() {
                check_one(
                    &mut ebpf,
                    &mut ledger,
                    &w,
                    prog,
                    ifindex,
                    &frame[..cut],
                    &mut tally,
                )?;
            }
            i += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "fuzz: {:16} {} packets, {} disagreements, {} refused by the kernel (shorter than its Ethernet or IP header), {:.1} s ({:.1} µs/packet)",
            prog.name,
            tally.packets,
            tally.disagreements,
            tally.refused,
            secs,
            secs * 1e6 / tally.packets.max(1) as f64
        );
        let reasons: Vec<String> = tally
            .reasons
            .iter()
            .map(|(r, n)| format!("{}={n}", r.label()))
            .collect();
        println!("fuzz:   by reason: {}", reasons.join(" "));
        println!(
            "fuzz:   generating {:.1} s, test runs {:.1} s",
            tally.generating.as_secs_f64(),
            tally.running.as_secs_f64()
        );
        if !tally.fib_unknown.is_empty() {
            println!(
                "fuzz:   next hop not predicted (either accepted): {:?}",
                tally.fib_unknown
            );
        }
        for s in &tally.shown {
            println!("fuzz:   DISAGREEMENT {s}");
        }
        tallies.push(tally);
    }
    ledger.check_all()?;
    println!("fuzz: every counter matches the model's tally");
    Ok(tallies)
}
