//! BPF map layouts. Every value type is `#[repr(C)]` with its padding written out, so the kernel
//! side, the userspace side and `bpftool map dump` (through BTF) agree on each byte.

/// Directory under bpffs where ipmpd pins its maps and links.
pub const PIN_DIR: &str = "/sys/fs/bpf/ipmp";

/// Map names (≤ 15 characters: the kernel keeps 15 bytes of a map name).
pub const MAP_GROUPS: &str = "IPMP_GROUPS";
pub const MAP_MEMBERS: &str = "IPMP_MEMBERS";
pub const MAP_BUCKETS: &str = "IPMP_BUCKETS";
pub const MAP_ADDRS: &str = "IPMP_ADDRS";
pub const MAP_STATS: &str = "IPMP_STATS";
pub const MAP_TESTADDRS: &str = "IPMP_TESTADDRS";
pub const MAP_TARGETS: &str = "IPMP_TARGETS";
pub const MAP_CONFIG: &str = "IPMP_CONFIG";
pub const MAP_PROBES: &str = "IPMP_PROBES";
pub const MAP_ROUTES4: &str = "IPMP_ROUTES4";
pub const MAP_ROUTES6: &str = "IPMP_ROUTES6";
pub const MAP_ROUTE_GEN: &str = "IPMP_ROUTE_GEN";
pub const MAP_NEIGHS: &str = "IPMP_NEIGHS";

/// Program names (the Rust function names in ipmp-ebpf).
pub const PROG_TC_EGRESS: &str = "ipmp_tc_egress";
pub const PROG_XDP_MEMBER: &str = "ipmp_xdp_member";
pub const PROG_TC_MEMBER: &str = "ipmp_tc_member";
pub const PROG_TC_INGRESS: &str = "ipmp_tc_ingress";

/// Most groups one ipmpd manages.
pub const MAX_GROUPS: u32 = 16;
/// Most members over all groups.
pub const MAX_MEMBERS: u32 = 64;
/// Most buckets in one half of a group's bucket table.
pub const MAX_BUCKETS: u32 = 65_536;
/// Most data addresses over all groups.
pub const MAX_ADDRS: u32 = 1024;
/// Most test addresses: one IPv4 and one IPv6 per member.
pub const MAX_TESTADDRS: u32 = MAX_MEMBERS * 2;
/// Most probe targets over all members and families (in.mpathd uses up to 5 per member and
/// family; the rest is room for a target being replaced).
pub const MAX_TARGETS: u32 = 1024;
/// Size of the `IPMP_PROBES` ring buffer in bytes (a power-of-two multiple of the page size).
pub const PROBE_RING_BYTES: u32 = 256 * 1024;
/// Flows whose path `IPMP_ROUTES4` remembers, and as many `IPMP_ROUTES6` (least recently used
/// ones make room).
pub const MAX_ROUTES: u32 = 65_536;
/// Members' neighbours `IPMP_NEIGHS` holds.
pub const MAX_NEIGHS: u32 = 4096;
/// Entries of `IPMP_BUCKETS`: every group has two halves of `MAX_BUCKETS`.
pub const BUCKET_ENTRIES: u32 = MAX_GROUPS * 2 * MAX_BUCKETS;

/// Counter slots: one per member (`0..MAX_MEMBERS`), one per IPMP interface
/// (`MAX_MEMBERS..MAX_MEMBERS + MAX_GROUPS`), and one for packets seen on an interface that
/// has no entry (any more).
pub const STATS_SLOT_UNKNOWN: u32 = MAX_MEMBERS + MAX_GROUPS;
pub const STATS_SLOTS: u32 = STATS_SLOT_UNKNOWN + 1;
/// Entries of `IPMP_STATS`: `slot * Reason::COUNT + reason`.
pub const STATS_ENTRIES: u32 = STATS_SLOTS * crate::reason::Reason::COUNT;

