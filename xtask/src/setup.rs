//! `cargo xtask setup`: installs what the build and the tests need on Debian 12. Idempotent and
//! quick when nothing is missing: every step checks first and prints one line.

use std::{
    env,
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, anyhow, bail};

/// Debian packages for the tests (the lab and its traffic) and for building bpf-linker
/// (plus llvm-N-dev and libpolly-N-dev for the nightly's LLVM major N).
const PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "tcpdump",
    "iputils-ping",
    "arping",
    "bpftool",
    "ethtool",
    "iperf3",
    "curl",       // scrapes ipmpd's metrics endpoint in the tests
    "util-linux", // nsenter; setpriv and unshare for the service test
    "procps",     // sysctl
    "systemd",    // systemd-analyze: the service tests check dist/ipmpd.service
    "gcc",
    "binutils", // strip, objdump (cargo xtask deb)
    "libc6-dev",
    "libzstd-dev",
    "zlib1g-dev",
];

const BPFFS: &str = "/sys/fs/bpf";

fn step(status: &str, what: &str) {
    println!("setup: [{status:^9}] {what}");
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub(crate) fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    let start = Instant::now();
    ensure_nightly()?;
    let llvm = nightly_llvm_major()?;
    ensure_packages(llvm)?;
    ensure_bpf_linker(llvm)?;
    ensure_bpffs()?;
    println!("setup: done in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn ensure_nightly() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).map_err(|e| {
        anyhow!("{e:#}\nrustup is needed (the eBPF build uses the nightly toolchain): install it from https://rustup.rs")
    })?;
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        step("ok", "rustup toolchain nightly");
    } else {
        step("install", "rustup toolchain nightly (with rust-src)");
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if components
        .lines()
        .any(|l| l.trim() == "rust-src" || l.starts_with("rust-src"))
    {
        step("ok", "nightly component rust-src");
    } else {
        step("install", "nightly component rust-src");
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// The LLVM major of the nightly rustc (`LLVM version: 22.1.4` in `rustc -vV`).
fn nightly_llvm_major() -> anyhow::Result<u32> {
    let vv = output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    let major = parse_llvm_major(&vv)
        .ok_or_else(|| anyhow!("`rustup run nightly rustc -vV` names no LLVM version:\n{vv}"))?;
    step("ok", &format!("nightly rustc uses LLVM {major}"));
    Ok(major)
}

pub(crate) fn parse_llvm_major(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let rest = &l[l.find("LLVM")? + 4..];
        let rest = rest.trim_start_matches(|c: char| !c.is_ascii_digit());
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

fn installed_packages(pkgs: &[String]) -> anyhow::Result<Vec<String>> {
    // dpkg-query exits 1 when a package is unknown; its stdout still lists the known ones.
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package} ${db:Status-Abbrev}\n")
        .args(pkgs)
        .stderr(Stdio::null())
        .output()
        .context("cannot run dpkg-query: is this Debian?")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (name, st) = (f.next()?, f.next()?);
            st.starts_with("ii")
                .then(|| name.split(':').next().unwrap_or(name).to_owned())
        })
        .collect())
}

fn ensure_packages(llvm: u32) -> anyhow::Result<()> {
    let mut pkgs: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    let llvm_dev = format!("llvm-{llvm}-dev");
    pkgs.push(llvm_dev.clone());
    pkgs.push(format!("libpolly-{llvm}-dev"));
    let installed = installed_packages(&pkgs)?;
    let missing: Vec<String> = pkgs
        .iter()
        .filter(|p| !installed.contains(p))
        .cloned()
        .collect();
    if missing.is_empty() {
        step("ok", &format!("{} Debian packages present", pkgs.len()));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run `cargo xtask setup` as root",
            missing.join(" ")
        );
    }
    step(
        "install",
        &format!("Debian packages: {}", missing.join(" ")),
    );
    status(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if missing.contains(&llvm_dev) {
        let policy = output(Command::new("apt-cache").args(["policy", &llvm_dev]))?;
        if apt_candidate(&policy).is_none() {
            bail!(
                "the nightly toolchain uses LLVM {llvm} but apt has no {llvm_dev} \
                 (bpf-linker must be built against the same LLVM major): enable a source that \
                 has it (Debian 12: bookworm-security or apt.llvm.org) or pin a nightly whose \
                 LLVM Debian ships"
            );
        }
    }
    let mut apt = Command::new("apt-get");
    apt.args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    status(&mut apt)?;
    Ok(())
}

/// The version apt would install, from `apt-cache policy PKG` (empty for unknown packages).
pub(crate) fn apt_candidate(policy: &str) -> Option<&str> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:").map(str::trim))
        .filter(|c| *c != "(none)")
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// The LLVM major an installed bpf-linker was built against: from `--version` when it says,
/// else from the `llvm-N` feature cargo recorded when installing it, else from the libLLVM it
/// links. None when bpf-linker is not installed.
fn bpf_linker_llvm() -> Option<Option<u32>> {
    let out = Command::new("bpf-linker").arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some(major) = parse_llvm_major(&version) {
        return Some(Some(major));
    }
    let from_crates2 = std::fs::read_to_string(cargo_home().join(".crates2.json"))
        .ok()
        .and_then(|text| llvm_feature_from_crates2(&text));
    if from_crates2.is_some() {
        return Some(from_crates2);
    }
    let path = output(Command::new("sh").args(["-c", "command -v bpf-linker"])).ok()?;
    let ldd = output(Command::new("ldd").arg(path.trim())).ok()?;
    Some(parse_libllvm(&ldd))
}

