//! ipmpd's command line.

use std::path::PathBuf;

use clap::Parser;
use ipmp_common::PIN_DIR;

use crate::{config, netlink::sysctl::PROC_SYS_NET};

/// IP network multipathing daemon: keeps a group's data addresses reachable when a member NIC
/// fails and spreads outbound flows over the healthy members (eBPF data plane).
///
/// ipmpd runs in the foreground and logs to standard error through tracing (filter with
/// RUST_LOG, default info). It reads its configuration (see ipmpd.toml(5)), creates each
/// group's IPMP interface with its data addresses and routes, attaches its eBPF programs to the
/// members and pins them under the bpffs directory, then watches the members' links and probes
/// them. SIGTERM and SIGINT stop it and leave the programs pinned, so forwarding continues on
/// the last state and the next ipmpd adopts them; SIGHUP (or `ipmpadm reload`) restarts it on
/// the edited configuration without interrupting traffic.
#[derive(Parser, Debug)]
#[command(name = "ipmpd", version)]
pub struct Cli {
    /// Configuration file (TOML; see config/ipmpd.toml in the source for every key).
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// bpffs directory for the pinned maps and program links.
    #[arg(long, default_value = PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Where the network sysctls are (the members' arp_ignore, arp_announce, accept_ra; the
    /// IPMP interface's forwarding). In a container whose /proc/sys is read-only, mount the
    /// host's /proc/sys/net writable elsewhere and name it here.
    #[arg(long, value_name = "DIR", default_value = PROC_SYS_NET)]
    pub proc_sys_net: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    pub check: bool,
    /// Remove everything ipmpd set up (IPMP interfaces of the config, pinned programs, links
    /// and maps) and exit. Forwarding through the groups stops.
    #[arg(long)]
    pub cleanup: bool,
}
