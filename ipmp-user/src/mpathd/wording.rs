//! How probing's notices read in the log: worded like in.mpathd's messages where it has one.

use std::time::Duration;

use super::{
    defs::NUM_PROBE_REPAIRS,
    report::{ProbeNotice, RemoveReason},
};
use crate::group::MemberId;

impl ProbeNotice {
    /// A log line for this notice, with member names from `names` (the group's member order) and
    /// the group's name, worded like in.mpathd's messages where it has one.
    pub fn describe(&self, group: &str, names: &[&str]) -> String {
        let notice = self;
        let name = |m: MemberId| names.get(m).copied().unwrap_or("?");
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match notice {
            ProbeNotice::FdtRaised {
                member,
                family,
                target,
                crtt,
                requested,
                fdt,
            } => format!(
                "cannot meet requested failure detection time of {:.1} ms on ({family} {}): \
                 target {target} has a conservative RTT of {:.3} ms; new failure detection \
                 time for group \"{group}\" is {:.1} ms",
                ms(*requested),
                name(*member),
                ms(*crtt),
                ms(*fdt)
            ),
            ProbeNotice::FdtLowered {
                member,
                family,
                fdt,
            } => format!(
                "improved failure detection time {:.1} ms on ({family} {}) for group \"{group}\"",
                ms(*fdt),
                name(*member)
            ),
            ProbeNotice::TargetAdded {
                member,
                family,
                target,
                source,
            } => format!(
                "probe target {target} ({source}) added on ({family} {})",
                name(*member)
            ),
            ProbeNotice::TargetRemoved {
                member,
                family,
                target,
                reason,
            } => format!(
                "probe target {target} removed on ({family} {}): {}",
                name(*member),
                match reason {
                    RemoveReason::Unresponsive =>
                        "it alone stopped answering; looking for another by multicast",
                    RemoveReason::Slow => "much slower than the others; looking for another",
                    RemoveReason::Replaced => "replaced by a better kind of target",
                    RemoveReason::NotARouter => "no longer an on-link router",
                    RemoveReason::GroupFailure =>
                        "host targets are rediscovered after a group failure",
                }
            ),
            ProbeNotice::TargetDemoted {
                member,
                family,
                target,
                status,
            } => format!(
                "probe target {target} on ({family} {}) marked {status}; retried after {} s",
                name(*member),
                super::defs::MIN_RECOVERY_TIME.as_secs()
            ),
            ProbeNotice::InterfaceFailure { member } => format!(
                "IP interface failure detected on {} of group {group} (probes lost)",
                name(*member)
            ),
            ProbeNotice::GroupFailure { member } => format!(
                "all probe targets of group {group} stopped answering (detected on {}): group \
                 failure, every probing member is failed",
                name(*member)
            ),
            ProbeNotice::ProbeRepair { member } => format!(
                "{} probes acked in a row on {} of group {group}",
                NUM_PROBE_REPAIRS,
                name(*member)
            ),
            ProbeNotice::ProbesMissed {
                member,
                family,
                count,
            } => format!(
                "missed sending {count} probes on ({family} {}): the daemon ran late",
                name(*member)
            ),
        }
    }
}
