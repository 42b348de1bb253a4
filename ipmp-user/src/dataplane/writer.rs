//! The dataplane writer: the only code that writes the maps. It keeps what it last wrote (read
//! back from the pinned maps at start, so a restarted ipmpd writes only what changed) and
//! applies a desired state as a delta in an order that readers can never trip over:
//!
//! 1. members that become active are marked active first (new bucket entries then validate);
//! 2. a changed bucket table goes into the inactive half (its changed buckets in one
//!    `BPF_MAP_UPDATE_BATCH` call), then one replacement of the group's `GroupInfo` flips
//!    `active_half` (the hash map is `BPF_F_NO_PREALLOC`, so a program still holding the old
//!    value finishes on the old, untouched half);
//! 3. address bindings, test addresses and probe targets;
//! 4. members that stop being active, stale entries last.
//!
//! Once the change is applied and announced, [`MapWriter::settle`] catches the half just left
//! up with the active one, so that the next change writes only its own buckets before its flip.
//! A group's two halves are read from the kernel once, with one `BPF_MAP_LOOKUP_BATCH`.
//!
//! A reader still on the old `GroupInfo` while the half it reads is caught up finds each
//! bucket's owner of before or after the flip, as it could around the flip itself. It would
//! only see an owner not yet flipped to if it held the old `GroupInfo` across the next
//! change's rewrite too — syscalls later, while a TC program runs well under a microsecond
//! inside one RCU read-side section.

use std::{collections::HashMap, hash::Hash, os::fd::AsFd as _};

use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap as BpfHashMap, IterableMap as _, MapData, PerCpuArray},
};
use ipmp_common::{
    AddrInfo, AddrKey, Counter, GROUP_F_FAILED, GroupInfo, MAP_ADDRS, MAP_BUCKETS, MAP_CONFIG,
    MAP_GROUPS, MAP_MEMBERS, MAP_NEIGHS, MAP_ROUTE_GEN, MAP_STATS, MAP_TARGETS, MAP_TESTADDRS,
    MAX_BUCKETS, MEMBER_F_ACTIVE, MEMBER_F_CAST, MEMBER_F_NO_ECHO, MEMBER_F_PROBE_RING_ONLY,
    MEMBER_F_XDP, MemberInfo, NEIGH_EPOCH, NeighEntry, NeighKey, ProbeConfig, ROUTE_GEN,
    ROUTE_GEN_OFF, Reason, TargetInfo, TargetKey, TestAddrInfo, bucket_index, stats_index,
};

use super::state::{DataplaneError, DesiredGroup, DesiredMember};

type Result<T> = std::result::Result<T, DataplaneError>;

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

/// Owns the maps and a copy of what they hold.
pub struct MapWriter {
    groups: BpfHashMap<MapData, u32, GroupInfo>,
    members: BpfHashMap<MapData, u32, MemberInfo>,
    buckets: Array<MapData, u32>,
    addrs: BpfHashMap<MapData, AddrKey, AddrInfo>,
    stats: PerCpuArray<MapData, Counter>,
    testaddrs: BpfHashMap<MapData, AddrKey, TestAddrInfo>,
    targets: BpfHashMap<MapData, TargetKey, TargetInfo>,
    config: Array<MapData, ProbeConfig>,
    route_gen: Array<MapData, u64>,
    neighs: BpfHashMap<MapData, NeighKey, NeighEntry>,
    /// Bucket halves as written, per group ifindex.
    halves: HashMap<u32, [Vec<u32>; 2]>,
    /// A write since the last retirement may have moved flows to another member: the paths
    /// the programs remember (`IPMP_ROUTES4`, `IPMP_ROUTES6`) must be retired.
    moved: bool,
    /// Number of map writes so far (for logs and benchmarks).
    pub writes: u64,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(DataplaneError::Missing(name))?;
    T::try_from(map).map_err(map_err(name))
}

