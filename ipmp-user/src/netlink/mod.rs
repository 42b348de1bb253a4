//! Everything ipmpd asks of rtnetlink: reading links and addresses, creating the IPMP interface,
//! assigning data addresses and routes, and the link-event stream ([`events`]).
//!
//! [`Netlink`] wraps one rtnetlink connection; the daemon task that owns the group state machines
//! calls it. Link events arrive from a separate multicast connection ([`events::spawn_monitor`]).

pub mod events;
pub mod rules;
pub mod sysctl;

use std::net::IpAddr;

use futures::TryStreamExt as _;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage, CacheInfo},
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp},
    neighbour::NeighbourState,
    route::RouteMessage,
};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::config::{Prefix, RouteConfig};

/// A netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Request {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {0} does not exist: check the name (ip link) and the config")]
    NoSuchInterface(String),
}

type Result<T> = std::result::Result<T, NetlinkError>;

fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

/// What ipmpd needs to know about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub admin_up: bool,
    /// Carrier (IFF_LOWER_UP).
    pub carrier: bool,
    pub noarp: bool,
    /// `IFLA_INFO_KIND` ("veth", "bridge", …); None for physical NICs.
    pub kind: Option<String>,
    /// ifindex of the master device (bridge, bond, team, VRF) if enslaved.
    pub controller: Option<u32>,
    /// ifindex of the peer for veth (`IFLA_LINK`), when in this namespace.
    pub link: Option<u32>,
    /// XDP program attached (id), if any.
    pub xdp_prog: Option<u32>,
}

impl Link {
    pub fn from_message(msg: &LinkMessage) -> Option<Link> {
        let mut link = Link {
            ifindex: msg.header.index,
            name: String::new(),
            mac: [0; 6],
            mtu: 0,
            admin_up: msg.header.flags.contains(LinkFlags::Up),
            carrier: msg.header.flags.contains(LinkFlags::LowerUp),
            noarp: msg.header.flags.contains(LinkFlags::Noarp),
            kind: None,
            controller: None,
            link: None,
            xdp_prog: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Address(mac) if mac.len() == 6 => {
                    link.mac.copy_from_slice(mac);
                }
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Controller(c) => link.controller = Some(*c),
                LinkAttribute::Link(l) => link.link = Some(*l),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                LinkAttribute::Xdp(xdp) => {
                    for x in xdp {
                        if let LinkXdp::ProgId(id) = x
                            && *id != 0
                        {
                            link.xdp_prog = Some(*id);
                        }
                    }
                }
                _ => {}
            }
        }
        (!link.name.is_empty()).then_some(link)
    }
}

/// An address as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// One rtnetlink connection.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a connection; its I/O runs on a spawned tokio task.
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub async fn links(&self) -> Result<Vec<Link>> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("list links"))?;
        Ok(msgs.iter().filter_map(Link::from_message).collect())
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        Ok(self.links().await?.into_iter().find(|l| l.name == name))
    }

    pub async fn link_by_index(&self, ifindex: u32) -> Result<Option<Link>> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .find(|l| l.ifindex == ifindex))
    }

    /// Creates the IPMP interface: one end of a veth pair whose peer stays up and unused (this
    /// kernel has no `dummy`, and veth exists on every distro kernel). NOARP: the group's
    /// members answer ARP/NDP, the TC program decides which member sends.
    pub async fn create_ipmp_interface(&self, name: &str, peer: &str, mtu: u32) -> Result<Link> {
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).mtu(mtu).arp(false).build())
            .execute()
            .await
            .map_err(request(format!(
                "create IPMP interface {name} (veth peer {peer})"
            )))?;
        let link = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| NetlinkError::NoSuchInterface(name.to_string()))?;
        let peer_link = self
            .link_by_name(peer)
            .await?
            .ok_or_else(|| NetlinkError::NoSuchInterface(peer.to_string()))?;
        self.set_mtu(peer_link.ifindex, mtu).await?;
        self.set_up(peer_link.ifindex, true).await?;
        Ok(link)
    }

    pub async fn delete_link(&self, ifindex: u32) -> Result<()> {
        self.handle
            .link()
            .del(ifindex)
            .execute()
            .await
            .map_err(request(format!("delete link {ifindex}")))
    }

    pub async fn set_up(&self, ifindex: u32, up: bool) -> Result<()> {
        let msg = LinkUnspec::new_with_index(ifindex);
        let msg = if up { msg.up() } else { msg.down() };
        self.handle
            .link()
            .set(msg.build())
            .execute()
            .await
            .map_err(request(format!(
                "set link {ifindex} {}",
                if up { "up" } else { "down" }
            )))
    }

    pub async fn set_mtu(&self, ifindex: u32, mtu: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(ifindex).mtu(mtu).build())
            .execute()
            .await
            .map_err(request(format!("set link {ifindex} mtu {mtu}")))
    }

    /// Members receive every multicast group so that the cast member can pass what the IPMP
    /// interface joined (real NICs filter multicast by MAC otherwise).
    pub async fn set_allmulticast(&self, ifindex: u32) -> Result<()> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(ifindex)
                    .allmulticast(true)
                    .build(),
            )
            .execute()
            .await
            .map_err(request(format!("set link {ifindex} allmulticast")))
    }

    pub async fn addresses(&self) -> Result<Vec<Address>> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("list addresses"))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let addr = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = addr.or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                Some(Address {
                    ifindex: m.header.index,
                    addr,
                    prefix_len: m.header.prefix_len,
                })
            })
            .collect())
    }

    /// Adds (or keeps) an address. `nodad`: the IPMP interface is NOARP, DAD is the members'
    /// business; `noprefixroute` (test addresses) keeps them from adding routes that compete
    /// with the IPMP interface's and deprecates them so that they are never chosen as source.
    pub async fn add_address(
        &self,
        ifindex: u32,
        prefix: &Prefix,
        noprefixroute: bool,
    ) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(ifindex, prefix.addr, prefix.len)
            .replace();
        let mut flags = AddressFlags::Nodad;
        if noprefixroute {
            flags |= AddressFlags::Noprefixroute;
            // A test address is deprecated (preferred lifetime 0, as Solaris marks test
            // addresses DEPRECATED): source address selection avoids it (RFC 6724 rule 3),
            // while the prober binds to it explicitly.
            let mut lifetimes = CacheInfo::default();
            lifetimes.ifa_preferred = 0;
            lifetimes.ifa_valid = u32::MAX;
            req.message_mut()
                .attributes
                .push(AddressAttribute::CacheInfo(lifetimes));
        }
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(flags));
        req.execute()
            .await
            .map_err(request(format!("add address {prefix} to link {ifindex}")))
    }

    /// Adds or replaces a route through the IPMP interface.
    pub async fn replace_route(&self, ifindex: u32, route: &RouteConfig) -> Result<()> {
        let msg: RouteMessage = match (route.to.addr, route.via) {
            (IpAddr::V4(to), IpAddr::V4(via)) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(to, route.to.len)
                .gateway(via)
                .output_interface(ifindex)
                .build(),
            (IpAddr::V6(to), IpAddr::V6(via)) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(to, route.to.len)
                .gateway(via)
                .output_interface(ifindex)
                .build(),
            _ => {
                return Err(NetlinkError::Request {
                    what: format!("route to {} via {}", route.to, route.via),
                    source: rtnetlink::Error::RequestFailed,
                });
            }
        };
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(request(format!(
                "add route to {} via {} on link {ifindex}",
                route.to, route.via
            )))
    }
}

