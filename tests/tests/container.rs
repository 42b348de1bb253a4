//! ipmpd run the way `dist/kubernetes/ipmpd-daemonset.yaml` runs it, as far as a lab can: the
//! container's command line (read from the manifest), only the capabilities the manifest adds,
//! no new privileges, and the view of the kernel's tunables an unprivileged container has —
//! `/proc/sys` read-only, the host's `/proc/sys/net` mounted writable where the manifest mounts
//! it. Without `--proc-sys-net` the same ipmpd stops at start-up and says what to do.
#![expect(
    clippy::unwrap_used,
    reason = "the scenario helpers below fail their test on any lab error, with the error"
)]

pub mod common;

use std::{fs, path::Path, time::Duration};

use ipmp_tests::lab::{self, DATA_V4, Lab, LabSpec, require_root, start_ipmpd_wrapped, wait_until};

const SPEC: LabSpec = LabSpec {
    members: 2,
    peers: 1,
    router: false,
};

/// `sh -ec CONTAINER container CAPS SYSDIR IPMPD ARGS...` in a new mount namespace: the
/// host's /proc/sys/net bound writable at SYSDIR (the manifest's hostPath volume), then
/// /proc/sys read-only (what container runtimes do without `privileged`), then ipmpd with
/// only CAPS and no new privileges (`allowPrivilegeEscalation: false`).
const CONTAINER: &str = r#"
caps=$1; sysdir=$2; shift 2
mkdir -p "$sysdir"
mount --bind /proc/sys/net "$sysdir"
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
exec setpriv --bounding-set "$caps" --no-new-privs -- "$@"
"#;

/// What the manifest's container runs: its arguments after the binary, its added
/// capabilities (setpriv's `-all,+bpf,...`), and the directory it names with --proc-sys-net.
struct Container {
    args: Vec<String>,
    caps: String,
    sysctl_dir: String,
}

fn container() -> Container {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/kubernetes/ipmpd-daemonset.yaml");
    let docs =
        yaml_rust2::YamlLoader::load_from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    let ds = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .unwrap();
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let strs = |v: &yaml_rust2::Yaml| -> Vec<String> {
        v.as_vec()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let command = strs(&c["command"]);
    assert!(command[0].ends_with("/ipmpd"), "{command:?}");
    let args = command[1..].to_vec();
    let sysctl_dir = args
        .iter()
        .position(|a| a == "--proc-sys-net")
        .map(|i| args[i + 1].clone())
        .expect("the manifest's ipmpd has --proc-sys-net");
    let caps = common::setpriv_caps(
        strs(&c["securityContext"]["capabilities"]["add"])
            .iter()
            .map(String::as_str),
    );
    Container {
        args,
        caps,
        sysctl_dir,
    }
}

/// The container's arguments for the lab: its own config and pin dir come from the lab (the
/// manifest's `--config` is dropped), its --proc-sys-net directory is `sysctl_dir` (or gone).
fn lab_args(c: &Container, sysctl_dir: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = c.args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "--pin-dir" => {
                args.next();
            }
            "--proc-sys-net" => {
                args.next();
                if let Some(dir) = sysctl_dir {
                    out.extend(["--proc-sys-net".to_owned(), dir.to_owned()]);
                }
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

fn start(lab: &Lab, c: &Container, sysctl_dir: Option<&str>) -> anyhow::Result<lab::Daemon> {
    // The manifest's directory, under the lab's work dir (the test's mount namespace is
    // private, but the directory itself must not be the host's).
    let bind = lab
        .work_dir()
        .join(c.sysctl_dir.trim_start_matches('/'))
        .to_string_lossy()
        .into_owned();
    let mut wrapper = common::PRIVATE_MOUNTS.to_vec();
    wrapper.extend(["sh", "-ec", CONTAINER, "container", &c.caps, &bind]);
    let extra = lab_args(c, sysctl_dir.map(|_| bind.as_str()));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    start_ipmpd_wrapped(
        lab,
        &lab.config().to_toml(),
        None,
        &lab.pin_dir(),
        &wrapper,
        &extra,
    )
}

#[test]
fn ipmpd_runs_as_the_daemonset_runs_it() {
    if !require_root("ipmpd_runs_as_the_daemonset_runs_it") {
        return;
    }
    let c = container();

    // Without a writable sysctl directory: a clear stop at start-up, naming the way out.
    let lab = Lab::new(SPEC).expect("lab");
    let refused = start(&lab, &c, None)
        .err()
        .expect("ipmpd started with /proc/sys read-only");
    let why = format!("{refused:#}");
    assert!(
        why.contains("Read-only file system") && why.contains("--proc-sys-net"),
        "{why}"
    );
    drop(lab);

    let lab = Lab::new(SPEC).expect("lab");
    let d = start(&lab, &c, Some(&c.sysctl_dir)).expect("ipmpd in the container's view");
    let h = lab.host();
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            d.ipmpstat(&["-gPo", "state"])
                .is_ok_and(|s| s.trim() == "ok")
        }),
        "group not ok: {:?}\n{}",
        d.ipmpstat(&["-g"]),
        d.log()
    );
    // Written through the bound directory, seen in the namespace's own /proc/sys.
    for m in ["m0", "m1"] {
        assert_eq!(
            h.sysctl_get(&format!("net.ipv4.conf.{m}.arp_ignore"))
                .unwrap(),
            "1"
        );
        assert_eq!(
            h.sysctl_get(&format!("net.ipv4.conf.{m}.arp_announce"))
                .unwrap(),
            "2"
        );
    }
    assert_eq!(h.sysctl_get("net.ipv4.conf.ipmp0.forwarding").unwrap(), "1");
    let ping = lab
        .peer(0)
        .ping(DATA_V4, 5, Duration::from_millis(50))
        .unwrap();
    assert_eq!(ping.lost(), 0, "{ping:?}\n{}", d.log());
    for m in ["m0", "m1"] {
        let row = common::member(&d, m);
        assert!(row.active && row.state == "ok", "{m}: {row:?}");
    }
}
