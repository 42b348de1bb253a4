//! in.mpathd's constants (mpd_tables.h) and the small types every part of probing uses.

use std::{collections::BTreeMap, fmt, net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

/// Consecutive lost probes that fail a member (or, alone, a target).
pub const NUM_PROBE_FAILS: u32 = 5;
/// Consecutive acked probes that repair a member.
pub const NUM_PROBE_REPAIRS: u32 = 10;
/// Probe intervals per FDT: `NUM_PROBE_FAILS + 2`, because with randomised send times the
/// previous probe may legitimately be unacked when the next goes out.
pub const PROBES_PER_FDT: u32 = NUM_PROBE_FAILS + 2;
/// Each probe goes out at a random point in [MIN, MAX] × interval after its base time.
pub const MIN_RANDOM_FACTOR: f64 = 0.5;
pub const MAX_RANDOM_FACTOR: f64 = 1.0;
/// When no target is active, up to this many others are reactivated; one more than this must
/// be active before a slow target counts as an exception.
pub const MIN_PROBE_TARGETS: usize = 3;
/// Most targets probed per member and family.
pub const MAX_PROBE_TARGETS: usize = 5;
/// Probes remembered per member and family: `NUM_PROBE_REPAIRS × NUM_PROBE_FAILS + 2` = 52;
/// also the sequence window and, in probe intervals, the longest credible RTT.
pub const PROBE_STATS_COUNT: usize = (NUM_PROBE_REPAIRS * NUM_PROBE_FAILS + 2) as usize;
/// A slow or dead router/configured target is promoted one step after this.
pub const MIN_RECOVERY_TIME: Duration = Duration::from_secs(60);
/// The FDT is not lowered within this time of being raised.
pub const MIN_SETTLING_TIME: Duration = Duration::from_secs(60);
/// A raise sets the probe interval to this × CRTT; a lowering halves the FDT.
pub const NEXT_FDT_MULTIPLE: u32 = 2;
/// The FDT may be lowered when every CRTT is below interval / this.
pub const LOWER_FDT_TRIGGER: u32 = 4;
/// A slow target is an exception when every other one is below interval / this.
pub const EXCEPTION_FACTOR: u32 = 2;
/// Default quiet period after a member starts probing (spanning-tree settling): losses do not
/// fail it until this has passed or a probe was acked. [`ProbeSpec::quiet_period`](super::ProbeSpec::quiet_period) sets it.
pub const FAILURE_DETECTION_QP: Duration = Duration::from_secs(40);
/// Suspect RTT samples deferred before they are believed.
pub const MAXDEFERREDRTT: usize = 1;
/// Raising never takes the FDT above this (in.mpathd has no limit; a responder answering after
/// hours must not push timers past what `Instant` can represent).
pub const MAX_FAILURE_DETECTION_TIME: Duration = Duration::from_secs(3600);

/// Address family of a probe instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The all-hosts / all-nodes address multicast discovery goes to.
    pub fn all_nodes(self) -> IpAddr {
        match self {
            Self::V4 => IpAddr::V4(std::net::Ipv4Addr::new(224, 0, 0, 1)),
            Self::V6 => IpAddr::V6(std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // in.mpathd's AF_STR.
        f.write_str(match self {
            Self::V4 => "inet",
            Self::V6 => "inet6",
        })
    }
}

/// The message type of a probe (in.mpathd `PROBE_UNI`, `PROBE_MULTI`, `PROBE_RTT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// Failure detection to a target: sequence numbered, counted.
    Unicast,
    /// Echo to all hosts / all nodes to find targets.
    Discovery,
    /// While the FDT is raised, between failure-detection probes: only lowers RTT estimates.
    RttOnly,
}

impl ProbeKind {
    /// The 32-bit message type in the payload.
    pub fn code(self) -> u32 {
        match self {
            Self::Unicast => 0x1234,
            Self::Discovery => 0x5678,
            Self::RttOnly => 0x9abc,
        }
    }

    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0x1234 => Some(Self::Unicast),
            0x5678 => Some(Self::Discovery),
            0x9abc => Some(Self::RttOnly),
            _ => None,
        }
    }
}