/// The shape of a map as the kernel reports it. A map pinned by another ipmpd version with
/// another shape is refused rather than reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapShape {
    pub name: &'static str,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl MapShape {
    /// A hash or array map keyed by `K` with values `V`.
    const fn of<K, V>(name: &'static str, max_entries: u32) -> MapShape {
        MapShape {
            name,
            key_size: size_of::<K>() as u32,
            value_size: size_of::<V>() as u32,
            max_entries,
        }
    }
}

/// Every map ipmpd pins, with its shape: one list, so load, adopt, cleanup and the shape check
/// stay in step (a ring buffer has no key or value size; its entries are its bytes).
pub const MAP_SHAPES: [MapShape; 13] = [
    MapShape::of::<u32, GroupInfo>(MAP_GROUPS, MAX_GROUPS),
    MapShape::of::<u32, MemberInfo>(MAP_MEMBERS, MAX_MEMBERS),
    MapShape::of::<u32, u32>(MAP_BUCKETS, BUCKET_ENTRIES),
    MapShape::of::<AddrKey, AddrInfo>(MAP_ADDRS, MAX_ADDRS),
    MapShape::of::<u32, Counter>(MAP_STATS, STATS_ENTRIES),
    MapShape::of::<AddrKey, TestAddrInfo>(MAP_TESTADDRS, MAX_TESTADDRS),
    MapShape::of::<TargetKey, TargetInfo>(MAP_TARGETS, MAX_TARGETS),
    MapShape::of::<u32, ProbeConfig>(MAP_CONFIG, 1),
    MapShape::of::<RouteKey4, RouteEntry>(MAP_ROUTES4, MAX_ROUTES),
    MapShape::of::<RouteKey6, RouteEntry>(MAP_ROUTES6, MAX_ROUTES),
    MapShape::of::<u32, u64>(MAP_ROUTE_GEN, ROUTE_GEN_ENTRIES),
    MapShape::of::<NeighKey, NeighEntry>(MAP_NEIGHS, MAX_NEIGHS),
    MapShape {
        name: MAP_PROBES,
        key_size: 0,
        value_size: 0,
        max_entries: PROBE_RING_BYTES,
    },
];

/// The names of [`MAP_SHAPES`], in its order.
pub const ALL_MAPS: [&str; MAP_SHAPES.len()] = {
    let mut names = [""; MAP_SHAPES.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = MAP_SHAPES[i].name;
        i += 1;
    }
    names
};

// Layouts checked when either side is built (the BPF build fails too): no implicit padding,
// map names within the kernel's 15 bytes, a ring buffer of a power of two pages.
const _: () = {
    assert!(size_of::<GroupInfo>() == 7 * 4 + 8);
    assert!(size_of::<MemberInfo>() == 5 * 4 + 12);
    assert!(size_of::<AddrKey>() == 20);
    assert!(size_of::<AddrInfo>() == 8);
    assert!(size_of::<Counter>() == 16);
    assert!(size_of::<TestAddrInfo>() == 8);
    assert!(size_of::<TargetKey>() == 24);
    assert!(size_of::<TargetInfo>() == 4);
    assert!(size_of::<ProbeConfig>() == 24);
    assert!(size_of::<RouteKey4>() == 20);
    assert!(size_of::<RouteKey6>() == 48);
    assert!(size_of::<RouteEntry>() == 64);
    assert!(size_of::<NeighEntry>() == 8);
    assert!(size_of::<ProbeEvent>() == 3 * 8 + 6 * 4 + 16 + 16 + 8);
    // Ring buffer records are 8-byte aligned.
    assert!(size_of::<ProbeEvent>().is_multiple_of(8));
    let mut i = 0;
    while i < MAP_SHAPES.len() {
        assert!(MAP_SHAPES[i].name.len() <= 15);
        i += 1;
    }
    assert!(PROBE_RING_BYTES.is_power_of_two() && PROBE_RING_BYTES.is_multiple_of(4096));
};

