//! Round-trip time estimation per (member, target): Jacobson/Karels ("Congestion Avoidance and
//! Control", SIGCOMM '88, appendix A.2), in nanoseconds, as in.mpathd's `compute_crtt` and
//! `pi_set_crtt` do it.
//!
//! - `sa` is 8× the smoothed average, `sv` 4× the mean deviation. The first sample `m` sets
//!   `sa = 8m`, `sv = 2m`; every later one computes `err = m − sa/8`, `sa += err` (never below
//!   0), `sv += |err| − sv/4`.
//! - CRTT (conservative RTT, the probe timeout) is `sa/8 + sv` = average + 4 × mean deviation.
//! - A failure-detection sample that alone would push CRTT above the probe interval is suspect
//!   and deferred ([`MAXDEFERREDRTT`] of them); the next suspect one folds all deferred samples
//!   in, in order. A good sample drops the deferred ones.
//! - RTT-only samples (probes sent while the FDT is raised) are applied only when they lower
//!   CRTT, so they bring a raised FDT back down faster but never raise it.
//! - Samples that are negative or longer than [`PROBE_STATS_COUNT`] probe intervals are taken as
//!   clock or scheduling trouble and ignored.

use std::time::Duration;

use super::defs::{MAXDEFERREDRTT, PROBE_STATS_COUNT};

/// What a sample is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// The reply to a failure-detection probe: may raise or lower CRTT.
    Probe,
    /// The reply to an RTT-only probe: applied only if it lowers CRTT.
    RttOnly,
}

/// What [`RttEstimator::sample`] did with a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleOutcome {
    /// Folded into the estimate.
    Applied,
    /// Suspect (it alone would push CRTT above the probe interval): kept aside.
    Deferred,
    /// Suspect again: the deferred samples and this one were folded in, in order.
    FoldedDeferred,
    /// An RTT-only sample that would not lower CRTT: dropped.
    NotLower,
    /// Negative: a clock problem.
    Negative,
    /// Longer than [`PROBE_STATS_COUNT`] probe intervals: a scheduling stall, not the network.
    TooLong,
}

impl SampleOutcome {
    /// Whether the estimate (and so CRTT) changed.
    pub fn changed(self) -> bool {
        matches!(self, Self::Applied | Self::FoldedDeferred)
    }
}

/// The RTT estimate of one target as seen from one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RttEstimator {
    /// 8 × smoothed average in ns; `None` until the first sample is applied.
    sa: Option<i64>,
    /// 4 × mean deviation in ns.
    sv: i64,
    /// Suspect samples awaiting confirmation, oldest first (at most [`MAXDEFERREDRTT`]).
    deferred: Vec<i64>,
}

/// One Jacobson/Karels step from `(sa, sv)` with measurement `m` (ns).
fn step(sa: Option<i64>, sv: i64, m: i64) -> (i64, i64) {
    match sa {
        None => (m.saturating_mul(8), m.saturating_mul(2)),
        Some(sa) => {
            let err = m.saturating_sub(sa >> 3);
            let sa = sa.saturating_add(err).max(0);
            let sv = sv.saturating_add(err.saturating_abs().saturating_sub(sv >> 2));
            (sa, sv)
        }
    }
}