/// Why a reply was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    /// Too short, not an echo reply, bad IPv4 checksum or unknown message type.
    Malformed,
    /// Another member's (or program's) identifier.
    ForeignId,
    /// The cookie is not this daemon's.
    BadCookie,
    /// Right cookie, but the start time is not the probe's.
    BadTimestamp,
    /// From an address the probe was not sent to.
    WrongSource,
    /// Sequence number outside the last [`PROBE_STATS_COUNT`] sent: stale.
    OutOfWindow,
    /// In the window, but not sent since the history was last reset.
    NeverSent,
    /// The probe was already acked.
    Duplicate,
    /// The probe's target has been deleted or demoted since.
    TargetGone,
    /// An RTT-only reply from an address that is not a target.
    UnknownTarget,
    /// A link-layer reply with no probe to that target in flight (or none sent before it
    /// arrived).
    NoProbeInFlight,
    /// A link-layer reply addressed to another protocol address than the probe named as its
    /// sender (0.0.0.0 for an ARP probe, a link-local address for a neighbour solicitation).
    WrongLocal,
    /// A link-layer reply from another hardware address than the target answered from.
    WrongHardware,
    /// A discovery reply from an address that cannot be a target: unspecified, one of ours,
    /// or (IPv6) not link-local.
    UnusableResponder,
    /// The member does not probe in this family.
    NotProbing,
    /// The member is not probing now (link down or offline); in.mpathd drops these too.
    Stopped,
}

impl RejectReason {
    /// Whether the reply failed an integrity check (forged, corrupt or misdirected), as
    /// opposed to being a stale or duplicate answer to a real probe.
    pub fn is_forgery(self) -> bool {
        matches!(
            self,
            Self::Malformed
                | Self::ForeignId
                | Self::BadCookie
                | Self::BadTimestamp
                | Self::WrongSource
                | Self::WrongLocal
                | Self::WrongHardware
        )
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed",
            Self::ForeignId => "foreign identifier",
            Self::BadCookie => "bad cookie",
            Self::BadTimestamp => "bad timestamp",
            Self::WrongSource => "wrong source",
            Self::OutOfWindow => "out of window",
            Self::NeverSent => "never sent",
            Self::Duplicate => "duplicate",
            Self::TargetGone => "target gone",
            Self::UnknownTarget => "unknown target",
            Self::NoProbeInFlight => "no probe in flight",
            Self::WrongLocal => "wrong local address",
            Self::WrongHardware => "wrong hardware address",
            Self::UnusableResponder => "unusable responder",
            Self::NotProbing => "not probing",
            Self::Stopped => "not probing now",
        })
    }
}

/// Counters of one member and family (in.mpathd `pii_cum_stats`, plus rejections by reason).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeCounters {
    /// Failure-detection probes sent.
    pub sent: u64,
    pub acked: u64,
    pub lost: u64,
    /// Acks that came after their probe was declared lost (also counted in `acked` and `lost`).
    pub late: u64,
    pub rtt_probes: u64,
    pub discovery_probes: u64,
    /// Timer firings skipped because the timer ran late by more than an interval.
    pub missed: u64,
    /// Dropped replies by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl ProbeCounters {
    pub(crate) fn reject(&mut self, reason: RejectReason) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    /// Replies that failed an integrity check ([`RejectReason::is_forgery`]).
    pub fn forged(&self) -> u64 {
        self.rejected
            .iter()
            .filter(|(r, _)| r.is_forgery())
            .map(|(_, n)| n)
            .sum()
    }

    /// Replies dropped as stale, duplicate or otherwise unusable.
    pub fn stale(&self) -> u64 {
        self.rejected
            .iter()
            .filter(|(r, _)| !r.is_forgery())
            .map(|(_, n)| n)
            .sum()
    }
}