/// Index of a bucket in `IPMP_BUCKETS`, or `None` when out of range.
#[inline(always)]
pub const fn bucket_index(group_slot: u32, half: u32, bucket: u32) -> Option<u32> {
    if group_slot >= MAX_GROUPS || half > 1 || bucket >= MAX_BUCKETS {
        return None;
    }
    Some((group_slot * 2 + half) * MAX_BUCKETS + bucket)
}

/// Index of a counter in `IPMP_STATS`; out-of-range slots fall into the unknown slot.
#[inline(always)]
pub const fn stats_index(slot: u32, reason: crate::reason::Reason) -> u32 {
    let slot = if slot >= STATS_SLOTS {
        STATS_SLOT_UNKNOWN
    } else {
        slot
    };
    slot * crate::reason::Reason::COUNT + reason as u32
}

/// `GroupInfo::flags`: no member is usable (the IPMP interface's carrier is off).
pub const GROUP_F_FAILED: u32 = 1;

/// `IPMP_GROUPS` value, keyed by the IPMP interface's ifindex (`u32`). Replaced whole on every
/// change (the map is `BPF_F_NO_PREALLOC`, so a reader keeps the old value until it is done).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group slot: its bucket halves start at `bucket_index(slot, half, 0)`.
    pub slot: u32,
    /// Which half of the bucket table readers use (0 or 1).
    pub active_half: u32,
    /// Buckets in use in each half (1..=MAX_BUCKETS); 0 means no active member.
    pub n_buckets: u32,
    /// Seed of the flow hash.
    pub seed: u32,
    /// Member that sends the group's broadcast and multicast; 0 when none.
    pub cast_ifindex: u32,
    /// Counter slot of the IPMP interface.
    pub stats_slot: u32,
    /// `GROUP_F_*`.
    pub flags: u32,
    /// MAC of the cast member (source MAC of broadcast/multicast frames).
    pub cast_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `MemberInfo::flags`: the member carries data traffic (it may appear in the bucket table).
pub const MEMBER_F_ACTIVE: u32 = 1;
/// `MemberInfo::flags`: the member is the group's cast member (receives broadcast/multicast).
pub const MEMBER_F_CAST: u32 = 2;
/// `MemberInfo::flags`: `ipmp_xdp_member` runs on the member and gives its answers there;
/// `ipmp_tc_ingress` only delivers what XDP passed on. Clear: TC ingress does both.
pub const MEMBER_F_XDP: u32 = 4;
/// `MemberInfo::flags`: the member does not answer echo requests for its group's data and
/// test addresses (the kernel still does). Clear by default, so a zeroed `flags` answers them.
/// A group-wide switch, kept in each member's entry so that the member programs, which have
/// that entry already, need no group lookup for it.
pub const MEMBER_F_NO_ECHO: u32 = 8;
/// `MemberInfo::flags`: probe replies that go into `IPMP_PROBES` are dropped after that instead
/// of also reaching the stack (and the prober's raw socket). Group-wide, like
/// `MEMBER_F_NO_ECHO`.
pub const MEMBER_F_PROBE_RING_ONLY: u32 = 16;

/// `IPMP_MEMBERS` value, keyed by the member's ifindex (`u32`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberInfo {
    /// ifindex of the group's IPMP interface.
    pub group_ifindex: u32,
    /// Counter slot of this member.
    pub stats_slot: u32,
    /// `MEMBER_F_*`.
    pub flags: u32,
    /// Sender IPv4 address (network byte order) for ARP requests this member sends when that
    /// sender would otherwise be a data address bound to another member; 0 sends an ARP probe
    /// form request (RFC 5227, sender 0.0.0.0).
    pub arp_src: u32,
    /// Where inbound traffic for the group goes: the ifindex of the IPMP interface's veth
    /// peer, whose transmit path is the IPMP interface's receive path. 0: not yet known.
    pub rx_ifindex: u32,
    /// The member's MAC address.
    pub mac: [u8; 6],
    /// The IPMP interface's MAC: the destination of unicast frames handed to it.
    pub ipmp_mac: [u8; 6],
}

