//! The prober and the group state machine together, in simulated time over a simulated
//! network: targets answer after a configurable RTT unless dead; a silently cut member's
//! frames are dropped both ways (carrier stays up); hosts answer multicast echo.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{
    payload::{self, ECHO_LEN, Echo},
    *,
};
use crate::{
    config::Prefix,
    group::{
        Carrier, Event, FailCause, Group, GroupSpec, GroupState, MemberId, MemberSpec, Notice,
    },
    mpathd::targets::{TargetSource, TargetStatus},
};

const COOKIE: u64 = 0x0123_4567_89ab_cdef;
const FDT: Duration = Duration::from_millis(700);
const INTERVAL: Duration = Duration::from_millis(100);
const RTT: Duration = Duration::from_millis(1);

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
}

fn ll6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Test address of member `m`: 198.51.100.(10 + m)/24.
fn test_addr(m: usize) -> Prefix {
    Prefix::new(v4(10 + m as u8), 24)
}

const ROUTER: u8 = 1;

#[derive(Clone, Debug)]
struct InFlight {
    at: Instant,
    member: MemberId,
    family: Family,
    from: IpAddr,
    /// `None`: the answer to a link-layer probe (ARP reply / neighbour advertisement).
    icmp: Option<Vec<u8>>,
}

#[derive(Default)]
struct Net {
    /// Members whose frames are dropped both ways.
    cut: HashSet<MemberId>,
    /// Targets that do not answer.
    dead: HashSet<IpAddr>,
    /// RTT per target (default [`RTT`]).
    rtt: HashMap<IpAddr, Duration>,
    /// Hosts that answer multicast echo.
    hosts: Vec<IpAddr>,
}

/// A target's hardware address in the simulation.
const TARGET_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xee];

/// The ARP reply / NA a target sends to a link-layer probe of `member`, as the ring reports it.
fn neigh_reply(member: MemberId, family: Family, from: IpAddr, rx: Instant) -> NeighReply {
    NeighReply {
        member,
        family,
        from,
        local: match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => "fe80::10".parse().unwrap(),
        },
        hardware: TARGET_MAC,
        rx,
    }
}

/// The fields of an echo request, as a responder reads them.
fn decode_request(b: &[u8; ECHO_LEN]) -> Echo {
    let body = ipmp_common::ProbePayload::from_bytes(&b[8..]).expect("our own payload");
    Echo {
        id: u16::from_be_bytes([b[4], b[5]]),
        seq: u16::from_be_bytes([b[6], b[7]]),
        timestamp_ns: body.send_ns,
        kind: ProbeKind::from_code(body.kind).expect("our own message type"),
        cookie: body.cookie,
    }
}

struct Sim {
    t0: Instant,
    now: Instant,
    group: Group,
    prober: Prober,
    rng: StdRng,
    net: Net,
    wire: Vec<InFlight>,
    records: Vec<(Instant, ProbeRecord)>,
    notices: Vec<(Instant, ProbeNotice)>,
    group_notices: Vec<(Instant, Notice)>,
    sends: Vec<ProbeRequest>,
    /// Every reply's fate.
    outcomes: Vec<(Instant, ReplyOutcome)>,
}

struct Setup {
    members: usize,
    standby: Vec<bool>,
    fdt: Duration,
    quiet: Duration,
    targets: Vec<IpAddr>,
    probes: Vec<ProbePlan>,
    seed: u64,
}

impl Setup {
    /// `n` members probing IPv4 from their test addresses, one configured target (the
    /// router), no quiet period.
    fn new(n: usize) -> Self {
        Self {
            members: n,
            standby: vec![false; n],
            fdt: FDT,
            quiet: Duration::ZERO,
            targets: vec![v4(ROUTER)],
            probes: (0..n)
                .map(|m| ProbePlan {
                    icmp_id: payload::icmp_id(0x42, m as u32),
                    v4: FamilyProbe::TestAddress(test_addr(m)),
                    v6: FamilyProbe::Off,
                })
                .collect(),
            seed: 7,
        }
    }

    fn build(self) -> Sim {
        let t0 = Instant::now();
        let spec = GroupSpec {
            name: "ipmp0".into(),
            failback: true,
            members: (0..self.members)
                .map(|m| MemberSpec {
                    name: format!("eth{m}"),
                    standby: self.standby[m],
                })
                .collect(),
            n_addresses: 4,
            n_buckets: 64,
            flap_max_ups: 2,
            flap_window: secs(60),
        };
        let group = Group::new(spec, &vec![Carrier::Up; self.members], t0);
        let mut rng = StdRng::seed_from_u64(self.seed);
        let prober = Prober::new(
            ProbeSpec {
                fdt: self.fdt,
                quiet_period: self.quiet,
                cookie: COOKIE,
                targets: self.targets,
                members: self.probes,
            },
            &group,
            t0,
            &mut rng,
        )
        .expect("valid spec");
        Sim {
            t0,
            now: t0,
            group,
            prober,
            rng,
            net: Net::default(),
            wire: Vec::new(),
            records: Vec::new(),
            notices: Vec::new(),
            group_notices: Vec::new(),
            sends: Vec::new(),
            outcomes: Vec::new(),
        }
    }
}

impl Sim {
    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    fn rtt(&self, target: IpAddr) -> Duration {
        self.net.rtt.get(&target).copied().unwrap_or(RTT)
    }

    fn apply(&mut self, out: ProbeOutput) {
        let now = self.now;
        for r in out.records {
            self.records.push((now, r));
        }
        let group_failure = out
            .notices
            .iter()
            .any(|n| matches!(n, ProbeNotice::GroupFailure { .. }));
        for n in out.notices {
            self.notices.push((now, n));
        }
        if let Some(ev) = out.event {
            self.check_verdicts(ev, group_failure);
            let notices = self
                .group
                .handle(ev, now)
                .expect("the prober's verdicts apply");
            self.group_notices
                .extend(notices.into_iter().map(|n| (now, n)));
        }
        for s in out.sends {
            self.transmit(s);
            self.sends.push(s);
        }
    }

    /// A verdict from a tick or a reply must be backed by the history.
    fn check_verdicts(&self, ev: Event, group_failure: bool) {
        let Event::Probe { failed, repaired } = ev else {
            panic!("the prober only sends probe verdicts, got {ev:?}");
        };
        for m in failed.iter() {
            if group_failure {
                continue;
            }
            let runs: Vec<u32> = Family::ALL
                .iter()
                .filter_map(|f| self.prober.history(m, *f))
                .filter(|h| !h.is_empty())
                .map(|h| h.fail_info().nfail)
                .collect();
            // Link-down failures come through link(), which has no history left.
            assert!(
                runs.is_empty() || runs.iter().all(|&n| n >= NUM_PROBE_FAILS),
                "member {m} failed with loss runs {runs:?}"
            );
        }
        for m in repaired.iter() {
            let ok = Family::ALL
                .iter()
                .filter_map(|f| self.prober.history(m, *f))
                .any(|h| {
                    let s = h.success_info();
                    s.nsucc >= NUM_PROBE_REPAIRS || s.nsucc_target >= NUM_PROBE_REPAIRS
                });
            assert!(ok, "member {m} repaired without 10 acks in a row");
        }
    }

    fn transmit(&mut self, s: ProbeRequest) {
        if self.net.cut.contains(&s.member) {
            return;
        }
        let Some(icmp) = s.icmp else {
            if !self.net.dead.contains(&s.dst) {
                self.wire.push(InFlight {
                    at: s.start + self.rtt(s.dst),
                    member: s.member,
                    family: s.family,
                    from: s.dst,
                    icmp: None,
                });
            }
            return;
        };
        let req = decode_request(&icmp);
        let responders: Vec<IpAddr> = match s.kind {
            ProbeKind::Unicast | ProbeKind::RttOnly => vec![s.dst],
            ProbeKind::Discovery => self
                .net
                .hosts
                .iter()
                .copied()
                .filter(|h| Family::of(*h) == s.family)
                .collect(),
        };
        for from in responders {
            if self.net.dead.contains(&from) {
                continue;
            }
            self.wire.push(InFlight {
                at: s.start + self.rtt(from),
                member: s.member,
                family: s.family,
                from,
                icmp: Some(payload::build_reply(s.family, &req).to_vec()),
            });
        }
    }

