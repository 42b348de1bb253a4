//! Per-packet cost of ipmp's eBPF programs.
//!
//! **Test runs.** BPF_PROG_TEST_RUN of the real `ipmp_tc_egress` and `ipmp_xdp_member` against
//! the no-op programs of the same types (`ipmp_tc_noop`, `ipmp_xdp_noop`, same object, same
//! load, same input and context), in a private namespace whose maps the daemon's own writer
//! filled (see [`super::testbed`]). Each packet is first run once and its verdict, output and
//! counted reason checked, so every figure is for the path it names.
//!
//! The kernel re-runs a program `repeat` times on the same buffer. The TC program and the XDP
//! pass path leave the packet as it was, so they are timed with a large repeat count. The XDP
//! responders rewrite the request into a reply in place, so a second run would time the reply
//! path instead: they are timed with `repeat = 1` over many runs, and the harness overhead of a
//! single run (two clock reads) is removed by timing the no-op the same way:
//! `cost = mean₁(prog) − mean₁(no-op) + no-op at large repeat`, where mean₁ is the
//! interquartile mean over the single runs. The XDP pass packet is timed both ways as a check of
//! that method.
//!
//! **Scale.** The TC egress, TC ingress and XDP ARP cases again, on one object per
//! configuration (data addresses × members × groups, see [`SCALES`]) over shared devices, plus
//! a second object of the smallest one as a control, timed in turn in every trial. Each packet
//! is aimed at the last-configured group, member and address, and the per-packet cost at the
//! largest configuration is held to within 10 % of the smallest.
//!
//! **Live cost.** The attached programs under real traffic: see [`super::live_cost`].

use std::fmt::Write as _;

use anyhow::{anyhow, ensure};
use aya::{
    Ebpf,
    programs::{SchedClassifier, Xdp},
};
use ipmp_common::{
    PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP_MEMBER, Reason,
    packet::{ARPOP_REQUEST, ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

use super::{
    GoalRow, Opts, Plot, Section, Summary, svg,
    testbed::{
        DATA4, DATA6, Devices, FAR4, FAR6, IPMP0_MAC, ONLINK4, ONLINK6, PEER_MAC, PEER4, PEER6,
        Scale, Testbed, UNCONFIRMED4, in_fresh_netns,
    },
};
use crate::testrun::ProgKind;
use crate::{
    lab::{LAB_HASH_SEED, member_mac},
    packets::{
        BROADCAST, Ipv4, Ipv6, Pseudo, arp_frame, icmp, neighbour_solicitation, pad60, tcp, udp,
    },
    prog_lab::{PROG_TC_FIBREF, PROG_TC_NOOP, PROG_XDP_NOOP},
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `ipmp_tc_egress` on the IPMP interface.
    Tc,
    /// `ipmp_tc_ingress` on a member (no XDP in front: answers and delivery).
    TcIngress,
    Xdp,
}

/// How a case is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// The packet stays valid: one run with a large repeat count.
    Repeat,
    /// The program rewrites the packet: single runs, harness overhead removed via the no-op.
    Single,
}

#[derive(Clone)]
struct Case {
    name: &'static str,
    kind: Kind,
    method: Method,
    input: Vec<u8>,
    verdict: u32,
    /// The counter the run adds one to; `None`: the program counts nothing (XDP passes what
    /// it does not answer on to TC ingress, which counts it).
    reason: Option<Reason>,
    /// Index of the member in the test bed: where TC ingress and XDP get the packet, and
    /// for TC egress the member whose counter must count it (`None`: any member).
    member: Option<usize>,
}

impl Case {
    fn prog(&self) -> &'static str {
        match self.kind {
            Kind::Tc => PROG_TC_EGRESS,
            Kind::TcIngress => PROG_TC_INGRESS,
            Kind::Xdp => PROG_XDP_MEMBER,
        }
    }

    fn noop(&self) -> &'static str {
        match self.kind {
            Kind::Tc | Kind::TcIngress => PROG_TC_NOOP,
            Kind::Xdp => PROG_XDP_NOOP,
        }
    }
}

/// Source port of the TC packets (the scale cases pick theirs).
const SPORT: u16 = 40001;
const DPORT: u16 = 443;

/// Frames the stack hands to the NOARP IPMP interface carry its own MAC as destination.
fn tc4(dst: std::net::Ipv4Addr, proto: u8) -> Vec<u8> {
    tc4_from(SPORT, dst, proto)
}

fn tc4_from(sport: u16, dst: std::net::Ipv4Addr, proto: u8) -> Vec<u8> {
    let l4 = if proto == IPPROTO_TCP {
        tcp(Pseudo::V4(DATA4, dst), sport, DPORT, &[0x55; 64])
    } else {
        udp(Pseudo::V4(DATA4, dst), sport, DPORT, &[0x55; 64])
    };
    Ipv4::new(DATA4, dst, proto).frame(IPMP0_MAC, IPMP0_MAC, &l4)
}

fn tc6(dst: std::net::Ipv6Addr, proto: u8) -> Vec<u8> {
    tc6_from(SPORT, dst, proto)
}

fn tc6_from(sport: u16, dst: std::net::Ipv6Addr, proto: u8) -> Vec<u8> {
    let l4 = if proto == IPPROTO_TCP {
        tcp(Pseudo::V6(DATA6, dst), sport, DPORT, &[0x55; 64])
    } else {
        udp(Pseudo::V6(DATA6, dst), sport, DPORT, &[0x55; 64])
    };
    Ipv6::new(DATA6, dst, proto).frame(IPMP0_MAC, IPMP0_MAC, &l4)
}