/// Address families as the kernel numbers them (AF_INET, AF_INET6).
pub const FAMILY_V4: u32 = 2;
pub const FAMILY_V6: u32 = 10;

/// `IPMP_ADDRS` key: a data address. IPv4 addresses use the first 4 bytes, the rest are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u32,
    /// The address in network byte order.
    pub addr: [u8; 16],
}

impl AddrKey {
    pub const fn v4(addr: [u8; 4]) -> Self {
        Self {
            family: FAMILY_V4,
            addr: [
                addr[0], addr[1], addr[2], addr[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        }
    }

    pub const fn v6(addr: [u8; 16]) -> Self {
        Self {
            family: FAMILY_V6,
            addr,
        }
    }

    /// An IPv6 key from the address read as four words, each holding its 4 bytes in memory
    /// order (`u32::from_ne_bytes`), as the eBPF programs read packets.
    pub const fn v6_words(words: [u32; 4]) -> Self {
        let [a, b, c, d] = [
            words[0].to_ne_bytes(),
            words[1].to_ne_bytes(),
            words[2].to_ne_bytes(),
            words[3].to_ne_bytes(),
        ];
        Self::v6([
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1],
            d[2], d[3],
        ])
    }
}

impl From<core::net::IpAddr> for AddrKey {
    fn from(ip: core::net::IpAddr) -> Self {
        match ip {
            core::net::IpAddr::V4(v4) => Self::v4(v4.octets()),
            core::net::IpAddr::V6(v6) => Self::v6(v6.octets()),
        }
    }
}

/// `IPMP_ADDRS` value: where a data address lives and which member answers ARP/NDP for it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrInfo {
    /// ifindex of the IPMP interface that holds the address.
    pub group_ifindex: u32,
    /// ifindex of the member bound to the address; 0 when no member is active.
    pub bound_ifindex: u32,
}

/// `IPMP_TESTADDRS` value, keyed by the test address (`AddrKey`): the member that owns it.
/// XDP answers echo requests for it on that member only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestAddrInfo {
    /// ifindex of the member the test address is configured on.
    pub member_ifindex: u32,
    /// ifindex of that member's IPMP interface.
    pub group_ifindex: u32,
}

/// `IPMP_TARGETS` key: a probe target of one member; as [`NeighKey`], a next hop of one
/// member.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetKey {
    /// ifindex of the member that probes the target (or has the neighbour).
    pub ifindex: u32,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u32,
    /// The target's address in network byte order (IPv4: first 4 bytes, the rest zero).
    pub addr: [u8; 16],
}

impl TargetKey {
    pub const fn new(ifindex: u32, addr: AddrKey) -> Self {
        Self {
            ifindex,
            family: addr.family,
            addr: addr.addr,
        }
    }

    /// The target's (or next hop's) address.
    pub fn ip(&self) -> core::net::IpAddr {
        let a = self.addr;
        if self.family == FAMILY_V6 {
            core::net::IpAddr::from(a)
        } else {
            core::net::IpAddr::from([a[0], a[1], a[2], a[3]])
        }
    }
}

/// `TargetInfo::flags`: the member probes this target with ARP requests / neighbour
/// solicitations (it has no test address in that family): XDP timestamps the target's ARP
/// replies and solicited neighbour advertisements to the member into `IPMP_PROBES`.
pub const TARGET_F_NEIGH: u32 = 1;

/// `IPMP_TARGETS` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetInfo {
    /// `TARGET_F_*`.
    pub flags: u32,
}

/// `ProbeConfig::flags`: the daemon probes; XDP looks at echo replies.
pub const PROBE_CFG_F_ENABLED: u32 = 1;

