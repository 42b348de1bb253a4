//! The members' own routing table. Data addresses and their routes live on the IPMP
//! interface, so a member has no route through itself, yet some traffic is the member's own:
//! its probes, its test addresses, the neighbour discovery it does for its next hops. Each
//! member gets a table (`MEMBER_TABLE_BASE` + ifindex) that routes through the member, and
//! rules that send that traffic there:
//! - `oif <member>` (both families): sockets bound to the member (IPv6 refuses to send from a
//!   device without a route through it), and the reverse-path lookups of firewall rules such
//!   as firewalld's `fib saddr . iif oif missing drop`, which ask for a route back through
//!   the device a packet came in on;
//! - `from <IPv4 test address>`: the kernel's own reverse-path filter (`rp_filter` 1 or 2),
//!   which looks the sender up as a route from the local address, for what arrives for the
//!   test address (probe replies, ARP requests for it).
//!
//! Data traffic has neither the member as its output device nor a test address as its source
//! (test addresses are deprecated), so it never matches.

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

    /// Installs member `ifname`'s table and rules (see the module), replacing what an earlier
    /// incarnation of the member (another ifindex) or an earlier test address left.
    pub async fn add_member_routes(
        &self,
        ifname: &str,
        ifindex: u32,
        test_addresses: &[Prefix],
    ) -> Result<()> {
        let table = MEMBER_TABLE_BASE + ifindex;
        let test_v4: Vec<Ipv4Addr> = test_addresses
            .iter()
            .filter_map(|p| match p.addr {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        for version in [IpVersion::V4, IpVersion::V6] {
            let mut have_oif = false;
            let mut have_from: Vec<Ipv4Addr> = Vec::new();
            for r in self.rules(version.clone()).await? {
                let Some(t) = table_of(&r) else {
                    continue;
                };
                let source = source_of(&r);
                let mine = oif_of(&r) == Some(ifname)
                    || source.is_some_and(|s| test_v4.iter().any(|a| IpAddr::V4(*a) == s))
                    || t == table;
                if !mine {
                    continue;
                }
                let current = t == table
                    && match source {
                        Some(IpAddr::V4(a)) => test_v4.contains(&a),
                        Some(IpAddr::V6(_)) => false,
                        None => oif_of(&r) == Some(ifname),
                    };
                if !current {
                    self.delete_rule(r, &format!("an old routing rule of member {ifname}"))
                        .await?;
                } else if let Some(IpAddr::V4(a)) = source {
                    have_from.push(a);
                } else {
                    have_oif = true;
                }
            }
            if !have_oif {
                let add = self.handle.rule().add().output_interface(ifname);
                let add = add
                    .table_id(table)
                    .action(RuleAction::ToTable)
                    .priority(MEMBER_RULE_PRIORITY);
                let done = match version {
                    IpVersion::V4 => add.v4().execute().await,
                    IpVersion::V6 => add.v6().execute().await,
                };
                done.map_err(request(format!("add the routing rule oif {ifname}")))?;
            }
            if version == IpVersion::V4 {
                for a in test_v4.iter().filter(|a| !have_from.contains(a)) {
                    self.handle
                        .rule()
                        .add()
                        .v4()
                        .source_prefix(*a, 32)
                        .table_id(table)
                        .action(RuleAction::ToTable)
                        .priority(MEMBER_RULE_PRIORITY)
                        .execute()
                        .await
                        .map_err(request(format!("add the routing rule from {a}")))?;
                }
            }
        }
        // IPv4: the test addresses' subnets, on link through the member. A lookup that finds
        // nothing here goes on to the next rule (the main table).
        for p in test_addresses {
            let IpAddr::V4(a) = p.addr else {
                continue;
            };
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
                .map_err(request(format!("add the test subnet route of {ifname}")))?;
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
