//! Bad input: each case makes ipmpd exit non-zero with a one-line error that names
//! the problem, and leaves nothing behind: the host namespace's links, addresses and member
//! sysctls are as before, no XDP or TCX program is attached to a member, and the pin directory
//! holds no pins. ipmpd runs in the lab's host namespace, started directly (not through
//! `Lab::start_ipmpd`, which expects it to come up).

pub mod common;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use ipmp_tests::lab::{self, Lab, LabSpec};

const SPEC: LabSpec = LabSpec {
    members: 2,
    peers: 0,
    router: false,
};

/// How long a rejected ipmpd may take; one still running after this accepted the input.
const EXIT_WITHIN: Duration = Duration::from_secs(15);

/// What one ipmpd run printed and how it ended.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn read_all(mut r: impl std::io::Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Kills a child that outlived the bound (the test then fails) and reaps it.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `[wrapper...] ipmpd --config CONFIG --pin-dir PINS` in the lab's host namespace with
/// tracing at its default level (RUST_LOG unset), as a user would start it.
fn run_ipmpd(lab: &Lab, wrapper: &[&str], config: &Path, pins: &Path) -> Run {
    let ipmpd = lab::bin_path("ipmpd");
    assert!(
        ipmpd.is_file(),
        "{} missing: cargo build --bins",
        ipmpd.display()
    );
    let (ipmpd, config, pins) = (
        ipmpd.to_string_lossy().into_owned(),
        config.to_string_lossy().into_owned(),
        pins.to_string_lossy().into_owned(),
    );
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.extend([ipmpd.as_str(), "--config", &config, "--pin-dir", &pins]);
    let mut child = lab
        .host()
        .command(&argv)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ipmpd");
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + EXIT_WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ipmpd") {
            break status;
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            panic!(
                "ipmpd `{}` accepted the bad input: still running after {EXIT_WITHIN:?}; stderr:\n{}",
                argv.join(" "),
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Exit status non-zero (not a signal), nothing on stdout, exactly one line on stderr that
/// starts with `ipmpd:` and contains every needle.
fn assert_rejected(case: &str, run: &Run, needles: &[&str]) {
    println!(
        "{case}: exit {:?}, stderr: {}",
        run.code,
        run.stderr.trim_end()
    );
    assert!(
        matches!(run.code, Some(c) if c != 0),
        "{case}: ipmpd must exit non-zero: {run:?}"
    );
    assert!(
        run.stdout.trim().is_empty(),
        "{case}: nothing on stdout: {run:?}"
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{case}: the error must be one line, got {}:\n{}",
        lines.len(),
        run.stderr
    );
    assert!(
        lines[0].starts_with("ipmpd: "),
        "{case}: {:?} does not start with `ipmpd: `",
        lines[0]
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{case}: the error {:?} does not name {needle:?}",
            lines[0]
        );
    }
}

/// Every file and directory under `dir` (relative paths); None when `dir` does not exist.
fn tree(dir: &Path) -> Option<Vec<PathBuf>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    if !dir.exists() {
        return None;
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    Some(out)
}

/// What ipmpd could have changed in the host namespace and under the pin directories.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    /// Link name → (flags, controller).
    links: BTreeMap<String, (Vec<String>, Option<String>)>,
    /// Link name → addresses.
    addrs: BTreeMap<String, Vec<String>>,
    /// Member → its XDP attachment as `ip -d link` prints it (null when none).
    xdp: BTreeMap<String, String>,
    /// Member → TCX program ids (ingress, egress).
    tcx: BTreeMap<String, (Vec<u32>, Vec<u32>)>,
    /// Member sysctls ipmpd sets.
    sysctls: BTreeMap<String, String>,
    /// Pin directory → its contents.
    pins: BTreeMap<PathBuf, Option<Vec<PathBuf>>>,
}

