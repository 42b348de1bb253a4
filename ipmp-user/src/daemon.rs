//! The daemon: checks its input, builds the data plane, then runs one task that owns the group
//! state machines and reacts to link events, control requests and timers. Everything that
//! changes the kernel goes through the dataplane writer (maps), [`Netlink`] (links, addresses,
//! routes) and the [`Announcer`].

use std::{collections::HashMap, net::IpAddr, path::Path, time::Instant};

use ipmp_common::{NeighKey, ProbeEvent};
use tokio::sync::mpsc;

use self::{
    desired::desired_group,
    error::Result,
    notices::{Cause, count_notice, log_notice},
    setup::{GroupSetup, attach_member, link_state, member_routes, preflight, probe_config, prune},
};
pub use self::{
    error::DaemonError,
    state::{Daemon, Options},
};
use crate::{
    announce::{Announcement, Announcer},
    config::Config,
    control::{self, ControlCall, ControlServer, Request, Response},
    dataplane::{self, Dataplane, DesiredGroup},
    group::{Carrier, Event, Notice},
    metrics::{Events, MetricsServer},
    netlink::{self, Link, Netlink, events::LinkEvent, sysctl},
    notify::{self, Notifier},
    probe_io::{ProbeReply, ReplyBody, ring::ProbeRing},
};

