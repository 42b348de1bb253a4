//! Snapshots for the formatting tests: the values of the Solaris examples in
//! shared/reference/solaris-ipmp.md §4, with documentation addresses of the same lengths.

use crate::control::{
    AddressStatus, GroupState, GroupStatus, LinkState, MemberFlags, MemberState, MemberStatus,
    ProbeState, Snapshot,
};

pub(crate) fn member(name: &str, active: bool, state: MemberState) -> MemberStatus {
    MemberStatus {
        name: name.into(),
        ifindex: 10,
        mac: "02:00:00:00:00:01".into(),
        active,
        flags: MemberFlags::default(),
        link: LinkState::Up,
        probe: ProbeState::Ok,
        state,
        test_addresses: Vec::new(),
        buckets: 0,
        bound_addresses: 0,
        tx_packets: 0,
        tx_bytes: 0,
        rx_packets: 0,
        rx_bytes: 0,
        counters: Default::default(),
        probes: Vec::new(),
        probe_forged: 0,
        probe_totals: Default::default(),
    }
}

pub(crate) fn group(interface: &str, members: Vec<MemberStatus>) -> GroupStatus {
    GroupStatus {
        interface: interface.into(),
        name: interface.into(),
        ifindex: 20,
        state: GroupState::Ok,
        fdt_ms: None,
        failback: true,
        n_buckets: 256,
        hash_seed: 1,
        members,
        addresses: Vec::new(),
        attachments: Vec::new(),
    }
}

pub(crate) fn address(
    addr: &str,
    up: bool,
    inbound: Option<&str>,
    outbound: &[&str],
) -> AddressStatus {
    AddressStatus {
        address: addr.into(),
        prefix_len: 24,
        up,
        inbound: inbound.map(Into::into),
        outbound: outbound.iter().map(|s| (*s).into()).collect(),
    }
}

/// ipmp0 with net0 (active, cast member), net2 (inactive standby) and net1 (failed, link down),
/// one up and one down data address.
pub(crate) fn solaris_snapshot() -> Snapshot {
    let mut net0 = member("net0", true, MemberState::Ok);
    net0.flags.v4_multicast = true;
    net0.flags.v4_broadcast = true;
    net0.flags.v6_multicast = true;
    net0.test_addresses = vec!["198.51.100.20".into(), "198.51.100.30".into()];
    let mut net2 = member("net2", false, MemberState::Ok);
    net2.flags.inactive = true;
    net2.flags.standby = true;
    let mut net1 = member("net1", false, MemberState::Failed);
    net1.link = LinkState::Down;
    net1.probe = ProbeState::Failed;
    let mut g = group("ipmp0", vec![net0, net2, net1]);
    g.state = GroupState::Degraded;
    g.fdt_ms = Some(10_000);
    g.addresses = vec![
        address("198.51.100.10", true, Some("net0"), &["net0", "net1"]),
        address("198.51.100.11", false, None, &[]),
    ];
    Snapshot {
        pid: 1,
        version: "0.1.0".into(),
        uptime_ms: 0,
        groups: vec![g],
    }
}
