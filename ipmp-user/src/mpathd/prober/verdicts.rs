//! The prober's verdicts on members: failure while a member works (and whether the network works
//! elsewhere, else it is a group failure), repair while it is failed by probes.

use super::*;

impl Prober {
    /// Judges member `m`: failure while it works, repair while it is failed by probes.
    pub(super) fn evaluate(&mut self, m: MemberId, now: Instant, view: &mut View, out: &mut Out) {
        if !self.members[m].probing() || view.offline[m] {
            return;
        }
        if !view.probe_failed[m] {
            if view.running(m) {
                self.check_failure(m, now, view, out);
            }
        } else if view.link_up[m] && self.repaired(m) {
            out.repair(m);
            view.probe_failed[m] = false;
            out.notice(ProbeNotice::ProbeRepair { member: m });
        }
    }

    pub(super) fn check_failure(
        &mut self,
        m: MemberId,
        now: Instant,
        view: &mut View,
        out: &mut Out,
    ) {
        for family in Family::ALL {
            let Some(inst) = self.members[m].get(family) else {
                continue;
            };
            if !inst.capable() || inst.in_quiet(now) {
                continue;
            }
            let info = inst.history.fail_info();
            if info.nfail >= NUM_PROBE_FAILS {
                continue;
            }
            let blamed: Vec<IpAddr> = info
                .per_target
                .iter()
                .filter(|(t, n)| {
                    *n >= NUM_PROBE_FAILS
                        && inst
                            .targets
                            .get(*t)
                            .is_some_and(|x| x.status == TargetStatus::Active)
                })
                .map(|(t, _)| *t)
                .collect();
            for t in blamed {
                self.blame(m, family, t, now, out);
            }
        }
        let mut tff: Option<Instant> = None;
        let mut any = false;
        for inst in self.members[m].instances() {
            if !inst.capable() {
                continue;
            }
            if inst.in_quiet(now) {
                return;
            }
            let info = inst.history.fail_info();
            if info.nfail < NUM_PROBE_FAILS {
                return;
            }
            any = true;
            tff = match (tff, info.tff) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if !any {
            return;
        }
        if self.network_works_elsewhere(m, tff, view) {
            out.fail(m);
            view.probe_failed[m] = true;
            for inst in self.members[m].instances_mut() {
                inst.targets.reset_rtt();
            }
            out.notice(ProbeNotice::InterfaceFailure { member: m });
        } else {
            self.group_failure(m, now, view, out);
        }
    }

    /// in.mpathd `failure_state`: does another member prove the network works?
    pub(super) fn network_works_elsewhere(
        &self,
        m: MemberId,
        tff: Option<Instant>,
        view: &View,
    ) -> bool {
        for (m2, mp) in self.members.iter().enumerate() {
            if m2 == m || !view.link_up[m2] {
                continue;
            }
            if !mp.probing() {
                // Link up without probing counts as working.
                if !view.offline[m2] {
                    return true;
                }
                continue;
            }
            if !view.running(m2) || view.group_failed() {
                continue;
            }
            for inst in mp.instances() {
                if let Some(tls) = inst.history.success_info().tls
                    && tff.is_none_or(|t| tls > t)
                {
                    return true;
                }
            }
        }
        false
    }

    /// Every probing member fails at once; estimates reset; host targets flushed.
    pub(super) fn group_failure(
        &mut self,
        m: MemberId,
        now: Instant,
        view: &mut View,
        out: &mut Out,
    ) {
        for m2 in 0..self.members.len() {
            if !self.members[m2].probing() {
                continue;
            }
            if !view.probe_failed[m2] {
                out.fail(m2);
                view.probe_failed[m2] = true;
            }
            for family in Family::ALL {
                let Some(inst) = self.members[m2].get_mut(family) else {
                    continue;
                };
                inst.targets.reset_rtt();
                // Every member lost its target at once: it may have a new NIC.
                inst.targets.forget_hardware();
                if inst.targets.source() == Some(TargetSource::Host) {
                    let hosts: Vec<IpAddr> = inst.targets.iter().map(|t| t.addr).collect();
                    for t in hosts {
                        self.remove_target(m2, family, t, RemoveReason::GroupFailure, now, out);
                    }
                }
            }
        }
        out.notice(ProbeNotice::GroupFailure { member: m });
    }

    /// in.mpathd `phyint_repaired`: the newest completed probe was acked and 10 in a row were
    /// (overall or to one target), on either family.
    pub(super) fn repaired(&self, m: MemberId) -> bool {
        self.members[m].instances().any(|inst| {
            let newest_acked = inst
                .history
                .newest_completed()
                .is_some_and(|s| matches!(s.status, ProbeStatus::Acked { .. }));
            let s = inst.history.success_info();
            inst.capable()
                && newest_acked
                && (s.nsucc >= NUM_PROBE_REPAIRS || s.nsucc_target >= NUM_PROBE_REPAIRS)
        })
    }
}
