//! The kernel-event stream: rtnetlink multicast for links (RTNLGRP_LINK), neighbours
//! (RTNLGRP_NEIGH), routes (RTNLGRP_IPV4_ROUTE / RTNLGRP_IPV6_ROUTE), policy rules
//! (RTNLGRP_IPV4_RULE / RTNLGRP_IPV6_RULE) and addresses (RTNLGRP_IPV4_IFADDR /
//! RTNLGRP_IPV6_IFADDR), no polling. Decoding is pure and unit-tested; [`spawn_monitor`] is the actor
//! that feeds the daemon.

use futures::StreamExt as _;
use netlink_packet_core::NetlinkPayload;
use netlink_sys::AsyncSocket as _;
use std::net::IpAddr;

use netlink_packet_route::{
    RouteNetlinkMessage,
    link::LinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

use futures::TryStreamExt as _;

use super::{Link, Netlink, NetlinkError, request};

/// A kernel change, as the daemon consumes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: the link exists with this state (a change or a new link).
    Changed(Link),
    /// RTM_DELLINK.
    Removed { ifindex: u32, name: String },
    /// RTM_NEWNEIGH / RTM_DELNEIGH of an IPv4/IPv6 unicast neighbour.
    Neighbour(NeighbourChange),
    /// RTM_NEWADDR / RTM_DELADDR on interface `ifindex` (a member's routing rules follow its
    /// addresses).
    AddressChanged { ifindex: u32 },
    /// RTM_NEWROUTE / RTM_DELROUTE of any route, or RTM_NEWRULE / RTM_DELRULE: the next hops
    /// the programs remember are retired. `gateway_oif`: the route has a gateway through that
    /// interface (router targets follow those).
    RouteChanged { gateway_oif: Option<u32> },
    /// The kernel dropped events (the socket's receive buffer overflowed, ENOBUFS): state must
    /// be read again, or a carrier change that fell in the gap is lost for good.
    Overrun,
}

/// A link as the daemon last saw it, for [`differences`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub ifindex: u32,
    pub name: String,
    /// Administratively up with carrier.
    pub up: bool,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// After lost events: what a fresh dump of the links says that the daemon's view does not, as
/// the lost events would have said it. A link whose state, MAC or MTU differs is `Changed`; one
/// whose ifindex is gone but whose name is back (re-created) is `Changed` with the new link;
/// one gone altogether is `Removed`. Links the daemon does not know are left out. Pure.
pub fn differences(known: &[Known], dump: &[Link]) -> Vec<LinkEvent> {
    known
        .iter()
        .filter_map(|k| match dump.iter().find(|l| l.ifindex == k.ifindex) {
            Some(l) => {
                let same = (l.admin_up && l.carrier) == k.up && l.mac == k.mac && l.mtu == k.mtu;
                (!same).then(|| LinkEvent::Changed(l.clone()))
            }
            None => Some(match dump.iter().find(|l| l.name == k.name) {
                Some(l) => LinkEvent::Changed(l.clone()),
                None => LinkEvent::Removed {
                    ifindex: k.ifindex,
                    name: k.name.clone(),
                },
            }),
        })
        .collect()
}

/// A route change, with the output interface when the route has a gateway.
fn route_changed(m: &netlink_packet_route::route::RouteMessage) -> LinkEvent {
    use netlink_packet_route::route::RouteAttribute;
    let gateway = m
        .attributes
        .iter()
        .any(|a| matches!(a, RouteAttribute::Gateway(_)));
    let oif = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    });
    LinkEvent::RouteChanged {
        gateway_oif: oif.filter(|_| gateway),
    }
}

/// A neighbour entry the kernel has just confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// A neighbour entry as an event left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourChange {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
    /// `None`: the entry was deleted.
    pub state: Option<NeighbourState>,
}

impl NeighbourChange {
    /// The entry as a confirmed neighbour to share with the other members (REACHABLE).
    pub fn reachable(&self) -> Option<Neighbour> {
        (self.state == Some(NeighbourState::Reachable)).then_some(Neighbour {
            ifindex: self.ifindex,
            ip: self.ip,
            mac: self.mac?,
        })
    }