/// `IPMP_CONFIG` value (an array of one entry, index 0): what XDP needs to recognise the
/// daemon's echo probes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The per-daemon random cookie every probe payload carries (`ProbePayload::cookie`).
    pub cookie: u64,
    /// ICMP/ICMPv6 echo identifier of the daemon's probes (host order, 0..=0xffff).
    pub echo_id: u32,
    /// Bits of the identifier that must equal `echo_id`'s: 0xffff for one identifier per
    /// daemon, 0xff00 for in.mpathd's `(salt << 8) | (ifindex & 0xff)` per member.
    pub echo_id_mask: u32,
    /// `PROBE_CFG_F_*`.
    pub flags: u32,
    pub _pad: u32,
}

impl ProbeConfig {
    /// Whether an echo identifier is one of the daemon's.
    #[inline(always)]
    pub const fn id_matches(&self, id: u16) -> bool {
        (id as u32 ^ self.echo_id) & self.echo_id_mask == 0
    }
}

/// `ProbeEvent::kind`: an echo reply to one of the daemon's probes.
pub const PROBE_EV_ECHO: u32 = 1;
/// `ProbeEvent::kind`: an ARP reply from a target to the member.
pub const PROBE_EV_ARP: u32 = 2;
/// `ProbeEvent::kind`: a solicited neighbour advertisement from a target to the member.
pub const PROBE_EV_NA: u32 = 3;

/// An `IPMP_PROBES` ring buffer record: a probe reply and when XDP saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeEvent {
    /// `bpf_ktime_get_ns()` at XDP (CLOCK_MONOTONIC, nanoseconds).
    pub rx_ns: u64,
    /// Echo: `ProbePayload::send_ns` of the reply; 0 for ARP/NA.
    pub send_ns: u64,
    /// Echo: `ProbePayload::cookie` of the reply (equal to `ProbeConfig::cookie`); 0 for ARP/NA.
    pub cookie: u64,
    /// The member the reply arrived on.
    pub ifindex: u32,
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u32,
    /// `PROBE_EV_*`.
    pub kind: u32,
    /// Echo: the ICMP identifier (host order); 0 for ARP/NA.
    pub id: u32,
    /// Echo: `ProbePayload::seq` of the reply (its low 16 bits are the ICMP sequence); 0 for
    /// ARP/NA.
    pub seq: u32,
    /// Echo: `ProbePayload::kind` of the reply (the prober's message type); 0 for ARP/NA.
    pub msg: u32,
    /// The target that answered: the reply's source address (echo), the ARP sender address,
    /// or the NA's target address; network byte order, IPv4 in the first 4 bytes.
    pub target: [u8; 16],
    /// The address the reply was sent to (IPv4 ARP: the target protocol address).
    pub local: [u8; 16],
    /// Ethernet source of the reply.
    pub mac: [u8; 6],
    pub _pad2: [u8; 2],
}

