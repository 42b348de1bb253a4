//! Probe-based failure detection: Solaris in.mpathd's algorithm (mpd_probe.c, mpd_tables.c),
//! pure — no sockets, no clock, no random source of its own. Time comes in as [`Instant`](std::time::Instant)s,
//! randomness through the caller's [`rand::Rng`], packets as byte slices; what to send, what
//! to log and the verdicts for the group state machine go out as values.
//!
//! - [`rtt`]: Jacobson/Karels RTT estimate per (member, target): CRTT, the probe timeout.
//! - [`fdt`]: the group's failure detection time and probe interval (FDT / 7), raised when
//!   targets are too slow and lowered again after settling.
//! - [`targets`]: a member's targets per family: configured, else on-link routers, else hosts
//!   found by multicast echo; dead and slow targets and their recovery.
//! - [`history`]: the last [`PROBE_STATS_COUNT`] probes per member and family: sequence
//!   window, losses, runs of losses and acks.
//! - [`schedule`]: when probes go out (random point in [0.5, 1] × interval after a periodic
//!   base).
//! - [`payload`]: the echo message with the daemon's cookie, and reply validation.
//! - [`prober`]: [`Prober`], one per group: the per-member state machines, interface vs group
//!   failure, FDT adaptation (its work split into `sending`, `replies` and `verdicts`). Its
//!   documentation says what a daemon calls when.
//! - [`report`]: requests, records (ipmpstat -p), notices (logs) and -t rows; `wording`: how
//!   the notices read in the log.
//!
//! Where this differs from in.mpathd, the item's documentation says so and why.

mod defs;
pub mod fdt;
pub mod history;
pub mod payload;
pub mod prober;
pub mod report;
pub mod rtt;
pub mod schedule;
pub mod targets;
mod wording;

mod member;
#[cfg(test)]
mod tests;

pub use defs::*;
pub use prober::{FamilyProbe, NeighReply, ProbeError, ProbePlan, ProbeSpec, Prober, Reply};
pub use report::{
    ProbeHealth, ProbeNotice, ProbeOutcome, ProbeOutput, ProbeRecord, ProbeRequest, ReplyOutcome,
    TargetMode, TargetRow,
};

#[cfg(test)]
mod constant_tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn constants_are_in_mpathd_s() {
        assert_eq!(NUM_PROBE_FAILS, 5);
        assert_eq!(NUM_PROBE_REPAIRS, 10);
        assert_eq!(PROBES_PER_FDT, 7);
        assert_eq!(PROBE_STATS_COUNT, 52);
        assert_eq!((MIN_RANDOM_FACTOR, MAX_RANDOM_FACTOR), (0.5, 1.0));
        assert_eq!((MIN_PROBE_TARGETS, MAX_PROBE_TARGETS), (3, 5));
        assert_eq!(MIN_RECOVERY_TIME, Duration::from_secs(60));
        assert_eq!(MIN_SETTLING_TIME, Duration::from_secs(60));
        assert_eq!(
            (NEXT_FDT_MULTIPLE, LOWER_FDT_TRIGGER, EXCEPTION_FACTOR),
            (2, 4, 2)
        );
        assert_eq!(FAILURE_DETECTION_QP, Duration::from_secs(40));
        assert_eq!(MAXDEFERREDRTT, 1);
    }

    #[test]
    fn all_nodes_addresses() {
        assert_eq!(Family::V4.all_nodes().to_string(), "224.0.0.1");
        assert_eq!(Family::V6.all_nodes().to_string(), "ff02::1");
        assert_eq!(Family::of(Family::V6.all_nodes()), Family::V6);
    }

    #[test]
    fn forged_and_stale_counts() {
        let mut c = ProbeCounters::default();
        c.reject(RejectReason::BadCookie);
        c.reject(RejectReason::BadCookie);
        c.reject(RejectReason::WrongSource);
        c.reject(RejectReason::OutOfWindow);
        assert_eq!(c.forged(), 3);
        assert_eq!(c.stale(), 1);
        assert_eq!(c.rejected[&RejectReason::BadCookie], 2);
    }
}