    fn next_event(&self) -> Option<Instant> {
        [
            self.prober.next_deadline(),
            self.group.next_deadline(),
            self.wire.iter().map(|w| w.at).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn step(&mut self) {
        let Some(next) = self.next_event() else {
            return;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.at <= now);
        self.wire = rest;
        let mut due = due;
        due.sort_by_key(|w| w.at);
        for w in due {
            if self.net.cut.contains(&w.member) {
                continue;
            }
            let (outcome, out) = match &w.icmp {
                Some(icmp) => self.prober.reply(
                    Reply {
                        member: w.member,
                        family: w.family,
                        from: w.from,
                        icmp,
                        rx: w.at,
                    },
                    now,
                    &self.group,
                ),
                None => self.prober.link_layer_reply(
                    neigh_reply(w.member, w.family, w.from, w.at),
                    now,
                    &self.group,
                ),
            }
            .expect("known member");
            self.outcomes.push((now, outcome));
            self.apply(out);
        }
        if self.prober.next_deadline().is_some_and(|d| d <= now) {
            let out = self
                .prober
                .tick(now, &self.group, &mut self.rng)
                .expect("same group");
            self.apply(out);
        }
        if self.group.next_deadline().is_some_and(|d| d <= now) {
            let notices = self.group.handle(Event::Tick, now).expect("tick");
            self.group_notices
                .extend(notices.into_iter().map(|n| (now, n)));
        }
        for m in 0..self.group.spec().members.len() {
            for f in Family::ALL {
                if let Some(h) = self.prober.history(m, f) {
                    assert!(
                        h.unacked() <= 2,
                        "member {m}: {} probes in flight",
                        h.unacked()
                    );
                }
            }
        }
    }

    fn run_until(&mut self, d: Duration) {
        let end = self.at(d);
        while self.next_event().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Runs until `pred` holds (checked after every step) or `limit`; returns when it held.
    fn run_until_pred(&mut self, limit: Duration, pred: impl Fn(&Sim) -> bool) -> Option<Instant> {
        let end = self.at(limit);
        while self.next_event().is_some_and(|t| t <= end) {
            self.step();
            if pred(self) {
                return Some(self.now);
            }
        }
        None
    }

    fn link(&mut self, m: MemberId, up: bool) {
        let now = self.now;
        let n = self
            .group
            .handle(Event::Link { member: m, up }, now)
            .unwrap();
        self.group_notices.extend(n.into_iter().map(|n| (now, n)));
        let out = self
            .prober
            .link(m, up, now, &self.group, &mut self.rng)
            .unwrap();
        self.apply(out);
    }

    fn inject(&mut self, m: MemberId, from: IpAddr, icmp: &[u8]) -> ReplyOutcome {
        let now = self.now;
        let (outcome, out) = self
            .prober
            .reply(
                Reply {
                    member: m,
                    family: Family::of(from),
                    from,
                    icmp,
                    rx: now,
                },
                now,
                &self.group,
            )
            .unwrap();
        self.apply(out);
        outcome
    }

    fn failed(&self, m: MemberId) -> bool {
        self.group.member(m).failed
    }

    fn member_records(&self, m: MemberId) -> Vec<(Instant, ProbeRecord)> {
        self.records
            .iter()
            .filter(|(_, r)| r.member == m)
            .copied()
            .collect()
    }

    fn notices_of(&self, pred: impl Fn(&ProbeNotice) -> bool) -> Vec<(Instant, ProbeNotice)> {
        self.notices
            .iter()
            .filter(|(_, n)| pred(n))
            .cloned()
            .collect()
    }

    fn unicast_sends(&self, m: MemberId) -> Vec<ProbeRequest> {
        self.sends
            .iter()
            .filter(|s| s.member == m && s.kind == ProbeKind::Unicast)
            .copied()
            .collect()
    }
}

/// Completed probes of a member up to `until`, newest last, as acked (true) / lost (false).
/// A probe lost and then acked late counts as acked (its last record wins).
fn outcomes_until(sim: &Sim, m: MemberId, until: Instant) -> Vec<bool> {
    let mut by_seq: Vec<(u16, bool)> = Vec::new();
    for (t, r) in sim.member_records(m) {
        if t > until {
            break;
        }
        let acked = !r.is_lost();
        match by_seq.iter_mut().find(|(s, _)| *s == r.seq) {
            Some(e) => e.1 = acked,
            None => by_seq.push((r.seq, acked)),
        }
    }
    by_seq.into_iter().map(|(_, a)| a).collect()
}

/// Like [`outcomes_until`], only probes completed at or after `from`.
fn outcomes_between(sim: &Sim, m: MemberId, from: Instant, until: Instant) -> Vec<bool> {
    let mut by_seq: Vec<(u16, bool)> = Vec::new();
    for (t, r) in sim.member_records(m) {
        if t < from || t > until {
            continue;
        }
        match by_seq.iter_mut().find(|(s, _)| *s == r.seq) {
            Some(e) => e.1 = !r.is_lost(),
            None => by_seq.push((r.seq, !r.is_lost())),
        }
    }
    by_seq.into_iter().map(|(_, a)| a).collect()
}

fn trailing(v: &[bool], value: bool) -> usize {
    v.iter().rev().take_while(|&&a| a == value).count()
}

// ---- intervals and timing ------------------------------------------------------------

#[test]
fn probe_interval_is_fdt_over_seven_and_probes_are_jittered() {
    let mut sim = Setup::new(1).build();
    assert_eq!(sim.prober.fdt().interval(), INTERVAL);
    assert_eq!(sim.prober.fdt().current(), FDT);
    sim.run_until(secs(10));
    let sends = sim.unicast_sends(0);
    // About one probe per interval.
    assert!(
        (98..=101).contains(&sends.len()),
        "{} probes in 10 s",
        sends.len()
    );
    let first = sends[0].start;
    assert!(first <= sim.t0 + INTERVAL);
    for (k, s) in sends.iter().enumerate().skip(1) {
        // Probe k goes out in [0.5, 1] × interval after base first + (k-1) × interval.
        let base = first + INTERVAL * (k as u32 - 1);
        assert!(
            s.start >= base + INTERVAL / 2 && s.start <= base + INTERVAL,
            "probe {k} at {:?} outside its window after {:?}",
            s.start - first,
            base - first
        );
    }
    // Sequence numbers count from 1.
    assert_eq!(sends[0].seq, 1);
    assert_eq!(sends[5].seq, 6);
    assert!(!sim.failed(0));
}

#[test]
fn lost_after_one_interval_while_crtt_is_unknown_then_after_crtt() {
    let mut sim = Setup::new(1).build();
    sim.net.dead.insert(v4(ROUTER));
    sim.run_until(secs(1));
    let (_, first_lost) = sim.member_records(0)[0];
    assert_eq!(
        first_lost.outcome,
        ProbeOutcome::Lost {
            at: first_lost.start + INTERVAL
        }
    );
    // With an estimate, the timeout is CRTT: 1 ms replies give a CRTT of 3 ms at first.
    let mut sim = Setup::new(1).build();
    sim.run_until_pred(secs(5), |s| s.member_records(0).len() == 1);
    let crtt = sim
        .prober
        .targets(0, Family::V4)
        .unwrap()
        .get(v4(ROUTER))
        .unwrap()
        .rtt
        .crtt()
        .unwrap();
    assert_eq!(crtt, RTT * 3);
    sim.net.dead.insert(v4(ROUTER));
    sim.run_until_pred(secs(5), |s| {
        s.member_records(0).iter().any(|(_, r)| r.is_lost())
    });
    let lost = sim
        .member_records(0)
        .into_iter()
        .find(|(_, r)| r.is_lost())
        .unwrap()
        .1;
    assert_eq!(
        lost.outcome,
        ProbeOutcome::Lost {
            at: lost.start + crtt
        }
    );
}

#[test]
fn rtt_estimate_matches_hand_computed_values() {
    let mut sim = Setup::new(1).build();
    // Replies after exactly 1 ms, then 2 ms, then 500 µs.
    let rtts = [ms(1), ms(2), Duration::from_micros(500)];
    for (k, rtt) in rtts.iter().enumerate() {
        sim.net.rtt.insert(v4(ROUTER), *rtt);
        sim.run_until_pred(secs(5), |s| s.member_records(0).len() == k + 1);
    }
    let est = &sim
        .prober
        .targets(0, Family::V4)
        .unwrap()
        .get(v4(ROUTER))
        .unwrap()
        .rtt;
    // 1 ms: sa 8 ms, sv 2 ms. 2 ms: err 1 ms, sa 9 ms, sv 2.5 ms. 0.5 ms: err -0.625 ms,
    // sa 8.375 ms, sv 2.5 ms.
    assert_eq!(est.scaled(), Some((8_375_000, 2_500_000)));
    assert_eq!(est.avg(), Some(Duration::from_nanos(1_046_875)));
    assert_eq!(est.dev(), Some(Duration::from_nanos(625_000)));
    assert_eq!(
        est.crtt(),
        Some(Duration::from_nanos(1_046_875 + 2_500_000))
    );
    // ipmpstat -p shows them with every completed probe.
    let last = sim.member_records(0).last().unwrap().1;
    assert_eq!(last.rtt_avg, est.avg());
    assert_eq!(last.rtt_dev, est.dev());
    assert_eq!(last.netrtt(), Some(Duration::from_micros(500)));
    assert_eq!(last.rtt(), Some(Duration::from_micros(500)));
}

// ---- 5 losses fail, 10 acks repair ------------------------------------------------------

#[test]
fn silent_cut_fails_after_five_losses_and_ten_acks_repair() {
    let mut sim = Setup::new(2).build();
    sim.run_until(secs(3));
    assert!(!sim.failed(0) && !sim.failed(1));
    let cut = sim.now;
    sim.net.cut.insert(0);
    let failed_at = sim
        .run_until_pred(secs(10), |s| s.failed(0))
        .expect("m0 fails");
    // Within the generous bound of two FDTs.
    assert!(failed_at - cut <= FDT * 2, "took {:?}", failed_at - cut);
    let history = outcomes_until(&sim, 0, failed_at);
    assert_eq!(trailing(&history, false), NUM_PROBE_FAILS as usize);
    assert_eq!(sim.group.fail_cause(0), Some(FailCause::Probe));
    assert!(
        sim.notices
            .iter()
            .any(|(_, n)| *n == ProbeNotice::InterfaceFailure { member: 0 })
    );
    assert!(!sim.failed(1));
    assert_eq!(sim.group.active_members(), vec![1]);
    assert_eq!(sim.prober.probe_state(0, &sim.group), ProbeHealth::Failed);
    // Its RTT estimates were reset, and a failed member does not learn new ones.
    let crtt = |sim: &Sim| {
        sim.prober
            .targets(0, Family::V4)
            .unwrap()
            .get(v4(ROUTER))
            .unwrap()
            .rtt
            .crtt()
    };
    assert_eq!(crtt(&sim), None);
    // Stays failed while cut.
    sim.run_until(secs(8));
    assert!(sim.failed(0));

    sim.net.cut.remove(&0);
    let restored = sim.now;
    let repaired_at = sim
        .run_until_pred(secs(20), |s| !s.failed(0))
        .expect("m0 is repaired");
    let history = outcomes_until(&sim, 0, repaired_at);
    assert_eq!(trailing(&history, true), NUM_PROBE_REPAIRS as usize);
    // 10 probes take about 10 intervals.
    assert!(
        repaired_at - restored <= INTERVAL * 12,
        "took {:?}",
        repaired_at - restored
    );
    assert!(
        sim.notices
            .iter()
            .any(|(_, n)| *n == ProbeNotice::ProbeRepair { member: 0 })
    );
    assert_eq!(sim.group.active_members(), vec![0, 1]);
    assert_eq!(sim.prober.probe_state(0, &sim.group), ProbeHealth::Ok);
    // Acks while failed taught nothing; the next one after the repair does.
    assert_eq!(crtt(&sim), None);
    let n = sim.member_records(0).len();
    sim.run_until_pred(secs(25), |s| s.member_records(0).len() > n);
    assert_eq!(crtt(&sim), Some(RTT * 3));
}

#[test]
fn only_the_newest_ack_of_a_target_feeds_its_estimate() {
    let mut sim = Setup::new(1).build();
    sim.net.dead.insert(v4(ROUTER));
    sim.run_until_pred(secs(2), |s| s.unicast_sends(0).len() == 2);
    let sends = sim.unicast_sends(0);
    let reply = |p: &ProbeRequest| {
        payload::build_reply(Family::V4, &decode_request(&p.icmp.unwrap())).to_vec()
    };
    // The newer probe's reply first (2 ms after it was sent) ...
    sim.now = sends[1].start + ms(2);
    assert!(matches!(
        sim.inject(0, v4(ROUTER), &reply(&sends[1])),
        ReplyOutcome::Acked { .. }
    ));
    let est = |sim: &Sim| {
        sim.prober
            .targets(0, Family::V4)
            .unwrap()
            .get(v4(ROUTER))
            .unwrap()
            .rtt
            .clone()
    };
    let after_newer = est(&sim);
    assert_eq!(after_newer.avg(), Some(ms(2)));
    // ... then the older one's: acked, but out of sequence for the estimator.
    assert!(matches!(
        sim.inject(0, v4(ROUTER), &reply(&sends[0])),
        ReplyOutcome::Acked { seq, .. } if seq == sends[0].seq
    ));
    assert_eq!(est(&sim), after_newer);
}

#[test]
fn four_losses_do_not_fail() {
    let mut sim = Setup::new(2).build();
    sim.run_until(secs(3));
    sim.net.cut.insert(0);
    // Wait for the fourth loss, then restore before the fifth probe times out.
    sim.run_until_pred(secs(10), |s| {
        trailing(&outcomes_until(s, 0, s.now), false) == NUM_PROBE_FAILS as usize - 1
    })
    .expect("four losses");
    sim.net.cut.remove(&0);
    sim.run_until(secs(13));
    assert!(!sim.failed(0));
    assert!(
        sim.group_notices
            .iter()
            .all(|(_, n)| !matches!(n, Notice::MemberFailed { .. }))
    );
}

// ---- quiet period ---------------------------------------------------------------------------

#[test]
fn quiet_period_ignores_losses_until_it_ends() {
    let mut setup = Setup::new(2);
    setup.quiet = secs(5);
    let mut sim = setup.build();
    // m0 cannot reach anything from the start (a port still blocked by spanning tree).
    sim.net.cut.insert(0);
    sim.run_until(ms(4900));
    assert!(
        outcomes_until(&sim, 0, sim.now)
            .iter()
            .filter(|a| !**a)
            .count()
            > 20
    );
    assert!(!sim.failed(0), "failed during the quiet period");
    let failed_at = sim
        .run_until_pred(secs(7), |s| s.failed(0))
        .expect("fails once the quiet period ends");
    assert!(failed_at >= sim.at(secs(5)) && failed_at <= sim.at(secs(5)) + INTERVAL);
    // m1 answered at once, so its quiet period ended with its first ack.
    let q1 = sim.prober.quiet_until(1, Family::V4).unwrap();
    assert!(q1 < sim.at(secs(1)));
}

#[test]
fn first_ack_ends_the_quiet_period() {
    let mut setup = Setup::new(2);
    setup.quiet = secs(40);
    let mut sim = setup.build();
    sim.run_until(secs(1));
    assert!(sim.prober.quiet_until(0, Family::V4).unwrap() < sim.at(secs(1)));
    sim.net.cut.insert(0);
    let failed_at = sim
        .run_until_pred(secs(10), |s| s.failed(0))
        .expect("fails");
    assert!(failed_at < sim.at(secs(3)));
}

#[test]
fn probe_state_is_unknown_until_the_first_answer_after_each_start() {
    let mut setup = Setup::new(2);
    setup.quiet = secs(40);
    let mut sim = setup.build();
    // Targets known, probes going out, nothing answered yet: in.mpathd says unknown.
    sim.net.cut.insert(0);
    sim.run_until(secs(1));
    assert!(!sim.unicast_sends(0).is_empty());
    assert_eq!(sim.prober.probe_state(0, &sim.group), ProbeHealth::Unknown);
    assert_eq!(sim.prober.probe_state(1, &sim.group), ProbeHealth::Ok);
    sim.net.cut.remove(&0);
    sim.run_until_pred(secs(3), |s| {
        s.prober.probe_state(0, &s.group) == ProbeHealth::Ok
    })
    .expect("the first answer makes it ok");
    // Probing starts afresh after an offline/online: unknown again until answered. (After a
    // link-down the member is failed instead, until probes repair it.)
    let now = sim.now;
    sim.group.handle(Event::Offline { member: 0 }, now).unwrap();
    sim.prober.offline(0, &sim.group).unwrap();
    sim.group.handle(Event::Online { member: 0 }, now).unwrap();
    sim.prober.online(0, now, &sim.group, &mut sim.rng).unwrap();
    assert_eq!(sim.prober.probe_state(0, &sim.group), ProbeHealth::Unknown);
    sim.run_until_pred(secs(6), |s| {
        s.prober.probe_state(0, &s.group) == ProbeHealth::Ok
    })
    .expect("answered again");
}

#[test]
fn online_restarts_the_quiet_period_and_offline_stops_probing() {
    let mut setup = Setup::new(2);
    setup.quiet = secs(5);
    let mut sim = setup.build();
    sim.run_until(secs(1));
    let now = sim.now;
    sim.group.handle(Event::Offline { member: 0 }, now).unwrap();
    sim.prober.offline(0, &sim.group).unwrap();
    let before = sim.unicast_sends(0).len();
    sim.run_until(secs(3));
    assert_eq!(sim.unicast_sends(0).len(), before, "offline member probed");
    assert_eq!(sim.prober.history(0, Family::V4).unwrap().len(), 0);
    sim.net.cut.insert(0);
    let now = sim.now;
    sim.group.handle(Event::Online { member: 0 }, now).unwrap();
    sim.prober.online(0, now, &sim.group, &mut sim.rng).unwrap();
    assert_eq!(sim.prober.quiet_until(0, Family::V4), Some(now + secs(5)));
    sim.run_until(secs(7));
    assert!(sim.unicast_sends(0).len() > before);
    assert!(!sim.failed(0), "failed inside the new quiet period");
    sim.run_until(secs(9));
    assert!(sim.failed(0));
}

// ---- interface vs group failure ---------------------------------------------------------

#[test]
fn all_targets_dying_is_a_group_failure_without_address_ping_pong() {
    let mut setup = Setup::new(3);
    setup.standby = vec![false, false, true];
    let mut sim = setup.build();
    sim.run_until(secs(3));
    let died = sim.now;
    sim.net.dead.insert(v4(ROUTER));
    sim.run_until(secs(6));
    assert!((0..3).all(|m| sim.failed(m)));
    assert_eq!(sim.group.state(), GroupState::Failed);
    let group_failures = sim.notices_of(|n| matches!(n, ProbeNotice::GroupFailure { .. }));
    assert_eq!(group_failures.len(), 1);
    assert!(
        sim.notices_of(|n| matches!(n, ProbeNotice::InterfaceFailure { .. }))
            .is_empty()
    );
    // One step: the group failed once, and no address moved to a member in between.
    let after: Vec<Notice> = sim
        .group_notices
        .iter()
        .filter(|(t, _)| *t >= died)
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(
        after.iter().filter(|n| **n == Notice::GroupFailed).count(),
        1
    );
    assert!(
        !after
            .iter()
            .any(|n| matches!(n, Notice::AddressRebound { to: Some(_), .. })
                || matches!(n, Notice::MemberActivated { .. })),
        "addresses moved during the group failure: {after:?}"
    );
    // Router / configured targets are kept; the estimates were reset.
    let t = sim.prober.targets(0, Family::V4).unwrap();
    assert_eq!(t.firing_order(), vec![v4(ROUTER)]);
    assert_eq!(t.get(v4(ROUTER)).unwrap().rtt.crtt(), None);

    sim.net.dead.remove(&v4(ROUTER));
    let back = sim.now;
    let repaired = sim
        .run_until_pred(secs(10), |s| s.group.state() != GroupState::Failed)
        .expect("group repaired");
    assert!(repaired - back <= INTERVAL * 12);
    assert_eq!(
        sim.group_notices
            .iter()
            .filter(|(t, n)| *t >= back && *n == Notice::GroupRepaired)
            .count(),
        1
    );
    sim.run_until(secs(14));
    assert_eq!(sim.group.state(), GroupState::Ok);
    assert_eq!(sim.group.active_members(), vec![0, 1]);
}

#[test]
fn a_link_only_member_with_carrier_proves_the_network_works() {
    let mut setup = Setup::new(2);
    setup.probes[1].v4 = FamilyProbe::Off;
    let mut sim = setup.build();
    sim.run_until(secs(2));
    sim.net.dead.insert(v4(ROUTER));
    sim.run_until(secs(4));
    assert!(sim.failed(0));
    assert!(!sim.failed(1));
    assert_eq!(
        sim.notices_of(|n| matches!(n, ProbeNotice::InterfaceFailure { .. }))
            .len(),
        1
    );
    assert!(
        sim.notices_of(|n| matches!(n, ProbeNotice::GroupFailure { .. }))
            .is_empty()
    );
    assert_eq!(sim.prober.probe_state(1, &sim.group), ProbeHealth::Disabled);
}

#[test]
fn host_targets_are_flushed_on_group_failure_and_rediscovered() {
    let mut setup = Setup::new(2);
    setup.targets.clear();
    let mut sim = setup.build();
    let (h1, h2) = (v4(50), v4(51));
    sim.net.hosts = vec![h1, h2];
    sim.run_until(secs(2));
    for m in 0..2 {
        let t = sim.prober.targets(m, Family::V4).unwrap();
        assert_eq!(t.source(), Some(TargetSource::Host));
        assert_eq!(t.len(), 2, "member {m} shares the discovered hosts");
    }
    assert_eq!(sim.prober.target_rows(0)[0].mode, TargetMode::Multicast);
    sim.net.dead.extend([h1, h2]);
    sim.run_until(secs(5));
    assert_eq!(sim.group.state(), GroupState::Failed);
    assert!(sim.prober.targets(0, Family::V4).unwrap().is_empty());
    assert!(sim.prober.targets(1, Family::V4).unwrap().is_empty());
    assert_eq!(sim.prober.probe_state(0, &sim.group), ProbeHealth::Failed);
    let flushed = sim.notices_of(|n| {
        matches!(
            n,
            ProbeNotice::TargetRemoved {
                reason: report::RemoveReason::GroupFailure,
                ..
            }
        )
    });
    assert_eq!(flushed.len(), 4);
    // Members keep asking by multicast.
    let asked = sim.now;
    sim.run_until(secs(6));
    assert!(sim.sends.iter().any(|s| s.kind == ProbeKind::Discovery
        && s.start >= asked
        && s.dst == Family::V4.all_nodes()));
    sim.net.dead.clear();
    let repaired = sim
        .run_until_pred(secs(10), |s| s.group.state() == GroupState::Ok)
        .expect("rediscovered and repaired");
    assert!(repaired <= sim.at(secs(8)));
}

// ---- targets -----------------------------------------------------------------------------

#[test]
fn a_dead_router_is_blamed_not_the_member_and_recovers_later() {
    let mut setup = Setup::new(2);
    setup.targets.clear();
    let mut sim = setup.build();
    let (r1, r2) = (v4(1), v4(2));
    let out = sim.prober.set_routers(Family::V4, &[r1, r2], sim.now);
    sim.apply(out);
    assert_eq!(sim.prober.target_rows(0)[0].mode, TargetMode::Routes);
    sim.run_until(secs(2));
    sim.net.dead.insert(r2);
    let demoted = sim
        .run_until_pred(secs(6), |s| {
            s.prober
                .targets(0, Family::V4)
                .unwrap()
                .get(r2)
                .unwrap()
                .status
                == TargetStatus::Dead
        })
        .expect("r2 declared dead");
    assert!(
        sim.group_notices
            .iter()
            .all(|(_, n)| !matches!(n, Notice::MemberFailed { .. }))
    );
    assert!(sim.notices.iter().any(|(_, n)| matches!(
        n,
        ProbeNotice::TargetDemoted { member: 0, target, status: TargetStatus::Dead, .. } if *target == r2
    )));
    // Only r1 is probed now.
    sim.run_until(secs(30));
    assert!(
        sim.unicast_sends(0)
            .iter()
            .filter(|s| s.start > demoted + INTERVAL)
            .all(|s| s.dst == r1)
    );
    // Dead → slow after 60 s, slow → unused after 60 more, then active and probed again.
    sim.net.dead.clear();
    sim.run_until(secs(2) + secs(119));
    assert_ne!(
        sim.prober
            .targets(0, Family::V4)
            .unwrap()
            .get(r2)
            .unwrap()
            .status,
        TargetStatus::Active
    );
    sim.run_until(secs(140));
    assert_eq!(
        sim.prober
            .targets(0, Family::V4)
            .unwrap()
            .get(r2)
            .unwrap()
            .status,
        TargetStatus::Active
    );
    assert!(
        sim.unicast_sends(0)
            .iter()
            .any(|s| s.start > sim.at(secs(125)) && s.dst == r2)
    );
    assert!(!sim.failed(0) && !sim.failed(1));
}

#[test]
fn a_dead_host_is_deleted_and_replaced_by_rediscovery() {
    let mut setup = Setup::new(2);
    setup.targets.clear();
    let mut sim = setup.build();
    let (h1, h2, h3) = (v4(50), v4(51), v4(52));
    sim.net.hosts = vec![h1, h2];
    sim.run_until(secs(2));
    sim.net.dead.insert(h2);
    sim.net.hosts.push(h3);
    sim.run_until(secs(5));
    for m in 0..2 {
        let t = sim.prober.targets(m, Family::V4).unwrap();
        assert!(t.get(h2).is_none(), "member {m} still has the dead host");
        assert!(t.get(h3).is_some(), "member {m} did not find the new host");
    }
    assert!(sim.notices.iter().any(|(_, n)| matches!(
        n,
        ProbeNotice::TargetRemoved { target, reason: report::RemoveReason::Unresponsive, .. } if *target == h2
    )));
    assert!(!sim.failed(0) && !sim.failed(1));
}

#[test]
fn a_single_host_target_keeps_looking_for_more() {
    let mut setup = Setup::new(1);
    setup.targets.clear();
    let mut sim = setup.build();
    sim.net.hosts = vec![v4(50)];
    sim.run_until(secs(2));
    // Every failure-detection probe is followed by a discovery while there is one host.
    let uni = sim.unicast_sends(0).len();
    let disc = sim
        .sends
        .iter()
        .filter(|s| s.kind == ProbeKind::Discovery)
        .count();
    assert!(disc >= uni, "{disc} discoveries for {uni} probes");
    sim.net.hosts.push(v4(51));
    sim.run_until(secs(3));
    let disc_before = sim
        .sends
        .iter()
        .filter(|s| s.kind == ProbeKind::Discovery)
        .count();
    sim.run_until(secs(5));
    let disc_after = sim
        .sends
        .iter()
        .filter(|s| s.kind == ProbeKind::Discovery)
        .count();
    assert_eq!(disc_before, disc_after, "still discovering with two hosts");
}

/// A discovery reply for `member` (what a host answering 224.0.0.1 / ff02::1 sends back).
fn discovery_reply(member: MemberId, family: Family) -> Vec<u8> {
    payload::build_reply(
        family,
        &Echo {
            id: payload::icmp_id(0x42, member as u32),
            seq: 1,
            timestamp_ns: 0,
            kind: ProbeKind::Discovery,
            cookie: COOKIE,
        },
    )
    .to_vec()
}

#[test]
fn responders_are_filtered_shared_and_capped_at_five() {
    let mut setup = Setup::new(2);
    setup.targets.clear();
    setup.probes[1].v6 = FamilyProbe::TestAddress(Prefix::new(ll6(0x11), 64));
    let mut sim = setup.build();
    sim.prober.set_own_addresses([v4(100)]);
    let r4 = discovery_reply(0, Family::V4);
    let unusable = ReplyOutcome::Rejected(RejectReason::UnusableResponder);
    assert_eq!(
        sim.inject(0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), &r4),
        unusable
    );
    // One of the host's own addresses, and another member's test address.
    assert_eq!(sim.inject(0, v4(100), &r4), unusable);
    assert_eq!(sim.inject(0, v4(11), &r4), unusable);
    // Outside the test subnet: nobody takes it.
    let far = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));
    assert_eq!(
        sim.inject(0, far, &r4),
        ReplyOutcome::Responder { added: 0 }
    );
    // Host targets are shared by every member probing IPv4.
    assert_eq!(
        sim.inject(0, v4(50), &r4),
        ReplyOutcome::Responder { added: 2 }
    );
    for h in 51..=56 {
        sim.inject(0, v4(h), &r4);
    }
    let t = sim.prober.targets(1, Family::V4).unwrap();
    assert_eq!(t.len(), MAX_PROBE_TARGETS);
    assert_eq!(t.firing_order(), (50..=54).map(v4).collect::<Vec<_>>());
    // IPv6 responders must be link-local.
    let r6 = discovery_reply(1, Family::V6);
    let global: IpAddr = "2001:db8::5".parse().unwrap();
    assert_eq!(sim.inject(1, global, &r6), unusable);
    assert_eq!(
        sim.inject(1, ll6(0x50), &r6),
        ReplyOutcome::Responder { added: 1 }
    );
    assert_eq!(
        sim.prober.targets(1, Family::V6).unwrap().firing_order(),
        vec![ll6(0x50)]
    );
    // On-link routers replace hosts (only those inside the test subnet).
    let out = sim.prober.set_routers(Family::V4, &[v4(1), far], sim.now);
    sim.apply(out);
    let t = sim.prober.targets(0, Family::V4).unwrap();
    assert_eq!(t.source(), Some(TargetSource::Router));
    assert_eq!(t.firing_order(), vec![v4(1)]);
    assert_eq!(
        sim.notices_of(|n| matches!(
            n,
            ProbeNotice::TargetRemoved {
                member: 0,
                reason: report::RemoveReason::Replaced,
                ..
            }
        ))
        .len(),
        5
    );
    // Routers are not mixed with hosts.
    assert_eq!(
        sim.inject(0, v4(60), &r4),
        ReplyOutcome::Responder { added: 0 }
    );
    // The router goes away: back to no targets (multicast discovery).
    let out = sim.prober.set_routers(Family::V4, &[], sim.now);
    sim.apply(out);
    assert!(sim.prober.targets(0, Family::V4).unwrap().is_empty());
    assert!(sim.notices.iter().any(|(_, n)| matches!(
        n,
        ProbeNotice::TargetRemoved {
            reason: report::RemoveReason::NotARouter,
            ..
        }
    )));
}

