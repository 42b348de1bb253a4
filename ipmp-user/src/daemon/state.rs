//! What the daemon holds: its groups and members as it tracks them, and the handles of the
//! actors it drives. `daemon.rs` acts on it; `snapshot.rs` reads it.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, time::Instant};

use tokio::sync::mpsc;

use crate::{
    announce::Announcer,
    config::{Config, GroupConfig},
    control,
    dataplane::{Dataplane, XdpAttachMode},
    group::{Carrier, Group},
    netlink::Netlink,
    probe_io::{GroupProbing, ProbeReply, ring::ProbeRing},
};

/// One member as the daemon tracks it.
pub(super) struct MemberRt {
    pub(super) name: String,
    pub(super) ifindex: u32,
    pub(super) mac: [u8; 6],
    pub(super) mtu: u32,
    pub(super) stats_slot: u32,
    pub(super) link: Carrier,
    pub(super) xdp_mode: XdpAttachMode,
}

/// One group as the daemon tracks it.
pub(super) struct GroupRt {
    pub(super) cfg: GroupConfig,
    pub(super) slot: u32,
    pub(super) ifindex: u32,
    pub(super) peer_ifindex: u32,
    /// The IPMP interface's MAC (inbound unicast is readdressed to it).
    pub(super) mac: [u8; 6],
    /// The cast member last written to the data plane (ifindex).
    pub(super) cast: Option<u32>,
    pub(super) seed: u32,
    pub(super) fsm: Group,
    pub(super) members: Vec<MemberRt>,
    pub(super) carrier_on: bool,
    /// Probe-based detection, when a member has a test address.
    pub(super) probing: Option<GroupProbing>,
}

pub struct Daemon {
    pub(super) config: Config,
    pub(super) nl: Netlink,
    pub(super) sysctl: crate::netlink::sysctl::Sysctls,
    pub(super) dataplane: Dataplane,
    pub(super) announcer: Announcer,
    pub(super) groups: Vec<GroupRt>,
    pub(super) started: Instant,
    /// Neighbours last shared across a group's members: (group, address) → MAC.
    pub(super) neighbours: HashMap<(usize, IpAddr), [u8; 6]>,
    /// Replies from the probe sockets (taken by `run`).
    pub(super) probe_rx: Option<mpsc::Receiver<ProbeReply>>,
    /// Replies XDP timestamped (taken by `run`); `None` when nothing probes.
    pub(super) ring: Option<ProbeRing>,
    /// Reading the ring failed: replies must reach the sockets.
    pub(super) ring_failed: bool,
    /// Completed probes for `ipmpstat -p` subscribers.
    pub(super) probe_lines: tokio::sync::broadcast::Sender<control::ProbeLine>,
    /// systemd notifications (READY=1, STATUS=, the watchdog); silent outside systemd.
    pub(super) notify: crate::notify::Notifier,
    /// Failures, repairs and probe RTTs, for the metrics endpoint.
    pub(super) events: crate::metrics::Events,
    /// The metrics listener, bound at start (taken by `run`); `None` without `[metrics]`.
    pub(super) metrics: Option<crate::metrics::MetricsServer>,
    /// The pin directory had no bpffs at the last integrity check (logged once).
    pub(super) pins_lost: bool,
    /// When lost netlink events were last logged.
    pub(super) overrun_logged: Option<Instant>,
    /// `IPMP_NEIGHS` was found full (logged once).
    pub(super) neighbours_full_logged: bool,
}

/// Command-line choices that are not in the config file.
#[derive(Clone, Debug)]
pub struct Options {
    pub pin_dir: PathBuf,
    /// The network sysctls' directory (`--proc-sys-net`).
    pub proc_sys_net: PathBuf,
    /// Where the configuration came from (reread on reload).
    pub config_path: PathBuf,
}
