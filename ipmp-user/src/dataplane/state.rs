//! What the data plane is told (the desired state of every group), its object, its errors.

use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData, RingBuf};
use ipmp_common::{AddrKey, MAP_PROBES};

/// The eBPF object built from ipmp-ebpf (empty when built with AYA_BUILD_SKIP=1).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipmp"));

/// What the kernel should hold for one group; computed by the daemon from the group state
/// machine, written by [`Dataplane::apply`](super::Dataplane::apply) as a delta.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredGroup {
    /// ifindex of the IPMP interface.
    pub ifindex: u32,
    /// Where members send inbound traffic: the ifindex of the IPMP interface's veth peer.
    pub rx_ifindex: u32,
    /// The IPMP interface's MAC.
    pub mac: [u8; 6],
    /// Group slot (bucket table base, counter slot).
    pub slot: u32,
    pub seed: u32,
    /// No member is usable.
    pub failed: bool,
    /// Member ifindex per bucket (0 = no active member); the length is the bucket count.
    pub buckets: Vec<u32>,
    /// Cast member: ifindex and MAC.
    pub cast: Option<(u32, [u8; 6])>,
    pub members: Vec<DesiredMember>,
    /// Data addresses and the ifindex of the member bound to each (0 = none).
    pub addresses: Vec<(AddrKey, u32)>,
    /// XDP leaves echo requests for the group's addresses to the kernel
    /// (`MEMBER_F_NO_ECHO` on every member); false (the default) answers them at XDP.
    pub echo_off: bool,
    /// Probe replies are dropped once timestamped into `IPMP_PROBES` instead of also reaching
    /// the prober's raw sockets (`MEMBER_F_PROBE_RING_ONLY` on every member); false by default.
    pub probe_ring_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredMember {
    pub ifindex: u32,
    pub stats_slot: u32,
    pub active: bool,
    pub cast: bool,
    /// XDP runs on the member (`MEMBER_F_XDP`): TC ingress only delivers.
    pub xdp: bool,
    pub mac: [u8; 6],
    /// Sender address for ARP requests that would otherwise name a data address bound
    /// elsewhere (network byte order; 0 = probe form).
    pub arp_src: u32,
    /// The member's test addresses (`IPMP_TESTADDRS`): XDP answers echo requests for them.
    pub test_addresses: Vec<AddrKey>,
    /// The member's probe targets with their `TARGET_F_*` flags (`IPMP_TARGETS`);
    /// `TARGET_F_NEIGH` has XDP timestamp the target's ARP replies / neighbour advertisements.
    pub targets: Vec<(AddrKey, u32)>,
}

/// Opens the pinned `IPMP_PROBES` ring buffer under `pin_dir` for reading probe events
/// (`ipmp_common::ProbeEvent` records). One reader at a time: records are consumed.
pub fn open_probe_ring(pin_dir: &Path) -> Result<RingBuf<MapData>, DataplaneError> {
    let map = |source| DataplaneError::Map {
        map: MAP_PROBES,
        source,
    };
    let data = MapData::from_pin(pin_dir.join(MAP_PROBES)).map_err(map)?;
    RingBuf::try_from(Map::RingBuf(data)).map_err(map)
}

/// A data plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "{0} is not a mounted bpf filesystem: mount it (mount -t bpf bpf /sys/fs/bpf) or choose another --pin-dir"
    )]
    NotBpffs(PathBuf),
    #[error("cannot create pin directory {path}: {source} (is bpffs writable and are you root?)")]
    PinDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the eBPF object is empty: ipmpd was built with AYA_BUILD_SKIP=1; rebuild after `cargo xtask setup`"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no {0}: rebuild ipmpd")]
    Missing(&'static str),
    #[error("loading program {name} failed: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("attaching {program} to {interface} failed: {source}")]
    Attach {
        program: &'static str,
        interface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("pinning {path}: {message}")]
    Pin { path: PathBuf, message: String },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "{path} was pinned by an incompatible ipmpd (key, value size, entries {found:?}, this ipmpd needs {expected:?}): stop it and run `ipmpd --cleanup` (forwarding stops until ipmpd starts again)"
    )]
    IncompatiblePin {
        path: PathBuf,
        found: (u32, u32, u32),
        expected: (u32, u32, u32),
    },
    #[error(
        "map {map}: writing {count} elements in one batch failed: {source} (BPF_MAP_UPDATE_BATCH needs kernel 5.6 or later)"
    )]
    Batch {
        map: &'static str,
        count: usize,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "map {map}: reading {count} elements from index {start} in one batch failed: {source} (BPF_MAP_LOOKUP_BATCH needs kernel 5.6 or later)"
    )]
    BatchRead {
        map: &'static str,
        start: u32,
        count: usize,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot tell which TCX programs {interface} holds (BPF_PROG_QUERY: {source}); ipmpd needs CAP_NET_ADMIN"
    )]
    Query {
        interface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("group slot {0} is out of range")]
    Slot(u32),
}
