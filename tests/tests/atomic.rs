//! Atomic map updates: 1000 fail/repair cycles (carrier cut and restored,
//! rotating over 3 members so that at least one is always active) while UDP flows from the data
//! address run over every member; afterwards the reason counters in the pinned IPMP_STATS show
//! no packet dropped for lack of a member (tx-no-member) or for a bad table entry
//! (tx-bad-entry) on any slot, tx-unicast counted the traffic, and ipmpd ends consistent: every
//! member active in `ipmpstat -i`, and the pinned bucket table naming only active members, as
//! many buckets each as ipmpstat reports.

pub mod common;

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure};
use common::Setup;
use ipmp_common::{GROUP_F_FAILED, MAX_MEMBERS, MEMBER_F_ACTIVE, Reason};
use ipmp_tests::lab::{self, Lab, LabSpec};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

const MEMBERS: usize = 3;
const CYCLES: usize = 1000;
/// Pause after each link change, so the kernel reports each one (linkwatch) rather than
/// folding a down and the next up into one event.
const FLIP_PAUSE: Duration = Duration::from_millis(3);
/// Source ports of the UDP flows (enough to hash onto every member).
const FLOW_PORTS: std::ops::Range<u16> = 30000..30064;
const DST_PORT: u16 = 9;
/// What netlink-proto logs (as ipmpd's warning) when the kernel dropped events for a full
/// socket (ENOBUFS).
const OVERRUN_LOG: &str = "netlink socket buffer full";
/// Link events produced while ipmpd is stopped: far more than a default-sized netlink receive
/// buffer holds.
const OVERRUN_FLOOD: usize = 4000;

