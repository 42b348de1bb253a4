//! The per-packet cost section's cases (packets, programs, expected verdicts) and how one is
//! checked, then timed against the no-op in BPF_PROG_TEST_RUN.

use anyhow::{anyhow, ensure};
use aya::{
    Ebpf,
    programs::{SchedClassifier, Xdp},
};
use ipmp_common::{
    PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP_MEMBER, Reason,
    packet::{ARPOP_REQUEST, ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

use crate::bench::testbed::{
    DATA4, DATA6, FAR4, FAR6, IPMP0_MAC, ONLINK4, ONLINK6, PEER_MAC, PEER4, PEER6, Testbed,
    UNCONFIRMED4, in_fresh_netns,
};
use crate::testrun::ProgKind;
use crate::{
    lab::member_mac,
    packets::{
        BROADCAST, Ipv4, Ipv6, Pseudo, arp_frame, icmp, neighbour_solicitation, pad60, tcp, udp,
    },
    prog_lab::{PROG_TC_FIBREF, PROG_TC_NOOP, PROG_XDP_NOOP},
};

pub(super) const TC_ACT_OK: u32 = 0;
pub(super) const TC_ACT_REDIRECT: u32 = 7;
pub(super) const XDP_PASS: u32 = 2;
pub(super) const XDP_TX: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `ipmp_tc_egress` on the IPMP interface.
    Tc,
    /// `ipmp_tc_ingress` on a member (no XDP in front: answers and delivery).
    TcIngress,
    Xdp,
}

/// How a case is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    /// The packet stays valid: one run with a large repeat count.
    Repeat,
    /// The program rewrites the packet: single runs, harness overhead removed via the no-op.
    Single,
}

#[derive(Clone)]
pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) method: Method,
    pub(super) input: Vec<u8>,
    pub(super) verdict: u32,
    /// The counter the run adds one to; `None`: the program counts nothing (XDP passes what
    /// it does not answer on to TC ingress, which counts it).
    pub(super) reason: Option<Reason>,
    /// Index of the member in the test bed: where TC ingress and XDP get the packet, and
    /// for TC egress the member whose counter must count it (`None`: any member).
    pub(super) member: Option<usize>,
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
pub(super) const SPORT: u16 = 40001;
pub(super) const DPORT: u16 = 443;

/// Frames the stack hands to the NOARP IPMP interface carry its own MAC as destination.
pub(super) fn tc4(dst: std::net::Ipv4Addr, proto: u8) -> Vec<u8> {
    tc4_from(SPORT, dst, proto)
}

pub(super) fn tc4_from(sport: u16, dst: std::net::Ipv4Addr, proto: u8) -> Vec<u8> {
    let l4 = segment(Pseudo::V4(DATA4, dst), sport, proto);
    Ipv4::new(DATA4, dst, proto).frame(IPMP0_MAC, IPMP0_MAC, &l4)
}

pub(super) fn tc6(dst: std::net::Ipv6Addr, proto: u8) -> Vec<u8> {
    tc6_from(SPORT, dst, proto)
}

pub(super) fn tc6_from(sport: u16, dst: std::net::Ipv6Addr, proto: u8) -> Vec<u8> {
    let l4 = segment(Pseudo::V6(DATA6, dst), sport, proto);
    Ipv6::new(DATA6, dst, proto).frame(IPMP0_MAC, IPMP0_MAC, &l4)
}

/// The TCP segment or UDP datagram (64 bytes of payload) of a TC packet.
fn segment(pseudo: Pseudo, sport: u16, proto: u8) -> Vec<u8> {
    if proto == IPPROTO_TCP {
        tcp(pseudo, sport, DPORT, &[0x55; 64])
    } else {
        udp(pseudo, sport, DPORT, &[0x55; 64])
    }
}

/// An address of the lab's subnet that is none of the host's.
pub(super) const OTHER4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 77);

/// A UDP datagram from the peer to `dst`, sent to MAC `to`.
pub(super) fn udp_in(to: [u8; 6], dst: std::net::Ipv4Addr) -> Vec<u8> {
    Ipv4::new(PEER4, dst, IPPROTO_UDP).frame(
        to,
        PEER_MAC,
        &udp(Pseudo::V4(PEER4, dst), 5353, 9000, &[0x55; 64]),
    )
}

/// A unicast packet the TC egress program sends through `member` (`None`: whichever member
/// its bucket names).
pub(super) fn tc_case(name: &'static str, input: Vec<u8>, member: Option<usize>) -> Case {
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

pub(super) fn cases() -> Vec<Case> {
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

pub(super) struct RunOut {
    pub(super) verdict: u32,
    pub(super) output: Vec<u8>,
    /// Average ns per run as the kernel measured it.
    pub(super) ns: f64,
}

/// One BPF_PROG_TEST_RUN of `name` on `ifindex` (the skb's device or XDP's ingress device).
pub(super) fn test_run(
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

pub(super) fn load(ebpf: &mut Ebpf, name: &str, kind: Kind) -> anyhow::Result<()> {
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
pub(super) fn interquartile_mean(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let (lo, hi) = (v.len() / 4, v.len() - v.len() / 4);
    let mid = &v[lo..hi.max(lo + 1)];
    mid.iter().sum::<f64>() / mid.len() as f64
}

/// A peer's ARP request for the data address, which `member`'s XDP program answers.
pub(super) fn arp_case(name: &'static str, member: usize) -> Case {
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
pub(super) struct CaseResult {
    pub(super) prog: Vec<f64>,
    pub(super) noop: Vec<f64>,
    pub(super) ratio: Vec<f64>,
    /// TC only: the helpers-only reference program.
    pub(super) fibref: Vec<f64>,
}

pub(super) struct Plan {
    pub(super) trials: usize,
    pub(super) repeat: u32,
    pub(super) singles: usize,
}

/// The device a case's packet is run on.
pub(super) fn device(bed: &Testbed, c: &Case) -> u32 {
    match c.kind {
        Kind::Tc => bed.ipmp0,
        Kind::TcIngress | Kind::Xdp => bed.members[c.member.unwrap_or(0)],
    }
}

/// The path check: one run, its verdict, output and counted reason (and for TC the
/// reference program's).
pub(super) fn check_case(bed: &mut Testbed, c: &Case, method: Method) -> anyhow::Result<()> {
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
pub(super) fn other_flow(input: &[u8], n: u16) -> Vec<u8> {
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
pub(super) fn time_case(
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

pub(super) fn measure_case(
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
pub(super) fn load_all(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    load(ebpf, PROG_TC_EGRESS, Kind::Tc)?;
    load(ebpf, PROG_TC_NOOP, Kind::Tc)?;
    load(ebpf, PROG_TC_FIBREF, Kind::Tc)?;
    load(ebpf, PROG_TC_INGRESS, Kind::TcIngress)?;
    load(ebpf, PROG_XDP_MEMBER, Kind::Xdp)?;
    load(ebpf, PROG_XDP_NOOP, Kind::Xdp)
}

/// Test runs of every case; `(name, method label, result)` in table order.
pub(super) fn measure_test_runs(
    plan: &Plan,
) -> anyhow::Result<Vec<(String, &'static str, CaseResult)>> {
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
