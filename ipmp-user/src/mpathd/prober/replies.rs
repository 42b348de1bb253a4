//! The prober's replies side: a reply matched to its probe, acks, RTT-only replies, FDT
//! adaptation, responders found by multicast discovery.

use super::*;

impl Prober {
    pub(super) fn process_reply(
        &mut self,
        reply: &Reply<'_>,
        now: Instant,
        view: &mut View,
        out: &mut Out,
    ) -> ReplyOutcome {
        let (m, family) = (reply.member, reply.family);
        let mp = &self.members[m];
        let Some(inst) = mp.get(family) else {
            return ReplyOutcome::Rejected(RejectReason::NotProbing);
        };
        if inst.test.is_none() {
            return ReplyOutcome::Rejected(RejectReason::NotProbing);
        }
        if inst.schedule.is_none() {
            return ReplyOutcome::Rejected(RejectReason::Stopped);
        }
        let echo = match payload::validate_reply(family, reply.icmp, mp.icmp_id, self.cookie) {
            Ok(e) => e,
            Err(r) => return ReplyOutcome::Rejected(r),
        };
        match echo.kind {
            ProbeKind::Discovery => self.responder(family, reply.from, now, out),
            ProbeKind::RttOnly => self.rtt_reply(m, family, &echo, reply, now, view, out),
            ProbeKind::Unicast => {
                let i = match inst.history.lookup(echo.seq) {
                    Lookup::OutOfWindow => {
                        return ReplyOutcome::Rejected(RejectReason::OutOfWindow);
                    }
                    Lookup::NeverSent => return ReplyOutcome::Rejected(RejectReason::NeverSent),
                    Lookup::Found(i) => i,
                };
                let Some(slot) = inst.history.slot(i) else {
                    return ReplyOutcome::Rejected(RejectReason::NeverSent);
                };
                let Some(target) = slot.target else {
                    return ReplyOutcome::Rejected(RejectReason::TargetGone);
                };
                if target != reply.from {
                    return ReplyOutcome::Rejected(RejectReason::WrongSource);
                }
                if matches!(slot.status, ProbeStatus::Acked { .. }) {
                    return ReplyOutcome::Rejected(RejectReason::Duplicate);
                }
                if echo.timestamp_ns != self.stamp(slot.start) {
                    return ReplyOutcome::Rejected(RejectReason::BadTimestamp);
                }
                self.ack(m, family, i, reply.rx, now, view, out)
            }
        }
    }

