//! `bpftool map dump pinned <pin dir>/<map>` (plain output, no `-j`) shows every map with the
//! field names of its key and value: the maps are BTF-defined, so bpftool prints
//! them as structured JSON instead of hex bytes (the probe ring buffer, which has no entries
//! to dump, is checked with `bpftool map show`). The field names come from ipmp-common's
//! `maps.rs`; the values are checked against what ipmpd reports and what the lab built.

pub mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use common::{Setup, members};
use ipmp_common::{
    ALL_MAPS, FAMILY_V4, FAMILY_V6, MAP_ADDRS, MAP_BUCKETS, MAP_CONFIG, MAP_GROUPS, MAP_MEMBERS,
    MAP_NEIGHS, MAP_PROBES, MAP_ROUTE_GEN, MAP_ROUTES4, MAP_ROUTES6, MAP_STATS, MAP_TARGETS,
    MAP_TESTADDRS, MEMBER_F_ACTIVE, NEIGH_EPOCH, PROBE_RING_BYTES, ROUTE_F_NEIGH, ROUTE_GEN,
    ROUTE_GEN_OFF, STATS_ENTRIES, bucket_index,
};
use ipmp_tests::lab::{self, Lab, LabSpec};
use serde_json::Value;

const SPEC: LabSpec = LabSpec {
    members: 3,
    peers: 1,
    router: true,
};

/// Field names of the `#[repr(C)]` types in ipmp-common/src/maps.rs.
const GROUP_INFO: &[&str] = &[
    "slot",
    "active_half",
    "n_buckets",
    "seed",
    "cast_ifindex",
    "stats_slot",
    "flags",
    "cast_mac",
    "_pad",
];
const MEMBER_INFO: &[&str] = &[
    "group_ifindex",
    "stats_slot",
    "flags",
    "arp_src",
    "rx_ifindex",
    "mac",
    "ipmp_mac",
];
const ADDR_KEY: &[&str] = &["family", "addr"];
const ADDR_INFO: &[&str] = &["group_ifindex", "bound_ifindex"];
const COUNTER: &[&str] = &["packets", "bytes"];
const TEST_ADDR_INFO: &[&str] = &["member_ifindex", "group_ifindex"];
const TARGET_KEY: &[&str] = &["ifindex", "family", "addr"];
const TARGET_INFO: &[&str] = &["flags"];
const PROBE_CONFIG: &[&str] = &["cookie", "echo_id", "echo_id_mask", "flags", "_pad"];
const ROUTE_KEY4: &[&str] = &[
    "src", "dst", "sport", "dport", "ifindex", "proto", "tos", "_pad",
];
const ROUTE_KEY6: &[&str] = &[
    "src", "dst", "sport", "dport", "ifindex", "proto", "_pad", "flowinfo",
];
const ROUTE_ENTRY: &[&str] = &[
    "generation",
    "neigh_epoch",
    "nexthop",
    "family",
    "member_ifindex",
    "member_slot",
    "flags",
    "macs",
    "_pad",
];
const NEIGH_KEY: &[&str] = &["ifindex", "family", "addr"];
const NEIGH_ENTRY: &[&str] = &["mac", "used", "_pad"];
/// m1's test address in this test.
const M1_TEST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);

/// `bpftool map dump pinned PATH` (plain) parsed; it must be JSON, not a hex dump.
fn dump(lab: &Lab, map: &str) -> Vec<Value> {
    let path = lab.pin_dir().join(map);
    let out = lab
        .host()
        .run(&["bpftool", "map", "dump", "pinned", &path.to_string_lossy()])
        .unwrap_or_else(|e| panic!("bpftool map dump pinned {}: {e:#}", path.display()));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "bpftool printed {map} without BTF field names ({e}):\n{}",
            &out[..out.len().min(2000)]
        )
    });
    // Taken, not cloned: IPMP_BUCKETS has 2 097 152 entries.
    match v {
        Value::Array(entries) => entries,
        _ => panic!("{map}: not a list of entries"),
    }
}