/// `IPMP_STATS` value (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], made of integers and byte arrays, with explicit padding.
    unsafe impl aya::Pod for super::GroupInfo {}
    unsafe impl aya::Pod for super::MemberInfo {}
    unsafe impl aya::Pod for super::AddrKey {}
    unsafe impl aya::Pod for super::AddrInfo {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::TestAddrInfo {}
    unsafe impl aya::Pod for super::TargetKey {}
    unsafe impl aya::Pod for super::TargetInfo {}
    unsafe impl aya::Pod for super::ProbeConfig {}
    unsafe impl aya::Pod for super::ProbeEvent {}
    unsafe impl aya::Pod for super::RouteKey4 {}
    unsafe impl aya::Pod for super::RouteKey6 {}
    unsafe impl aya::Pod for super::RouteEntry {}
    unsafe impl aya::Pod for super::NeighEntry {}
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn map_names_are_unique() {
        let mut names = ALL_MAPS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MAP_SHAPES.len(), "{ALL_MAPS:?}");
    }

    #[test]
    fn keys_and_values_are_whole_words() {
        // The verifier and bpftool's BTF dumps want 4-byte multiples.
        for m in MAP_SHAPES {
            assert_eq!(m.key_size % 4, 0, "{m:?}");
            assert_eq!(m.value_size % 4, 0, "{m:?}");
        }
    }

    #[test]
    fn probe_ids_match_under_the_mask() {
        let exact = ProbeConfig {
            echo_id: 0x1d1d,
            echo_id_mask: 0xffff,
            ..ProbeConfig::default()
        };
        assert!(exact.id_matches(0x1d1d));
        assert!(!exact.id_matches(0x1d1c));
        assert!(!exact.id_matches(0x9d1d));
        let salted = ProbeConfig {
            echo_id: 0x4200,
            echo_id_mask: 0xff00,
            ..ProbeConfig::default()
        };
        assert!(salted.id_matches(0x4200));
        assert!(salted.id_matches(0x42ff));
        assert!(!salted.id_matches(0x4300));
    }

    #[test]
    fn bucket_index_bounds() {
        assert_eq!(bucket_index(0, 0, 0), Some(0));
        assert_eq!(bucket_index(0, 1, 0), Some(MAX_BUCKETS));
        assert_eq!(
            bucket_index(MAX_GROUPS - 1, 1, MAX_BUCKETS - 1),
            Some(BUCKET_ENTRIES - 1)
        );
        assert_eq!(bucket_index(MAX_GROUPS, 0, 0), None);
        assert_eq!(bucket_index(0, 2, 0), None);
        assert_eq!(bucket_index(0, 0, MAX_BUCKETS), None);
    }

    #[test]
    fn stats_index_clamps_unknown_slots() {
        let last = stats_index(STATS_SLOTS + 7, crate::Reason::TxUnicast);
        assert_eq!(
            last,
            STATS_SLOT_UNKNOWN * crate::Reason::COUNT + crate::Reason::TxUnicast as u32
        );
        assert!(stats_index(STATS_SLOT_UNKNOWN, crate::Reason::LAST) < STATS_ENTRIES);
    }
}

/// `IPMP_ROUTES4` key: everything `bpf_fib_lookup` is given for an IPv4 flow leaving an IPMP
/// interface, so that a remembered answer is the answer the lookup would give while the
/// routes and rules stay as they were. A map of its own, apart from IPv6's: the kernel hashes
/// and compares the whole key on every lookup, and this one is 20 bytes, not 48. Every byte
/// is a field (`_pad` zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RouteKey4 {
    /// As in `FlowKey` (its first words).
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    /// The IPMP interface the flow leaves through.
    pub ifindex: u32,
    pub proto: u8,
    /// The TOS byte.
    pub tos: u8,
    pub _pad: [u8; 2],
}

/// `IPMP_ROUTES6` key: as `RouteKey4`, for IPv6 flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RouteKey6 {
    /// As in `FlowKey`.
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    /// The IPMP interface the flow leaves through.
    pub ifindex: u32,
    pub proto: u8,
    pub _pad: [u8; 3],
    /// Version, traffic class and flow label word.
    pub flowinfo: u32,
}

/// `__sk_buff.cb[0]` of a frame `ipmp_tc_egress` sends through a member (or `ipmp_tc_ingress`
/// answers through it); `cb[1]` and `cb[2]` hold the MAC it expects the frame to leave with
/// ([`sent_mark`]). `ipmp_tc_member` passes such an IP frame without looking anything up: it
/// was decided and counted already. The control block survives from the IPMP interface's TC
/// egress to the member's (nothing on the way — `bpf_redirect_neigh`, the neighbour output,
/// `__dev_queue_xmit` — writes its data part); a frame whose MAC no longer matches (one
/// released from the neighbour queue with the IPMP interface's MACs) gets the full check.
pub const SENT_MARK: u32 = 0x1b3d_5e7a;