#[test]
fn configured_targets_are_not_replaced_by_routers() {
    let mut sim = Setup::new(1).build();
    let out = sim.prober.set_routers(Family::V4, &[v4(2)], sim.now);
    sim.apply(out);
    assert_eq!(
        sim.prober.targets(0, Family::V4).unwrap().firing_order(),
        vec![v4(ROUTER)]
    );
    assert_eq!(
        sim.prober.targets(0, Family::V4).unwrap().source(),
        Some(TargetSource::Configured)
    );
}

// ---- FDT adaptation ------------------------------------------------------------------------

#[test]
fn slow_targets_raise_the_fdt_and_it_comes_back_after_settling() {
    let mut sim = Setup::new(2).build();
    sim.run_until(secs(3));
    sim.net.rtt.insert(v4(ROUTER), ms(150));
    sim.run_until_pred(secs(10), |s| s.prober.fdt().is_raised())
        .expect("FDT raised");
    let raises = sim.notices_of(|n| matches!(n, ProbeNotice::FdtRaised { .. }));
    let (
        _,
        ProbeNotice::FdtRaised {
            crtt,
            fdt,
            requested,
            ..
        },
    ) = raises[0].clone()
    else {
        unreachable!()
    };
    assert_eq!(requested, FDT);
    assert!(crtt > INTERVAL);
    assert_eq!(fdt, crtt * 2 * 7);
    sim.run_until(secs(20));
    let raises = sim.notices_of(|n| matches!(n, ProbeNotice::FdtRaised { .. }));
    let (last_raise, ProbeNotice::FdtRaised { fdt: high, .. }) = raises.last().cloned().unwrap()
    else {
        unreachable!()
    };
    assert_eq!(sim.prober.fdt().current(), high);
    assert_eq!(sim.prober.fdt().interval(), high / 7);
    // RTT-only probes go out between failure-detection probes.
    assert!(
        sim.sends
            .iter()
            .any(|s| s.kind == ProbeKind::RttOnly && s.start > last_raise)
    );
    // Failure-detection probes are spaced by the raised interval (random point after a base).
    let fd: Vec<Instant> = sim
        .unicast_sends(0)
        .iter()
        .map(|s| s.start)
        .filter(|t| *t > last_raise + high)
        .collect();
    for w in fd.windows(2) {
        assert!(
            w[1] - w[0] <= high / 7 * 3 / 2 + INTERVAL,
            "gap {:?}",
            w[1] - w[0]
        );
    }

    sim.net.rtt.remove(&v4(ROUTER));
    sim.run_until_pred(secs(300), |s| !s.prober.fdt().is_raised())
        .expect("FDT back to the user's");
    let lowers = sim.notices_of(|n| matches!(n, ProbeNotice::FdtLowered { .. }));
    assert!(lowers[0].0 > last_raise + MIN_SETTLING_TIME);
    let mut prev = high;
    for (_, n) in &lowers {
        let ProbeNotice::FdtLowered { fdt, .. } = n else {
            unreachable!()
        };
        assert_eq!(*fdt, (prev / 2).max(FDT));
        prev = *fdt;
    }
    assert_eq!(prev, FDT);
    assert_eq!(sim.prober.fdt().interval(), INTERVAL);
    sim.run_until(secs(320));
    assert!(!sim.prober.fdt().is_raised());
    assert!(
        sim.sends
            .iter()
            .filter(|s| s.start > sim.at(secs(310)))
            .all(|s| s.kind == ProbeKind::Unicast)
    );
    assert!(
        sim.group_notices
            .iter()
            .all(|(_, n)| !matches!(n, Notice::MemberFailed { .. })),
        "a slow target failed a member"
    );
}

