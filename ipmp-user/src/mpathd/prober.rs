//! [`Prober`]: probe-based failure detection for one IPMP group.
//!
//! # What the daemon calls when
//!
//! The [`Group`] stays the single source of truth for link, offline and failure state; the
//! prober reads it on every call and answers with a [`ProbeOutput`]. The daemon:
//!
//! 1. builds it with [`Prober::new`] next to `Group::new` (same members, same order), with a
//!    random per-daemon cookie in the [`ProbeSpec`];
//! 2. forwards every Group event it applies that concerns probing: after a successful
//!    `Event::Link` → [`Prober::link`], `Event::Offline` → [`Prober::offline`],
//!    `Event::Online` → [`Prober::online`]; router changes on the group's routes →
//!    [`Prober::set_routers`]; the host's own addresses → [`Prober::set_own_addresses`];
//! 3. sleeps until [`Prober::next_deadline`] (a probe is due or one times out), first drains
//!    the replies already received, then calls [`Prober::tick`];
//! 4. sends every [`ProbeRequest`] in `sends` (ICMP with `icmp` from `src`, TTL / hop limit 1,
//!    bound to the member; or a link-layer probe when `src` is `None`), and may report the
//!    actual send time with [`Prober::sent`] (for NETRTT; otherwise the start time is used).
//!    A failed send is logged and left to time out, which counts it as lost;
//! 5. feeds every echo reply received on a member's socket to [`Prober::reply`] with the
//!    receive timestamp (XDP `bpf_ktime_get_ns` or SO_TIMESTAMP, converted to an `Instant`
//!    on the same monotonic clock), and link-layer replies to [`Prober::link_layer_reply`];
//! 6. after *every* call: applies `event` (if any) with `Group::handle` before the next prober
//!    call, streams `records` to `ipmpstat -p`, logs `notices` ([`ProbeNotice::describe`](super::ProbeNotice::describe)).
//!
//! # Semantics (in.mpathd, mpd_probe.c)
//!
//! - A member fails by probes when every family that has a target lost [`NUM_PROBE_FAILS`]
//!   probes in a row (not during the quiet period), and is repaired when either family got
//!   [`NUM_PROBE_REPAIRS`] acked in a row, overall or to one target.
//! - The failure is an *interface* failure when another member proves the network works: its
//!   link is up and it does not probe, or it is running and its newest ack was processed after
//!   this member's first loss (TFF). Otherwise it is a *group* failure: every probing member is
//!   failed at once, RTT estimates are reset and host targets flushed (rediscovered by
//!   multicast); any member repairs with 10 acks.
//! - A target that alone lost 5 in a row while the member did not is blamed instead: routers
//!   and configured targets become dead (and recover), hosts are deleted and rediscovered.
//! - Link down clears the probe history (old acks must not repair) and, if the member had a
//!   target, fails it by probes too, so that after link-up it needs 10 fresh acks; without a
//!   target, probes have no opinion and the link alone decides.
//!
//! Differences from in.mpathd, on purpose:
//! - Evaluation runs at every timeout and ack, not only when the next probe goes out: a
//!   failure is declared when the fifth loss times out, a repair on the tenth ack.
//! - The RTT sample is receive timestamp − start, not processing time − start, so a busy
//!   daemon does not inflate CRTT and the FDT.
//! - The quiet period is per family, and a family in it vouches for the member; onlining a
//!   member restarts it (in.mpathd treats an onlined interface as new).
//! - When nothing is active any more after a target was declared dead, the best others are
//!   reactivated at once (in.mpathd would fall back to multicast, which router lists ignore),
//!   and a dead target's old losses are forgotten, so that it is not condemned again by them
//!   the moment it recovers.
//! - Replies are checked against a per-daemon cookie and the probe's start time besides
//!   in.mpathd's identifier, sequence window and source address.

