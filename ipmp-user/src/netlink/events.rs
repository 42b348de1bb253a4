//! The link-event stream: rtnetlink multicast (RTNLGRP_LINK), no polling. Decoding is pure and
//! unit-tested; [`spawn_monitor`] is the actor that feeds the daemon.

use futures::StreamExt as _;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::{RouteNetlinkMessage, link::LinkMessage};
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

use super::{Link, NetlinkError};

/// A change of a link, as the daemon consumes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// RTM_NEWLINK: the link exists with this state (a change or a new link).
    Changed(Link),
    /// RTM_DELLINK.
    Removed { ifindex: u32, name: String },
}

/// Decodes one rtnetlink message; None for messages that are not about links.
pub fn decode(msg: &RouteNetlinkMessage) -> Option<LinkEvent> {
    match msg {
        RouteNetlinkMessage::NewLink(m) => Link::from_message(m).map(LinkEvent::Changed),
        RouteNetlinkMessage::DelLink(m) => Some(removed(m)),
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

/// Subscribes to link events and forwards them to `tx` until the receiver is dropped.
/// Subscribe before reading the initial link state so no change falls in between.
pub fn spawn_monitor(tx: mpsc::Sender<LinkEvent>) -> Result<(), NetlinkError> {
    let (conn, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
            .map_err(NetlinkError::Connect)?;
    tokio::spawn(conn);
    tokio::spawn(async move {
        while let Some((message, _)) = messages.next().await {
            if let NetlinkPayload::InnerMessage(inner) = message.payload
                && let Some(event) = decode(&inner)
                && tx.send(event).await.is_err()
            {
                break;
            }
        }
        tracing::debug!("link monitor stopped");
    });
    Ok(())
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
            decode(&RouteNetlinkMessage::NewAddress(Default::default())),
            None
        );
    }
}
