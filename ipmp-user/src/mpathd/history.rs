//! The last [`PROBE_STATS_COUNT`] failure-detection probes of one member and family
//! (in.mpathd `pii_probes[]`), and the runs of losses and acks that failure and repair are
//! judged on.
//!
//! - Sequence numbers are `u16`, start at 1 and wrap; a reply is in the window when its
//!   sequence is one of the last [`PROBE_STATS_COUNT`] sent.
//! - A probe is lost once unacked for its target's CRTT after its start (one probe interval
//!   while the CRTT is unknown); the caller passes that timeout.
//! - A late reply still turns a lost probe into an acked one (that is how a slowing target's
//!   RTT reaches the estimator and raises the FDT).
//! - Runs are counted from the newest probe backwards, skipping probes still in flight: the
//!   consecutive losses (and the time of the first of them, TFF), the consecutive acks (and the
//!   time of the newest, TLS), and the same per target.

use std::{
    collections::VecDeque,
    net::IpAddr,
    time::{Duration, Instant},
};

use super::defs::PROBE_STATS_COUNT;

/// Where a probe stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeStatus {
    /// Sent, no reply yet, not timed out.
    Unacked,
    /// Answered: `rx` is the receive timestamp, `done` when the daemon processed it.
    Acked { rx: Instant, done: Instant },
    /// Timed out (or given up) at `at`.
    Lost { at: Instant },
}

/// One probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSlot {
    pub seq: u16,
    /// `None` once the target was deleted or demoted.
    pub target: Option<IpAddr>,
    /// When the prober decided to send it (in the payload; RTT is measured from here).
    pub start: Instant,
    /// When the daemon actually sent it (NETRTT is measured from here); `start` until told.
    pub sent: Instant,
    pub status: ProbeStatus,
}

/// Where a reply's sequence number falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Not one of the last [`PROBE_STATS_COUNT`] sequence numbers sent.
    OutOfWindow,
    /// In the window but never sent (after a reset of the history).
    NeverSent,
    /// Index of the probe, for [`History::slot`].
    Found(usize),
}

/// The run of losses ending with the newest completed probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailInfo {
    /// Consecutive lost probes, any target.
    pub nfail: u32,
    /// When the first of them was declared lost (TFF).
    pub tff: Option<Instant>,
    /// Per target: its consecutive losses, ignoring probes to other targets.
    pub per_target: Vec<(IpAddr, u32)>,
}

/// The run of acks ending with the newest completed probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuccessInfo {
    /// Consecutive acked probes, any target.
    pub nsucc: u32,
    /// The longest per-target run of acks (ignoring probes to other targets).
    pub nsucc_target: u32,
    /// When the newest acked probe's reply was processed (TLS), anywhere in the history.
    pub tls: Option<Instant>,
}

/// A per-target counter that stops at the first probe of the other kind.
fn bump(runs: &mut Vec<(IpAddr, u32, bool)>, target: Option<IpAddr>, count: bool) {
    let Some(t) = target else { return };
    let i = match runs.iter().position(|r| r.0 == t) {
        Some(i) => i,
        None => {
            runs.push((t, 0, false));
            runs.len() - 1
        }
    };
    let r = &mut runs[i];
    if r.2 {
        return;
    }
    if count {
        r.1 += 1;
    } else {
        r.2 = true;
    }
}

