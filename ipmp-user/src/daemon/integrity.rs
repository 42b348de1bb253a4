//! Self-repair: once a second (and at once on the netlink events that announce it) what ipmpd
//! built is compared with the kernel — the pins under the pin directory, the programs'
//! attachments, each IPMP interface with its data addresses and routes — and whatever was
//! removed by hand is put back, each repair logged as one line naming the thing and what was
//! done. The attachments themselves survive lost pins: ipmpd holds every link open.

use std::time::{Duration, Instant};

use super::{
    error::Result,
    setup::attach_member,
    state::{Daemon, GroupRt},
};
use crate::{
    config::Prefix,
    dataplane::XdpAttachMode,
    netlink::{self, Address, Link, events::LinkEvent},
};

/// How often the integrity check runs: cheap (one link, address and route dump, a few TCX
/// queries and `stat`s), and a second bounds how long tampering goes unrepaired.
pub(super) const INTEGRITY_INTERVAL: Duration = Duration::from_secs(1);

/// The program kinds a member carries in XDP mode `mode`.
fn member_kinds(mode: XdpAttachMode) -> &'static [&'static str] {
    match mode {
        XdpAttachMode::Off => &["tc_ingress", "tc_member"],
        _ => &["xdp", "tc_ingress", "tc_member"],
    }
}

/// What is wrong with a group's IPMP interface, from a link and address dump.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IpmpFault {
    /// The interface or its veth peer is gone (deleted by hand).
    Gone,
    /// These data addresses (indexes into the configuration) are missing from it.
    Addresses(Vec<usize>),
}

/// A group's IPMP interface as ipmpd made it: name, ifindex, its veth peer's ifindex.
#[derive(Clone, Copy, Debug)]
pub(super) struct IpmpIds<'a> {
    pub(super) name: &'a str,
    pub(super) ifindex: u32,
    pub(super) peer_ifindex: u32,
}

impl<'a> IpmpIds<'a> {
    fn of(g: &'a GroupRt) -> Self {
        Self {
            name: &g.cfg.name,
            ifindex: g.ifindex,
            peer_ifindex: g.peer_ifindex,
        }
    }
}

/// Compares a group's IPMP interface and its data addresses with the kernel's links and
/// addresses; pure.
pub(super) fn ipmp_fault(
    ipmp: IpmpIds<'_>,
    data: &[Prefix],
    links: &[Link],
    addrs: &[Address],
) -> Option<IpmpFault> {
    let own = links
        .iter()
        .any(|l| l.ifindex == ipmp.ifindex && l.name == ipmp.name);
    let peer = links.iter().any(|l| l.ifindex == ipmp.peer_ifindex);
    if !own || !peer {
        return Some(IpmpFault::Gone);
    }
    let missing: Vec<usize> = data
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            !addrs
                .iter()
                .any(|a| a.ifindex == ipmp.ifindex && a.addr == p.addr)
        })
        .map(|(i, _)| i)
        .collect();
    (!missing.is_empty()).then_some(IpmpFault::Addresses(missing))
}

impl Daemon {
    /// Whether a link event reports tampering to repair at once rather than at the next
    /// check: the IPMP interface or its peer deleted, a member's XDP program gone.
    pub(super) fn tampered(&self, event: &LinkEvent) -> bool {
        match event {
            LinkEvent::Removed { ifindex, .. } => self
                .groups
                .iter()
                .any(|g| g.ifindex == *ifindex || g.peer_ifindex == *ifindex),
            LinkEvent::Changed(link) if link.xdp_prog.is_none() => self.groups.iter().any(|g| {
                g.members
                    .iter()
                    .any(|m| m.ifindex == link.ifindex && m.xdp_mode != XdpAttachMode::Off)
            }),
            _ => false,
        }
    }

