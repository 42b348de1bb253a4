//! Loading the object, pinning maps and links under the pin directory, attaching programs, and
//! adopting what a previous ipmpd left pinned (restart without loss: existing links are updated
//! in place with `bpf_link_update`, maps are reused, so forwarding never stops).

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapData,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::TcAttachOptions,
    },
};
use ipmp_common::{ALL_MAPS, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_TC_MEMBER, PROG_XDP_MEMBER};

use super::{
    query,
    state::{DataplaneError, DesiredGroup, EBPF_OBJECT},
    writer::MapWriter,
};

type Result<T> = std::result::Result<T, DataplaneError>;

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether and how XDP is attached to a member (TC ingress always is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// Driver mode (native).
    Native,
    /// Generic (skb) mode: works on every device.
    Generic,
    /// No XDP: `ipmp_tc_ingress` gives the member's answers.
    Off,
}

impl XdpAttachMode {
    /// `auto`: native only on physical NICs (no `IFLA_INFO_KIND`), none on virtual devices.
    /// On veth, native XDP_TX delivers only when the peer has an XDP program too, yet the
    /// attach succeeds all the same, and generic XDP copies every skb that lacks XDP headroom
    /// (all of them on veth: 0.63× the plain path's inbound TCP throughput when it was used);
    /// TC ingress gives the same answers without either.
    pub fn resolve(mode: crate::config::XdpMode, link_kind: Option<&str>) -> XdpAttachMode {
        match mode {
            crate::config::XdpMode::Native => XdpAttachMode::Native,
            crate::config::XdpMode::Generic => XdpAttachMode::Generic,
            crate::config::XdpMode::Off => XdpAttachMode::Off,
            crate::config::XdpMode::Auto if link_kind.is_none() => XdpAttachMode::Native,
            crate::config::XdpMode::Auto => XdpAttachMode::Off,
        }
    }

    /// How `ipmpstat`/`ipmpadm status` name it.
    pub fn name(self) -> &'static str {
        match self {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
            XdpAttachMode::Off => "off",
        }
    }

    fn aya(self) -> Option<XdpMode> {
        match self {
            XdpAttachMode::Native => Some(XdpMode::Driver),
            XdpAttachMode::Generic => Some(XdpMode::Skb),
            XdpAttachMode::Off => None,
        }
    }
}

/// Checks that `pin_dir`'s parent is a mounted bpffs.
pub fn check_bpffs(pin_dir: &Path) -> Result<()> {
    let parent = pin_dir.parent().unwrap_or(pin_dir);
    match nix::sys::statfs::statfs(parent) {
        Ok(st) if st.filesystem_type().0 == BPF_FS_MAGIC => Ok(()),
        _ => Err(DataplaneError::NotBpffs(parent.to_path_buf())),
    }
}

/// The loaded programs and the maps, pinned under one directory.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    writer: MapWriter,
    /// Every link ipmpd made or adopted, held open by (interface, program kind): an attachment
    /// outlives its pin (removed by hand, bpffs unmounted) while ipmpd runs, and the pin is put
    /// back from it ([`Dataplane::repin`]).
    links: HashMap<(String, String), FdLink>,
    /// Every map, held open to be pinned again.
    maps: Vec<(&'static str, MapData)>,
    /// Program ids by program name, to find them among an interface's attachments.
    prog_ids: HashMap<&'static str, u32>,
}