use std::{
    collections::HashSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use rand::Rng;

use super::{
    defs::{Family, NUM_PROBE_FAILS, NUM_PROBE_REPAIRS, PROBES_PER_FDT, ProbeKind, RejectReason},
    fdt::Fdt,
    history::{Lookup, ProbeSlot, ProbeStatus},
    member::{Instance, MemberInstances, timeout},
    payload::{self, Echo},
    report::{
        ProbeHealth, ProbeNotice, ProbeOutcome, ProbeOutput, ProbeRecord, ProbeRequest,
        RemoveReason, ReplyOutcome, TargetMode, TargetRow,
    },
    rtt::SampleKind,
    schedule::Schedule,
    targets::{TargetSource, TargetStatus, Targets},
};
use crate::{
    config::{Config, GroupConfig, Prefix},
    group::{Carrier, Event, FailCause, Group, MemberId, MemberSet},
};

// The public calls and queries are here; the work behind them is split by concern:
// `sending` (probes out, timeouts, targets), `replies` (acks, RTTs, FDT adaptation),
// `verdicts` (member failure, group failure, repair).
mod replies;
mod sending;
mod verdicts;

/// How a member probes in one address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyProbe {
    /// Not at all.
    Off,
    /// ICMP echo from this test address (its prefix limits router and discovered targets).
    TestAddress(Prefix),
    /// Without a test address: ARP requests / neighbour solicitations to the targets (which
    /// must be configured or routers; there is no multicast discovery). Replies carry no
    /// cookie, so a forger on the link can keep such a member alive.
    LinkLayer,
}

/// How one member probes: the identifier of its probes, the method per family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePlan {
    /// ICMP identifier of its probes (see [`payload::icmp_id`]).
    pub icmp_id: u16,
    pub v4: FamilyProbe,
    pub v6: FamilyProbe,
}

/// What a group's prober is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The user's failure detection time.
    pub fdt: Duration,
    /// Losses are ignored this long after a member starts probing, unless a probe is acked
    /// first ([`FAILURE_DETECTION_QP`](super::defs::FAILURE_DETECTION_QP) by default).
    pub quiet_period: Duration,
    /// Random per daemon; carried in every probe, checked in every reply.
    pub cookie: u64,
    /// Explicit targets (both families); when a family has some, routers and multicast
    /// discovery are not used for it.
    pub targets: Vec<IpAddr>,
    /// In the group's member order.
    pub members: Vec<ProbePlan>,
}

impl ProbeSpec {
    /// The daemon-wide FDT, each member's test address (a member probes with ICMP in its
    /// family), link-layer probing in a family without a test address when the group allows it
    /// and the family has targets (configured, or the routes' gateways), the default quiet
    /// period, the group's `probe_targets`.
    /// ICMP identifiers are the cookie's top byte and the member index.
    pub fn from_config(config: &Config, group: &GroupConfig, cookie: u64) -> Self {
        let salt = payload::id_salt(cookie);
        let has_targets = |family: Family| {
            group.probe_targets.iter().any(|t| Family::of(*t) == family)
                || (group.probe_targets.is_empty()
                    && group.routes.iter().any(|r| Family::of(r.via) == family))
        };
        let without_test = |family: Family| {
            if group.link_layer_probes && has_targets(family) {
                FamilyProbe::LinkLayer
            } else {
                FamilyProbe::Off
            }
        };
        Self {
            fdt: config.failure_detection_time,
            quiet_period: super::defs::FAILURE_DETECTION_QP,
            cookie,
            targets: group.probe_targets.clone(),
            members: group
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let (v4, v6) = match m.test_address {
                        Some(p) if p.is_ipv4() => {
                            (FamilyProbe::TestAddress(p), without_test(Family::V6))
                        }
                        Some(p) => (without_test(Family::V4), FamilyProbe::TestAddress(p)),
                        None => (without_test(Family::V4), without_test(Family::V6)),
                    };
                    ProbePlan {
                        icmp_id: payload::icmp_id(salt, u32::try_from(i).unwrap_or(u32::MAX)),
                        v4,
                        v6,
                    }
                })
                .collect(),
        }
    }
}

