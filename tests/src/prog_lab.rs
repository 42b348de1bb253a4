//! The lab of the BPF_PROG_TEST_RUN tests (the packet fixtures and the fuzz test): veth
//! devices in a fresh network namespace — two IPMP interfaces, ipmp0 and ipmp1, and five
//! members m0..m4 — with the addresses and routes `bpf_fib_lookup` and the test-run device
//! selection need, the addresses and MACs the tests' maps use, and the object loader.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, anyhow, ensure};
use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, Xdp},
};
use ipmp::dataplane::EBPF_OBJECT;
use nix::sched::CloneFlags;

use crate::{packets::Mac, testrun::ProgKind};

pub const MEMBERS: usize = 5;
pub const IPMP0_MAC: Mac = [0x02, 0, 0, 0, 0x01, 0x00];
pub const IPMP1_MAC: Mac = [0x02, 0, 0, 0, 0x01, 0x01];
pub const MEMBER_MAC: [Mac; MEMBERS] = [
    [0x02, 0, 0, 0, 0, 0x10],
    [0x02, 0, 0, 0, 0, 0x11],
    [0x02, 0, 0, 0, 0, 0x12],
    [0x02, 0, 0, 0, 0, 0x13],
    [0x02, 0, 0, 0, 0, 0x14],
];
/// A host on the group's link (the gateway).
pub const PEER_MAC: Mac = [0x02, 0, 0, 0, 0x02, 0x01];
pub const PEER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x99);

/// Data addresses of ipmp0: `.10`/`::10` bound to m0, `.11`/`::11` to m1, `.12`/`::12` to no
/// member.
pub const DATA4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 10),
    Ipv4Addr::new(198, 51, 100, 11),
    Ipv4Addr::new(198, 51, 100, 12),
];
pub const DATA6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x12),
];
/// Which member each data address is bound to (`None`: no active member).
pub const BOUND: [Option<usize>; 3] = [Some(0), Some(1), None];
/// Data addresses of ipmp1, bound to m3.
pub const DATA1_4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 130);
pub const DATA1_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x10);
/// Test addresses (member ARP sender override): m0, m1; m2 has none (probe form).
pub const TEST4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 51, 100, 20),
    Ipv4Addr::new(198, 51, 100, 21),
];
/// IPv6 test address of m0 (link-local, as ipmpd configures them by default).
pub const TEST6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x20);
/// A probe target on the link: m0 probes it with ARP/NDP (no test address needed), m1 with
/// ICMP only.
pub const TARGET_MAC: Mac = [0x02, 0, 0, 0, 0x02, 0x02];
pub const TARGET4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const TARGET6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
/// The daemon's probe identity in `IPMP_CONFIG`.
pub const PROBE_ID: u16 = 0x1d1d;
pub const COOKIE: u64 = 0x0123_4567_89ab_cdef;
/// Off-link destinations (behind the gateway).
pub const FAR4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
pub const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 7);

/// Real devices in the current thread's network namespace.
pub struct Lab {
    pub ipmp0: u32,
    pub ipmp1: u32,
    /// The veth peers of ipmp0 and ipmp1.
    pub ipmp0_peer: u32,
    pub ipmp1_peer: u32,
    pub members: [u32; MEMBERS],
}

impl Lab {
    /// The devices, ipmp0's and ipmp1's addresses, ipmp0's default routes (`routes`) and
    /// forwarding on both IPMP interfaces (`forwarding`).
    pub fn create(routes: bool, forwarding: bool) -> Result<Self> {
        let mut batch = String::new();
        let mut link = |name: &str, mac: Mac| {
            batch.push_str(&format!(
                "link add {name} address {} type veth peer name {name}p\n",
                crate::lab::fmt_mac(&mac)
            ));
        };
        link("ipmp0", IPMP0_MAC);
        link("ipmp1", IPMP1_MAC);
        for (i, mac) in MEMBER_MAC.iter().enumerate() {
            link(&format!("m{i}"), *mac);
        }
        batch.push_str("link set ipmp0 arp off\nlink set ipmp1 arp off\n");
        let mut names = vec!["ipmp0".to_owned(), "ipmp1".to_owned()];
        names.extend((0..MEMBERS).map(|i| format!("m{i}")));
        for name in &names {
            batch.push_str(&format!("link set {name}p up\nlink set {name} up\n"));
        }
        batch.push_str("addr add 198.51.100.10/24 dev ipmp0\n");
        batch.push_str("addr add 2001:db8:1::10/64 dev ipmp0 nodad\n");
        batch.push_str("addr add 2001:db8:3::10/64 dev ipmp1 nodad\n");
        if routes {
            batch.push_str("route add default via 198.51.100.1 dev ipmp0\n");
            batch.push_str("route add ::/0 via 2001:db8:1::1 dev ipmp0\n");
        }
        crate::lab::ip_batch(&batch)?;
        if forwarding {
            // bpf_fib_lookup refuses to look up routes for an interface without forwarding.
            crate::lab::sysctl_here(&[
                "net.ipv4.conf.ipmp0.forwarding=1",
                "net.ipv6.conf.ipmp0.forwarding=1",
                "net.ipv4.conf.ipmp1.forwarding=1",
                "net.ipv6.conf.ipmp1.forwarding=1",
            ])?;
        }
        let index = |name: &str| -> Result<u32> {
            nix::net::if_::if_nametoindex(name).with_context(|| format!("ifindex of {name}"))
        };
        let mut members = [0; MEMBERS];
        for (i, m) in members.iter_mut().enumerate() {
            *m = index(&format!("m{i}"))?;
        }
        Ok(Self {
            ipmp0: index("ipmp0")?,
            ipmp1: index("ipmp1")?,
            ipmp0_peer: index("ipmp0p")?,
            ipmp1_peer: index("ipmp1p")?,
            members,
        })
    }
}

/// Runs `f` on a new thread that first moves into a fresh network namespace; the namespace
/// (and every device in it) goes away with the thread.
pub fn in_fresh_netns<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("the test thread panicked"))?
    })
}

/// The no-op programs in ipmp-ebpf/src/noop.rs (the object's reference programs, never loaded
/// by ipmpd).
pub const PROG_TC_NOOP: &str = "ipmp_tc_noop";
pub const PROG_XDP_NOOP: &str = "ipmp_xdp_noop";
/// The TC reference: parse, `bpf_fib_lookup`, `bpf_redirect_neigh` and nothing else.
pub const PROG_TC_FIBREF: &str = "ipmp_tc_fibref";

/// The eBPF object with fresh, unpinned maps.
pub fn load_object() -> Result<Ebpf> {
    ensure!(
        !EBPF_OBJECT.is_empty(),
        "the eBPF object is an empty stub (built with AYA_BUILD_SKIP=1): build ipmp-user \
         without it"
    );
    EbpfLoader::new()
        .load(EBPF_OBJECT)
        .context("load the eBPF object")
}

/// Loads program `name` of the object into the kernel (the verifier log is in the error).
pub fn load_program(ebpf: &mut Ebpf, name: &str, kind: ProgKind) -> Result<()> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("no program {name}"))?;
    let loaded = match kind {
        ProgKind::Tc => <&mut SchedClassifier>::try_from(program)?.load(),
        ProgKind::Xdp => <&mut Xdp>::try_from(program)?.load(),
    };
    loaded.map_err(|e| anyhow!("load {name}: {e:?}"))
}