impl Dataplane {
    /// Loads the programs and opens the maps under `pin_dir`, reusing pinned maps left by a
    /// previous ipmpd (their contents are adopted, not flushed).
    pub fn open(pin_dir: &Path) -> Result<Self> {
        if EBPF_OBJECT.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        check_bpffs(pin_dir)?;
        for dir in [pin_dir.to_path_buf(), pin_dir.join("links")] {
            fs::create_dir_all(&dir).map_err(|source| DataplaneError::PinDir {
                path: dir.clone(),
                source,
            })?;
        }
        check_pinned_shapes(pin_dir)?;
        let paths: Vec<(&str, PathBuf)> = ALL_MAPS
            .iter()
            .map(|name| (*name, pin_dir.join(name)))
            .collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(DataplaneError::Load)?;
        for name in [PROG_TC_EGRESS, PROG_TC_MEMBER, PROG_TC_INGRESS] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(DataplaneError::Missing(name))?
                .try_into()
                .map_err(|source| DataplaneError::Program { name, source })?;
            prog.load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        let xdp: &mut Xdp = ebpf
            .program_mut(PROG_XDP_MEMBER)
            .ok_or(DataplaneError::Missing(PROG_XDP_MEMBER))?
            .try_into()
            .map_err(|source| DataplaneError::Program {
                name: PROG_XDP_MEMBER,
                source,
            })?;
        xdp.load().map_err(|source| DataplaneError::Program {
            name: PROG_XDP_MEMBER,
            source,
        })?;
        let mut prog_ids = HashMap::new();
        for name in [
            PROG_TC_EGRESS,
            PROG_TC_MEMBER,
            PROG_TC_INGRESS,
            PROG_XDP_MEMBER,
        ] {
            let info = ebpf
                .program(name)
                .ok_or(DataplaneError::Missing(name))?
                .info()
                .map_err(|source| DataplaneError::Program { name, source })?;
            prog_ids.insert(name, info.id());
        }
        let maps = paths
            .iter()
            .map(|(name, path)| {
                MapData::from_pin(path)
                    .map(|m| (*name, m))
                    .map_err(|source| DataplaneError::Map { map: name, source })
            })
            .collect::<Result<_>>()?;
        let writer = MapWriter::new(&mut ebpf)?;
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            writer,
            links: HashMap::new(),
            maps,
            prog_ids,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    fn link_pin(&self, ifname: &str, what: &str) -> PathBuf {
        link_pin(&self.pin_dir, ifname, what)
    }

    /// TCX egress on the IPMP interface.
    pub fn attach_ipmp(&mut self, ifname: &str) -> Result<()> {
        self.attach_tc(PROG_TC_EGRESS, ifname, "tc_egress", TcAttachType::Egress)
    }

    /// XDP (unless `mode` is `Off`), TCX ingress and TCX egress on a member. XDP goes first so
    /// that TC ingress never delivers what XDP will answer.
    pub fn attach_member(&mut self, ifname: &str, ifindex: u32, mode: XdpAttachMode) -> Result<()> {
        let pin = self.link_pin(ifname, "xdp");
        match mode.aya() {
            Some(aya_mode) => {
                let prog: &mut Xdp = self
                    .ebpf
                    .program_mut(PROG_XDP_MEMBER)
                    .ok_or(DataplaneError::Missing(PROG_XDP_MEMBER))?
                    .try_into()
                    .map_err(|source| DataplaneError::Program {
                        name: PROG_XDP_MEMBER,
                        source,
                    })?;
                let attach_err = |source| DataplaneError::Attach {
                    program: PROG_XDP_MEMBER,
                    interface: ifname.to_string(),
                    source,
                };
                let id = attach_or_adopt(
                    &pin,
                    prog,
                    |p, link| p.attach_to_link(link).ok(),
                    |p| p.attach_to_if_index(ifindex, aya_mode),
                )
                .map_err(attach_err)?;
                let link = prog.take_link(id).map_err(attach_err)?;
                self.hold(ifname, "xdp", pin_link(link.try_into(), &pin)?);
            }
            // A previous ipmpd (or configuration) may have left XDP attached: unpinning the
            // link detaches it.
            None => self.forget(ifname, "xdp"),
        }
        self.attach_tc(PROG_TC_INGRESS, ifname, "tc_ingress", TcAttachType::Ingress)?;
        self.attach_tc(PROG_TC_MEMBER, ifname, "tc_member", TcAttachType::Egress)
    }

    fn attach_tc(
        &mut self,
        name: &'static str,
        ifname: &str,
        what: &str,
        hook: TcAttachType,
    ) -> Result<()> {
        let pin = self.link_pin(ifname, what);
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::Missing(name))?
            .try_into()
            .map_err(|source| DataplaneError::Program { name, source })?;
        let attach_err = |source| DataplaneError::Attach {
            program: name,
            interface: ifname.to_string(),
            source,
        };
        // TCX (kernel 6.6+): links are pinnable and updatable in place.
        let id = attach_or_adopt(
            &pin,
            prog,
            |p, link| p.attach_to_link(link).ok(),
            |p| {
                p.attach_with_options(
                    ifname,
                    hook,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
            },
        )
        .map_err(attach_err)?;
        let link = prog.take_link(id).map_err(attach_err)?;
        let link = pin_link(link.try_into(), &pin)?;
        self.hold(ifname, what, link);
        Ok(())
    }

    fn hold(&mut self, ifname: &str, what: &str, link: FdLink) {
        self.links
            .insert((ifname.to_owned(), what.to_owned()), link);
    }

    /// Lets go of one link of an interface: its pin removed and its held descriptor closed, so
    /// the program is detached (a link already detached by hand is just dropped).
    pub fn forget(&mut self, ifname: &str, what: &str) {
        self.links.remove(&(ifname.to_owned(), what.to_owned()));
        let pin = self.link_pin(ifname, what);
        if pin.exists() {
            let _ = fs::remove_file(&pin);
        }
    }

    /// Removes the pinned links of an interface (detaching the programs).
    pub fn detach(&mut self, ifname: &str) {
        for what in LINK_KINDS {
            self.forget(ifname, what);
        }
    }

    /// Puts back every missing pin (removed by hand, or a bpffs mounted afresh) from the maps
    /// and links ipmpd holds, and returns their names; empty when all were there. Fails when
    /// the pin directory's parent is no bpffs (unmounted): nothing is pinned then.
    pub fn repin(&mut self) -> Result<Vec<String>> {
        check_bpffs(&self.pin_dir)?;
        for dir in [self.pin_dir.clone(), self.pin_dir.join("links")] {
            fs::create_dir_all(&dir).map_err(|source| DataplaneError::PinDir {
                path: dir.clone(),
                source,
            })?;
        }
        let mut done = Vec::new();
        for (name, map) in &self.maps {
            let path = self.pin_dir.join(name);
            if !path.exists() {
                map.pin(&path).map_err(|e| DataplaneError::Pin {
                    path: path.clone(),
                    message: error_chain(&e),
                })?;
                done.push((*name).to_owned());
            }
        }
        let missing: Vec<(String, String)> = self
            .links
            .keys()
            .filter(|(ifname, what)| !self.link_pin(ifname, what).exists())
            .cloned()
            .collect();
        for key in missing {
            let pin = self.link_pin(&key.0, &key.1);
            let Some(link) = self.links.remove(&key) else {
                continue;
            };
            // On failure the link goes with its last descriptor: the attachment check then
            // finds the program missing and attaches it again.
            let pinned = link.pin(&pin).map_err(|e| DataplaneError::Pin {
                path: pin.clone(),
                message: error_chain(&e),
            })?;
            done.push(format!("{}@{}", key.1, key.0));
            self.links.insert(key, FdLink::from(pinned));
        }
        Ok(done)
    }

    /// The links of `ifname` (`ifindex`) among `kinds` whose program is not attached to it any
    /// more (detached by hand: `bpftool link detach`, `bpftool net detach`). TCX is asked through
    /// `BPF_PROG_QUERY`; XDP through `xdp_prog`, the program id netlink reports on the link. A
    /// query that fails is an error, never taken for a detached program.
    pub fn detached(
        &self,
        ifname: &str,
        ifindex: u32,
        kinds: &[&'static str],
        xdp_prog: Option<u32>,
    ) -> Result<Vec<&'static str>> {
        let id = |name| self.prog_ids.get(name).copied();
        let tcx = |name, hook| -> Result<bool> {
            let ids =
                query::tcx_prog_ids(ifindex, hook).map_err(|source| DataplaneError::Query {
                    interface: ifname.to_owned(),
                    source,
                })?;
            Ok(!ids.iter().any(|p| Some(*p) == id(name)))
        };
        let mut gone = Vec::new();
        for what in kinds.iter().copied() {
            let detached = match what {
                "xdp" => xdp_prog.is_none() || xdp_prog != id(PROG_XDP_MEMBER),
                "tc_egress" => tcx(PROG_TC_EGRESS, query::BPF_TCX_EGRESS)?,
                "tc_ingress" => tcx(PROG_TC_INGRESS, query::BPF_TCX_INGRESS)?,
                "tc_member" => tcx(PROG_TC_MEMBER, query::BPF_TCX_EGRESS)?,
                _ => false,
            };
            if detached {
                gone.push(what);
            }
        }
        Ok(gone)
    }

    /// Writes the desired state of every group as a delta; see [`MapWriter::apply`].
    pub fn apply(&mut self, groups: &[DesiredGroup]) -> Result<()> {
        self.writer.apply(groups)
    }

    /// Catches the inactive bucket halves up with the active ones; see [`MapWriter::settle`].
    pub fn settle(&mut self) -> Result<u64> {
        self.writer.settle()
    }

    pub fn writer(&self) -> &MapWriter {
        &self.writer
    }

    pub fn writer_mut(&mut self) -> &mut MapWriter {
        &mut self.writer
    }
}

/// The links ipmpd pins per interface, by the `what` of [`link_pin`].
pub const LINK_KINDS: [&str; 4] = ["tc_egress", "xdp", "tc_ingress", "tc_member"];

/// Where the link of program `what` on `ifname` is pinned: `links/<what>@<ifname>`. bpffs
/// refuses '.' in names (reserved), so a '.' of the interface name (VLANs) becomes ':', which
/// interface names cannot contain.
pub fn link_pin(pin_dir: &Path, ifname: &str, what: &str) -> PathBuf {
    pin_dir
        .join("links")
        .join(format!("{what}@{}", ifname.replace('.', ":")))
}

/// Link and program id of the link pinned at `pin`, if it is there and alive.
pub fn pinned_link_ids(pin: &Path) -> Option<(u32, u32)> {
    let link = FdLink::from(PinnedLink::from_pin(pin).ok()?);
    let info = link.info().ok()?;
    Some((info.id(), info.program_id()))
}

/// Whether ipmp's TC ingress program is attached to `ifname` (by any ipmpd): TCX lets several
/// programs share a hook, so only this tells that the interface is already a member.
pub fn has_member_program(ifname: &str) -> bool {
    SchedClassifier::query_tcx(ifname, TcAttachType::Ingress).is_ok_and(|(_, progs)| {
        progs
            .iter()
            .any(|p| p.name_as_str() == Some(PROG_TC_INGRESS))
    })
}

/// Pinned maps are reused across restarts; one pinned by an ipmpd whose maps have another shape
/// (an upgrade that added reasons, say) would be reused silently and the programs would index
/// past its end. Refuse it with the fix instead.
fn check_pinned_shapes(pin_dir: &Path) -> Result<()> {
    for shape in ipmp_common::MAP_SHAPES {
        let path = pin_dir.join(shape.name);
        if !path.exists() {
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path).map_err(|e| DataplaneError::Pin {
            path: path.clone(),
            message: format!("{e} (remove it with ipmpd --cleanup)"),
        })?;
        let found = (info.key_size(), info.value_size(), info.max_entries());
        let expected = (shape.key_size, shape.value_size, shape.max_entries);
        if found != expected {
            return Err(DataplaneError::IncompatiblePin {
                path,
                found,
                expected,
            });
        }
    }
    Ok(())
}

/// The links pinned under `pin_dir`: (program, interface name) pairs.
pub fn pinned_links(pin_dir: &Path) -> Vec<(String, String)> {
    let Ok(dir) = fs::read_dir(pin_dir.join("links")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (what, ifname) = name.split_once('@')?;
            Some((what.to_string(), ifname.replace(':', ".")))
        })
        .collect()
}

