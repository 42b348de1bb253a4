//! The Debian package: `xtask deb` packages the built binaries (those of IPMP_BIN_DIR, so no
//! release build here; `cargo xtask deb` alone builds release), dpkg installs the package into
//! a scratch root, and the installed ipmpd runs from there: `--version` and `--check` of the
//! installed example configuration and of the DaemonSet's ConfigMap. The files the package
//! promises must be where dpkg put them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use ipmp_tests::lab;

/// Runs `cmd`, panicking with its output unless it succeeds; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An empty dpkg database under `root`, enough for `dpkg --root`.
fn scratch_root(root: &Path) -> std::io::Result<()> {
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        fs::create_dir_all(root.join(dir))?;
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        fs::write(root.join(file), "")?;
    }
    Ok(())
}

#[test]
fn deb_installs_into_a_scratch_root_and_ipmpd_runs_from_there() {
    if !lab::require_root("deb_installs_into_a_scratch_root_and_ipmpd_runs_from_there") {
        return;
    }
    let bin_dir = lab::bin_path("ipmpd").parent().unwrap().to_path_buf();
    let work = std::env::temp_dir().join(format!("ipmp-package-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let out = work.join("out");
    let root = work.join("root");
    scratch_root(&root).unwrap();

    let printed = run(Command::new(bin_dir.join("xtask"))
        .args(["deb", "--bin-dir"])
        .arg(&bin_dir)
        .arg("--out")
        .arg(&out));
    let deb = PathBuf::from(printed.lines().last().unwrap().trim());
    assert!(deb.is_file(), "xtask deb printed {printed:?}");
    let control = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    for wanted in ["Package: ipmp\n", "Depends: libc6 (>= 2.", "Maintainer: "] {
        assert!(
            control.contains(wanted),
            "control lacks {wanted:?}:\n{control}"
        );
    }

    // --force-depends: the scratch root has no libc6 package, the host's libc runs the binary.
    // --force-script-chrootless and --force-not-root keep dpkg from needing a usable system
    // inside the scratch root (the package has no maintainer scripts).
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-depends",
            "--force-script-chrootless",
            "--force-not-root",
            "--install",
        ])
        .arg(&deb));

    let installed = [
        "usr/sbin/ipmpd",
        "usr/sbin/ipmpstat",
        "usr/sbin/ipmpadm",
        "lib/systemd/system/ipmpd.service",
        "etc/ipmp/ipmpd.toml",
        "usr/share/man/man8/ipmpd.8.gz",
        "usr/share/man/man8/ipmpstat.8.gz",
        "usr/share/man/man8/ipmpadm.8.gz",
        "usr/share/man/man5/ipmpd.toml.5.gz",
        "usr/share/bash-completion/completions/ipmpd",
        "usr/share/bash-completion/completions/ipmpstat",
        "usr/share/bash-completion/completions/ipmpadm",
        "usr/share/zsh/vendor-completions/_ipmpd",
        "usr/share/zsh/vendor-completions/_ipmpstat",
        "usr/share/zsh/vendor-completions/_ipmpadm",
        "usr/share/fish/vendor_completions.d/ipmpd.fish",
        "usr/share/fish/vendor_completions.d/ipmpstat.fish",
        "usr/share/fish/vendor_completions.d/ipmpadm.fish",
        "usr/share/doc/ipmp/copyright",
    ];
    let listed = run(Command::new("dpkg-query")
        .arg(format!("--root={}", root.display()))
        .args(["--listfiles", "ipmp"]));
    for path in installed {
        assert!(root.join(path).is_file(), "{path} is not installed");
        assert!(
            listed.lines().any(|l| l == format!("/{path}")),
            "dpkg does not list /{path}"
        );
    }
    let conffiles = run(Command::new("dpkg-query")
        .arg(format!("--root={}", root.display()))
        .args(["--showformat=${Conffiles}", "--show", "ipmp"]));
    assert!(
        conffiles.contains("/etc/ipmp/ipmpd.toml "),
        "conffiles: {conffiles:?}"
    );
    let unit = fs::read_to_string(root.join("lib/systemd/system/ipmpd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/ipmpd "), "{unit}");
    assert!(!unit.contains("/usr/local"), "{unit}");

    let ipmpd = root.join("usr/sbin/ipmpd");
    let version = run(Command::new(&ipmpd).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("ipmpd {}", env!("CARGO_PKG_VERSION"))
    );
    let config = root.join("etc/ipmp/ipmpd.toml");
    let checked = run(Command::new(&ipmpd)
        .arg("--check")
        .arg("--config")
        .arg(&config));
    assert_eq!(checked.trim(), format!("{}: ok", config.display()));
    // The configuration the DaemonSet ships in its ConfigMap is valid too.
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/kubernetes/ipmpd-daemonset.yaml");
    let docs =
        yaml_rust2::YamlLoader::load_from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    let map = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ConfigMap"))
        .unwrap();
    let from_map = root.join("etc/ipmp/configmap.toml");
    fs::write(&from_map, map["data"]["ipmpd.toml"].as_str().unwrap()).unwrap();
    let checked = run(Command::new(&ipmpd)
        .arg("--check")
        .arg("--config")
        .arg(&from_map));
    assert_eq!(checked.trim(), format!("{}: ok", from_map.display()));
    // --check really reads the file: a broken one fails.
    fs::write(&config, "failback = maybe\n").unwrap();
    let st = Command::new(&ipmpd)
        .arg("--check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        !st.status.success(),
        "--check passed a broken configuration"
    );

    fs::remove_dir_all(&work).unwrap();
}