#[test]
fn one_slow_target_among_four_is_an_exception_not_an_fdt_raise() {
    let mut setup = Setup::new(1);
    setup.targets = (1..=4).map(v4).collect();
    let mut sim = setup.build();
    sim.run_until(secs(3));
    sim.net.rtt.insert(v4(4), ms(150));
    sim.run_until(secs(10));
    let t = sim.prober.targets(0, Family::V4).unwrap();
    assert_eq!(t.get(v4(4)).unwrap().status, TargetStatus::Slow);
    assert!(!t.firing_order().contains(&v4(4)));
    assert!(!sim.prober.fdt().is_raised());
    assert!(
        sim.notices_of(|n| matches!(n, ProbeNotice::FdtRaised { .. }))
            .is_empty()
    );
    assert!(sim.notices.iter().any(|(_, n)| matches!(
        n,
        ProbeNotice::TargetDemoted { target, status: TargetStatus::Slow, .. } if *target == v4(4)
    )));
    assert!(!sim.failed(0));
}

#[test]
fn with_fewer_than_four_targets_a_slow_one_raises_the_fdt() {
    let mut setup = Setup::new(1);
    setup.targets = (1..=3).map(v4).collect();
    let mut sim = setup.build();
    sim.run_until(secs(3));
    sim.net.rtt.insert(v4(3), ms(150));
    sim.run_until(secs(10));
    assert!(sim.prober.fdt().is_raised());
    assert_eq!(
        sim.prober
            .targets(0, Family::V4)
            .unwrap()
            .get(v4(3))
            .unwrap()
            .status,
        TargetStatus::Active
    );
}

