//! A group's failure detection time (FDT) and probe interval, and how they adapt to slow
//! targets (in.mpathd `incoming_echo_reply`, `incoming_rtt_reply`).
//!
//! - The user's probe interval is FDT / [`PROBES_PER_FDT`] (`NUM_PROBE_FAILS + 2` = 7): with
//!   randomised send times the previous probe may still be legitimately unacked when the next
//!   goes out, so five losses fit in one FDT.
//! - **Raise**: a target's CRTT above the probe interval (and the target not an exception)
//!   makes the interval `NEXT_FDT_MULTIPLE` (2) × CRTT and the FDT 7 × that.
//! - **Lower**: when a target's CRTT falls below interval / `LOWER_FDT_TRIGGER` (4), the FDT is
//!   above the user's and `MIN_SETTLING_TIME` (60 s) passed since the last raise, and every
//!   target of every working member is below interval / 4 too: FDT = max(FDT / 2, user FDT).

use std::time::{Duration, Instant};

use super::defs::{
    LOWER_FDT_TRIGGER, MAX_FAILURE_DETECTION_TIME, MIN_SETTLING_TIME, NEXT_FDT_MULTIPLE,
    PROBES_PER_FDT,
};

/// The FDT state of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fdt {
    user: Duration,
    user_interval: Duration,
    current: Duration,
    interval: Duration,
    raised_at: Option<Instant>,
}

impl Fdt {
    /// At the user's FDT.
    pub fn new(user: Duration) -> Self {
        let user_interval = user / PROBES_PER_FDT;
        Self {
            user,
            user_interval,
            current: user,
            interval: user_interval,
            raised_at: None,
        }
    }

    /// The FDT the configuration asks for.
    pub fn user(&self) -> Duration {
        self.user
    }

    /// The user's FDT / 7: the spacing of the probe timer.
    pub fn user_interval(&self) -> Duration {
        self.user_interval
    }

    /// The FDT in force (ipmpstat -g FDT).
    pub fn current(&self) -> Duration {
        self.current
    }

    /// The failure-detection probe interval in force: current FDT / 7.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When the FDT was last raised.
    pub fn raised_at(&self) -> Option<Instant> {
        self.raised_at
    }

    /// Whether the FDT in force is above the user's.
    pub fn is_raised(&self) -> bool {
        self.current > self.user
    }

    /// A target's CRTT exceeds the interval: interval = 2 × CRTT, FDT = 7 × interval (at most
    /// [`MAX_FAILURE_DETECTION_TIME`], and never below the user's). Returns the new FDT.
    pub fn raise(&mut self, crtt: Duration, now: Instant) -> Duration {
        let cap = MAX_FAILURE_DETECTION_TIME.max(self.user);
        self.interval = crtt
            .saturating_mul(NEXT_FDT_MULTIPLE)
            .min(cap / PROBES_PER_FDT);
        self.current = self.interval.saturating_mul(PROBES_PER_FDT);
        self.raised_at = Some(now);
        self.current
    }

    /// Whether a target whose CRTT is now `crtt` may trigger a lowering (the group-wide check,
    /// every target below interval / 4, is the caller's).
    pub fn may_lower(&self, crtt: Duration, now: Instant) -> bool {
        crtt < self.interval / LOWER_FDT_TRIGGER
            && self.user < self.current
            && self
                .raised_at
                .is_none_or(|t| now.saturating_duration_since(t) > MIN_SETTLING_TIME)
    }

    /// Whether `crtt` counts as improved for the group-wide check (at most interval / 4).
    pub fn improved(&self, crtt: Duration) -> bool {
        crtt <= self.interval / LOWER_FDT_TRIGGER
    }

