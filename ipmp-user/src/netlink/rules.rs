//! The members' own routing table. Data addresses and their routes live on the IPMP
//! interface, so a member has no route through itself, yet some traffic is the member's own:
//! its probes, its test and link-local addresses, the neighbour discovery it does for its
//! next hops. Each member gets a table (`MEMBER_TABLE_BASE` + ifindex) that routes through
//! the member, and rules that send that traffic there:
//! - `oif <member>`: sockets bound to the member (IPv6 refuses to send from a device without a
//!   route through it), and reverse-path lookups scoped to the device, as nftables' `fib`
//!   makes for link-local sources. IPv6 always; IPv4 only while the member has an IPv4
//!   address, since its IPv4 table holds nothing else (the subnets of those addresses). The
//!   kernel keeps the local and main tables merged into one lookup while a family has no
//!   rule of its own, and one rule makes every route lookup of that family walk the rules:
//!   measured at about 250 ns per packet on the data path (docs/architecture.md), so a group
//!   without IPv4 test addresses adds no IPv4 rule at all;
//! - `from <address>` for every address on the member (IPv4 /32, IPv6 /128, link-local
//!   included): the reverse-path checks — the kernel's `rp_filter` 1 or 2, and firewall rules
//!   such as firewalld's `fib saddr . iif oif missing drop` — look the sender up as a route
//!   from the local address the packet was sent to, so what arrives for a member's own
//!   address (probe replies, neighbour advertisements, ARP requests) finds its way back
//!   through the member it came in on.
//!
//! Data traffic has neither the member as its output device nor a member's address as its
//! source (test addresses are deprecated; data addresses live on the IPMP interface), so it
//! never matches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    route::RouteScope,
    rule::{RuleAction, RuleAttribute, RuleMessage},
};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use super::{Netlink, Result, request};
use crate::config::Prefix;

/// Routing tables of the members: this base + the member's ifindex.
pub const MEMBER_TABLE_BASE: u32 = 0x4950_0000;
/// Tables at or above this are not the members' (room for 2^24 ifindexes).
const MEMBER_TABLE_END: u32 = MEMBER_TABLE_BASE + 0x100_0000;
/// Priority of the members' rules (before the main table's 32766).
pub const MEMBER_RULE_PRIORITY: u32 = 1000;

fn table_of(r: &RuleMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RuleAttribute::Table(t) if (MEMBER_TABLE_BASE..MEMBER_TABLE_END).contains(t) => Some(*t),
        _ => None,
    })
}

fn oif_of(r: &RuleMessage) -> Option<&str> {
    r.attributes.iter().find_map(|a| match a {
        RuleAttribute::Oifname(n) => Some(n.as_str()),
        _ => None,
    })
}

fn source_of(r: &RuleMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RuleAttribute::Source(ip) => Some(*ip),
        _ => None,
    })
}

impl Netlink {
    async fn rules(&self, version: IpVersion) -> Result<Vec<RuleMessage>> {
        self.handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(request("list routing rules"))
    }

    async fn delete_rule(&self, rule: RuleMessage, what: &str) -> Result<()> {
        self.handle
            .rule()
            .del(rule)
            .execute()
            .await
            .map_err(request(format!("remove {what}")))
    }

    /// Installs member `ifname`'s table and rules (see the module) for the addresses `own` on
    /// it, replacing what an earlier incarnation of the member (another ifindex) or an
    /// address it no longer has left.
    pub async fn add_member_routes(
        &self,
        ifname: &str,
        ifindex: u32,
        own: &[Prefix],
    ) -> Result<()> {
        let table = MEMBER_TABLE_BASE + ifindex;
        for version in [IpVersion::V4, IpVersion::V6] {
            let v4 = version == IpVersion::V4;
            let mine: Vec<IpAddr> = own
                .iter()
                .map(|p| p.addr)
                .filter(|a| a.is_ipv4() == v4)
                .collect();
            let want_oif = !v4 || !mine.is_empty();
            let mut have_oif = false;
            let mut have_from: Vec<IpAddr> = Vec::new();
            for r in self.rules(version.clone()).await? {
                let Some(t) = table_of(&r) else {
                    continue;
                };
                let source = source_of(&r);
                let oif = oif_of(&r) == Some(ifname);
                if t != table && !oif && !source.is_some_and(|s| mine.contains(&s)) {
                    continue;
                }
                let current = t == table
                    && match source {
                        Some(s) => mine.contains(&s) && !have_from.contains(&s),
                        None => oif && want_oif && !have_oif,
                    };
                if !current {
                    self.delete_rule(r, &format!("an old routing rule of member {ifname}"))
                        .await?;
                } else if let Some(s) = source {
                    have_from.push(s);
                } else {
                    have_oif = true;
                }
            }
            if want_oif && !have_oif {
                let add = self
                    .handle
                    .rule()
                    .add()
                    .output_interface(ifname)
                    .table_id(table)
                    .action(RuleAction::ToTable)
                    .priority(MEMBER_RULE_PRIORITY);
                let done = if v4 {
                    add.v4().execute().await
                } else {
                    add.v6().execute().await
                };
                done.map_err(request(format!("add the routing rule oif {ifname}")))?;
            }
            for a in mine.iter().filter(|a| !have_from.contains(a)) {
                let add = self
                    .handle
                    .rule()
                    .add()
                    .table_id(table)
                    .action(RuleAction::ToTable)
                    .priority(MEMBER_RULE_PRIORITY);
                let done = match *a {
                    IpAddr::V4(a) => add.v4().source_prefix(a, 32).execute().await,
                    IpAddr::V6(a) => add.v6().source_prefix(a, 128).execute().await,
                };
                done.map_err(request(format!("add the routing rule from {a}")))?;
            }
        }
        // IPv4: the subnets of the member's addresses, on link through the member. A lookup
        // that finds nothing here goes on to the next rule (the main table).
        for p in own {
            let IpAddr::V4(a) = p.addr else {
                continue;
            };
            if p.len == 0 || p.len >= 32 {
                continue;
            }
            let bits = u32::from(a) & u32::MAX.checked_shl(32 - u32::from(p.len)).unwrap_or(0);
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::from(bits), p.len)
                .output_interface(ifindex)
                .pref_source(a)
                .scope(RouteScope::Link)
                .table_id(table)
                .build();
            self.handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(request(format!(
                    "add the route of {}/{} through {ifname}",
                    a, p.len
                )))?;
        }
        // IPv6: everything on link through the member (its probes go to on-link targets).
        let route = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
            .output_interface(ifindex)
            .table_id(table)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(request(format!("add the IPv6 route of {ifname}")))
    }

    /// Removes every rule [`Netlink::add_member_routes`] added, both families (the tables'
    /// routes go with their devices, or stay unused); returns how many.
    pub async fn remove_member_rules(&self) -> Result<usize> {
        let mut removed = 0;
        for version in [IpVersion::V4, IpVersion::V6] {
            for r in self.rules(version).await? {
                if table_of(&r).is_some() {
                    self.delete_rule(r, "a member routing rule").await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
