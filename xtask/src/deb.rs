//! `cargo xtask deb`: a Debian package `ipmp` built with `dpkg-deb` from a tree staged here:
//! the binaries (stripped) under /usr/sbin, the systemd unit, the man pages, the shell
//! completions and the example configuration as a conffile under /etc/ipmp.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::setup::output;

/// The binaries the package installs under /usr/sbin.
const BINS: [&str; 3] = ["ipmpd", "ipmpstat", "ipmpadm"];
const SBIN: &str = "/usr/sbin/";
const CONFIG: &str = "etc/ipmp/ipmpd.toml";
const UNIT: &str = "lib/systemd/system/ipmpd.service";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAINTAINER: &str = "ipmp maintainers <maintainers@ipmp.invalid>";

/// Builds the package: from the binaries in `bin_dir`, or from a release build when `None`;
/// into `out` (default `<target>/deb`). Prints and returns the package's path.
pub fn run(bin_dir: Option<PathBuf>, out: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let bin_dir = match bin_dir {
        Some(dir) => dir,
        None => crate::test::release_build(&["ipmp-user"], &BINS)?,
    };
    let out = match out {
        Some(dir) => dir,
        None => crate::test::target_dir()?.join("deb"),
    };
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let stage = out.join(format!("ipmp_{VERSION}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    }
    stage_tree(&crate::bench::workspace_root(), &bin_dir, &stage)?;
    write_control(&stage, &arch)?;
    let deb = out.join(format!("ipmp_{VERSION}_{arch}.deb"));
    output(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    println!("{}", deb.display());
    Ok(deb)
}

/// Creates `path`'s directory and gives the file its mode.
fn place(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    place(to, 0o644, |to| {
        fs::copy(from, to)
            .map(drop)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
    })
}

/// `gzip -9n` (no name or time stamp, as Debian compresses man pages).
fn gzip(from: &Path, to: &Path) -> anyhow::Result<()> {
    place(to, 0o644, |to| {
        let file =
            fs::File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
        let st = Command::new("gzip")
            .args(["-9nc"])
            .arg(from)
            .stdout(Stdio::from(file))
            .status()
            .context("cannot run gzip")?;
        if !st.success() {
            bail!("gzip {} failed ({st})", from.display());
        }
        Ok(())
    })
}

/// Where a file of dist/man or dist/completions goes in the package, by its name.
fn install_path(dir: &str, name: &str) -> Option<String> {
    match dir {
        "man" => {
            let section = name.rsplit_once('.')?.1;
            Some(format!("usr/share/man/man{section}/{name}.gz"))
        }
        "completions" => {
            if let Some(tool) = name.strip_suffix(".bash") {
                Some(format!("usr/share/bash-completion/completions/{tool}"))
            } else if name.ends_with(".fish") {
                Some(format!("usr/share/fish/vendor_completions.d/{name}"))
            } else if name.starts_with('_') {
                Some(format!("usr/share/zsh/vendor-completions/{name}"))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn stage_tree(root: &Path, bin_dir: &Path, stage: &Path) -> anyhow::Result<()> {
    for bin in BINS {
        let from = bin_dir.join(bin);
        if !from.is_file() {
            bail!(
                "{} not found: build it (cargo build -p ipmp-user) or pass --bin-dir",
                from.display()
            );
        }
        place(&stage.join(&SBIN[1..]).join(bin), 0o755, |to| {
            output(
                Command::new("strip")
                    .arg("--strip-unneeded")
                    .arg("-o")
                    .arg(to)
                    .arg(&from),
            )
            .map(drop)
        })?;
    }
    let unit = crate::dist::unit_for_sbin(&crate::dist::read_unit(root)?, SBIN)?;
    place(&stage.join(UNIT), 0o644, |to| {
        fs::write(to, unit).with_context(|| format!("cannot write {}", to.display()))
    })?;
    copy(&root.join("config/ipmpd.toml"), &stage.join(CONFIG))?;
    for dir in ["man", "completions"] {
        let from = root.join("dist").join(dir);
        let entries = fs::read_dir(&from)
            .with_context(|| format!("cannot read {}: run `cargo xtask man`", from.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(to) = install_path(dir, &name) else {
                bail!("dist/{dir}/{name}: no place for it in the package (see xtask/src/deb.rs)");
            };
            if dir == "man" {
                gzip(&entry.path(), &stage.join(to))?;
            } else {
                copy(&entry.path(), &stage.join(to))?;
            }
        }
    }
    place(&stage.join("usr/share/doc/ipmp/copyright"), 0o644, |to| {
        fs::write(
            to,
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: ipmp\n\nFiles: *\nLicense: MIT or Apache-2.0\n",
        )
        .with_context(|| format!("cannot write {}", to.display()))
    })
}

/// What `binary` links against: the shared libraries it needs (`NEEDED`) and the newest glibc
/// symbol version it uses (e.g. `2.34`).
fn linkage(binary: &Path) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let headers = output(Command::new("objdump").arg("-p").arg(binary))?;
    let libs = headers
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(|l| l.trim().to_owned())
        .collect();
    let symbols = output(Command::new("objdump").arg("-T").arg(binary))?;
    Ok((libs, newest_glibc(&symbols)))
}

/// The highest `GLIBC_x.y` version named in `objdump -T` output.
fn newest_glibc(symbols: &str) -> Option<String> {
    symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .max_by_key(|v| version_key(v))
        .map(str::to_owned)
}

/// `2.34` as `[2, 34]`, so that versions compare as numbers.
fn version_key(version: &str) -> Vec<u32> {
    version.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The Debian packages that provide `libs`, libc6 at least at `glibc`, sorted.
fn depends(libs: &[String], glibc: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut packages = Vec::new();
    for lib in libs {
        let package = match lib.split(".so").next().unwrap_or(lib) {
            "libc" | "libm" | "libdl" | "libpthread" | "librt" | "libutil" | "ld-linux-x86-64"
            | "ld-linux-aarch64" => match glibc {
                Some(v) => format!("libc6 (>= {v})"),
                None => "libc6".to_owned(),
            },
            "libgcc_s" => "libgcc-s1".to_owned(),
            _ => bail!(
                "the binaries need {lib}: add its Debian package to depends() in xtask/src/deb.rs"
            ),
        };
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    packages.sort();
    Ok(packages)
}

fn write_control(stage: &Path, arch: &str) -> anyhow::Result<()> {
    let mut libs = Vec::new();
    let mut glibc = Vec::new();
    for bin in BINS {
        let (needed, version) = linkage(&stage.join(&SBIN[1..]).join(bin))?;
        libs.extend(needed);
        glibc.extend(version);
    }
    let glibc = glibc.into_iter().max_by_key(|v| version_key(v));
    let depends = depends(&libs, glibc.as_deref())?;
    let installed_kib = seal(stage)?.div_ceil(1024);
    let control = format!(
        "Package: ipmp\n\
         Version: {VERSION}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {}\n\
         Section: net\n\
         Priority: optional\n\
         Description: IP network multipathing with an eBPF data plane\n \
         ipmpd keeps a group's data addresses reachable when a member NIC fails and\n \
         spreads outbound flows over the healthy members, like Solaris IPMP\n \
         (in.mpathd, ipmpstat, if_mpadm). Needs a kernel with BPF, TCX and bpffs\n \
         (6.6 or later).\n",
        depends.join(", ")
    );
    let debian = stage.join("DEBIAN");
    place(&debian.join("control"), 0o644, |to| {
        fs::write(to, control).with_context(|| format!("cannot write {}", to.display()))
    })?;
    place(&debian.join("conffiles"), 0o644, |to| {
        fs::write(to, format!("/{CONFIG}\n"))
            .with_context(|| format!("cannot write {}", to.display()))
    })?;
    seal(&debian).map(drop)
}

/// Gives `dir` and the directories under it mode 0755 whatever the umask (dpkg-deb packs the
/// modes as they are); returns the bytes of the files under it.
fn seal(dir: &Path) -> anyhow::Result<u64> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", dir.display()))?;
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let meta = entry
            .metadata()
            .with_context(|| format!("cannot stat {}", entry.path().display()))?;
        total += if meta.is_dir() {
            seal(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_files_have_their_debian_places() {
        for (dir, name, place) in [
            ("man", "ipmpd.8", Some("usr/share/man/man8/ipmpd.8.gz")),
            (
                "man",
                "ipmpd.toml.5",
                Some("usr/share/man/man5/ipmpd.toml.5.gz"),
            ),
            (
                "completions",
                "ipmpstat.bash",
                Some("usr/share/bash-completion/completions/ipmpstat"),
            ),
            (
                "completions",
                "_ipmpadm",
                Some("usr/share/zsh/vendor-completions/_ipmpadm"),
            ),
            (
                "completions",
                "ipmpd.fish",
                Some("usr/share/fish/vendor_completions.d/ipmpd.fish"),
            ),
            ("completions", "README", None),
        ] {
            assert_eq!(install_path(dir, name).as_deref(), place, "{dir}/{name}");
        }
    }

    #[test]
    fn depends_covers_libc_and_libgcc_and_refuses_the_unknown() {
        let libs = [
            "libgcc_s.so.1",
            "libc.so.6",
            "libm.so.6",
            "ld-linux-x86-64.so.2",
        ]
        .map(String::from);
        assert_eq!(
            depends(&libs, Some("2.34")).unwrap(),
            ["libc6 (>= 2.34)", "libgcc-s1"]
        );
        assert_eq!(depends(&libs[1..2], None).unwrap(), ["libc6"]);
        let err = depends(&["libssl.so.3".to_owned()], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("libssl.so.3"), "{err}");
    }

    #[test]
    fn newest_glibc_compares_versions_as_numbers() {
        let dump = "0000 DF *UND* 0000 (GLIBC_2.9) foo\n\
                    0000 DF *UND* 0000 (GLIBC_2.34) bar\n\
                    0000 DF *UND* 0000 GLIBC_2.3.4 baz\n\
                    0000 DF *UND* 0000 (GCC_4.2.0) _Unwind\n";
        assert_eq!(newest_glibc(dump).as_deref(), Some("2.34"));
        assert_eq!(newest_glibc("nothing here"), None);
    }
}