/// Sends UDP datagrams from the data address round-robin over [`FLOW_PORTS`] (about 8 per
/// millisecond) until `stop`; returns (sent, send errors).
fn udp_load(
    setup: &Setup,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<thread::JoinHandle<anyhow::Result<(u64, u64)>>> {
    let src: Ipv4Addr = lab::DATA_V4.parse()?;
    let dst = SocketAddr::new(IpAddr::V4(lab::peer_v4(0).parse()?), DST_PORT);
    Ok(setup.lab.host().spawn_in(move || {
        let socks = FLOW_PORTS
            .map(|p| UdpSocket::bind(SocketAddrV4::new(src, p)))
            .collect::<Result<Vec<_>, _>>()?;
        let (mut sent, mut errors) = (0u64, 0u64);
        let mut next = 0;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..8 {
                match socks[next % socks.len()].send_to(&[0xa5; 64], dst) {
                    Ok(_) => sent += 1,
                    Err(_) => errors += 1,
                }
                next += 1;
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok((sent, errors))
    }))
}

/// Link changes ipmpd has logged so far.
fn link_changes_seen(setup: &Setup) -> usize {
    setup.daemon.log().matches("link state changed").count()
}

/// Waits until ipmpd has logged `want` link changes, or has logged none for 30 ms (the kernel
/// may fold a quick down/up into one report, so `want` is not always reached), at most 2 s.
fn catch_up(setup: &Setup, want: usize) {
    let mut last = (link_changes_seen(setup), Instant::now());
    lab::wait_until(Duration::from_secs(2), Duration::from_millis(2), || {
        let seen = link_changes_seen(setup);
        if seen != last.0 {
            last = (seen, Instant::now());
        }
        seen >= want || last.1.elapsed() >= Duration::from_millis(30)
    });
}

/// Cuts and restores the members' carriers `CYCLES` times, member `i % MEMBERS` in cycle `i`,
/// through one `ip -batch` in the switch namespace (no process per change). Every 10 cycles it
/// lets ipmpd catch up, so that on a slow or loaded machine the events do not pile up in
/// ipmpd's netlink socket until it overruns (that case has its own test below). Returns how
/// long the cycles took.
fn flap(setup: &Setup) -> anyhow::Result<Duration> {
    let mut ip = setup
        .lab
        .switch()
        .command(&["ip", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stdin = ip
        .stdin
        .take()
        .ok_or_else(|| anyhow!("ip -batch has no stdin"))?;
    let seen_at_start = link_changes_seen(setup);
    let start = Instant::now();
    for i in 0..CYCLES {
        let port = Lab::port(i % MEMBERS);
        for state in ["down", "up"] {
            writeln!(stdin, "link set {port} {state}")?;
            stdin.flush()?;
            thread::sleep(FLIP_PAUSE);
        }
        if i % 10 == 9 {
            catch_up(setup, seen_at_start + 2 * (i + 1));
        }
    }
    drop(stdin);
    let status = ip.wait()?;
    ensure!(status.success(), "ip -batch failed: {status}");
    Ok(start.elapsed())
}

/// tx-no-member and tx-bad-entry drops over every counter slot.
fn drops(maps: &common::PinnedMaps) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    [Reason::TxNoMember, Reason::TxBadEntry]
        .into_iter()
        .map(|r| Ok((r.label(), maps.packets_all_slots(r)?)))
        .collect()
}

/// tx-unicast packets per member.
fn tx_unicast(maps: &common::PinnedMaps, setup: &Setup) -> anyhow::Result<Vec<u64>> {
    (0..MEMBERS)
        .map(|i| {
            let slot = maps.member(setup.member_ifindex(i))?.stats_slot;
            maps.packets(slot, Reason::TxUnicast)
        })
        .collect()
}

#[test]
fn thousand_fail_repair_cycles_drop_nothing_for_lack_of_a_member() {
    if !lab::require_root("thousand_fail_repair_cycles_drop_nothing_for_lack_of_a_member") {
        return;
    }
    let setup = Setup::start(
        LabSpec {
            members: MEMBERS,
            peers: 1,
            router: false,
        },
        // The flap hold-down (by default a repair waits after 2 link-ups in 60 s) would keep
        // the rotated members failed until the group has none left; this test is about the
        // map updates, so every link-up repairs at once.
        |c| c.link_flap_max_ups = Some(1_000_000),
    )
    .unwrap();
    let group = setup.group_ifindex().unwrap();
    let maps = setup.maps().unwrap();
    let drops_before = drops(&maps).unwrap();
    let tx_before = tx_unicast(&maps, &setup).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load = udp_load(&setup, Arc::clone(&stop)).unwrap();
    thread::sleep(Duration::from_millis(200));
    let took = flap(&setup).unwrap();
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (sent, send_errors) = lab::join(load).unwrap();

    // ipmpd ends consistent: every member active and ok.
    let rows = setup
        .wait_members(Duration::from_secs(5), |ms| {
            ms.len() == MEMBERS && ms.iter().all(|m| m.active && m.state == "ok")
        })
        .unwrap();
    let text = setup
        .daemon
        .ipmpstat(&["-P", "-o", "INTERFACE,ACTIVE,LINK,STATE", "-i"])
        .unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["m0:yes:up:ok", "m1:yes:up:ok", "m2:yes:up:ok"],
        "ipmpstat -i after the last repair:\n{text}"
    );

    let log = setup.daemon.log_synced();
    let count = |what: &str| {
        (0..MEMBERS)
            .map(|i| log.matches(&format!("m{i} {what}")).count())
            .sum::<usize>()
    };
    let (failed, repaired) = (count("failed ("), count("repaired"));
    let overruns = log.matches(OVERRUN_LOG).count();
    let drops_after = drops(&maps).unwrap();
    let tx_after = tx_unicast(&maps, &setup).unwrap();
    let tx: Vec<u64> = tx_after
        .iter()
        .zip(&tx_before)
        .map(|(a, b)| a - b)
        .collect();
    eprintln!(
        "{CYCLES} cycles in {:.2} s ({:.1} ms per cycle); ipmpd saw {failed} failures and \
         {repaired} repairs ({overruns} netlink overruns); {sent} datagrams sent ({send_errors} send errors); tx-unicast \
         per member {tx:?}; drops before {drops_before:?}, after {drops_after:?}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / CYCLES as f64
    );

    // The cycles really happened in ipmpd: the kernel may fold a quick down/up into one
    // report, so allow a few to go unseen.
    assert!(
        failed >= CYCLES * 9 / 10 && repaired >= CYCLES * 9 / 10,
        "ipmpd saw only {failed} failures and {repaired} repairs of {CYCLES} cycles"
    );
    assert_eq!(
        drops_after, drops_before,
        "packets dropped for lack of a member or a bad bucket entry during the cycles"
    );
    assert_eq!(
        drops_after.values().sum::<u64>(),
        0,
        "no such drop at all since ipmpd started"
    );
    // Every datagram that left the socket went through the TC program; the only verdicts for
    // it are tx-unicast or a drop reason, and the drop reasons above stayed at zero.
    assert!(sent > 10_000, "the load ran: {sent} datagrams");
    assert!(
        tx.iter().sum::<u64>() >= sent,
        "tx-unicast counted {tx:?} for {sent} datagrams sent"
    );
    assert!(
        tx.iter().all(|&n| n > 0),
        "every member carried traffic: {tx:?}"
    );

    // The pinned maps agree with ipmpd: no failed group, every bucket names an active member,
    // and each member holds as many buckets as ipmpstat says.
    let table = maps.table(group).unwrap();
    assert_eq!(table.group.flags & GROUP_F_FAILED, 0, "{:?}", table.group);
    let load = table.load();
    for row in &rows {
        let info = maps.member(row.ifindex).unwrap();
        assert_ne!(info.flags & MEMBER_F_ACTIVE, 0, "{}: {info:?}", row.name);
        assert!(info.stats_slot < MAX_MEMBERS);
        assert_eq!(
            load.get(&row.ifindex).copied().unwrap_or(0),
            row.buckets,
            "{}: buckets in the map vs ipmpstat ({load:?})",
            row.name
        );
    }
    assert_eq!(
        load.values().sum::<u32>(),
        table.group.n_buckets,
        "every bucket names a member: {load:?}"
    );
    let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
    assert!(
        max - min <= 1,
        "buckets balanced after the last repair: {load:?}"
    );
}

/// ipmpd must not lose a member's link state when its netlink socket overruns (ENOBUFS: the
/// kernel drops the events that do not fit). ipmpd is stopped (SIGSTOP) while the host
/// namespace produces thousands of link events on an unrelated veth and m0 loses its
/// carrier; once resumed, ipmpd must find m0 failed (a resync after the overrun) and follow
/// its repair.
#[test]
fn member_failure_is_not_lost_in_a_netlink_overrun() {
    if !lab::require_root("member_failure_is_not_lost_in_a_netlink_overrun") {
        return;
    }
    let setup = Setup::start(
        LabSpec {
            members: MEMBERS,
            peers: 0,
            router: false,
        },
        |_| {},
    )
    .unwrap();
    let lab = &setup.lab;
    let host = lab.host();
    host.ip("link add ovr0 type veth peer name ovr1").unwrap();
    let pid = Pid::from_raw(i32::try_from(setup.daemon.pid().unwrap()).unwrap());

    kill(pid, Signal::SIGSTOP).unwrap();
    let flood = (|| -> anyhow::Result<()> {
        let mut ip = host
            .command(&["ip", "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let mut stdin = ip
            .stdin
            .take()
            .ok_or_else(|| anyhow!("ip -batch has no stdin"))?;
        for i in 0..OVERRUN_FLOOD {
            writeln!(
                stdin,
                "link set ovr0 {}",
                if i % 2 == 0 { "up" } else { "down" }
            )?;
        }
        drop(stdin);
        ensure!(ip.wait()?.success(), "ip -batch failed");
        lab.cut_link(0)
    })();
    kill(pid, Signal::SIGCONT).unwrap();
    flood.unwrap();

    let failed = setup.wait_members(Duration::from_secs(5), |ms| {
        ms.iter()
            .all(|m| (m.name == "m0") == (!m.active && m.state == "failed"))
    });
    let overruns = setup.daemon.log().matches(OVERRUN_LOG).count();
    eprintln!("{OVERRUN_FLOOD} link events while ipmpd was stopped: {overruns} overruns logged");
    failed.unwrap();
    let maps = setup.maps().unwrap();
    let table = maps.table(setup.group_ifindex().unwrap()).unwrap();
    assert!(
        !table.buckets.contains(&setup.member_ifindex(0)),
        "the bucket table still names the failed m0: {:?}",
        table.load()
    );

    lab.restore_link(0).unwrap();
    setup
        .wait_members(Duration::from_secs(5), |ms| {
            ms.iter().all(|m| m.active && m.state == "ok")
        })
        .unwrap();
}
