//! A BPF test bed for benchmarks: ipmp's object loaded with fresh (unpinned) maps, filled by
//! the daemon's own writer ([`ipmp::dataplane::writer::MapWriter`]) from a [`DesiredGroup`],
//! in a private network namespace with real devices (the TC program's `bpf_fib_lookup` and the
//! test-run device selection need them).
//!
//! Use it on a thread given to [`in_fresh_netns`]: the namespace and its devices go away with
//! that thread.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, ensure};
use aya::Ebpf;
use ipmp::{
    buckets::BucketTable,
    config::DEFAULT_BUCKETS,
    dataplane::{DesiredGroup, DesiredMember, writer::MapWriter},
};
use ipmp_common::AddrKey;

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
/// An on-link destination whose neighbour entry is not confirmed (not in `IPMP_NEIGHS`).
pub const UNCONFIRMED4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 78);
/// The MAC of every confirmed neighbour of the members (the on-link destinations and the
/// gateways), as ipmpd would copy it into `IPMP_NEIGHS`.
pub const NEIGH_MAC: Mac = [0x02, 0, 0, 0, 0x03, 0x01];
/// Next hops the members hold confirmed: the on-link destinations and the default gateways.
const CONFIRMED: [std::net::IpAddr; 4] = [
    std::net::IpAddr::V4(ONLINK4),
    std::net::IpAddr::V6(ONLINK6),
    std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
    std::net::IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
];

pub use crate::prog_lab::in_fresh_netns;

/// The devices of a test bed, in the calling thread's namespace: the IPMP interface `ipmp0`
/// (with the addresses and routes the TC program's FIB lookup needs), `others` further IPMP
/// interfaces `g1..` (veths without addresses: only their map entries matter) and member veths
/// `m0..`. Several [`Testbed`]s, each with its own object and maps, can share them.
pub struct Devices {
    pub ipmp0: u32,
    /// The IPMP interface's veth peer, where inbound frames are handed over.
    pub ipmp0_peer: u32,
    /// The other IPMP interfaces and their peers.
    pub others: Vec<(u32, u32)>,
    pub members: Vec<u32>,
}