    /// FDT = max(FDT / 2, user FDT), interval = FDT / 7 (exactly the user's interval once back
    /// at the user's FDT). Returns the new FDT.
    pub fn lower(&mut self) -> Duration {
        self.current = (self.current / NEXT_FDT_MULTIPLE).max(self.user);
        self.interval = if self.current == self.user {
            self.user_interval
        } else {
            self.current / PROBES_PER_FDT
        };
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn interval_is_fdt_over_seven() {
        let f = Fdt::new(ms(10_000));
        assert_eq!(f.user_interval(), Duration::from_nanos(1_428_571_428));
        assert_eq!(f.interval(), f.user_interval());
        assert_eq!(f.current(), ms(10_000));
        assert!(!f.is_raised());
        assert_eq!(Fdt::new(ms(700)).interval(), ms(100));
    }

    #[test]
    fn raise_doubles_crtt_and_multiplies_by_seven() {
        let t0 = Instant::now();
        let mut f = Fdt::new(ms(700));
        assert_eq!(f.raise(ms(150), t0), ms(2100));
        assert_eq!(f.interval(), ms(300));
        assert_eq!(f.current(), ms(2100));
        assert_eq!(f.raised_at(), Some(t0));
        assert!(f.is_raised());
        // The user interval (the timer's spacing) is unchanged.
        assert_eq!(f.user_interval(), ms(100));
    }

    #[test]
    fn raise_is_capped() {
        let t0 = Instant::now();
        let mut f = Fdt::new(ms(700));
        // 3600 s / 7 is not whole: the interval is capped, the FDT is 7 × that.
        assert_eq!(
            f.raise(Duration::MAX, t0),
            MAX_FAILURE_DETECTION_TIME / 7 * 7
        );
        assert_eq!(f.interval(), MAX_FAILURE_DETECTION_TIME / 7);
    }

    #[test]
    fn lowering_waits_sixty_seconds_and_needs_crtt_below_a_quarter() {
        let t0 = Instant::now();
        let mut f = Fdt::new(ms(700));
        f.raise(ms(400), t0); // interval 800 ms, FDT 5600 ms
        let quarter = ms(200);
        // Settling: not within 60 s of the raise, not at exactly 60 s.
        assert!(!f.may_lower(ms(10), t0 + ms(59_999)));
        assert!(!f.may_lower(ms(10), t0 + MIN_SETTLING_TIME));
        let later = t0 + MIN_SETTLING_TIME + ms(1);
        assert!(f.may_lower(ms(10), later));
        // Below a quarter of the interval, strictly.
        assert!(!f.may_lower(quarter, later));
        assert!(f.may_lower(quarter - Duration::from_nanos(1), later));
        assert!(f.improved(quarter));
        assert!(!f.improved(quarter + Duration::from_nanos(1)));
    }

    #[test]
    fn lower_halves_down_to_the_user_fdt() {
        let t0 = Instant::now();
        let mut f = Fdt::new(ms(700));
        f.raise(ms(400), t0); // FDT 5600 ms
        assert_eq!(f.lower(), ms(2800));
        assert_eq!(f.interval(), ms(400));
        assert_eq!(f.lower(), ms(1400));
        assert_eq!(f.interval(), ms(200));
        assert_eq!(f.lower(), ms(700));
        assert_eq!(f.interval(), f.user_interval());
        assert!(!f.is_raised());
        // At the user's FDT it never goes lower, and nothing asks to.
        assert_eq!(f.lower(), ms(700));
        assert!(!f.may_lower(Duration::ZERO, t0 + ms(3_600_000)));
    }

    #[test]
    fn lower_restores_the_exact_user_interval() {
        // 10000 / 7 is not whole: coming back must not drift by rounding.
        let t0 = Instant::now();
        let mut f = Fdt::new(ms(10_000));
        f.raise(ms(2000), t0); // interval 4 s, FDT 28 s
        f.lower(); // 14 s
        f.lower(); // 10 s
        assert_eq!(f.current(), ms(10_000));
        assert_eq!(f.interval(), Fdt::new(ms(10_000)).interval());
    }
}
