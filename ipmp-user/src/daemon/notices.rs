//! How the group state machine's notices read in the log: one line per change, with the
//! fields `group`, `member`, `from`, `to` and `reason` (what set it off) beside the human text,
//! so that `journalctl -u ipmpd` reads well and `journalctl -o json` can be filtered.

use super::state::GroupRt;
use crate::{
    group::{Event, GroupState, Notice},
    metrics::Events,
};

/// Counts a member's failure or repair for the metrics.
pub(super) fn count_notice(events: &Events, g: &GroupRt, n: &Notice) {
    let name = |m: &usize| g.members.get(*m).map_or("?", |m| m.name.as_str());
    match n {
        Notice::MemberFailed { member, .. } => events.failed(&g.cfg.name, name(member)),
        Notice::MemberRepaired { member } => events.repaired(&g.cfg.name, name(member)),
        _ => {}
    }
}

/// What set a batch of notices off: their `reason`, and the group's state before it.
pub(super) struct Cause {
    reason: String,
    group_before: GroupState,
}

impl Cause {
    /// `event`, about to be handled by group `g`.
    pub(super) fn of(g: &GroupRt, event: &Event) -> Self {
        let name = |m: usize| g.members.get(m).map_or("?", |m| m.name.as_str());
        let names = |set: crate::group::MemberSet| set.iter().map(name).collect::<Vec<_>>();
        let reason = match *event {
            Event::Link { member, up: true } => format!("link up on {}", name(member)),
            Event::Link { member, up: false } => format!("link down on {}", name(member)),
            Event::Probe { failed, repaired } => {
                let mut parts = Vec::new();
                if !failed.is_empty() {
                    parts.push(format!("probes lost on {}", names(failed).join(", ")));
                }
                if !repaired.is_empty() {
                    parts.push(format!("probes answered on {}", names(repaired).join(", ")));
                }
                parts.join("; ")
            }
            Event::Offline { member } => format!("offline requested for {}", name(member)),
            Event::Online { member } => format!("online requested for {}", name(member)),
            Event::Tick => "flap hold-down ended".into(),
        };
        Self {
            reason,
            group_before: g.fsm.state(),
        }
    }
}

/// Logs notice `n` of group `g`, caused by `cause`, at its level.
pub(super) fn log_notice(g: &GroupRt, n: &Notice, cause: &Cause) {
    let name = |m: &usize| g.members.get(*m).map_or("?", |m| m.name.as_str());
    let group = g.cfg.name.as_str();
    let reason = cause.reason.as_str();
    let text = describe(g, n);
    // (member, from, to) of a member's change; the group's own change below.
    let member_change = match *n {
        Notice::MemberFailed { member, .. } => Some((member, "ok", "failed")),
        Notice::MemberRepaired { member } => Some((member, "failed", "ok")),
        Notice::RepairWithheld { member, .. } => Some((member, "failed", "failed")),
        Notice::MemberActivated { member } => Some((member, "inactive", "active")),
        Notice::MemberDeactivated { member } => Some((member, "active", "inactive")),
        Notice::MemberOffline { member } => Some((member, "online", "offline")),
        Notice::MemberOnline { member } => Some((member, "offline", "online")),
        _ => None,
    };
    if let Some((member, from, to)) = member_change {
        let member = name(&member);
        tracing::info!(%group, %member, %from, %to, ?reason, "{text}");
        return;
    }
    match n {
        Notice::GroupFailed | Notice::GroupRepaired => {
            let (from, to) = (cause.group_before.to_string(), g.fsm.state().to_string());
            tracing::info!(%group, %from, %to, ?reason, "{text}");
        }
        Notice::AddressRebound { address, from, to } => {
            let addr = g
                .cfg
                .data_addresses
                .get(*address)
                .map(|p| p.addr.to_string())
                .unwrap_or_default();
            tracing::info!(
                %group, %addr,
                from = %from.as_ref().map_or("none", name),
                to = %to.as_ref().map_or("none", name),
                ?reason,
                "data address rebound"
            );
        }
        Notice::CastChanged { from, to } => tracing::info!(
            %group,
            from = %from.as_ref().map_or("none", name),
            to = %to.as_ref().map_or("none", name),
            ?reason,
            "{text}"
        ),
        _ => tracing::info!(%group, ?reason, "{text}"),
    }
}

fn describe(g: &GroupRt, n: &Notice) -> String {
    let name = |m: &usize| {
        g.members
            .get(*m)
            .map_or_else(|| "?".to_string(), |m| m.name.clone())
    };
    match n {
        Notice::MemberFailed { member, cause } => {
            format!("{} failed ({cause:?})", name(member))
        }
        Notice::MemberRepaired { member } => format!("{} repaired", name(member)),
        Notice::RepairWithheld { member, .. } => {
            format!("{} is flapping: repair withheld", name(member))
        }
        Notice::MemberActivated { member } => format!("{} active", name(member)),
        Notice::MemberDeactivated { member } => format!("{} inactive", name(member)),
        Notice::MemberOffline { member } => format!("{} offline", name(member)),
        Notice::MemberOnline { member } => format!("{} online", name(member)),
        Notice::GroupFailed => "group failed: no usable member".into(),
        Notice::GroupRepaired => "group repaired".into(),
        Notice::CastChanged { from, to } => format!(
            "cast member {} -> {}",
            from.as_ref().map_or_else(|| "none".into(), name),
            to.as_ref().map_or_else(|| "none".into(), name)
        ),
        Notice::BucketsMoved { count } => format!("{count} buckets moved"),
        Notice::AddressRebound { address, .. } => format!("address {address} rebound"),
    }
}
