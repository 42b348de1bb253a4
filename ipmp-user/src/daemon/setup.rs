//! Setting up: the checks before anything is created, pruning what an earlier ipmpd left for
//! interfaces no longer configured, and each group built — its IPMP interface, its members
//! prepared and attached, its state machine and prober, the members' routing rules, the
//! kernel side of probing.

use std::{collections::HashMap, path::Path, time::Instant};

use ipmp_common::{MAX_GROUPS, MAX_MEMBERS, PROBE_CFG_F_ENABLED, ProbeConfig};
use tokio::sync::mpsc;

use super::{
    error::{DaemonError, Result},
    state::{GroupRt, MemberRt, Options},
};
use crate::{
    config::{Config, GroupConfig},
    dataplane::{self, Dataplane, XdpAttachMode},
    group::{Carrier, Group, GroupSpec},
    netlink::{self, Link, Netlink, NetlinkError, sysctl::Sysctls},
    probe_io::{GroupProbing, MemberNic, ProbeReply, ring::ProbeRing},
};

/// A link's carrier as the group state machine sees it: up only when administratively up with
/// carrier.
pub(super) fn link_state(link: &Link) -> Carrier {
    if link.admin_up && link.carrier {
        Carrier::Up
    } else {
        Carrier::Down
    }
}