    /// Acks probe `i` of `m`/`family`: RTT sample, FDT adaptation, record, repair check.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per reply kind; a struct would only rename the arguments"
    )]
    pub(super) fn ack(
        &mut self,
        m: MemberId,
        family: Family,
        i: usize,
        rx: Instant,
        now: Instant,
        view: &mut View,
        out: &mut Out,
    ) -> ReplyOutcome {
        let interval = self.fdt.interval();
        let learn = view.running(m) && !view.group_failed();
        let Some(inst) = self.members[m].get_mut(family) else {
            return ReplyOutcome::Rejected(RejectReason::NotProbing);
        };
        let Some(slot) = inst.history.slot(i).copied() else {
            return ReplyOutcome::Rejected(RejectReason::NeverSent);
        };
        let Some(target) = slot.target else {
            return ReplyOutcome::Rejected(RejectReason::TargetGone);
        };
        let late = matches!(slot.status, ProbeStatus::Lost { .. });
        let rx = rx.min(now);
        let newest = inst.history.newest_ack_for(target, i);
        if let Some(s) = inst.history.slot_mut(i) {
            s.status = ProbeStatus::Acked { rx, done: now };
        }
        inst.counters.acked += 1;
        if late {
            inst.counters.late += 1;
        }
        // The first ack ends the quiet period: the switch forwards.
        if inst.quiet_until > now {
            inst.quiet_until = now;
        }
        let mut crtt = None;
        if learn
            && newest
            && let Some(t) = inst.targets.get_mut(target)
        {
            let sample = t
                .rtt
                .sample(signed_ns(rx, slot.start), interval, SampleKind::Probe);
            if sample.changed() {
                crtt = t.rtt.crtt();
            }
        }
        if let Some(r) = inst.history.slot(i).and_then(|s| record_of(m, inst, s)) {
            out.output.records.push(r);
        }
        if let Some(crtt) = crtt {
            self.adapt(m, family, target, crtt, SampleKind::Probe, now, view, out);
        }
        self.evaluate(m, now, view, out);
        ReplyOutcome::Acked {
            seq: slot.seq,
            late,
        }
    }

    /// in.mpathd `incoming_rtt_reply`.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors ack(); the reply and the call's context"
    )]
    pub(super) fn rtt_reply(
        &mut self,
        m: MemberId,
        family: Family,
        echo: &Echo,
        reply: &Reply<'_>,
        now: Instant,
        view: &mut View,
        out: &mut Out,
    ) -> ReplyOutcome {
        let interval = self.fdt.interval();
        let learn = view.running(m) && !view.group_failed();
        let start = self
            .epoch
            .checked_add(Duration::from_nanos(echo.timestamp_ns));
        let Some(inst) = self.members[m].get_mut(family) else {
            return ReplyOutcome::Rejected(RejectReason::NotProbing);
        };
        let Some(t) = inst.targets.get_mut(reply.from) else {
            return ReplyOutcome::Rejected(RejectReason::UnknownTarget);
        };
        let Some(start) = start else {
            return ReplyOutcome::Rejected(RejectReason::BadTimestamp);
        };
        if !learn {
            return ReplyOutcome::RttSample { applied: false };
        }
        let sample = t.rtt.sample(
            signed_ns(reply.rx.min(now), start),
            interval,
            SampleKind::RttOnly,
        );
        let crtt = t.rtt.crtt();
        if sample.changed()
            && let Some(crtt) = crtt
        {
            self.adapt(
                m,
                family,
                reply.from,
                crtt,
                SampleKind::RttOnly,
                now,
                view,
                out,
            );
        }
        ReplyOutcome::RttSample {
            applied: sample.changed(),
        }
    }

    /// FDT adaptation after `target`'s CRTT changed to `crtt`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the sample's identity and the call's context"
    )]
    pub(super) fn adapt(
        &mut self,
        m: MemberId,
        family: Family,
        target: IpAddr,
        crtt: Duration,
        kind: SampleKind,
        now: Instant,
        view: &View,
        out: &mut Out,
    ) {
        let interval = self.fdt.interval();
        if kind == SampleKind::Probe && crtt > interval {
            let Some(inst) = self.members[m].get_mut(family) else {
                return;
            };
            if inst.targets.is_exception(target, interval) {
                if inst
                    .targets
                    .source()
                    .is_some_and(TargetSource::is_persistent)
                {
                    inst.targets.demote(target, TargetStatus::Slow, now);
                    out.notice(ProbeNotice::TargetDemoted {
                        member: m,
                        family,
                        target,
                        status: TargetStatus::Slow,
                    });
                } else {
                    self.remove_target(m, family, target, RemoveReason::Slow, now, out);
                    self.discover(m, family, now, out);
                }
            } else {
                let requested = self.fdt.user();
                let fdt = self.fdt.raise(crtt, now);
                out.notice(ProbeNotice::FdtRaised {
                    member: m,
                    family,
                    target,
                    crtt,
                    requested,
                    fdt,
                });
            }
        } else if self.fdt.may_lower(crtt, now) && self.all_improved(view) {
            let fdt = self.fdt.lower();
            out.notice(ProbeNotice::FdtLowered {
                member: m,
                family,
                fdt,
            });
        }
    }

    /// in.mpathd `check_pg_crtt_improved`: every active target of every working member is at
    /// most interval / 4.
    pub(super) fn all_improved(&self, view: &View) -> bool {
        self.members.iter().enumerate().all(|(m, mp)| {
            !view.running(m)
                || mp.instances().all(|inst| {
                    !inst.capable() || inst.targets.all_active_crtt(|c| self.fdt.improved(c))
                })
        })
    }

    /// in.mpathd `incoming_mcast_reply`: a host answered the multicast echo; it becomes a
    /// target of every member probing in `family` that can take it.
    pub(super) fn responder(
        &mut self,
        family: Family,
        from: IpAddr,
        now: Instant,
        out: &mut Out,
    ) -> ReplyOutcome {
        let unusable = from.is_unspecified()
            || from.is_multicast()
            || Family::of(from) != family
            || self.is_own(from)
            || matches!(from, IpAddr::V6(a) if !a.is_unicast_link_local());
        if unusable {
            return ReplyOutcome::Rejected(RejectReason::UnusableResponder);
        }
        let mut added = 0;
        for m in 0..self.members.len() {
            let accepts = self.members[m]
                .get(family)
                .is_some_and(|inst| inst.accepts(from));
            if accepts && self.add_target(m, family, from, TargetSource::Host, now, out) {
                added += 1;
            }
        }
        ReplyOutcome::Responder { added }
    }
}
