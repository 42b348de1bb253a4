//! The ipmpd configuration: TOML at [`DEFAULT_PATH`], documented key by key in the repository's
//! `config/ipmpd.toml`.
//!
//! Besides its own keys the file accepts the three `/etc/default/mpathd` keys with their Solaris
//! meaning (`FAILURE_DETECTION_TIME` in milliseconds, `FAILBACK` yes/no,
//! `TRACK_INTERFACES_ONLY_WITH_GROUPS` yes), matched case-insensitively like Solaris `defread`.
//! Every other key is case-sensitive and unknown keys are errors, so a typo never passes silently.
//!
//! Parsing keeps toml's line/column messages; validation reports every problem found, one line
//! each, naming the key, group or member and what to write instead.
//!
//! This file validates; `model.rs` holds the validated types and limits, `raw.rs` the file's
//! shape as serde reads it (and the mpathd keys), `prefix.rs` addresses with prefix lengths.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipmp_common::{MAX_ADDRS, MAX_BUCKETS, MAX_GROUPS, MAX_MEMBERS};
use serde::Deserialize;

mod model;
mod prefix;
mod raw;

pub use model::*;
use prefix::mask32;
pub use prefix::{Prefix, PrefixError};
use raw::{
    MPATHD_FAILBACK, MPATHD_FDT, RawConfig, RawGroup, RawMetrics, RouteDest, take_mpathd_keys,
};

/// Everything wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {origin}: {source} (create it, or pass another path)")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// Syntax or type error, on one line: "config PATH: line L, column C: what".
    #[error("config {origin}: {message}")]
    Parse { origin: String, message: String },
    /// The file parses but breaks rules; one entry per problem.
    #[error("{}", render_problems(origin, problems))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

impl ConfigError {
    /// The file (or other origin) the error is about.
    pub fn origin(&self) -> &str {
        match self {
            Self::Read { origin, .. }
            | Self::Parse { origin, .. }
            | Self::Invalid { origin, .. } => origin,
        }
    }

    /// The validation problems, one line each (empty for read and parse errors).
    pub fn problems(&self) -> &[String] {
        match self {
            Self::Invalid { problems, .. } => problems,
            Self::Read { .. } | Self::Parse { .. } => &[],
        }
    }
}