/// Validation of everything that can be checked before anything is created, so that bad input
/// leaves nothing behind.
pub(super) async fn preflight(config: &Config, opts: &Options, nl: &Netlink) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(DaemonError::NotRoot);
    }
    dataplane::loader::check_bpffs(&opts.pin_dir)?;
    let n_members: usize = config.groups.iter().map(|g| g.members.len()).sum();
    if config.groups.len() > MAX_GROUPS as usize || n_members > MAX_MEMBERS as usize {
        return Err(DaemonError::TooMany);
    }
    let links = nl.links().await?;
    let by_index: HashMap<u32, &Link> = links.iter().map(|l| (l.ifindex, l)).collect();
    let addrs = nl.addresses().await?;
    for g in &config.groups {
        let own = links.iter().find(|l| l.name == g.name);
        if let Some(own) = own
            && !adoptable(own, &opts.pin_dir)
        {
            return Err(DaemonError::NameTaken(g.name.clone()));
        }
        for m in &g.members {
            let Some(link) = links.iter().find(|l| l.name == m.name) else {
                return Err(DaemonError::UnknownInterface {
                    name: m.name.clone(),
                    group: g.name.clone(),
                });
            };
            if link.name == "lo" || link.mac == [0; 6] {
                return Err(DaemonError::InGroup {
                    name: m.name.clone(),
                    why: "it has no Ethernet address; members must be Ethernet NICs".into(),
                });
            }
            if let Some(master) = link.controller {
                let master = by_index
                    .get(&master)
                    .map_or_else(|| master.to_string(), |l| l.name.clone());
                return Err(DaemonError::InGroup {
                    name: m.name.clone(),
                    why: format!("it is a port of {master}; remove it from {master} first"),
                });
            }
            if let Some(prog) = link.xdp_prog
                && !member_pinned(&opts.pin_dir, &m.name)
            {
                return Err(DaemonError::InGroup {
                    name: m.name.clone(),
                    why: format!(
                        "it already has XDP program {prog} attached by another tool (another ipmpd with a different --pin-dir?); detach it first"
                    ),
                });
            }
            if !member_pinned(&opts.pin_dir, &m.name)
                && dataplane::loader::has_member_program(&m.name)
            {
                return Err(DaemonError::InGroup {
                    name: m.name.clone(),
                    why: "it is a member of another ipmpd (another --pin-dir); remove it from that configuration first".into(),
                });
            }
            if netlink::is_ipmp_interface(link) && config.groups.iter().any(|o| o.name == m.name) {
                return Err(DaemonError::InGroup {
                    name: m.name.clone(),
                    why: "it is an IPMP interface".into(),
                });
            }
        }
        for prefix in &g.data_addresses {
            if let Some(a) = addrs.iter().find(|a| a.addr == prefix.addr) {
                let on = by_index.get(&a.ifindex).map(|l| l.name.clone());
                if on.as_deref() != Some(g.name.as_str()) {
                    return Err(DaemonError::AddressInUse {
                        addr: prefix.addr,
                        group: g.name.clone(),
                        ifname: on.unwrap_or_else(|| a.ifindex.to_string()),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Detaches what an earlier ipmpd pinned for interfaces this configuration no longer names
/// (after a reload), and deletes IPMP interfaces of groups it no longer has.
pub(super) async fn prune(config: &Config, pin_dir: &Path, nl: &Netlink) {
    let named = |ifname: &str| {
        config
            .groups
            .iter()
            .any(|g| g.name == ifname || g.members.iter().any(|m| m.name == ifname))
    };
    for (what, ifname) in dataplane::loader::pinned_links(pin_dir) {
        if named(&ifname) {
            continue;
        }
        tracing::info!(interface = %ifname, program = %what, "no longer configured: detaching");
        let _ = std::fs::remove_file(dataplane::loader::link_pin(pin_dir, &ifname, &what));
        if what == "tc_egress"
            && let Ok(Some(link)) = nl.link_by_name(&ifname).await
            && netlink::is_ipmp_interface(&link)
        {
            tracing::info!(group = %ifname, "group no longer configured: deleting its IPMP interface");
            let _ = nl.delete_link(link.ifindex).await;
        }
    }
}

/// Attaches the member programs as `mode` asks; `auto` on a NIC whose driver refuses native
/// XDP goes on without XDP (TC ingress gives the answers). Returns the mode in use.
pub(super) fn attach_member(
    dataplane: &mut Dataplane,
    mode: crate::config::XdpMode,
    link: &Link,
) -> Result<XdpAttachMode> {
    let resolved = XdpAttachMode::resolve(mode, link.kind.as_deref());
    match dataplane.attach_member(&link.name, link.ifindex, resolved) {
        Err(e) if mode == crate::config::XdpMode::Auto && resolved == XdpAttachMode::Native => {
            tracing::warn!(member = %link.name, error = %e, "native XDP refused: the member's answers are given at TC ingress instead");
            dataplane.attach_member(&link.name, link.ifindex, XdpAttachMode::Off)?;
            Ok(XdpAttachMode::Off)
        }
        attached => attached.map(|()| resolved).map_err(Into::into),
    }
}

pub(super) fn member_pinned(pin_dir: &Path, member: &str) -> bool {
    dataplane::loader::link_pin(pin_dir, member, "tc_ingress").exists()
}

/// An existing link named like a group is ours if it is a NOARP veth with our peer name and
/// its TC program is pinned in our pin dir (a restart).
pub(super) fn adoptable(link: &Link, pin_dir: &Path) -> bool {
    netlink::is_ipmp_interface(link)
        && dataplane::loader::link_pin(pin_dir, &link.name, "tc_egress").exists()
}

/// What setting up the groups shares: the configuration, the kernel handles, the links as
/// they were at start, and the counter slots handed out so far.
pub(super) struct GroupSetup<'a> {
    pub(super) config: &'a Config,
    pub(super) nl: &'a Netlink,
    pub(super) sysctl: &'a Sysctls,
    pub(super) links: Vec<Link>,
    pub(super) dataplane: &'a mut Dataplane,
    pub(super) probe_tx: &'a mpsc::Sender<ProbeReply>,
    pub(super) cookie: u64,
    pub(super) now: Instant,
    pub(super) stats_slot: u32,
}

impl GroupSetup<'_> {
    /// One group: its members found, its IPMP interface created or adopted, each member
    /// prepared, the state machine and the prober started, the members' routing rules set.
    pub(super) async fn build_group(
        &mut self,
        slot: usize,
        cfg: &GroupConfig,
        created: &mut Vec<u32>,
    ) -> Result<GroupRt> {
        let members = self.member_links(cfg)?;
        let mtu = members.iter().map(|(l, _)| l.mtu).min().unwrap_or(1500);
        let (ipmp, peer_ifindex) = self.ipmp_interface(cfg, mtu, created).await?;
        self.sysctl.prepare_ipmp(&cfg.name)?;
        self.dataplane.attach_ipmp(&cfg.name)?;
        let mut rts = Vec::new();
        for (link, mcfg) in &members {
            rts.push(self.prepare_member(cfg, link, mcfg).await?);
        }
        let spec = GroupSpec::from_config(self.config, cfg);
        let initial: Vec<Carrier> = rts.iter().map(|m| m.link).collect();
        let fsm = Group::new(spec, &initial, self.now);
        let names: Vec<MemberNic> = rts
            .iter()
            .map(|m| MemberNic {
                name: m.name.clone(),
                ifindex: m.ifindex,
                mac: m.mac,
            })
            .collect();
        let probing = GroupProbing::start(
            self.config,
            cfg,
            slot,
            &fsm,
            &names,
            self.probe_tx,
            self.cookie,
            self.now,
        )?;
        for (m, (_, mcfg)) in rts.iter().zip(&members) {
            member_routes(self.nl, &m.name, m.ifindex, mcfg.test_address).await;
        }
        Ok(GroupRt {
            cfg: cfg.clone(),
            slot: slot as u32,
            ifindex: ipmp.ifindex,
            peer_ifindex,
            mac: ipmp.mac,
            cast: None,
            seed: cfg.hash_seed.unwrap_or_else(rand::random),
            fsm,
            members: rts,
            carrier_on: true,
            probing,
        })
    }

    /// The links of `cfg`'s members, in configuration order.
    fn member_links<'c>(
        &self,
        cfg: &'c GroupConfig,
    ) -> Result<Vec<(Link, &'c crate::config::MemberConfig)>> {
        cfg.members
            .iter()
            .map(|m| {
                let link = self
                    .links
                    .iter()
                    .find(|l| l.name == m.name)
                    .ok_or_else(|| DaemonError::UnknownInterface {
                        name: m.name.clone(),
                        group: cfg.name.clone(),
                    })?;
                Ok((link.clone(), m))
            })
            .collect()
    }

    /// The group's IPMP interface, adopted or created, with the members' smallest MTU; and
    /// the ifindex of its veth peer.
    async fn ipmp_interface(
        &self,
        cfg: &GroupConfig,
        mtu: u32,
        created: &mut Vec<u32>,
    ) -> Result<(Link, u32)> {
        let peer = netlink::peer_name(&cfg.name);
        let ipmp = match self.links.iter().find(|l| l.name == cfg.name) {
            Some(existing) => {
                tracing::info!(group = %cfg.name, "adopting the existing IPMP interface");
                existing.clone()
            }
            None => {
                let link = self.nl.create_ipmp_interface(&cfg.name, &peer, mtu).await?;
                created.push(link.ifindex);
                // The peer stays quiet: no IPv6 link-local, no multicast reports.
                self.sysctl.set_ipv6_disabled(&peer, true).ok();
                link
            }
        };
        let peer_ifindex = self
            .nl
            .link_by_name(&peer)
            .await?
            .map(|l| l.ifindex)
            .ok_or_else(|| NetlinkError::NoSuchInterface(peer.clone()))?;
        if ipmp.mtu != mtu {
            self.nl.set_mtu(ipmp.ifindex, mtu).await?;
            self.nl.set_mtu(peer_ifindex, mtu).await?;
        }
        Ok((ipmp, peer_ifindex))
    }

    /// One member: sysctls, allmulticast, up, its programs attached, its test address added;
    /// it gets the next counter slot.
    async fn prepare_member(
        &mut self,
        cfg: &GroupConfig,
        link: &Link,
        mcfg: &crate::config::MemberConfig,
    ) -> Result<MemberRt> {
        self.sysctl.prepare_member(&link.name)?;
        self.nl.set_allmulticast(link.ifindex).await?;
        if !link.admin_up {
            self.nl.set_up(link.ifindex, true).await?;
        }
        let mode = attach_member(self.dataplane, cfg.xdp_mode, link)?;
        if let Some(test) = &mcfg.test_address {
            self.nl.add_address(link.ifindex, test, true).await?;
        }
        tracing::info!(member = %link.name, group = %cfg.name, xdp = ?mode, "member prepared");
        let stats_slot = self.stats_slot;
        self.stats_slot += 1;
        Ok(MemberRt {
            name: link.name.clone(),
            ifindex: link.ifindex,
            mac: link.mac,
            mtu: link.mtu,
            xdp_mode: mode,
            stats_slot,
            link: link_state(link),
        })
    }
}

/// The kernel side of probing: the cookie and identifier salt XDP checks replies against, and
/// the reply ring, when any group probes; probing switched off in the kernel otherwise.
pub(super) fn probe_config(
    dataplane: &mut Dataplane,
    probing: bool,
    cookie: u64,
    pin_dir: &Path,
) -> Result<Option<ProbeRing>> {
    if !probing {
        dataplane
            .writer_mut()
            .set_probe_config(ProbeConfig::default())?;
        return Ok(None);
    }
    let (echo_id, echo_id_mask) = crate::mpathd::payload::id_salt_mask(cookie);
    dataplane.writer_mut().set_probe_config(ProbeConfig {
        cookie,
        echo_id,
        echo_id_mask,
        flags: PROBE_CFG_F_ENABLED,
        _pad: 0,
    })?;
    Ok(Some(ProbeRing::open(pin_dir)?))
}

/// Installs a member's routing table and rules ([`Netlink::add_member_routes`]) for the
/// addresses on it now and its configured test address (which may not be there yet); a
/// failure (IPv6 disabled, say) costs what stays on the member (its probes, its own addresses
/// under strict reverse-path filtering), not the group: logged, not fatal.
pub(super) async fn member_routes(
    nl: &Netlink,
    ifname: &str,
    ifindex: u32,
    test: Option<crate::config::Prefix>,
) {
    let own = match nl.addresses().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(member = %ifname, "cannot list the member's addresses: {e}");
            Vec::new()
        }
    };
    let mut own: Vec<crate::config::Prefix> = own
        .into_iter()
        .filter(|a| a.ifindex == ifindex)
        .map(|a| crate::config::Prefix {
            addr: a.addr,
            len: a.prefix_len,
        })
        .collect();
    if let Some(t) = test
        && !own.iter().any(|p| p.addr == t.addr)
    {
        own.push(t);
    }
    if let Err(e) = nl.add_member_routes(ifname, ifindex, &own).await {
        tracing::warn!(member = %ifname, "the member's own traffic has no route back through it: {e}");
    }
}
