//! The probe state of one member: an instance per address family that probes (in.mpathd
//! `phyint_instance`).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use super::{
    defs::{Family, ProbeCounters},
    history::History,
    schedule::Schedule,
    targets::Targets,
};
use crate::config::Prefix;

/// One member and family.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Instance {
    pub family: Family,
    /// The test address; `None` probes at the link layer (ARP / neighbour solicitation).
    pub test: Option<Prefix>,
    pub targets: Targets,
    pub history: History,
    /// `None` while stopped (link down, offline).
    pub schedule: Option<Schedule>,
    /// Losses do not fail the member before this (in.mpathd `pii_fd_hrtime`); the first ack
    /// ends it early.
    pub quiet_until: Instant,
    pub counters: ProbeCounters,
}

impl Instance {
    pub fn new(family: Family, test: Option<Prefix>, quiet_until: Instant) -> Self {
        Self {
            family,
            test,
            targets: Targets::new(),
            history: History::new(),
            schedule: None,
            quiet_until,
            counters: ProbeCounters::default(),
        }
    }

    pub fn test_address(&self) -> Option<IpAddr> {
        self.test.map(|p| p.addr)
    }

    /// Whether `addr` may be a discovered or router target here: same family and, when the
    /// test address has a subnet (not a host prefix), inside it (in.mpathd `target_create`).
    pub fn accepts(&self, addr: IpAddr) -> bool {
        if Family::of(addr) != self.family {
            return false;
        }
        match self.test {
            Some(p) if u32::from(p.len) < host_len(self.family) => p.contains(addr),
            _ => true,
        }
    }

    /// Has an active target (in.mpathd `PROBE_CAPABLE`).
    pub fn capable(&self) -> bool {
        self.targets.has_active()
    }

    pub fn in_quiet(&self, now: Instant) -> bool {
        now < self.quiet_until
    }

    /// The earliest of the next timer firing and the next probe timeout.
    pub fn next_deadline(&self, interval: Duration) -> Option<Instant> {
        let schedule = self.schedule?;
        let expiry = self
            .history
            .next_expiry(|t| timeout(&self.targets, t, interval));
        Some(expiry.map_or(schedule.next(), |e| e.min(schedule.next())))
    }
}

fn host_len(family: Family) -> u32 {
    match family {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

/// A target's CRTT, or `interval` when unknown or zero (a zero timeout would lose every probe).
pub(super) fn timeout(targets: &Targets, target: Option<IpAddr>, interval: Duration) -> Duration {
    target
        .and_then(|a| targets.get(a))
        .and_then(|t| t.rtt.crtt())
        .filter(|c| !c.is_zero())
        .unwrap_or(interval)
}

/// One member's probing: its ICMP identifier and an instance per family it probes in.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct MemberInstances {
    pub icmp_id: u16,
    pub v4: Option<Instance>,
    pub v6: Option<Instance>,
}

impl MemberInstances {
    pub fn get(&self, family: Family) -> Option<&Instance> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    pub fn get_mut(&mut self, family: Family) -> Option<&mut Instance> {
        match family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        }
    }

    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.v4.iter().chain(self.v6.iter())
    }

    pub fn instances_mut(&mut self) -> impl Iterator<Item = &mut Instance> {
        self.v4.iter_mut().chain(self.v6.iter_mut())
    }

    /// Probing is configured for some family (in.mpathd `PROBE_ENABLED`).
    pub fn probing(&self) -> bool {
        self.v4.is_some() || self.v6.is_some()
    }

    /// Some family has an active target.
    pub fn capable(&self) -> bool {
        self.instances().any(Instance::capable)
    }
}