/// toml's own rendering is a multi-line snippet; ipmpd's errors are one line each.
fn one_line_parse_error(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().lines().collect::<Vec<_>>().join("; ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

fn render_problems(origin: &str, problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| format!("config {origin}: {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_toml_str(&text, &origin)
    }

    /// Parses and validates `text`; `origin` (usually the file path) prefixes every message.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_owned(),
            message: one_line_parse_error(text, &e),
        };
        let mut table = toml::de::DeTable::parse(text).map_err(parse_err)?;
        let (mpathd, mut problems) = take_mpathd_keys(table.get_mut()).map_err(parse_err)?;
        let raw = RawConfig::deserialize(toml::de::Deserializer::from(table)).map_err(parse_err)?;

        let mut fdt_ms = raw.failure_detection_time_ms;
        let mut fdt_key = "failure_detection_time_ms";
        if let Some(ms) = mpathd.fdt_ms {
            fdt_key = MPATHD_FDT;
            if fdt_ms.is_some() {
                problems.push(format!(
                    "both {MPATHD_FDT} and failure_detection_time_ms are set: keep one"
                ));
            }
            fdt_ms = Some(ms);
        }
        let mut failback = raw.failback;
        if let Some(fb) = mpathd.failback {
            if failback.is_some() {
                problems.push(format!(
                    "both {MPATHD_FAILBACK} and failback are set: keep one"
                ));
            }
            failback = Some(fb);
        }

        let failure_detection_time = fdt_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_FAILURE_DETECTION_TIME);
        if failure_detection_time < MIN_FAILURE_DETECTION_TIME {
            problems.push(format!(
                "{fdt_key} = {} ms is below the minimum of {} ms: raise it (Solaris would \
                 clamp it to 100 ms)",
                failure_detection_time.as_millis(),
                MIN_FAILURE_DETECTION_TIME.as_millis()
            ));
        }
        let control_socket = raw
            .control_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
        if !control_socket.is_absolute() {
            problems.push(format!(
                "control_socket `{}` is not an absolute path: write e.g. \"{DEFAULT_CONTROL_SOCKET}\"",
                control_socket.display()
            ));
        }
        let link_flap_window = raw
            .link_flap_window_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_LINK_FLAP_WINDOW);
        if link_flap_window.is_zero() || link_flap_window > MAX_LINK_FLAP_WINDOW {
            problems.push(format!(
                "link_flap_window_ms = {} is out of range: use 1..={} (default {}; raise \
                 link_flap_max_ups to tolerate more link-ups)",
                link_flap_window.as_millis(),
                MAX_LINK_FLAP_WINDOW.as_millis(),
                DEFAULT_LINK_FLAP_WINDOW.as_millis()
            ));
        }
        let netlink_rcvbuf = raw.netlink_rcvbuf_bytes.unwrap_or(DEFAULT_NETLINK_RCVBUF);
        if !NETLINK_RCVBUF_RANGE.contains(&netlink_rcvbuf) {
            problems.push(format!(
                "netlink_rcvbuf_bytes = {netlink_rcvbuf} is out of range: use {}..={} (default {DEFAULT_NETLINK_RCVBUF})",
                NETLINK_RCVBUF_RANGE.start(),
                NETLINK_RCVBUF_RANGE.end()
            ));
        }

        let metrics = raw.metrics.and_then(|m| metrics_config(m, &mut problems));
        let groups: Vec<GroupConfig> = raw.group.into_iter().map(GroupConfig::from_raw).collect();
        let config = Self {
            failure_detection_time,
            failback: failback.unwrap_or(true),
            control_socket,
            link_flap_max_ups: raw.link_flap_max_ups.unwrap_or(DEFAULT_LINK_FLAP_MAX_UPS),
            link_flap_window,
            netlink_rcvbuf,
            metrics,
            groups,
        };
        config.validate_groups(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.groups.iter().find(|g| g.name == name)
    }

    fn validate_groups(&self, problems: &mut Vec<String>) {
        if self.groups.is_empty() {
            problems.push(
                "no group is configured: add a [[group]] table with at least one [[group.member]]"
                    .to_owned(),
            );
        }
        if self.groups.len() > MAX_GROUPS as usize {
            problems.push(format!(
                "{} groups are configured, at most {MAX_GROUPS} are supported: remove some",
                self.groups.len()
            ));
        }
        let n_members: usize = self.groups.iter().map(|g| g.members.len()).sum();
        if n_members > MAX_MEMBERS as usize {
            problems.push(format!(
                "{n_members} members are configured over all groups, at most {MAX_MEMBERS} are \
                 supported: remove some"
            ));
        }
        let n_addrs: usize = self.groups.iter().map(|g| g.data_addresses.len()).sum();
        if n_addrs > MAX_ADDRS as usize {
            problems.push(format!(
                "{n_addrs} data addresses are configured over all groups, at most {MAX_ADDRS} \
                 are supported: remove some"
            ));
        }

        // Interface names: unique over groups and members.
        let mut names: HashMap<&str, String> = HashMap::new();
        let all = self.groups.iter().flat_map(|g| {
            std::iter::once((g.name.as_str(), format!("group `{}`", g.name))).chain(
                g.members.iter().map(move |m| {
                    (
                        m.name.as_str(),
                        format!("member `{}` of group `{}`", m.name, g.name),
                    )
                }),
            )
        });
        for (name, what) in all {
            if let Err(why) = check_ifname(name) {
                problems.push(format!("{what}: {why}"));
            }
            match names.get(name) {
                Some(first) => problems.push(format!(
                    "{what}: the name `{name}` is already used by {first}: every group and member \
                     needs its own interface name"
                )),
                None => {
                    names.insert(name, what);
                }
            }
        }

        let mut data_addrs: HashMap<IpAddr, &str> = HashMap::new();
        let mut test_addrs: HashMap<IpAddr, String> = HashMap::new();
        for g in &self.groups {
            g.validate(problems);
            for p in &g.data_addresses {
                match data_addrs.get(&p.addr) {
                    Some(other) if *other != g.name => problems.push(format!(
                        "group `{}`: data address {} is also a data address of group `{other}`: \
                         each address belongs to one group",
                        g.name, p.addr
                    )),
                    Some(_) => {} // duplicate inside the group: reported by GroupConfig::validate
                    None => {
                        data_addrs.insert(p.addr, &g.name);
                    }
                }
            }
        }
        for g in &self.groups {
            for m in &g.members {
                let Some(t) = m.test_address else { continue };
                let what = format!("member `{}` of group `{}`", m.name, g.name);
                if let Some(owner) = data_addrs.get(&t.addr) {
                    problems.push(format!(
                        "{what}: test_address {} is a data address of group `{owner}`: test \
                         addresses never move, so pick an address of its own",
                        t.addr
                    ));
                }
                match test_addrs.get(&t.addr) {
                    Some(other) => problems.push(format!(
                        "{what}: test_address {} is also the test address of {other}: each \
                         member needs its own",
                        t.addr
                    )),
                    None => {
                        test_addrs.insert(t.addr, what);
                    }
                }
            }
        }
    }
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
/// `[metrics]` validated; `None` with a problem noted when it cannot be used.
fn metrics_config(raw: RawMetrics, problems: &mut Vec<String>) -> Option<MetricsConfig> {
    let text = raw
        .listen
        .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.to_owned());
    let allow_remote = raw.allow_remote.unwrap_or(false);
    let listen: std::net::SocketAddr = match text.parse() {
        Ok(a) => a,
        Err(_) => {
            problems.push(format!(
                "metrics.listen = \"{text}\" is not an address:port: write e.g. \
                 \"{DEFAULT_METRICS_LISTEN}\" or \"[::1]:9474\""
            ));
            return None;
        }
    };
    if listen.port() == 0 {
        problems.push(format!(
            "metrics.listen = \"{text}\" has port 0: give the port Prometheus scrapes, e.g. 9474"
        ));
        return None;
    }
    if !listen.ip().is_loopback() && !allow_remote {
        problems.push(format!(
            "metrics.listen = \"{text}\" is not a loopback address: the metrics are served \
             without authentication; set metrics.allow_remote = true to serve them beyond this \
             host, or listen on 127.0.0.1 or [::1]"
        ));
        return None;
    }
    Some(MetricsConfig {
        listen,
        allow_remote,
    })
}

fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the interface name is empty: give e.g. \"eth1\"".to_owned());
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "interface name `{name}` is {} bytes long, the kernel allows at most \
             {MAX_IFNAME_LEN}: shorten it",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!(
            "`{name}` is not a valid interface name: choose e.g. \"ipmp0\""
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name `{}` contains {:?}, which the kernel refuses (no '/', ':' or \
             whitespace): rename it",
            name.escape_debug(),
            c
        ));
    }
    Ok(())
}

/// Rejects addresses that cannot be a unicast host address.
fn check_unicast(ip: IpAddr) -> Result<(), &'static str> {
    if ip.is_unspecified() {
        return Err("is the unspecified address");
    }
    if ip.is_multicast() {
        return Err("is a multicast address");
    }
    if ip.is_loopback() {
        return Err("is a loopback address");
    }
    if let IpAddr::V4(a) = ip
        && a.is_broadcast()
    {
        return Err("is the limited broadcast address");
    }
    Ok(())
}

impl GroupConfig {
    fn from_raw(raw: RawGroup) -> Self {
        let announce = raw
            .announce
            .map_or_else(AnnounceConfig::default, |a| AnnounceConfig {
                count: a.count.unwrap_or(DEFAULT_ANNOUNCE_COUNT),
                interval: a
                    .interval_ms
                    .map(Duration::from_millis)
                    .unwrap_or(DEFAULT_ANNOUNCE_INTERVAL),
            });
        Self {
            name: raw.name,
            data_addresses: raw.data_addresses,
            routes: raw
                .routes
                .into_iter()
                .map(|r| RouteConfig {
                    to: match r.to {
                        RouteDest::Default => Prefix::default_for(r.via),
                        RouteDest::Prefix(p) => p,
                    },
                    via: r.via,
                })
                .collect(),
            xdp_mode: raw.xdp_mode,
            announce,
            buckets: raw.buckets.unwrap_or(DEFAULT_BUCKETS),
            hash_seed: raw.hash_seed,
            probe_targets: raw.probe_targets,
            xdp_echo: raw.xdp_echo.unwrap_or(true),
            link_layer_probes: raw.link_layer_probes.unwrap_or(true),
            members: raw
                .member
                .into_iter()
                .map(|m| MemberConfig {
                    name: m.name,
                    test_address: m.test_address,
                    standby: m.standby,
                })
                .collect(),
        }
    }

