//! A status snapshot and the event counts as OpenMetrics text, through prometheus-client's
//! encoder. Every series of a family is written under one HELP/TYPE; a member's state is one
//! gauge per possible state (1 for the current one), so alerts can match on the label.

use std::fmt::{self, Write as _};

use ipmp_common::Reason;
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabelKey as _, EncodeLabelSet, LabelSetEncoder, MetricEncoder,
        NoLabelSet,
    },
    metrics::MetricType,
    registry::{Registry, Unit},
};

use super::events::{EventCounts, MemberEvents, RTT_BUCKETS};
use crate::control::{GroupState, GroupStatus, MemberState, MemberStatus, ProbeState, Snapshot};

/// The HTTP Content-Type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const MEMBER_STATES: [MemberState; 4] = [
    MemberState::Ok,
    MemberState::Failed,
    MemberState::Offline,
    MemberState::Unknown,
];
const PROBE_STATES: [ProbeState; 4] = [
    ProbeState::Ok,
    ProbeState::Failed,
    ProbeState::Unknown,
    ProbeState::Disabled,
];
const GROUP_STATES: [GroupState; 3] = [GroupState::Ok, GroupState::Degraded, GroupState::Failed];

/// Member counters read from the snapshot: name, help, whether in bytes, the value.
type SnapshotCounter = (&'static str, &'static str, bool, fn(&MemberStatus) -> u64);
const SNAPSHOT_COUNTERS: [SnapshotCounter; 8] = [
    (
        "member_rx_packets",
        "Inbound data packets the member handed to the IPMP interface.",
        false,
        |m| m.rx_packets,
    ),
    (
        "member_rx",
        "Inbound data bytes the member handed to the IPMP interface.",
        true,
        |m| m.rx_bytes,
    ),
    (
        "member_tx_packets",
        "Outbound data packets the IPMP interface sent through the member.",
        false,
        |m| m.tx_packets,
    ),
    (
        "member_tx",
        "Outbound data bytes the IPMP interface sent through the member.",
        true,
        |m| m.tx_bytes,
    ),
    (
        "member_probes_sent",
        "Failure-detection probes sent from the member.",
        false,
        |m| m.probe_totals.sent,
    ),
    (
        "member_probes_answered",
        "Failure-detection probes of the member that were answered.",
        false,
        |m| m.probe_totals.answered,
    ),
    (
        "member_probes_lost",
        "Failure-detection probes of the member declared lost.",
        false,
        |m| m.probe_totals.lost,
    ),
    (
        "member_probe_replies_forged",
        "Probe replies dropped for failing an integrity check (cookie, id, sequence).",
        false,
        |m| m.probe_forged,
    ),
];

/// The exposition of `snapshot`, `events` and the daemon's own `log_lines_dropped`, ending with
/// `# EOF`. Members without events read as 0, so every counter exists from the first scrape.
pub fn encode(snapshot: Snapshot, events: EventCounts, log_lines_dropped: u64) -> String {
    let mut registry = Registry::with_prefix("ipmp");
    registry.register_collector(Box::new(Scrape {
        snapshot,
        events,
        log_lines_dropped,
    }));
    let mut out = String::new();
    // Writing into a String cannot fail; the collector itself returns no other error.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
        out.push_str("# EOF\n");
    }
    out
}

#[derive(Debug)]
struct Scrape {
    snapshot: Snapshot,
    events: EventCounts,
    log_lines_dropped: u64,
}

/// Labels in order; values escaped as the text format wants (`\\`, `\"`, `\n`).
struct Labels<'a>(Vec<(&'static str, &'a str)>);

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        for (key, value) in &self.0 {
            let mut label = encoder.encode_label();
            let mut key_encoder = label.encode_label_key()?;
            key.encode(&mut key_encoder)?;
            let mut value_encoder = key_encoder.encode_label_value()?;
            for c in value.chars() {
                match c {
                    '\\' => value_encoder.write_str("\\\\")?,
                    '"' => value_encoder.write_str("\\\"")?,
                    '\n' => value_encoder.write_str("\\n")?,
                    c => value_encoder.write_char(c)?,
                }
            }
            value_encoder.finish()?;
        }
        Ok(())
    }
}

fn member_labels<'a>(g: &'a GroupStatus, m: &'a MemberStatus) -> Vec<(&'static str, &'a str)> {
    vec![("group", g.name.as_str()), ("member", m.name.as_str())]
}

