//! The probe targets of one member and address family (in.mpathd `target_*` in mpd_tables.c).
//!
//! - A list holds one kind of target: addresses from the configuration, on-link routers from
//!   the routing table, or hosts that answered a multicast echo. Configured targets win over
//!   routers, routers over hosts: adding a better kind replaces the list, a worse kind is
//!   refused.
//! - At most [`MAX_PROBE_TARGETS`] (5) are `Active`; further configured or router targets wait
//!   as `Unused` and are activated as the round-robin passes them while fewer than 5 are
//!   active. Hosts beyond 5 are refused.
//! - A configured or router target that alone loses [`NUM_PROBE_FAILS`](super::defs::NUM_PROBE_FAILS)
//!   probes in a row becomes `Dead`; one much slower than the others becomes `Slow`. Each is
//!   promoted one step (`Dead` → `Slow` → `Unused`) once [`MIN_RECOVERY_TIME`] has passed, as
//!   the round-robin walks over it. A host target is deleted instead (the caller rediscovers).
//! - When no target is active any more, up to [`MIN_PROBE_TARGETS`] (3) of the best others are
//!   reactivated: unused first, then recovered slow, slow, recovered dead, dead.
//! - Probes go to the active targets in turn ([`Targets::firing_order`]).

use std::{
    fmt,
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{
    defs::{EXCEPTION_FACTOR, MAX_PROBE_TARGETS, MIN_PROBE_TARGETS, MIN_RECOVERY_TIME},
    rtt::RttEstimator,
};

/// Where a member's targets come from (one kind per list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetSource {
    /// Hosts that answered a multicast echo (224.0.0.1 / ff02::1).
    Host,
    /// On-link routers from the routing table.
    Router,
    /// Listed in the configuration.
    Configured,
}

impl TargetSource {
    fn rank(self) -> u8 {
        match self {
            Self::Host => 0,
            Self::Router => 1,
            Self::Configured => 2,
        }
    }

    /// Whether targets of this kind are kept (dead/slow) rather than deleted.
    pub fn is_persistent(self) -> bool {
        self != Self::Host
    }
}

impl fmt::Display for TargetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Host => "host",
            Self::Router => "router",
            Self::Configured => "configured",
        })
    }
}

/// in.mpathd `TG_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetStatus {
    /// Probed in turn.
    Active,
    /// Known but not probed (more than five, or recovering).
    Unused,
    /// Much slower than the others; recovers after [`MIN_RECOVERY_TIME`].
    Slow,
    /// Stopped answering while the others answered; recovers (to slow) after
    /// [`MIN_RECOVERY_TIME`].
    Dead,
}

impl fmt::Display for TargetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Unused => "unused",
            Self::Slow => "slow",
            Self::Dead => "dead",
        })
    }
}

/// One target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: IpAddr,
    pub status: TargetStatus,
    /// When it was last marked slow or dead (in.mpathd `tg_latime`).
    pub since: Instant,
    pub rtt: RttEstimator,
    /// Link-layer targets: the hardware address its first accepted ARP reply / NA came from.
    /// Replies from another one are refused, so a stray or forged reply cannot repair a
    /// member, until the whole group fails (a target whose NIC changed looks dead to every
    /// member at once; the next replies teach the new address).
    pub hardware: Option<[u8; 6]>,
}

/// What [`Targets::add`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Added {
    /// The address is now in the list (it was not before).
    pub added: bool,
    /// Targets of a worse kind that the new one replaced.
    pub replaced: Vec<IpAddr>,
}

/// The targets of one member and family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    source: Option<TargetSource>,
    list: Vec<Target>,
    /// Next target of a failure-detection probe (in.mpathd `pii_target_next`).
    next: Option<IpAddr>,
    /// Next target of an RTT-only probe.
    rtt_next: Option<IpAddr>,
}

fn recovered(since: Instant, now: Instant) -> bool {
    now.saturating_duration_since(since) > MIN_RECOVERY_TIME
}

impl Targets {
    pub fn new() -> Self {
        Self::default()
    }