/// Why a prober call was refused; the prober is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "the prober has {probers} members but group {group} has {members}: build both from the \
         same member list"
    )]
    GroupMismatch {
        group: String,
        probers: usize,
        members: usize,
    },
    #[error(
        "{count} members probe in one group, at most {max} can: split the group or switch \
         probing off on some members"
    )]
    TooManyMembers { count: usize, max: usize },
    #[error(
        "failure detection time {fdt:?} leaves no probe interval (FDT / 7): use at least 10 ms"
    )]
    FdtTooShort { fdt: Duration },
    #[error(
        "quiet period {quiet:?} is too long to schedule: use at most an hour (the default is \
         40 s)"
    )]
    QuietPeriodTooLong { quiet: Duration },
    #[error("the prober has no member {member} (it has {count})")]
    UnknownMember { member: MemberId, count: usize },
    #[error(
        "member {member}: test address {address} is not an IPv{want} address: give it as the \
         other family's test address"
    )]
    FamilyMismatch {
        member: MemberId,
        address: IpAddr,
        want: u8,
    },
}

/// An echo reply received on a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    pub member: MemberId,
    pub family: Family,
    /// Source address of the reply.
    pub from: IpAddr,
    /// The ICMP / ICMPv6 message, from its header on (no IP header).
    pub icmp: &'a [u8],
    /// Receive timestamp (XDP or kernel), on the monotonic clock `Instant` uses.
    pub rx: Instant,
}

/// An ARP reply or solicited neighbour advertisement received on a member, for its
/// link-layer probes. Such replies carry no sequence number or cookie, so they are matched
/// on everything they echo: the target (`from`), the address the probe named as its sender
/// (`local`), the target's hardware address (`hardware`), and time: only a probe sent before
/// `rx` and still in flight can be answered, each by one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighReply {
    pub member: MemberId,
    pub family: Family,
    /// The target that answered (ARP sender protocol address / NA target).
    pub from: IpAddr,
    /// The reply's destination protocol address (ARP target protocol address / NA
    /// destination).
    pub local: IpAddr,
    /// The replier's hardware address (ARP sender hardware address / Ethernet source).
    pub hardware: [u8; 6],
    /// Receive timestamp, on the monotonic clock `Instant` uses.
    pub rx: Instant,
}

impl NeighReply {
    /// Whether `local` is what our probes name as their sender: 0.0.0.0 in an ARP probe
    /// (RFC 5227), the member's link-local address in a neighbour solicitation.
    fn local_is_ours(&self) -> bool {
        match self.local {
            IpAddr::V4(a) => a.is_unspecified(),
            IpAddr::V6(a) => a.is_unicast_link_local(),
        }
    }
}

/// The group's state as the prober needs it, updated as verdicts are decided within a call.
struct View {
    link_up: Vec<bool>,
    offline: Vec<bool>,
    link_failed: Vec<bool>,
    probe_failed: Vec<bool>,
}

impl View {
    fn running(&self, m: MemberId) -> bool {
        !self.offline[m] && !self.link_failed[m] && !self.probe_failed[m]
    }

    /// No member usable (Group state failed).
    fn group_failed(&self) -> bool {
        !(0..self.offline.len()).any(|m| self.running(m))
    }
}

/// Output under construction; verdicts merge into one Group event.
#[derive(Default)]
struct Out {
    output: ProbeOutput,
    failed: MemberSet,
    repaired: MemberSet,
}

impl Out {
    fn fail(&mut self, m: MemberId) {
        if self.repaired.contains(m) {
            self.repaired.remove(m);
        } else {
            self.failed.insert(m);
        }
    }

    fn repair(&mut self, m: MemberId) {
        if self.failed.contains(m) {
            self.failed.remove(m);
        } else {
            self.repaired.insert(m);
        }
    }

    fn notice(&mut self, n: ProbeNotice) {
        self.output.notices.push(n);
    }

