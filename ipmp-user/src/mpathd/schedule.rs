//! When probes go out (in.mpathd `start_timer` and `phyint_inst_timer`).
//!
//! - A base time advances strictly periodically by the user's probe interval (FDT / 7); each
//!   probe goes out at a random point in [[`MIN_RANDOM_FACTOR`], [`MAX_RANDOM_FACTOR`]] ×
//!   interval after the base (the first one at a random point of the first interval, so that
//!   members do not probe in step).
//! - If the timer fired late by more than that (a stalled host), whole intervals are skipped
//!   rather than sent in a burst.
//! - While the group's FDT is raised, the timer keeps the user's interval but only every
//!   probe interval's worth of timer firings sends a failure-detection probe; the others send
//!   RTT-only probes, which can only lower the RTT estimate.
//!
//! Randomness is an input: `u` in [0, 1), e.g. `rng.random::<f64>()`.

use std::time::{Duration, Instant};

use super::defs::{MAX_RANDOM_FACTOR, MIN_RANDOM_FACTOR};

/// The factor for uniform input `u` (clamped to [0, 1]): in [0.5, 1.0].
pub fn random_factor(u: f64) -> f64 {
    let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
    MIN_RANDOM_FACTOR + (MAX_RANDOM_FACTOR - MIN_RANDOM_FACTOR) * u
}

/// A random point in [0.5, 1.0] × `interval` for uniform input `u`.
pub fn jittered(interval: Duration, u: f64) -> Duration {
    interval.mul_f64(random_factor(u))
}

/// Whole `step`s in `d` (0 for a zero step).
fn whole(d: Duration, step: Duration) -> u32 {
    if step.is_zero() {
        return 0;
    }
    u32::try_from(d.as_nanos() / step.as_nanos()).unwrap_or(u32::MAX)
}

/// The probe timer of one member and family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Strictly periodic base (in.mpathd `pii_snxt_basetime`).
    base: Instant,
    /// When the timer fires next (`pii_snxt_time`).
    next: Instant,
    /// Base of the next failure-detection probe while the FDT is raised
    /// (`pii_fd_snxt_basetime`).
    fd_base: Instant,
}

impl Schedule {
    /// Starts the timer at `now`: the first probe goes out `u` × `interval` later (u in [0, 1)).
    pub fn start(now: Instant, interval: Duration, u: f64) -> Self {
        let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
        let first = now + interval.mul_f64(u);
        Self {
            base: first,
            next: first,
            fd_base: first,
        }
    }