/// The `cb[0..3]` words marking a frame sent through the member with MAC `mac`.
#[inline(always)]
pub const fn sent_mark(mac: [u8; 6]) -> [u32; 3] {
    [
        SENT_MARK,
        u32::from_ne_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_ne_bytes([mac[4], mac[5], 0, 0]),
    ]
}

/// `IPMP_ROUTE_GEN` index of the route generation: the generation `IPMP_ROUTES4` and
/// `IPMP_ROUTES6` entries must carry to be used. ipmpd advances it on every route and rule change it is told of and on
/// every change of a group, member or bucket table (each can move a flow to another member).
pub const ROUTE_GEN: u32 = 0;

/// `IPMP_ROUTE_GEN` index of the neighbour epoch: ipmpd advances it after clearing the used
/// marks of `IPMP_NEIGHS` entries, so that a remembered flow marks its neighbour used again
/// with its next packet (once per epoch, not on every packet).
pub const NEIGH_EPOCH: u32 = 1;

/// Entries of `IPMP_ROUTE_GEN`.
pub const ROUTE_GEN_ENTRIES: u32 = 2;

/// `IPMP_ROUTE_GEN[ROUTE_GEN]` bit: the programs look every flow's path up and remember none
/// (ipmpd is not running, or is starting). The other bits keep counting, so that a generation
/// is never used twice and an entry of a past one can never become valid again.
pub const ROUTE_GEN_OFF: u64 = 1 << 63;

/// `RouteEntry::flags`: `macs` holds the next hop's confirmed MAC and the member's (the frame
/// is addressed by the program and sent with `bpf_redirect`); without it the frame goes
/// through `bpf_redirect_neigh` to `nexthop`.
pub const ROUTE_F_NEIGH: u32 = 1;

/// `IPMP_ROUTES4`/`IPMP_ROUTES6` value: a flow's remembered path out of its IPMP interface —
/// the member its bucket names, the next hop `bpf_fib_lookup` gave and, once confirmed, the
/// next hop's MAC — valid while `IPMP_ROUTE_GEN[ROUTE_GEN]` still holds `generation`. One cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteEntry {
    pub generation: u64,
    /// `IPMP_ROUTE_GEN[NEIGH_EPOCH]` when the program last marked the neighbour used
    /// (confirmed), or last found it missing from `IPMP_NEIGHS` (unconfirmed).
    pub neigh_epoch: u64,
    /// The next hop: IPv4 in `nexthop[0]` (network byte order), IPv6 in all four words.
    pub nexthop: [u32; 4],
    /// `FAMILY_V4` or `FAMILY_V6` (an IPv4 route may have an IPv6 gateway).
    pub family: u32,
    pub member_ifindex: u32,
    /// The member's counter slot.
    pub member_slot: u32,
    /// `ROUTE_F_*`.
    pub flags: u32,
    /// Destination then source MAC, as the frame carries them (`ROUTE_F_NEIGH`).
    pub macs: [u8; 12],
    pub _pad: u32,
}

/// `IPMP_NEIGHS` key: a next hop on a member (its ifindex, the next hop's family and address).
pub type NeighKey = TargetKey;

/// `IPMP_NEIGHS` value: the MAC of a member's neighbour while the member's kernel holds it
/// confirmed (REACHABLE, DELAY, PROBE, PERMANENT), so that `ipmp_tc_egress` can address a
/// frame itself and skip `bpf_redirect_neigh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighEntry {
    pub mac: [u8; 6],
    /// Set by the program when it sends through this entry (once per neighbour epoch); ipmpd
    /// reports marked entries to the kernel as used every second and clears the marks, and
    /// drops an entry the kernel reports STALE that went unused.
    pub used: u8,
    pub _pad: u8,
}