/// An address of the lab's subnet that is none of the host's.
const OTHER4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 77);

/// A UDP datagram from the peer to `dst`, sent to MAC `to`.
fn udp_in(to: [u8; 6], dst: std::net::Ipv4Addr) -> Vec<u8> {
    Ipv4::new(PEER4, dst, IPPROTO_UDP).frame(
        to,
        PEER_MAC,
        &udp(Pseudo::V4(PEER4, dst), 5353, 9000, &[0x55; 64]),
    )
}

/// A unicast packet the TC egress program sends through `member` (`None`: whichever member
/// its bucket names).
fn tc_case(name: &'static str, input: Vec<u8>, member: Option<usize>) -> Case {
    Case {
        name,
        kind: Kind::Tc,
        method: Method::Repeat,
        input,
        verdict: TC_ACT_REDIRECT,
        reason: Some(Reason::TxUnicast),
        member,
    }
}

fn cases() -> Vec<Case> {
    let m0 = member_mac(0);
    let tc = |name, input| tc_case(name, input, None);
    vec![
        tc("TC IPv4 TCP on-link", tc4(ONLINK4, IPPROTO_TCP)),
        tc("TC IPv6 UDP on-link", tc6(ONLINK6, IPPROTO_UDP)),
        tc("TC IPv4 TCP off-link", tc4(FAR4, IPPROTO_TCP)),
        tc("TC IPv6 UDP off-link", tc6(FAR6, IPPROTO_UDP)),
        tc(
            "TC IPv4 TCP on-link, neighbour unconfirmed",
            tc4(UNCONFIRMED4, IPPROTO_TCP),
        ),
        arp_case("XDP ARP request → reply", 0),
        Case {
            name: "XDP NS → NA",
            kind: Kind::Xdp,
            method: Method::Single,
            input: neighbour_solicitation(PEER_MAC, PEER6, DATA6, true, &[]),
            verdict: XDP_TX,
            reason: Some(Reason::NsReply),
            member: Some(0),
        },
        Case {
            name: "XDP echo request → reply",
            kind: Kind::Xdp,
            method: Method::Single,
            input: {
                let mut ip = Ipv4::new(PEER4, DATA4, IPPROTO_ICMP);
                ip.ttl = 57;
                ip.frame(
                    m0,
                    PEER_MAC,
                    &icmp(ICMP_ECHO_REQUEST, 0, 0x77, 1, &[0xab; 56]),
                )
            },
            verdict: XDP_TX,
            reason: Some(Reason::EchoReply),
            member: Some(0),
        },
        Case {
            name: "TC ingress: UDP to a data address, to the IPMP interface",
            kind: Kind::TcIngress,
            // The destination MAC becomes the IPMP interface's: a second run would pass.
            method: Method::Single,
            input: udp_in(m0, DATA4),
            verdict: TC_ACT_REDIRECT,
            reason: Some(Reason::RxToIpmp),
            member: Some(0),
        },
        Case {
            name: "TC ingress pass (UDP to another address)",
            kind: Kind::TcIngress,
            method: Method::Repeat,
            input: udp_in(m0, OTHER4),
            verdict: TC_ACT_OK,
            reason: Some(Reason::RxPass),
            member: Some(0),
        },
        Case {
            name: "XDP pass (UDP to a data address)",
            kind: Kind::Xdp,
            method: Method::Repeat,
            input: udp_in(m0, DATA4),
            verdict: XDP_PASS,
            reason: None,
            member: Some(0),
        },
    ]
}

struct RunOut {
    verdict: u32,
    output: Vec<u8>,
    /// Average ns per run as the kernel measured it.
    ns: f64,
}

/// One BPF_PROG_TEST_RUN of `name` on `ifindex` (the skb's device or XDP's ingress device).
fn test_run(
    ebpf: &mut Ebpf,
    name: &str,
    kind: Kind,
    ifindex: u32,
    input: &[u8],
    repeat: u32,
) -> anyhow::Result<RunOut> {
    let kind = match kind {
        Kind::Tc | Kind::TcIngress => ProgKind::Tc,
        Kind::Xdp => ProgKind::Xdp,
    };
    let r = crate::testrun::test_run(ebpf, name, kind, ifindex, input, repeat)?;
    Ok(RunOut {
        verdict: r.verdict,
        output: r.output,
        ns: r.duration.as_nanos() as f64,
    })
}

fn load(ebpf: &mut Ebpf, name: &str, kind: Kind) -> anyhow::Result<()> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name} (rebuild ipmp-ebpf)"))?;
    let loaded = match kind {
        Kind::Tc | Kind::TcIngress => {
            let p: &mut SchedClassifier = program.try_into()?;
            p.load()
        }
        Kind::Xdp => {
            let p: &mut Xdp = program.try_into()?;
            p.load()
        }
    };
    loaded.map_err(|e| anyhow!("load {name}: {e:?}"))
}

/// The mean of the middle half of `v` (robust to interrupts and clock outliers, finer than
/// the median of whole nanoseconds).
pub fn interquartile_mean(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let (lo, hi) = (v.len() / 4, v.len() - v.len() / 4);
    let mid = &v[lo..hi.max(lo + 1)];
    mid.iter().sum::<f64>() / mid.len() as f64
}