    fn finish(mut self) -> ProbeOutput {
        if !self.failed.is_empty() || !self.repaired.is_empty() {
            self.output.event = Some(Event::Probe {
                failed: self.failed,
                repaired: self.repaired,
            });
        }
        self.output
    }
}

fn record_of(member: MemberId, inst: &Instance, slot: &ProbeSlot) -> Option<ProbeRecord> {
    let outcome = match slot.status {
        ProbeStatus::Unacked => return None,
        ProbeStatus::Acked { rx, done } => ProbeOutcome::Acked { rx, done },
        ProbeStatus::Lost { at } => ProbeOutcome::Lost { at },
    };
    let rtt = slot
        .target
        .and_then(|t| inst.targets.get(t))
        .map(|t| &t.rtt);
    Some(ProbeRecord {
        member,
        family: inst.family,
        seq: slot.seq,
        target: slot.target,
        start: slot.start,
        sent: slot.sent,
        outcome,
        rtt_avg: rtt.and_then(|r| r.avg()),
        rtt_dev: rtt.and_then(|r| r.dev()),
    })
}

/// Forgets the probes in flight to `target` (it left the list): each counts as lost and
/// completes as an `ipmpstat -p` record.
fn drop_target_probes(
    m: MemberId,
    inst: &mut Instance,
    target: IpAddr,
    now: Instant,
    out: &mut Out,
) {
    for s in inst.history.drop_target(target, now) {
        inst.counters.lost += 1;
        if let Some(r) = record_of(m, inst, &s) {
            out.output.records.push(r);
        }
    }
}

/// `later − earlier` in ns, negative when `later` is earlier.
fn signed_ns(later: Instant, earlier: Instant) -> i64 {
    if later >= earlier {
        i64::try_from((later - earlier).as_nanos()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from((earlier - later).as_nanos()).unwrap_or(i64::MAX)
    }
}

/// Probe-based failure detection for one group (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct Prober {
    /// Payload timestamps count from here.
    epoch: Instant,
    cookie: u64,
    quiet_period: Duration,
    fdt: Fdt,
    members: Vec<MemberInstances>,
    /// The host's own addresses: never targets.
    own: HashSet<IpAddr>,
}

impl Prober {
    /// A prober for `group`, whose members it must list in the same order. Members whose link
    /// is up and that are not offline start probing at a random point of the first interval.
    pub fn new<R: Rng + ?Sized>(
        spec: ProbeSpec,
        group: &Group,
        now: Instant,
        rng: &mut R,
    ) -> Result<Self, ProbeError> {
        let n = spec.members.len();
        if n > MemberSet::CAPACITY {
            return Err(ProbeError::TooManyMembers {
                count: n,
                max: MemberSet::CAPACITY,
            });
        }
        if (spec.fdt / PROBES_PER_FDT).is_zero() {
            return Err(ProbeError::FdtTooShort { fdt: spec.fdt });
        }
        let quiet_until = now
            .checked_add(spec.quiet_period)
            .filter(|_| spec.quiet_period <= Duration::from_secs(3600))
            .ok_or(ProbeError::QuietPeriodTooLong {
                quiet: spec.quiet_period,
            })?;
        let mut members = Vec::with_capacity(n);
        for (m, ms) in spec.members.iter().enumerate() {
            let make = |family: Family, fp: FamilyProbe| match fp {
                FamilyProbe::Off => Ok(None),
                FamilyProbe::LinkLayer => Ok(Some(Instance::new(family, None, quiet_until))),
                FamilyProbe::TestAddress(p) => {
                    if Family::of(p.addr) != family {
                        return Err(ProbeError::FamilyMismatch {
                            member: m,
                            address: p.addr,
                            want: if family == Family::V4 { 4 } else { 6 },
                        });
                    }
                    Ok(Some(Instance::new(family, Some(p), quiet_until)))
                }
            };
            let mut mp = MemberInstances {
                icmp_id: ms.icmp_id,
                v4: make(Family::V4, ms.v4)?,
                v6: make(Family::V6, ms.v6)?,
            };
            for inst in mp.instances_mut() {
                for &t in spec
                    .targets
                    .iter()
                    .filter(|t| Family::of(**t) == inst.family)
                {
                    inst.targets.add(t, TargetSource::Configured, now);
                }
            }
            members.push(mp);
        }
        let mut prober = Self {
            epoch: now,
            cookie: spec.cookie,
            quiet_period: spec.quiet_period,
            fdt: Fdt::new(spec.fdt),
            members,
            own: HashSet::new(),
        };
        let view = prober.view(group)?;
        prober.sync_running(&view, now, rng);
        Ok(prober)
    }

