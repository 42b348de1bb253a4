//! The prober actor: the sockets that carry in.mpathd-style echo probes for one group, and
//! the glue between them and the pure probe logic ([`crate::probe::Prober`]).
//!
//! Each probing member and family gets a raw socket pinned to the member; a task per socket
//! forwards replies (with their receive time) to the daemon, which feeds them to the prober.
//! The prober decides what to send and when; [`GroupProbing::send`] only sends.

pub mod socket;

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Instant};

use rand::{SeedableRng as _, rngs::StdRng};
use tokio::sync::mpsc;

use crate::{
    config::{Config, GroupConfig},
    group::{Group, MemberId},
    probe::{Family, FamilyProbe, ProbeOutput, ProbeSpec, Prober},
};

pub use socket::ProbeSocket;

/// A reply read from a member's probe socket.
#[derive(Debug)]
pub struct ProbeReply {
    pub group: usize,
    pub member: MemberId,
    pub family: Family,
    pub from: IpAddr,
    pub icmp: Vec<u8>,
    pub rx: Instant,
}

/// Probing of one group: the pure prober, its sockets and its randomness.
pub struct GroupProbing {
    pub prober: Prober,
    pub rng: StdRng,
    sockets: HashMap<(MemberId, Family), Arc<ProbeSocket>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for GroupProbing {
    fn drop(&mut self) {
        for t in &self.tasks {
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
    Probe(#[from] crate::probe::ProbeError),
}

impl GroupProbing {
    /// Starts probing for group `gi` when at least one member has a test address; `None`
    /// otherwise (link state is then the only detector, as in.mpathd without test addresses).
    /// `members` are (name, ifindex) in the group's member order.
    pub fn start(
        config: &Config,
        cfg: &GroupConfig,
        gi: usize,
        fsm: &Group,
        members: &[(String, u32)],
        replies: &mpsc::Sender<ProbeReply>,
        now: Instant,
    ) -> Result<Option<Self>, ProberError> {
        let mut rng = StdRng::from_os_rng();
        let cookie: u64 = rand::Rng::random(&mut rng);
        let spec = ProbeSpec::from_config(config, cfg, cookie);
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
        if probing.is_empty() {
            return Ok(None);
        }
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
            // Route targets come from the configuration's routes (they are on-link by
            // validation); following the kernel's routing table is still to come.
            let _ = prober.set_routers(family, &routers, now);
        }
        let mut sockets = HashMap::new();
        let mut tasks = Vec::new();
        for (mi, family, src) in probing {
            let Some((name, ifindex)) = members.get(mi) else {
                continue;
            };
            let sock = ProbeSocket::open(name, *ifindex, Some(src), family == Family::V6).map_err(
                |source| ProberError::Socket {
                    member: name.clone(),
                    source,
                },
            )?;
            let sock = Arc::new(sock);
            sockets.insert((mi, family), Arc::clone(&sock));
            let tx = replies.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match sock.recv().await {
                        Ok(r) => {
                            let reply = ProbeReply {
                                group: gi,
                                member: mi,
                                family,
                                from: r.from,
                                icmp: r.icmp,
                                rx: Instant::now(),
                            };
                            if tx.send(reply).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::debug!(member = %name, "probe socket: {e}"),
                    }
                }
            }));
        }
        Ok(Some(Self {
            prober,
            rng,
            sockets,
            tasks,
        }))
    }

    /// Sends what the prober asked for and tells it the real send times.
    pub fn send(&mut self, out: &ProbeOutput, names: &[String]) {
        for req in &out.sends {
            let Some(icmp) = req.icmp else {
                // Link-layer probes (ARP/NS) are not sent by this daemon yet.
                continue;
            };
            let Some(sock) = self.sockets.get(&(req.member, req.family)) else {
                continue;
            };
            match sock.send(req.dst, &icmp) {
                Ok(()) => {
                    self.prober
                        .sent(req.member, req.family, req.seq, Instant::now());
                }
                Err(e) => {
                    let name = names.get(req.member).map_or("?", String::as_str);
                    tracing::debug!(member = %name, dst = %req.dst, "probe not sent: {e}");
                }
            }
        }
    }
}