/// `llvm-N` among the features of the bpf-linker entry of cargo's `.crates2.json`.
pub(crate) fn llvm_feature_from_crates2(text: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let installs = v.get("installs")?.as_object()?;
    let (_, entry) = installs
        .iter()
        .find(|(k, _)| k.starts_with("bpf-linker "))?;
    entry
        .get("features")?
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str()?.strip_prefix("llvm-")?.parse().ok())
        .next()
}

/// `libLLVM.so.22.1` / `libLLVM-22.so` in ldd output.
pub(crate) fn parse_libllvm(ldd: &str) -> Option<u32> {
    ldd.lines().find_map(|l| {
        let rest = &l[l.find("libLLVM")? + 7..];
        let rest = rest.trim_start_matches(['.', '-', 's', 'o']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

fn ensure_bpf_linker(llvm: u32) -> anyhow::Result<()> {
    let reinstall = match bpf_linker_llvm() {
        Some(Some(have)) if have == llvm => {
            step("ok", &format!("bpf-linker built against LLVM {llvm}"));
            return Ok(());
        }
        Some(Some(have)) => {
            step(
                "reinstall",
                &format!("bpf-linker uses LLVM {have}, nightly uses LLVM {llvm}"),
            );
            true
        }
        Some(None) => {
            step("reinstall", "bpf-linker (its LLVM version is unknown)");
            true
        }
        None => {
            step("install", &format!("bpf-linker against LLVM {llvm}"));
            false
        }
    };
    let llvm_bin = PathBuf::from(format!("/usr/lib/llvm-{llvm}/bin"));
    if !llvm_bin.join("llvm-config").is_file() {
        bail!(
            "{}/llvm-config is missing: install llvm-{llvm}-dev (cargo xtask setup as root)",
            llvm_bin.display()
        );
    }
    // /usr/bin/llvm-config is Debian's default LLVM (14): the wanted one must come first.
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![llvm_bin];
    dirs.extend(env::split_paths(&path));
    let path = env::join_paths(dirs).context("PATH")?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let mut cmd = Command::new(cargo);
    cmd.args([
        "install",
        "bpf-linker",
        "--no-default-features",
        "--features",
    ])
    .arg(format!("llvm-{llvm}"))
    .arg("--locked")
    .env("PATH", path);
    if reinstall {
        cmd.arg("--force");
    }
    status(&mut cmd)?;
    match bpf_linker_llvm() {
        Some(Some(have)) if have == llvm => {}
        other => bail!("bpf-linker was installed but reports LLVM {other:?}, wanted {llvm}"),
    }
    step(
        "ok",
        &format!(
            "bpf-linker installed in {:.0} s",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

fn ensure_bpffs() -> anyhow::Result<()> {
    if ipmp_lab::bpffs_mounted() {
        step("ok", &format!("bpffs mounted at {BPFFS}"));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "bpffs is not mounted at {BPFFS}: run `cargo xtask setup` as root (mount -t bpf bpf {BPFFS})"
        );
    }
    status(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    step("mounted", &format!("bpffs at {BPFFS}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_and_bpf_linker_output() {
        let vv =
            "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(vv), Some(22));
        assert_eq!(
            parse_llvm_major("bpf-linker 0.9.15\nLLVM 21.1.0\n"),
            Some(21)
        );
        assert_eq!(parse_llvm_major("bpf-linker 0.13.0\n"), None);
    }

    #[test]
    fn llvm_from_crates2_features() {
        let text = r#"{"installs":{
            "cargo-edit 0.1.0 (registry+x)":{"features":["llvm-9"]},
            "bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)":
                {"features":["llvm-22"],"no_default_features":true}}}"#;
        assert_eq!(llvm_feature_from_crates2(text), Some(22));
        assert_eq!(llvm_feature_from_crates2(r#"{"installs":{}}"#), None);
        assert_eq!(llvm_feature_from_crates2("not json"), None);
    }

    #[test]
    fn apt_candidates() {
        let have = "llvm-22-dev:\n  Installed: (none)\n  Candidate: 1:22.1.8-1~deb12u1\n  Version table:\n";
        assert_eq!(apt_candidate(have), Some("1:22.1.8-1~deb12u1"));
        assert_eq!(
            apt_candidate("llvm-99-dev:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(apt_candidate(""), None);
    }

    #[test]
    fn llvm_from_ldd() {
        let ldd = "\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007f)\n";
        assert_eq!(parse_libllvm(ldd), Some(22));
        assert_eq!(
            parse_libllvm("\tlibLLVM-19.so => /usr/lib/x (0x1)\n"),
            Some(19)
        );
        assert_eq!(parse_libllvm("\tlibc.so.6 => /lib/libc.so.6\n"), None);
    }
}
