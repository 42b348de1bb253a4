//! The validated configuration ipmpd runs on.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::prefix::Prefix;

/// Where ipmpd reads its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/ipmp/ipmpd.toml";

/// Solaris `FAILURE_DETECTION_TIME` default (mpd_defs.h).
pub const DEFAULT_FAILURE_DETECTION_TIME: Duration = Duration::from_millis(10_000);
/// Smallest accepted failure detection time. Solaris clamps below 100 ms; we accept down to
/// 10 ms so the floor can be measured rather than assumed.
pub const MIN_FAILURE_DETECTION_TIME: Duration = Duration::from_millis(10);
/// Default control socket of ipmpd.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/ipmp/ipmpd.sock";
/// Solaris `LINK_UP_PERMIN`: more link-ups than this within the window withhold a repair.
pub const DEFAULT_LINK_FLAP_MAX_UPS: u32 = 2;
/// The window `LINK_UP_PERMIN` counts over.
pub const DEFAULT_LINK_FLAP_WINDOW: Duration = Duration::from_secs(60);
/// Longest link flap window (an hour; longer is surely a unit mistake).
pub const MAX_LINK_FLAP_WINDOW: Duration = Duration::from_secs(3600);
/// Default receive buffer of the netlink event socket: room for a burst of thousands of events.
pub const DEFAULT_NETLINK_RCVBUF: u32 = 4 << 20;
/// Accepted range of `netlink_rcvbuf_bytes` (the kernel rounds tiny values up to its minimum).
pub const NETLINK_RCVBUF_RANGE: std::ops::RangeInclusive<u32> = 1024..=(1 << 30);
/// Default size of a group's bucket table.
pub const DEFAULT_BUCKETS: u32 = 1024;
/// Default number of gratuitous ARPs / unsolicited NAs sent after an address moves.
pub const DEFAULT_ANNOUNCE_COUNT: u32 = 3;
/// Default gap between those announcements.
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);
/// Most announcements per move.
pub const MAX_ANNOUNCE_COUNT: u32 = 100;
/// Longest gap between announcements.
pub const MAX_ANNOUNCE_INTERVAL: Duration = Duration::from_millis(10_000);
/// Where the metrics endpoint listens when `[metrics]` gives no `listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9474";
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Whether and how the XDP program is attached to members (the TC ingress program always
/// is: it delivers inbound traffic through the IPMP interface, and gives the member's
/// ARP/NDP/echo answers itself where there is no XDP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native XDP on physical NICs (falling back to `off` where the driver refuses it); `off`
    /// on virtual devices such as veth, whose generic XDP copies every packet and whose native
    /// XDP_TX only delivers when the peer runs XDP too.
    #[default]
    Auto,
    /// Driver (native) mode.
    Native,
    /// Generic (skb) mode: works on every netdev, slower than `off`.
    Generic,
    /// No XDP: the answers are given at TC ingress.
    Off,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
            Self::Off => "off",
        })
    }
}

/// A route ipmpd installs on the IPMP interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RouteConfig {
    /// Destination; `"default"` in the file means 0.0.0.0/0 or ::/0 after `via`'s family.
    pub to: Prefix,
    /// On-link gateway.
    pub via: IpAddr,
}

/// Gratuitous ARP / unsolicited NA announcements sent after a data address moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AnnounceConfig {
    pub count: u32,
    pub interval: Duration,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            count: DEFAULT_ANNOUNCE_COUNT,
            interval: DEFAULT_ANNOUNCE_INTERVAL,
        }
    }
}

/// One underlying interface of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberConfig {
    pub name: String,
    /// Optional address used only for probing; never moves.
    pub test_address: Option<Prefix>,
    /// Kept inactive while the group has enough active members (Solaris STANDBY).
    pub standby: bool,
}

/// One IPMP group: the IPMP interface ipmpd creates and its members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupConfig {
    /// Name of the IPMP interface.
    pub name: String,
    pub data_addresses: Vec<Prefix>,
    pub routes: Vec<RouteConfig>,
    pub xdp_mode: XdpMode,
    pub announce: AnnounceConfig,
    /// Size of the bucket table, 1..=[`MAX_BUCKETS`](ipmp_common::MAX_BUCKETS).
    pub buckets: u32,
    /// Flow hash seed; random per start when `None`.
    pub hash_seed: Option<u32>,
    /// Probe targets for every probing member; empty: the gateways of `routes`.
    pub probe_targets: Vec<IpAddr>,
    /// XDP answers echo requests to the data and test addresses (`MEMBER_F_NO_ECHO` on the
    /// group's members when off).
    pub xdp_echo: bool,
    /// Members without a test address in a family probe the targets with ARP requests /
    /// neighbour solicitations.
    pub link_layer_probes: bool,
    pub members: Vec<MemberConfig>,
}

/// The whole configuration, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    pub failure_detection_time: Duration,
    pub failback: bool,
    pub control_socket: PathBuf,
    pub link_flap_max_ups: u32,
    pub link_flap_window: Duration,
    /// Receive buffer of the netlink event socket, in bytes (`netlink_rcvbuf_bytes`).
    pub netlink_rcvbuf: u32,
    /// The Prometheus endpoint; `None` (no `[metrics]` section): off.
    pub metrics: Option<MetricsConfig>,
    pub groups: Vec<GroupConfig>,
}

/// The Prometheus metrics endpoint (`[metrics]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MetricsConfig {
    /// Address and TCP port of the HTTP listener (`GET /metrics`).
    pub listen: SocketAddr,
    /// Whether `listen` may be a non-loopback address.
    pub allow_remote: bool,
}
