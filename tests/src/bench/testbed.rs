//! A BPF test bed for benchmarks: ipmp's object loaded with fresh (unpinned) maps, filled by
//! the daemon's own writer ([`ipmp::dataplane::writer::MapWriter`]) from a [`DesiredGroup`],
//! in a private network namespace with real devices (the TC program's `bpf_fib_lookup` and the
//! test-run device selection need them).
//!
//! Use it on a thread given to [`in_fresh_netns`]: the namespace and its devices go away with
//! that thread.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, anyhow, ensure};
use aya::{Ebpf, EbpfLoader};
use ipmp::{
    buckets::BucketTable,
    config::DEFAULT_BUCKETS,
    dataplane::{DesiredGroup, DesiredMember, EBPF_OBJECT, writer::MapWriter},
};
use ipmp_common::AddrKey;
use nix::sched::CloneFlags;

use crate::{
    lab::{LAB_HASH_SEED, fmt_mac, member_mac},
    packets::Mac,
};

/// MAC of the IPMP interface of the test bed.
pub const IPMP0_MAC: Mac = [0x02, 0, 0, 0, 0x01, 0x00];
/// A peer on the group's link.
pub const PEER_MAC: Mac = [0x02, 0, 0, 0, 0x02, 0x01];
pub const PEER4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x99);
/// The group's data addresses, bound to member 0.
pub const DATA4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const DATA6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// On-link and off-link (behind the gateway) destinations.
pub const ONLINK4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
pub const ONLINK6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x77);
pub const FAR4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
pub const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 7);

/// Runs `f` on a new thread that first moves into a fresh network namespace; the namespace
/// (and every device made in it) goes away with the thread. Child processes started from that
/// thread (ip, sysctl) inherit its namespace.
pub fn in_fresh_netns<T: Send>(f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("the test bed thread panicked"))?
    })
}

/// The object, its writer and the devices of one group: `ipmp0` and members `m0..`.
pub struct Testbed {
    pub ebpf: Ebpf,
    pub writer: MapWriter,
    pub ipmp0: u32,
    /// The IPMP interface's veth peer, where inbound frames are handed over.
    pub ipmp0_peer: u32,
    pub members: Vec<u32>,
    /// The group's bucket table (member ids 0..), as the group state machine keeps it.
    pub table: BucketTable,
}

impl Testbed {
    /// Builds the devices in the calling thread's namespace, loads the object and writes the
    /// group (of the default bucket count) with every member active. Call from
    /// [`in_fresh_netns`].
    pub fn new(members: usize) -> anyhow::Result<Testbed> {
        Self::with_buckets(members, DEFAULT_BUCKETS)
    }

    /// [`Testbed::new`] with a bucket table of `buckets` buckets.
    pub fn with_buckets(members: usize, buckets: u32) -> anyhow::Result<Testbed> {
        ensure!(
            !EBPF_OBJECT.is_empty(),
            "the eBPF object is an empty stub (built with AYA_BUILD_SKIP=1): build ipmp-user without it"
        );
        let mut batch = String::new();
        batch.push_str(&format!(
            "link add ipmp0 address {} type veth peer name ipmp0p\nlink set ipmp0 arp off\n",
            fmt_mac(&IPMP0_MAC)
        ));
        for i in 0..members {
            batch.push_str(&format!(
                "link add m{i} address {} type veth peer name m{i}p\nlink set m{i}p up\nlink set m{i} up\n",
                fmt_mac(&member_mac(i))
            ));
        }
        batch.push_str(
            "link set ipmp0p up\nlink set ipmp0 up\n\
             addr add 198.51.100.10/24 dev ipmp0\n\
             addr add 2001:db8:1::10/64 dev ipmp0 nodad\n\
             route add default via 198.51.100.1 dev ipmp0\n\
             route add ::/0 via 2001:db8:1::1 dev ipmp0\n",
        );
        crate::lab::ip_batch(&batch)?;
        // bpf_fib_lookup refuses interfaces without forwarding (checked on 6.18).
        crate::lab::sysctl_here(&[
            "net.ipv4.conf.ipmp0.forwarding=1",
            "net.ipv6.conf.ipmp0.forwarding=1",
        ])?;
        let index = |name: &str| -> anyhow::Result<u32> {
            nix::net::if_::if_nametoindex(name).with_context(|| format!("ifindex of {name}"))
        };
        let ipmp0 = index("ipmp0")?;
        let ipmp0_peer = index("ipmp0p")?;
        let members = (0..members)
            .map(|i| index(&format!("m{i}")))
            .collect::<anyhow::Result<Vec<u32>>>()?;
        let mut ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .context("load the eBPF object")?;
        let writer = MapWriter::new(&mut ebpf)?;
        let mut bed = Testbed {
            ebpf,
            writer,
            ipmp0,
            ipmp0_peer,
            members,
            table: BucketTable::new(buckets),
        };
        let all: Vec<usize> = (0..bed.members.len()).collect();
        bed.set_active(&all)?;
        Ok(bed)
    }

    /// What the daemon would write with `active` members active.
    pub fn desired(&self, active: &[usize]) -> DesiredGroup {
        let buckets = self
            .table
            .slots()
            .iter()
            .map(|s| s.and_then(|m| self.members.get(m).copied()).unwrap_or(0))
            .collect();
        let cast = active.first().copied();
        let bound = cast.and_then(|m| self.members.get(m).copied()).unwrap_or(0);
        DesiredGroup {
            ifindex: self.ipmp0,
            rx_ifindex: self.ipmp0_peer,
            mac: IPMP0_MAC,
            slot: 0,
            seed: LAB_HASH_SEED,
            failed: active.is_empty(),
            buckets,
            cast: cast.map(|m| (self.members[m], member_mac(m))),
            members: self
                .members
                .iter()
                .enumerate()
                .map(|(i, &ifindex)| DesiredMember {
                    ifindex,
                    stats_slot: i as u32,
                    active: active.contains(&i),
                    cast: cast == Some(i),
                    xdp: false,
                    mac: member_mac(i),
                    arp_src: 0,
                    test_addresses: Vec::new(),
                    targets: Vec::new(),
                })
                .collect(),
            addresses: vec![
                (AddrKey::v4(DATA4.octets()), bound),
                (AddrKey::v6(DATA6.octets()), bound),
            ],
            echo_off: false,
            probe_ring_only: false,
        }
    }

    /// Rebalances the bucket table over `active` (as the group does) and writes the result
    /// through the daemon's writer: one atomic table update.
    pub fn set_active(&mut self, active: &[usize]) -> anyhow::Result<()> {
        self.table.rebalance(active);
        let desired = self.desired(active);
        self.writer.apply(&[desired])?;
        Ok(())
    }
}