fn names(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not a struct with named fields: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_fields(map: &str, what: &str, v: &Value, expected: &[&str]) {
    assert_eq!(
        names(v),
        expected.iter().copied().collect::<BTreeSet<_>>(),
        "{map} {what} fields: {v}"
    );
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a byte array: {v}"))
        .iter()
        .map(|b| u8::try_from(u64_of(b)).unwrap_or_else(|_| panic!("not a byte: {b}")))
        .collect()
}

#[test]
fn every_pinned_map_dumps_with_field_names() {
    if !lab::require_root("every_pinned_map_dumps_with_field_names") {
        return;
    }
    let s = Setup::start(SPEC, |cfg| {
        cfg.member_mut("m1").test_address = Some(format!("{M1_TEST_V4}/24"));
    })
    .unwrap();
    let (lab, daemon) = (&s.lab, &s.daemon);
    // Some traffic, so that counters have something to show.
    for dst in [lab::ROUTER_V4, lab::ROUTER_V6, lab::FAR_V4, lab::FAR_V6] {
        let ping = lab.host().ping(dst, 3, Duration::from_millis(10)).unwrap();
        assert_eq!(ping.received, 3, "host -> {dst}: {ping:?}");
    }
    let status = members(daemon).unwrap();
    let ifindex: BTreeMap<String, u64> = status
        .iter()
        .map(|m| (m.name.clone(), u64::from(m.ifindex)))
        .collect();
    let group_ifindex = u64::from(lab.host().link("ipmp0").unwrap().ifindex);
    let addrs = daemon.ipmpstat_json(&["-an"]).unwrap();

    // Every pinned map is dumped; no map is left out of this test.
    let mut seen = BTreeSet::new();

    // IPMP_GROUPS: one group, keyed by the IPMP interface's ifindex.
    let groups = dump(lab, MAP_GROUPS);
    seen.insert(MAP_GROUPS);
    assert_eq!(groups.len(), 1, "{groups:?}");
    let g = &groups[0];
    assert_eq!(u64_of(&g["key"]), group_ifindex);
    let gv = &g["value"];
    assert_fields(MAP_GROUPS, "value", gv, GROUP_INFO);
    assert_eq!(u64_of(&gv["seed"]), u64::from(lab::LAB_HASH_SEED));
    assert_eq!(u64_of(&gv["n_buckets"]), 1024);
    let cast = u64_of(&gv["cast_ifindex"]);
    let cast_name = ifindex
        .iter()
        .find(|(_, i)| **i == cast)
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| panic!("cast_ifindex {cast} is no member"));
    let cast_i: usize = cast_name[1..].parse().unwrap();
    assert_eq!(bytes(&gv["cast_mac"]), lab.member_mac(cast_i));

    // IPMP_MEMBERS: every member, with its MAC, and where inbound goes: the IPMP interface's
    // veth peer, readdressed to the IPMP interface's MAC.
    let ipmp0 = lab.host().link("ipmp0").unwrap();
    let peer = lab.host().link("ipmp0-p").unwrap();
    let ms = dump(lab, MAP_MEMBERS);
    seen.insert(MAP_MEMBERS);
    assert_eq!(ms.len(), SPEC.members, "{ms:?}");
    for m in &ms {
        assert_fields(MAP_MEMBERS, "value", &m["value"], MEMBER_INFO);
        let key = u64_of(&m["key"]);
        let (name, _) = ifindex
            .iter()
            .find(|(_, i)| **i == key)
            .unwrap_or_else(|| panic!("{MAP_MEMBERS} key {key} is no member"));
        let i: usize = name[1..].parse().unwrap();
        assert_eq!(bytes(&m["value"]["mac"]), lab.member_mac(i), "{m}");
        assert_eq!(u64_of(&m["value"]["group_ifindex"]), group_ifindex);
        assert_eq!(
            u64_of(&m["value"]["rx_ifindex"]),
            u64::from(peer.ifindex),
            "{m}"
        );
        assert_eq!(
            Some(bytes(&m["value"]["ipmp_mac"])),
            ipmp0.mac.map(|m| m.to_vec()),
            "{m}"
        );
        assert_ne!(
            u64_of(&m["value"]["flags"]) & u64::from(MEMBER_F_ACTIVE),
            0,
            "{name} is active: {m}"
        );
    }

    // IPMP_ADDRS: both data addresses, bound where ipmpstat says.
    let entries = dump(lab, MAP_ADDRS);
    seen.insert(MAP_ADDRS);
    assert_eq!(entries.len(), 2, "{entries:?}");
    let inbound: BTreeMap<String, String> = addrs
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().to_owned(),
                a["inbound"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for e in &entries {
        assert_fields(MAP_ADDRS, "key", &e["key"], ADDR_KEY);
        assert_fields(MAP_ADDRS, "value", &e["value"], ADDR_INFO);
        let raw = bytes(&e["key"]["addr"]);
        let addr = match u32::try_from(u64_of(&e["key"]["family"])).unwrap() {
            FAMILY_V4 => {
                assert!(raw[4..].iter().all(|b| *b == 0), "{e}");
                Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).to_string()
            }
            FAMILY_V6 => Ipv6Addr::from(<[u8; 16]>::try_from(raw.as_slice()).unwrap()).to_string(),
            other => panic!("family {other} in {e}"),
        };
        let member = inbound
            .get(&addr)
            .unwrap_or_else(|| panic!("{addr} is no data address: {inbound:?}"));
        assert_eq!(u64_of(&e["value"]["bound_ifindex"]), ifindex[member], "{e}");
        assert_eq!(u64_of(&e["value"]["group_ifindex"]), group_ifindex, "{e}");
    }

    // IPMP_BUCKETS: plain u32 values; the active half holds what ipmpstat counts per member.
    let buckets = dump(lab, MAP_BUCKETS);
    seen.insert(MAP_BUCKETS);
    assert_eq!(
        buckets.len() as u32,
        ipmp_common::BUCKET_ENTRIES,
        "one entry per bucket slot"
    );
    let (slot, half, n) = (
        u32::try_from(u64_of(&gv["slot"])).unwrap(),
        u32::try_from(u64_of(&gv["active_half"])).unwrap(),
        u32::try_from(u64_of(&gv["n_buckets"])).unwrap(),
    );
    let mut load: BTreeMap<u64, u32> = BTreeMap::new();
    for b in 0..n {
        let index = bucket_index(slot, half, b).unwrap() as usize;
        let e = &buckets[index];
        assert_fields(MAP_BUCKETS, "entry", e, &["key", "value"]);
        assert_eq!(u64_of(&e["key"]), index as u64);
        *load.entry(u64_of(&e["value"])).or_default() += 1;
    }
    for m in &status {
        assert_eq!(
            load.get(&u64::from(m.ifindex)).copied().unwrap_or(0),
            m.buckets,
            "buckets of {} in the dump vs ipmpstat: {load:?}",
            m.name
        );
    }

    // IPMP_STATS: per CPU counters with packets and bytes; the pings were counted.
    let stats = dump(lab, MAP_STATS);
    seen.insert(MAP_STATS);
    assert_eq!(stats.len() as u32, STATS_ENTRIES);
    let mut packets = 0;
    for e in &stats {
        let values = e["values"]
            .as_array()
            .unwrap_or_else(|| panic!("{MAP_STATS} entry without per-CPU values: {e}"));
        assert!(!values.is_empty(), "{e}");
        for v in values {
            assert_fields(MAP_STATS, "per-CPU entry", v, &["cpu", "value"]);
            assert_fields(MAP_STATS, "value", &v["value"], COUNTER);
            packets += u64_of(&v["value"]["packets"]);
        }
    }
    let unicast: u64 = status.iter().map(|m| m.tx_packets).sum();
    assert!(
        packets >= 12 && unicast >= 12,
        "12 pings left through the group: {packets} packets counted, {unicast} sent per ipmpstat"
    );

    // IPMP_TESTADDRS: m1's test address, owned by m1.
    let tests = dump(lab, MAP_TESTADDRS);
    seen.insert(MAP_TESTADDRS);
    assert_eq!(tests.len(), 1, "{tests:?}");
    assert_fields(MAP_TESTADDRS, "key", &tests[0]["key"], ADDR_KEY);
    assert_fields(MAP_TESTADDRS, "value", &tests[0]["value"], TEST_ADDR_INFO);
    assert_eq!(
        u32::try_from(u64_of(&tests[0]["key"]["family"])).unwrap(),
        FAMILY_V4
    );
    assert_eq!(
        bytes(&tests[0]["key"]["addr"])[..4],
        M1_TEST_V4.octets(),
        "{tests:?}"
    );
    assert_eq!(u64_of(&tests[0]["value"]["member_ifindex"]), ifindex["m1"]);
    assert_eq!(u64_of(&tests[0]["value"]["group_ifindex"]), group_ifindex);

    // IPMP_TARGETS: whatever targets the prober registered, with field names.
    for e in dump(lab, MAP_TARGETS) {
        assert_fields(MAP_TARGETS, "key", &e["key"], TARGET_KEY);
        assert_fields(MAP_TARGETS, "value", &e["value"], TARGET_INFO);
    }
    seen.insert(MAP_TARGETS);

    // IPMP_CONFIG: one entry with the probe identity.
    let config = dump(lab, MAP_CONFIG);
    seen.insert(MAP_CONFIG);
    assert_eq!(config.len(), 1, "{config:?}");
    assert_eq!(u64_of(&config[0]["key"]), 0);
    assert_fields(MAP_CONFIG, "value", &config[0]["value"], PROBE_CONFIG);

    // IPMP_ROUTE_GEN: remembering is on while ipmpd runs; the neighbour epoch beside it.
    let generation = dump(lab, MAP_ROUTE_GEN);
    seen.insert(MAP_ROUTE_GEN);
    assert_eq!(generation.len(), 2, "{generation:?}");
    assert_eq!(u64_of(&generation[0]["key"]), u64::from(ROUTE_GEN));
    assert_eq!(u64_of(&generation[1]["key"]), u64::from(NEIGH_EPOCH));
    let generation = u64_of(&generation[0]["value"]);
    assert!(
        generation & ROUTE_GEN_OFF == 0 && generation > 0,
        "{generation:#x}"
    );

    // IPMP_ROUTES4 / IPMP_ROUTES6: the pings' paths, each family in its own map: next hop the
    // router itself, and the router for the far host, through a member, addressed to the
    // router's MAC once it is confirmed.
    let router: Ipv4Addr = lab::ROUTER_V4.parse().unwrap();
    let member_ifindexes: BTreeSet<u64> = ifindex.values().copied().collect();
    let mut v4_next_hops = BTreeMap::new();
    let mut v6_paths = 0;
    for (map, key_fields) in [(MAP_ROUTES4, ROUTE_KEY4), (MAP_ROUTES6, ROUTE_KEY6)] {
        seen.insert(map);
        for e in &dump(lab, map) {
            assert_fields(map, "key", &e["key"], key_fields);
            assert_fields(map, "value", &e["value"], ROUTE_ENTRY);
            assert_eq!(u64_of(&e["key"]["ifindex"]), group_ifindex, "{e}");
            assert!(u64_of(&e["value"]["generation"]) <= generation, "{e}");
            assert!(
                member_ifindexes.contains(&u64_of(&e["value"]["member_ifindex"])),
                "a path through no member: {e}"
            );
            let macs = bytes(&e["value"]["macs"]);
            if u64_of(&e["value"]["flags"]) & u64::from(ROUTE_F_NEIGH) != 0 {
                assert_eq!(macs[..6], lab::ROUTER_MAC, "{e}");
            }
            let family = u64_of(&e["value"]["family"]);
            if map == MAP_ROUTES4 {
                assert_eq!(family, u64::from(FAMILY_V4), "{e}");
                let word = u32::try_from(u64_of(&e["key"]["dst"])).unwrap();
                v4_next_hops.insert(
                    Ipv4Addr::from(word.to_ne_bytes()),
                    Ipv4Addr::from(
                        u32::try_from(u64_of(&e["value"]["nexthop"][0]))
                            .unwrap()
                            .to_ne_bytes(),
                    ),
                );
            } else {
                assert_eq!(family, u64::from(FAMILY_V6), "{e}");
                v6_paths += 1;
            }
        }
    }
    assert!(v6_paths > 0, "no IPv6 path remembered in {MAP_ROUTES6}");
    let routes = dump(lab, MAP_ROUTES4);
    for dst in [lab::ROUTER_V4, lab::FAR_V4] {
        let dst: Ipv4Addr = dst.parse().unwrap();
        assert_eq!(
            v4_next_hops.get(&dst),
            Some(&router),
            "next hop remembered for {dst}: {routes:?}"
        );
    }

    // IPMP_NEIGHS: the router, confirmed on members with its MAC, and the program sent
    // through the entry of a member that carried the IPv4 pings.
    // The first packets to the router took the kernel's path while the member resolved it;
    // once ipmpd has copied the confirmed entry, the program sends through it.
    let used_router_entry = |lab: &Lab| {
        dump(lab, MAP_NEIGHS).iter().any(|e| {
            bytes(&e["key"]["addr"])[..4] == router.octets() && u64_of(&e["value"]["used"]) > 0
        })
    };
    lab::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let _ = lab
            .host()
            .ping(lab::ROUTER_V4, 2, Duration::from_millis(10));
        used_router_entry(lab)
    });
    let neighs = dump(lab, MAP_NEIGHS);
    seen.insert(MAP_NEIGHS);
    let mut router_entries = 0;
    for e in &neighs {
        assert_fields(MAP_NEIGHS, "key", &e["key"], NEIGH_KEY);
        assert_fields(MAP_NEIGHS, "value", &e["value"], NEIGH_ENTRY);
        assert!(
            member_ifindexes.contains(&u64_of(&e["key"]["ifindex"])),
            "a neighbour of no member: {e}"
        );
        if u64_of(&e["key"]["family"]) == u64::from(FAMILY_V4)
            && bytes(&e["key"]["addr"])[..4] == router.octets()
        {
            assert_eq!(bytes(&e["value"]["mac"]), lab::ROUTER_MAC, "{e}");
            // Members that only probed the router hold it unused.
            router_entries += u64_of(&e["value"]["used"]);
        }
    }
    assert!(
        router_entries > 0,
        "no member sent through its entry for the router: {neighs:?}"
    );

    // IPMP_PROBES: a ring buffer has no entries to dump; bpftool shows its type and size.
    let path = lab.pin_dir().join(MAP_PROBES);
    let out = lab
        .host()
        .run(&[
            "bpftool",
            "-j",
            "map",
            "show",
            "pinned",
            &path.to_string_lossy(),
        ])
        .unwrap();
    let ring: Value = serde_json::from_str(&out).unwrap();
    seen.insert(MAP_PROBES);
    assert_eq!(ring["type"], "ringbuf", "{ring}");
    assert_eq!(u64_of(&ring["max_entries"]), u64::from(PROBE_RING_BYTES));

    assert_eq!(
        seen,
        ALL_MAPS.iter().copied().collect::<BTreeSet<_>>(),
        "every pinned map is dumped"
    );
}