    /// The kind of the targets in the list (`None` when it is empty).
    pub fn source(&self) -> Option<TargetSource> {
        self.source
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn active_count(&self) -> usize {
        self.list
            .iter()
            .filter(|t| t.status == TargetStatus::Active)
            .count()
    }

    /// Whether any target is active (in.mpathd: the instance is probe-capable).
    pub fn has_active(&self) -> bool {
        self.next.is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Target> {
        self.list.iter()
    }

    pub fn get(&self, addr: IpAddr) -> Option<&Target> {
        self.list.iter().find(|t| t.addr == addr)
    }

    pub fn get_mut(&mut self, addr: IpAddr) -> Option<&mut Target> {
        self.list.iter_mut().find(|t| t.addr == addr)
    }

    /// The target of the next failure-detection probe.
    pub fn next(&self) -> Option<IpAddr> {
        self.next
    }

    /// The target of the next RTT-only probe.
    pub fn rtt_next(&self) -> Option<IpAddr> {
        self.rtt_next
    }

    fn position(&self, addr: IpAddr) -> Option<usize> {
        self.list.iter().position(|t| t.addr == addr)
    }

    fn first_active(&self) -> Option<IpAddr> {
        self.list
            .iter()
            .find(|t| t.status == TargetStatus::Active)
            .map(|t| t.addr)
    }

    /// Adds `addr` as a target of kind `source` (in.mpathd `target_add`/`target_create`).
    pub fn add(&mut self, addr: IpAddr, source: TargetSource, now: Instant) -> Added {
        let mut out = Added::default();
        if let Some(current) = self.source {
            if source.rank() > current.rank() {
                out.replaced = self.clear();
            } else if source.rank() < current.rank() {
                return out;
            }
        }
        if self.get(addr).is_some() {
            return out;
        }
        let active = self.active_count();
        if source == TargetSource::Host && active >= MAX_PROBE_TARGETS {
            return out;
        }
        let status = if active >= MAX_PROBE_TARGETS {
            TargetStatus::Unused
        } else {
            TargetStatus::Active
        };
        self.list.push(Target {
            addr,
            status,
            since: now,
            rtt: RttEstimator::new(),
            hardware: None,
        });
        self.source = Some(source);
        if status == TargetStatus::Active && self.next.is_none() {
            self.next = Some(addr);
            self.rtt_next = Some(addr);
        }
        out.added = true;
        out
    }

    /// Deletes `addr` (in.mpathd `target_delete`). When no target is active afterwards,
    /// persistent ones are reactivated.
    pub fn remove(&mut self, addr: IpAddr, now: Instant) -> Option<Target> {
        let i = self.position(addr)?;
        let t = self.list.remove(i);
        if self.next == Some(addr) {
            self.next = self.first_active();
        }
        if self.rtt_next == Some(addr) {
            self.rtt_next = self.first_active();
        }
        self.after_loss_of_active(now);
        if self.list.is_empty() {
            self.source = None;
            self.next = None;
            self.rtt_next = None;
        }
        Some(t)
    }

    /// Deletes every target; returns their addresses.
    pub fn clear(&mut self) -> Vec<IpAddr> {
        let gone = self.list.drain(..).map(|t| t.addr).collect();
        self.source = None;
        self.next = None;
        self.rtt_next = None;
        gone
    }

    /// Marks `addr` slow or dead: not probed, estimate reset, recovers after
    /// [`MIN_RECOVERY_TIME`]. Returns false if there is no such target.
    pub fn demote(&mut self, addr: IpAddr, status: TargetStatus, now: Instant) -> bool {
        let Some(t) = self.get_mut(addr) else {
            return false;
        };
        t.status = status;
        t.since = now;
        t.rtt.reset();
        if self.next == Some(addr) {
            self.next = self.walk_from(Some(addr), now);
        }
        if self.rtt_next == Some(addr) {
            self.rtt_next = self.next;
        }
        self.after_loss_of_active(now);
        true
    }

    fn after_loss_of_active(&mut self, now: Instant) {
        if self.next.is_some() && self.active_count() > 0 {
            return;
        }
        self.next = None;
        self.rtt_next = None;
        if self.source.is_some_and(TargetSource::is_persistent) {
            self.activate_best(now);
        }
    }

    /// Moves the failure-detection pointer on after a probe went out (in.mpathd sets the RTT
    /// pointer to the same target).
    pub fn advance(&mut self, now: Instant) {
        self.next = self.walk_from(self.next, now);
        self.rtt_next = self.next;
    }

    /// Moves the RTT-only pointer on after an RTT-only probe went out.
    pub fn advance_rtt(&mut self, now: Instant) {
        self.rtt_next = self.walk_from(self.rtt_next, now);
    }

    /// in.mpathd `target_next`: the next active target after `from`, promoting on the way —
    /// unused → active while fewer than 5 are active, recovered slow → unused, recovered
    /// dead → slow (with a fresh recovery clock).
    fn walk_from(&mut self, from: Option<IpAddr>, now: Instant) -> Option<IpAddr> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let marker = from.and_then(|a| self.position(a)).unwrap_or(n - 1);
        let mut i = marker;
        loop {
            i = (i + 1) % n;
            let active = self.active_count();
            let t = &mut self.list[i];
            match t.status {
                TargetStatus::Active => return Some(t.addr),
                TargetStatus::Unused => {
                    if active < MAX_PROBE_TARGETS {
                        t.status = TargetStatus::Active;
                        return Some(t.addr);
                    }
                }
                TargetStatus::Slow => {
                    if recovered(t.since, now) {
                        t.status = TargetStatus::Unused;
                    }
                }
                TargetStatus::Dead => {
                    if recovered(t.since, now) {
                        t.status = TargetStatus::Slow;
                        t.since = now;
                    }
                }
            }
            if i == marker {
                return None;
            }
        }
    }

    /// in.mpathd `target_activate_all`: with nothing active, activates up to
    /// [`MIN_PROBE_TARGETS`] of the best other targets.
    fn activate_best(&mut self, now: Instant) {
        while self.active_count() < MIN_PROBE_TARGETS {
            let Some(i) = self.select_best(now) else {
                break;
            };
            let t = &mut self.list[i];
            t.status = TargetStatus::Active;
            if self.next.is_none() {
                self.next = Some(t.addr);
                self.rtt_next = Some(t.addr);
            }
        }
    }

    /// in.mpathd `target_select_best`: unused, else recovered slow, slow, recovered dead, dead.
    /// Promotes recovered targets one step on the way. Among slow or dead ones it takes the
    /// one demoted longest ago (in.mpathd takes the last in its list, which can be the target
    /// just declared dead).
    fn select_best(&mut self, now: Instant) -> Option<usize> {
        let (mut slow, mut dead, mut slow_rec, mut dead_rec) = (None, None, None, None);
        let older = |best: Option<(usize, Instant)>, i: usize, since: Instant| match best {
            Some((_, b)) if b <= since => best,
            _ => Some((i, since)),
        };
        for (i, t) in self.list.iter_mut().enumerate() {
            match t.status {
                TargetStatus::Unused => return Some(i),
                TargetStatus::Slow if recovered(t.since, now) => {
                    t.status = TargetStatus::Unused;
                    slow_rec = slow_rec.or(Some(i));
                }
                TargetStatus::Slow => slow = older(slow, i, t.since),
                TargetStatus::Dead if recovered(t.since, now) => {
                    t.status = TargetStatus::Slow;
                    t.since = now;
                    dead_rec = dead_rec.or(Some(i));
                }
                TargetStatus::Dead => dead = older(dead, i, t.since),
                TargetStatus::Active => {}
            }
        }
        slow_rec
            .or(slow.map(|(i, _)| i))
            .or(dead_rec)
            .or(dead.map(|(i, _)| i))
    }

    /// Active targets in the order probes will go to them, starting with the next one.
    pub fn firing_order(&self) -> Vec<IpAddr> {
        let Some(start) = self.next.and_then(|a| self.position(a)) else {
            return Vec::new();
        };
        let n = self.list.len();
        (0..n)
            .map(|k| &self.list[(start + k) % n])
            .filter(|t| t.status == TargetStatus::Active)
            .map(|t| t.addr)
            .collect()
    }

    /// Forgets every target's RTT estimate (in.mpathd `reset_crtt_all`).
    pub fn reset_rtt(&mut self) {
        for t in &mut self.list {
            t.rtt.reset();
        }
    }

    /// Forgets the learned hardware addresses (group failure).
    pub fn forget_hardware(&mut self) {
        for t in &mut self.list {
            t.hardware = None;
        }
    }

    /// in.mpathd `check_exception_target`: `addr` is the only slow one — at least
    /// `MIN_PROBE_TARGETS + 1` targets are active and every other active one has a CRTT of at
    /// most `interval / EXCEPTION_FACTOR` (unknown counts as fast).
    pub fn is_exception(&self, addr: IpAddr, interval: Duration) -> bool {
        if self.active_count() < MIN_PROBE_TARGETS + 1 {
            return false;
        }
        let limit = interval / EXCEPTION_FACTOR;
        self.list
            .iter()
            .filter(|t| t.addr != addr && t.status == TargetStatus::Active)
            .all(|t| t.rtt.crtt().is_none_or(|c| c <= limit))
    }

    /// Whether every active target's CRTT satisfies `ok` (unknown counts as satisfied).
    pub fn all_active_crtt(&self, ok: impl Fn(Duration) -> bool) -> bool {
        self.list
            .iter()
            .filter(|t| t.status == TargetStatus::Active)
            .all(|t| t.rtt.crtt().is_none_or(&ok))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::mpathd::rtt::SampleKind;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
    }

    fn secs(t: Instant, s: u64) -> Instant {
        t + Duration::from_secs(s)
    }

    fn statuses(t: &Targets) -> Vec<(IpAddr, TargetStatus)> {
        t.iter().map(|t| (t.addr, t.status)).collect()
    }

    #[test]
    fn first_five_active_then_unused_routers_and_no_sixth_host() {
        let t0 = Instant::now();
        let mut r = Targets::new();
        for i in 1..=7 {
            assert!(r.add(ip(i), TargetSource::Router, t0).added);
        }
        assert_eq!(r.active_count(), MAX_PROBE_TARGETS);
        assert_eq!(r.get(ip(6)).unwrap().status, TargetStatus::Unused);
        assert_eq!(r.source(), Some(TargetSource::Router));
        assert_eq!(r.next(), Some(ip(1)));

        let mut h = Targets::new();
        for i in 1..=6 {
            let added = h.add(ip(i), TargetSource::Host, t0).added;
            assert_eq!(added, i <= 5, "host {i}");
        }
        assert_eq!(h.len(), 5);
        // Duplicates are not added twice.
        assert!(!h.add(ip(1), TargetSource::Host, t0).added);
    }

    #[test]
    fn better_kinds_replace_worse_ones() {
        let t0 = Instant::now();
        let mut t = Targets::new();
        t.add(ip(1), TargetSource::Host, t0);
        t.add(ip(2), TargetSource::Host, t0);
        let a = t.add(ip(9), TargetSource::Router, t0);
        assert!(a.added);
        assert_eq!(a.replaced, vec![ip(1), ip(2)]);
        assert_eq!(t.source(), Some(TargetSource::Router));
        assert_eq!(t.next(), Some(ip(9)));
        // Hosts never join a router list.
        assert!(!t.add(ip(3), TargetSource::Host, t0).added);
        // Configured targets replace routers; routers then are refused.
        assert_eq!(
            t.add(ip(20), TargetSource::Configured, t0).replaced,
            vec![ip(9)]
        );
        assert!(!t.add(ip(9), TargetSource::Router, t0).added);
        assert_eq!(statuses(&t), vec![(ip(20), TargetStatus::Active)]);
    }

    #[test]
    fn round_robin_over_active_targets() {
        let t0 = Instant::now();
        let mut t = Targets::new();
        for i in 1..=3 {
            t.add(ip(i), TargetSource::Router, t0);
        }
        let mut fired = Vec::new();
        for _ in 0..7 {
            fired.push(t.next().unwrap());
            t.advance(t0);
        }
        assert_eq!(fired, vec![ip(1), ip(2), ip(3), ip(1), ip(2), ip(3), ip(1)]);
        assert_eq!(t.firing_order(), vec![ip(2), ip(3), ip(1)]);
    }

    #[test]
    fn unused_router_fills_the_place_of_a_dead_one() {
        let t0 = Instant::now();
        let mut t = Targets::new();
        for i in 1..=6 {
            t.add(ip(i), TargetSource::Router, t0);
        }
        assert!(t.demote(ip(2), TargetStatus::Dead, t0));
        assert_eq!(t.active_count(), 4);
        // Walking on from 1 skips dead 2, reaches 3; later the unused 6 is activated.
        t.advance(t0);
        assert_eq!(t.next(), Some(ip(3)));
        for _ in 0..3 {
            t.advance(t0);
        }
        assert_eq!(t.next(), Some(ip(6)));
        assert_eq!(t.get(ip(6)).unwrap().status, TargetStatus::Active);
        assert_eq!(t.active_count(), 5);
    }

    #[test]
    fn dead_recovers_to_slow_then_unused_then_active_one_step_per_minute() {
        let t0 = Instant::now();
        let mut t = Targets::new();
        t.add(ip(1), TargetSource::Router, t0);
        t.add(ip(2), TargetSource::Router, t0);
        t.demote(ip(2), TargetStatus::Dead, t0);
        let status = |t: &Targets| t.get(ip(2)).unwrap().status;
        // Exactly 60 s is not enough (in.mpathd: latime + MIN_RECOVERY_TIME < now).
        t.advance(secs(t0, 60));
        assert_eq!(status(&t), TargetStatus::Dead);
        t.advance(secs(t0, 61));
        assert_eq!(status(&t), TargetStatus::Slow);
        // The recovery clock restarted at 61 s.
        t.advance(secs(t0, 100));
        assert_eq!(status(&t), TargetStatus::Slow);
        t.advance(secs(t0, 122));
        assert_eq!(status(&t), TargetStatus::Unused);
        // The next walk over it activates it.
        t.advance(secs(t0, 123));
        assert_eq!(status(&t), TargetStatus::Active);
        assert_eq!(t.next(), Some(ip(2)));
    }

    #[test]
    fn demoting_the_last_active_reactivates_the_best_others() {
        let t0 = Instant::now();
        let mut t = Targets::new();
        for i in 1..=4 {
            t.add(ip(i), TargetSource::Router, t0);
        }
        t.demote(ip(1), TargetStatus::Dead, t0);
        t.demote(ip(2), TargetStatus::Slow, t0);
        t.demote(ip(3), TargetStatus::Dead, secs(t0, 30));
        assert_eq!(t.active_count(), 1);
        // The last one goes: slow 2 first, then dead 1 (recovered by now? no, 40 s), dead 3.
        t.demote(ip(4), TargetStatus::Dead, secs(t0, 40));
        assert_eq!(t.active_count(), MIN_PROBE_TARGETS);
        assert_eq!(t.get(ip(2)).unwrap().status, TargetStatus::Active);
        assert_eq!(t.get(ip(4)).unwrap().status, TargetStatus::Dead);
        assert!(t.next().is_some());
    }

    #[test]
    fn removing_the_next_target_moves_the_pointer() {
        let t0 = Instant::now();
        let mut t = Targets::new();
        for i in 1..=3 {
            t.add(ip(i), TargetSource::Host, t0);
        }
        t.advance(t0); // next = 2
        t.remove(ip(2), t0);
        assert_eq!(t.next(), Some(ip(1)));
        t.remove(ip(1), t0);
        t.remove(ip(3), t0);
        assert!(t.is_empty());
        assert_eq!(t.next(), None);
        assert_eq!(t.source(), None);
        // An empty list takes any kind again.
        assert!(t.add(ip(7), TargetSource::Host, t0).added);
    }

    #[test]
    fn exception_needs_four_active_and_the_others_fast() {
        let t0 = Instant::now();
        let interval = Duration::from_millis(100);
        let mut t = Targets::new();
        for i in 1..=3 {
            t.add(ip(i), TargetSource::Router, t0);
        }
        assert!(!t.is_exception(ip(1), interval));
        t.add(ip(4), TargetSource::Router, t0);
        assert!(t.is_exception(ip(1), interval));
        // Another target at 60 ms > interval / 2 = 50 ms: no longer an exception.
        t.get_mut(ip(2))
            .unwrap()
            .rtt
            .sample(20_000_000, interval, SampleKind::Probe); // crtt 60 ms
        assert!(!t.is_exception(ip(1), interval));
        // Exactly interval / 2 still counts as fast.
        let mut t2 = t.clone();
        t2.get_mut(ip(2)).unwrap().rtt.reset();
        t2.get_mut(ip(2))
            .unwrap()
            .rtt
            .sample(50_000_000 / 3 + 1, interval, SampleKind::Probe);
        assert!(!t2.is_exception(ip(1), interval));
        let mut t3 = t.clone();
        t3.get_mut(ip(2)).unwrap().rtt.reset();
        t3.get_mut(ip(2))
            .unwrap()
            .rtt
            .sample(50_000_000 / 3, interval, SampleKind::Probe);
        assert!(t3.is_exception(ip(1), interval));
    }

    #[test]
    fn firing_order_starts_at_next_and_skips_inactive() {
        let t0 = Instant::now();
        let mut t = Targets::new();
        for i in 1..=4 {
            t.add(ip(i), TargetSource::Configured, t0);
        }
        t.advance(t0);
        t.advance(t0);
        t.demote(ip(4), TargetStatus::Slow, t0);
        assert_eq!(t.firing_order(), vec![ip(3), ip(1), ip(2)]);
    }
}
