//! The prober's sending side: probes that time out, probes going out, target discovery, adding,
//! removing and blaming targets.

use super::*;

impl Prober {
    /// Probes in flight whose timeout came are lost.
    pub(super) fn expire(&mut self, m: MemberId, family: Family, now: Instant, out: &mut Out) {
        let interval = self.fdt.interval();
        let Some(inst) = self.members[m].get_mut(family) else {
            return;
        };
        let Instance {
            history, targets, ..
        } = inst;
        let lost = history.expire(now, |t| timeout(targets, t, interval));
        inst.counters.lost += lost.len() as u64;
        for i in lost {
            if let Some(r) = inst.history.slot(i).and_then(|s| record_of(m, inst, s)) {
                out.output.records.push(r);
            }
        }
    }

    /// Sends the probe of a timer firing.
    pub(super) fn send(
        &mut self,
        m: MemberId,
        family: Family,
        fd: bool,
        now: Instant,
        out: &mut Out,
    ) {
        let Some(inst) = self.members[m].get(family) else {
            return;
        };
        if inst.schedule.is_none() {
            return;
        }
        if !inst.capable() {
            self.discover(m, family, now, out);
            return;
        }
        if !fd {
            let Some(dst) = inst.targets.rtt_next() else {
                return;
            };
            let req = self.request(m, inst, ProbeKind::RttOnly, dst, inst.history.snxt(), now);
            out.output.sends.push(req);
            if let Some(inst) = self.members[m].get_mut(family) {
                inst.counters.rtt_probes += 1;
                inst.targets.advance_rtt(now);
            }
            return;
        }
        let Some(dst) = inst.targets.next() else {
            return;
        };
        let seq = inst.history.snxt();
        let req = self.request(m, inst, ProbeKind::Unicast, dst, seq, now);
        out.output.sends.push(req);
        let lone_host =
            inst.targets.source() == Some(TargetSource::Host) && inst.targets.active_count() == 1;
        if let Some(inst) = self.members[m].get_mut(family) {
            inst.history.push(dst, now);
            inst.counters.sent += 1;
            inst.targets.advance(now);
        }
        if lone_host {
            // One host target is no resilience: look for more.
            self.discover(m, family, now, out);
        }
    }

    /// A multicast echo to find host targets (only with a test address).
    pub(super) fn discover(&mut self, m: MemberId, family: Family, now: Instant, out: &mut Out) {
        let Some(inst) = self.members[m].get(family) else {
            return;
        };
        if inst.test.is_none() {
            return;
        }
        let req = self.request(
            m,
            inst,
            ProbeKind::Discovery,
            family.all_nodes(),
            inst.history.snxt(),
            now,
        );
        out.output.sends.push(req);
        if let Some(inst) = self.members[m].get_mut(family) {
            inst.counters.discovery_probes += 1;
        }
    }

    pub(super) fn add_target(
        &mut self,
        m: MemberId,
        family: Family,
        addr: IpAddr,
        source: TargetSource,
        now: Instant,
        out: &mut Out,
    ) -> bool {
        let Some(inst) = self.members[m].get_mut(family) else {
            return false;
        };
        let added = inst.targets.add(addr, source, now);
        for gone in added.replaced {
            drop_target_probes(m, inst, gone, now, out);
            out.notice(ProbeNotice::TargetRemoved {
                member: m,
                family,
                target: gone,
                reason: RemoveReason::Replaced,
            });
        }
        if added.added {
            out.notice(ProbeNotice::TargetAdded {
                member: m,
                family,
                target: addr,
                source,
            });
        }
        added.added
    }

    pub(super) fn remove_target(
        &mut self,
        m: MemberId,
        family: Family,
        addr: IpAddr,
        reason: RemoveReason,
        now: Instant,
        out: &mut Out,
    ) {
        let Some(inst) = self.members[m].get_mut(family) else {
            return;
        };
        if inst.targets.remove(addr, now).is_none() {
            return;
        }
        drop_target_probes(m, inst, addr, now, out);
        if inst.targets.is_empty() {
            // in.mpathd clear_pii_probe_stats: without targets the history means nothing.
            inst.history.clear();
        }
        out.notice(ProbeNotice::TargetRemoved {
            member: m,
            family,
            target: addr,
            reason,
        });
    }

    /// `target` alone keeps losing probes while the member does not: not the member's fault.
    pub(super) fn blame(
        &mut self,
        m: MemberId,
        family: Family,
        target: IpAddr,
        now: Instant,
        out: &mut Out,
    ) {
        let Some(inst) = self.members[m].get_mut(family) else {
            return;
        };
        if inst
            .targets
            .source()
            .is_some_and(TargetSource::is_persistent)
        {
            inst.targets.demote(target, TargetStatus::Dead, now);
            // Its old losses must not condemn it again when it comes back.
            drop_target_probes(m, inst, target, now, out);
            out.notice(ProbeNotice::TargetDemoted {
                member: m,
                family,
                target,
                status: TargetStatus::Dead,
            });
        } else {
            self.remove_target(m, family, target, RemoveReason::Unresponsive, now, out);
            self.discover(m, family, now, out);
        }
    }
}