    fn view(&self, group: &Group) -> Result<View, ProbeError> {
        let n = group.spec().members.len();
        if n != self.members.len() {
            return Err(ProbeError::GroupMismatch {
                group: group.spec().name.clone(),
                probers: self.members.len(),
                members: n,
            });
        }
        let members: Vec<_> = (0..n).map(|m| group.member(m)).collect();
        Ok(View {
            link_up: members.iter().map(|v| v.link != Carrier::Down).collect(),
            offline: members.iter().map(|v| v.offline).collect(),
            link_failed: (0..n)
                .map(|m| group.fail_cause(m) == Some(FailCause::LinkDown))
                .collect(),
            probe_failed: members.iter().map(|v| v.probe_failed).collect(),
        })
    }

    fn check_member(&self, member: MemberId) -> Result<(), ProbeError> {
        if member < self.members.len() {
            Ok(())
        } else {
            Err(ProbeError::UnknownMember {
                member,
                count: self.members.len(),
            })
        }
    }

    /// Starts probing where the link is up and the member online; stops (and forgets the
    /// probes in flight) elsewhere.
    fn sync_running<R: Rng + ?Sized>(&mut self, view: &View, now: Instant, rng: &mut R) {
        let interval = self.fdt.interval();
        for (m, mp) in self.members.iter_mut().enumerate() {
            let run = view.link_up[m] && !view.offline[m];
            for inst in mp.instances_mut() {
                match (run, inst.schedule.is_some()) {
                    (true, false) => {
                        inst.schedule = Some(Schedule::start(now, interval, rng.random()));
                    }
                    (false, true) => {
                        inst.schedule = None;
                        inst.history.clear();
                    }
                    _ => {}
                }
            }
        }
    }

    // ---- daemon entry points ----------------------------------------------------------

