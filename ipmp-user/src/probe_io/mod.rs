//! The probe I/O actor: the sockets that carry in.mpathd-style echo probes for one group, and
//! the glue between them and the pure probe logic ([`crate::mpathd::Prober`]).
//!
//! Each probing member and family gets a raw socket pinned to the member; a task per socket
//! forwards replies (with their receive time) to the daemon, which feeds them to the prober.
//! Members without a test address probe IPv6 from their link-local address (ICMPv6 echo), and
//! IPv4 — or IPv6 while no link-local address exists — with ARP / NDP ([`neigh`]) from one
//! send-only packet socket. XDP timestamps every reply it recognises into `IPMP_PROBES` ([`ring`]); echo replies
//! also reach the sockets when the ring is full or ring-only mode is off.
//!
//! The prober decides what to send and when; [`GroupProbing::send`] only sends.

pub mod neigh;
pub mod ring;
pub mod socket;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::Instant,
};

use ipmp_common::{FAMILY_V4, FAMILY_V6, PROBE_EV_ARP, PROBE_EV_ECHO, PROBE_EV_NA, ProbeEvent};

use rand::{SeedableRng as _, rngs::StdRng};
use tokio::sync::mpsc;

use crate::{
    announce::PacketSocket,
    config::{Config, GroupConfig},
    group::{Group, MemberId},
    mpathd::{
        Family, FamilyProbe, ProbeKind, ProbeOutput, ProbeSpec, Prober,
        payload::{self, Echo},
    },
};

pub use socket::ProbeSocket;

/// A reply to one of a group's probes, from a member's probe socket or timestamped by the
/// member programs into the ring; the daemon hands it to the group's prober.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReply {
    pub group: usize,
    pub member: MemberId,
    pub family: Family,
    pub from: IpAddr,
    /// Receive time: the kernel's (ring) or the socket task's, on `Instant`'s clock.
    pub rx: Instant,
    pub body: ReplyBody,
}

/// What answered the probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyBody {
    /// An echo reply: the ICMP/ICMPv6 message (from a ring event: rebuilt from the cookie,
    /// identifier and sequence XDP checked; the prober checks them again).
    Echo(Vec<u8>),
    /// An ARP reply or solicited NA from a link-layer target: the protocol address it is
    /// addressed to (ARP target protocol address / NA destination) and the hardware address
    /// it came from.
    Neigh { local: IpAddr, hardware: [u8; 6] },
}

/// A member's NIC as the probe sockets need it: name, ifindex, MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberNic {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// Probing of one group: the pure prober, its sockets and its randomness.
pub struct GroupProbing {
    pub prober: Prober,
    pub rng: StdRng,
    members: Vec<MemberNic>,
    sockets: HashMap<(MemberId, Family), Arc<ProbeSocket>>,
    /// Link-layer probing: the send-only packet socket, and per (member, family) the targets
    /// XDP must watch for answers.
    packet: Option<PacketSocket>,
    neigh_targets: HashMap<(MemberId, Family), Vec<IpAddr>>,
    /// Members whose missing link-local address was already logged.
    no_link_local: Vec<MemberId>,
    /// The reply-forwarding task of each echo socket.
    tasks: HashMap<(MemberId, Family), tokio::task::JoinHandle<()>>,
    group: usize,
    replies: mpsc::Sender<ProbeReply>,
    /// The test address each echo socket sends from.
    sources: HashMap<(MemberId, Family), IpAddr>,
}

impl Drop for GroupProbing {
    fn drop(&mut self) {
        for t in self.tasks.values() {
            t.abort();
        }
    }
}