fn crtt_of(sa: i64, sv: i64) -> i64 {
    (sa >> 3).saturating_add(sv)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn duration(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

impl RttEstimator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one measurement `m_ns` (ns); `interval` is the group's current probe interval.
    pub fn sample(&mut self, m_ns: i64, interval: Duration, kind: SampleKind) -> SampleOutcome {
        if m_ns < 0 {
            return SampleOutcome::Negative;
        }
        let limit = nanos(interval).saturating_mul(PROBE_STATS_COUNT as i64);
        if m_ns > limit {
            return SampleOutcome::TooLong;
        }
        let (sa, sv) = step(self.sa, self.sv, m_ns);
        let new_crtt = crtt_of(sa, sv);
        if kind == SampleKind::Probe && new_crtt > nanos(interval) {
            if self.deferred.len() >= MAXDEFERREDRTT {
                // The link really did slow down: take every deferred sample, then this one.
                let mut all = std::mem::take(&mut self.deferred);
                all.push(m_ns);
                for m in all {
                    let (sa, sv) = step(self.sa, self.sv, m);
                    self.sa = Some(sa);
                    self.sv = sv;
                }
                return SampleOutcome::FoldedDeferred;
            }
            self.deferred.push(m_ns);
            return SampleOutcome::Deferred;
        }
        let lowers = self.crtt_ns().is_some_and(|c| new_crtt < c);
        if kind == SampleKind::Probe || lowers {
            self.sa = Some(sa);
            self.sv = sv;
            if kind == SampleKind::Probe {
                // Probes are answered within the estimate again: the suspects were flukes.
                self.deferred.clear();
            }
            SampleOutcome::Applied
        } else {
            SampleOutcome::NotLower
        }
    }

    /// Forgets everything (in.mpathd `reset_crtt_all`: after a failure, or when a target is
    /// marked slow or dead).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn crtt_ns(&self) -> Option<i64> {
        self.sa.map(|sa| crtt_of(sa, self.sv))
    }

    /// Conservative RTT (`sa/8 + sv`), the probe timeout; `None` before the first sample.
    pub fn crtt(&self) -> Option<Duration> {
        self.crtt_ns().map(duration)
    }

    /// Smoothed average (`sa/8`), ipmpstat -p RTTAVG.
    pub fn avg(&self) -> Option<Duration> {
        self.sa.map(|sa| duration(sa >> 3))
    }

    /// Mean deviation (`sv/4`), ipmpstat -p RTTDEV (Solaris calls it a standard deviation).
    pub fn dev(&self) -> Option<Duration> {
        self.sa.map(|_| duration(self.sv >> 2))
    }

    /// Raw scaled state `(sa, sv)` for tests and debugging.
    pub fn scaled(&self) -> Option<(i64, i64)> {
        self.sa.map(|sa| (sa, self.sv))
    }

    /// How many suspect samples wait.
    pub fn deferred(&self) -> usize {
        self.deferred.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const BIG: Duration = Duration::from_secs(10);

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    #[test]
    fn first_sample_sets_sa_8m_sv_2m() {
        let mut e = RttEstimator::new();
        assert_eq!(e.crtt(), None);
        assert_eq!(e.avg(), None);
        assert_eq!(e.dev(), None);
        assert_eq!(
            e.sample(1000, BIG, SampleKind::Probe),
            SampleOutcome::Applied
        );
        assert_eq!(e.scaled(), Some((8000, 2000)));
        assert_eq!(e.crtt(), Some(ns(3000)));
        assert_eq!(e.avg(), Some(ns(1000)));
        assert_eq!(e.dev(), Some(ns(500)));
    }

    #[test]
    fn later_samples_follow_jacobson_karels_by_hand() {
        let mut e = RttEstimator::new();
        e.sample(1000, BIG, SampleKind::Probe);
        // err = 2000 - 1000 = 1000; sa = 9000; sv = 2000 + 1000 - 500 = 2500.
        e.sample(2000, BIG, SampleKind::Probe);
        assert_eq!(e.scaled(), Some((9000, 2500)));
        assert_eq!(e.crtt(), Some(ns(1125 + 2500)));
        assert_eq!(e.avg(), Some(ns(1125)));
        assert_eq!(e.dev(), Some(ns(625)));
        // err = 500 - 1125 = -625; sa = 8375; sv = 2500 + 625 - 625 = 2500.
        e.sample(500, BIG, SampleKind::Probe);
        assert_eq!(e.scaled(), Some((8375, 2500)));
        // 8375 >> 3 = 1046.
        assert_eq!(e.crtt(), Some(ns(1046 + 2500)));
        // err = 0 - 1046; sa = 7329; sv = 2500 + 1046 - 625 = 2921.
        e.sample(0, BIG, SampleKind::Probe);
        assert_eq!(e.scaled(), Some((7329, 2921)));
    }

    #[test]
    fn sa_never_goes_negative() {
        let mut e = RttEstimator::new();
        e.sample(0, BIG, SampleKind::Probe);
        e.sample(0, BIG, SampleKind::Probe);
        assert_eq!(e.scaled(), Some((0, 0)));
        assert_eq!(e.crtt(), Some(Duration::ZERO));
    }

    #[test]
    fn negative_and_too_long_samples_are_ignored() {
        let mut e = RttEstimator::new();
        let interval = ns(1000);
        assert_eq!(
            e.sample(-1, interval, SampleKind::Probe),
            SampleOutcome::Negative
        );
        // 52 intervals is the limit; one more nanosecond is a stall.
        assert_eq!(
            e.sample(52_001, interval, SampleKind::Probe),
            SampleOutcome::TooLong
        );
        assert_eq!(e.crtt(), None);
        // Exactly 52 intervals is a (suspect) sample, not a stall.
        assert_eq!(
            e.sample(52_000, interval, SampleKind::Probe),
            SampleOutcome::Deferred
        );
    }

    #[test]
    fn one_suspect_sample_is_deferred_the_second_folds_both() {
        let interval = ns(10_000);
        let mut e = RttEstimator::new();
        e.sample(1000, interval, SampleKind::Probe);
        let before = e.clone();
        // 1000 → 9000: err 8000, sa 16000, sv 2000 + 8000 - 500 = 9500, crtt 11500 > 10000.
        assert_eq!(
            e.sample(9000, interval, SampleKind::Probe),
            SampleOutcome::Deferred
        );
        assert_eq!(e.scaled(), before.scaled());
        assert_eq!(e.deferred(), 1);
        // The second suspect folds 9000 then 8000 in.
        assert_eq!(
            e.sample(8000, interval, SampleKind::Probe),
            SampleOutcome::FoldedDeferred
        );
        // After 9000: (16000, 9500). 8000: err 8000 - 2000 = 6000; sa 22000;
        // sv 9500 + 6000 - 2375 = 13125.
        assert_eq!(e.scaled(), Some((22000, 13125)));
        assert_eq!(e.deferred(), 0);
        assert_eq!(e.crtt(), Some(ns(2750 + 13125)));
    }

    #[test]
    fn a_good_sample_drops_the_deferred_one() {
        let interval = ns(10_000);
        let mut e = RttEstimator::new();
        e.sample(1000, interval, SampleKind::Probe);
        e.sample(9000, interval, SampleKind::Probe);
        assert_eq!(e.deferred(), 1);
        assert_eq!(
            e.sample(1000, interval, SampleKind::Probe),
            SampleOutcome::Applied
        );
        assert_eq!(e.deferred(), 0);
        // err 0: sa 8000, sv 2000 - 500 = 1500.
        assert_eq!(e.scaled(), Some((8000, 1500)));
        // Another suspect is deferred again rather than folded.
        assert_eq!(
            e.sample(9000, interval, SampleKind::Probe),
            SampleOutcome::Deferred
        );
    }

    #[test]
    fn a_suspect_first_sample_is_deferred_too() {
        let interval = ns(10_000);
        let mut e = RttEstimator::new();
        // 4000 alone: crtt 3 × 4000 = 12000 > 10000.
        assert_eq!(
            e.sample(4000, interval, SampleKind::Probe),
            SampleOutcome::Deferred
        );
        assert_eq!(e.crtt(), None);
        assert_eq!(
            e.sample(5000, interval, SampleKind::Probe),
            SampleOutcome::FoldedDeferred
        );
        // 4000: (32000, 8000); 5000: err 1000, sa 33000, sv 8000 + 1000 - 2000 = 7000.
        assert_eq!(e.scaled(), Some((33000, 7000)));
    }

    #[test]
    fn rtt_only_samples_only_lower() {
        let mut e = RttEstimator::new();
        // Without an estimate there is nothing to lower.
        assert_eq!(
            e.sample(100, BIG, SampleKind::RttOnly),
            SampleOutcome::NotLower
        );
        assert_eq!(e.crtt(), None);
        e.sample(1000, BIG, SampleKind::Probe);
        assert_eq!(
            e.sample(5000, BIG, SampleKind::RttOnly),
            SampleOutcome::NotLower
        );
        assert_eq!(e.scaled(), Some((8000, 2000)));
        assert_eq!(
            e.sample(900, BIG, SampleKind::RttOnly),
            SampleOutcome::Applied
        );
        // err -100: sa 7900, sv 2000 + 100 - 500 = 1600; crtt 987 + 1600 < 3000.
        assert_eq!(e.scaled(), Some((7900, 1600)));
        // RTT-only samples are never deferred, even when huge.
        let interval = ns(2000);
        assert_eq!(
            e.sample(50_000, interval, SampleKind::RttOnly),
            SampleOutcome::NotLower
        );
        assert_eq!(e.deferred(), 0);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut e = RttEstimator::new();
        e.sample(1000, BIG, SampleKind::Probe);
        e.sample(90_000, ns(10_000), SampleKind::Probe);
        e.reset();
        assert_eq!(e, RttEstimator::new());
    }

    /// The reference: the estimator without deferral, in i128 so nothing saturates.
    fn reference(samples: &[i64]) -> Option<(i128, i128)> {
        let mut st: Option<(i128, i128)> = None;
        for &m in samples {
            let m = i128::from(m);
            st = Some(match st {
                None => (8 * m, 2 * m),
                Some((sa, sv)) => {
                    let err = m - (sa >> 3);
                    let sa = (sa + err).max(0);
                    (sa, sv + err.abs() - (sv >> 2))
                }
            });
        }
        st
    }

    proptest! {
        #[test]
        fn matches_the_reference_when_nothing_is_suspect(
            samples in proptest::collection::vec(0i64..1_000_000_000, 1..40),
        ) {
            let mut e = RttEstimator::new();
            for &m in &samples {
                prop_assert_eq!(e.sample(m, BIG, SampleKind::Probe), SampleOutcome::Applied);
            }
            let (sa, sv) = reference(&samples).unwrap();
            prop_assert_eq!(e.scaled(), Some((sa as i64, sv as i64)));
            prop_assert_eq!(e.crtt(), Some(Duration::from_nanos(((sa >> 3) + sv) as u64)));
            // The estimator's own state, not the reference's, stays non-negative.
            let (esa, esv) = e.scaled().unwrap();
            prop_assert!(esa >= 0 && esv >= 0, "estimator sa {esa} sv {esv}");
        }

        #[test]
        fn crtt_exceeds_the_interval_only_through_a_second_suspect(
            samples in proptest::collection::vec(0i64..20_000, 1..60),
        ) {
            let interval = ns(10_000);
            let mut e = RttEstimator::new();
            for &m in &samples {
                let was_deferred = e.deferred();
                let outcome = e.sample(m, interval, SampleKind::Probe);
                prop_assert!(e.deferred() <= MAXDEFERREDRTT);
                if outcome.changed() && e.crtt().is_some_and(|c| c > interval) {
                    // Only folding deferred samples may push CRTT above the interval.
                    prop_assert_eq!(outcome, SampleOutcome::FoldedDeferred);
                    prop_assert_eq!(was_deferred, MAXDEFERREDRTT);
                }
                if outcome == SampleOutcome::Applied {
                    prop_assert!(e.crtt().unwrap() <= interval);
                }
            }
        }
    }
}