    /// When the timer fires next.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// The current base time.
    pub fn base(&self) -> Instant {
        self.base
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// The timer fired at `now`: picks the next firing at base + `u`-jittered
    /// `user_interval`, skipping whole intervals missed, and moves the base on. Returns how
    /// many probes were missed.
    pub fn advance(&mut self, now: Instant, user_interval: Duration, u: f64) -> u32 {
        self.next = self.base + jittered(user_interval, u);
        let mut missed = 0;
        if now > self.next {
            missed = whole(now - self.next, user_interval).saturating_add(1);
            let skip = user_interval.saturating_mul(missed);
            self.next += skip;
            self.base += skip;
        }
        self.base += user_interval;
        missed
    }

    /// After [`advance`](Self::advance): whether this firing sends a failure-detection probe
    /// (else an RTT-only one). `interval` is the group's probe interval in force.
    pub fn take_failure_detection(
        &mut self,
        now: Instant,
        user_interval: Duration,
        interval: Duration,
    ) -> bool {
        if user_interval == interval {
            self.fd_base = self.base;
            return true;
        }
        if self.next < self.fd_base {
            return false;
        }
        self.fd_base += interval;
        if now > self.fd_base {
            let n = whole(now - self.fd_base, interval).saturating_add(1);
            self.fd_base += interval.saturating_mul(n);
        }
        true
    }

    /// No targets: the next failure-detection probe is due with the next firing.
    pub fn sync_failure_detection(&mut self) {
        self.fd_base = self.base;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn factor_bounds() {
        assert_eq!(random_factor(0.0), 0.5);
        assert_eq!(random_factor(1.0), 1.0);
        assert_eq!(random_factor(0.5), 0.75);
        assert_eq!(random_factor(-3.0), 0.5);
        assert_eq!(random_factor(7.0), 1.0);
        assert_eq!(random_factor(f64::NAN), 0.5);
        assert_eq!(jittered(ms(1000), 0.0), ms(500));
        assert_eq!(jittered(ms(1000), 1.0), ms(1000));
    }

    #[test]
    fn probes_follow_a_periodic_base_with_jitter() {
        let t0 = Instant::now();
        let ui = ms(100);
        let mut s = Schedule::start(t0, ui, 0.3);
        assert_eq!(s.next(), t0 + ms(30));
        let mut fired = vec![s.next()];
        for u in [0.0, 1.0, 0.5, 0.2] {
            let now = s.next();
            assert_eq!(s.advance(now, ui, u), 0);
            fired.push(s.next());
        }
        // Base 30, 130, 230, 330: probes at 30, 30+50, 130+100, 230+75, 330+60.
        let want: Vec<Instant> = [30, 80, 230, 305, 390]
            .iter()
            .map(|&m| t0 + ms(m))
            .collect();
        assert_eq!(fired, want);
    }

    #[test]
    fn a_late_timer_skips_missed_probes() {
        let t0 = Instant::now();
        let ui = ms(100);
        let mut s = Schedule::start(t0, ui, 0.0);
        // Fired 1000 ms late: next would be 0 + 50 = 50 < 1000; skip 10 intervals.
        assert_eq!(s.advance(t0 + ms(1000), ui, 0.0), 10);
        assert_eq!(s.next(), t0 + ms(1050));
        assert_eq!(s.base(), t0 + ms(1100));
    }

    #[test]
    fn raised_fdt_alternates_rtt_and_failure_detection_probes() {
        let t0 = Instant::now();
        let ui = ms(100);
        let interval = ms(200);
        let mut s = Schedule::start(t0, ui, 0.0);
        let mut kinds = Vec::new();
        let mut times = Vec::new();
        for _ in 0..8 {
            let now = s.next();
            s.advance(now, ui, 0.5);
            times.push(now);
            kinds.push(s.take_failure_detection(now, ui, interval));
        }
        assert_eq!(
            kinds,
            vec![true, false, true, false, true, false, true, false]
        );
        // Failure-detection probes go out one probe interval apart once the first RTT-only
        // probe has shifted them onto the jittered grid (0, 175, 375, 575 ms here).
        let fd: Vec<Instant> = times
            .iter()
            .zip(&kinds)
            .filter(|(_, k)| **k)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(fd[1] - fd[0], ms(175));
        for w in fd.windows(2).skip(1) {
            assert_eq!(w[1] - w[0], interval);
        }
        // Back at the user's FDT every firing is a failure-detection probe.
        for _ in 0..3 {
            let now = s.next();
            s.advance(now, ui, 0.5);
            assert!(s.take_failure_detection(now, ui, ui));
        }
    }

    proptest! {
        /// Whatever the random input, probe k (k ≥ 1) goes out in
        /// [base + 0.5 × interval, base + interval], bases strictly periodic.
        #[test]
        fn every_probe_lies_in_its_window(
            start_u in 0.0f64..1.0,
            us in proptest::collection::vec(0.0f64..=1.0, 1..50),
            interval_ms in 1u64..5000,
        ) {
            let t0 = Instant::now();
            let ui = ms(interval_ms);
            let mut s = Schedule::start(t0, ui, start_u);
            let first = s.next();
            prop_assert!(first >= t0 && first <= t0 + ui);
            let mut prev = first;
            for (k, &u) in us.iter().enumerate() {
                let base = first + ui * k as u32;
                prop_assert_eq!(s.base(), base);
                let now = s.next();
                prop_assert_eq!(s.advance(now, ui, u), 0);
                let next = s.next();
                prop_assert!(next >= base + ui / 2, "probe {} early", k + 1);
                prop_assert!(next <= base + ui, "probe {} late", k + 1);
                // Consecutive probes are 0 to 1.5 intervals apart (hence the +2 in FDT / 7).
                prop_assert!(next >= prev && next - prev <= ui * 3 / 2);
                prev = next;
            }
        }
    }
}
