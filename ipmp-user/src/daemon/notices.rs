//! How the group state machine's notices read in the log.

use super::state::GroupRt;
use crate::{group::Notice, metrics::Events};

/// Counts a member's failure or repair for the metrics.
pub(super) fn count_notice(events: &Events, g: &GroupRt, n: &Notice) {
    let name = |m: &usize| g.members.get(*m).map_or("?", |m| m.name.as_str());
    match n {
        Notice::MemberFailed { member, .. } => events.failed(&g.cfg.name, name(member)),
        Notice::MemberRepaired { member } => events.repaired(&g.cfg.name, name(member)),
        _ => {}
    }
}

/// Logs notice `n` of group `g` at its level.
pub(super) fn log_notice(g: &GroupRt, n: &Notice) {
    let name = |m: &usize| g.members.get(*m).map_or("?", |m| m.name.as_str());
    let group = g.cfg.name.as_str();
    match n {
        Notice::AddressRebound { address, from, to } => {
            let addr = g
                .cfg
                .data_addresses
                .get(*address)
                .map(|p| p.addr.to_string())
                .unwrap_or_default();
            tracing::info!(
                %group, %addr,
                from = from.as_ref().map_or("none", name),
                to = to.as_ref().map_or("none", name),
                "data address rebound"
            );
        }
        other => tracing::info!(%group, "{}", describe(g, other)),
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
        Notice::RepairWithheld { member, until } => format!(
            "{} link flapping, repair withheld for {:.1} s (until the link holds; further \
             flaps of this episode are not logged)",
            name(member),
            until
                .saturating_duration_since(std::time::Instant::now())
                .as_secs_f64()
        ),
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