/// The history of one member and family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    slots: VecDeque<ProbeSlot>,
    /// Sequence number of the next probe (in.mpathd `pii_snxt`).
    snxt: u16,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// Empty; the first probe gets sequence number 1 (as in.mpathd).
    pub fn new() -> Self {
        Self {
            slots: VecDeque::with_capacity(PROBE_STATS_COUNT),
            snxt: 1,
        }
    }

    /// The sequence number the next probe gets.
    pub fn snxt(&self) -> u16 {
        self.snxt
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn slot(&self, i: usize) -> Option<&ProbeSlot> {
        self.slots.get(i)
    }

    pub fn slot_mut(&mut self, i: usize) -> Option<&mut ProbeSlot> {
        self.slots.get_mut(i)
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &ProbeSlot> {
        self.slots.iter()
    }

    /// Records a probe to `target` started at `start`; returns its sequence number.
    pub fn push(&mut self, target: IpAddr, start: Instant) -> u16 {
        if self.slots.len() == PROBE_STATS_COUNT {
            self.slots.pop_front();
        }
        let seq = self.snxt;
        self.slots.push_back(ProbeSlot {
            seq,
            target: Some(target),
            start,
            sent: start,
            status: ProbeStatus::Unacked,
        });
        self.snxt = self.snxt.wrapping_add(1);
        seq
    }

    /// Where sequence number `seq` falls.
    pub fn lookup(&self, seq: u16) -> Lookup {
        let back = usize::from(self.snxt.wrapping_sub(seq));
        if back == 0 || back > PROBE_STATS_COUNT {
            Lookup::OutOfWindow
        } else if back > self.slots.len() {
            Lookup::NeverSent
        } else {
            Lookup::Found(self.slots.len() - back)
        }
    }

    /// Forgets every probe (link down, targets gone); sequence numbers continue.
    pub fn clear(&mut self) {
        self.slots.clear();
    }

    /// Whether any probe in the history was answered: since probing (re)started, the member
    /// has had at least one reply (ipmpstat PROBE says `unknown` until then, as in.mpathd).
    pub fn any_acked(&self) -> bool {
        self.slots
            .iter()
            .any(|s| matches!(s.status, ProbeStatus::Acked { .. }))
    }

    /// Probes still in flight.
    pub fn unacked(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.status == ProbeStatus::Unacked)
            .count()
    }

    /// When the earliest unacked probe times out, with `timeout(target)` per probe.
    pub fn next_expiry(&self, timeout: impl Fn(Option<IpAddr>) -> Duration) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| s.status == ProbeStatus::Unacked)
            .map(|s| s.start + timeout(s.target))
            .min()
    }

    /// Declares lost every unacked probe whose timeout (`timeout(target)` after its start)
    /// has come; it is lost as of that deadline. Returns their indices.
    pub fn expire(
        &mut self,
        now: Instant,
        timeout: impl Fn(Option<IpAddr>) -> Duration,
    ) -> Vec<usize> {
        let mut lost = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.status != ProbeStatus::Unacked {
                continue;
            }
            let deadline = s.start + timeout(s.target);
            if now >= deadline {
                s.status = ProbeStatus::Lost { at: deadline };
                lost.push(i);
            }
        }
        lost
    }

    /// Before a new probe goes out: every unacked probe but the newest is lost now, so that
    /// at most two are ever in flight (in.mpathd `phyint_inst_timer`). Returns their indices.
    pub fn limit_in_flight(&mut self, now: Instant) -> Vec<usize> {
        let newest = self.slots.len().saturating_sub(1);
        let mut lost = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if i < newest && s.status == ProbeStatus::Unacked {
                s.status = ProbeStatus::Lost { at: now };
                lost.push(i);
            }
        }
        lost
    }

    /// Unlinks `target` from every probe; its probes in flight are lost now (in.mpathd
    /// `reset_pii_probes`). Returns those probes as they were lost (target still set).
    pub fn drop_target(&mut self, target: IpAddr, now: Instant) -> Vec<ProbeSlot> {
        let mut lost = Vec::new();
        for s in &mut self.slots {
            if s.target != Some(target) {
                continue;
            }
            if s.status == ProbeStatus::Unacked {
                s.status = ProbeStatus::Lost { at: now };
                lost.push(*s);
            }
            s.target = None;
        }
        lost
    }

    /// Whether no probe to `target` newer than index `i` was acked (in.mpathd
    /// `highest_ack_tg`: only the newest ack of a target feeds its RTT estimate).
    pub fn newest_ack_for(&self, target: IpAddr, i: usize) -> bool {
        !self
            .slots
            .iter()
            .skip(i + 1)
            .any(|s| s.target == Some(target) && matches!(s.status, ProbeStatus::Acked { .. }))
    }

    /// The newest probe that is not in flight.
    pub fn newest_completed(&self) -> Option<&ProbeSlot> {
        self.slots
            .iter()
            .rev()
            .find(|s| s.status != ProbeStatus::Unacked)
    }

    /// in.mpathd `probe_fail_info`.
    pub fn fail_info(&self) -> FailInfo {
        let mut info = FailInfo::default();
        let mut success = false;
        let mut runs = Vec::new();
        for s in self.slots.iter().rev() {
            match s.status {
                ProbeStatus::Unacked => {}
                ProbeStatus::Lost { at } => {
                    if !success {
                        info.nfail += 1;
                        info.tff = Some(at);
                    }
                    bump(&mut runs, s.target, true);
                }
                ProbeStatus::Acked { .. } => {
                    success = true;
                    bump(&mut runs, s.target, false);
                }
            }
        }
        info.per_target = runs
            .into_iter()
            .filter(|r| r.1 > 0)
            .map(|r| (r.0, r.1))
            .collect();
        info
    }

    /// in.mpathd `probe_success_info`.
    pub fn success_info(&self) -> SuccessInfo {
        let mut info = SuccessInfo::default();
        let mut failure = false;
        let mut runs = Vec::new();
        for s in self.slots.iter().rev() {
            match s.status {
                ProbeStatus::Unacked => {}
                ProbeStatus::Acked { done, .. } => {
                    if !failure {
                        info.nsucc += 1;
                    }
                    if info.tls.is_none() {
                        info.tls = Some(done);
                    }
                    bump(&mut runs, s.target, true);
                }
                ProbeStatus::Lost { .. } => {
                    failure = true;
                    bump(&mut runs, s.target, false);
                }
            }
        }
        info.nsucc_target = runs.iter().map(|r| r.1).max().unwrap_or(0);
        info
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
    }

    fn ms(t: Instant, n: u64) -> Instant {
        t + Duration::from_millis(n)
    }

    const TO: Duration = Duration::from_millis(100);

    fn ack(h: &mut History, seq: u16, at: Instant) {
        let Lookup::Found(i) = h.lookup(seq) else {
            panic!("seq {seq} not found")
        };
        h.slot_mut(i).unwrap().status = ProbeStatus::Acked { rx: at, done: at };
    }

    #[test]
    fn sequence_numbers_start_at_one_and_wrap() {
        let t0 = Instant::now();
        let mut h = History::new();
        assert_eq!(h.push(ip(1), t0), 1);
        assert_eq!(h.push(ip(1), t0), 2);
        h.snxt = u16::MAX;
        assert_eq!(h.push(ip(1), t0), u16::MAX);
        assert_eq!(h.push(ip(1), t0), 0);
        assert_eq!(h.snxt(), 1);
        assert_eq!(h.lookup(u16::MAX), Lookup::Found(2));
        assert_eq!(h.lookup(0), Lookup::Found(3));
    }

    #[test]
    fn window_is_the_last_52_sent() {
        let t0 = Instant::now();
        let mut h = History::new();
        for _ in 0..60 {
            h.push(ip(1), t0);
        }
        assert_eq!(h.len(), PROBE_STATS_COUNT);
        // snxt = 61: 9..=60 are in the window.
        assert_eq!(h.lookup(61), Lookup::OutOfWindow);
        assert_eq!(h.lookup(62), Lookup::OutOfWindow);
        assert_eq!(h.lookup(8), Lookup::OutOfWindow);
        assert_eq!(h.lookup(9), Lookup::Found(0));
        assert_eq!(h.lookup(60), Lookup::Found(51));
        assert_eq!(h.slot(0).unwrap().seq, 9);
        // After a reset the window remains but nothing in it was sent.
        h.clear();
        assert_eq!(h.lookup(60), Lookup::NeverSent);
        assert_eq!(h.push(ip(1), t0), 61);
    }

    #[test]
    fn probes_expire_at_start_plus_timeout() {
        let t0 = Instant::now();
        let mut h = History::new();
        h.push(ip(1), t0);
        h.push(ip(2), ms(t0, 50));
        let timeout = |t: Option<IpAddr>| if t == Some(ip(1)) { TO } else { TO * 2 };
        assert_eq!(h.next_expiry(timeout), Some(ms(t0, 100)));
        assert!(h.expire(ms(t0, 99), timeout).is_empty());
        assert_eq!(h.expire(ms(t0, 100), timeout), vec![0]);
        assert_eq!(
            h.slot(0).unwrap().status,
            ProbeStatus::Lost { at: ms(t0, 100) }
        );
        assert_eq!(h.next_expiry(timeout), Some(ms(t0, 250)));
        // Lost as of the deadline even when noticed later.
        assert_eq!(h.expire(ms(t0, 900), timeout), vec![1]);
        assert_eq!(
            h.slot(1).unwrap().status,
            ProbeStatus::Lost { at: ms(t0, 250) }
        );
    }

    #[test]
    fn at_most_two_in_flight() {
        let t0 = Instant::now();
        let mut h = History::new();
        h.push(ip(1), t0);
        h.push(ip(1), ms(t0, 10));
        h.push(ip(1), ms(t0, 20));
        assert_eq!(h.limit_in_flight(ms(t0, 30)), vec![0, 1]);
        assert_eq!(h.unacked(), 1);
        assert_eq!(
            h.slot(1).unwrap().status,
            ProbeStatus::Lost { at: ms(t0, 30) }
        );
    }

    #[test]
    fn fail_info_counts_the_run_and_tff() {
        let t0 = Instant::now();
        let mut h = History::new();
        for i in 0..8 {
            h.push(ip(1), ms(t0, i * 100));
        }
        ack(&mut h, 2, ms(t0, 150));
        h.expire(ms(t0, 10_000), |_| TO);
        // 1 lost, 2 acked, 3..=8 lost: the run is 6, starting with 3 (lost at 300 ms).
        let f = h.fail_info();
        assert_eq!(f.nfail, 6);
        assert_eq!(f.tff, Some(ms(t0, 300)));
        assert_eq!(f.per_target, vec![(ip(1), 6)]);
        // A probe in flight does not break the run.
        h.push(ip(1), ms(t0, 10_000));
        assert_eq!(h.fail_info().nfail, 6);
    }

    #[test]
    fn per_target_runs_ignore_other_targets() {
        let t0 = Instant::now();
        let mut h = History::new();
        // Alternate a good target 1 and a dead target 2.
        for i in 0..10u16 {
            let t = if i % 2 == 0 { ip(1) } else { ip(2) };
            let seq = h.push(t, ms(t0, u64::from(i) * 100));
            if t == ip(1) {
                ack(&mut h, seq, ms(t0, u64::from(i) * 100 + 5));
            }
        }
        h.expire(ms(t0, 10_000), |_| TO);
        let f = h.fail_info();
        assert_eq!(f.nfail, 1);
        assert_eq!(f.per_target, vec![(ip(2), 5)]);
        let s = h.success_info();
        assert_eq!(s.nsucc, 0);
        assert_eq!(s.nsucc_target, 5);
        assert_eq!(s.tls, Some(ms(t0, 805)));
    }

    #[test]
    fn success_info_counts_acks_until_a_loss() {
        let t0 = Instant::now();
        let mut h = History::new();
        for i in 0..12 {
            let seq = h.push(ip(1), ms(t0, i * 100));
            if i != 1 {
                ack(&mut h, seq, ms(t0, i * 100 + 7));
            }
        }
        h.expire(ms(t0, 10_000), |_| TO);
        let s = h.success_info();
        assert_eq!(s.nsucc, 10);
        assert_eq!(s.nsucc_target, 10);
        assert_eq!(s.tls, Some(ms(t0, 1107)));
        assert_eq!(h.fail_info().nfail, 0);
    }

    #[test]
    fn dropping_a_target_loses_its_probes_in_flight() {
        let t0 = Instant::now();
        let mut h = History::new();
        let a = h.push(ip(1), t0);
        h.push(ip(2), t0);
        h.push(ip(1), ms(t0, 10));
        ack(&mut h, a, ms(t0, 5));
        let lost = h.drop_target(ip(1), ms(t0, 20));
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].seq, 3);
        assert_eq!(lost[0].target, Some(ip(1)));
        assert_eq!(lost[0].status, ProbeStatus::Lost { at: ms(t0, 20) });
        assert!(h.iter().all(|s| s.target != Some(ip(1))));
        assert_eq!(h.slot(0).unwrap().target, None);
        assert!(matches!(
            h.slot(0).unwrap().status,
            ProbeStatus::Acked { .. }
        ));
    }

    #[test]
    fn newest_ack_for_a_target() {
        let t0 = Instant::now();
        let mut h = History::new();
        let a = h.push(ip(1), t0);
        let b = h.push(ip(1), t0);
        h.push(ip(2), t0);
        ack(&mut h, b, t0);
        let Lookup::Found(ia) = h.lookup(a) else {
            unreachable!()
        };
        assert!(!h.newest_ack_for(ip(1), ia));
        assert!(h.newest_ack_for(ip(2), ia));
        let Lookup::Found(ib) = h.lookup(b) else {
            unreachable!()
        };
        assert!(h.newest_ack_for(ip(1), ib));
    }

    proptest! {
        /// Any pattern of acks and losses: the runs match a direct count.
        #[test]
        fn runs_match_a_direct_count(pattern in proptest::collection::vec(any::<bool>(), 0..80)) {
            let t0 = Instant::now();
            let mut h = History::new();
            for (i, &acked) in pattern.iter().enumerate() {
                let seq = h.push(ip(1), ms(t0, i as u64 * 10));
                if acked {
                    ack(&mut h, seq, ms(t0, i as u64 * 10 + 1));
                }
            }
            h.expire(ms(t0, 1_000_000), |_| TO);
            let kept: Vec<bool> = pattern.iter().rev().take(PROBE_STATS_COUNT).copied().collect();
            let nfail = kept.iter().take_while(|a| !**a).count() as u32;
            let nsucc = kept.iter().take_while(|a| **a).count() as u32;
            prop_assert_eq!(h.fail_info().nfail, nfail);
            prop_assert_eq!(h.success_info().nsucc, nsucc);
            prop_assert_eq!(h.success_info().nsucc_target, nsucc);
            prop_assert!(h.len() <= PROBE_STATS_COUNT);
        }
    }
}
