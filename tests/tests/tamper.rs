//! Worst days, tampering: what ipmpd built is removed by hand while a peer pings the data
//! address every 5 ms, and ipmpd must notice, log and repair it — pins removed, the bpffs of
//! its pin directory unmounted (one this test mounted, never the host's), the IPMP interface
//! deleted, a member's TCX and XDP programs detached. Each test prints its figures (pings
//! lost, time to repair, ipmpd's CPU); bounds are generous, the figures are for reading.

pub mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use common::{Setup, cpu_seconds, ping_while};
use ipmp_tests::lab::{self, DATA_V4, Daemon, Lab, LabSpec, Netns, ROUTER_V4, wait_until};

const SPEC: LabSpec = LabSpec {
    members: 2,
    peers: 1,
    router: true,
};

/// Echo requests go through to the host's stack on `ipmp0` and the replies out through its
/// TC egress (not answered by the member programs), so the pings cross the whole data path.
fn config(c: &mut lab::IpmpdConfig) {
    c.group_mut().xdp_echo = Some(false);
}

/// Starts ipmpd on `lab` with [`config`], binaries from `bin` (default: the build's) and pins
/// under `pin_dir`, and waits until every member is active.
fn start(lab: &Lab, bin: Option<&Path>, pin_dir: &Path) -> anyhow::Result<Daemon> {
    let mut c = lab.config();
    config(&mut c);
    let d = lab::start_ipmpd_pinned(lab, &c.to_toml(), bin, pin_dir)?;
    let names = lab.members();
    wait_for(&d, "every member active", Duration::from_secs(10), || {
        common::members(&d).is_ok_and(|ms| {
            names
                .iter()
                .all(|n| ms.iter().any(|m| &m.name == n && m.active))
        })
    })?;
    Ok(d)
}

/// Ping interval of the traffic check.
const PING_EVERY: Duration = Duration::from_millis(5);
/// How long a repair may take (the check runs every second).
const REPAIR_BOUND: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(10);

/// Waits until `ok` holds; returns how long that took, or fails with ipmpd's log.
fn wait_for(
    daemon: &Daemon,
    what: &str,
    timeout: Duration,
    ok: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    if !wait_until(timeout, POLL, ok) {
        bail!(
            "{what}: not within {timeout:?}; ipmpd log:\n{}",
            daemon.log()
        );
    }
    Ok(started.elapsed())
}