/// A peer's ARP request for the data address, which `member`'s XDP program answers.
fn arp_case(name: &'static str, member: usize) -> Case {
    Case {
        name,
        kind: Kind::Xdp,
        method: Method::Single,
        input: pad60(arp_frame(
            BROADCAST,
            ARPOP_REQUEST,
            PEER_MAC,
            PEER4,
            [0; 6],
            DATA4,
        )),
        verdict: XDP_TX,
        reason: Some(Reason::ArpReply),
        member: Some(member),
    }
}

/// Per case: (prog ns/packet, no-op ns/packet, ratio) per trial.
#[derive(Debug, Default, Clone)]
struct CaseResult {
    prog: Vec<f64>,
    noop: Vec<f64>,
    ratio: Vec<f64>,
    /// TC only: the helpers-only reference program.
    fibref: Vec<f64>,
}

struct Plan {
    trials: usize,
    repeat: u32,
    singles: usize,
}

/// The device a case's packet is run on.
fn device(bed: &Testbed, c: &Case) -> u32 {
    match c.kind {
        Kind::Tc => bed.ipmp0,
        Kind::TcIngress | Kind::Xdp => bed.members[c.member.unwrap_or(0)],
    }
}

/// The path check: one run, its verdict, output and counted reason (and for TC the
/// reference program's).
fn check_case(bed: &mut Testbed, c: &Case, method: Method) -> anyhow::Result<()> {
    let ifindex = device(bed, c);
    let slots: Vec<u32> = match c.member {
        Some(m) => vec![bed.slot(m)],
        // The member the flow's bucket names: its counter gets the packet.
        None => (0..bed.members.len()).map(|m| bed.slot(m)).collect(),
    };
    // Packets counted for the case's reason, or for any reason when it has none.
    let counted = |bed: &Testbed| -> anyhow::Result<u64> {
        let mut n = 0;
        for &s in &slots {
            for (reason, counter) in bed.writer.counters(s)? {
                if c.reason.is_none_or(|r| r == reason) {
                    n += counter.packets;
                }
            }
        }
        Ok(n)
    };
    let before = counted(bed)?;
    let once = test_run(&mut bed.ebpf, c.prog(), c.kind, ifindex, &c.input, 1)?;
    ensure!(
        once.verdict == c.verdict,
        "{}: verdict {} (want {})",
        c.name,
        once.verdict,
        c.verdict
    );
    let want = before + u64::from(c.reason.is_some());
    ensure!(
        counted(bed)? == want,
        "{}: the run was not counted as {:?} (member {:?})",
        c.name,
        c.reason,
        c.member
    );
    match c.method {
        // A rewrite that the next run repeats exactly (the TC program addressing a frame to
        // a confirmed neighbour) keeps every repeat on the same path.
        Method::Repeat if once.output != c.input => {
            let again = test_run(&mut bed.ebpf, c.prog(), c.kind, ifindex, &once.output, 1)?;
            ensure!(
                again.verdict == once.verdict && again.output == once.output,
                "{}: the program changed the packet differently on a second run, so repeated runs would not time this path",
                c.name
            );
        }
        Method::Repeat => {}
        Method::Single => ensure!(
            once.output != c.input,
            "{}: the program did not rewrite the packet",
            c.name
        ),
    }
    ensure!(
        method == Method::Single || c.method == Method::Repeat,
        "{}: a rewritten packet cannot be timed with repeats",
        c.name
    );
    if c.kind == Kind::Tc {
        let once = test_run(&mut bed.ebpf, PROG_TC_FIBREF, c.kind, ifindex, &c.input, 1)?;
        ensure!(
            once.verdict == TC_ACT_REDIRECT && once.output == c.input,
            "{}: the reference program did not redirect the packet unchanged",
            c.name
        );
    }
    Ok(())
}