// ---- integrity ------------------------------------------------------------------------------

#[test]
fn forged_replies_do_not_keep_a_cut_member_alive() {
    let mut sim = Setup::new(2).build();
    sim.run_until(secs(3));
    let captured = {
        let last = *sim.unicast_sends(0).last().unwrap();
        payload::build_reply(Family::V4, &decode_request(&last.icmp.unwrap())).to_vec()
    };
    let cut = sim.now;
    sim.net.cut.insert(0);
    let mut forger = StdRng::seed_from_u64(99);
    let mut outcomes = Vec::new();
    let failed_at = loop {
        let next = sim.now - sim.t0 + ms(10);
        sim.run_until(next);
        // Guessed identifier, sequence number and cookie.
        let guess = Echo {
            id: forger.random(),
            seq: forger.random(),
            timestamp_ns: forger.random(),
            kind: ProbeKind::Unicast,
            cookie: forger.random(),
        };
        outcomes.push(sim.inject(0, v4(ROUTER), &payload::build_reply(Family::V4, &guess)));
        // Everything right but the cookie: the newest probe's id, sequence and time.
        let last = *sim.unicast_sends(0).last().unwrap();
        let near = Echo {
            cookie: forger.random(),
            ..decode_request(&last.icmp.unwrap())
        };
        outcomes.push(sim.inject(0, v4(ROUTER), &payload::build_reply(Family::V4, &near)));
        // A genuine reply recorded before the cut, replayed.
        outcomes.push(sim.inject(0, v4(ROUTER), &captured));
        if sim.failed(0) {
            break sim.now;
        }
        assert!(sim.now < sim.at(secs(10)), "m0 never failed");
    };
    assert!(failed_at - cut <= FDT * 2);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ReplyOutcome::Rejected(_)))
    );
    let c = sim.prober.counters(0, Family::V4).unwrap();
    assert!(c.rejected[&RejectReason::BadCookie] >= 5);
    assert!(c.rejected[&RejectReason::ForeignId] >= 5);
    assert!(
        c.rejected
            .get(&RejectReason::Duplicate)
            .copied()
            .unwrap_or(0)
            >= 5
    );
    assert_eq!(
        c.forged() + c.stale(),
        outcomes.len() as u64,
        "every forged reply is counted"
    );
}