/// Lost netlink events are logged at most this often (they come in bursts).
const OVERRUN_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the IPMP interfaces' sysctls are checked (see [`Daemon::guard_sysctls`]).
const SYSCTL_GUARD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the kernel is told which neighbours the data plane used: well within the
/// default `delay_first_probe_time` (5 s), so a neighbour in use is found used when its
/// confirmation expires and is revalidated, as one the kernel itself sends to would be.
const NEIGHBOUR_USE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why [`Daemon::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (SIGTERM, SIGINT).
    Stopped,
    /// Asked to reload (SIGHUP, `ipmpadm reload`): the caller starts ipmpd again, which adopts
    /// what this one left pinned, the way in.mpathd re-executes itself on SIGHUP.
    Reload,
}

impl Daemon {
    /// Checks the input, then builds (or adopts) every group. On an error after the first
    /// change, what this call created is removed again.
    pub async fn start(config: Config, opts: &Options) -> Result<(Self, ControlServer)> {
        let started = Instant::now();
        let nl = Netlink::connect()?;
        preflight(&config, opts, &nl).await?;
        let control = ControlServer::bind(&config.control_socket)?;
        let metrics = config
            .metrics
            .map(|m| MetricsServer::bind(m.listen))
            .transpose()?;
        let pin_dir_existed = opts.pin_dir.exists();
        let mut created: Vec<u32> = Vec::new();
        match Self::build(config, opts, nl.clone(), &mut created).await {
            Ok(mut daemon) => {
                daemon.started = started;
                daemon.metrics = metrics;
                Ok((daemon, control))
            }
            Err(e) => {
                for ifindex in created {
                    let _ = nl.delete_link(ifindex).await;
                }
                if !pin_dir_existed {
                    let _ = dataplane::loader::cleanup(&opts.pin_dir);
                }
                Err(e)
            }
        }
    }

    /// Builds the daemon: the data plane opened (or adopted), every group set up
    /// ([`build_group`]), probing configured in the kernel, then each group brought up.
    /// `created` collects the interfaces made here, for [`Daemon::start`] to remove on error.
    async fn build(
        config: Config,
        opts: &Options,
        nl: Netlink,
        created: &mut Vec<u32>,
    ) -> Result<Self> {
        let mut dataplane = Dataplane::open(&opts.pin_dir)?;
        // Next hops remembered before (by a daemon that died, or under routes changed while
        // none ran) are not used until `run` follows the routes again.
        dataplane.writer_mut().stop_route_cache()?;
        prune(&config, &opts.pin_dir, &nl).await;
        let announcer = Announcer::spawn()?;
        let (probe_tx, probe_rx) = mpsc::channel(1024);
        let sysctl = sysctl::Sysctls::new(&opts.proc_sys_net);
        let mut setup = GroupSetup {
            config: &config,
            nl: &nl,
            sysctl: &sysctl,
            links: nl.links().await?,
            dataplane: &mut dataplane,
            probe_tx: &probe_tx,
            // One cookie per daemon: XDP checks replies against it (IPMP_CONFIG holds one).
            cookie: rand::random(),
            now: Instant::now(),
            stats_slot: 0,
        };
        let mut groups = Vec::new();
        for (slot, cfg) in config.groups.iter().enumerate() {
            groups.push(setup.build_group(slot, cfg, created).await?);
        }
        let cookie = setup.cookie;
        let probing = groups.iter().any(|g| g.probing.is_some());
        let ring = probe_config(&mut dataplane, probing, cookie, &opts.pin_dir)?;
        let mut daemon = Self {
            config,
            nl,
            sysctl,
            dataplane,
            announcer,
            groups,
            started: Instant::now(),
            neighbours: HashMap::new(),
            probe_rx: Some(probe_rx),
            ring,
            ring_failed: false,
            probe_lines: tokio::sync::broadcast::channel(PROBE_STREAM_BACKLOG).0,
            notify: Notifier::from_env(),
            events: Events::default(),
            metrics: None,
            pins_lost: false,
            overrun_logged: None,
            neighbours_full_logged: false,
        };
        daemon.sync_dataplane()?;
        for gi in 0..daemon.groups.len() {
            daemon.bring_up(gi).await?;
        }
        daemon.dataplane.settle()?;
        Ok(daemon)
    }

    /// Group `gi`'s IPMP interface up with its carrier, data addresses and routes, and the
    /// addresses announced from the members they are bound to.
    async fn bring_up(&mut self, gi: usize) -> Result<()> {
        let (ifindex, addrs, routes) = {
            let g = &self.groups[gi];
            (
                g.ifindex,
                g.cfg.data_addresses.clone(),
                g.cfg.routes.clone(),
            )
        };
        self.sync_carrier(gi).await?;
        self.nl.set_up(ifindex, true).await?;
        for prefix in &addrs {
            self.nl.add_address(ifindex, prefix, false).await?;
            self.nl.set_broadcast_neighbour(ifindex, prefix).await?;
        }
        for route in &routes {
            self.nl.replace_route(ifindex, route).await?;
        }
        self.announce_all(gi);
        Ok(())
    }

    /// The desired data plane of every group, from the state machines.
    fn desired(&self) -> Vec<DesiredGroup> {
        self.groups
            .iter()
            .map(|g| desired_group(g, !self.ring_failed))
            .collect()
    }

    fn sync_dataplane(&mut self) -> Result<()> {
        let desired = self.desired();
        self.dataplane.apply(&desired)?;
        for (g, d) in self.groups.iter_mut().zip(&desired) {
            let cast = d.cast.map(|(ifindex, _)| ifindex);
            // A new cast member: the IPMP interface reports its multicast memberships again,
            // now through it, so that snooping switches forward the groups to its port.
            if cast.is_some() && g.cast.is_some() && cast != g.cast {
                self.announcer.requery(g.peer_ifindex, &g.cfg.name, g.mac);
            }
            if cast.is_some() {
                g.cast = cast;
            }
        }
        Ok(())
    }

    /// The IPMP interface's carrier follows the group: off only when no member is usable
    /// (its veth peer is set down, which drops the carrier of the IPMP end).
    async fn sync_carrier(&mut self, gi: usize) -> Result<()> {
        let g = &mut self.groups[gi];
        let want = g.fsm.state() != crate::group::GroupState::Failed;
        if want != g.carrier_on || !want {
            self.nl.set_up(g.peer_ifindex, want).await?;
            g.carrier_on = want;
        }
        Ok(())
    }

    fn announce_all(&self, gi: usize) {
        let g = &self.groups[gi];
        let mut per_member: HashMap<usize, Vec<IpAddr>> = HashMap::new();
        for (ai, prefix) in g.cfg.data_addresses.iter().enumerate() {
            if let Some(m) = g.fsm.binding(ai) {
                per_member.entry(m).or_default().push(prefix.addr);
            }
        }
        for (m, addrs) in per_member {
            self.announce(gi, m, addrs);
        }
    }

    fn announce(&self, gi: usize, member: usize, addrs: Vec<IpAddr>) {
        let g = &self.groups[gi];
        let Some(m) = g.members.get(member) else {
            return;
        };
        self.announcer.announce(Announcement {
            ifindex: m.ifindex,
            ifname: m.name.clone(),
            mac: m.mac,
            addrs,
            count: g.cfg.announce.count,
            interval: g.cfg.announce.interval,
        });
    }

    /// Feeds an event to one group and carries out what changed.
    async fn handle(&mut self, gi: usize, event: Event, now: Instant) -> Result<()> {
        let cause = Cause::of(&self.groups[gi], &event);
        let notices = match self.groups[gi].fsm.handle(event, now) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(group = %self.groups[gi].cfg.name, "{e}");
                return Ok(());
            }
        };
        self.after(gi, notices, &cause).await
    }

    async fn after(&mut self, gi: usize, notices: Vec<Notice>, cause: &Cause) -> Result<()> {
        if notices.is_empty() {
            return Ok(());
        }
        let flip = Instant::now();
        self.sync_dataplane()?;
        tracing::debug!(
            elapsed_us = flip.elapsed().as_micros() as u64,
            total_writes = self.dataplane.writer().writes,
            "maps updated"
        );
        let mut rebound: HashMap<usize, Vec<IpAddr>> = HashMap::new();
        {
            let g = &self.groups[gi];
            for n in &notices {
                log_notice(g, n, cause);
                count_notice(&self.events, g, n);
                if let Notice::AddressRebound {
                    address,
                    to: Some(to),
                    ..
                } = n
                    && let Some(prefix) = g.cfg.data_addresses.get(*address)
                {
                    rebound.entry(*to).or_default().push(prefix.addr);
                }
            }
        }
        for (m, addrs) in rebound {
            self.announce(gi, m, addrs);
        }
        self.notify.status(&self.status_line());
        self.sync_carrier(gi).await?;
        // Off the failover's path: the half just left catches up with the one now read, so
        // that the next change writes only its own buckets before its flip.
        self.dataplane.settle()?;
        Ok(())
    }

    /// A route or rule changed (or may have): the paths the programs remember are retired.
    /// On failure they would stay in use, so remembering is turned off instead.
    fn routes_changed(&mut self) {
        let writer = self.dataplane.writer_mut();
        if let Err(e) = writer.advance_route_generation() {
            tracing::error!("cannot retire remembered paths: {e}; looking every one up");
            if let Err(e) = writer.stop_route_cache() {
                tracing::error!("cannot turn off remembering paths either: {e}");
            }
        }
    }

    /// systemd's STATUS= line: every group's state and what is not ok.
    fn status_line(&self) -> String {
        notify::status_line(self.groups.iter().map(|g| &g.fsm))
    }

    async fn on_link(&mut self, event: LinkEvent) -> Result<()> {
        let (ifindex, state) = match &event {
            LinkEvent::Changed(link) => (link.ifindex, link_state(link)),
            LinkEvent::Removed { ifindex, .. } => (*ifindex, Carrier::Down),
            LinkEvent::Neighbour(n) => {
                self.follow_neighbour(n).await;
                if let Some(reachable) = n.reachable() {
                    self.on_neighbour(reachable).await;
                }
                return Ok(());
            }
            LinkEvent::AddressChanged { ifindex } => {
                return self.member_addresses_changed(*ifindex).await;
            }
            LinkEvent::RouteChanged { gateway_oif } => {
                self.routes_changed();
                if let Some(oif) = gateway_oif
                    && self.groups.iter().any(|g| g.ifindex == *oif)
                {
                    return self.follow_routes().await;
                }
                return Ok(());
            }
            LinkEvent::Overrun => {
                let now = Instant::now();
                // Once per storm: a burst overflows the buffer again and again.
                if self
                    .overrun_logged
                    .is_none_or(|t| now.duration_since(t) > OVERRUN_LOG_INTERVAL)
                {
                    tracing::warn!(
                        "netlink events were lost (the {} byte receive buffer overflowed, see netlink_rcvbuf_bytes): re-reading links, addresses and routes",
                        self.config.netlink_rcvbuf
                    );
                    self.overrun_logged = Some(now);
                }
                self.routes_changed();
                Box::pin(self.resync()).await?;
                self.follow_routes().await?;
                Box::pin(self.check_integrity()).await;
                return Ok(());
            }
        };
        let Some((gi, mi)) = self.member_at(ifindex) else {
            if let LinkEvent::Changed(link) = &event {
                return self.member_reappeared(link).await;
            }
            return Ok(());
        };
        if let LinkEvent::Changed(link) = &event {
            self.member_attributes(gi, mi, link).await?;
        }
        let member = &mut self.groups[gi].members[mi];
        if member.link == state {
            return Ok(());
        }
        member.link = state;
        // The notices say at info what a change does; a flapping link must not flood the log.
        tracing::debug!(member = %member.name, link = ?state, "link state changed");
        let up = state == Carrier::Up;
        let now = Instant::now();
        self.handle(gi, Event::Link { member: mi, up }, now).await?;
        if up {
            // A member re-created while down could not get its routes then.
            let (name, ifindex) = {
                let m = &self.groups[gi].members[mi];
                (m.name.clone(), m.ifindex)
            };
            let test = self.groups[gi]
                .cfg
                .members
                .get(mi)
                .and_then(|c| c.test_address);
            member_routes(&self.nl, &name, ifindex, test).await;
        }
        let g = &mut self.groups[gi];
        if let Some(p) = g.probing.as_mut() {
            match p.prober.link(mi, up, now, &g.fsm, &mut p.rng) {
                Ok(out) => self.probe_output(gi, out).await?,
                Err(e) => tracing::warn!(group = %g.cfg.name, "prober: {e}"),
            }
        }
        Ok(())
    }

    /// An address came or went on `ifindex`: a member's rules follow its addresses.
    async fn member_addresses_changed(&mut self, ifindex: u32) -> Result<()> {
        let found = self.groups.iter().find_map(|g| {
            g.members.iter().enumerate().find_map(|(mi, m)| {
                (m.ifindex == ifindex).then(|| {
                    let test = g.cfg.members.get(mi).and_then(|c| c.test_address);
                    (m.name.clone(), test)
                })
            })
        });
        if let Some((name, test)) = found {
            member_routes(&self.nl, &name, ifindex, test).await;
        }
        Ok(())
    }

    /// Carries out what the prober decided: sends, logs, and the group event it produced.
    async fn probe_output(&mut self, gi: usize, out: crate::mpathd::ProbeOutput) -> Result<()> {
        let g = &mut self.groups[gi];
        let names: Vec<String> = g.members.iter().map(|m| m.name.clone()).collect();
        if let Some(p) = g.probing.as_mut() {
            p.send(&out);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            for n in &out.notices {
                tracing::info!("{}", n.describe(&g.cfg.name, &refs));
            }
        }
        for r in &out.records {
            tracing::trace!(?r, "probe done");
            if let (Some(rtt), Some(name)) = (r.netrtt(), names.get(r.member)) {
                self.events.rtt(&self.groups[gi].cfg.name, name, rtt);
            }
            if self.probe_lines.receiver_count() > 0 {
                let g = &self.groups[gi];
                let line = probe_line(&g.cfg.name, &names, r);
                let _ = self.probe_lines.send(line);
            }
        }
        if let Some(event) = out.event {
            Box::pin(self.handle(gi, event, Instant::now())).await?;
        }
        Ok(())
    }

    /// A reply to a probe, from a socket or the ring, to its group's prober.
    async fn on_probe_reply(&mut self, r: ProbeReply, now: Instant) -> Result<()> {
        let Some(g) = self.groups.get_mut(r.group) else {
            return Ok(());
        };
        let Some(p) = g.probing.as_mut() else {
            return Ok(());
        };
        let result = match &r.body {
            ReplyBody::Echo(icmp) => {
                let reply = crate::mpathd::Reply {
                    member: r.member,
                    family: r.family,
                    from: r.from,
                    icmp,
                    rx: r.rx,
                };
                p.prober.reply(reply, now, &g.fsm)
            }
            &ReplyBody::Neigh { local, hardware } => {
                let reply = crate::mpathd::NeighReply {
                    member: r.member,
                    family: r.family,
                    from: r.from,
                    local,
                    hardware,
                    rx: r.rx,
                };
                p.prober.link_layer_reply(reply, now, &g.fsm)
            }
        };
        match result {
            Ok((_, out)) => self.probe_output(r.group, out).await,
            Err(e) => {
                tracing::debug!(group = %g.cfg.name, "probe reply: {e}");
                Ok(())
            }
        }
    }

    /// Router probe targets follow the routing table: the gateways of the routes through each
    /// group's IPMP interface (groups with `probe_targets` keep theirs).
    async fn follow_routes(&mut self) -> Result<()> {
        for gi in 0..self.groups.len() {
            let g = &self.groups[gi];
            if g.probing.is_none() || !g.cfg.probe_targets.is_empty() {
                continue;
            }
            let gateways = self.nl.gateways(g.ifindex).await?;
            let now = Instant::now();
            let mut changed = false;
            for family in crate::mpathd::Family::ALL {
                let routers: Vec<IpAddr> = gateways
                    .iter()
                    .copied()
                    .filter(|a| crate::mpathd::Family::of(*a) == family)
                    .collect();
                let Some(p) = self.groups[gi].probing.as_mut() else {
                    continue;
                };
                changed |= p.set_link_layer_routers(family, &routers);
                let out = p.prober.set_routers(family, &routers, now);
                self.probe_output(gi, out).await?;
            }
            if changed {
                self.sync_dataplane()?;
            }
        }
        Ok(())
    }

    /// Replies XDP timestamped: each goes to its group's prober with the XDP receive time.
    async fn on_ring_events(&mut self, events: Vec<ProbeEvent>) -> Result<()> {
        let now = Instant::now();
        for ev in events {
            let reply = self
                .groups
                .iter()
                .find_map(|g| g.probing.as_ref().and_then(|p| p.ring_reply(&ev)));
            if let Some(reply) = reply {
                self.on_probe_reply(reply, now).await?;
            }
        }
        Ok(())
    }

    /// A member NIC that went away (driver reload, hot-plug) and came back has a new ifindex:
    /// prepare it and attach the programs again, then let its link state decide.
    async fn member_reappeared(&mut self, link: &Link) -> Result<()> {
        let Some((gi, mi)) = self.find_member(&link.name) else {
            return Ok(());
        };
        let old = self.groups[gi].members[mi].ifindex;
        if old == link.ifindex || self.nl.link_by_index(old).await?.is_some() {
            return Ok(());
        }
        tracing::info!(member = %link.name, ifindex = link.ifindex, "member is back with a new ifindex: preparing it again");
        self.sysctl.prepare_member(&link.name)?;
        self.nl.set_allmulticast(link.ifindex).await?;
        self.dataplane.detach(&link.name);
        let mode = attach_member(&mut self.dataplane, self.groups[gi].cfg.xdp_mode, link)?;
        if let Some(test) = self.groups[gi]
            .cfg
            .members
            .get(mi)
            .and_then(|m| m.test_address)
        {
            self.nl.add_address(link.ifindex, &test, true).await?;
        }
        {
            let m = &mut self.groups[gi].members[mi];
            m.ifindex = link.ifindex;
            m.mac = link.mac;
            m.mtu = link.mtu;
            m.xdp_mode = mode;
        }
        let test = self.groups[gi]
            .cfg
            .members
            .get(mi)
            .and_then(|c| c.test_address);
        member_routes(&self.nl, &link.name, link.ifindex, test).await;
        if let Some(p) = self.groups[gi].probing.as_mut() {
            p.member_replaced(mi, link.ifindex, link.mac)?;
        }
        self.sync_dataplane()?;
        let state = link_state(link);
        let m = &mut self.groups[gi].members[mi];
        if m.link != state {
            m.link = state;
            let up = state == Carrier::Up;
            self.handle(gi, Event::Link { member: mi, up }, Instant::now())
                .await?;
        }
        Ok(())
    }

    /// Follows a member's MAC (ARP/NDP answers and announcements use it) and MTU (the IPMP
    /// interface's MTU is the smallest member MTU).
    async fn member_attributes(&mut self, gi: usize, mi: usize, link: &Link) -> Result<()> {
        let g = &mut self.groups[gi];
        let m = &mut g.members[mi];
        if link.mac != m.mac && link.mac != [0; 6] {
            tracing::info!(member = %m.name, "MAC address changed");
            m.mac = link.mac;
            self.sync_dataplane()?;
            self.announce_all(gi);
        }
        let g = &mut self.groups[gi];
        let m = &mut g.members[mi];
        if link.mtu != m.mtu && link.mtu != 0 {
            m.mtu = link.mtu;
            let mtu = g.members.iter().map(|m| m.mtu).min().unwrap_or(link.mtu);
            tracing::info!(group = %g.cfg.name, mtu, "member MTU changed: IPMP interface follows");
            self.nl.set_mtu(g.peer_ifindex, mtu).await?;
            self.nl.set_mtu(g.ifindex, mtu).await?;
        }
        Ok(())
    }

    /// Members share one L2 link, so a neighbour confirmed on one member is valid on all of
    /// them. Copying it (as STALE) to the others means a flow that moves to another member —
    /// on failover, offline or rebalancing — finds its next hop resolved there. Otherwise its
    /// first packet is lost: `bpf_redirect_neigh` queues it on the member's unresolved entry,
    /// and the kernel re-looks up the neighbour through the skb's route (the NOARP IPMP
    /// interface) when it releases the queue, sending it with the wrong destination MAC.
    async fn on_neighbour(&mut self, n: netlink::events::Neighbour) {
        let Some((gi, mi)) = self.member_at(n.ifindex) else {
            return;
        };
        if self.neighbours.get(&(gi, n.ip)) == Some(&n.mac) {
            return;
        }
        self.neighbours.insert((gi, n.ip), n.mac);
        let others: Vec<(u32, String)> = self.groups[gi]
            .members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != mi)
            .map(|(_, m)| (m.ifindex, m.name.clone()))
            .collect();
        for (ifindex, name) in others {
            match self.nl.replace_neighbour(ifindex, n.ip, n.mac).await {
                Ok(()) => tracing::debug!(ip = %n.ip, member = %name, "neighbour shared"),
                Err(e) => tracing::debug!(member = %name, "sharing a neighbour failed: {e}"),
            }
        }
    }

    /// Reads every link, address and neighbour again and feeds what changed to the groups.
    async fn resync(&mut self) -> Result<()> {
        let known: Vec<netlink::events::Known> = self
            .groups
            .iter()
            .flat_map(|g| &g.members)
            .map(|m| netlink::events::Known {
                ifindex: m.ifindex,
                name: m.name.clone(),
                up: m.link == Carrier::Up,
                mac: m.mac,
                mtu: m.mtu,
            })
            .collect();
        for event in netlink::events::differences(&known, &self.nl.links().await?) {
            tracing::debug!(?event, "found by re-reading the links");
            Box::pin(self.on_link(event)).await?;
        }
        let members: Vec<u32> = self
            .groups
            .iter()
            .flat_map(|g| g.members.iter().map(|m| m.ifindex))
            .collect();
        for ifindex in members {
            self.member_addresses_changed(ifindex).await?;
        }
        let neighbours = self.nl.neighbours().await?;
        let confirmed: HashMap<NeighKey, [u8; 6]> = neighbours
            .iter()
            .filter(|n| self.member_at(n.ifindex).is_some())
            .filter_map(|n| Some((NeighKey::new(n.ifindex, n.ip.into()), n.confirmed_mac()?)))
            .collect();
        let left_out = self.dataplane.writer_mut().sync_neighbours(&confirmed)?;
        if left_out > 0 {
            self.neighbours_full(left_out);
        }
        for n in neighbours
            .iter()
            .filter_map(netlink::events::NeighbourChange::reachable)
        {
            self.on_neighbour(n).await;
        }
        Ok(())
    }

    /// `IPMP_NEIGHS` is full: said once per daemon, since it stays so on a large segment.
    fn neighbours_full(&mut self, left_out: usize) {
        if !self.neighbours_full_logged {
            self.neighbours_full_logged = true;
            tracing::warn!(
                left_out,
                max = ipmp_common::MAX_NEIGHS,
                "the members' neighbour map is full: frames to the neighbours left out are resolved by the kernel (bpf_redirect_neigh), which costs more per packet"
            );
        }
    }

    /// Group and member index of member `ifindex`.
    fn member_at(&self, ifindex: u32) -> Option<(usize, usize)> {
        self.groups.iter().enumerate().find_map(|(gi, g)| {
            g.members
                .iter()
                .position(|m| m.ifindex == ifindex)
                .map(|mi| (gi, mi))
        })
    }

    /// Keeps `IPMP_NEIGHS` in step with a member's neighbour entry: a confirmed MAC is
    /// copied, a deleted or failed entry removed. A STALE entry the kernel reports (expiry is
    /// silent, see [`Self::report_neighbour_use`]; an ARP or NA that changed the entry is
    /// not) is kept if the program used it since the marks were last cleared, and the kernel
    /// asked to revalidate it, so that a neighbour in use never falls back to the slow path
    /// and a dead one still goes FAILED; an unused one is removed.
    async fn follow_neighbour(&mut self, n: &netlink::events::NeighbourChange) {
        if self.member_at(n.ifindex).is_none() {
            return;
        }
        let key = NeighKey::new(n.ifindex, n.ip.into());
        let writer = self.dataplane.writer_mut();
        let done = if let Some(mac) = n.confirmed_mac() {
            match writer.put_neighbour(key, mac) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    self.neighbours_full(1);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else if n.is_stale() {
            match writer.stale_neighbour(key, n.mac) {
                Ok(true) => {
                    if let Err(e) = self.nl.touch_neighbour(n.ifindex, n.ip).await {
                        tracing::debug!(ip = %n.ip, "cannot have a neighbour revalidated: {e}");
                        self.dataplane.writer_mut().remove_neighbour(key)
                    } else {
                        Ok(())
                    }
                }
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            writer.remove_neighbour(key)
        };
        if let Err(e) = done {
            tracing::error!(ip = %n.ip, "cannot update a member's neighbour in the data plane: {e}");
        }
    }

    /// Tells the kernel which members' neighbours the program sent to since the last time
    /// (NTF_USE, as a frame through the kernel's own path would have), so that a neighbour in
    /// use is revalidated when its confirmation expires — the kernel moves an expired entry to
    /// STALE without telling anyone, and frames the program addresses itself do not count as
    /// use.
    async fn report_neighbour_use(&mut self) {
        let used = match self.dataplane.writer_mut().take_used_neighbours() {
            Ok(used) => used,
            Err(e) => {
                tracing::error!("cannot read which neighbours the data plane used: {e}");
                return;
            }
        };
        for key in used {
            let ip = key.ip();
            if let Err(e) = self.nl.touch_neighbour(key.ifindex, ip).await {
                tracing::debug!(%ip, "cannot report a neighbour's use: {e}");
            }
        }
    }

    async fn on_tick(&mut self, now: Instant) -> Result<()> {
        for gi in 0..self.groups.len() {
            let g = &mut self.groups[gi];
            if let Some(p) = g.probing.as_mut()
                && p.prober.next_deadline().is_some_and(|d| d <= now)
            {
                match p.prober.tick(now, &g.fsm, &mut p.rng) {
                    Ok(out) => self.probe_output(gi, out).await?,
                    Err(e) => tracing::warn!(group = %g.cfg.name, "prober: {e}"),
                }
            }
            if self.groups[gi]
                .fsm
                .next_deadline()
                .is_some_and(|d| d <= now)
            {
                self.handle(gi, Event::Tick, now).await?;
            }
        }
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .iter()
            .flat_map(|g| {
                [
                    g.fsm.next_deadline(),
                    g.probing.as_ref().and_then(|p| p.prober.next_deadline()),
                ]
            })
            .flatten()
            .min()
    }

    fn find_member(&self, name: &str) -> Option<(usize, usize)> {
        self.groups.iter().enumerate().find_map(|(gi, g)| {
            g.members
                .iter()
                .position(|m| m.name == name)
                .map(|mi| (gi, mi))
        })
    }

    async fn on_control(&mut self, request: Request) -> Response {
        match request {
            Request::Status => Response::Status(self.snapshot()),
            Request::Offline { interface } | Request::Online { interface }
                if self.find_member(&interface).is_none() =>
            {
                Response::Error {
                    message: format!("{interface} is not a member of any IPMP group"),
                }
            }
            Request::Offline { interface } => self.admin(&interface, true).await,
            Request::Online { interface } => self.admin(&interface, false).await,
            // Handled by the run loop, which has to stop for it.
            Request::Reload => Response::Error {
                message: "reload is handled by the daemon loop".into(),
            },
            // The control server streams these itself.
            Request::Probes => Response::Error {
                message: "probe subscriptions are served by the control socket".into(),
            },
        }
    }

    async fn admin(&mut self, interface: &str, offline: bool) -> Response {
        let Some((gi, mi)) = self.find_member(interface) else {
            return Response::Error {
                message: format!("{interface} is not a member of any IPMP group"),
            };
        };
        let event = if offline {
            Event::Offline { member: mi }
        } else {
            Event::Online { member: mi }
        };
        let cause = Cause::of(&self.groups[gi], &event);
        let notices = match self.groups[gi].fsm.handle(event, Instant::now()) {
            Ok(n) => n,
            Err(e) => {
                return Response::Error {
                    message: format!("{interface}: {e}"),
                };
            }
        };
        if let Err(e) = self.after(gi, notices, &cause).await {
            return Response::Error {
                message: format!("{interface}: {e}"),
            };
        }
        let g = &mut self.groups[gi];
        if let Some(p) = g.probing.as_mut() {
            let done = if offline {
                p.prober.offline(mi, &g.fsm)
            } else {
                p.prober.online(mi, Instant::now(), &g.fsm, &mut p.rng)
            };
            if let Err(e) = done {
                tracing::warn!(group = %g.cfg.name, "prober: {e}");
            }
        }
        Response::Ok {
            message: format!(
                "{interface} is {}",
                if offline { "offline" } else { "online" }
            ),
        }
    }

    /// Runs until `shutdown` resolves. Programs, links and maps stay pinned afterwards, so
    /// forwarding continues on the last state.
    pub async fn run(
        mut self,
        control: ControlServer,
        config_path: &Path,
        signal: impl Future<Output = Exit>,
    ) -> Result<Exit> {
        let (link_tx, mut link_rx) = mpsc::channel(256);
        netlink::events::spawn_monitor(link_tx, self.config.netlink_rcvbuf as usize)?;
        // Link states and routes may have changed between start and subscribing: re-read once.
        self.resync().await?;
        self.follow_routes().await?;
        // Subscribed to route and rule changes: the programs may remember next hops now.
        self.routes_changed();
        let (control_tx, mut control_rx) = mpsc::channel::<ControlCall>(64);
        let mut probe_rx = self.probe_rx.take().unwrap_or_else(|| mpsc::channel(1).1);
        let mut ring = self.ring.take();
        let socket = control.path().to_path_buf();
        let metrics_task = self.metrics.take().map(|m| {
            tracing::info!(listen = %m.local_addr(), "serving metrics at /metrics");
            tokio::spawn(m.run(control_tx.clone(), self.events.clone()))
        });
        let control_task = tokio::spawn(control.run(control_tx, self.probe_lines.clone()));
        tracing::info!(
            groups = self.groups.len(),
            socket = %socket.display(),
            "ipmpd ready in {} ms",
            self.started.elapsed().as_millis()
        );
        // Programs attached, maps written, addresses and routes placed: systemd may go on.
        self.notify.ready(&self.status_line());
        let mut watchdog = self.notify.watchdog_timer();
        tokio::pin!(signal);
        let mut guard = tokio::time::interval(SYSCTL_GUARD_INTERVAL);
        let mut integrity = tokio::time::interval(integrity::INTEGRITY_INTERVAL);
        let mut neighbours_used = tokio::time::interval(NEIGHBOUR_USE_INTERVAL);
        let exit = loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(event) = link_rx.recv() => {
                    let tampered = self.tampered(&event);
                    if let Err(e) = self.on_link(event).await {
                        tracing::error!("handling a link event failed: {e}");
                    }
                    if tampered {
                        self.check_integrity().await;
                    }
                }
                Some(call) = control_rx.recv() => {
                    if call.request == Request::Reload {
                        let (response, reload) = check_reload(config_path);
                        let _ = call.reply.send(response);
                        if reload {
                            break Exit::Reload;
                        }
                        continue;
                    }
                    let response = self.on_control(call.request).await;
                    let _ = call.reply.send(response);
                }
                () = sleep => {
                    // Replies already received first: a probe must not time out while its
                    // answer waits in a queue.
                    let queued = ring.as_mut().map(ProbeRing::drain_now).unwrap_or_default();
                    if !queued.is_empty()
                        && let Err(e) = self.on_ring_events(queued).await
                    {
                        tracing::error!("handling probe events failed: {e}");
                    }
                    while let Ok(reply) = probe_rx.try_recv() {
                        if let Err(e) = self.on_probe_reply(reply, Instant::now()).await {
                            tracing::error!("handling a probe reply failed: {e}");
                        }
                    }
                    if let Err(e) = self.on_tick(Instant::now()).await {
                        tracing::error!("timer handling failed: {e}");
                    }
                }
                Some(reply) = probe_rx.recv() => {
                    if let Err(e) = self.on_probe_reply(reply, Instant::now()).await {
                        tracing::error!("handling a probe reply failed: {e}");
                    }
                }
                events = next_ring_batch(&mut ring) => match events {
                    Ok(events) => {
                        if let Err(e) = self.on_ring_events(events).await {
                            tracing::error!("handling probe events failed: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::error!("reading the probe ring buffer failed: {e}; replies now go through the probe sockets only");
                        ring = None;
                        self.ring_failed = true;
                        if let Err(e) = self.sync_dataplane() {
                            tracing::error!("{e}");
                        }
                    }
                },
                _ = guard.tick() => self.guard_sysctls(),
                _ = integrity.tick() => self.check_integrity().await,
                _ = neighbours_used.tick() => self.report_neighbour_use().await,
                // Fed here, so a loop stuck in a handler stops feeding it.
                () = notify::watchdog_tick(&mut watchdog) => self.notify.watchdog(),
                exit = &mut signal => break exit,
            }
        };
        match exit {
            Exit::Reload => self.notify.reloading(),
            Exit::Stopped => self.notify.stopping(),
        }
        // Forwarding continues without a daemon, so without anyone to retire next hops.
        if let Err(e) = self.dataplane.writer_mut().stop_route_cache() {
            tracing::error!("cannot turn off remembering next hops: {e}");
        }
        // Dropping the server (inside the aborted task) removes its socket file.
        control_task.abort();
        let _ = control_task.await;
        if let Some(task) = metrics_task {
            task.abort();
            let _ = task.await;
        }
        tracing::info!(
            ?exit,
            "ipmpd stopped; programs and maps stay pinned, forwarding continues"
        );
        Ok(exit)
    }

    /// Writing `net.ipv4.ip_forward` (or `all.forwarding`) resets every interface's
    /// `forwarding`, which would make `bpf_fib_lookup` refuse the IPMP interface and stop its
    /// traffic; no netlink event for it reaches us (rtnetlink has no netconf decoder), so the
    /// value is checked here and put back.
    fn guard_sysctls(&self) {
        for g in &self.groups {
            let ok = self
                .sysctl
                .read("ipv4", &g.cfg.name, "forwarding")
                .is_ok_and(|v| v == "1");
            if !ok {
                tracing::warn!(group = %g.cfg.name, "forwarding on the IPMP interface was turned off (ip_forward written?): setting it back, bpf_fib_lookup needs it");
                if let Err(e) = self.sysctl.prepare_ipmp(&g.cfg.name) {
                    tracing::error!(group = %g.cfg.name, "{e}");
                }
            }
        }
    }

    fn snapshot(&self) -> control::Snapshot {
        snapshot::build(self)
    }
}

/// Probe lines kept for an `ipmpstat -p` reader that falls behind.
const PROBE_STREAM_BACKLOG: usize = 1024;

/// The `ipmpstat -p` line of a completed probe.
fn probe_line(group: &str, names: &[String], r: &crate::mpathd::ProbeRecord) -> control::ProbeLine {
    let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    // Instants have no epoch: place the send time on the wall clock through now.
    let ago = Instant::now().saturating_duration_since(r.sent);
    let sent = std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    control::ProbeLine {
        sent_unix_ns: sent,
        group: group.to_owned(),
        interface: names.get(r.member).cloned().unwrap_or_default(),
        family: r.family.to_string(),
        seq: r.seq,
        target: r.target.map(|t| t.to_string()),
        lost: r.is_lost(),
        netrtt_us: r.netrtt().map(us),
        rtt_us: r.rtt().map(us),
        rttavg_us: r.rtt_avg.map(us),
        rttdev_us: r.rtt_dev.map(us),
    }
}

/// The next events of the probe ring; never ready without a ring.
async fn next_ring_batch(ring: &mut Option<ProbeRing>) -> std::io::Result<Vec<ProbeEvent>> {
    match ring {
        Some(r) => r.next_batch().await,
        None => std::future::pending().await,
    }
}

/// A reload happens only with a configuration that loads; otherwise ipmpd keeps running as is.
fn check_reload(config_path: &Path) -> (Response, bool) {
    match Config::load(config_path) {
        Ok(_) => (
            Response::Ok {
                message: format!(
                    "reloading {}: ipmpd restarts and adopts its pinned state; forwarding continues",
                    config_path.display()
                ),
            },
            true,
        ),
        Err(e) => (
            Response::Error {
                message: format!("{e}; ipmpd keeps running with its current configuration"),
            },
            false,
        ),
    }
}

mod desired;
mod error;
mod integrity;
mod notices;
mod setup;
mod snapshot;
mod state;