    /// The member named `name`, with its index (the group state machine's member id).
    pub fn member(&self, name: &str) -> Option<(usize, &MemberConfig)> {
        self.members
            .iter()
            .enumerate()
            .find(|(_, m)| m.name == name)
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let g = &self.name;
        if self.members.is_empty() {
            problems.push(format!(
                "group `{g}` has no member: add at least one [[group.member]] with name = \"eth1\""
            ));
        }
        if self.data_addresses.is_empty() {
            problems.push(format!(
                "group `{g}` has no data address: add data_addresses = [\"198.51.100.10/24\"]"
            ));
        }
        for t in &self.probe_targets {
            if let Err(why) = check_unicast(*t) {
                problems.push(format!(
                    "group `{g}`: probe target {t} {why}: name a host or router on the link"
                ));
            } else if self.data_addresses.iter().any(|p| p.addr == *t)
                || self
                    .members
                    .iter()
                    .any(|m| m.test_address.is_some_and(|p| p.addr == *t))
            {
                problems.push(format!(
                    "group `{g}`: probe target {t} is one of the group's own addresses: name \
                     another host on the link"
                ));
            }
        }
        let mut seen = HashSet::new();
        for p in &self.data_addresses {
            if !seen.insert(p.addr) {
                problems.push(format!(
                    "group `{g}`: data address {} is listed twice: remove one",
                    p.addr
                ));
            }
            if let Err(why) = check_unicast(p.addr) {
                problems.push(format!(
                    "group `{g}`: data address {p} {why}: use a unicast host address"
                ));
                continue;
            }
            if p.len == 0 {
                problems.push(format!(
                    "group `{g}`: data address {p} has prefix length 0, which puts every \
                     destination on-link: give the subnet's length (e.g. /24 or /64)"
                ));
            } else if let IpAddr::V4(a) = p.addr
                && p.len <= 30
            {
                let net = p.network();
                let host_bits = !mask32(p.len);
                if IpAddr::V4(a) == net {
                    problems.push(format!(
                        "group `{g}`: data address {p} is the network address of its subnet: \
                         use a host address"
                    ));
                } else if u32::from(a) & host_bits == host_bits {
                    problems.push(format!(
                        "group `{g}`: data address {p} is the broadcast address of its subnet: \
                         use a host address"
                    ));
                }
            }
        }

        let mut dests = HashSet::new();
        for r in &self.routes {
            let what = format!("group `{g}`: route to {} via {}", r.to, r.via);
            if r.to.is_ipv4() != r.via.is_ipv4() {
                problems.push(format!(
                    "{what}: destination and gateway are of different address families: use a \
                     gateway of the destination's family"
                ));
                continue;
            }
            if r.to.network() != r.to.addr {
                problems.push(format!(
                    "{what}: the destination has host bits set: write {}/{}",
                    r.to.network(),
                    r.to.len
                ));
            }
            if !dests.insert(Prefix::new(r.to.network(), r.to.len)) {
                problems.push(format!(
                    "{what}: another route of the group has the same destination: keep one"
                ));
            }
            if let Err(why) = check_unicast(r.via) {
                problems.push(format!(
                    "{what}: the gateway {why}: give the router's address"
                ));
                continue;
            }
            if self.data_addresses.iter().any(|p| p.addr == r.via) {
                problems.push(format!(
                    "{what}: the gateway is one of the group's own data addresses: give the \
                     router's address"
                ));
            } else if !self.data_addresses.iter().any(|p| p.contains(r.via)) {
                problems.push(format!(
                    "{what}: the gateway is not on-link (inside no data-address subnet of the \
                     group): add a data address in its subnet or fix `via`"
                ));
            }
        }

        let has_v4 = self.data_addresses.iter().any(Prefix::is_ipv4);
        let has_v6 = self.data_addresses.iter().any(|p| !p.is_ipv4());
        for m in &self.members {
            let Some(t) = m.test_address else { continue };
            let what = format!("member `{}` of group `{g}`", m.name);
            if let Err(why) = check_unicast(t.addr) {
                problems.push(format!(
                    "{what}: test_address {t} {why}: use a unicast host address"
                ));
                continue;
            }
            let (family_ok, family) = if t.is_ipv4() {
                (has_v4, 4)
            } else {
                (has_v6, 6)
            };
            if !family_ok {
                problems.push(format!(
                    "{what}: test_address {t} is IPv{family} but the group has no IPv{family} \
                     data address: probe in a family the group serves"
                ));
            }
            if t.len == 0 {
                problems.push(format!(
                    "{what}: test_address {t} has prefix length 0: give the subnet's length"
                ));
            }
        }

        if !(1..=MAX_BUCKETS).contains(&self.buckets) {
            problems.push(format!(
                "group `{g}`: buckets = {} is out of range: use 1..={MAX_BUCKETS} (default \
                 {DEFAULT_BUCKETS})",
                self.buckets
            ));
        }
        if self.announce.count > MAX_ANNOUNCE_COUNT {
            problems.push(format!(
                "group `{g}`: announce.count = {} is above {MAX_ANNOUNCE_COUNT}: lower it \
                 (default {DEFAULT_ANNOUNCE_COUNT})",
                self.announce.count
            ));
        }
        if self.announce.interval.is_zero() || self.announce.interval > MAX_ANNOUNCE_INTERVAL {
            problems.push(format!(
                "group `{g}`: announce.interval_ms = {} is out of range: use 1..={} (default {})",
                self.announce.interval.as_millis(),
                MAX_ANNOUNCE_INTERVAL.as_millis(),
                DEFAULT_ANNOUNCE_INTERVAL.as_millis()
            ));
        }
    }
}

#[cfg(test)]
mod tests;
