//! The data plane: loading, attaching and pinning the eBPF programs ([`loader`]), and the
//! dataplane writer ([`writer`]), the only code that touches the maps.

pub mod loader;
pub mod writer;

use std::path::PathBuf;

use ipmp_common::AddrKey;

pub use loader::{Dataplane, XdpAttachMode};

/// The eBPF object built from ipmp-ebpf (empty when built with AYA_BUILD_SKIP=1).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipmp"));

/// What the kernel should hold for one group; computed by the daemon from the group state
/// machine, written by [`Dataplane::apply`] as a delta.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredGroup {
    /// ifindex of the IPMP interface.
    pub ifindex: u32,
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
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredMember {
    pub ifindex: u32,
    pub stats_slot: u32,
    pub active: bool,
    pub cast: bool,
    pub mac: [u8; 6],
    /// Sender address for ARP requests that would otherwise name a data address bound
    /// elsewhere (network byte order; 0 = probe form).
    pub arp_src: u32,
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
    #[error("group slot {0} is out of range")]
    Slot(u32),
}