#[test]
fn replies_that_do_not_match_a_probe_are_dropped_and_counted() {
    let mut sim = Setup::new(1).build();
    // Nothing answers by itself: replies are crafted here.
    sim.net.dead.insert(v4(ROUTER));
    sim.run_until_pred(secs(1), |s| !s.unicast_sends(0).is_empty());
    let req = sim.unicast_sends(0)[0];
    let echo = decode_request(&req.icmp.unwrap());
    let reply = |e: &Echo| payload::build_reply(Family::V4, e).to_vec();
    let rejected = ReplyOutcome::Rejected;
    assert_eq!(
        sim.inject(0, v4(9), &reply(&echo)),
        rejected(RejectReason::WrongSource)
    );
    let moved = Echo {
        timestamp_ns: echo.timestamp_ns + 1,
        ..echo
    };
    assert_eq!(
        sim.inject(0, v4(ROUTER), &reply(&moved)),
        rejected(RejectReason::BadTimestamp)
    );
    for seq in [echo.seq + 1, echo.seq.wrapping_sub(60)] {
        assert_eq!(
            sim.inject(0, v4(ROUTER), &reply(&Echo { seq, ..echo })),
            rejected(RejectReason::OutOfWindow)
        );
    }
    assert_eq!(
        sim.inject(0, v4(ROUTER), &reply(&echo)),
        ReplyOutcome::Acked {
            seq: echo.seq,
            late: false
        }
    );
    assert_eq!(
        sim.inject(0, v4(ROUTER), &reply(&echo)),
        rejected(RejectReason::Duplicate)
    );
    assert_eq!(
        sim.inject(0, v4(ROUTER), &reply(&echo)[..20]),
        rejected(RejectReason::Malformed)
    );
    assert_eq!(
        sim.inject(0, v4(ROUTER), &payload::build_request(Family::V4, &echo)),
        rejected(RejectReason::Malformed)
    );
    let c = sim.prober.counters(0, Family::V4).unwrap().clone();
    assert_eq!(c.acked, 1);
    assert_eq!(c.forged(), 4);
    assert_eq!(c.stale(), 3);

    // Nothing is taken while the link is down; after the history was reset (link down and
    // up), that sequence number was never sent.
    sim.link(0, false);
    assert_eq!(
        sim.inject(0, v4(ROUTER), &reply(&echo)),
        rejected(RejectReason::Stopped)
    );
    assert_eq!(
        sim.inject(0, v4(50), &discovery_reply(0, Family::V4)),
        rejected(RejectReason::Stopped)
    );
    sim.link(0, true);
    assert_eq!(
        sim.inject(0, v4(ROUTER), &reply(&echo)),
        rejected(RejectReason::NeverSent)
    );
    // A reply after its probe was declared lost still counts (late), and feeds the RTT.
    let up = sim.now;
    sim.run_until_pred(secs(5), |s| {
        s.member_records(0)
            .iter()
            .any(|(t, r)| *t > up && r.is_lost())
    })
    .expect("a probe is lost");
    let lost = sim
        .member_records(0)
        .into_iter()
        .find(|(t, r)| *t > up && r.is_lost())
        .unwrap()
        .1;
    let probe = sim
        .unicast_sends(0)
        .into_iter()
        .find(|s| s.seq == lost.seq)
        .unwrap();
    let late = reply(&decode_request(&probe.icmp.unwrap()));
    assert_eq!(
        sim.inject(0, v4(ROUTER), &late),
        ReplyOutcome::Acked {
            seq: lost.seq,
            late: true
        }
    );
    assert_eq!(sim.prober.counters(0, Family::V4).unwrap().late, 1);
    let (_, rec) = *sim.member_records(0).last().unwrap();
    assert_eq!(rec.seq, lost.seq);
    assert!(!rec.is_lost());
}

// ---- link and probes together -------------------------------------------------------------

#[test]
fn link_down_clears_history_and_needs_ten_fresh_acks() {
    let mut sim = Setup::new(2).build();
    sim.run_until(secs(2));
    sim.link(0, false);
    assert_eq!(sim.group.fail_cause(0), Some(FailCause::LinkDown));
    assert!(sim.group.member(0).probe_failed);
    assert!(sim.prober.history(0, Family::V4).unwrap().is_empty());
    let sent = sim.unicast_sends(0).len();
    sim.run_until(secs(3));
    assert_eq!(sim.unicast_sends(0).len(), sent, "probed over a down link");
    sim.link(0, true);
    let up = sim.now;
    // The link agrees, the probes do not yet.
    assert!(sim.failed(0));
    assert_eq!(sim.group.fail_cause(0), Some(FailCause::Probe));
    let repaired = sim
        .run_until_pred(secs(6), |s| !s.failed(0))
        .expect("repaired by probes");
    let acks = outcomes_between(&sim, 0, up, repaired);
    assert_eq!(acks, vec![true; NUM_PROBE_REPAIRS as usize]);
}