fn counter(m: &mut MetricEncoder, labels: Labels, v: u64) -> fmt::Result {
    m.encode_family(&labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(
    m: &mut MetricEncoder,
    labels: Labels,
    v: impl prometheus_client::encoding::EncodeGaugeValue,
) -> fmt::Result {
    m.encode_family(&labels)?.encode_gauge(&v)
}

impl Scrape {
    fn members(&self) -> impl Iterator<Item = (&GroupStatus, &MemberStatus)> {
        self.snapshot
            .groups
            .iter()
            .flat_map(|g| g.members.iter().map(move |m| (g, m)))
    }

    fn events(&self, g: &GroupStatus, m: &MemberStatus) -> MemberEvents {
        self.events
            .get(&(g.name.clone(), m.name.clone()))
            .cloned()
            .unwrap_or_default()
    }

    /// One counter family over every member.
    fn member_counter(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        value: impl Fn(&Self, &GroupStatus, &MemberStatus) -> u64,
    ) -> fmt::Result {
        let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
        for (g, member) in self.members() {
            counter(
                &mut m,
                Labels(member_labels(g, member)),
                value(self, g, member),
            )?;
        }
        Ok(())
    }

    /// One gauge per member and possible state: 1 for the current state, else 0.
    fn member_enum<S: Copy + PartialEq + fmt::Display>(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        states: &[S],
        current: impl Fn(&MemberStatus) -> S,
    ) -> fmt::Result {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (g, member) in self.members() {
            for s in states {
                let text = s.to_string();
                let mut labels = member_labels(g, member);
                labels.push(("state", &text));
                gauge(&mut m, Labels(labels), i64::from(current(member) == *s))?;
            }
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let enc = &mut enc;
        self.member_enum(
            enc,
            "member_state",
            "Member state as ipmpstat -i shows it: 1 for the current state.",
            &MEMBER_STATES,
            |m| m.state,
        )?;
        self.member_enum(
            enc,
            "member_probe_state",
            "Probe-based failure detection state of the member: 1 for the current state.",
            &PROBE_STATES,
            |m| m.probe,
        )?;
        {
            let mut m = enc.encode_descriptor(
                "member_active",
                "1 when the member carries data traffic (ipmpstat -i ACTIVE).",
                None,
                MetricType::Gauge,
            )?;
            for (g, member) in self.members() {
                gauge(
                    &mut m,
                    Labels(member_labels(g, member)),
                    i64::from(member.active),
                )?;
            }
        }
        for (name, help, bytes, value) in SNAPSHOT_COUNTERS {
            let unit = bytes.then_some(&Unit::Bytes);
            self.member_counter(enc, name, help, unit, |_, _, m| value(m))?;
        }
        {
            let mut m = enc.encode_descriptor(
                "member_probe_rtt",
                "Round-trip time of answered failure-detection probes (receive timestamp minus send time).",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (g, member) in self.members() {
                let rtt = self.events(g, member).rtt;
                let buckets: Vec<(f64, u64)> = RTT_BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::MAX])
                    .zip(rtt.counts)
                    .collect();
                m.encode_family(&Labels(member_labels(g, member)))?
                    .encode_histogram::<NoLabelSet>(rtt.sum_seconds, rtt.count, &buckets, None)?;
            }
        }
        self.member_counter(
            enc,
            "member_failures",
            "Times the member failed (link or probes).",
            None,
            |s, g, m| s.events(g, m).failures,
        )?;
        self.member_counter(
            enc,
            "member_repairs",
            "Times the member was repaired.",
            None,
            |s, g, m| s.events(g, m).repairs,
        )?;
        {
            let mut m = enc.encode_descriptor(
                "group_state",
                "Group state as ipmpstat -g shows it: 1 for the current state.",
                None,
                MetricType::Gauge,
            )?;
            for g in &self.snapshot.groups {
                for s in GROUP_STATES {
                    let labels = vec![("group", g.name.as_str()), ("state", s.as_str())];
                    gauge(&mut m, Labels(labels), i64::from(g.state == s))?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "group_fdt",
                "Current failure detection time of the group (groups whose members probe).",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for g in &self.snapshot.groups {
                if let Some(ms) = g.fdt_ms {
                    let labels = vec![("group", g.name.as_str())];
                    gauge(&mut m, Labels(labels), ms as f64 / 1000.0)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "group_members",
                "Members of the group in each state.",
                None,
                MetricType::Gauge,
            )?;
            for g in &self.snapshot.groups {
                for s in MEMBER_STATES {
                    let n = g.members.iter().filter(|m| m.state == s).count();
                    let labels = vec![("group", g.name.as_str()), ("state", s.as_str())];
                    gauge(&mut m, Labels(labels), n as i64)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "group_active_members",
                "Members of the group that carry data traffic.",
                None,
                MetricType::Gauge,
            )?;
            for g in &self.snapshot.groups {
                let n = g.members.iter().filter(|m| m.active).count();
                gauge(&mut m, Labels(vec![("group", g.name.as_str())]), n as i64)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "log_lines_dropped",
                "Log lines ipmpd dropped because stderr (the journal) did not keep up.",
                None,
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&self.log_lines_dropped, None)?;
        }
        let mut m = enc.encode_descriptor(
            "dataplane_packets",
            "Packets the data plane counted on the member, by reason (ipmp-common reason labels).",
            None,
            MetricType::Counter,
        )?;
        for (g, member) in self.members() {
            for reason in Reason::ALL {
                let v = member.counters.get(reason.label()).copied().unwrap_or(0);
                let mut labels = member_labels(g, member);
                labels.push(("reason", reason.label()));
                counter(&mut m, Labels(labels), v)?;
            }
        }
        Ok(())
    }
}
