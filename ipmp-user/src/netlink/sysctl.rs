//! Per-interface sysctls. /proc/sys/net is per network namespace, resolved from the namespace
//! of the process that opens the file, so ipmpd only ever touches its own namespace.

use std::{fs, io, path::PathBuf};

/// A sysctl could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}")]
pub struct SysctlError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

fn path(family: &str, ifname: &str, key: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/{family}/conf/{ifname}/{key}"))
}

fn write(family: &str, ifname: &str, key: &str, value: &str) -> Result<(), SysctlError> {
    let p = path(family, ifname, key);
    fs::write(&p, value).map_err(|source| SysctlError {
        path: p.display().to_string(),
        source,
    })
}

pub fn read(family: &str, ifname: &str, key: &str) -> Result<String, SysctlError> {
    let p = path(family, ifname, key);
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|source| SysctlError {
            path: p.display().to_string(),
            source,
        })
}

/// Members must never let the kernel undo an address binding (DESIGN.md "ARP flux"):
/// - arp_ignore=1: the kernel answers ARP only for addresses on the member itself (test
///   addresses); data addresses live on the IPMP interface and are answered by XDP;
/// - arp_announce=2: ARP requests use the best local address of the member, never the
///   packet's source (a data address);
/// - rp_filter is left alone: traffic for data addresses enters through the IPMP interface,
///   whose routes lead back to the sender, and the rules of `netlink::member_rules` give
///   the member's own addresses a route back through the member;
/// - accept_ra=0: router advertisements must not configure addresses or routes on members.
pub fn prepare_member(ifname: &str) -> Result<(), SysctlError> {
    write("ipv4", ifname, "arp_ignore", "1")?;
    write("ipv4", ifname, "arp_announce", "2")?;
    // IPv6 may be disabled on the host; members still work for IPv4 then.
    if path("ipv6", ifname, "accept_ra").exists() {
        write("ipv6", ifname, "accept_ra", "0")?;
    }
    Ok(())
}

pub fn set_ipv6_disabled(ifname: &str, disabled: bool) -> Result<(), SysctlError> {
    write(
        "ipv6",
        ifname,
        "disable_ipv6",
        if disabled { "1" } else { "0" },
    )
}

/// The IPMP interface needs `forwarding=1` (IPv4 and IPv6) for one reason: `bpf_fib_lookup`
/// refuses to look up routes for a device without it (BPF_FIB_LKUP_RET_FWD_DISABLED, checked
/// unconditionally in bpf_ipv4_fib_lookup/bpf_ipv6_fib_lookup). Only frames for the group's
/// own data addresses (and its broadcast and multicast) arrive on the IPMP interface
/// (`ipmp_tc_ingress`), so nothing is forwarded from it; a frame for a foreign address stays
/// on the member, whose forwarding is off. IPv6 forwarding proper stays governed by the
/// global switch (`all.forwarding`). accept_ra=0: routes on the IPMP interface come from the
/// config.
pub fn prepare_ipmp(ifname: &str) -> Result<(), SysctlError> {
    write("ipv4", ifname, "forwarding", "1")?;
    if path("ipv6", ifname, "forwarding").exists() {
        write("ipv6", ifname, "accept_ra", "0")?;
        write("ipv6", ifname, "forwarding", "1")?;
    }
    Ok(())
}
