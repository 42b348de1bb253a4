//! The protocol's types: requests, responses, the snapshot, errors and limits.

use std::{fmt, io, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// How long a client waits for ipmpd before giving up (a stuck daemon must not hang ipmpstat).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Where ipmpd listens unless told otherwise (`--socket`).
pub const DEFAULT_SOCKET: &str = "/run/ipmp/ipmpd.sock";

/// Longest request line the server accepts, newline excluded.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// Longest response line a client accepts, newline excluded (a snapshot of many groups is large).
pub const MAX_RESPONSE_LINE: usize = 16 * 1024 * 1024;

/// A request from a tool to ipmpd. Wire form: `{"request":"offline","interface":"m0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "lowercase")]
pub enum Request {
    /// The whole state, as a [`Snapshot`].
    Status,
    /// Take a member out of service (like `if_mpadm -d`).
    Offline { interface: String },
    /// Put an offlined member back (like `if_mpadm -r`).
    Online { interface: String },
    /// Reread the configuration.
    Reload,
    /// Stream every probe as it completes (acked or lost), as [`Response::Probe`] lines.
    Probes,
}

impl Request {
    /// Requests that change the daemon's state need root.
    pub fn is_mutating(&self) -> bool {
        match self {
            Request::Status | Request::Probes => false,
            Request::Offline { .. } | Request::Online { .. } | Request::Reload => true,
        }
    }

    /// Short name used in messages ("offline", "status", ...).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Offline { .. } => "offline",
            Request::Online { .. } => "online",
            Request::Reload => "reload",
            Request::Probes => "probes",
        }
    }
}

/// ipmpd's answer. Wire form: `{"response":"ok","message":"..."}` or
/// `{"response":"status","pid":1,...}` (the snapshot's fields inline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "lowercase")]
pub enum Response {
    Status(Snapshot),
    Ok {
        message: String,
    },
    Error {
        message: String,
    },
    /// One completed probe of a [`Request::Probes`] stream.
    Probe(ProbeLine),
}

impl Response {
    /// An `Error` response becomes [`ControlError::Daemon`].
    pub fn into_result(self) -> Result<Response, ControlError> {
        match self {
            Response::Error { message } => Err(ControlError::Daemon { message }),
            other => Ok(other),
        }
    }

    /// The message of an `Ok` response; `Error` becomes [`ControlError::Daemon`], anything else a
    /// protocol error.
    pub fn into_message(self) -> Result<String, ControlError> {
        match self.into_result()? {
            Response::Ok { message } => Ok(message),
            other => Err(ControlError::Unexpected {
                expected: "ok",
                got: other.kind(),
            }),
        }
    }

    /// The snapshot of a `Status` response; `Error` becomes [`ControlError::Daemon`].
    pub fn into_snapshot(self) -> Result<Snapshot, ControlError> {
        match self.into_result()? {
            Response::Status(snapshot) => Ok(snapshot),
            other => Err(ControlError::Unexpected {
                expected: "status",
                got: other.kind(),
            }),
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Response::Status(_) => "status",
            Response::Ok { .. } => "ok",
            Response::Error { .. } => "error",
            Response::Probe(_) => "probe",
        }
    }
}

/// One completed failure-detection probe (an `ipmpstat -p` line). Durations in microseconds;
/// the RTT fields are absent for a lost probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeLine {
    /// When the probe was sent, in ns since the Unix epoch (ipmpstat shows it relative to its
    /// own start).
    pub sent_unix_ns: u64,
    pub group: String,
    pub interface: String,
    /// `inet` or `inet6`.
    pub family: String,
    /// The probe's sequence number (PROBE).
    pub seq: u16,
    /// `None` if the target was removed before the probe completed.
    pub target: Option<String>,
    pub lost: bool,
    /// Receive timestamp (XDP, else the socket) − send time.
    pub netrtt_us: Option<u64>,
    /// ipmpd's processing of the reply − probe start.
    pub rtt_us: Option<u64>,
    /// The target's smoothed RTT after this probe.
    pub rttavg_us: Option<u64>,
    /// The target's mean deviation after this probe.
    pub rttdev_us: Option<u64>,
}

/// Everything ipmpd knows, taken at one instant (every `ipmpstat` mode but `-p` reads one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub pid: u32,
    pub version: String,
    pub uptime_ms: u64,
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The IPMP interface, e.g. `ipmp0` (ipmpstat GROUP).
    pub interface: String,
    /// The group name (ipmpstat GROUPNAME).
    pub name: String,
    pub ifindex: u32,
    pub state: GroupState,
    /// Current failure detection time; `None` when no member probes.
    pub fdt_ms: Option<u64>,
    pub failback: bool,
    pub n_buckets: u32,
    pub hash_seed: u32,
    pub members: Vec<MemberStatus>,
    pub addresses: Vec<AddressStatus>,
    /// The programs attached for this group, read back from the pinned links (Debian's
    /// bpftool 7.1 cannot list TCX attachments).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// How a member probes in one address family (ipmpstat -t).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTargets {
    /// `routes`, `multicast` or `disabled`.
    pub mode: String,
    pub test_address: Option<String>,
    /// Active targets in firing order.
    pub targets: Vec<String>,
}