#[test]
fn without_targets_probes_have_no_say_on_link_repair() {
    let mut setup = Setup::new(2);
    setup.targets.clear();
    let mut sim = setup.build();
    sim.run_until(secs(1));
    assert_eq!(sim.prober.probe_state(0, &sim.group), ProbeHealth::Unknown);
    let rows = sim.prober.target_rows(0);
    assert_eq!(rows[0].mode, TargetMode::Multicast);
    assert!(rows[0].targets.is_empty());
    assert!(sim.sends.iter().all(|s| s.kind == ProbeKind::Discovery));
    sim.link(0, false);
    assert!(!sim.group.member(0).probe_failed);
    sim.link(0, true);
    assert!(!sim.failed(0));
}

#[test]
fn link_layer_probes_without_a_test_address() {
    let mut setup = Setup::new(2);
    for p in &mut setup.probes {
        p.v4 = FamilyProbe::LinkLayer;
    }
    let mut sim = setup.build();
    sim.run_until(secs(2));
    let s = sim.unicast_sends(0);
    assert!(!s.is_empty());
    assert!(
        s.iter()
            .all(|r| r.src.is_none() && r.icmp.is_none() && r.dst == v4(ROUTER))
    );
    let rows = sim.prober.target_rows(0);
    assert_eq!(rows[0].mode, TargetMode::Routes);
    assert_eq!(rows[0].test_address, None);
    assert!(!sim.failed(0));
    sim.net.cut.insert(0);
    sim.run_until(secs(4));
    assert!(sim.failed(0));
    assert_eq!(sim.group.fail_cause(0), Some(FailCause::Probe));
    sim.net.cut.clear();
    sim.run_until(secs(6));
    assert!(!sim.failed(0));
    // An unsolicited answer acks nothing.
    let now = sim.now;
    let (outcome, _) = sim
        .prober
        .link_layer_reply(neigh_reply(0, Family::V4, v4(77), now), now, &sim.group)
        .unwrap();
    assert_eq!(
        outcome,
        ReplyOutcome::Rejected(RejectReason::NoProbeInFlight)
    );
    // ICMP replies are not expected on a link-layer instance.
    assert_eq!(
        sim.inject(0, v4(ROUTER), &discovery_reply(0, Family::V4)),
        ReplyOutcome::Rejected(RejectReason::NotProbing)
    );
}

#[test]
fn link_layer_replies_must_echo_the_probe_and_come_from_the_target() {
    let mut setup = Setup::new(2);
    for p in &mut setup.probes {
        p.v4 = FamilyProbe::LinkLayer;
    }
    let mut sim = setup.build();
    sim.run_until(secs(2));
    assert!(!sim.failed(0));
    let refused = |sim: &mut Sim, reply: NeighReply| {
        let now = sim.now;
        let (outcome, out) = sim.prober.link_layer_reply(reply, now, &sim.group).unwrap();
        assert!(out.records.is_empty(), "{reply:?} completed a probe");
        match outcome {
            ReplyOutcome::Rejected(r) => r,
            other => panic!("{reply:?} was taken: {other:?}"),
        }
    };
    // Fail m0 silently; replies a stray or forging host sends cannot repair it.
    sim.net.cut.insert(0);
    sim.run_until(secs(4));
    assert!(sim.failed(0));
    let until = sim.at(secs(8));
    while sim.now < until {
        // A probe is in flight: answer it with everything but one field right.
        sim.run_until_pred(secs(8), |s| {
            s.prober
                .history(0, Family::V4)
                .is_some_and(|h| h.unacked() > 0)
        });
        let now = sim.now;
        let mut wrong_local = neigh_reply(0, Family::V4, v4(ROUTER), now);
        wrong_local.local = v4(10);
        assert_eq!(refused(&mut sim, wrong_local), RejectReason::WrongLocal);
        let mut other_nic = neigh_reply(0, Family::V4, v4(ROUTER), now);
        other_nic.hardware = [0x02, 0, 0, 0, 0, 0x66];
        assert_eq!(refused(&mut sim, other_nic), RejectReason::WrongHardware);
        // Stamped before any probe in flight was sent.
        let early = neigh_reply(0, Family::V4, v4(ROUTER), sim.at(secs(0)));
        assert_eq!(refused(&mut sim, early), RejectReason::NoProbeInFlight);
        let other_target = neigh_reply(0, Family::V4, v4(99), now);
        assert_eq!(
            refused(&mut sim, other_target),
            RejectReason::NoProbeInFlight
        );
        let next = sim.now + INTERVAL / 2 - sim.at(Duration::ZERO);
        sim.run_until(next);
    }
    assert!(
        sim.failed(0),
        "repaired by replies that were not the target's"
    );
    let forged = sim.prober.counters(0, Family::V4).unwrap().forged();
    assert!(
        forged > 0,
        "the refused replies were not counted as forgeries"
    );
    // The real target's replies still repair it.
    sim.net.cut.remove(&0);
    sim.run_until_pred(secs(12), |s| !s.failed(0))
        .expect("repaired by the target's own replies");
}

// ---- views ---------------------------------------------------------------------------------

#[test]
fn ipmpstat_t_and_p_views() {
    let mut setup = Setup::new(3);
    setup.targets = vec![v4(1), v4(2), v4(3)];
    setup.probes[2].v4 = FamilyProbe::Off;
    let mut sim = setup.build();
    sim.run_until(secs(1));
    let rows = sim.prober.target_rows(0);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].family, Family::V4);
    assert_eq!(rows[0].mode, TargetMode::Routes);
    assert_eq!(rows[0].test_address, Some(v4(10)));
    // Firing order starts with the target after the one probed last.
    let last = sim.unicast_sends(0).last().unwrap().dst;
    let order = [v4(1), v4(2), v4(3)];
    let i = order.iter().position(|t| *t == last).unwrap();
    let want: Vec<IpAddr> = (1..=3).map(|k| order[(i + k) % 3]).collect();
    assert_eq!(rows[0].targets, want);
    assert!(sim.prober.target_rows(2).is_empty());
    assert_eq!(sim.prober.probe_state(2, &sim.group), ProbeHealth::Disabled);
    assert_eq!(sim.prober.probe_state(0, &sim.group), ProbeHealth::Ok);
    assert!(sim.prober.is_probing(0) && !sim.prober.is_probing(2));

    // -p: NETRTT from the send time, RTT from the start.
    let n = sim.unicast_sends(0).len();
    sim.run_until_pred(secs(3), |s| s.unicast_sends(0).len() > n);
    let probe = *sim.unicast_sends(0).last().unwrap();
    assert!(sim.prober.sent(
        0,
        Family::V4,
        probe.seq,
        probe.start + Duration::from_micros(200)
    ));
    assert!(
        !sim.prober
            .sent(0, Family::V4, probe.seq.wrapping_add(9), probe.start)
    );
    sim.run_until_pred(secs(3), |s| {
        s.member_records(0).iter().any(|(_, r)| r.seq == probe.seq)
    });
    let (_, rec) = *sim.member_records(0).last().unwrap();
    assert_eq!(rec.seq, probe.seq);
    assert_eq!(rec.target, Some(probe.dst));
    assert_eq!(rec.netrtt(), Some(Duration::from_micros(800)));
    assert_eq!(rec.rtt(), Some(RTT));
    assert!(rec.rtt_avg.is_some() && rec.rtt_dev.is_some());
    // Lost probes have no RTT fields.
    sim.net.dead.extend(order);
    sim.run_until(secs(4));
    let (_, lost) = *sim
        .member_records(0)
        .iter()
        .rev()
        .find(|(_, r)| r.is_lost())
        .unwrap();
    assert_eq!((lost.netrtt(), lost.rtt()), (None, None));
    let names = ["eth0", "eth1", "eth2"];
    for (_, n) in &sim.notices {
        assert!(!n.describe("ipmp0", &names).is_empty());
    }
}

#[test]
fn describe_words_fdt_changes_like_in_mpathd() {
    let raised = ProbeNotice::FdtRaised {
        member: 0,
        family: Family::V4,
        target: v4(1),
        crtt: ms(150),
        requested: FDT,
        fdt: ms(2100),
    };
    let text = raised.describe("ipmp0", &["eth0"]);
    assert!(
        text.starts_with("cannot meet requested failure detection time of 700.0 ms on (inet eth0)"),
        "{text}"
    );
    assert!(text.contains("\"ipmp0\" is 2100.0 ms"), "{text}");
    let lowered = ProbeNotice::FdtLowered {
        member: 0,
        family: Family::V6,
        fdt: FDT,
    };
    assert_eq!(
        lowered.describe("ipmp0", &["eth0"]),
        "improved failure detection time 700.0 ms on (inet6 eth0) for group \"ipmp0\""
    );
}

