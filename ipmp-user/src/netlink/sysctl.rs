//! Per-interface sysctls. /proc/sys/net is per network namespace, resolved from the namespace
//! of the process that opens the file, so ipmpd only ever touches its own namespace.
//!
//! The directory is configurable (`ipmpd --proc-sys-net`): container runtimes mount
//! `/proc/sys` read-only in unprivileged containers, so a pod with the host's network mounts
//! the host's `/proc/sys/net` elsewhere (a hostPath volume, as the DaemonSet in `dist/` does)
//! and names it. A file opened there still resolves in the opening process's namespace.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// Where the per-namespace network sysctls are, by default.
pub const PROC_SYS_NET: &str = "/proc/sys/net";

/// A sysctl could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}{}", hint(source))]
pub struct SysctlError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

fn hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::ReadOnlyFilesystem {
        " (read-only /proc/sys, as in an unprivileged container: mount the host's /proc/sys/net \
         writable elsewhere and give its path with --proc-sys-net)"
    } else {
        ""
    }
}

/// The network sysctls under one directory (normally [`PROC_SYS_NET`]).
#[derive(Clone, Debug)]
pub struct Sysctls {
    root: PathBuf,
}

impl Default for Sysctls {
    fn default() -> Self {
        Self::new(Path::new(PROC_SYS_NET))
    }
}

impl Sysctls {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, family: &str, ifname: &str, key: &str) -> PathBuf {
        self.root.join(family).join("conf").join(ifname).join(key)
    }

    fn write(&self, family: &str, ifname: &str, key: &str, value: &str) -> Result<(), SysctlError> {
        let p = self.path(family, ifname, key);
        fs::write(&p, value).map_err(|source| SysctlError {
            path: p.display().to_string(),
            source,
        })
    }

    pub fn read(&self, family: &str, ifname: &str, key: &str) -> Result<String, SysctlError> {
        let p = self.path(family, ifname, key);
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
    pub fn prepare_member(&self, ifname: &str) -> Result<(), SysctlError> {
        self.write("ipv4", ifname, "arp_ignore", "1")?;
        self.write("ipv4", ifname, "arp_announce", "2")?;
        // IPv6 may be disabled on the host; members still work for IPv4 then.
        if self.path("ipv6", ifname, "accept_ra").exists() {
            self.write("ipv6", ifname, "accept_ra", "0")?;
        }
        Ok(())
    }

    pub fn set_ipv6_disabled(&self, ifname: &str, disabled: bool) -> Result<(), SysctlError> {
        self.write(
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
    pub fn prepare_ipmp(&self, ifname: &str) -> Result<(), SysctlError> {
        self.write("ipv4", ifname, "forwarding", "1")?;
        if self.path("ipv6", ifname, "forwarding").exists() {
            self.write("ipv6", ifname, "accept_ra", "0")?;
            self.write("ipv6", ifname, "forwarding", "1")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch tree shaped like /proc/sys/net for one interface; IPv6 optional.
    fn tree(name: &str, ipv6: bool) -> PathBuf {
        let root = std::env::temp_dir().join(format!("ipmp-sysctl-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("ipv4/conf/m0")).unwrap();
        if ipv6 {
            fs::create_dir_all(root.join("ipv6/conf/m0")).unwrap();
            fs::write(root.join("ipv6/conf/m0/accept_ra"), "1\n").unwrap();
            fs::write(root.join("ipv6/conf/m0/forwarding"), "0\n").unwrap();
        }
        root
    }

    #[test]
    fn writes_go_under_the_configured_directory() {
        let root = tree("member", true);
        let s = Sysctls::new(&root);
        s.prepare_member("m0").unwrap();
        s.prepare_ipmp("m0").unwrap();
        for (file, want) in [
            ("ipv4/conf/m0/arp_ignore", "1"),
            ("ipv4/conf/m0/arp_announce", "2"),
            ("ipv4/conf/m0/forwarding", "1"),
            ("ipv6/conf/m0/accept_ra", "0"),
            ("ipv6/conf/m0/forwarding", "1"),
        ] {
            assert_eq!(fs::read_to_string(root.join(file)).unwrap(), want, "{file}");
        }
        assert_eq!(s.read("ipv4", "m0", "arp_ignore").unwrap(), "1");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn ipv6_is_skipped_where_the_host_has_none() {
        let root = tree("noipv6", false);
        let s = Sysctls::new(&root);
        s.prepare_member("m0").unwrap();
        s.prepare_ipmp("m0").unwrap();
        assert!(!root.join("ipv6").exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_read_only_file_system_names_the_option() {
        let e = SysctlError {
            path: "/proc/sys/net/ipv4/conf/m0/arp_ignore".into(),
            source: io::Error::from(io::ErrorKind::ReadOnlyFilesystem),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("arp_ignore") && msg.contains("--proc-sys-net"),
            "{msg}"
        );
        let other = SysctlError {
            path: "x".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(!other.to_string().contains("--proc-sys-net"));
    }
}