fn host_state(lab: &Lab, pin_dirs: &[&Path]) -> anyhow::Result<HostState> {
    let host = lab.host();
    let v: serde_json::Value =
        serde_json::from_str(&host.run(&["ip", "-j", "-d", "link", "show"])?)?;
    let mut state = HostState {
        links: BTreeMap::new(),
        addrs: BTreeMap::new(),
        xdp: BTreeMap::new(),
        tcx: BTreeMap::new(),
        sysctls: BTreeMap::new(),
        pins: BTreeMap::new(),
    };
    for link in v.as_array().ok_or_else(|| anyhow!("ip -j link: {v}"))? {
        let name = link["ifname"]
            .as_str()
            .ok_or_else(|| anyhow!("link without a name: {link}"))?
            .to_owned();
        let flags = link["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect();
        let master = link["master"].as_str().map(str::to_owned);
        state.addrs.insert(name.clone(), host.addrs(&name)?);
        if lab.members().contains(&name) {
            state.xdp.insert(name.clone(), link["xdp"].to_string());
            state
                .tcx
                .insert(name.clone(), common::tcx_programs(host, &name)?);
            for key in ["arp_ignore", "arp_announce", "rp_filter"] {
                let key = format!("net.ipv4.conf.{name}.{key}");
                let value = host.sysctl_get(&key)?;
                state.sysctls.insert(key, value);
            }
        }
        state.links.insert(name, (flags, master));
    }
    for dir in pin_dirs {
        state.pins.insert(dir.to_path_buf(), tree(dir));
    }
    Ok(state)
}

/// A lab whose members carry nothing yet (the starting point of most cases).
fn clean_lab() -> Lab {
    let lab = Lab::new(SPEC).expect("build the lab");
    let state = host_state(&lab, &[&lab.pin_dir()]).expect("read the host state");
    for (m, xdp) in &state.xdp {
        assert_eq!(xdp, "null", "{m} has XDP before ipmpd ran");
    }
    for (m, tcx) in &state.tcx {
        assert_eq!(
            tcx,
            &(vec![], vec![]),
            "{m} has TCX programs before ipmpd ran"
        );
    }
    assert_eq!(
        state.pins[&lab.pin_dir()],
        Some(vec![]),
        "pin dir not empty"
    );
    lab
}

fn write_config(lab: &Lab, name: &str, text: &str) -> PathBuf {
    let path = lab.work_dir().join(name);
    fs::write(&path, text).expect("write the config");
    path
}

/// Runs ipmpd on `config` with the lab's pin dir, checks the message and that nothing changed.
fn expect_rejected(lab: &Lab, case: &str, wrapper: &[&str], config: &Path, needles: &[&str]) {
    let pins = lab.pin_dir();
    let before = host_state(lab, &[&pins]).expect("read the host state");
    let run = run_ipmpd(lab, wrapper, config, &pins);
    assert_rejected(case, &run, needles);
    let after = host_state(lab, &[&pins]).expect("read the host state");
    assert_eq!(before, after, "{case}: ipmpd left something behind");
}

fn default_toml(lab: &Lab) -> String {
    lab.config().to_toml()
}

#[test]
fn invalid_config_syntax_is_rejected() {
    if !lab::require_root("invalid_config_syntax_is_rejected") {
        return;
    }
    let lab = clean_lab();
    let good = default_toml(&lab);
    let line = good
        .lines()
        .position(|l| l.starts_with("failback"))
        .expect("failback line")
        + 1;
    let bad = good.replace("failback = true", "failback = tru");
    let config = write_config(&lab, "syntax.toml", &bad);
    let config_s = config.to_string_lossy().into_owned();
    expect_rejected(
        &lab,
        "invalid boolean",
        &[],
        &config,
        &[&config_s, &format!("line {line}"), "boolean"],
    );
    let bad = good.replacen("[[group]]", "[[group]", 1);
    let config = write_config(&lab, "syntax2.toml", &bad);
    let config_s = config.to_string_lossy().into_owned();
    expect_rejected(
        &lab,
        "unclosed table header",
        &[],
        &config,
        &[&config_s, "line"],
    );
}

/// A change that breaks a valid config.
type Edit = Box<dyn Fn(&mut lab::IpmpdConfig)>;

#[test]
fn config_that_breaks_the_rules_is_rejected() {
    if !lab::require_root("config_that_breaks_the_rules_is_rejected") {
        return;
    }
    let lab = clean_lab();
    let cases: [(&str, Edit, &[&str]); 3] = [
        (
            "member listed twice",
            Box::new(|c| c.group_mut().member[1].name = "m0".into()),
            &["member `m0`", "already used"],
        ),
        (
            "announce count out of range",
            Box::new(|c| c.group_mut().announce.count = 1000),
            &["announce.count", "1000"],
        ),
        (
            "prefix longer than the address",
            Box::new(|c| c.group_mut().data_addresses[0] = format!("{}/33", lab::DATA_V4)),
            &["198.51.100.10/33", "32"],
        ),
    ];
    for (i, (case, edit, needles)) in cases.iter().enumerate() {
        let mut cfg = lab.config();
        edit(&mut cfg);
        let config = write_config(&lab, &format!("rules{i}.toml"), &cfg.to_toml());
        let config_s = config.to_string_lossy().into_owned();
        let mut needles = needles.to_vec();
        needles.push(&config_s);
        expect_rejected(&lab, case, &[], &config, &needles);
    }
}

#[test]
fn unknown_interface_is_rejected() {
    if !lab::require_root("unknown_interface_is_rejected") {
        return;
    }
    let lab = clean_lab();
    let mut cfg = lab.config();
    cfg.group_mut().member[1].name = "m9".into();
    let config = write_config(&lab, "unknown.toml", &cfg.to_toml());
    expect_rejected(
        &lab,
        "unknown interface",
        &[],
        &config,
        &["m9", "does not exist"],
    );
}

#[test]
fn member_that_is_a_bridge_port_is_rejected() {
    if !lab::require_root("member_that_is_a_bridge_port_is_rejected") {
        return;
    }
    let lab = clean_lab();
    lab.host().ip("link add brx type bridge").unwrap();
    lab.host().ip("link set m1 master brx").unwrap();
    let config = write_config(&lab, "bridge.toml", &default_toml(&lab));
    expect_rejected(
        &lab,
        "bridge port",
        &[],
        &config,
        &["m1", "already in a group", "brx"],
    );
    let (_, master) = &host_state(&lab, &[]).unwrap().links["m1"];
    assert_eq!(master.as_deref(), Some("brx"), "m1 is still a port of brx");
}

#[test]
fn member_of_another_running_ipmpd_is_rejected() {
    if !lab::require_root("member_of_another_running_ipmpd_is_rejected") {
        return;
    }
    let lab = clean_lab();
    // ipmpd A owns m0 and m1 (lab pin dir and socket).
    let a = lab.start_ipmpd(&default_toml(&lab)).unwrap();
    // ipmpd B wants m1 for another group, with its own pin dir and socket.
    let b_pins = PathBuf::from(format!("{}-b", lab.pin_dir().display()));
    let mut cfg = lab.config();
    cfg.control_socket = lab.work_dir().join("b.sock").to_string_lossy().into_owned();
    let group = cfg.group_mut();
    group.name = "ipmp1".into();
    group.data_addresses = vec!["198.51.100.20/24".into()];
    group.member.retain(|m| m.name == "m1");
    let config = write_config(&lab, "b.toml", &cfg.to_toml());

    let before = host_state(&lab, &[&lab.pin_dir(), &b_pins]).unwrap();
    assert!(
        !before.tcx["m1"].0.is_empty(),
        "A attached its TC ingress program to m1"
    );
    let run = run_ipmpd(&lab, &[], &config, &b_pins);
    assert_rejected(
        "member of another ipmpd",
        &run,
        &["m1", "already in a group"],
    );
    let after = host_state(&lab, &[&lab.pin_dir(), &b_pins]).unwrap();
    let _ = fs::remove_dir_all(&b_pins);
    assert_eq!(
        before, after,
        "ipmpd B left something behind or changed A's setup"
    );
    assert_eq!(after.pins[&b_pins], None, "B created its pin dir");
    assert!(!after.links.contains_key("ipmp1"));
    // A is unharmed and still answers.
    let out = a.ipmpstat(&["-i"]).unwrap();
    assert!(out.contains("m1"), "{out}");
    assert!(lab.host().link("ipmp0").unwrap().up);
}

#[test]
fn data_address_in_use_is_rejected() {
    if !lab::require_root("data_address_in_use_is_rejected") {
        return;
    }
    let lab = clean_lab();
    let config = write_config(&lab, "inuse.toml", &default_toml(&lab));
    for (addr, cmd, member) in [
        (
            lab::DATA_V4,
            format!("addr add {}/{} dev m0", lab::DATA_V4, lab::LAN_PREFIX_V4),
            "m0",
        ),
        (
            lab::DATA_V6,
            format!(
                "-6 addr add {}/{} dev m1 nodad",
                lab::DATA_V6,
                lab::LAN_PREFIX_V6
            ),
            "m1",
        ),
    ] {
        lab.host().ip(&cmd).unwrap();
        expect_rejected(
            &lab,
            &format!("{addr} in use"),
            &[],
            &config,
            &[addr, "in use", member],
        );
        assert!(
            lab.host()
                .addrs(member)
                .unwrap()
                .iter()
                .any(|a| a.starts_with(addr)),
            "{addr} is still on {member}"
        );
        lab.host().ip(&cmd.replace(" add ", " del ")).unwrap();
    }
}

#[test]
fn not_root_is_rejected() {
    if !lab::require_root("not_root_is_rejected") {
        return;
    }
    let lab = clean_lab();
    let config = write_config(&lab, "user.toml", &default_toml(&lab));
    // The config must be readable by nobody, so that the check is about privilege.
    let readable = lab
        .host()
        .run_status(&[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "cat",
            &config.to_string_lossy(),
        ])
        .unwrap();
    assert!(readable.status.success(), "{readable:?}");
    expect_rejected(
        &lab,
        "not root",
        &[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ],
        &config,
        &["root"],
    );
}

#[test]
fn pin_dir_outside_bpffs_is_rejected() {
    if !lab::require_root("pin_dir_outside_bpffs_is_rejected") {
        return;
    }
    let lab = clean_lab();
    let fs_type = |p: &str| {
        lab.host()
            .run(&["stat", "-f", "-c", "%T", p])
            .unwrap()
            .trim()
            .to_owned()
    };
    // /dev/shm is a tmpfs; fall back to the work dir (never bpffs either).
    let base = if fs_type("/dev/shm") == "tmpfs" {
        PathBuf::from(format!(
            "/dev/shm/ipmp-{}",
            lab.prefix().trim_end_matches('-')
        ))
    } else {
        lab.work_dir().join("notbpf")
    };
    fs::create_dir_all(&base).unwrap();
    assert_ne!(fs_type(&base.to_string_lossy()), "bpf_fs");
    let pins = base.join("pins");
    let config = write_config(&lab, "tmpfs.toml", &default_toml(&lab));
    let before = host_state(&lab, &[&lab.pin_dir(), &pins]).unwrap();
    let run = run_ipmpd(&lab, &[], &config, &pins);
    let after = host_state(&lab, &[&lab.pin_dir(), &pins]).unwrap();
    let _ = fs::remove_dir_all(&base);
    assert_rejected(
        "pin dir on tmpfs",
        &run,
        &[&base.to_string_lossy(), "bpf filesystem"],
    );
    assert_eq!(before, after, "ipmpd left something behind");
    assert_eq!(after.pins[&pins], None, "ipmpd created {}", pins.display());
}