    /// Time passed: probes time out, due probes go out, members are judged.
    pub fn tick<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        group: &Group,
        rng: &mut R,
    ) -> Result<ProbeOutput, ProbeError> {
        let mut view = self.view(group)?;
        self.sync_running(&view, now, rng);
        let mut out = Out::default();
        for m in 0..self.members.len() {
            for family in Family::ALL {
                self.expire(m, family, now, &mut out);
            }
        }
        let ui = self.fdt.user_interval();
        let interval = self.fdt.interval();
        let mut due = Vec::new();
        for (m, mp) in self.members.iter_mut().enumerate() {
            for inst in mp.instances_mut() {
                let Some(sched) = inst.schedule.as_mut() else {
                    continue;
                };
                if !sched.due(now) {
                    continue;
                }
                let missed = sched.advance(now, ui, rng.random());
                let capable = inst.targets.has_active();
                let fd = if capable {
                    sched.take_failure_detection(now, ui, interval)
                } else {
                    sched.sync_failure_detection();
                    true
                };
                if missed > 0 {
                    inst.counters.missed += u64::from(missed);
                    out.notice(ProbeNotice::ProbesMissed {
                        member: m,
                        family: inst.family,
                        count: missed,
                    });
                }
                if fd && capable {
                    for i in inst.history.limit_in_flight(now) {
                        inst.counters.lost += 1;
                        if let Some(r) = inst.history.slot(i).and_then(|s| record_of(m, inst, s)) {
                            out.output.records.push(r);
                        }
                    }
                }
                due.push((m, inst.family, fd));
            }
        }
        for m in 0..self.members.len() {
            self.evaluate(m, now, &mut view, &mut out);
        }
        for (m, family, fd) in due {
            self.send(m, family, fd, now, &mut out);
        }
        Ok(out.finish())
    }

    /// An ICMP echo reply arrived. Returns what became of it; rejected replies are counted
    /// per reason ([`Prober::counters`]).
    pub fn reply(
        &mut self,
        reply: Reply<'_>,
        now: Instant,
        group: &Group,
    ) -> Result<(ReplyOutcome, ProbeOutput), ProbeError> {
        let mut view = self.view(group)?;
        self.check_member(reply.member)?;
        let mut out = Out::default();
        let outcome = self.process_reply(&reply, now, &mut view, &mut out);
        self.count_rejection(reply.member, reply.family, outcome);
        Ok((outcome, out.finish()))
    }

    /// A link-layer probe (ARP / neighbour solicitation) was answered: acks the oldest probe
    /// to the target that is still in flight and was sent before the reply arrived, if the
    /// reply echoes what the probe sent (see [`NeighReply`]).
    pub fn link_layer_reply(
        &mut self,
        reply: NeighReply,
        now: Instant,
        group: &Group,
    ) -> Result<(ReplyOutcome, ProbeOutput), ProbeError> {
        let mut view = self.view(group)?;
        let (member, family) = (reply.member, reply.family);
        self.check_member(member)?;
        let mut out = Out::default();
        let outcome = match self.members[member].get(family) {
            None => ReplyOutcome::Rejected(RejectReason::NotProbing),
            Some(inst) if inst.test.is_some() => ReplyOutcome::Rejected(RejectReason::NotProbing),
            Some(inst) if inst.schedule.is_none() => ReplyOutcome::Rejected(RejectReason::Stopped),
            Some(_) if !reply.local_is_ours() => ReplyOutcome::Rejected(RejectReason::WrongLocal),
            Some(inst) => {
                let learned = inst.targets.get(reply.from).and_then(|t| t.hardware);
                let found = inst.history.iter().position(|s| {
                    s.target == Some(reply.from)
                        && s.status == ProbeStatus::Unacked
                        && s.sent <= reply.rx
                });
                match (found, learned) {
                    (_, Some(hw)) if hw != reply.hardware => {
                        ReplyOutcome::Rejected(RejectReason::WrongHardware)
                    }
                    (Some(i), _) => {
                        let outcome =
                            self.ack(member, family, i, reply.rx, now, &mut view, &mut out);
                        if matches!(outcome, ReplyOutcome::Acked { .. })
                            && let Some(t) = self.members[member]
                                .get_mut(family)
                                .and_then(|inst| inst.targets.get_mut(reply.from))
                        {
                            t.hardware = Some(reply.hardware);
                        }
                        outcome
                    }
                    (None, _) => ReplyOutcome::Rejected(RejectReason::NoProbeInFlight),
                }
            }
        };
        self.count_rejection(member, family, outcome);
        Ok((outcome, out.finish()))
    }

    /// The probe `seq` of `member`/`family` actually left at `at` (NETRTT is measured from
    /// here). Returns false if no such probe is remembered.
    pub fn sent(&mut self, member: MemberId, family: Family, seq: u16, at: Instant) -> bool {
        let Some(inst) = self
            .members
            .get_mut(member)
            .and_then(|mp| mp.get_mut(family))
        else {
            return false;
        };
        let Lookup::Found(i) = inst.history.lookup(seq) else {
            return false;
        };
        match inst.history.slot_mut(i) {
            Some(s) => {
                s.sent = at;
                true
            }
            None => false,
        }
    }

    /// The group applied `Event::Link { member, up }`. Link down stops probing, forgets the
    /// history and, if the member had a target, fails it by probes too (10 fresh acks repair
    /// it after link-up). Link up starts probing again.
    pub fn link<R: Rng + ?Sized>(
        &mut self,
        member: MemberId,
        up: bool,
        now: Instant,
        group: &Group,
        rng: &mut R,
    ) -> Result<ProbeOutput, ProbeError> {
        let mut view = self.view(group)?;
        self.check_member(member)?;
        view.link_up[member] = up;
        let mut out = Out::default();
        let mp = &self.members[member];
        if !up && mp.probing() && mp.capable() && !view.probe_failed[member] {
            out.fail(member);
        }
        if !up {
            for inst in self.members[member].instances_mut() {
                inst.schedule = None;
                inst.history.clear();
            }
        }
        self.sync_running(&view, now, rng);
        Ok(out.finish())
    }

    /// The group applied `Event::Offline { member }`: probing stops.
    pub fn offline(&mut self, member: MemberId, group: &Group) -> Result<(), ProbeError> {
        let mut view = self.view(group)?;
        self.check_member(member)?;
        view.offline[member] = true;
        self.stop_where_needed(&view);
        Ok(())
    }

    fn stop_where_needed(&mut self, view: &View) {
        for (m, mp) in self.members.iter_mut().enumerate() {
            if view.link_up[m] && !view.offline[m] {
                continue;
            }
            for inst in mp.instances_mut() {
                inst.schedule = None;
                inst.history.clear();
            }
        }
    }

    /// The group applied `Event::Online { member }`: probing starts afresh, with a new quiet
    /// period (in.mpathd treats an onlined interface as new).
    pub fn online<R: Rng + ?Sized>(
        &mut self,
        member: MemberId,
        now: Instant,
        group: &Group,
        rng: &mut R,
    ) -> Result<(), ProbeError> {
        let mut view = self.view(group)?;
        self.check_member(member)?;
        view.offline[member] = false;
        let quiet_until = now.checked_add(self.quiet_period).unwrap_or(now);
        for inst in self.members[member].instances_mut() {
            inst.schedule = None;
            inst.history.clear();
            inst.quiet_until = quiet_until;
        }
        self.sync_running(&view, now, rng);
        Ok(())
    }

    /// The on-link routers of the group's routes in `family` changed; `routers` is the full
    /// current list. Members without explicit targets in that family use those inside their
    /// test subnet instead of multicast-discovered hosts.
    pub fn set_routers(&mut self, family: Family, routers: &[IpAddr], now: Instant) -> ProbeOutput {
        let mut out = Out::default();
        for m in 0..self.members.len() {
            let Some(inst) = self.members[m].get(family) else {
                continue;
            };
            if inst.targets.source() == Some(TargetSource::Configured) {
                continue;
            }
            let wanted: Vec<IpAddr> = routers
                .iter()
                .copied()
                .filter(|&r| inst.accepts(r) && !self.is_own(r))
                .collect();
            if inst.targets.source() == Some(TargetSource::Router) {
                let gone: Vec<IpAddr> = inst
                    .targets
                    .iter()
                    .map(|t| t.addr)
                    .filter(|a| !wanted.contains(a))
                    .collect();
                for t in gone {
                    self.remove_target(m, family, t, RemoveReason::NotARouter, now, &mut out);
                }
            }
            for r in wanted {
                self.add_target(m, family, r, TargetSource::Router, now, &mut out);
            }
        }
        out.finish()
    }

    /// The host's own addresses (data addresses, addresses on other interfaces): never taken
    /// as targets. Test addresses of the group are always excluded.
    pub fn set_own_addresses(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        self.own = addrs.into_iter().collect();
    }

    /// When [`tick`](Self::tick) is due next: a probe goes out or one times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let interval = self.fdt.interval();
        self.members
            .iter()
            .flat_map(MemberInstances::instances)
            .filter_map(|inst| inst.next_deadline(interval))
            .min()
    }

    // ---- views -------------------------------------------------------------------------

    /// The group's FDT state (ipmpstat -g FDT is `fdt().current()`).
    pub fn fdt(&self) -> &Fdt {
        &self.fdt
    }

    /// Payload timestamps are ns since this instant.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Whether `member` probes in some family.
    pub fn is_probing(&self, member: MemberId) -> bool {
        self.members
            .get(member)
            .is_some_and(MemberInstances::probing)
    }

    /// ipmpstat -i PROBE: disabled (no probing), failed (probes failed it), unknown (no
    /// target, or no probe answered since probing last started: after start-up, a link-up or
    /// an online, as in.mpathd), ok.
    pub fn probe_state(&self, member: MemberId, group: &Group) -> ProbeHealth {
        let Some(mp) = self.members.get(member) else {
            return ProbeHealth::Disabled;
        };
        if !mp.probing() {
            ProbeHealth::Disabled
        } else if member < group.spec().members.len() && group.member(member).probe_failed {
            ProbeHealth::Failed
        } else if !mp.capable() || !mp.instances().any(|i| i.history.any_acked()) {
            ProbeHealth::Unknown
        } else {
            ProbeHealth::Ok
        }
    }

    /// ipmpstat -t: one row per family `member` probes in (none: one `disabled` row).
    pub fn target_rows(&self, member: MemberId) -> Vec<TargetRow> {
        let Some(mp) = self.members.get(member) else {
            return Vec::new();
        };
        mp.instances()
            .map(|inst| TargetRow {
                member,
                family: inst.family,
                mode: match (inst.targets.source(), inst.test) {
                    (Some(TargetSource::Router | TargetSource::Configured), _) => {
                        TargetMode::Routes
                    }
                    (Some(TargetSource::Host), _) | (None, Some(_)) => TargetMode::Multicast,
                    (None, None) => TargetMode::Disabled,
                },
                test_address: inst.test_address(),
                targets: inst.targets.firing_order(),
            })
            .collect()
    }

    /// The targets of `member` in `family`.
    pub fn targets(&self, member: MemberId, family: Family) -> Option<&Targets> {
        self.instance(member, family).map(|i| &i.targets)
    }

    /// The probe history of `member` in `family`.
    pub fn history(&self, member: MemberId, family: Family) -> Option<&super::history::History> {
        self.instance(member, family).map(|i| &i.history)
    }

    /// The counters of `member` in `family`.
    pub fn counters(
        &self,
        member: MemberId,
        family: Family,
    ) -> Option<&super::defs::ProbeCounters> {
        self.instance(member, family).map(|i| &i.counters)
    }

    /// When `member`'s quiet period in `family` ends (or ended).
    pub fn quiet_until(&self, member: MemberId, family: Family) -> Option<Instant> {
        self.instance(member, family).map(|i| i.quiet_until)
    }

    fn instance(&self, member: MemberId, family: Family) -> Option<&Instance> {
        self.members.get(member).and_then(|mp| mp.get(family))
    }

    // ---- internals ---------------------------------------------------------------------

    fn is_own(&self, addr: IpAddr) -> bool {
        self.own.contains(&addr)
            || self
                .members
                .iter()
                .flat_map(MemberInstances::instances)
                .any(|i| i.test_address() == Some(addr))
    }

    fn count_rejection(&mut self, member: MemberId, family: Family, outcome: ReplyOutcome) {
        if let ReplyOutcome::Rejected(reason) = outcome
            && let Some(inst) = self
                .members
                .get_mut(member)
                .and_then(|mp| mp.get_mut(family))
        {
            inst.counters.reject(reason);
        }
    }

    fn stamp(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn request(
        &self,
        member: MemberId,
        inst: &Instance,
        kind: ProbeKind,
        dst: IpAddr,
        seq: u16,
        now: Instant,
    ) -> ProbeRequest {
        let src = inst.test_address();
        let icmp = src.map(|_| {
            payload::build_request(
                inst.family,
                &Echo {
                    id: self.members[member].icmp_id,
                    seq,
                    timestamp_ns: self.stamp(now),
                    kind,
                    cookie: self.cookie,
                },
            )
        });
        ProbeRequest {
            member,
            family: inst.family,
            kind,
            dst,
            src,
            seq,
            start: now,
            icmp,
        }
    }
}
