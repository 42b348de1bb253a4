//! What the prober hands the daemon: probes to send, verdicts for the group, completed probes
//! (one `ipmpstat -p` line each), notices to log, and `ipmpstat -t` rows.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    defs::{Family, ProbeKind, RejectReason},
    payload::ECHO_LEN,
    targets::{TargetSource, TargetStatus},
};
use crate::group::{Event, MemberId};

/// What probing says about a member (`ipmpstat -i` PROBE; daemon/snapshot.rs maps it to the
/// wire type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeHealth {
    /// Probes are answered.
    Ok,
    /// Probes failed the member.
    Failed,
    /// Probing, but no target to probe, or no probe answered since probing (re)started.
    Unknown,
    /// The member does not probe.
    Disabled,
}

/// How a member finds its probe targets (`ipmpstat -t` MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetMode {
    /// Routers from the routing table, or configured targets.
    Routes,
    /// Hosts that answered a multicast echo.
    Multicast,
    /// No probing.
    Disabled,
}

impl TargetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetMode::Routes => "routes",
            TargetMode::Multicast => "multicast",
            TargetMode::Disabled => "disabled",
        }
    }
}

/// A probe to send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRequest {
    pub member: MemberId,
    pub family: Family,
    pub kind: ProbeKind,
    /// The target, or 224.0.0.1 / ff02::1 for discovery.
    pub dst: IpAddr,
    /// The test address to send from (TTL / hop limit 1, bound to the member); `None` for a
    /// link-layer probe (ARP request / neighbour solicitation for `dst`).
    pub src: Option<IpAddr>,
    pub seq: u16,
    /// When the prober decided to send it; in the payload.
    pub start: Instant,
    /// The ICMP / ICMPv6 echo request to send when `src` is set (IPv4 checksum filled in).
    pub icmp: Option<[u8; ECHO_LEN]>,
}

/// How a failure-detection probe ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Answered: `rx` is the receive timestamp (XDP or kernel), `done` when the prober
    /// processed it.
    Acked { rx: Instant, done: Instant },
    /// No answer within the target's CRTT (one probe interval while unknown), or given up.
    Lost { at: Instant },
}

/// A completed failure-detection probe: one `ipmpstat -p` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRecord {
    pub member: MemberId,
    pub family: Family,
    /// PROBE column.
    pub seq: u16,
    /// TARGET column (`None` if the target was deleted before the probe completed).
    pub target: Option<IpAddr>,
    pub start: Instant,
    pub sent: Instant,
    pub outcome: ProbeOutcome,
    /// RTTAVG: the target's smoothed average after this probe.
    pub rtt_avg: Option<Duration>,
    /// RTTDEV: the target's mean deviation after this probe.
    pub rtt_dev: Option<Duration>,
}

impl ProbeRecord {
    /// NETRTT: receive timestamp − send time (empty for a lost probe).
    pub fn netrtt(&self) -> Option<Duration> {
        match self.outcome {
            ProbeOutcome::Acked { rx, .. } => Some(rx.saturating_duration_since(self.sent)),
            ProbeOutcome::Lost { .. } => None,
        }
    }

    /// RTT: end of processing − probe start (empty for a lost probe). A gap to NETRTT is time
    /// the reply spent waiting for the daemon.
    pub fn rtt(&self) -> Option<Duration> {
        match self.outcome {
            ProbeOutcome::Acked { done, .. } => Some(done.saturating_duration_since(self.start)),
            ProbeOutcome::Lost { .. } => None,
        }
    }

    pub fn is_lost(&self) -> bool {
        matches!(self.outcome, ProbeOutcome::Lost { .. })
    }
}

/// Why a target left a member's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoveReason {
    /// A host that alone lost 5 probes in a row while others answered.
    Unresponsive,
    /// A host much slower than the others.
    Slow,
    /// Replaced by a better kind of target (router over host, configured over router).
    Replaced,
    /// No longer an on-link router.
    NotARouter,
    /// Host targets are flushed on a group failure and rediscovered.
    GroupFailure,
}

/// Something the daemon should log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeNotice {
    /// in.mpathd "Cannot meet requested failure detection time": `target`'s CRTT exceeds the
    /// probe interval and it is not an exception.
    FdtRaised {
        member: MemberId,
        family: Family,
        target: IpAddr,
        crtt: Duration,
        requested: Duration,
        fdt: Duration,
    },
    /// in.mpathd "Improved failure detection time".
    FdtLowered {
        member: MemberId,
        family: Family,
        fdt: Duration,
    },
    TargetAdded {
        member: MemberId,
        family: Family,
        target: IpAddr,
        source: TargetSource,
    },
    TargetRemoved {
        member: MemberId,
        family: Family,
        target: IpAddr,
        reason: RemoveReason,
    },
    /// A router or configured target marked slow or dead (kept; recovers later).
    TargetDemoted {
        member: MemberId,
        family: Family,
        target: IpAddr,
        status: TargetStatus,
    },
    /// Probes say `member` failed while another member shows the network works.
    InterfaceFailure { member: MemberId },
    /// Probes say `member` failed and nothing shows the network works: every probing member
    /// is failed, host targets are flushed.
    GroupFailure { member: MemberId },
    /// `member` got 10 probes acked in a row (on either family).
    ProbeRepair { member: MemberId },
    /// The timer ran late by more than an interval: `count` probes were never sent.
    ProbesMissed {
        member: MemberId,
        family: Family,
        count: u32,
    },
}

/// The result of one [`Prober`](super::prober::Prober) call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeOutput {
    /// Send these now, in order.
    pub sends: Vec<ProbeRequest>,
    /// Pass to [`Group::handle`](crate::group::Group::handle) before the next prober call.
    pub event: Option<Event>,
    /// Completed probes, in completion order.
    pub records: Vec<ProbeRecord>,
    pub notices: Vec<ProbeNotice>,
}

/// What became of one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// Acked failure-detection probe `seq`; `late` if it had been declared lost.
    Acked {
        seq: u16,
        late: bool,
    },
    /// An RTT-only reply (`applied`: it lowered the target's estimate).
    RttSample {
        applied: bool,
    },
    /// A discovery reply; `added` to how many members' target lists.
    Responder {
        added: usize,
    },
    Rejected(RejectReason),
}

/// One `ipmpstat -t` row: a member and family that probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetRow {
    pub member: MemberId,
    pub family: Family,
    pub mode: TargetMode,
    pub test_address: Option<IpAddr>,
    /// Active targets in firing order.
    pub targets: Vec<IpAddr>,
}