#[test]
fn spec_errors_are_typed() {
    let t0 = Instant::now();
    let group = Group::new(
        GroupSpec {
            name: "ipmp0".into(),
            failback: true,
            members: vec![MemberSpec {
                name: "eth0".into(),
                standby: false,
            }],
            n_addresses: 1,
            n_buckets: 4,
            flap_max_ups: 2,
            flap_window: secs(60),
        },
        &[Carrier::Up],
        t0,
    );
    let mut rng = StdRng::seed_from_u64(1);
    let spec = |members: Vec<ProbePlan>, fdt| ProbeSpec {
        fdt,
        quiet_period: FAILURE_DETECTION_QP,
        cookie: 1,
        targets: vec![],
        members,
    };
    let one = ProbePlan {
        icmp_id: 1,
        v4: FamilyProbe::TestAddress(test_addr(0)),
        v6: FamilyProbe::Off,
    };
    assert!(matches!(
        Prober::new(spec(vec![one, one], FDT), &group, t0, &mut rng),
        Err(ProbeError::GroupMismatch {
            probers: 2,
            members: 1,
            ..
        })
    ));
    assert!(matches!(
        Prober::new(
            spec(vec![one], Duration::from_nanos(6)),
            &group,
            t0,
            &mut rng
        ),
        Err(ProbeError::FdtTooShort { .. })
    ));
    let mut long = spec(vec![one], FDT);
    long.quiet_period = Duration::MAX;
    assert!(matches!(
        Prober::new(long, &group, t0, &mut rng),
        Err(ProbeError::QuietPeriodTooLong { .. })
    ));
    let swapped = ProbePlan {
        v4: FamilyProbe::Off,
        v6: FamilyProbe::TestAddress(test_addr(0)),
        ..one
    };
    assert!(matches!(
        Prober::new(spec(vec![swapped], FDT), &group, t0, &mut rng),
        Err(ProbeError::FamilyMismatch { want: 6, .. })
    ));
    let mut p = Prober::new(spec(vec![one], FDT), &group, t0, &mut rng).unwrap();
    assert!(matches!(
        p.link(3, false, t0, &group, &mut rng),
        Err(ProbeError::UnknownMember {
            member: 3,
            count: 1
        })
    ));
    assert_eq!(p.fdt().current(), FDT);
    assert_eq!(p.epoch(), t0);
}

#[test]
fn from_config_probes_in_each_test_address_family() {
    let cfg = crate::config::Config::from_toml_str(
        r#"
        FAILURE_DETECTION_TIME = 2100
        [[group]]
        name = "ipmp0"
        data_addresses = ["198.51.100.10/24", "2001:db8::10/64"]
        [[group.member]]
        name = "eth1"
        test_address = "198.51.100.21/24"
        [[group.member]]
        name = "eth2"
        test_address = "fe80::22/64"
        [[group.member]]
        name = "eth3"
        "#,
        "test",
    )
    .unwrap();
    let spec = ProbeSpec::from_config(&cfg, &cfg.groups[0], 0xab00_0000_0000_0001);
    assert_eq!(spec.fdt, ms(2100));
    assert_eq!(spec.quiet_period, FAILURE_DETECTION_QP);
    assert_eq!(spec.cookie, 0xab00_0000_0000_0001);
    assert!(matches!(spec.members[0].v4, FamilyProbe::TestAddress(p) if p.addr == v4(21)));
    assert_eq!(spec.members[0].v6, FamilyProbe::Off);
    assert!(matches!(spec.members[1].v6, FamilyProbe::TestAddress(p) if p.addr == ll6(0x22)));
    assert_eq!(
        (spec.members[2].v4, spec.members[2].v6),
        (FamilyProbe::Off, FamilyProbe::Off)
    );
    assert_eq!(spec.members[1].icmp_id, 0xab01);
}

#[test]
fn from_config_probes_the_link_layer_without_a_test_address() {
    let parse = |extra: &str| {
        crate::config::Config::from_toml_str(
            &format!(
                r#"
                [[group]]
                name = "ipmp0"
                data_addresses = ["198.51.100.10/24", "2001:db8::10/64"]
                routes = [{{ to = "default", via = "198.51.100.1" }}]
                {extra}
                [[group.member]]
                name = "eth1"
                test_address = "198.51.100.21/24"
                [[group.member]]
                name = "eth2"
                "#
            ),
            "test",
        )
        .unwrap()
    };
    // Targets from the IPv4 route only: ARP for the member without a test address, nothing
    // for IPv6 (no target).
    let cfg = parse("");
    let spec = ProbeSpec::from_config(&cfg, &cfg.groups[0], 1);
    assert!(matches!(spec.members[0].v4, FamilyProbe::TestAddress(_)));
    assert_eq!(spec.members[0].v6, FamilyProbe::Off);
    assert_eq!(
        (spec.members[1].v4, spec.members[1].v6),
        (FamilyProbe::LinkLayer, FamilyProbe::Off)
    );
    // Configured targets replace the routes': an IPv6 one gives IPv6 neighbour solicitations
    // to every member and no IPv4 probing without a test address.
    let cfg = parse(r#"probe_targets = ["2001:db8::1"]"#);
    let spec = ProbeSpec::from_config(&cfg, &cfg.groups[0], 1);
    assert_eq!(spec.members[0].v6, FamilyProbe::LinkLayer);
    assert_eq!(
        (spec.members[1].v4, spec.members[1].v6),
        (FamilyProbe::Off, FamilyProbe::LinkLayer)
    );
    // Switched off: only the test address probes.
    let cfg = parse("link_layer_probes = false");
    let spec = ProbeSpec::from_config(&cfg, &cfg.groups[0], 1);
    assert_eq!(
        (spec.members[1].v4, spec.members[1].v6),
        (FamilyProbe::Off, FamilyProbe::Off)
    );
}

// ---- properties ----------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever the random source gives, every probe goes out in [0.5, 1] × interval after
    /// its strictly periodic base.
    #[test]
    fn probes_stay_in_their_windows_for_any_random_source(seed in any::<u64>()) {
        let mut setup = Setup::new(2);
        setup.seed = seed;
        let mut sim = setup.build();
        sim.run_until(secs(3));
        for m in 0..2 {
            let sends = sim.unicast_sends(m);
            let first = sends[0].start;
            prop_assert!(first <= sim.t0 + INTERVAL);
            for (k, s) in sends.iter().enumerate().skip(1) {
                let base = first + INTERVAL * (k as u32 - 1);
                prop_assert!(s.start >= base + INTERVAL / 2 && s.start <= base + INTERVAL);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Act {
    Cut(usize),
    Restore(usize),
    Kill(u8),
    Revive(u8),
    LinkDown(usize),
    LinkUp(usize),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        3 => (0usize..3).prop_map(Act::Cut),
        3 => (0usize..3).prop_map(Act::Restore),
        2 => (1u8..3).prop_map(Act::Kill),
        2 => (1u8..3).prop_map(Act::Revive),
        1 => (0usize..3).prop_map(Act::LinkDown),
        1 => (0usize..3).prop_map(Act::LinkUp),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random cuts, dead targets and link flaps. Throughout (checked at every step by the
    /// simulator): at most two probes in flight, every failure backed by 5 losses in a row on
    /// each probing family (or a group failure), every repair by 10 acks in a row. Once all
    /// is healed, every member comes back.
    #[test]
    fn random_network_events_keep_the_rules(
        seed in any::<u64>(),
        acts in proptest::collection::vec((0u64..3000, act()), 1..12),
    ) {
        let mut setup = Setup::new(3);
        setup.seed = seed;
        setup.targets = vec![v4(1), v4(2)];
        let mut sim = setup.build();
        let mut down = HashSet::new();
        for (dt, a) in acts {
            let next = sim.now - sim.t0 + ms(dt);
            sim.run_until(next);
            match a {
                Act::Cut(m) => { sim.net.cut.insert(m); }
                Act::Restore(m) => { sim.net.cut.remove(&m); }
                Act::Kill(t) => { sim.net.dead.insert(v4(t)); }
                Act::Revive(t) => { sim.net.dead.remove(&v4(t)); }
                Act::LinkDown(m) => if down.insert(m) { sim.link(m, false) },
                Act::LinkUp(m) => if down.remove(&m) { sim.link(m, true) },
            }
        }
        sim.net.cut.clear();
        sim.net.dead.clear();
        for m in down {
            sim.link(m, true);
        }
        // Long enough for a flap hold-down (60 s) and 10 acks.
        let end = sim.now - sim.t0 + secs(75);
        sim.run_until(end);
        for m in 0..3 {
            prop_assert!(!sim.failed(m), "member {} still failed: {:?}", m, sim.group.member(m));
        }
        prop_assert_eq!(sim.group.state(), GroupState::Ok);
    }
}
