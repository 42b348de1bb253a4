//! Minimal disruption: 1000 UDP flows from the data address over 4 members;
//! failing one member remaps only the flows it carried (every flow on a surviving member stays
//! put) and spreads them over the survivors; its repair (failback) moves flows only onto it.
//!
//! Each flow is a fixed source port; the member that carried it is observed with tcpdump on the
//! switch-side ports (frames by source MAC) and compared with the bucket table's prediction.
//! The hash seed and the ports are fixed, so the shares asserted below are the same on every
//! run (a share of hashed flows otherwise varies binomially).

pub mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::Range,
    time::Duration,
};

use common::{PortCaptures, Setup, Table, flow_key, flows_by_member, send_udp_flows};
use ipmp_tests::{
    lab::{self, LabSpec},
    pcap::IPPROTO_UDP,
};

const MEMBERS: usize = 4;
/// The member whose link is cut.
const VICTIM: usize = 2;
/// 1000 flows: one per source port.
const PORTS: Range<u16> = 20000..21000;
/// The discard port on peer 0 (nothing listens; the peer's port unreachables do not matter).
const DST_PORT: u16 = 9;

/// The data address and peer 0's address.
fn addresses() -> anyhow::Result<(Ipv4Addr, Ipv4Addr)> {
    Ok((lab::DATA_V4.parse()?, lab::peer_v4(0).parse()?))
}

/// Sends 2 datagrams per flow while capturing on `members`' ports; returns the member that
/// carried each flow (by source port), checking that each flow left through exactly one member
/// and that this is the member `table` predicts.
fn round(
    setup: &Setup,
    members: &[usize],
    table: &Table,
    tag: &str,
) -> anyhow::Result<BTreeMap<u16, usize>> {
    let (src, peer) = addresses()?;
    let captures = PortCaptures::start(
        &setup.lab,
        members,
        tag,
        &[
            "udp",
            "and",
            "src",
            "host",
            lab::DATA_V4,
            "and",
            "dst",
            "port",
            &DST_PORT.to_string(),
        ],
    )?;
    let sent = send_udp_flows(
        setup.lab.host(),
        src,
        PORTS,
        SocketAddr::new(IpAddr::V4(peer), DST_PORT),
        2,
    )?;
    assert_eq!(sent, 2 * PORTS.len() as u64);
    let frames = captures.stop()?;
    let observed = flows_by_member(&frames, |t| {
        t.proto == IPPROTO_UDP && t.src == IpAddr::V4(src) && t.dst == IpAddr::V4(peer)
    });
    let mut carrier = BTreeMap::new();
    let mut mispredicted = Vec::new();
    for (flow, on) in &observed {
        assert_eq!(on.len(), 1, "{tag}: flow {flow:?} left through {on:?}");
        let Some(&member) = on.first() else {
            unreachable!("flows_by_member lists every flow with a member");
        };
        let predicted = setup.member_index(table.member_of(&flow_key(flow)?))?;
        if predicted != member {
            mispredicted.push((flow.src_port, member, predicted));
        }
        carrier.insert(flow.src_port, member);
    }
    let missing: Vec<u16> = PORTS.filter(|p| !carrier.contains_key(p)).collect();
    assert!(
        missing.is_empty(),
        "{tag}: flows from {} source ports were not seen on any member: {missing:?}",
        missing.len()
    );
    assert!(
        mispredicted.is_empty(),
        "{tag}: (src port, observed, predicted by the bucket table): {mispredicted:?}"
    );
    Ok(carrier)
}

fn shares(carrier: &BTreeMap<u16, usize>) -> BTreeMap<usize, usize> {
    let mut out = BTreeMap::new();
    for m in carrier.values() {
        *out.entry(*m).or_default() += 1;
    }
    out
}

/// Asserts that each of `members` got within ±25% of a fair share of `counts`' total.
fn assert_fair(what: &str, counts: &BTreeMap<usize, usize>, members: &[usize]) {
    let total: usize = counts.values().sum();
    let fair = total as f64 / members.len() as f64;
    for m in members {
        let n = counts.get(m).copied().unwrap_or(0) as f64;
        assert!(
            n >= fair * 0.75 && n <= fair * 1.25,
            "{what}: m{m} got {n} of {total}, outside ±25% of {fair:.1}: {counts:?}"
        );
    }
}