    /// The MAC a frame to this neighbour may be sent to without the kernel's neighbour code:
    /// the entry is confirmed (REACHABLE), being revalidated while still in use (DELAY,
    /// PROBE: the kernel sends to the same MAC meanwhile) or static (PERMANENT).
    pub fn confirmed_mac(&self) -> Option<[u8; 6]> {
        use NeighbourState as S;
        matches!(
            self.state?,
            S::Reachable | S::Delay | S::Probe | S::Permanent
        )
        .then_some(self.mac?)
    }

    /// STALE: the MAC is unconfirmed; the kernel revalidates it on its next use.
    pub fn is_stale(&self) -> bool {
        self.state == Some(NeighbourState::Stale)
    }
}

/// A neighbour message's entry; `None` for multicast, unspecified or non-IP destinations.
pub fn neighbour_change(m: &NeighbourMessage, deleted: bool) -> Option<NeighbourChange> {
    let mut ip = None;
    let mut mac = None;
    for attr in &m.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                ip = Some(IpAddr::V4(*v4));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                ip = Some(IpAddr::V6(*v6));
            }
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                let mut a = [0; 6];
                a.copy_from_slice(l);
                mac = Some(a);
            }
            _ => {}
        }
    }
    let ip = ip.filter(|ip| !ip.is_multicast() && !ip.is_unspecified())?;
    Some(NeighbourChange {
        ifindex: m.header.ifindex,
        ip,
        mac,
        state: (!deleted).then_some(m.header.state),
    })
}

/// Decodes one rtnetlink message; None for messages ipmpd does not follow.
pub fn decode(msg: &RouteNetlinkMessage) -> Option<LinkEvent> {
    match msg {
        RouteNetlinkMessage::NewLink(m) => Link::from_message(m).map(LinkEvent::Changed),
        RouteNetlinkMessage::DelLink(m) => Some(removed(m)),
        RouteNetlinkMessage::NewNeighbour(m) => {
            neighbour_change(m, false).map(LinkEvent::Neighbour)
        }
        RouteNetlinkMessage::DelNeighbour(m) => neighbour_change(m, true).map(LinkEvent::Neighbour),
        RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m) => {
            Some(route_changed(m))
        }
        RouteNetlinkMessage::NewRule(_) | RouteNetlinkMessage::DelRule(_) => {
            Some(LinkEvent::RouteChanged { gateway_oif: None })
        }
        RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m) => {
            Some(LinkEvent::AddressChanged {
                ifindex: m.header.index,
            })
        }
        _ => None,
    }
}

fn removed(m: &LinkMessage) -> LinkEvent {
    let name = Link::from_message(m).map(|l| l.name).unwrap_or_default();
    LinkEvent::Removed {
        ifindex: m.header.index,
        name,
    }
}

impl Netlink {
    /// Every IPv4/IPv6 unicast neighbour entry on every link.
    pub async fn neighbours(&self) -> super::Result<Vec<NeighbourChange>> {
        let msgs: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("list neighbours"))?;
        Ok(msgs
            .iter()
            .filter_map(|m| neighbour_change(m, false))
            .collect())
    }

    /// Has the kernel treat `ip` on `ifindex` as used (NTF_USE): a STALE entry goes to DELAY
    /// and is revalidated with a unicast probe, as if a packet had gone out through it.
    pub async fn touch_neighbour(&self, ifindex: u32, ip: IpAddr) -> super::Result<()> {
        self.handle
            .neighbours()
            .add(ifindex, ip)
            .state(NeighbourState::Stale)
            .flags(netlink_packet_route::neighbour::NeighbourFlags::Use)
            .execute()
            .await
            .map_err(request(format!("use neighbour {ip} on link {ifindex}")))
    }
}

/// Subscribes to link and neighbour events and forwards them to `tx` until the receiver is dropped.
/// Subscribe before reading the initial link state so no change falls in between. `rcvbuf` is
/// the socket's receive buffer in bytes (`netlink_rcvbuf_bytes`).
pub fn spawn_monitor(tx: mpsc::Sender<LinkEvent>, rcvbuf: usize) -> Result<(), NetlinkError> {
    let mut sub = Subscription::open(rcvbuf)?;
    tokio::spawn(async move {
        while let Some((message, _)) = sub.messages.next().await {
            let event = match message.payload {
                NetlinkPayload::InnerMessage(inner) => decode(&inner),
                NetlinkPayload::Overrun(_) => {
                    // Start afresh on a new socket first, then have the daemon re-read the
                    // state: whatever changes after that is seen on the new socket.
                    match Subscription::open(rcvbuf) {
                        Ok(fresh) => sub = fresh,
                        Err(e) => tracing::error!("cannot resubscribe to link events: {e}"),
                    }
                    Some(LinkEvent::Overrun)
                }
                _ => None,
            };
            if let Some(event) = event
                && tx.send(event).await.is_err()
            {
                break;
            }
        }
        tracing::debug!("link monitor stopped");
    });
    Ok(())
}