/// Why probing could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    #[error("probe socket on {member}: {source} (ipmpd needs CAP_NET_RAW)")]
    Socket {
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Probe(#[from] crate::mpathd::ProbeError),
}

impl GroupProbing {
    /// Starts probing for group `gi` when at least one member probes (a test address, or
    /// link-layer probing towards targets); `None` otherwise (link state is then the only
    /// detector, as in.mpathd without test addresses). `members` are in the group's member
    /// order; `cookie` is the daemon's (also in `IPMP_CONFIG`).
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the daemon's view of a group"
    )]
    pub fn start(
        config: &Config,
        cfg: &GroupConfig,
        gi: usize,
        fsm: &Group,
        members: &[MemberNic],
        replies: &mpsc::Sender<ProbeReply>,
        cookie: u64,
        now: Instant,
    ) -> Result<Option<Self>, ProberError> {
        let mut rng = StdRng::from_os_rng();
        let mut spec = ProbeSpec::from_config(config, cfg, cookie);
        // IPv6 without a test address: ICMPv6 echo from the member's link-local address, as
        // Solaris uses link-local test addresses (cookie-checked, unlike a neighbour
        // advertisement). A member without one now sends neighbour solicitations from the
        // one it gets later (neigh_frame looks it up at each send).
        for (m, spec_m) in members.iter().zip(spec.members.iter_mut()) {
            if spec_m.v6 == FamilyProbe::LinkLayer
                && let Some(ll) = neigh::link_local_of(&m.name)
            {
                spec_m.v6 = FamilyProbe::TestAddress(crate::config::Prefix::host(IpAddr::V6(ll)));
            }
        }
        let probing: Vec<(MemberId, Family, IpAddr)> = spec
            .members
            .iter()
            .enumerate()
            .flat_map(|(mi, m)| {
                [(Family::V4, m.v4), (Family::V6, m.v6)]
                    .into_iter()
                    .filter_map(move |(family, p)| match p {
                        FamilyProbe::TestAddress(prefix) => Some((mi, family, prefix.addr)),
                        _ => None,
                    })
            })
            .collect();
        let mut neigh_targets = HashMap::new();
        for (mi, m) in spec.members.iter().enumerate() {
            for (family, p) in [(Family::V4, m.v4), (Family::V6, m.v6)] {
                if p == FamilyProbe::LinkLayer {
                    neigh_targets.insert((mi, family), family_targets(cfg, family));
                }
            }
        }
        if probing.is_empty() && neigh_targets.is_empty() {
            return Ok(None);
        }
        let packet = if neigh_targets.is_empty() {
            None
        } else {
            Some(PacketSocket::open().map_err(|source| ProberError::Socket {
                member: "(packet socket)".into(),
                source,
            })?)
        };
        let mut prober = Prober::new(spec, fsm, now, &mut rng)?;
        let own: Vec<IpAddr> = cfg
            .data_addresses
            .iter()
            .map(|p| p.addr)
            .chain(
                cfg.members
                    .iter()
                    .filter_map(|m| m.test_address.map(|p| p.addr)),
            )
            .collect();
        prober.set_own_addresses(own);
        for family in [Family::V4, Family::V6] {
            let routers: Vec<IpAddr> = cfg
                .routes
                .iter()
                .map(|r| r.via)
                .filter(|via| via.is_ipv4() == (family == Family::V4))
                .collect();
            // The configuration's routes to start with; the daemon then follows the routing
            // table (Daemon::follow_routes).
            let _ = prober.set_routers(family, &routers, now);
        }
        let mut this = Self {
            prober,
            rng,
            members: members.to_vec(),
            sockets: HashMap::new(),
            packet,
            neigh_targets,
            no_link_local: Vec::new(),
            tasks: HashMap::new(),
            group: gi,
            replies: replies.clone(),
            sources: HashMap::new(),
        };
        for (mi, family, src) in probing {
            this.sources.insert((mi, family), src);
            this.open_socket(mi, family)?;
        }
        Ok(Some(this))
    }

    /// Opens (again) the echo socket of member `mi` in `family` and the task that forwards
    /// its replies; the old ones, if any, are closed.
    fn open_socket(&mut self, mi: MemberId, family: Family) -> Result<(), ProberError> {
        let (Some(MemberNic { name, ifindex, .. }), Some(src)) =
            (self.members.get(mi), self.sources.get(&(mi, family)))
        else {
            return Ok(());
        };
        let sock = ProbeSocket::open(name, *ifindex, Some(*src), family == Family::V6).map_err(
            |source| ProberError::Socket {
                member: name.clone(),
                source,
            },
        )?;
        let sock = Arc::new(sock);
        self.sockets.insert((mi, family), Arc::clone(&sock));
        let tx = self.replies.clone();
        let name = name.clone();
        let gi = self.group;
        let task = tokio::spawn(async move {
            loop {
                match sock.recv().await {
                    Ok((from, icmp)) => {
                        let reply = ProbeReply {
                            group: gi,
                            member: mi,
                            family,
                            from,
                            rx: Instant::now(),
                            body: ReplyBody::Echo(icmp),
                        };
                        if tx.send(reply).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::debug!(member = %name, "probe socket: {e}"),
                }
            }
        });
        if let Some(old) = self.tasks.insert((mi, family), task) {
            old.abort();
        }
        Ok(())
    }

    /// Member `mi` was re-created (new ifindex, maybe a new MAC): its sockets are bound to the
    /// old device, so they are opened again.
    pub fn member_replaced(
        &mut self,
        mi: MemberId,
        ifindex: u32,
        mac: [u8; 6],
    ) -> Result<(), ProberError> {
        let Some(m) = self.members.get_mut(mi) else {
            return Ok(());
        };
        m.ifindex = ifindex;
        m.mac = mac;
        self.no_link_local.retain(|x| *x != mi);
        for family in Family::ALL {
            if self.sources.contains_key(&(mi, family)) {
                self.open_socket(mi, family)?;
            }
        }
        Ok(())
    }

    /// The targets member `mi` probes with ARP / NDP (for `IPMP_TARGETS`): every candidate,
    /// so that a replacement target is watched too.
    pub fn neigh_targets(&self, mi: MemberId) -> Vec<IpAddr> {
        Family::ALL
            .iter()
            .filter_map(|f| self.neigh_targets.get(&(mi, *f)))
            .flatten()
            .copied()
            .collect()
    }

    /// New router targets of `family` for the members that probe it with ARP / NDP (whose
    /// replies XDP must watch); true when that changed what `IPMP_TARGETS` should hold.
    pub fn set_link_layer_routers(&mut self, family: Family, routers: &[IpAddr]) -> bool {
        let mut changed = false;
        for ((_, f), targets) in self.neigh_targets.iter_mut() {
            if *f == family && targets.as_slice() != routers {
                *targets = routers.to_vec();
                changed = true;
            }
        }
        changed
    }

    /// Whether any member probes with ICMP (its replies can go through the ring).
    pub fn has_echo(&self) -> bool {
        !self.sockets.is_empty()
    }

    /// The member an event from XDP is about, and what it says; `None` for another group's.
    pub fn ring_reply(&self, ev: &ProbeEvent) -> Option<ProbeReply> {
        let member = self.members.iter().position(|m| m.ifindex == ev.ifindex)?;
        let family = match ev.family {
            FAMILY_V4 => Family::V4,
            FAMILY_V6 => Family::V6,
            _ => return None,
        };
        let addr = |bytes: [u8; 16]| match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(bytes)),
        };
        let from = addr(ev.target);
        let rx = ring::instant_of(ev.rx_ns);
        let body = match ev.kind {
            PROBE_EV_ECHO => {
                let echo = Echo {
                    id: u16::try_from(ev.id).ok()?,
                    seq: ev.seq as u16,
                    timestamp_ns: ev.send_ns,
                    kind: ProbeKind::from_code(ev.msg)?,
                    cookie: ev.cookie,
                };
                ReplyBody::Echo(payload::build_reply(family, &echo).to_vec())
            }
            PROBE_EV_ARP | PROBE_EV_NA => ReplyBody::Neigh {
                local: addr(ev.local),
                hardware: ev.mac,
            },
            _ => return None,
        };
        Some(ProbeReply {
            group: self.group,
            member,
            family,
            from,
            rx,
            body,
        })
    }

    /// Sends what the prober asked for and tells it the real send times.
    pub fn send(&mut self, out: &ProbeOutput) {
        for req in &out.sends {
            let Some(ifindex) = self.members.get(req.member).map(|m| m.ifindex) else {
                continue;
            };
            // Before the syscall: on a veth link the whole round trip (and XDP's receive
            // timestamp) can complete inside sendto.
            let at = Instant::now();
            let result = match req.icmp {
                Some(icmp) => match self.sockets.get(&(req.member, req.family)) {
                    Some(sock) => sock.send(req.dst, &icmp),
                    None => continue,
                },
                None => {
                    let Some(frame) = self.neigh_frame(req.member, req.dst) else {
                        continue;
                    };
                    match &self.packet {
                        Some(packet) => packet.send(ifindex, &frame),
                        None => continue,
                    }
                }
            };
            match result {
                Ok(()) => {
                    self.prober.sent(req.member, req.family, req.seq, at);
                }
                Err(e) => {
                    let name = self.members.get(req.member).map_or("?", |m| &m.name);
                    tracing::debug!(member = %name, dst = %req.dst, "probe not sent: {e}");
                }
            }
        }
    }

    /// The ARP request / neighbour solicitation for a link-layer probe to `dst`; `None` (left
    /// to time out, i.e. lost) when an IPv6 member has no link-local address to send from.
    fn neigh_frame(&mut self, mi: MemberId, dst: IpAddr) -> Option<Vec<u8>> {
        let m = self.members.get(mi)?;
        match dst {
            IpAddr::V4(v4) => Some(neigh::arp_probe_frame(m.mac, v4)),
            IpAddr::V6(v6) => match neigh::link_local_of(&m.name) {
                Some(src) => Some(neigh::ns_frame(m.mac, src, v6)),
                None => {
                    if !self.no_link_local.contains(&mi) {
                        self.no_link_local.push(mi);
                        tracing::warn!(member = %m.name, "no IPv6 link-local address to send neighbour solicitations from: IPv6 probes count as lost (enable IPv6 on the member or give it an IPv6 test address)");
                    }
                    None
                }
            },
        }
    }
}

/// A group's probe targets of one family: `probe_targets`, else the routes' gateways.
fn family_targets(cfg: &GroupConfig, family: Family) -> Vec<IpAddr> {
    let configured: Vec<IpAddr> = cfg
        .probe_targets
        .iter()
        .copied()
        .filter(|t| Family::of(*t) == family)
        .collect();
    if !cfg.probe_targets.is_empty() {
        return configured;
    }
    let mut routers: Vec<IpAddr> = cfg
        .routes
        .iter()
        .map(|r| r.via)
        .filter(|v| Family::of(*v) == family)
        .collect();
    routers.dedup();
    routers
}