#[test]
fn failing_a_member_remaps_only_its_flows() {
    if !lab::require_root("failing_a_member_remaps_only_its_flows") {
        return;
    }
    let setup = Setup::start(
        LabSpec {
            members: MEMBERS,
            peers: 1,
            router: false,
        },
        |_| {},
    )
    .unwrap();
    let lab = &setup.lab;
    let group = setup.group_ifindex().unwrap();
    let maps = setup.maps().unwrap();
    let all: Vec<usize> = (0..MEMBERS).collect();
    let survivors: Vec<usize> = all.iter().copied().filter(|&m| m != VICTIM).collect();

    // Warm-up: every member resolves the peer's MAC, so no datagram waits in a neighbour queue
    // while the captures run.
    let (src, peer) = addresses().unwrap();
    send_udp_flows(
        lab.host(),
        src,
        PORTS,
        SocketAddr::new(IpAddr::V4(peer), DST_PORT),
        1,
    )
    .unwrap();

    let table0 = maps.table(group).unwrap();
    let before = round(&setup, &all, &table0, "before").unwrap();
    let before_shares = shares(&before);
    eprintln!("before: flows per member {before_shares:?}");
    assert_fair("1000 flows over 4 members", &before_shares, &all);

    // Fail the victim; ipmpd answers ipmpstat only after it has written the maps.
    lab.cut_link(VICTIM).unwrap();
    let victim = lab.member(VICTIM);
    setup
        .wait_members(Duration::from_secs(5), |ms| {
            ms.iter()
                .all(|m| (m.name == victim) == (!m.active && m.state == "failed"))
        })
        .unwrap();
    let table1 = maps.table(group).unwrap();
    // On the table: buckets of survivors stay; the victim's are spread over the survivors.
    let victim_ifindex = setup.member_ifindex(VICTIM);
    for (b, (old, new)) in table0.buckets.iter().zip(&table1.buckets).enumerate() {
        if *old == victim_ifindex {
            assert_ne!(
                *new, victim_ifindex,
                "bucket {b} still names the failed member"
            );
        } else {
            assert_eq!(old, new, "bucket {b} of a surviving member moved");
        }
    }

    let after = round(&setup, &survivors, &table1, "failed").unwrap();
    let mut stayed = 0;
    let mut remapped: BTreeMap<usize, usize> = BTreeMap::new();
    for (port, was) in &before {
        let now = after[port];
        if *was == VICTIM {
            *remapped.entry(now).or_default() += 1;
        } else {
            assert_eq!(
                now, *was,
                "flow from port {port} moved from surviving m{was} to m{now}"
            );
            stayed += 1;
        }
    }
    let n_remapped: usize = remapped.values().sum();
    eprintln!(
        "m{VICTIM} failed: {stayed} flows stayed, {n_remapped} remapped \
         (m{VICTIM} carried {}), remapped per survivor {remapped:?}",
        before_shares[&VICTIM]
    );
    assert_eq!(n_remapped, before_shares[&VICTIM]);
    assert_fair("the failed member's flows", &remapped, &survivors);

    // Repair (failback on): flows move only onto the repaired member, which gets a fair share
    // back.
    lab.restore_link(VICTIM).unwrap();
    setup
        .wait_members(Duration::from_secs(5), |ms| {
            ms.iter().all(|m| m.active && m.state == "ok")
        })
        .unwrap();
    let table2 = maps.table(group).unwrap();
    let repaired = round(&setup, &all, &table2, "repaired").unwrap();
    let moved: BTreeSet<u16> = after
        .iter()
        .filter(|(port, was)| repaired[*port] != **was)
        .map(|(port, _)| *port)
        .collect();
    let wrong: Vec<(u16, usize, usize)> = moved
        .iter()
        .filter(|p| repaired[*p] != VICTIM)
        .map(|p| (*p, after[p], repaired[p]))
        .collect();
    assert!(
        wrong.is_empty(),
        "on repair, flows moved between surviving members (port, from, to): {wrong:?}"
    );
    let repaired_shares = shares(&repaired);
    eprintln!(
        "m{VICTIM} repaired: {} flows moved back onto it; flows per member {repaired_shares:?}",
        moved.len()
    );
    assert_eq!(moved.len(), repaired_shares[&VICTIM]);
    assert_fair("1000 flows after the repair", &repaired_shares, &all);
    // The flows it takes back are the ones it lost (the bucket table remembers each bucket's
    // home), so a flow the failure never touched is never moved by the repair either, and
    // a flow that did move goes back where it was.
    let not_home: Vec<u16> = moved
        .iter()
        .filter(|p| before[*p] != VICTIM)
        .copied()
        .collect();
    assert!(
        not_home.is_empty(),
        "flows that were never on m{VICTIM} moved onto it on repair: {not_home:?}"
    );
}