impl Netlink {
    /// The gateways of the main table's routes through `ifindex` (router probe targets, which
    /// follow the routing table), in route order without repeats.
    pub async fn gateways(&self, ifindex: u32) -> Result<Vec<IpAddr>> {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute};
        let mut out = Vec::new();
        let queries = [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ];
        for query in queries {
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(request("list routes"))?;
            for r in &routes {
                let through = r
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == ifindex));
                let gateway = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                    RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                    _ => None,
                });
                if let Some(gw) = gateway.filter(|gw| through && !out.contains(gw)) {
                    out.push(gw);
                }
            }
        }
        Ok(out)
    }

    /// Installs `ip` → `mac` on `ifindex` as STALE: usable at once, confirmed by the kernel's
    /// own unicast probe on first use (RFC 4861 §7.3.3 semantics, also for ARP).
    pub async fn replace_neighbour(&self, ifindex: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        self.set_neighbour(ifindex, ip, mac, NeighbourState::Stale)
            .await
    }

    /// The IPMP interface is NOARP, so the kernel gives every next hop on it — the subnet
    /// broadcast address too — the interface's own MAC, and the TC program would hash a
    /// subnet broadcast like unicast. A permanent entry with the broadcast MAC sends it down
    /// the cast path instead.
    pub async fn set_broadcast_neighbour(&self, ifindex: u32, prefix: &Prefix) -> Result<()> {
        let IpAddr::V4(v4) = prefix.addr else {
            return Ok(());
        };
        if prefix.len >= 31 {
            return Ok(());
        }
        let host_bits = u32::MAX >> prefix.len;
        let bcast = std::net::Ipv4Addr::from(u32::from(v4) | host_bits);
        self.set_neighbour(
            ifindex,
            IpAddr::V4(bcast),
            [0xff; 6],
            NeighbourState::Permanent,
        )
        .await
    }

    async fn set_neighbour(
        &self,
        ifindex: u32,
        ip: IpAddr,
        mac: [u8; 6],
        state: NeighbourState,
    ) -> Result<()> {
        self.handle
            .neighbours()
            .add(ifindex, ip)
            .link_layer_address(&mac)
            .state(state)
            .replace()
            .execute()
            .await
            .map_err(request(format!("neighbour {ip} on link {ifindex}")))
    }
}

/// The name of the unused veth peer of an IPMP interface ("ipmp0" → "ipmp0-p"), ≤ 15 bytes.
pub fn peer_name(ipmp: &str) -> String {
    let mut base: String = ipmp.chars().take(13).collect();
    base.push_str("-p");
    base
}

/// Whether a link looks like an IPMP interface ipmpd created (veth, NOARP).
pub fn is_ipmp_interface(link: &Link) -> bool {
    link.noarp && link.kind.as_deref() == Some(InfoKind::Veth.to_string().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_fit() {
        assert_eq!(peer_name("ipmp0"), "ipmp0-p");
        assert_eq!(peer_name("abcdefghijklmno").len(), 15);
    }
}