/// The names of the files under `dir` and `dir/links`, sorted (maps and link pins).
fn pins(dir: &Path) -> Vec<String> {
    let list = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|it| {
                it.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut all: Vec<String> = list(dir).into_iter().filter(|n| n != "links").collect();
    all.extend(
        list(&dir.join("links"))
            .into_iter()
            .map(|n| format!("links/{n}")),
    );
    all.sort();
    all
}

/// The id of the link pinned at `pin`.
fn link_id(pin: &Path) -> Option<u32> {
    let link =
        aya::programs::links::FdLink::from(aya::programs::links::PinnedLink::from_pin(pin).ok()?);
    link.info().ok().map(|i| i.id())
}

/// The ids of the links pinned under `dir/links`, by pin name.
fn link_ids(dir: &Path) -> Vec<(String, Option<u32>)> {
    pins(dir)
        .into_iter()
        .filter(|n| n.starts_with("links/"))
        .map(|n| {
            let id = link_id(&dir.join(&n));
            (n, id)
        })
        .collect()
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Pings the data address from `peer` for `secs` while `tamper` runs (it returns the time to
/// repair), then prints the scenario's figures: pings lost, the gap they make, the time to
/// repair and ipmpd's CPU time meanwhile. Returns the ping summary.
fn measured(
    d: &Daemon,
    peer: &Netns,
    scenario: &str,
    secs: u64,
    tamper: impl FnOnce() -> anyhow::Result<Duration>,
) -> anyhow::Result<lab::PingStats> {
    let pid = d.pid().context("ipmpd is not running")?;
    let cpu0 = cpu_seconds(pid)?;
    let (stats, repair) = ping_while(peer, DATA_V4, Duration::from_secs(secs), PING_EVERY, tamper)?;
    let repair = repair?;
    let cpu = cpu_seconds(pid)? - cpu0;
    println!(
        "{scenario}: pings lost {}/{} ({:.0} ms without traffic at one ping per {} ms), repaired in {} ms, ipmpd CPU {:.2} s",
        stats.lost(),
        stats.transmitted,
        stats.lost() as f64 * PING_EVERY.as_secs_f64() * 1000.0,
        PING_EVERY.as_millis(),
        repair.as_millis(),
        cpu
    );
    Ok(stats)
}

#[test]
fn removed_pins_are_put_back_and_traffic_never_stops() {
    if !lab::require_root("removed_pins_are_put_back_and_traffic_never_stops") {
        return;
    }
    let s = Setup::start(SPEC, config).unwrap();
    let (d, dir) = (&s.daemon, s.lab.pin_dir());
    let before = pins(&dir);
    let ids = link_ids(&dir);
    assert!(before.len() > 8, "maps and links pinned: {before:?}");
    let stats = measured(d, s.lab.peer(0), "pins removed", 3, || {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        assert!(pins(&dir).is_empty());
        wait_for(d, "every pin back", REPAIR_BOUND, || pins(&dir) == before)
    })
    .unwrap();
    // The same links, pinned again: nothing was detached or attached anew.
    assert_eq!(link_ids(&dir), ids);
    let log = d.log_synced();
    assert_eq!(
        count(&log, "pins were removed (by hand?): re-pinned"),
        1,
        "{log}"
    );
    // And nothing else was taken for tampering (routes, addresses, attachments).
    assert_eq!(count(&log, "(by hand?)"), 1, "{log}");
    // ipmpd held the links: the programs never left. 2 lost pings of slack for a loaded host.
    assert!(stats.transmitted > 300, "{stats:?}");
    assert!(stats.lost() <= 2, "{stats:?}");
    // The re-pinned maps are the live ones, holding the group.
    let maps = s.maps().unwrap();
    maps.group(s.group_ifindex().unwrap()).unwrap();
}

/// A bpffs this test mounted at a directory of its own; unmounted (lazily) and removed on drop.
struct OwnBpffs {
    at: PathBuf,
}

impl OwnBpffs {
    fn mount() -> anyhow::Result<Self> {
        let at = std::env::temp_dir().join(format!("ipmp-tamper-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&at)?;
        let me = Self { at };
        me.remount()?;
        Ok(me)
    }

    fn run(args: &[&str]) -> anyhow::Result<()> {
        let st = Command::new(args[0])
            .args(&args[1..])
            .status()
            .with_context(|| format!("run {args:?}"))?;
        if !st.success() {
            bail!("{args:?}: {st}");
        }
        Ok(())
    }

    fn remount(&self) -> anyhow::Result<()> {
        Self::run(&["mount", "-t", "bpf", "bpf", &self.at.to_string_lossy()])
    }

    fn umount(&self) -> anyhow::Result<()> {
        // Only ever this test's own mount point, never /sys/fs/bpf.
        assert!(!self.at.starts_with(lab::PIN_ROOT), "{}", self.at.display());
        Self::run(&["umount", &self.at.to_string_lossy()])
    }

    fn mounted(&self) -> bool {
        std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(&*self.at.to_string_lossy()))
        })
    }
}

impl Drop for OwnBpffs {
    fn drop(&mut self) {
        while self.mounted() {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
        let _ = std::fs::remove_dir(&self.at);
    }
}

#[test]
fn an_unmounted_bpffs_is_reported_and_pinned_again_once_back() {
    if !lab::require_root("an_unmounted_bpffs_is_reported_and_pinned_again_once_back") {
        return;
    }
    // Drop order: ipmpd, then the lab, then the mount.
    let fs = OwnBpffs::mount().unwrap();
    let lab = Lab::new(SPEC).unwrap();
    let dir = fs.at.join("ipmp");
    let d = start(&lab, None, &dir).unwrap();
    let before = pins(&dir);
    assert!(before.len() > 8, "{before:?}");
    let stats = measured(
        &d,
        lab.peer(0),
        "bpffs unmounted and mounted again",
        4,
        || {
            fs.umount().unwrap();
            let detected = wait_for(&d, "the unmount reported", REPAIR_BOUND, || {
                d.log().contains("cannot pin")
            })?;
            println!(
                "bpffs unmounted: reported after {} ms",
                detected.as_millis()
            );
            thread::sleep(Duration::from_millis(500));
            fs.remount().unwrap();
            wait_for(&d, "every pin back on the new bpffs", REPAIR_BOUND, || {
                pins(&dir) == before
            })
        },
    )
    .unwrap();
    let log = d.log_synced();
    assert_eq!(count(&log, "cannot pin"), 1, "reported once:\n{log}");
    assert_eq!(count(&log, "bpf filesystem is back: re-pinned"), 1, "{log}");
    assert!(stats.transmitted > 400, "{stats:?}");
    assert!(
        stats.lost() <= 2,
        "forwarding went on without pins: {stats:?}"
    );
    drop(d);
}

/// The default routes through `ipmp0` in `host`.
fn default_route_via_router(host: &Netns) -> bool {
    host.ip("route show default dev ipmp0")
        .is_ok_and(|r| r.contains(ROUTER_V4))
}

#[test]
fn a_deleted_ipmp_interface_is_created_again() {
    if !lab::require_root("a_deleted_ipmp_interface_is_created_again") {
        return;
    }
    let s = Setup::start(SPEC, config).unwrap();
    let (d, host) = (&s.daemon, s.lab.host());
    let old = host.link("ipmp0").unwrap().ifindex;
    assert!(default_route_via_router(host));
    let stats = measured(d, s.lab.peer(0), "IPMP interface deleted", 4, || {
        host.ip("link del ipmp0").unwrap();
        wait_for(
            d,
            "ipmp0 back with its address, route and program",
            REPAIR_BOUND,
            || {
                host.link("ipmp0").is_ok_and(|l| l.ifindex != old && l.up)
                    && host
                        .addrs("ipmp0")
                        .is_ok_and(|a| a.iter().any(|a| a.starts_with(DATA_V4)))
                    && default_route_via_router(host)
                    && common::tcx_programs(host, "ipmp0")
                        .is_ok_and(|(_, egress)| !egress.is_empty())
            },
        )
    })
    .unwrap();
    let log = d.log_synced();
    assert_eq!(
        count(&log, "IPMP interface ipmp0 created again"),
        1,
        "{log}"
    );
    // Traffic resumed: the last second of pings all answered, and the group is healthy.
    assert!(s.lab.peer(0).ping(DATA_V4, 100, PING_EVERY).unwrap().lost() <= 2);
    assert_eq!(d.ipmpstat(&["-gP", "-o", "state"]).unwrap().trim(), "ok");
    // The maps follow the new ifindex.
    let maps = s.maps().unwrap();
    let new = s.group_ifindex().unwrap();
    assert!(
        maps.group(new).is_ok(),
        "no group entry for the new ipmp0 ({new})"
    );
    assert!(
        maps.group(old).is_err(),
        "a stale group entry for the old ipmp0 ({old})"
    );
    assert!(
        stats.lost() * PING_EVERY.as_millis() as u64 <= 5000,
        "{stats:?}"
    );
}

/// `bpftool link detach pinned <pin>`: detaches a link from outside ipmpd.
fn detach_pinned(pin: &Path) {
    let st = Command::new("bpftool")
        .args(["link", "detach", "pinned"])
        .arg(pin)
        .status()
        .expect("run bpftool");
    assert!(
        st.success(),
        "bpftool link detach pinned {}: {st}",
        pin.display()
    );
}

/// The XDP program id netlink reports on `ifname` in `ns`, if any.
fn xdp_prog(ns: &Netns, ifname: &str) -> Option<u64> {
    let out = ns.run(&["ip", "-j", "link", "show", "dev", ifname]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v[0]["xdp"]["prog"]["id"].as_u64()
}

#[test]
fn detached_member_programs_are_attached_again() {
    if !lab::require_root("detached_member_programs_are_attached_again") {
        return;
    }
    let s = Setup::start(SPEC, |c| {
        config(c);
        c.group_mut().xdp_mode = Some("generic".into());
    })
    .unwrap();
    let (d, host, dir) = (&s.daemon, s.lab.host(), s.lab.pin_dir());
    // The member inbound traffic for the data address enters through.
    let m = common::bindings(d).unwrap()[DATA_V4].clone();
    let pin = |what: &str| dir.join("links").join(format!("{what}@{m}"));
    let (ingress, _) = common::tcx_programs(host, &m).unwrap();
    assert!(!ingress.is_empty());
    assert!(xdp_prog(host, &m).is_some(), "generic XDP on {m}");
    // TCX ingress: its link detached from outside through its pin.
    let scenario = format!("TCX ingress detached from {m}");
    measured(d, s.lab.peer(0), &scenario, 3, || {
        detach_pinned(&pin("tc_ingress"));
        wait_for(d, "tc_ingress attached again", REPAIR_BOUND, || {
            common::tcx_programs(host, &m).is_ok_and(|(i, _)| i == ingress)
        })
    })
    .unwrap();
    let log = d.log_synced();
    assert!(
        log.contains(&format!(
            "tc_ingress detached from {m} (by hand?): attached again"
        )),
        "{log}"
    );
    // Inbound through m is handed to ipmp0 by the program again (without it, the member's own
    // stack took the frames: the address is local, so pings were answered all the same).
    let maps = s.maps().unwrap();
    let slot = maps
        .member(host.link(&m).unwrap().ifindex)
        .unwrap()
        .stats_slot;
    let rx0 = maps.packets(slot, ipmp_common::Reason::RxToIpmp).unwrap();
    assert!(
        s.lab.peer(0).ping(DATA_V4, 100, PING_EVERY).unwrap().lost() <= 2,
        "inbound through {m} resumed"
    );
    let rx = maps.packets(slot, ipmp_common::Reason::RxToIpmp).unwrap() - rx0;
    println!("after the repair: {rx} of 100 echo requests handed from {m} to ipmp0 by tc_ingress");
    assert!(rx >= 98, "{rx}");

    // XDP: `ip link set dev m xdp off` is refused while a bpf_link holds the hook (the kernel
    // protects link attachments); detaching the link is the way from outside.
    let off = host
        .run_status(&["ip", "link", "set", "dev", &m, "xdpgeneric", "off"])
        .unwrap();
    println!(
        "ip link set dev {m} xdpgeneric off: {}, {}",
        off.status,
        String::from_utf8_lossy(&off.stderr).trim()
    );
    let before = xdp_prog(host, &m);
    let scenario = format!("XDP detached from {m}");
    measured(d, s.lab.peer(0), &scenario, 3, || {
        // An older kernel may let `ip` detach it: ipmpd must repair that too.
        if !off.status.success() {
            detach_pinned(&pin("xdp"));
        }
        wait_for(d, "XDP attached again", REPAIR_BOUND, || {
            xdp_prog(host, &m).is_some() && d.log().contains(&format!("xdp detached from {m}"))
        })
    })
    .unwrap();
    assert_eq!(
        xdp_prog(host, &m),
        before,
        "the same program attached again"
    );
    assert!(s.lab.peer(0).ping(DATA_V4, 100, PING_EVERY).unwrap().lost() <= 2);
    assert_eq!(d.ipmpstat(&["-gP", "-o", "state"]).unwrap().trim(), "ok");
}

/// The unit's `CapabilityBoundingSet=` as a setpriv list: `-all,+bpf,+perfmon,...`.
fn unit_capabilities() -> String {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/ipmpd.service");
    let text = std::fs::read_to_string(&unit).expect("read dist/ipmpd.service");
    let caps = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet= in the unit");
    caps.split_whitespace()
        .fold(String::from("-all"), |list, cap| {
            format!("{list},+{}", cap.trim_start_matches("CAP_").to_lowercase())
        })
}

#[test]
fn under_the_units_capabilities_the_check_repairs_and_touches_nothing_intact() {
    if !lab::require_root(
        "under_the_units_capabilities_the_check_repairs_and_touches_nothing_intact",
    ) {
        return;
    }
    let lab = Lab::new(SPEC).unwrap();
    // ipmpd run as the unit runs it (only its capabilities, no new privileges): a bin dir whose
    // ipmpd execs the real one under setpriv; ipmpstat and ipmpadm are the real ones.
    let bin = lab.work_dir().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = |name: &str| lab::bin_path(name);
    std::fs::write(
        bin.join("ipmpd"),
        format!(
            "#!/bin/sh\nexec setpriv --bounding-set {} --no-new-privs -- {} \"$@\"\n",
            unit_capabilities(),
            real("ipmpd").display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(bin.join("ipmpd")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(bin.join("ipmpd"), perms).unwrap();
    for tool in ["ipmpstat", "ipmpadm"] {
        std::os::unix::fs::symlink(real(tool), bin.join(tool)).unwrap();
    }
    let d = start(&lab, Some(&bin), &lab.pin_dir()).unwrap();
    let caps = std::fs::read_to_string(format!("/proc/{}/status", d.pid().unwrap())).unwrap();
    println!(
        "ipmpd runs with {}",
        caps.lines()
            .find(|l| l.starts_with("CapBnd"))
            .unwrap_or("?")
    );
    let dir = lab.pin_dir();
    let ids = link_ids(&dir);
    // Three checks on an intact data plane: nothing repaired, nothing attached anew.
    thread::sleep(Duration::from_secs(3));
    let log = d.log_synced();
    assert_eq!(count(&log, "(by hand?)"), 0, "{log}");
    assert_eq!(count(&log, "repair failed"), 0, "{log}");
    assert_eq!(link_ids(&dir), ids);
    // And a repair still works with these capabilities.
    let stats = measured(
        &d,
        lab.peer(0),
        "pins removed, unit's capabilities",
        3,
        || {
            std::fs::remove_dir_all(dir.join("links")).unwrap();
            wait_for(&d, "every link pin back", REPAIR_BOUND, || {
                link_ids(&dir) == ids
            })
        },
    )
    .unwrap();
    assert!(stats.lost() <= 2, "{stats:?}");
}
