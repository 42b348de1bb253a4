//! What the daemon counts for the metrics between scrapes: member failures and repairs and the
//! probes' round-trip times. The daemon records; the endpoint copies the counts per scrape.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

/// Upper bounds of the probe RTT histogram's buckets, in seconds (`+Inf` follows): 100 µs
/// (veth, a switch) to 2.5 s (a congested or far target).
pub const RTT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Probe RTTs of one member: per-bucket counts (not cumulative; the last is `+Inf`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RttHistogram {
    pub counts: [u64; RTT_BUCKETS.len() + 1],
    pub sum_seconds: f64,
    pub count: u64,
}

impl RttHistogram {
    pub fn observe(&mut self, rtt: Duration) {
        let secs = rtt.as_secs_f64();
        let bucket = RTT_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(RTT_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum_seconds += secs;
        self.count += 1;
    }
}

/// The events of one member since ipmpd started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberEvents {
    pub failures: u64,
    pub repairs: u64,
    /// Answered failure-detection probes: receive timestamp − send time.
    pub rtt: RttHistogram,
}

/// Events by (group, member).
pub type EventCounts = BTreeMap<(String, String), MemberEvents>;

/// The daemon's event counts, shared with the endpoint (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct Events {
    inner: Arc<Mutex<EventCounts>>,
}

impl Events {
    pub fn failed(&self, group: &str, member: &str) {
        self.record(group, member, |e| e.failures += 1);
    }

    pub fn repaired(&self, group: &str, member: &str) {
        self.record(group, member, |e| e.repairs += 1);
    }

    pub fn rtt(&self, group: &str, member: &str, rtt: Duration) {
        self.record(group, member, |e| e.rtt.observe(rtt));
    }

    /// A copy of the counts at this instant.
    pub fn counts(&self) -> EventCounts {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, group: &str, member: &str, f: impl FnOnce(&mut MemberEvents)) {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(counts
            .entry((group.to_owned(), member.to_owned()))
            .or_default());
    }
}
