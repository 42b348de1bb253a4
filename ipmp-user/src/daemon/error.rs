//! Why ipmpd cannot start (or stopped).

use std::net::IpAddr;

use ipmp_common::{MAX_GROUPS, MAX_MEMBERS};

use crate::{
    announce::AnnounceError,
    control,
    dataplane::DataplaneError,
    netlink::{NetlinkError, sysctl},
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("ipmpd must run as root (it needs CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW)")]
    NotRoot,
    #[error("interface {name} (group {group}) does not exist: check the name with `ip link`")]
    UnknownInterface { name: String, group: String },
    #[error("interface {name} is already in a group: {why}")]
    InGroup { name: String, why: String },
    #[error(
        "data address {addr} of group {group} is already in use on {ifname}: remove it there or choose another address"
    )]
    AddressInUse {
        addr: IpAddr,
        group: String,
        ifname: String,
    },
    #[error(
        "interface {0} already exists and is not an IPMP interface of ipmpd: choose another group name or delete it"
    )]
    NameTaken(String),
    #[error("too many groups or members (at most {MAX_GROUPS} groups and {MAX_MEMBERS} members)")]
    TooMany,
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Announce(#[from] AnnounceError),
    #[error(transparent)]
    Prober(#[from] crate::probe_io::ProberError),
    #[error(transparent)]
    Ring(#[from] crate::probe_io::ring::RingError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

pub type Result<T> = std::result::Result<T, DaemonError>;