    /// Checks everything ipmpd built and repairs what is missing; see the module comment.
    pub(super) async fn check_integrity(&mut self) {
        self.check_pins();
        let (links, addrs) = match (self.nl.links().await, self.nl.addresses().await) {
            (Ok(l), Ok(a)) => (l, a),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("integrity check: cannot list links and addresses: {e}");
                return;
            }
        };
        for gi in 0..self.groups.len() {
            if let Err(e) = self.check_group(gi, &links, &addrs).await {
                tracing::error!(group = %self.groups[gi].cfg.name, "repair failed: {e}; retrying in {} s", INTEGRITY_INTERVAL.as_secs());
            }
        }
    }

    /// Missing pins are put back from the links and maps ipmpd holds. Without a bpffs under
    /// the pin directory (unmounted) this is logged once; forwarding goes on, and the pins
    /// come back when a bpffs is mounted there again (ipmpd does not mount one itself: an
    /// unmount is someone's decision, and a mount of its own would hide theirs).
    fn check_pins(&mut self) {
        let dir = self.dataplane.pin_dir().display().to_string();
        match self.dataplane.repin() {
            Ok(done) if done.is_empty() => {}
            Ok(done) => {
                let was_lost = std::mem::take(&mut self.pins_lost);
                tracing::warn!(
                    pin_dir = %dir,
                    "{}: re-pinned {}",
                    if was_lost {
                        "bpf filesystem is back"
                    } else {
                        "pins were removed (by hand?)"
                    },
                    done.join(", ")
                );
            }
            Err(e) if !self.pins_lost => {
                self.pins_lost = true;
                tracing::error!(pin_dir = %dir, "cannot pin: {e}; the programs stay attached (ipmpd holds their links) and forwarding continues; the pins are put back once a bpf filesystem is mounted there again");
            }
            Err(_) => {}
        }
    }

    async fn check_group(&mut self, gi: usize, links: &[Link], addrs: &[Address]) -> Result<()> {
        let g = &self.groups[gi];
        match ipmp_fault(IpmpIds::of(g), &g.cfg.data_addresses, links, addrs) {
            Some(IpmpFault::Gone) => return self.recreate_ipmp(gi).await,
            Some(IpmpFault::Addresses(missing)) => self.readd_addresses(gi, &missing).await?,
            None => self.check_routes(gi).await?,
        }
        let name = self.groups[gi].cfg.name.clone();
        let ifindex = self.groups[gi].ifindex;
        if !self
            .dataplane
            .detached(&name, ifindex, &["tc_egress"], None)?
            .is_empty()
        {
            self.dataplane.forget(&name, "tc_egress");
            self.dataplane.attach_ipmp(&name)?;
            tracing::warn!(group = %name, "tc_egress was detached from {name} (by hand?): attached again");
        }
        for mi in 0..self.groups[gi].members.len() {
            let m = &self.groups[gi].members[mi];
            // A member that is gone is the link events' business (it may come back).
            let Some(link) = links.iter().find(|l| l.ifindex == m.ifindex) else {
                continue;
            };
            let gone = self.dataplane.detached(
                &m.name,
                link.ifindex,
                member_kinds(m.xdp_mode),
                link.xdp_prog,
            )?;
            if gone.is_empty() {
                continue;
            }
            let started = Instant::now();
            for what in &gone {
                self.dataplane.forget(&link.name, what);
            }
            let mode = attach_member(&mut self.dataplane, self.groups[gi].cfg.xdp_mode, link)?;
            self.groups[gi].members[mi].xdp_mode = mode;
            self.sync_dataplane()?;
            tracing::warn!(
                member = %link.name,
                repair_us = started.elapsed().as_micros() as u64,
                "{} detached from {} (by hand?): attached again",
                gone.join(", "),
                link.name
            );
        }
        Ok(())
    }

    /// The IPMP interface was deleted: created again with its peer, sysctls and program, the
    /// maps rewritten for its new ifindex, then brought up with addresses and routes.
    async fn recreate_ipmp(&mut self, gi: usize) -> Result<()> {
        let started = Instant::now();
        let name = self.groups[gi].cfg.name.clone();
        let peer = netlink::peer_name(&name);
        tracing::warn!(group = %name, "the IPMP interface {name} was deleted (by hand?): creating it again");
        self.dataplane.forget(&name, "tc_egress");
        // Deleting either end of a veth deletes both; anything left under the names is stale.
        for stale in [&name, &peer] {
            if let Some(l) = self.nl.link_by_name(stale).await? {
                self.nl.delete_link(l.ifindex).await?;
            }
        }
        let mtu = self.groups[gi]
            .members
            .iter()
            .map(|m| m.mtu)
            .min()
            .unwrap_or(1500);
        let link = self.nl.create_ipmp_interface(&name, &peer, mtu).await?;
        // The peer stays quiet: no IPv6 link-local, no multicast reports.
        self.sysctl.set_ipv6_disabled(&peer, true).ok();
        let peer_ifindex = self
            .nl
            .link_by_name(&peer)
            .await?
            .map(|l| l.ifindex)
            .ok_or_else(|| netlink::NetlinkError::NoSuchInterface(peer.clone()))?;
        self.sysctl.prepare_ipmp(&name)?;
        self.dataplane.attach_ipmp(&name)?;
        {
            let g = &mut self.groups[gi];
            g.ifindex = link.ifindex;
            g.peer_ifindex = peer_ifindex;
            g.mac = link.mac;
            // The new peer is up: have the carrier set from the group's state again.
            g.carrier_on = false;
        }
        self.sync_dataplane()?;
        self.bring_up(gi).await?;
        self.follow_routes().await?;
        tracing::warn!(
            group = %name,
            ifindex = link.ifindex,
            repair_ms = started.elapsed().as_millis() as u64,
            "IPMP interface {name} created again: program attached, maps rewritten, addresses and routes placed"
        );
        Ok(())
    }

    async fn readd_addresses(&mut self, gi: usize, missing: &[usize]) -> Result<()> {
        let g = &self.groups[gi];
        for &i in missing {
            let Some(prefix) = g.cfg.data_addresses.get(i) else {
                continue;
            };
            self.nl.add_address(g.ifindex, prefix, false).await?;
            self.nl.set_broadcast_neighbour(g.ifindex, prefix).await?;
            tracing::warn!(group = %g.cfg.name, address = %prefix.addr, "data address was removed from {} (by hand?): added again", g.cfg.name);
        }
        // Routes through a removed address went with it.
        for route in &g.cfg.routes {
            self.nl.replace_route(g.ifindex, route).await?;
        }
        self.announce_all(gi);
        Ok(())
    }

    /// The configured routes' gateways must be routes through the IPMP interface.
    async fn check_routes(&mut self, gi: usize) -> Result<()> {
        let g = &self.groups[gi];
        if g.cfg.routes.is_empty() {
            return Ok(());
        }
        let gateways = self.nl.gateways(g.ifindex).await?;
        let missing: Vec<_> = g
            .cfg
            .routes
            .iter()
            .filter(|r| !gateways.contains(&r.via))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for route in &missing {
            self.nl.replace_route(g.ifindex, route).await?;
        }
        tracing::warn!(group = %g.cfg.name, "{} route(s) through {} were removed (by hand?): placed again", missing.len(), g.cfg.name);
        self.follow_routes().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, name: &str) -> Link {
        Link {
            ifindex,
            name: name.into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            admin_up: true,
            carrier: true,
            noarp: true,
            kind: Some("veth".into()),
            controller: None,
            link: None,
            xdp_prog: None,
        }
    }

    fn addr(ifindex: u32, a: &str) -> Address {
        Address {
            ifindex,
            addr: a.parse().unwrap(),
            prefix_len: 24,
        }
    }

    const IPMP: IpmpIds<'static> = IpmpIds {
        name: "ipmp0",
        ifindex: 10,
        peer_ifindex: 11,
    };

    fn data() -> Vec<Prefix> {
        ["198.51.100.10/24", "2001:db8::10/64"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    }

    #[test]
    fn an_intact_interface_has_no_fault() {
        let links = [link(10, "ipmp0"), link(11, "ipmp0-p")];
        let addrs = [addr(10, "198.51.100.10"), addr(10, "2001:db8::10")];
        assert_eq!(ipmp_fault(IPMP, &data(), &links, &addrs), None);
    }

    #[test]
    fn a_deleted_interface_or_peer_is_gone() {
        let addrs = [addr(10, "198.51.100.10"), addr(10, "2001:db8::10")];
        for links in [
            vec![link(11, "ipmp0-p")],
            vec![link(10, "ipmp0")],
            // Created again by someone else: same name, another ifindex.
            vec![link(12, "ipmp0"), link(11, "ipmp0-p")],
            // The ifindex reused by another interface.
            vec![link(10, "other"), link(11, "ipmp0-p")],
        ] {
            assert_eq!(
                ipmp_fault(IPMP, &data(), &links, &addrs),
                Some(IpmpFault::Gone),
                "{links:?}"
            );
        }
    }

    #[test]
    fn missing_data_addresses_are_named() {
        let links = [link(10, "ipmp0"), link(11, "ipmp0-p")];
        // The v4 address on another interface does not count.
        let addrs = [addr(3, "198.51.100.10"), addr(10, "2001:db8::10")];
        assert_eq!(
            ipmp_fault(IPMP, &data(), &links, &addrs),
            Some(IpmpFault::Addresses(vec![0]))
        );
        assert_eq!(
            ipmp_fault(IPMP, &data(), &links, &[]),
            Some(IpmpFault::Addresses(vec![0, 1]))
        );
    }

    #[test]
    fn members_carry_xdp_only_in_an_xdp_mode() {
        assert_eq!(
            member_kinds(XdpAttachMode::Off),
            ["tc_ingress", "tc_member"]
        );
        assert_eq!(
            member_kinds(XdpAttachMode::Generic),
            ["xdp", "tc_ingress", "tc_member"]
        );
    }
}