impl Devices {
    /// Builds the devices. Call from [`in_fresh_netns`].
    pub fn new(others: usize, members: usize) -> anyhow::Result<Devices> {
        let mut batch = String::new();
        batch.push_str(&format!(
            "link add ipmp0 address {} type veth peer name ipmp0p\nlink set ipmp0 arp off\n",
            fmt_mac(&IPMP0_MAC)
        ));
        for g in 1..=others {
            batch.push_str(&format!(
                "link add g{g} address {} type veth peer name g{g}p\nlink set g{g} arp off\n\
                 link set g{g}p up\nlink set g{g} up\n",
                fmt_mac(&group_mac(g))
            ));
        }
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
        Ok(Devices {
            ipmp0: index("ipmp0")?,
            ipmp0_peer: index("ipmp0p")?,
            others: (1..=others)
                .map(|g| Ok((index(&format!("g{g}"))?, index(&format!("g{g}p"))?)))
                .collect::<anyhow::Result<_>>()?,
            members: (0..members)
                .map(|i| index(&format!("m{i}")))
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

/// MAC of IPMP interface `g` (`ipmp0` is group 0).
pub fn group_mac(g: usize) -> Mac {
    [0x02, 0, 0, 0, 0x01, g as u8]
}

/// How big a [`Testbed::scaled`] configuration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Groups; the measured one (on `ipmp0`) is written last, in slot `groups - 1`.
    pub groups: usize,
    /// Members of the measured group. The other groups get as many, fewer where that would
    /// pass `MAX_MEMBERS` over all groups.
    pub members: usize,
    /// Data addresses over all groups, each an IPv4 and an IPv6 one; the last is
    /// [`DATA4`]/[`DATA6`], in the measured group, bound to its last member.
    pub addresses: usize,
}

impl Scale {
    /// Members of each other group, in order.
    pub fn other_members(&self) -> Vec<usize> {
        let others = self.groups.saturating_sub(1);
        if others == 0 {
            return Vec::new();
        }
        let budget = (ipmp_common::MAX_MEMBERS as usize).saturating_sub(self.members);
        (0..others)
            .map(|i| {
                let share = budget / others + usize::from(i < budget % others);
                share.min(self.members)
            })
            .collect()
    }

    /// Member devices the configuration needs.
    pub fn total_members(&self) -> usize {
        self.members + self.other_members().iter().sum::<usize>()
    }

    /// Data address `j` of `0..addresses`: the last is [`DATA4`]/[`DATA6`], the others
    /// 203.0.113.j and 2001:db8:3::j.
    fn address(&self, j: usize) -> (AddrKey, AddrKey) {
        if j + 1 == self.addresses {
            return (AddrKey::v4(DATA4.octets()), AddrKey::v6(DATA6.octets()));
        }
        let v4 = Ipv4Addr::new(203, 0, 113, (j % 256) as u8);
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, (j >> 16) as u16, j as u16);
        (AddrKey::v4(v4.octets()), AddrKey::v6(v6.octets()))
    }

    /// Group (0.., the measured one last) and member rank within it of data address `j`:
    /// round-robin over the groups and their members, counted back from the last address,
    /// which lands on the measured group's last member.
    fn placement(&self, j: usize, members_of: impl Fn(usize) -> usize) -> (usize, usize) {
        let back = self.addresses - 1 - j;
        let group = self.groups - 1 - back % self.groups;
        let n = members_of(group).max(1);
        let rank = back / self.groups;
        (group, n - 1 - rank % n)
    }
}

/// The object, its writer and the devices of one group: `ipmp0` and members `m0..`; in a scaled
/// bed also the other groups, written along with it.
pub struct Testbed {
    pub ebpf: Ebpf,
    pub writer: MapWriter,
    pub ipmp0: u32,
    /// The IPMP interface's veth peer, where inbound frames are handed over.
    pub ipmp0_peer: u32,
    pub members: Vec<u32>,
    /// Counter slot (and [`member_mac`] index) of `members[0]`; the others follow.
    pub first_slot: u32,
    /// The group's bucket table (member ids 0..), as the group state machine keeps it.
    pub table: BucketTable,
    /// The group's data addresses and the index of the member each is bound to (`None`: the
    /// cast member).
    addresses: Vec<(AddrKey, Option<usize>)>,
    /// Further groups, written before this one and left as they are.
    others: Vec<DesiredGroup>,
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
        let dev = Devices::new(0, members)?;
        let addresses = vec![
            (AddrKey::v4(DATA4.octets()), None),
            (AddrKey::v6(DATA6.octets()), None),
        ];
        Self::load(&dev, dev.members.clone(), 0, buckets, addresses, Vec::new())
    }

    /// A fresh object (its own maps) over shared `dev`, written with the configuration
    /// `scale`, every member active and the default bucket count: the other groups on
    /// `g1..`, their members the first member devices; the measured group on `ipmp0`, last,
    /// with the member devices after those. `dev` must have enough of both.
    pub fn scaled(dev: &Devices, scale: Scale) -> anyhow::Result<Testbed> {
        ensure!(
            scale.groups >= 1
                && scale.members >= 1
                && scale.addresses >= 1
                && scale.groups <= ipmp_common::MAX_GROUPS as usize
                && scale.total_members() <= ipmp_common::MAX_MEMBERS as usize
                && 2 * scale.addresses <= ipmp_common::MAX_ADDRS as usize
                && scale.addresses <= 256,
            "{scale:?} does not fit the maps"
        );
        ensure!(
            dev.others.len() + 1 >= scale.groups && dev.members.len() >= scale.total_members(),
            "{scale:?} needs more devices than were built"
        );
        let counts = scale.other_members();
        let members_of = |g: usize| counts.get(g).copied().unwrap_or(scale.members);
        let mut others = Vec::new();
        let mut next = 0usize;
        for (g, &n) in counts.iter().enumerate() {
            let (ifindex, rx_ifindex) = dev.others[g];
            let mut table = BucketTable::new(DEFAULT_BUCKETS);
            table.rebalance(&(0..n).collect::<Vec<_>>());
            let ifs = &dev.members[next..next + n];
            let addresses = (0..scale.addresses)
                .filter_map(|j| {
                    let (group, rank) = scale.placement(j, members_of);
                    (group == g).then(|| {
                        let (v4, v6) = scale.address(j);
                        [(v4, ifs[rank]), (v6, ifs[rank])]
                    })
                })
                .flatten()
                .collect();
            others.push(group_desired(
                ifindex,
                rx_ifindex,
                group_mac(g + 1),
                g as u32,
                &table,
                ifs,
                next,
                &(0..n).collect::<Vec<_>>(),
                addresses,
            ));
            next += n;
        }
        let me = scale.groups - 1;
        let addresses = (0..scale.addresses)
            .filter_map(|j| {
                let (group, rank) = scale.placement(j, members_of);
                (group == me).then(|| {
                    let (v4, v6) = scale.address(j);
                    [(v4, Some(rank)), (v6, Some(rank))]
                })
            })
            .flatten()
            .collect();
        let members = dev.members[next..next + scale.members].to_vec();
        Self::load(
            dev,
            members,
            next as u32,
            DEFAULT_BUCKETS,
            addresses,
            others,
        )
    }

    fn load(
        dev: &Devices,
        members: Vec<u32>,
        first_slot: u32,
        buckets: u32,
        addresses: Vec<(AddrKey, Option<usize>)>,
        others: Vec<DesiredGroup>,
    ) -> anyhow::Result<Testbed> {
        let mut ebpf = crate::prog_lab::load_object()?;
        let writer = MapWriter::new(&mut ebpf)?;
        let mut bed = Testbed {
            ebpf,
            writer,
            ipmp0: dev.ipmp0,
            ipmp0_peer: dev.ipmp0_peer,
            members,
            first_slot,
            table: BucketTable::new(buckets),
            addresses,
            others,
        };
        let all: Vec<usize> = (0..bed.members.len()).collect();
        bed.set_active(&all)?;
        for &member in &bed.members {
            for ip in CONFIRMED {
                bed.writer
                    .put_neighbour(ipmp_common::NeighKey::new(member, ip.into()), NEIGH_MAC)?;
            }
        }
        Ok(bed)
    }

    /// Counter slot of member `i`.
    pub fn slot(&self, i: usize) -> u32 {
        self.first_slot + i as u32
    }

    /// MAC of member `i`.
    pub fn mac(&self, i: usize) -> Mac {
        member_mac(self.slot(i) as usize)
    }

    /// What the daemon would write for this group with `active` members active.
    pub fn desired(&self, active: &[usize]) -> DesiredGroup {
        let cast = active.first().copied();
        let ifindex_of = |m: Option<usize>| m.and_then(|m| self.members.get(m).copied());
        let addresses = self
            .addresses
            .iter()
            .map(|&(key, bound)| (key, ifindex_of(bound.or(cast)).unwrap_or(0)))
            .collect();
        group_desired(
            self.ipmp0,
            self.ipmp0_peer,
            IPMP0_MAC,
            self.others.len() as u32,
            &self.table,
            &self.members,
            self.first_slot as usize,
            active,
            addresses,
        )
    }

    /// Rebalances the bucket table over `active` (as the group does) and writes the result
    /// (after the other groups, unchanged) through the daemon's writer: one atomic table update.
    pub fn set_active(&mut self, active: &[usize]) -> anyhow::Result<()> {
        self.table.rebalance(active);
        let mut groups = self.others.clone();
        groups.push(self.desired(active));
        self.writer.apply(&groups)?;
        Ok(())
    }
}

/// One group as the daemon describes it: members `ifs` (counter slots and [`member_mac`]
/// indices from `first_slot`), `active` ones active, the first active one the cast member.
#[expect(
    clippy::too_many_arguments,
    reason = "one field each of the group described"
)]
fn group_desired(
    ifindex: u32,
    rx_ifindex: u32,
    mac: Mac,
    slot: u32,
    table: &BucketTable,
    ifs: &[u32],
    first_slot: usize,
    active: &[usize],
    addresses: Vec<(AddrKey, u32)>,
) -> DesiredGroup {
    let buckets = table
        .slots()
        .iter()
        .map(|s| s.and_then(|m| ifs.get(m).copied()).unwrap_or(0))
        .collect();
    let cast = active.first().copied();
    DesiredGroup {
        ifindex,
        rx_ifindex,
        mac,
        slot,
        seed: LAB_HASH_SEED,
        failed: active.is_empty(),
        buckets,
        cast: cast.map(|m| (ifs[m], member_mac(first_slot + m))),
        members: ifs
            .iter()
            .enumerate()
            .map(|(i, &ifindex)| DesiredMember {
                ifindex,
                stats_slot: (first_slot + i) as u32,
                active: active.contains(&i),
                cast: cast == Some(i),
                xdp: false,
                mac: member_mac(first_slot + i),
                arp_src: 0,
                test_addresses: Vec::new(),
                targets: Vec::new(),
            })
            .collect(),
        addresses,
        echo_off: false,
        probe_ring_only: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_fills_at_most_the_maps() {
        let big = Scale {
            groups: 8,
            members: 16,
            addresses: 256,
        };
        assert_eq!(big.other_members(), vec![7, 7, 7, 7, 7, 7, 6]);
        assert_eq!(big.total_members(), ipmp_common::MAX_MEMBERS as usize);
        let mid = Scale { members: 8, ..big };
        assert_eq!(mid.other_members(), vec![8; 7]);
        let one = Scale {
            groups: 1,
            members: 2,
            addresses: 1,
        };
        assert!(one.other_members().is_empty());
        assert_eq!(one.total_members(), 2);
    }

    #[test]
    fn the_last_address_is_the_measured_groups_last_members() {
        for scale in [
            Scale {
                groups: 1,
                members: 2,
                addresses: 1,
            },
            Scale {
                groups: 8,
                members: 2,
                addresses: 1,
            },
            Scale {
                groups: 8,
                members: 16,
                addresses: 256,
            },
        ] {
            let counts = scale.other_members();
            let members_of = |g: usize| counts.get(g).copied().unwrap_or(scale.members);
            let last = scale.addresses - 1;
            assert_eq!(
                scale.placement(last, members_of),
                (scale.groups - 1, scale.members - 1)
            );
            assert_eq!(scale.address(last).0, AddrKey::v4(DATA4.octets()));
            let keys: std::collections::HashSet<AddrKey> = (0..scale.addresses)
                .flat_map(|j| {
                    let (a, b) = scale.address(j);
                    [a, b]
                })
                .collect();
            assert_eq!(keys.len(), 2 * scale.addresses, "{scale:?}");
            for j in 0..scale.addresses {
                let (g, rank) = scale.placement(j, members_of);
                assert!(g < scale.groups && rank < members_of(g));
            }
        }
    }
}