impl MapWriter {
    pub fn new(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self {
            groups: take(ebpf, MAP_GROUPS)?,
            members: take(ebpf, MAP_MEMBERS)?,
            buckets: take(ebpf, MAP_BUCKETS)?,
            addrs: take(ebpf, MAP_ADDRS)?,
            stats: take(ebpf, MAP_STATS)?,
            testaddrs: take(ebpf, MAP_TESTADDRS)?,
            targets: take(ebpf, MAP_TARGETS)?,
            config: take(ebpf, MAP_CONFIG)?,
            route_gen: take(ebpf, MAP_ROUTE_GEN)?,
            neighs: take(ebpf, MAP_NEIGHS)?,
            halves: HashMap::new(),
            moved: false,
            writes: 0,
        })
    }

    fn group_info(&self, ifindex: u32) -> Option<GroupInfo> {
        self.groups.get(&ifindex, 0).ok()
    }

    /// A half of a group's table as the kernel holds it (read once, then tracked).
    fn half(&mut self, ifindex: u32, slot: u32, half: u32) -> Result<&mut Vec<u32>> {
        if !self.halves.contains_key(&ifindex) {
            // A group's two halves are adjacent in the map: one batch read takes both.
            let start = bucket_index(slot, 0, 0).ok_or(DataplaneError::Slot(slot))?;
            let end = bucket_index(slot, 1, MAX_BUCKETS - 1).ok_or(DataplaneError::Slot(slot))?;
            let mut first = vec![0u32; (end - start + 1) as usize];
            let fd = self.buckets.map().fd().as_fd();
            super::batch::lookup_array(fd, start, &mut first).map_err(|source| {
                DataplaneError::BatchRead {
                    map: MAP_BUCKETS,
                    start,
                    count: first.len(),
                    source,
                }
            })?;
            let second = first.split_off(MAX_BUCKETS as usize);
            self.halves.insert(ifindex, [first, second]);
        }
        let halves = self
            .halves
            .get_mut(&ifindex)
            .ok_or(DataplaneError::Slot(slot))?;
        Ok(&mut halves[(half & 1) as usize])
    }

    fn member_info(m: &DesiredMember, g: &DesiredGroup) -> MemberInfo {
        let mut flags = 0;
        if m.active {
            flags |= MEMBER_F_ACTIVE;
        }
        if m.cast {
            flags |= MEMBER_F_CAST;
        }
        if m.xdp {
            flags |= MEMBER_F_XDP;
        }
        // The group's switches, where the member programs read them (no group lookup).
        if g.echo_off {
            flags |= MEMBER_F_NO_ECHO;
        }
        if g.probe_ring_only {
            flags |= MEMBER_F_PROBE_RING_ONLY;
        }
        MemberInfo {
            group_ifindex: g.ifindex,
            stats_slot: m.stats_slot,
            flags,
            arp_src: m.arp_src,
            rx_ifindex: g.rx_ifindex,
            mac: m.mac,
            ipmp_mac: g.mac,
        }
    }

    fn put_member(&mut self, ifindex: u32, info: MemberInfo) -> Result<()> {
        if self.members.get(&ifindex, 0).ok() != Some(info) {
            self.members
                .insert(ifindex, info, 0)
                .map_err(map_err(MAP_MEMBERS))?;
            self.writes += 1;
            self.moved = true;
        }
        Ok(())
    }

    /// Writes `groups` (every group ipmpd manages) and removes entries of anything else.
    /// Remembered paths are retired right after the flips (flows move then, as they would
    /// without them) and again after the rest, whatever else fails.
    pub fn apply(&mut self, groups: &[DesiredGroup]) -> Result<()> {
        let applied = self.apply_in_order(groups);
        let retired = self.retire_moved_paths();
        applied.and(retired)
    }

    fn apply_in_order(&mut self, groups: &[DesiredGroup]) -> Result<()> {
        // 1. activations and new members first.
        for g in groups {
            for m in g.members.iter().filter(|m| m.active) {
                self.put_member(m.ifindex, Self::member_info(m, g))?;
            }
        }
        // 2. bucket tables and group info.
        for g in groups {
            self.apply_group(g)?;
        }
        self.retire_moved_paths()?;
        // 3. address bindings, test addresses, probe targets.
        let mut wanted_addrs: HashMap<AddrKey, AddrInfo> = HashMap::new();
        let mut wanted_tests: HashMap<AddrKey, TestAddrInfo> = HashMap::new();
        let mut wanted_targets: HashMap<TargetKey, TargetInfo> = HashMap::new();
        for g in groups {
            for (key, bound) in &g.addresses {
                let info = AddrInfo {
                    group_ifindex: g.ifindex,
                    bound_ifindex: *bound,
                };
                wanted_addrs.insert(*key, info);
            }
            for m in &g.members {
                for key in &m.test_addresses {
                    let info = TestAddrInfo {
                        member_ifindex: m.ifindex,
                        group_ifindex: g.ifindex,
                    };
                    wanted_tests.insert(*key, info);
                }
                for (addr, flags) in &m.targets {
                    let info = TargetInfo { flags: *flags };
                    wanted_targets.insert(TargetKey::new(m.ifindex, *addr), info);
                }
            }
        }
        self.writes += sync(&mut self.addrs, &wanted_addrs, MAP_ADDRS)?;
        self.writes += sync(&mut self.testaddrs, &wanted_tests, MAP_TESTADDRS)?;
        self.writes += sync(&mut self.targets, &wanted_targets, MAP_TARGETS)?;
        // 4. deactivations, then stale members and groups.
        for g in groups {
            for m in g.members.iter().filter(|m| !m.active) {
                self.put_member(m.ifindex, Self::member_info(m, g))?;
            }
        }
        let wanted_members: Vec<u32> = groups
            .iter()
            .flat_map(|g| g.members.iter().map(|m| m.ifindex))
            .collect();
        let stale: Vec<u32> = self
            .members
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !wanted_members.contains(k))
            .collect();
        for ifindex in stale {
            self.members
                .remove(&ifindex)
                .map_err(map_err(MAP_MEMBERS))?;
            self.writes += 1;
            self.moved = true;
        }
        let stale: Vec<u32> = self
            .groups
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !groups.iter().any(|g| g.ifindex == *k))
            .collect();
        for ifindex in stale {
            self.groups.remove(&ifindex).map_err(map_err(MAP_GROUPS))?;
            self.halves.remove(&ifindex);
            self.writes += 1;
            self.moved = true;
        }
        Ok(())
    }

    fn apply_group(&mut self, g: &DesiredGroup) -> Result<()> {
        let current = self.group_info(g.ifindex);
        let n = g.buckets.len() as u32;
        let (active_half, table_changed) = match current {
            Some(cur) if cur.slot == g.slot => {
                let active = self.half(g.ifindex, g.slot, cur.active_half)?;
                let same = cur.n_buckets == n && active[..n as usize] == g.buckets[..];
                (cur.active_half, !same)
            }
            _ => {
                // New group (or moved slot): fill half 0 before the first GroupInfo exists.
                self.halves.remove(&g.ifindex);
                (1, true)
            }
        };
        let mut half = active_half;
        if table_changed {
            half = active_half ^ 1;
            let slot = g.slot;
            let mut writes = Vec::new();
            {
                let inactive = self.half(g.ifindex, slot, half)?;
                for (b, want) in g.buckets.iter().enumerate() {
                    if inactive[b] != *want {
                        writes.push((b as u32, *want));
                        inactive[b] = *want;
                    }
                }
            }
            let keys = writes
                .iter()
                .map(|&(b, _)| bucket_index(slot, half, b).ok_or(DataplaneError::Slot(slot)))
                .collect::<Result<Vec<u32>>>()?;
            let values: Vec<u32> = writes.iter().map(|&(_, want)| want).collect();
            let fd = self.buckets.map().fd().as_fd();
            super::batch::update(fd, &keys, &values).map_err(|source| DataplaneError::Batch {
                map: MAP_BUCKETS,
                count: keys.len(),
                source,
            })?;
            self.writes += keys.len() as u64;
        }
        let (cast_ifindex, cast_mac) = g.cast.unwrap_or((0, [0; 6]));
        let info = GroupInfo {
            slot: g.slot,
            active_half: half,
            n_buckets: n,
            seed: g.seed,
            cast_ifindex,
            stats_slot: ipmp_common::MAX_MEMBERS + g.slot,
            flags: group_flags(g),
            cast_mac,
            _pad: [0; 2],
        };
        if current != Some(info) {
            self.groups
                .insert(g.ifindex, info, 0)
                .map_err(map_err(MAP_GROUPS))?;
            self.writes += 1;
            self.moved = true;
        }
        Ok(())
    }

    /// Brings every group's inactive half up to its active one, with one
    /// `BPF_MAP_UPDATE_BATCH` per group that differs; returns the number of buckets written.
    /// Called after a change has been applied and announced, off the failover's path: the
    /// next change then writes only the buckets it changes before its flip (a failure: the
    /// failed member's share), not also those the change before it moved. Safe right after a
    /// flip: a reader still on the old `GroupInfo` reads the half being caught up, and finds
    /// each bucket's owner before or after the flip, as it could around the flip itself.
    pub fn settle(&mut self) -> Result<u64> {
        let ifindexes: Vec<u32> = self.halves.keys().copied().collect();
        let mut written = 0;
        for ifindex in ifindexes {
            let Some(info) = self.group_info(ifindex) else {
                continue;
            };
            let (slot, active, n) = (info.slot, info.active_half & 1, info.n_buckets as usize);
            let inactive = active ^ 1;
            let Some(halves) = self.halves.get_mut(&ifindex) else {
                continue;
            };
            let [h0, h1] = halves;
            let (from, to) = if active == 0 { (h0, h1) } else { (h1, h0) };
            let mut keys = Vec::new();
            let mut values = Vec::new();
            for (b, (want, have)) in from.iter().zip(to.iter_mut()).take(n).enumerate() {
                if *have != *want {
                    keys.push(
                        bucket_index(slot, inactive, b as u32).ok_or(DataplaneError::Slot(slot))?,
                    );
                    values.push(*want);
                    *have = *want;
                }
            }
            let fd = self.buckets.map().fd().as_fd();
            super::batch::update(fd, &keys, &values).map_err(|source| {
                // What was tracked as written was not: read the halves again next time.
                self.halves.remove(&ifindex);
                DataplaneError::Batch {
                    map: MAP_BUCKETS,
                    count: keys.len(),
                    source,
                }
            })?;
            self.writes += keys.len() as u64;
            written += keys.len() as u64;
        }
        Ok(written)
    }

    /// Writes the daemon's probe identity (`IPMP_CONFIG`) if it changed.
    pub fn set_probe_config(&mut self, config: ProbeConfig) -> Result<()> {
        if self.probe_config()? != config {
            self.config.set(0, config, 0).map_err(map_err(MAP_CONFIG))?;
            self.writes += 1;
        }
        Ok(())
    }

    /// The probe identity XDP currently checks replies against.
    pub fn probe_config(&self) -> Result<ProbeConfig> {
        self.config.get(&0, 0).map_err(map_err(MAP_CONFIG))
    }

    /// `IPMP_ROUTE_GEN[ROUTE_GEN]`: the generation remembered paths must carry, with
    /// `ROUTE_GEN_OFF` set while nothing follows the routes.
    pub fn route_generation(&self) -> Result<u64> {
        self.route_gen
            .get(&ROUTE_GEN, 0)
            .map_err(map_err(MAP_ROUTE_GEN))
    }

    /// Retires every remembered path: the routes or rules changed (or may have, while no
    /// daemon watched). Also turns remembering on.
    pub fn advance_route_generation(&mut self) -> Result<u64> {
        let next = next_generation(self.route_generation()?);
        self.set_route_generation(next)?;
        Ok(next)
    }

    /// Turns remembering paths off: the programs look every one up until
    /// [`Self::advance_route_generation`]. For while no daemon follows the routes.
    pub fn stop_route_cache(&mut self) -> Result<()> {
        let current = self.route_generation()?;
        self.set_route_generation(current | ROUTE_GEN_OFF)
    }

    /// Retires every remembered path, leaving remembering on or off as it is: a flow's member
    /// or next hop's MAC may have changed. When that cannot be written, remembering is turned
    /// off (a stale path must not stay in use) and the error returned.
    pub fn retire_paths(&mut self) -> Result<()> {
        let retired = self.route_generation().and_then(|current| {
            self.set_route_generation(next_generation(current) | (current & ROUTE_GEN_OFF))
        });
        if retired.is_err() {
            let _ = self.stop_route_cache();
        }
        retired
    }

    /// [`Self::retire_paths`] if a write since the last one may have moved a flow.
    fn retire_moved_paths(&mut self) -> Result<()> {
        if std::mem::take(&mut self.moved) {
            self.retire_paths()?;
        }
        Ok(())
    }

    fn set_route_generation(&mut self, value: u64) -> Result<()> {
        self.route_gen
            .set(ROUTE_GEN, value, 0)
            .map_err(map_err(MAP_ROUTE_GEN))?;
        self.writes += 1;
        Ok(())
    }

    /// `IPMP_ROUTE_GEN[NEIGH_EPOCH]`.
    pub fn neigh_epoch(&self) -> Result<u64> {
        self.route_gen
            .get(&NEIGH_EPOCH, 0)
            .map_err(map_err(MAP_ROUTE_GEN))
    }

    /// Starts a neighbour epoch: remembered flows mark their neighbour used again (once) with
    /// their next packet, and those whose neighbour was not confirmed look for it again. After
    /// used marks were cleared, and after a new neighbour was copied.
    fn advance_neigh_epoch(&mut self) -> Result<()> {
        let next = self.neigh_epoch()?.wrapping_add(1);
        self.route_gen
            .set(NEIGH_EPOCH, next, 0)
            .map_err(map_err(MAP_ROUTE_GEN))?;
        self.writes += 1;
        Ok(())
    }

    /// A member's confirmed neighbour: `ipmp_tc_egress` addresses frames to `mac` itself. An
    /// unchanged entry is left as is (with its used mark). `Ok(false)`: the map is full
    /// (`MAX_NEIGHS`), so frames to this neighbour take `bpf_redirect_neigh`, as unconfirmed
    /// ones do.
    pub fn put_neighbour(&mut self, key: NeighKey, mac: [u8; 6]) -> Result<bool> {
        let known = self.neighs.get(&key, 0).ok();
        if known.is_some_and(|e| e.mac == mac) {
            return Ok(true);
        }
        let entry = NeighEntry {
            mac,
            used: 0,
            _pad: 0,
        };
        match self.neighs.insert(key, entry, 0) {
            Ok(()) => {
                self.writes += 1;
                if known.is_some() {
                    // Paths remember the old MAC.
                    self.retire_paths()?;
                } else {
                    // Paths to it, remembered unconfirmed, look it up once per epoch.
                    self.advance_neigh_epoch()?;
                }
                Ok(true)
            }
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::E2BIG) =>
            {
                Ok(false)
            }
            Err(e) => Err(map_err(MAP_NEIGHS)(e)),
        }
    }

    /// Frames to this neighbour go through the kernel's neighbour code again (the paths that
    /// remember its MAC are retired).
    pub fn remove_neighbour(&mut self, key: NeighKey) -> Result<()> {
        if self.neighs.get(&key, 0).is_ok() {
            self.neighs.remove(&key).map_err(map_err(MAP_NEIGHS))?;
            self.writes += 1;
            self.retire_paths()?;
        }
        Ok(())
    }

    /// A neighbour went STALE. If the program sent through its entry since the last time,
    /// the entry stays (with `mac` when the kernel learnt a new one) with its used mark
    /// cleared, and `true` says the kernel should revalidate the neighbour; otherwise the
    /// entry is removed.
    pub fn stale_neighbour(&mut self, key: NeighKey, mac: Option<[u8; 6]>) -> Result<bool> {
        let Ok(entry) = self.neighs.get(&key, 0) else {
            return Ok(false);
        };
        if entry.used == 0 {
            self.remove_neighbour(key)?;
            return Ok(false);
        }
        let kept = NeighEntry {
            mac: mac.unwrap_or(entry.mac),
            used: 0,
            _pad: 0,
        };
        self.neighs
            .insert(key, kept, 0)
            .map_err(map_err(MAP_NEIGHS))?;
        self.writes += 1;
        if kept.mac != entry.mac {
            self.retire_paths()?;
        }
        // Remembered flows mark it used again with their next packet.
        self.advance_neigh_epoch()?;
        Ok(true)
    }

    /// The neighbours the program marked used since the last call, their marks cleared; a new
    /// neighbour epoch then begins (remembered flows mark theirs again with their next packet).
    pub fn take_used_neighbours(&mut self) -> Result<Vec<NeighKey>> {
        let used: Vec<(NeighKey, NeighEntry)> = self
            .neighs
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(_, e)| e.used != 0)
            .collect();
        if used.is_empty() {
            return Ok(Vec::new());
        }
        for (key, entry) in &used {
            let cleared = NeighEntry { used: 0, ..*entry };
            // BPF_EXIST (2): one removed meanwhile stays removed.
            match self.neighs.insert(key, cleared, 2) {
                Ok(()) => self.writes += 1,
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(map_err(MAP_NEIGHS)(e)),
            }
        }
        self.advance_neigh_epoch()?;
        Ok(used.into_iter().map(|(key, _)| key).collect())
    }

    /// Makes `IPMP_NEIGHS` exactly `confirmed` (after reading every neighbour again), as far
    /// as it holds; returns how many did not fit.
    pub fn sync_neighbours(&mut self, confirmed: &HashMap<NeighKey, [u8; 6]>) -> Result<usize> {
        let present: Vec<NeighKey> = self.neighs.keys().filter_map(|k| k.ok()).collect();
        for key in present {
            if !confirmed.contains_key(&key) {
                self.remove_neighbour(key)?;
            }
        }
        let mut left_out = 0;
        for (key, mac) in confirmed {
            if !self.put_neighbour(*key, *mac)? {
                left_out += 1;
            }
        }
        Ok(left_out)
    }

    /// Counters of one slot, summed over CPUs, per reason.
    pub fn counters(&self, slot: u32) -> Result<Vec<(Reason, Counter)>> {
        let mut out = Vec::with_capacity(Reason::ALL.len());
        for reason in Reason::ALL {
            let values = self
                .stats
                .get(&stats_index(slot, *reason), 0)
                .map_err(map_err(MAP_STATS))?;
            let mut sum = Counter::default();
            for v in values.iter() {
                sum.packets += v.packets;
                sum.bytes += v.bytes;
            }
            out.push((*reason, sum));
        }
        Ok(out)
    }
}

/// The route generation after `current`, without the off bit: the counter under the bit goes
/// on, so no generation is used twice.
const fn next_generation(current: u64) -> u64 {
    ((current & !ROUTE_GEN_OFF) + 1) & !ROUTE_GEN_OFF
}

/// `GroupInfo::flags` of a desired group.
fn group_flags(g: &DesiredGroup) -> u32 {
    if g.failed { GROUP_F_FAILED } else { 0 }
}

/// Makes a hash map hold exactly `wanted`: changed and new entries first, then stale ones
/// removed. Returns the number of map writes.
fn sync<K, V>(
    map: &mut BpfHashMap<MapData, K, V>,
    wanted: &HashMap<K, V>,
    name: &'static str,
) -> Result<u64>
where
    K: Pod + Eq + Hash,
    V: Pod + PartialEq,
{
    let mut writes = 0;
    for (key, value) in wanted {
        if map.get(key, 0).ok().as_ref() != Some(value) {
            map.insert(*key, *value, 0).map_err(map_err(name))?;
            writes += 1;
        }
    }
    let stale: Vec<K> = map
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| !wanted.contains_key(k))
        .collect();
    for key in stale {
        map.remove(&key).map_err(map_err(name))?;
        writes += 1;
    }
    Ok(writes)
}