/// Updates the link pinned at `pin` in place (`adopt_into`, through `bpf_link_update`) or,
/// when there is none or it cannot be updated (its device went away), attaches afresh.
fn attach_or_adopt<P, L, Id>(
    pin: &Path,
    prog: &mut P,
    adopt_into: impl FnOnce(&mut P, L) -> Option<Id>,
    attach: impl FnOnce(&mut P) -> std::result::Result<Id, aya::programs::ProgramError>,
) -> std::result::Result<Id, aya::programs::ProgramError>
where
    L: TryFrom<FdLink>,
{
    let adopted = adopt(pin)
        .and_then(|link| L::try_from(link).ok())
        .and_then(|link| adopt_into(prog, link));
    match adopted {
        Some(id) => Ok(id),
        None => {
            let _ = fs::remove_file(pin);
            attach(prog)
        }
    }
}

/// Opens a pinned link left by an earlier ipmpd; None if there is none (or it is defunct:
/// its interface went away).
fn adopt(pin: &Path) -> Option<FdLink> {
    if !pin.exists() {
        return None;
    }
    let fd = FdLink::from(PinnedLink::from_pin(pin).ok()?);
    // A link whose device was deleted still opens; it is useless, replace it.
    fd.info().ok().map(|_| fd)
}

/// Pins `link` at `pin` unless it is pinned there already (an adopted link updated in place);
/// returns it, to be held.
fn pin_link<E: std::fmt::Display>(
    link: std::result::Result<FdLink, E>,
    pin: &Path,
) -> Result<FdLink> {
    let link = link.map_err(|e| DataplaneError::Pin {
        path: pin.to_path_buf(),
        message: format!("{e}"),
    })?;
    if pin.exists() {
        return Ok(link);
    }
    link.pin(pin)
        .map(FdLink::from)
        .map_err(|e| DataplaneError::Pin {
            path: pin.to_path_buf(),
            message: error_chain(&e),
        })
}

/// Removes every pin under `pin_dir` (detaching all programs), then the directory.
pub fn cleanup(pin_dir: &Path) -> io::Result<()> {
    if !pin_dir.exists() {
        return Ok(());
    }
    let links: Vec<u32> = fs::read_dir(pin_dir.join("links"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| pinned_link_ids(&e.path()).map(|(id, _)| id))
        .collect();
    fs::remove_dir_all(pin_dir)?;
    // The kernel releases an unpinned link (and detaches its program) asynchronously: wait,
    // so that an ipmpd started right after finds the interfaces free.
    let deadline = std::time::Instant::now() + CLEANUP_DETACH_WAIT;
    while std::time::Instant::now() < deadline {
        let alive = aya::programs::loaded_links()
            .filter_map(|l| l.ok())
            .any(|l| links.contains(&l.id()));
        if !alive {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(io::Error::other(format!(
        "the kernel still holds ipmp's links after {CLEANUP_DETACH_WAIT:?}: a running ipmpd holds them (and pins them again; stop it first) or something else does (bpftool link show)"
    )))
}

/// How long [`cleanup`] waits for the kernel to release the unpinned links.
const CLEANUP_DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// "error: cause: cause" — aya's errors keep the errno in their source.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