/// One rtnetlink multicast socket subscribed to link and neighbour events; its connection
/// task ends when this is dropped.
struct Subscription {
    messages: futures::channel::mpsc::UnboundedReceiver<(
        netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>,
        netlink_sys::SocketAddr,
    )>,
    conn: tokio::task::JoinHandle<()>,
}

impl Subscription {
    fn open(rcvbuf: usize) -> Result<Self, NetlinkError> {
        let (mut conn, _handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Neigh,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Rule,
            MulticastGroup::Ipv6Rule,
        ])
        .map_err(NetlinkError::Connect)?;
        // Room for bursts (many links or neighbours changing at once); an overrun is still
        // handled by the caller. FORCE passes net.core.rmem_max (ipmpd has CAP_NET_ADMIN).
        let size = i32::try_from(rcvbuf).unwrap_or(i32::MAX) / 2;
        let socket = conn.socket_mut().socket_mut();
        if let Err(e) = nix::sys::socket::setsockopt(
            &*socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &(size as usize),
        ) {
            tracing::warn!("cannot set the netlink receive buffer to {rcvbuf} bytes: {e}");
        }
        Ok(Self {
            messages,
            conn: tokio::spawn(conn),
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{LinkAttribute, LinkFlags};

    use super::*;

    fn msg(index: u32, name: &str, flags: LinkFlags) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes
            .push(LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]));
        m.attributes.push(LinkAttribute::Mtu(1500));
        m
    }

    #[test]
    fn every_route_and_rule_change_is_an_event() {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
        let mut via = RouteMessage::default();
        via.attributes.push(RouteAttribute::Oif(7));
        via.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(
                "198.51.100.1".parse().unwrap(),
            )));
        let gateway = Some(LinkEvent::RouteChanged {
            gateway_oif: Some(7),
        });
        assert_eq!(decode(&RouteNetlinkMessage::NewRoute(via.clone())), gateway);
        assert_eq!(decode(&RouteNetlinkMessage::DelRoute(via)), gateway);
        // A connected route (no gateway) is not a router, but may change a next hop.
        let mut connected = RouteMessage::default();
        connected.attributes.push(RouteAttribute::Oif(7));
        let other = Some(LinkEvent::RouteChanged { gateway_oif: None });
        assert_eq!(decode(&RouteNetlinkMessage::NewRoute(connected)), other);
        let rule = netlink_packet_route::rule::RuleMessage::default();
        assert_eq!(decode(&RouteNetlinkMessage::NewRule(rule.clone())), other);
        assert_eq!(decode(&RouteNetlinkMessage::DelRule(rule)), other);
    }

    #[test]
    fn carrier_follows_lower_up() {
        let up = decode(&RouteNetlinkMessage::NewLink(msg(
            3,
            "m0",
            LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running,
        )));
        let Some(LinkEvent::Changed(link)) = up else {
            panic!("expected a change, got {up:?}");
        };
        assert!(link.carrier && link.admin_up);
        assert_eq!(link.mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(link.mtu, 1500);

        let down = decode(&RouteNetlinkMessage::NewLink(msg(3, "m0", LinkFlags::Up)));
        let Some(LinkEvent::Changed(link)) = down else {
            panic!("expected a change, got {down:?}");
        };
        assert!(!link.carrier && link.admin_up);
    }

    #[test]
    fn neighbour_states_decide_sharing_and_addressing() {
        let mut m = NeighbourMessage::default();
        m.header.ifindex = 4;
        m.header.state = NeighbourState::Reachable;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                "198.51.100.1".parse().unwrap(),
            )));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 9]));
        let change =
            |m: &NeighbourMessage| match decode(&RouteNetlinkMessage::NewNeighbour(m.clone())) {
                Some(LinkEvent::Neighbour(c)) => c,
                other => panic!("not a neighbour change: {other:?}"),
            };
        let reachable = change(&m);
        assert_eq!(
            reachable.reachable(),
            Some(Neighbour {
                ifindex: 4,
                ip: "198.51.100.1".parse().unwrap(),
                mac: [2, 0, 0, 0, 0, 9]
            })
        );
        assert_eq!(reachable.confirmed_mac(), Some([2, 0, 0, 0, 0, 9]));
        let mut stale = m.clone();
        stale.header.state = NeighbourState::Stale;
        let stale = change(&stale);
        assert_eq!(stale.reachable(), None);
        assert_eq!(stale.confirmed_mac(), None);
        assert!(stale.is_stale());
        for state in [NeighbourState::Delay, NeighbourState::Probe] {
            let mut revalidating = m.clone();
            revalidating.header.state = state;
            let revalidating = change(&revalidating);
            assert_eq!(revalidating.reachable(), None, "{state:?}");
            assert!(revalidating.confirmed_mac().is_some(), "{state:?}");
        }
        let mut failed = m.clone();
        failed.header.state = NeighbourState::Failed;
        assert_eq!(change(&failed).confirmed_mac(), None);
        let mut incomplete = m.clone();
        incomplete.attributes.pop();
        assert_eq!(change(&incomplete).reachable(), None);
        assert_eq!(change(&incomplete).confirmed_mac(), None);
        let Some(LinkEvent::Neighbour(deleted)) = decode(&RouteNetlinkMessage::DelNeighbour(m))
        else {
            panic!("a deletion is a neighbour change");
        };
        assert_eq!((deleted.state, deleted.confirmed_mac()), (None, None));
    }

    #[test]
    fn removal_and_other_messages() {
        let gone = decode(&RouteNetlinkMessage::DelLink(msg(
            3,
            "m0",
            LinkFlags::empty(),
        )));
        assert_eq!(
            gone,
            Some(LinkEvent::Removed {
                ifindex: 3,
                name: "m0".into()
            })
        );
        assert_eq!(
            decode(&RouteNetlinkMessage::NewQueueDiscipline(Default::default())),
            None
        );
    }

    fn known(ifindex: u32, name: &str, up: bool) -> Known {
        Known {
            ifindex,
            name: name.into(),
            up,
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
        }
    }

    fn dumped(ifindex: u32, name: &str, flags: LinkFlags) -> Link {
        Link::from_message(&msg(ifindex, name, flags)).expect("a link")
    }

    #[test]
    fn a_dump_that_matches_has_no_differences() {
        let up = LinkFlags::Up | LinkFlags::LowerUp;
        let dump = [
            dumped(3, "m0", up),
            dumped(4, "m1", LinkFlags::Up),
            dumped(9, "other", up),
        ];
        let view = [known(3, "m0", true), known(4, "m1", false)];
        assert_eq!(differences(&view, &dump), []);
    }

    #[test]
    fn lost_changes_come_back_as_events() {
        let up = LinkFlags::Up | LinkFlags::LowerUp;
        // m0 lost its carrier, m1 got it back, m2 was deleted, m3 re-created (new ifindex),
        // m4 changed its MTU.
        let mut m4 = dumped(7, "m4", up);
        m4.mtu = 9000;
        let dump = [
            dumped(3, "m0", LinkFlags::Up),
            dumped(4, "m1", up),
            dumped(20, "m3", up),
            m4.clone(),
        ];
        let view = [
            known(3, "m0", true),
            known(4, "m1", false),
            known(5, "m2", true),
            known(6, "m3", true),
            known(7, "m4", true),
        ];
        assert_eq!(
            differences(&view, &dump),
            [
                LinkEvent::Changed(dump[0].clone()),
                LinkEvent::Changed(dump[1].clone()),
                LinkEvent::Removed {
                    ifindex: 5,
                    name: "m2".into()
                },
                LinkEvent::Changed(dump[2].clone()),
                LinkEvent::Changed(m4),
            ]
        );
    }

    #[test]
    fn address_changes_name_their_interface() {
        let mut m = netlink_packet_route::address::AddressMessage::default();
        m.header.index = 7;
        for decoded in [
            decode(&RouteNetlinkMessage::NewAddress(m.clone())),
            decode(&RouteNetlinkMessage::DelAddress(m)),
        ] {
            assert_eq!(decoded, Some(LinkEvent::AddressChanged { ifindex: 7 }));
        }
    }
}