/// `input` as the packet of another flow: its TCP/UDP source port advanced by `n`.
fn other_flow(input: &[u8], n: u16) -> Vec<u8> {
    let mut out = input.to_vec();
    let l4 = match u16::from_be_bytes([input[12], input[13]]) {
        0x0800 => 14 + usize::from(input[14] & 0x0f) * 4,
        _ => 14 + 40,
    };
    let sport = u16::from_be_bytes([out[l4], out[l4 + 1]]).wrapping_add(n);
    out[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
    out
}

/// One trial (number `trial`) of a checked case, added to `r`; `fibref`: also time the TC
/// reference program.
///
/// A TC egress trial times a flow of its own (the case's, its source port advanced by
/// `trial`), remembered by one untimed run first: each trial's path is then a map element of
/// its own, placed apart from the others', as real flows' are. A repeated run keeps one buffer
/// and one element, so one flow would keep one placement for every repeat; while the MAC
/// write was `bpf_skb_store_bytes` (a memcpy, `rep movsb`, slow when the frame lies within 64
/// bytes after the element modulo 4 KiB) that decided a whole row.
fn time_case(
    bed: &mut Testbed,
    c: &Case,
    method: Method,
    plan: &Plan,
    fibref: bool,
    trial: usize,
    r: &mut CaseResult,
) -> anyhow::Result<()> {
    let ifindex = device(bed, c);
    let per_trial;
    let c = if c.kind == Kind::Tc && method == Method::Repeat {
        per_trial = Case {
            input: other_flow(&c.input, trial as u16),
            ..c.clone()
        };
        test_run(
            &mut bed.ebpf,
            c.prog(),
            c.kind,
            ifindex,
            &per_trial.input,
            1,
        )?;
        &per_trial
    } else {
        c
    };
    if fibref && c.kind == Kind::Tc {
        r.fibref.push(
            test_run(
                &mut bed.ebpf,
                PROG_TC_FIBREF,
                c.kind,
                ifindex,
                &c.input,
                plan.repeat,
            )?
            .ns,
        );
    }
    let noop_repeat = test_run(
        &mut bed.ebpf,
        c.noop(),
        c.kind,
        ifindex,
        &c.input,
        plan.repeat,
    )?
    .ns;
    let prog = match method {
        Method::Repeat => {
            test_run(
                &mut bed.ebpf,
                c.prog(),
                c.kind,
                ifindex,
                &c.input,
                plan.repeat,
            )?
            .ns
        }
        Method::Single => {
            let mut p = Vec::with_capacity(plan.singles);
            let mut n = Vec::with_capacity(plan.singles);
            for _ in 0..plan.singles {
                p.push(test_run(&mut bed.ebpf, c.prog(), c.kind, ifindex, &c.input, 1)?.ns);
                n.push(test_run(&mut bed.ebpf, c.noop(), c.kind, ifindex, &c.input, 1)?.ns);
            }
            interquartile_mean(&mut p) - interquartile_mean(&mut n) + noop_repeat
        }
    };
    r.prog.push(prog);
    r.noop.push(noop_repeat);
    r.ratio.push(prog / noop_repeat.max(0.1));
    Ok(())
}

fn measure_case(
    bed: &mut Testbed,
    c: &Case,
    method: Method,
    plan: &Plan,
) -> anyhow::Result<CaseResult> {
    check_case(bed, c, method)?;
    let mut r = CaseResult::default();
    for trial in 0..plan.trials {
        time_case(bed, c, method, plan, true, trial, &mut r)?;
    }
    Ok(r)
}

/// Loads the programs the cases run.
fn load_all(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    load(ebpf, PROG_TC_EGRESS, Kind::Tc)?;
    load(ebpf, PROG_TC_NOOP, Kind::Tc)?;
    load(ebpf, PROG_TC_FIBREF, Kind::Tc)?;
    load(ebpf, PROG_TC_INGRESS, Kind::TcIngress)?;
    load(ebpf, PROG_XDP_MEMBER, Kind::Xdp)?;
    load(ebpf, PROG_XDP_NOOP, Kind::Xdp)
}

/// Test runs of every case; `(name, method label, result)` in table order.
fn measure_test_runs(plan: &Plan) -> anyhow::Result<Vec<(String, &'static str, CaseResult)>> {
    in_fresh_netns(|| {
        let mut bed = Testbed::new(4)?;
        load_all(&mut bed.ebpf)?;
        let mut out = Vec::new();
        for c in cases() {
            let label = match c.method {
                Method::Repeat => "repeat",
                Method::Single => "single runs",
            };
            let r = measure_case(&mut bed, &c, c.method, plan)?;
            out.push((c.name.to_string(), label, r));
            if c.kind == Kind::Xdp && c.method == Method::Repeat {
                // The same packet timed the responders' way: the two should agree.
                let r = measure_case(&mut bed, &c, Method::Single, plan)?;
                out.push((
                    format!("{} — single-run method check", c.name),
                    "single runs",
                    r,
                ));
            }
        }
        Ok(out)
    })
}

// --- scale ------------------------------------------------------------------------------------

/// The configurations of the Scale subsection: the smallest, each axis grown alone, and all
/// axes at their largest (16 members in the measured group; the other groups get what is left
/// of `MAX_MEMBERS`).
const SCALES: [Scale; 7] = [
    Scale {
        addresses: 1,
        members: 2,
        groups: 1,
    },
    Scale {
        addresses: 16,
        members: 2,
        groups: 1,
    },
    Scale {
        addresses: 256,
        members: 2,
        groups: 1,
    },
    Scale {
        addresses: 1,
        members: 8,
        groups: 1,
    },
    Scale {
        addresses: 1,
        members: 16,
        groups: 1,
    },
    Scale {
        addresses: 1,
        members: 2,
        groups: 8,
    },
    Scale {
        addresses: 256,
        members: 16,
        groups: 8,
    },
];

/// Names of the scale cases, in [`scale_cases`] order.
const SCALE_CASES: [&str; 4] = [
    "TC IPv4 TCP on-link",
    "TC IPv6 UDP on-link",
    "TC ingress UDP → IPMP interface",
    "XDP ARP request → reply",
];

/// The first source port from [`SPORT`] whose flow the bed's bucket table gives `member`.
fn sport_to(
    bed: &Testbed,
    member: usize,
    key: impl Fn(u16) -> ipmp_common::FlowKey,
) -> anyhow::Result<u16> {
    let n = u32::try_from(bed.table.len())?;
    (SPORT..=u16::MAX)
        .find(|&p| {
            let bucket = ipmp_common::bucket_of(ipmp_common::flow_hash(&key(p), LAB_HASH_SEED), n);
            bed.table.owner(bucket as usize) == Some(member)
        })
        .ok_or_else(|| anyhow!("no source port maps to member {member}"))
}

/// The scale cases of one bed, aimed at its last member: the TC flows hash to it, the
/// inbound packets arrive on it, for the last data address (bound to it).
fn scale_cases(bed: &Testbed) -> anyhow::Result<Vec<Case>> {
    let last = bed.members.len() - 1;
    let p4 = sport_to(bed, last, |p| {
        ipmp_common::FlowKey::v4(DATA4.octets(), ONLINK4.octets(), IPPROTO_TCP, p, DPORT)
    })?;
    let p6 = sport_to(bed, last, |p| {
        ipmp_common::FlowKey::v6(DATA6.octets(), ONLINK6.octets(), IPPROTO_UDP, p, DPORT)
    })?;
    let tc = |name, input| tc_case(name, input, Some(last));
    Ok(vec![
        tc(SCALE_CASES[0], tc4_from(p4, ONLINK4, IPPROTO_TCP)),
        tc(SCALE_CASES[1], tc6_from(p6, ONLINK6, IPPROTO_UDP)),
        Case {
            name: SCALE_CASES[2],
            kind: Kind::TcIngress,
            method: Method::Single,
            input: udp_in(bed.mac(last), DATA4),
            verdict: TC_ACT_REDIRECT,
            reason: Some(Reason::RxToIpmp),
            member: Some(last),
        },
        arp_case(SCALE_CASES[3], last),
    ])
}

/// Per configuration of [`SCALES`], then the control (a second object with the smallest
/// configuration): the results of the [`SCALE_CASES`].
type ScaleResults = Vec<(Scale, Vec<CaseResult>)>;

/// Every configuration on its own object (own maps) over the same devices, all loaded at
/// once, and a second object with the smallest configuration as a control: what two objects
/// of the same configuration differ by. Each trial times every case of every object, the
/// objects' order rotating from trial to trial.
fn measure_scale(plan: &Plan) -> anyhow::Result<ScaleResults> {
    in_fresh_netns(|| {
        let groups = SCALES.iter().map(|s| s.groups).max().unwrap_or(1);
        let members = SCALES.iter().map(Scale::total_members).max().unwrap_or(1);
        let dev = Devices::new(groups - 1, members)?;
        let configs: Vec<Scale> = SCALES.iter().chain(&SCALES[..1]).copied().collect();
        let mut beds = Vec::new();
        for &scale in &configs {
            let mut bed = Testbed::scaled(&dev, scale)?;
            load_all(&mut bed.ebpf)?;
            let cases = scale_cases(&bed)?;
            for c in &cases {
                check_case(&mut bed, c, c.method)?;
            }
            let results = vec![CaseResult::default(); cases.len()];
            beds.push((bed, cases, results));
        }
        let n = beds.len();
        for t in 0..plan.trials {
            for i in 0..n {
                let (bed, cases, results) = &mut beds[(t + i) % n];
                for (c, r) in cases.iter().zip(results.iter_mut()) {
                    time_case(bed, c, c.method, plan, false, t, r)?;
                }
            }
        }
        Ok(configs
            .into_iter()
            .zip(beds)
            .map(|(s, (_, _, r))| (s, r))
            .collect())
    })
}

/// Median of `b` over median of `a` for case `i`, and the same trial's ratios.
fn scale_ratio(a: &[CaseResult], b: &[CaseResult], i: usize) -> Option<(f64, f64, f64, Vec<f64>)> {
    let (x, y) = (a.get(i)?, b.get(i)?);
    let (sa, sb) = (Summary::of(&x.prog)?, Summary::of(&y.prog)?);
    let paired = x
        .prog
        .iter()
        .zip(&y.prog)
        .map(|(p, q)| q / p.max(0.1))
        .collect();
    Some((sa.median, sb.median, sb.median / sa.median.max(0.1), paired))
}

/// The Scale subsection's markdown and one goal row per case.
fn scale_report(res: &anyhow::Result<ScaleResults>, plan: &Plan) -> (String, Vec<GoalRow>) {
    let mut md = String::new();
    let _ = writeln!(md, "### Scale\n");
    let goal_name = |case: &str| {
        format!("{case}: per-packet cost at the largest configuration within 10 % of the smallest")
    };
    let not_measured = |why: String| -> Vec<GoalRow> {
        SCALE_CASES
            .iter()
            .map(|c| GoalRow {
                goal: goal_name(c),
                figure: "—".into(),
                met: None,
                why: why.clone(),
            })
            .collect()
    };
    let res = match res {
        Ok(r) if r.len() == SCALES.len() + 1 => r,
        Ok(_) => return (md, not_measured("no figures".into())),
        Err(e) => {
            let e = format!("{e:#}").replace('\n', " ");
            let _ = writeln!(md, "**Not measured:** {e}\n");
            return (md, not_measured("not measured".into()));
        }
    };
    let _ = writeln!(
        md,
        "The same test runs at growing configurations, written by ipmpd's writer: the number \
         of data addresses (each an IPv4 and an IPv6 one, spread over the groups and their \
         members), of members in the measured group, and of groups (every group with \
         {} buckets; beside the measured one on the IPMP interface that has the addresses and \
         routes, the others on interfaces of their own, with as many members as the measured \
         group, fewer where that would pass the {} members the maps hold). Each packet is aimed \
         at the last-configured entry: the measured group is written last (the highest group \
         slot), the TC flows' source ports are chosen so they hash to the group's last member \
         (the checked flow; each trial then times a flow of its own, as above), and the inbound packets arrive on that member for the last data address, bound to it; \
         the first run of each checks that member's counter. Every configuration has its own \
         object and maps, all loaded at once over the same devices, with a second object of the \
         smallest configuration as a control (what two loads of the same configuration differ \
         by); each trial times every object in turn (the order rotating), {} trials; *TC* cells \
         are runs of {} repeats, the others {} single runs per trial (as above). ns per packet, \
         min / median / max.\n",
        ipmp::config::DEFAULT_BUCKETS,
        ipmp_common::MAX_MEMBERS,
        plan.trials,
        plan.repeat,
        plan.singles
    );
    let _ = write!(
        md,
        "| data addresses | members | groups | map entries: groups / members / addresses |"
    );
    for c in SCALE_CASES {
        let _ = write!(md, " {c} |");
    }
    let _ = writeln!(
        md,
        "\n|---|---|---|---|{}",
        "---|".repeat(SCALE_CASES.len())
    );
    for (k, (s, r)) in res.iter().enumerate() {
        let again = if k == SCALES.len() {
            " (control: second object)"
        } else {
            ""
        };
        let _ = write!(
            md,
            "| {} | {} | {}{again} | {} / {} / {} |",
            s.addresses,
            s.members,
            s.groups,
            s.groups,
            s.total_members(),
            2 * s.addresses
        );
        for c in r {
            let cell = Summary::of(&c.prog).map_or_else(|| "—".to_string(), |p| p.fmt(1, ""));
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
    let small = &res[0];
    let large = &res[SCALES.len() - 1];
    let control = &res[SCALES.len()];
    let mut goals = Vec::new();
    let mut large_row = "| largest ÷ smallest (medians) | | | |".to_string();
    let mut control_row = "| control ÷ smallest (medians) | | | |".to_string();
    for (i, name) in SCALE_CASES.iter().enumerate() {
        let ctl = scale_ratio(&small.1, &control.1, i);
        let _ = write!(
            control_row,
            " {} |",
            ctl.as_ref()
                .map_or_else(|| "—".to_string(), |c| format!("{:.3}", c.2))
        );
        let Some((a, b, ratio, paired)) = scale_ratio(&small.1, &large.1, i) else {
            large_row.push_str(" — |");
            continue;
        };
        let _ = write!(large_row, " {ratio:.3} |");
        let spread = Summary::of(&paired).map_or_else(String::new, |p| {
            format!("; per trial {:.2}–{:.2}", p.min, p.max)
        });
        let met = (ratio - 1.0).abs() <= 0.10;
        goals.push(GoalRow {
            goal: goal_name(name),
            figure: format!(
                "{b:.1} ns at {} addresses / {} members / {} groups vs {a:.1} ns at {} / {} / {} \
                 ({:+.1} %{spread})",
                large.0.addresses,
                large.0.members,
                large.0.groups,
                small.0.addresses,
                small.0.members,
                small.0.groups,
                (ratio - 1.0) * 100.0
            ),
            met: Some(met),
            why: if met {
                String::new()
            } else {
                scale_why(ratio, &paired, ctl.map(|c| c.2))
            },
        });
    }
    let _ = writeln!(md, "{large_row}\n{control_row}\n");
    (md, goals)
}

/// Why a scale goal is missed, from the figures: the side-by-side trials and the control.
fn scale_why(ratio: f64, paired: &[f64], control: Option<f64>) -> String {
    let within = paired.iter().filter(|r| (**r - 1.0).abs() <= 0.10).count();
    let control = control.map_or_else(String::new, |c| {
        format!(
            "; a second object of the smallest configuration reads {:+.0} % from the first",
            (c - 1.0) * 100.0
        )
    });
    let head = format!(
        "the largest configuration reads {:+.0} %; {within} of {} side-by-side trials were \
         within 10 %{control}",
        (ratio - 1.0) * 100.0,
        paired.len()
    );
    if ratio < 1.0 {
        format!(
            "{head}. More entries cannot make a lookup cheaper: this is the spread between \
             loads and runs on this machine, not the configuration"
        )
    } else if within > 0 {
        format!("{head}: the difference is within the run-to-run spread on this machine")
    } else {
        format!(
            "{head}. The lookups are hash-map lookups (group and member by ifindex, address by \
             key) and an array index, whose work does not depend on the entry count; what \
             grows is the memory the maps take, so the likely cause is cache misses (not \
             verified here)"
        )
    }
}

// --- the section ------------------------------------------------------------------------------

/// The table row of one case (pure: figures in, markdown out) and its worst-ratio candidates.
struct Rows {
    md: String,
    bars: Vec<(String, Vec<(String, f64)>)>,
    /// Highest median ratio of the rows of each [`Budget`], with the row.
    worst: [Option<(f64, String)>; Budget::ALL.len()],
    /// Median ns of the TC rows: (ipmp, helpers-only reference, no-op).
    tc_medians: Vec<(f64, f64, f64)>,
    /// Single-run method minus repeat on the XDP pass packet (median ns).
    single_bias: Option<f64>,
}

/// The per-packet goals: which rows each covers and the most it may cost against the no-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Budget {
    TcV4,
    TcV6,
    XdpPass,
    Responder,
}

impl Budget {
    const ALL: [Budget; 4] = [
        Budget::TcV4,
        Budget::TcV6,
        Budget::XdpPass,
        Budget::Responder,
    ];

    fn of(row: &str) -> Option<Budget> {
        if row.starts_with("TC IPv4") {
            Some(Budget::TcV4)
        } else if row.starts_with("TC IPv6") {
            Some(Budget::TcV6)
        } else if row.starts_with("XDP pass") {
            Some(Budget::XdpPass)
        } else if row.starts_with("XDP") && row.contains('→') {
            Some(Budget::Responder)
        } else {
            None
        }
    }

    fn what(self) -> &'static str {
        match self {
            Budget::TcV4 => "TC egress program, IPv4",
            Budget::TcV6 => "TC egress program, IPv6",
            Budget::XdpPass => "XDP pass path",
            Budget::Responder => "ARP/NDP/echo responders",
        }
    }

    fn max_ratio(self) -> f64 {
        match self {
            Budget::TcV4 => 3.0,
            Budget::TcV6 => 4.0,
            Budget::XdpPass => 2.0,
            Budget::Responder => 6.0,
        }
    }
}

fn rows(results: &[(String, &'static str, CaseResult)]) -> Rows {
    let mut r = Rows {
        md: String::new(),
        bars: Vec::new(),
        worst: Default::default(),
        tc_medians: Vec::new(),
        single_bias: None,
    };
    let _ = writeln!(
        r.md,
        "| packet | timed by | ipmp ns/packet | no-op ns/packet | ratio to no-op | parse + FIB + redirect only |\n|---|---|---|---|---|---|"
    );
    let mut pass_repeat = None;
    for (name, method, c) in results {
        let (Some(p), Some(n), Some(q)) = (
            Summary::of(&c.prog),
            Summary::of(&c.noop),
            Summary::of(&c.ratio),
        ) else {
            continue;
        };
        let fib = Summary::of(&c.fibref);
        let _ = writeln!(
            r.md,
            "| {name} | {method} | {} | {} | {} | {} |",
            p.fmt(1, "ns"),
            n.fmt(1, "ns"),
            q.fmt(2, "×"),
            fib.map_or_else(|| "—".to_string(), |f| f.fmt(1, "ns"))
        );
        let is_check = name.contains("method check");
        if name.starts_with("XDP pass") {
            if is_check {
                r.single_bias = pass_repeat.map(|rep: f64| p.median - rep);
            } else {
                pass_repeat = Some(p.median);
            }
        }
        if !is_check {
            let mut series = vec![("ipmp".to_string(), p.median)];
            if let Some(f) = fib {
                series.push(("parse + FIB + redirect".to_string(), f.median));
                r.tc_medians.push((p.median, f.median, n.median));
            }
            series.push(("no-op".to_string(), n.median));
            r.bars
                .push((name.replace(" (UDP to a data address)", ""), series));
        }
        if let Some(b) = Budget::of(name)
            && !is_check
        {
            let w = &mut r.worst[b as usize];
            if w.as_ref().is_none_or(|(v, _)| q.median > *v) {
                *w = Some((q.median, name.clone()));
            }
        }
    }
    r
}

pub fn run(opts: &Opts) -> anyhow::Result<Section> {
    let plan = Plan {
        trials: opts.pick(15, 5),
        repeat: opts.pick(2_000_000, 200_000),
        singles: opts.pick(100_000, 20_000),
    };
    let results = measure_test_runs(&plan)?;
    let scale_plan = Plan {
        trials: opts.pick(11, 3),
        repeat: opts.pick(500_000, 100_000),
        singles: opts.pick(30_000, 5_000),
    };
    let scale_started = std::time::Instant::now();
    let scale = measure_scale(&scale_plan);
    let scale_secs = scale_started.elapsed().as_secs_f64();
    let live = super::live_cost::measure(opts);
    let rows = rows(&results);

    let mut md = String::new();
    let _ = writeln!(
        md,
        "BPF_PROG_TEST_RUN of the real programs against no-op programs of the same type \
         (`ipmp_tc_noop`, `ipmp_xdp_noop`: same object, same load, same input and context), in a \
         private namespace whose maps were written by ipmpd's own writer (4 active members, \
         {} buckets). A third program, `ipmp_tc_fibref`, does only what any TC program that \
         forwards to a next hop must: parse, `bpf_fib_lookup`, `bpf_redirect_neigh` — so the \
         rest of the TC figure is ipmp's own work. The TC rows run as a flow runs once it is \
         established: its path (member, next hop, the next hop's confirmed MAC) remembered in \
         `IPMP_ROUTES4`/`IPMP_ROUTES6` by the first, checking run, so the program writes both \
         MACs and uses `bpf_redirect`; the *neighbour unconfirmed* row is the path of a flow to a next hop \
         whose MAC is not confirmed (`IPMP_NEIGHS` looked up, `bpf_redirect_neigh`). The *TC ingress* rows are the inbound path on a member without XDP \
         (veth's default): the member's answers are checked first, then a datagram for a data \
         address gets the IPMP interface's MAC and is redirected to its veth peer; the *XDP \
         pass* row is the cost generic XDP would add in front of it. Each packet is run once \
         first and its verdict, output and counted reason checked. {} trials per row; *repeat* rows are one run of {} repeats per trial, *single \
         runs* rows {} single runs per trial (see below).\n",
        ipmp::config::DEFAULT_BUCKETS,
        plan.trials,
        plan.repeat,
        plan.singles
    );
    md.push_str(&rows.md);
    let _ = writeln!(md, "\n![per-packet cost](prog-cost.svg)\n");
    let bias = rows.single_bias.map_or_else(String::new, |b| {
        format!(" (here it reads {b:.1} ns higher)")
    });
    let _ = writeln!(
        md,
        "*Why single runs for the responders:* with `repeat` > 1 the kernel runs XDP again on the \
         buffer the previous run rewrote, so after the first run an ARP request has become a \
         reply (an NS an NA, an echo request an echo reply) and the remaining runs would time \
         the reply path. Instead each trial times many `repeat = 1` runs of the program and of \
         the no-op, alternately, takes the interquartile mean of each, and adds the difference \
         to the no-op's cost at large repeat (this removes the two clock reads a single run \
         includes). The *method check* row times the XDP pass packet, which stays valid, that \
         way too: a single run pays for caches and branch predictors that the previous repeat \
         would have warmed{bias}, so the responder figures are upper bounds by about that \
         much. The TC egress program writes the same two MACs on every run of a packet (or \
         none, when `bpf_redirect_neigh` fills them in later), so its repeats are exact \
         (checked: a second run leaves the first run's output as it is); the TC ingress \
         hand-over rewrites the destination MAC of a frame it then no longer matches and is \
         timed in single runs.\n\n*Why a flow of its own per TC trial:* each TC egress trial \
         times the case's flow with its source port advanced by the trial's number, remembered \
         by one untimed run first, so each trial's path is a map element of its own, as real \
         flows' are; a repeated run keeps one buffer and one element, so one flow would keep \
         one placement relative to its frame for all its repeats. That mattered while the MAC \
         write was `bpf_skb_store_bytes`: its memcpy (`rep movsb` on this CPU) took ~90 ns \
         more when the frame lay up to 64 bytes after the element modulo 4 KiB (4K aliasing; \
         `__pi_memcpy` 26 % of a profile's samples against 2 %), a whole row fast or slow. The \
         program now writes the MACs into the frame itself.\n"
    );

    let (scale_md, scale_goals) = scale_report(&scale, &scale_plan);
    md.push_str(&scale_md);
    let _ = writeln!(md, "*The scale runs took {scale_secs:.0} s.*\n");

    let (live_md, live_goals) = super::live_cost::report(&live, opts);
    md.push_str(&live_md);

    // Why a TC goal is missed, in figures: against the reference program, which looks the
    // next hop up on every packet where ipmp remembers it.
    let tc_why = {
        let n = rows.tc_medians.len().max(1) as f64;
        let (p, f, z) = rows.tc_medians.iter().fold((0.0, 0.0, 0.0), |a, m| {
            (a.0 + m.0 / n, a.1 + m.1 / n, a.2 + m.2 / n)
        });
        format!(
            "ipmp's {p:.0} ns (mean of the TC rows' medians) against {f:.0} ns for parsing, \
             bpf_fib_lookup and bpf_redirect_neigh alone ({:.1}× the no-op's {z:.0} ns): with the \
             flow's whole path remembered, what is left is the parse (the IP header and ports \
             read a word at a time), one hash lookup in the family's LRU map (IPMP_ROUTES4: \
             20-byte key, IPMP_ROUTES6: 48; jhash over the key and the compare), the two array \
             reads of the generation and neighbour epoch, the MAC write (three word stores into \
             the frame), the control-block mark, bpf_redirect and the counter; an unconfirmed \
             neighbour adds its lookup (IPMP_NEIGHS) and bpf_redirect_neigh",
            f / z.max(0.1),
        )
    };
    let xdp_why = format!(
        "the no-op does nothing at all ({}); unicast data that is neither ARP nor ICMP passes \
         on its headers alone, with no lookup; a responder looks up its member and the \
         address (a hash lookup), copies the headers to the stack a word at a time, builds \
         the answer there (an NA as words, with its checksum; the others' fields byte by \
         byte), writes it back a word at a time, and counts it{}",
        "a few ns of harness",
        rows.single_bias.map_or_else(String::new, |b| format!(
            "; single-run figures read ~{b:.0} ns high"
        ))
    );
    let goal = |budget: Budget| -> GoalRow {
        let max = budget.max_ratio();
        let goal = format!("{} ≤ {max:.0}× the no-op per packet", budget.what());
        match &rows.worst[budget as usize] {
            Some((ratio, name)) => GoalRow {
                goal,
                figure: format!("worst median {ratio:.2}× ({name})"),
                met: Some(*ratio <= max),
                why: match (*ratio <= max, budget) {
                    (true, _) => String::new(),
                    (false, Budget::TcV4 | Budget::TcV6) => tc_why.clone(),
                    (false, _) => xdp_why.clone(),
                },
            },
            None => GoalRow {
                goal,
                figure: "—".into(),
                met: None,
                why: "no figure".into(),
            },
        }
    };
    Ok(Section {
        title: "1. Per-packet cost of the eBPF programs".into(),
        body_md: md,
        plots: vec![Plot {
            file: "prog-cost.svg".into(),
            svg: svg::bars(
                "Per-packet cost, BPF_PROG_TEST_RUN (median)",
                "ns per packet",
                &rows.bars,
            ),
        }],
        goals: Budget::ALL
            .into_iter()
            .map(goal)
            .chain(scale_goals)
            .chain(live_goals)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interquartile_mean_ignores_outliers() {
        let mut v = vec![10.0, 11.0, 10.0, 11.0, 10.0, 11.0, 10.0, 900.0];
        assert!((interquartile_mean(&mut v) - 10.5).abs() < 1e-9);
        assert_eq!(interquartile_mean(&mut [3.0]), 3.0);
        assert!(interquartile_mean(&mut []).is_nan());
    }

    #[test]
    fn cases_name_their_paths() {
        let c = cases();
        assert_eq!(c.iter().filter(|c| c.kind == Kind::Tc).count(), 5);
        assert_eq!(c.iter().filter(|c| c.kind == Kind::TcIngress).count(), 2);
        // The rewriting cases are the responders and the hand-over to the IPMP interface;
        // pass stays valid.
        for case in &c {
            let rewrites = case.verdict == XDP_TX
                || (case.kind == Kind::TcIngress && case.verdict == TC_ACT_REDIRECT);
            assert_eq!(case.method == Method::Single, rewrites, "{}", case.name);
        }
    }
}