/// One program attached to an interface through a pinned BPF link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub interface: String,
    /// `tcx-egress`, `xdp` (with `mode`).
    pub hook: String,
    /// `generic` or `native` for XDP; empty otherwise.
    #[serde(default)]
    pub mode: String,
    pub program: String,
    /// Kernel ids (`bpftool link show id N`, `bpftool prog show id N`).
    pub link_id: u32,
    pub prog_id: u32,
    /// The bpffs pin of the link.
    pub pin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub name: String,
    pub ifindex: u32,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Carries data traffic (functioning and not INACTIVE, offline or duplicate-MAC).
    pub active: bool,
    pub flags: MemberFlags,
    pub link: LinkState,
    pub probe: ProbeState,
    pub state: MemberState,
    pub test_addresses: Vec<String>,
    /// Buckets of the group's table that point at this member.
    pub buckets: u32,
    /// Data addresses bound (answering ARP/NDP) here.
    pub bound_addresses: u32,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Inbound data traffic this member handed to the IPMP interface (unicast to a data
    /// address, and the group's broadcast and multicast on the cast member).
    #[serde(default)]
    pub rx_packets: u64,
    #[serde(default)]
    pub rx_bytes: u64,
    /// Packets per data-plane reason (`rx-ipmp`, `arp-reply`, ..: the `IPMP_STATS` counters
    /// of this member), the reasons that counted any.
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Probing per address family (ipmpstat -t); empty when the member does not probe.
    #[serde(default)]
    pub probes: Vec<ProbeTargets>,
    /// Probe replies dropped for failing an integrity check (cookie, id, sequence window), by
    /// XDP or by the prober.
    #[serde(default)]
    pub probe_forged: u64,
    /// Failure-detection probes over both families since ipmpd started.
    #[serde(default)]
    pub probe_totals: ProbeTotals,
}

/// Failure-detection probes of one member (both families).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTotals {
    pub sent: u64,
    pub answered: u64,
    /// Declared lost (a late answer counts here and in `answered`).
    pub lost: u64,
}

/// The ipmpstat -i FLAGS, in their display order `i s m b M d h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFlags {
    pub inactive: bool,
    pub standby: bool,
    /// Nominated to send and receive IPv4 multicast for the group.
    pub v4_multicast: bool,
    /// Nominated to send and receive IPv4 broadcast for the group.
    pub v4_broadcast: bool,
    /// Nominated to send and receive IPv6 multicast for the group.
    pub v6_multicast: bool,
    /// Every address on the member is down.
    pub all_down: bool,
    /// Offlined because its MAC address duplicates another member's.
    pub duplicate_hwaddr: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressStatus {
    /// Numeric address without prefix, e.g. `198.51.100.10` or `2001:db8::10`.
    pub address: String,
    pub prefix_len: u8,
    pub up: bool,
    /// The member the address is bound to (answers ARP/NDP for it).
    pub inbound: Option<String>,
    /// The members that may carry traffic from it (the active ones).
    pub outbound: Vec<String>,
}

/// Declares a lowercase wire enum with `as_str` and `Display`.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Group state as ipmpstat -g shows it.
    GroupState {
        /// Every member usable.
        Ok => "ok",
        /// Some members usable.
        Degraded => "degraded",
        /// No member usable.
        Failed => "failed",
    }
);

wire_enum!(
    /// Link (carrier) state of a member.
    LinkState {
        Up => "up",
        Down => "down",
        /// The driver gives no link notifications.
        Unknown => "unknown",
    }
);

wire_enum!(
    /// Probe-based failure detection state of a member.
    ProbeState {
        Ok => "ok",
        Failed => "failed",
        /// Probing, but no target yet, or no probe answered since probing (re)started.
        Unknown => "unknown",
        /// No probing.
        Disabled => "disabled",
    }
);

wire_enum!(
    /// Member state as ipmpstat -i STATE shows it.
    MemberState {
        Ok => "ok",
        Failed => "failed",
        Offline => "offline",
        Unknown => "unknown",
    }
);

/// Errors of the control protocol, on either side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach ipmpd at {}: is ipmpd running? (--socket PATH to choose another socket)", path.display())]
    NotRunning { path: PathBuf },
    #[error("permission denied on {}: run as a user that may open it (or as root)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("control socket {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("ipmpd at {} did not answer within {secs} s", path.display())]
    Timeout { path: PathBuf, secs: u64 },
    #[error("ipmpd at {} closed the connection without answering", path.display())]
    Closed { path: PathBuf },
    #[error("line longer than {limit} bytes on the control socket")]
    LineTooLong { limit: usize },
    #[error("malformed control message: {source}")]
    Json {
        #[from]
        source: serde_json::Error,
    },
    #[error("ipmpd answered '{got}' where '{expected}' was expected")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    /// ipmpd refused or failed the request; the message is the daemon's own.
    #[error("{message}")]
    Daemon { message: String },
    #[error("another ipmpd is running ({} answers)", path.display())]
    AlreadyRunning { path: PathBuf },
    #[error("{} exists and is not a socket: remove it or choose another --socket path", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot create the control socket directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot listen on {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
}

impl ControlError {
    /// Maps a connect/IO error on `path` to the variant that tells the user what to do.
    pub(crate) fn from_io(path: &std::path::Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning { path }
            }
            io::ErrorKind::PermissionDenied => ControlError::PermissionDenied { path },
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ControlError::Timeout {
                path,
                secs: TIMEOUT.as_secs(),
            },
            _ => ControlError::Io { path, source },
        }
    }
}
