//! The IPMP group state machine: pure, no I/O, no clock (time comes with every event).
//!
//! Semantics follow Solaris in.mpathd (which member is failed, offline, inactive) and the
//! kernel's ipmp.c (which active member holds each data address and the cast role):
//!
//! - **usable** = not failed and not offline; **active** = usable and not inactive.
//! - **Failure**: two detectors, and a member is failed while *either* says so, repaired only
//!   when *both* agree (in.mpathd: link state is always honoured).
//!   - Link: link down fails a member at once. Link up clears the link detector unless the
//!     link flaps: more than `flap_max_ups` link-ups within `flap_window` (Solaris
//!     `LINK_UP_PERMIN`) withhold it until the window holds no more than that; a
//!     [`Event::Tick`] at [`Group::next_deadline`] then clears it if the link is still up.
//!   - Probe: [`Event::Probe`] carries the verdicts of the prober ([`crate::probe::Prober`]),
//!     which owns the in.mpathd rules (5 lost probes, 10 acked, interface vs group failure).
//!     Verdicts come as sets of members applied in one step, so a group failure fails every
//!     probing member at once and addresses do not hop from one doomed member to the next.
//!   - [`FailCause`] names the detector that failed a member (link first when both did).
//! - **Activation** (in.mpathd `phyint_transition_to_running`, `phyint_activate_another`).
//!   The group wants as many active members as it has non-standby members (at least one).
//!   When an active member is lost (failed or offline), another inactive usable member is
//!   activated, standby members first. A member that becomes usable is made active if the group
//!   has no active member; a standby one only if the group is short of active members; a
//!   non-standby one with FAILBACK=yes, or on its first bring-up; with FAILBACK=no it stays
//!   inactive until another member is lost. Activating a non-standby member makes a surplus
//!   active standby inactive again.
//! - **Offline/online** (if_mpadm -d/-r). Offline is refused unless another usable member
//!   remains, or, when the group has already failed, another member that is not offline.
//!   Online treats the member as repaired (if its detectors agree) with the FAILBACK rules.
//! - **Group state**: ok when every member is usable, failed when none is, degraded otherwise.
//! - **Bindings**: each data address is bound to an active member; the least-loaded one takes
//!   it (ties: lowest id); a newly active member takes addresses from the busiest until the
//!   counts are within one (`ipmp_illgrp_min_ill`, `ipmp_ill_bind_ipif`). The same balancing
//!   runs over the flow buckets ([`BucketTable`]).
//! - **Cast member**: kept while active, else the lowest-id active member.
//!
//! [`Group::handle`] returns [`Notice`]s for every change so the daemon can log, write maps and
//! announce (an [`Notice::AddressRebound`] means: announce the address from its new member).

use std::{
    collections::VecDeque,
    fmt,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    buckets::BucketTable,
    config::{Config, GroupConfig},
};

/// Index into [`GroupSpec::members`].
pub type MemberId = usize;

/// What a group is made of; fixed for the group's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub failback: bool,
    pub members: Vec<MemberSpec>,
    /// Number of data addresses (indices `0..n_addresses` for [`Group::binding`]).
    pub n_addresses: usize,
    pub n_buckets: u32,
    /// More link-ups than this within `flap_window` withhold a repair.
    pub flap_max_ups: u32,
    pub flap_window: Duration,
}

impl GroupSpec {
    /// The spec of `group` under the daemon-wide settings of `config`.
    pub fn from_config(config: &Config, group: &GroupConfig) -> Self {
        Self {
            name: group.name.clone(),
            failback: config.failback,
            members: group
                .members
                .iter()
                .map(|m| MemberSpec {
                    name: m.name.clone(),
                    standby: m.standby,
                })
                .collect(),
            n_addresses: group.data_addresses.len(),
            n_buckets: group.buckets,
            flap_max_ups: config.link_flap_max_ups,
            flap_window: config.link_flap_window,
        }
    }

    /// How many active members the group wants: one per non-standby member, at least one.
    fn capacity(&self) -> usize {
        self.members.iter().filter(|m| !m.standby).count().max(1)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: String,
    /// Kept inactive while the group has enough active members (Solaris STANDBY).
    pub standby: bool,
}

/// Link (carrier) state of a member as netlink reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    Up,
    Down,
    /// The driver reports no link state; treated as up.
    Unknown,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Unknown => "unknown",
        })
    }
}

/// A set of members of one group, as a bit set (a group has at most
/// [`MemberSet::CAPACITY`] members; the configuration allows fewer, `MAX_MEMBERS` in all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberSet(u64);

impl MemberSet {
    /// Largest member id + 1 a set can hold.
    pub const CAPACITY: usize = 64;

    pub const fn new() -> Self {
        Self(0)
    }

    /// The set of one member (empty if `member` is at or beyond [`Self::CAPACITY`]).
    pub fn single(member: MemberId) -> Self {
        let mut s = Self::new();
        s.insert(member);
        s
    }

    /// Adds `member`; false if it is beyond [`Self::CAPACITY`] (the set is unchanged).
    pub fn insert(&mut self, member: MemberId) -> bool {
        if member >= Self::CAPACITY {
            return false;
        }
        self.0 |= 1 << member;
        true
    }

    pub fn remove(&mut self, member: MemberId) {
        if member < Self::CAPACITY {
            self.0 &= !(1 << member);
        }
    }

    pub fn contains(&self, member: MemberId) -> bool {
        member < Self::CAPACITY && self.0 & (1 << member) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// Members in increasing id order.
    pub fn iter(&self) -> impl Iterator<Item = MemberId> + '_ {
        (0..Self::CAPACITY).filter(|&m| self.contains(m))
    }

    /// The highest member id in the set.
    pub fn max(&self) -> Option<MemberId> {
        (self.0 != 0).then(|| Self::CAPACITY - 1 - self.0.leading_zeros() as usize)
    }
}

impl FromIterator<MemberId> for MemberSet {
    /// Ids beyond [`MemberSet::CAPACITY`] are dropped.
    fn from_iter<I: IntoIterator<Item = MemberId>>(iter: I) -> Self {
        let mut s = Self::new();
        for m in iter {
            s.insert(m);
        }
        s
    }
}

/// Input to [`Group::handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Carrier change (or a repeat of the current state, which is ignored).
    Link { member: MemberId, up: bool },
    /// Verdicts of the probe detector, applied together: members in `failed` are failed by
    /// probes, members in `repaired` are no longer (a member stays failed while its link is
    /// down or its repair withheld). Repeats of the current verdict are ignored; a member may
    /// not be in both sets. [`crate::probe::Prober`] produces these.
    Probe {
        failed: MemberSet,
        repaired: MemberSet,
    },
    /// Administrative offline (if_mpadm -d).
    Offline { member: MemberId },
    /// Undo an offline (if_mpadm -r).
    Online { member: MemberId },
    /// Time passed; due at [`Group::next_deadline`].
    Tick,
}

/// The detector that failed a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailCause {
    /// Carrier lost (or a repair withheld because the link flaps).
    LinkDown,
    /// Probes lost (in.mpathd: 5 in a row), or not yet repaired by 10 acked in a row.
    Probe,
}

impl fmt::Display for FailCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LinkDown => "link down",
            Self::Probe => "probe failure",
        })
    }
}

/// A change, reported by [`Group::handle`] in the order: member events, (de)activations,
/// group state, address bindings, cast member, buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    MemberFailed {
        member: MemberId,
        cause: FailCause,
    },
    MemberRepaired {
        member: MemberId,
    },
    /// The link came back but flaps; the repair waits until `until` (a Tick then).
    RepairWithheld {
        member: MemberId,
        until: Instant,
    },
    MemberActivated {
        member: MemberId,
    },
    MemberDeactivated {
        member: MemberId,
    },
    MemberOffline {
        member: MemberId,
    },
    MemberOnline {
        member: MemberId,
    },
    /// No member is usable any more.
    GroupFailed,
    /// A member is usable again after a group failure.
    GroupRepaired,
    /// Data address `address` moved; announce it from `to`.
    AddressRebound {
        address: usize,
        from: Option<MemberId>,
        to: Option<MemberId>,
    },
    CastChanged {
        from: Option<MemberId>,
        to: Option<MemberId>,
    },
    BucketsMoved {
        count: u32,
    },
}

/// Why an event was refused; the group is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("group {group} has no member with id {member} (it has {count} members)")]
    UnknownMember {
        group: String,
        member: MemberId,
        count: usize,
    },
    #[error("{member} is already offline")]
    AlreadyOffline { member: String },
    #[error("{member} is not offline, so there is nothing to bring back online")]
    NotOffline { member: String },
    #[error(
        "probe verdicts for group {group} both fail and repair {member}: send one verdict per \
         member"
    )]
    ConflictingVerdicts { group: String, member: String },
    #[error(
        "cannot offline {member}: no other functioning interfaces are in its IPMP group \
         (repair or online another member first)"
    )]
    OfflineRefused { member: String },
}

/// Solaris ipmpstat group state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupState {
    /// Every member is usable.
    Ok,
    /// Some members are usable.
    Degraded,
    /// No member is usable.
    Failed,
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Failed => "failed",
        })
    }
}

/// Solaris ipmpstat member state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Ok,
    Failed,
    Offline,
    /// Usable, but no detector has a verdict yet (no link state reported).
    Unknown,
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Offline => "offline",
            Self::Unknown => "unknown",
        })
    }
}

/// A member as ipmpstat shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub link: Link,
    pub failed: bool,
    /// Failed by the probe detector (besides, or instead of, the link).
    pub probe_failed: bool,
    pub offline: bool,
    /// Usable but deliberately not carrying data (Solaris INACTIVE).
    pub inactive: bool,
    pub standby: bool,
    pub usable: bool,
    pub active: bool,
    pub state: MemberState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    link: Link,
    /// Failed by link detection: the link is down, or up with the repair withheld.
    link_failed: bool,
    /// Failed by probe detection ([`Event::Probe`]).
    probe_failed: bool,
    offline: bool,
    /// Meaningful while usable; decided each time the member becomes usable.
    inactive: bool,
    /// Has been usable since the group started (FAILBACK=no activates on first bring-up).
    ever_usable: bool,
    /// The latest down→up transitions (at most `flap_max_ups + 1`), oldest first.
    ups: VecDeque<Instant>,
    /// Repair withheld until then (flapping).
    withheld_until: Option<Instant>,
}

impl Member {
    fn failed(&self) -> bool {
        self.link_failed || self.probe_failed
    }

    fn cause(&self) -> Option<FailCause> {
        if self.link_failed {
            Some(FailCause::LinkDown)
        } else if self.probe_failed {
            Some(FailCause::Probe)
        } else {
            None
        }
    }

    fn usable(&self) -> bool {
        !self.failed() && !self.offline
    }

    fn active(&self) -> bool {
        self.usable() && !self.inactive
    }
}

/// One IPMP group's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    spec: GroupSpec,
    members: Vec<Member>,
    buckets: BucketTable,
    /// Owner per data address (one slot per address).
    bindings: BucketTable,
    cast: Option<MemberId>,
    since: Instant,
}

/// What `settle` compares against.
struct Before {
    active: Vec<bool>,
    state: GroupState,
}

impl Group {
    /// A group at start-up. `links[i]` is member i's link state (missing entries count as
    /// unknown); a member whose link is down starts failed, unknown counts as up. Non-standby
    /// members start active; standby members start inactive unless needed.
    pub fn new(spec: GroupSpec, links: &[Link], now: Instant) -> Self {
        let members = (0..spec.members.len())
            .map(|i| {
                let link = links.get(i).copied().unwrap_or(Link::Unknown);
                Member {
                    link,
                    link_failed: link == Link::Down,
                    probe_failed: false,
                    offline: false,
                    inactive: true,
                    ever_usable: false,
                    ups: VecDeque::new(),
                    withheld_until: None,
                }
            })
            .collect();
        let mut group = Self {
            buckets: BucketTable::new(spec.n_buckets),
            bindings: BucketTable::new(u32::try_from(spec.n_addresses).unwrap_or(u32::MAX)),
            spec,
            members,
            cast: None,
            since: now,
        };
        for standby in [false, true] {
            for m in 0..group.members.len() {
                if group.spec.members[m].standby == standby && group.members[m].usable() {
                    group.on_usable(m);
                }
            }
        }
        let mut ignored = Vec::new();
        group.settle_placement(&mut ignored);
        group
    }

    /// Applies `event` at time `now`. On error the group is unchanged.
    pub fn handle(&mut self, event: Event, now: Instant) -> Result<Vec<Notice>, GroupError> {
        let before = Before {
            active: self.members.iter().map(Member::active).collect(),
            state: self.state(),
        };
        let mut notices = Vec::new();
        match event {
            Event::Link { member, up } => {
                self.check_member(member)?;
                if up {
                    self.link_up(member, now, &mut notices);
                } else {
                    self.link_down(member, &mut notices);
                }
            }
            Event::Offline { member } => {
                self.check_member(member)?;
                if self.members[member].offline {
                    return Err(GroupError::AlreadyOffline {
                        member: self.spec.members[member].name.clone(),
                    });
                }
                if !self.may_offline(member) {
                    return Err(GroupError::OfflineRefused {
                        member: self.spec.members[member].name.clone(),
                    });
                }
                self.go_offline(member, &mut notices);
            }
            Event::Online { member } => {
                self.check_member(member)?;
                if !self.members[member].offline {
                    return Err(GroupError::NotOffline {
                        member: self.spec.members[member].name.clone(),
                    });
                }
                self.members[member].offline = false;
                notices.push(Notice::MemberOnline { member });
                if self.members[member].usable() {
                    self.on_usable(member);
                }
            }
            Event::Probe { failed, repaired } => {
                self.check_verdicts(failed, repaired)?;
                for member in failed.iter() {
                    self.probe_failed(member, &mut notices);
                }
                for member in repaired.iter() {
                    self.probe_repaired(member, &mut notices);
                }
            }
            Event::Tick => {
                for m in 0..self.members.len() {
                    if self.members[m].withheld_until.is_some_and(|t| t <= now) {
                        self.try_repair(m, now, &mut notices);
                    }
                }
            }
        }
        self.settle(&before, &mut notices);
        Ok(notices)
    }

    /// When the next [`Event::Tick`] is due (a withheld repair expires), if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.members.iter().filter_map(|m| m.withheld_until).min()
    }

    pub fn spec(&self) -> &GroupSpec {
        &self.spec
    }

    /// The time the group was created.
    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn state(&self) -> GroupState {
        let usable = self.members.iter().filter(|m| m.usable()).count();
        if usable == 0 {
            GroupState::Failed
        } else if usable == self.members.len() {
            GroupState::Ok
        } else {
            GroupState::Degraded
        }
    }

    /// Member `id` as ipmpstat shows it.
    ///
    /// # Panics
    /// If `id` is not an index into `spec().members` (ids come from there).
    pub fn member(&self, id: MemberId) -> MemberView {
        let m = &self.members[id];
        let state = if m.offline {
            MemberState::Offline
        } else if m.failed() {
            MemberState::Failed
        } else if m.link == Link::Unknown {
            MemberState::Unknown
        } else {
            MemberState::Ok
        };
        MemberView {
            link: m.link,
            failed: m.failed(),
            probe_failed: m.probe_failed,
            offline: m.offline,
            inactive: m.inactive,
            standby: self.spec.members[id].standby,
            usable: m.usable(),
            active: m.active(),
            state,
        }
    }

    /// The id of the member named `name`.
    pub fn member_id(&self, name: &str) -> Option<MemberId> {
        self.spec.members.iter().position(|m| m.name == name)
    }

    /// Why member `id` is failed (`None` if it is not, or no such member).
    pub fn fail_cause(&self, id: MemberId) -> Option<FailCause> {
        self.members.get(id).and_then(Member::cause)
    }

    /// Until when member `id`'s repair is withheld because its link flaps.
    pub fn repair_withheld_until(&self, id: MemberId) -> Option<Instant> {
        self.members.get(id).and_then(|m| m.withheld_until)
    }

    /// Active members, by id.
    pub fn active_members(&self) -> Vec<MemberId> {
        (0..self.members.len())
            .filter(|&m| self.members[m].active())
            .collect()
    }

    pub fn buckets(&self) -> &BucketTable {
        &self.buckets
    }

    /// The member data address `address` is bound to (`None` when no member is active).
    pub fn binding(&self, address: usize) -> Option<MemberId> {
        self.bindings.owner(address)
    }

    /// The member that sends and receives the group's broadcast and multicast.
    pub fn cast(&self) -> Option<MemberId> {
        self.cast
    }

    fn check_member(&self, member: MemberId) -> Result<(), GroupError> {
        if member < self.members.len() {
            Ok(())
        } else {
            Err(GroupError::UnknownMember {
                group: self.spec.name.clone(),
                member,
                count: self.members.len(),
            })
        }
    }

    fn link_down(&mut self, member: MemberId, notices: &mut Vec<Notice>) {
        let m = &mut self.members[member];
        if m.link == Link::Down {
            return;
        }
        m.link = Link::Down;
        m.withheld_until = None;
        if !m.link_failed {
            let was_failed = m.failed();
            let was_active = m.active();
            m.link_failed = true;
            if !was_failed {
                notices.push(Notice::MemberFailed {
                    member,
                    cause: FailCause::LinkDown,
                });
            }
            if was_active {
                self.activate_another();
            }
        }
    }

    fn check_verdicts(&self, failed: MemberSet, repaired: MemberSet) -> Result<(), GroupError> {
        for set in [failed, repaired] {
            if let Some(max) = set.max() {
                self.check_member(max)?;
            }
        }
        if let Some(member) = failed.iter().find(|&m| repaired.contains(m)) {
            return Err(GroupError::ConflictingVerdicts {
                group: self.spec.name.clone(),
                member: self.spec.members[member].name.clone(),
            });
        }
        Ok(())
    }

    fn probe_failed(&mut self, member: MemberId, notices: &mut Vec<Notice>) {
        let m = &mut self.members[member];
        if m.probe_failed {
            return;
        }
        let was_failed = m.failed();
        let was_active = m.active();
        m.probe_failed = true;
        if !was_failed {
            notices.push(Notice::MemberFailed {
                member,
                cause: FailCause::Probe,
            });
        }
        if was_active {
            self.activate_another();
        }
    }

    fn probe_repaired(&mut self, member: MemberId, notices: &mut Vec<Notice>) {
        let m = &mut self.members[member];
        if !m.probe_failed {
            return;
        }
        m.probe_failed = false;
        if m.failed() {
            // The link detector still says failed (down, or its repair withheld).
            return;
        }
        notices.push(Notice::MemberRepaired { member });
        if m.usable() {
            self.on_usable(member);
        }
    }

    fn link_up(&mut self, member: MemberId, now: Instant, notices: &mut Vec<Notice>) {
        let max_ups = self.spec.flap_max_ups as usize;
        let m = &mut self.members[member];
        let was = m.link;
        m.link = Link::Up;
        // Unknown → up is the driver starting to report; only down → up is a link-up.
        if was != Link::Down {
            return;
        }
        m.ups.push_back(now);
        while m.ups.len() > max_ups + 1 {
            m.ups.pop_front();
        }
        if m.link_failed {
            self.try_repair(member, now, notices);
        }
    }

    /// Repairs a link-failed member whose link is up, unless the link flaps.
    fn try_repair(&mut self, member: MemberId, now: Instant, notices: &mut Vec<Notice>) {
        let window = self.spec.flap_window;
        let max_ups = self.spec.flap_max_ups as usize;
        let m = &mut self.members[member];
        if m.link != Link::Up || !m.link_failed {
            m.withheld_until = None;
            return;
        }
        while m
            .ups
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            m.ups.pop_front();
        }
        if m.ups.len() > max_ups {
            // The window holds at most max_ups ups once the oldest of the last max_ups + 1
            // has aged out. An overflowing Instant leaves it withheld until the next link-up.
            let until = m
                .ups
                .get(m.ups.len() - max_ups - 1)
                .and_then(|&t| t.checked_add(window));
            if until != m.withheld_until {
                m.withheld_until = until;
                if let Some(until) = until {
                    notices.push(Notice::RepairWithheld { member, until });
                }
            }
            return;
        }
        m.withheld_until = None;
        m.link_failed = false;
        if m.failed() {
            // The probe detector still says failed: repaired only when both agree.
            return;
        }
        notices.push(Notice::MemberRepaired { member });
        if m.usable() {
            self.on_usable(member);
        }
    }

    fn may_offline(&self, member: MemberId) -> bool {
        let others = || {
            self.members
                .iter()
                .enumerate()
                .filter(move |(i, _)| *i != member)
                .map(|(_, m)| m)
        };
        if others().any(Member::usable) {
            return true;
        }
        // The group has already failed: any other member that is not offline will do.
        self.state() == GroupState::Failed && others().any(|m| !m.offline)
    }

    fn go_offline(&mut self, member: MemberId, notices: &mut Vec<Notice>) {
        let m = &mut self.members[member];
        let was_active = m.active();
        m.offline = true;
        // in.mpathd clears INACTIVE on offline; it is decided afresh on online.
        m.inactive = false;
        notices.push(Notice::MemberOffline { member });
        if was_active {
            self.activate_another();
        }
    }

    /// Decides whether `member`, which has just become usable, is active.
    fn on_usable(&mut self, member: MemberId) {
        let others_active = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, m)| *i != member && m.active())
            .count();
        let standby = self.spec.members[member].standby;
        let m = &mut self.members[member];
        let first = !m.ever_usable;
        m.ever_usable = true;
        m.inactive = if others_active == 0 {
            false
        } else if standby {
            others_active >= self.spec.capacity()
        } else {
            !(self.spec.failback || first)
        };
        if !m.inactive && !standby {
            self.deactivate_surplus_standby();
        }
    }

    /// Replaces a lost active member: activates an inactive usable member, standby first.
    fn activate_another(&mut self) {
        let pick = (0..self.members.len())
            .filter(|&i| self.members[i].usable() && self.members[i].inactive)
            .min_by_key(|&i| (!self.spec.members[i].standby, i));
        if let Some(i) = pick {
            self.members[i].inactive = false;
        }
    }

    /// Makes active standby members inactive while the group has more active members than it
    /// wants (highest id first).
    fn deactivate_surplus_standby(&mut self) {
        while self.members.iter().filter(|m| m.active()).count() > self.spec.capacity() {
            let pick = (0..self.members.len())
                .rev()
                .find(|&i| self.spec.members[i].standby && self.members[i].active());
            match pick {
                Some(i) => self.members[i].inactive = true,
                None => break,
            }
        }
    }

    /// Reports (de)activations and group state changes, then places addresses, cast and
    /// buckets on the active members.
    fn settle(&mut self, before: &Before, notices: &mut Vec<Notice>) {
        for (member, m) in self.members.iter().enumerate() {
            if before.active[member] && !m.active() {
                notices.push(Notice::MemberDeactivated { member });
            }
        }
        for (member, m) in self.members.iter().enumerate() {
            if !before.active[member] && m.active() {
                notices.push(Notice::MemberActivated { member });
            }
        }
        let state = self.state();
        if state == GroupState::Failed && before.state != GroupState::Failed {
            notices.push(Notice::GroupFailed);
        } else if state != GroupState::Failed && before.state == GroupState::Failed {
            notices.push(Notice::GroupRepaired);
        }
        self.settle_placement(notices);
    }

    fn settle_placement(&mut self, notices: &mut Vec<Notice>) {
        let active = self.active_members();
        let old = self.bindings.clone();
        self.bindings.rebalance(&active);
        for address in self.bindings.changed_from(&old) {
            notices.push(Notice::AddressRebound {
                address,
                from: old.owner(address),
                to: self.bindings.owner(address),
            });
        }
        let cast = match self.cast {
            Some(c) if active.contains(&c) => Some(c),
            _ => active.first().copied(),
        };
        if cast != self.cast {
            notices.push(Notice::CastChanged {
                from: self.cast,
                to: cast,
            });
            self.cast = cast;
        }
        let count = self.buckets.rebalance(&active);
        if count > 0 {
            notices.push(Notice::BucketsMoved { count });
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const E1: MemberId = 0;
    const E2: MemberId = 1;
    const E3: MemberId = 2;

    fn spec(members: &[(&str, bool)], failback: bool) -> GroupSpec {
        GroupSpec {
            name: "ipmp0".into(),
            failback,
            members: members
                .iter()
                .map(|(n, s)| MemberSpec {
                    name: (*n).into(),
                    standby: *s,
                })
                .collect(),
            n_addresses: 4,
            n_buckets: 64,
            flap_max_ups: 2,
            flap_window: Duration::from_secs(60),
        }
    }

    /// eth1, eth2, eth3 (standby), links up.
    fn three(failback: bool) -> (Group, Instant) {
        let t0 = Instant::now();
        let g = Group::new(
            spec(
                &[("eth1", false), ("eth2", false), ("eth3", true)],
                failback,
            ),
            &[Link::Up; 3],
            t0,
        );
        (g, t0)
    }

    fn down(m: MemberId) -> Event {
        Event::Link {
            member: m,
            up: false,
        }
    }

    fn up(m: MemberId) -> Event {
        Event::Link {
            member: m,
            up: true,
        }
    }

    fn secs(t: Instant, s: u64) -> Instant {
        t + Duration::from_secs(s)
    }

    fn has(notices: &[Notice], n: Notice) -> bool {
        notices.contains(&n)
    }

    #[test]
    fn start_all_up_standby_inactive() {
        let (g, _) = three(true);
        assert_eq!(g.active_members(), vec![E1, E2]);
        let s = g.member(E3);
        assert!(s.standby && s.inactive && s.usable && !s.active);
        assert_eq!(s.state, MemberState::Ok);
        assert_eq!(g.state(), GroupState::Ok);
        assert_eq!(g.cast(), Some(E1));
        // Four addresses over two members: two each.
        let bound: Vec<_> = (0..4).map(|a| g.binding(a)).collect();
        assert_eq!(bound.iter().filter(|b| **b == Some(E1)).count(), 2);
        assert_eq!(bound.iter().filter(|b| **b == Some(E2)).count(), 2);
        assert_eq!(g.buckets().load(E1), 32);
        assert_eq!(g.buckets().load(E3), 0);
        assert_eq!(g.next_deadline(), None);
    }

    #[test]
    fn start_with_a_member_down_activates_standby() {
        let t0 = Instant::now();
        let g = Group::new(
            spec(&[("eth1", false), ("eth2", false), ("eth3", true)], true),
            &[Link::Down, Link::Up, Link::Up],
            t0,
        );
        assert_eq!(g.active_members(), vec![E2, E3]);
        assert!(g.member(E1).failed);
        assert_eq!(g.member(E1).state, MemberState::Failed);
        assert_eq!(g.fail_cause(E1), Some(FailCause::LinkDown));
        assert_eq!(g.state(), GroupState::Degraded);
    }

    #[test]
    fn unknown_link_counts_as_up_and_shows_unknown() {
        let t0 = Instant::now();
        let g = Group::new(
            spec(&[("eth1", false), ("eth2", false)], true),
            &[Link::Unknown],
            t0,
        );
        assert_eq!(g.active_members(), vec![E1, E2]);
        assert_eq!(g.member(E2).link, Link::Unknown);
        assert_eq!(g.member(E2).state, MemberState::Unknown);
        assert_eq!(g.state(), GroupState::Ok);
    }

    #[test]
    fn all_standby_group_still_has_one_active() {
        let t0 = Instant::now();
        let g = Group::new(
            spec(&[("eth1", true), ("eth2", true)], true),
            &[Link::Up; 2],
            t0,
        );
        assert_eq!(g.active_members(), vec![E1]);
    }

    #[test]
    fn link_down_fails_and_standby_takes_over() {
        let (mut g, t0) = three(true);
        let n = g.handle(down(E1), secs(t0, 1)).unwrap();
        assert_eq!(
            n[..3],
            [
                Notice::MemberFailed {
                    member: E1,
                    cause: FailCause::LinkDown
                },
                Notice::MemberDeactivated { member: E1 },
                Notice::MemberActivated { member: E3 },
            ]
        );
        assert_eq!(g.active_members(), vec![E2, E3]);
        assert_eq!(g.state(), GroupState::Degraded);
        assert!(has(
            &n,
            Notice::CastChanged {
                from: Some(E1),
                to: Some(E2)
            }
        ));
        // E1's two addresses go: one to E3 (0 bound), then balance; nothing else moves.
        let rebound: Vec<_> = n
            .iter()
            .filter_map(|x| match x {
                Notice::AddressRebound { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(rebound.len(), 2);
        assert!(rebound.iter().all(|(f, _)| *f == Some(E1)));
        assert_eq!((0..4).filter(|&a| g.binding(a) == Some(E3)).count(), 2);
        assert!(has(&n, Notice::BucketsMoved { count: 32 }));
        assert_eq!(g.buckets().load(E3), 32);
    }

    #[test]
    fn failback_yes_returns_and_standby_goes_inactive() {
        let (mut g, t0) = three(true);
        g.handle(down(E1), secs(t0, 1)).unwrap();
        let n = g.handle(up(E1), secs(t0, 2)).unwrap();
        assert!(has(&n, Notice::MemberRepaired { member: E1 }));
        assert!(has(&n, Notice::MemberActivated { member: E1 }));
        assert!(has(&n, Notice::MemberDeactivated { member: E3 }));
        assert_eq!(g.active_members(), vec![E1, E2]);
        assert!(g.member(E3).inactive);
        assert_eq!(g.state(), GroupState::Ok);
        // Cast stays on E2, which never stopped being active.
        assert_eq!(g.cast(), Some(E2));
    }

    #[test]
    fn failback_no_keeps_repaired_member_inactive_until_needed() {
        let (mut g, t0) = three(false);
        g.handle(down(E1), secs(t0, 1)).unwrap();
        let n = g.handle(up(E1), secs(t0, 2)).unwrap();
        assert!(has(&n, Notice::MemberRepaired { member: E1 }));
        assert!(
            !n.iter()
                .any(|x| matches!(x, Notice::MemberActivated { .. }))
        );
        assert_eq!(g.active_members(), vec![E2, E3]);
        let v = g.member(E1);
        assert!(v.usable && v.inactive && !v.active);
        assert_eq!(g.state(), GroupState::Ok);
        // Another member fails: the inactive E1 is activated.
        let n = g.handle(down(E2), secs(t0, 3)).unwrap();
        assert!(has(&n, Notice::MemberActivated { member: E1 }));
        assert_eq!(g.active_members(), vec![E1, E3]);
    }

    #[test]
    fn failback_no_without_standby_leaves_one_active() {
        let t0 = Instant::now();
        let mut g = Group::new(
            spec(&[("eth1", false), ("eth2", false)], false),
            &[Link::Up; 2],
            t0,
        );
        g.handle(down(E1), secs(t0, 1)).unwrap();
        g.handle(up(E1), secs(t0, 2)).unwrap();
        assert_eq!(g.active_members(), vec![E2]);
        assert!(g.member(E1).inactive);
    }

    #[test]
    fn failback_no_first_bring_up_activates() {
        let t0 = Instant::now();
        let mut g = Group::new(
            spec(&[("eth1", false), ("eth2", false), ("eth3", true)], false),
            &[Link::Down, Link::Up, Link::Up],
            t0,
        );
        assert_eq!(g.active_members(), vec![E2, E3]);
        // E1 comes up for the first time: active despite FAILBACK=no; the standby steps back.
        let n = g.handle(up(E1), secs(t0, 1)).unwrap();
        assert!(has(&n, Notice::MemberActivated { member: E1 }));
        assert!(has(&n, Notice::MemberDeactivated { member: E3 }));
        assert_eq!(g.active_members(), vec![E1, E2]);
    }

    #[test]
    fn failback_no_after_group_failure_first_repaired_is_active() {
        let t0 = Instant::now();
        let mut g = Group::new(
            spec(&[("eth1", false), ("eth2", false)], false),
            &[Link::Up; 2],
            t0,
        );
        g.handle(down(E1), secs(t0, 1)).unwrap();
        let n = g.handle(down(E2), secs(t0, 2)).unwrap();
        assert!(has(&n, Notice::GroupFailed));
        assert_eq!(g.state(), GroupState::Failed);
        assert_eq!(g.cast(), None);
        assert_eq!(g.binding(0), None);
        assert!(g.buckets().slots().iter().all(Option::is_none));
        let n = g.handle(up(E2), secs(t0, 3)).unwrap();
        assert!(has(&n, Notice::GroupRepaired));
        assert!(has(&n, Notice::MemberActivated { member: E2 }));
        assert!(has(
            &n,
            Notice::CastChanged {
                from: None,
                to: Some(E2)
            }
        ));
        assert_eq!(g.active_members(), vec![E2]);
        // The group no longer failed: E1 stays inactive under FAILBACK=no.
        g.handle(up(E1), secs(t0, 4)).unwrap();
        assert_eq!(g.active_members(), vec![E2]);
    }

    #[test]
    fn group_failure_and_repair_with_failback() {
        let (mut g, t0) = three(true);
        for (i, m) in [E1, E2, E3].into_iter().enumerate() {
            let n = g.handle(down(m), secs(t0, i as u64 + 1)).unwrap();
            assert_eq!(has(&n, Notice::GroupFailed), m == E3);
        }
        assert_eq!(g.active_members(), Vec::<MemberId>::new());
        for a in 0..4 {
            assert_eq!(g.binding(a), None);
        }
        // The standby comes back first: it carries the group alone.
        let n = g.handle(up(E3), secs(t0, 10)).unwrap();
        assert!(has(&n, Notice::GroupRepaired));
        assert_eq!(g.active_members(), vec![E3]);
        assert!((0..4).all(|a| g.binding(a) == Some(E3)));
        // E1 returns: both active (group wants 2); then E2: the standby steps back.
        g.handle(up(E1), secs(t0, 11)).unwrap();
        assert_eq!(g.active_members(), vec![E1, E3]);
        g.handle(up(E2), secs(t0, 12)).unwrap();
        assert_eq!(g.active_members(), vec![E1, E2]);
    }

    #[test]
    fn repaired_standby_stays_inactive_when_not_needed() {
        let (mut g, t0) = three(true);
        g.handle(down(E3), secs(t0, 1)).unwrap();
        let n = g.handle(up(E3), secs(t0, 2)).unwrap();
        assert_eq!(n, vec![Notice::MemberRepaired { member: E3 }]);
        assert!(g.member(E3).inactive);
    }

    #[test]
    fn repaired_standby_is_activated_when_short() {
        let (mut g, t0) = three(true);
        g.handle(down(E3), secs(t0, 1)).unwrap();
        g.handle(down(E1), secs(t0, 2)).unwrap();
        assert_eq!(g.active_members(), vec![E2]);
        g.handle(up(E3), secs(t0, 3)).unwrap();
        assert_eq!(g.active_members(), vec![E2, E3]);
    }

    #[test]
    fn inactive_member_failure_changes_nothing_else() {
        let (mut g, t0) = three(true);
        let n = g.handle(down(E3), secs(t0, 1)).unwrap();
        assert_eq!(
            n,
            vec![Notice::MemberFailed {
                member: E3,
                cause: FailCause::LinkDown
            }]
        );
        assert_eq!(g.state(), GroupState::Degraded);
    }

    #[test]
    fn repeated_link_events_are_ignored() {
        let (mut g, t0) = three(true);
        assert_eq!(g.handle(up(E1), secs(t0, 1)).unwrap(), vec![]);
        g.handle(down(E1), secs(t0, 2)).unwrap();
        assert_eq!(g.handle(down(E1), secs(t0, 3)).unwrap(), vec![]);
    }

    #[test]
    fn offline_moves_load_and_online_returns_it() {
        let (mut g, t0) = three(true);
        let n = g
            .handle(Event::Offline { member: E1 }, secs(t0, 1))
            .unwrap();
        assert_eq!(n[0], Notice::MemberOffline { member: E1 });
        assert!(has(&n, Notice::MemberActivated { member: E3 }));
        let v = g.member(E1);
        assert!(v.offline && !v.usable && !v.active && !v.inactive);
        assert_eq!(v.state, MemberState::Offline);
        assert_eq!(g.state(), GroupState::Degraded);
        assert_eq!(
            g.handle(Event::Offline { member: E1 }, secs(t0, 2)),
            Err(GroupError::AlreadyOffline {
                member: "eth1".into()
            })
        );
        let n = g.handle(Event::Online { member: E1 }, secs(t0, 3)).unwrap();
        assert_eq!(n[0], Notice::MemberOnline { member: E1 });
        assert!(has(&n, Notice::MemberActivated { member: E1 }));
        assert!(has(&n, Notice::MemberDeactivated { member: E3 }));
        assert_eq!(g.state(), GroupState::Ok);
        assert_eq!(
            g.handle(Event::Online { member: E1 }, secs(t0, 4)),
            Err(GroupError::NotOffline {
                member: "eth1".into()
            })
        );
    }

    #[test]
    fn online_follows_failback_no() {
        let (mut g, t0) = three(false);
        g.handle(Event::Offline { member: E1 }, secs(t0, 1))
            .unwrap();
        g.handle(Event::Online { member: E1 }, secs(t0, 2)).unwrap();
        assert_eq!(g.active_members(), vec![E2, E3]);
        assert!(g.member(E1).inactive);
    }

    #[test]
    fn online_of_a_failed_member_waits_for_the_link() {
        let (mut g, t0) = three(true);
        g.handle(Event::Offline { member: E1 }, secs(t0, 1))
            .unwrap();
        g.handle(down(E1), secs(t0, 2)).unwrap();
        let n = g.handle(Event::Online { member: E1 }, secs(t0, 3)).unwrap();
        assert_eq!(n, vec![Notice::MemberOnline { member: E1 }]);
        assert_eq!(g.member(E1).state, MemberState::Failed);
        g.handle(up(E1), secs(t0, 4)).unwrap();
        assert_eq!(g.active_members(), vec![E1, E2]);
    }

    #[test]
    fn offline_refused_for_the_last_usable_member() {
        let t0 = Instant::now();
        let mut g = Group::new(
            spec(&[("eth1", false), ("eth2", false)], true),
            &[Link::Up; 2],
            t0,
        );
        g.handle(down(E2), secs(t0, 1)).unwrap();
        let before = g.clone();
        assert_eq!(
            g.handle(Event::Offline { member: E1 }, secs(t0, 2)),
            Err(GroupError::OfflineRefused {
                member: "eth1".into()
            })
        );
        assert_eq!(g, before);
        // The failed member may go offline: E1 still functions.
        g.handle(Event::Offline { member: E2 }, secs(t0, 3))
            .unwrap();
        // Now E1 is alone in every sense.
        assert!(
            g.handle(Event::Offline { member: E1 }, secs(t0, 4))
                .is_err()
        );
    }

    #[test]
    fn offline_refused_when_other_is_offline() {
        let t0 = Instant::now();
        let mut g = Group::new(
            spec(&[("eth1", false), ("eth2", false)], true),
            &[Link::Up; 2],
            t0,
        );
        g.handle(Event::Offline { member: E1 }, secs(t0, 1))
            .unwrap();
        assert!(matches!(
            g.handle(Event::Offline { member: E2 }, secs(t0, 2)),
            Err(GroupError::OfflineRefused { .. })
        ));
    }

    #[test]
    fn offline_allowed_in_failed_group_if_another_is_not_offline() {
        let t0 = Instant::now();
        let mut g = Group::new(
            spec(&[("eth1", false), ("eth2", false), ("eth3", false)], true),
            &[Link::Down, Link::Down, Link::Down],
            t0,
        );
        assert_eq!(g.state(), GroupState::Failed);
        g.handle(Event::Offline { member: E1 }, secs(t0, 1))
            .unwrap();
        g.handle(Event::Offline { member: E2 }, secs(t0, 2))
            .unwrap();
        // E3 is the only member not offline: refused.
        assert!(matches!(
            g.handle(Event::Offline { member: E3 }, secs(t0, 3)),
            Err(GroupError::OfflineRefused { .. })
        ));
        assert_eq!(g.state(), GroupState::Failed);
    }

    #[test]
    fn unknown_member_is_an_error() {
        let (mut g, t0) = three(true);
        assert_eq!(
            g.handle(down(7), t0),
            Err(GroupError::UnknownMember {
                group: "ipmp0".into(),
                member: 7,
                count: 3
            })
        );
        assert!(g.handle(Event::Offline { member: 3 }, t0).is_err());
        assert!(g.handle(Event::Online { member: 3 }, t0).is_err());
    }

    #[test]
    fn flapping_link_withholds_repair_until_the_window_clears() {
        let (mut g, t0) = three(true);
        // Two down/up cycles are repaired at once (LINK_UP_PERMIN = 2).
        for (d, u) in [(1, 2), (3, 4)] {
            g.handle(down(E1), secs(t0, d)).unwrap();
            let n = g.handle(up(E1), secs(t0, u)).unwrap();
            assert!(has(&n, Notice::MemberRepaired { member: E1 }));
        }
        // The third link-up within 60 s is withheld until the first one is 60 s old.
        g.handle(down(E1), secs(t0, 5)).unwrap();
        let n = g.handle(up(E1), secs(t0, 6)).unwrap();
        let until = secs(t0, 2 + 60);
        assert_eq!(n, vec![Notice::RepairWithheld { member: E1, until }]);
        assert!(g.member(E1).failed);
        assert_eq!(g.member(E1).link, Link::Up);
        assert_eq!(g.repair_withheld_until(E1), Some(until));
        assert_eq!(g.next_deadline(), Some(until));
        // A tick before the deadline does nothing.
        assert_eq!(g.handle(Event::Tick, secs(t0, 30)).unwrap(), vec![]);
        assert!(g.member(E1).failed);
        // At the deadline the repair goes through.
        let n = g.handle(Event::Tick, until).unwrap();
        assert!(has(&n, Notice::MemberRepaired { member: E1 }));
        assert!(has(&n, Notice::MemberActivated { member: E1 }));
        assert!(!g.member(E1).failed);
        assert_eq!(g.next_deadline(), None);
    }

    #[test]
    fn flapping_link_that_goes_down_again_cancels_the_deadline() {
        let (mut g, t0) = three(true);
        for s in 0..3 {
            g.handle(down(E1), secs(t0, 2 * s + 1)).unwrap();
            g.handle(up(E1), secs(t0, 2 * s + 2)).unwrap();
        }
        assert!(g.next_deadline().is_some());
        let n = g.handle(down(E1), secs(t0, 10)).unwrap();
        assert_eq!(n, vec![]);
        assert_eq!(g.next_deadline(), None);
        // The tick that would have been due does nothing; the link is down.
        assert_eq!(g.handle(Event::Tick, secs(t0, 100)).unwrap(), vec![]);
        assert!(g.member(E1).failed);
        // Long after, a link-up repairs at once.
        let n = g.handle(up(E1), secs(t0, 200)).unwrap();
        assert!(has(&n, Notice::MemberRepaired { member: E1 }));
    }

    #[test]
    fn more_flaps_push_the_deadline_out() {
        let (mut g, t0) = three(true);
        for s in 0..3 {
            g.handle(down(E1), secs(t0, 2 * s + 1)).unwrap();
            g.handle(up(E1), secs(t0, 2 * s + 2)).unwrap();
        }
        assert_eq!(g.next_deadline(), Some(secs(t0, 62)));
        g.handle(down(E1), secs(t0, 7)).unwrap();
        let n = g.handle(up(E1), secs(t0, 8)).unwrap();
        // Ups at 4, 6, 8 (2 was dropped from the kept history): clear at 4 + 60.
        assert_eq!(
            n,
            vec![Notice::RepairWithheld {
                member: E1,
                until: secs(t0, 64)
            }]
        );
    }

    #[test]
    fn bindings_balance_and_move_minimally() {
        let t0 = Instant::now();
        let mut s = spec(&[("eth1", false), ("eth2", false), ("eth3", false)], true);
        s.n_addresses = 7;
        let mut g = Group::new(s, &[Link::Up; 3], t0);
        let count = |g: &Group, m| (0..7).filter(|&a| g.binding(a) == Some(m)).count();
        assert_eq!((count(&g, E1), count(&g, E2), count(&g, E3)), (3, 2, 2));
        let before: Vec<_> = (0..7).map(|a| g.binding(a)).collect();
        let n = g.handle(down(E2), secs(t0, 1)).unwrap();
        // Only E2's two addresses move.
        for (a, &was) in before.iter().enumerate() {
            if was != Some(E2) {
                assert_eq!(g.binding(a), was);
            } else {
                assert!(has(
                    &n,
                    Notice::AddressRebound {
                        address: a,
                        from: Some(E2),
                        to: g.binding(a)
                    }
                ));
            }
        }
        assert!(count(&g, E1).abs_diff(count(&g, E3)) <= 1);
        // E2 returns and takes two addresses from the busiest.
        let n = g.handle(up(E2), secs(t0, 2)).unwrap();
        let moved = n
            .iter()
            .filter(|x| matches!(x, Notice::AddressRebound { to: Some(E2), .. }))
            .count();
        assert_eq!(moved, 2);
        assert_eq!(count(&g, E2), 2);
    }

    #[test]
    fn cast_is_kept_while_active_then_renominated() {
        let (mut g, t0) = three(true);
        assert_eq!(g.cast(), Some(E1));
        g.handle(down(E2), secs(t0, 1)).unwrap();
        assert_eq!(g.cast(), Some(E1));
        let n = g.handle(down(E1), secs(t0, 2)).unwrap();
        assert!(has(
            &n,
            Notice::CastChanged {
                from: Some(E1),
                to: Some(E3)
            }
        ));
        g.handle(up(E1), secs(t0, 3)).unwrap();
        // E3 is still active (E2 is down), so it keeps the cast role.
        assert_eq!(g.cast(), Some(E3));
        g.handle(up(E2), secs(t0, 4)).unwrap();
        // E3 went inactive: the lowest-id active member takes over.
        assert_eq!(g.cast(), Some(E1));
    }

    #[test]
    fn from_config_takes_daemon_settings() {
        let cfg = Config::from_toml_str(
            r#"
            FAILBACK = "no"
            link_flap_max_ups = 4
            [[group]]
            name = "ipmp0"
            data_addresses = ["198.51.100.10/24", "198.51.100.11/24"]
            buckets = 16
            [[group.member]]
            name = "eth1"
            [[group.member]]
            name = "eth2"
            standby = true
            "#,
            "test",
        )
        .unwrap();
        let s = GroupSpec::from_config(&cfg, &cfg.groups[0]);
        assert!(!s.failback);
        assert_eq!(s.n_addresses, 2);
        assert_eq!(s.n_buckets, 16);
        assert_eq!(s.flap_max_ups, 4);
        assert_eq!(s.flap_window, Duration::from_secs(60));
        assert_eq!(
            s.members[1],
            MemberSpec {
                name: "eth2".into(),
                standby: true
            }
        );
    }

    // ---- probe verdicts ------------------------------------------------------------------

    fn probe(failed: &[MemberId], repaired: &[MemberId]) -> Event {
        Event::Probe {
            failed: failed.iter().copied().collect(),
            repaired: repaired.iter().copied().collect(),
        }
    }

    #[test]
    fn member_set_basics() {
        let mut s = MemberSet::new();
        assert!(s.is_empty());
        assert_eq!(s.max(), None);
        assert!(s.insert(3));
        assert!(s.insert(0));
        assert!(s.insert(63));
        assert!(!s.insert(64));
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 63]);
        assert_eq!(s.max(), Some(63));
        s.remove(63);
        assert!(!s.contains(63) && s.contains(3));
        assert_eq!(MemberSet::single(5).iter().collect::<Vec<_>>(), vec![5]);
        assert_eq!(MemberSet::single(70), MemberSet::new());
    }

    #[test]
    fn probe_failure_fails_and_standby_takes_over() {
        let (mut g, t0) = three(true);
        let n = g.handle(probe(&[E1], &[]), secs(t0, 1)).unwrap();
        assert_eq!(
            n[..3],
            [
                Notice::MemberFailed {
                    member: E1,
                    cause: FailCause::Probe
                },
                Notice::MemberDeactivated { member: E1 },
                Notice::MemberActivated { member: E3 },
            ]
        );
        let v = g.member(E1);
        assert!(v.failed && v.probe_failed && !v.usable);
        assert_eq!(v.link, Link::Up);
        assert_eq!(v.state, MemberState::Failed);
        assert_eq!(g.fail_cause(E1), Some(FailCause::Probe));
        assert_eq!(g.active_members(), vec![E2, E3]);
        // A repeat changes nothing.
        assert_eq!(g.handle(probe(&[E1], &[]), secs(t0, 2)).unwrap(), vec![]);
        // Repair: back to active, the standby steps back.
        let n = g.handle(probe(&[], &[E1]), secs(t0, 3)).unwrap();
        assert!(has(&n, Notice::MemberRepaired { member: E1 }));
        assert!(has(&n, Notice::MemberActivated { member: E1 }));
        assert!(has(&n, Notice::MemberDeactivated { member: E3 }));
        assert_eq!(g.fail_cause(E1), None);
        assert_eq!(g.handle(probe(&[], &[E1]), secs(t0, 4)).unwrap(), vec![]);
    }

    #[test]
    fn repaired_only_when_link_and_probes_agree() {
        let (mut g, t0) = three(true);
        g.handle(down(E1), secs(t0, 1)).unwrap();
        // Probes fail it too (the prober does so on link down): no second failure notice.
        assert_eq!(g.handle(probe(&[E1], &[]), secs(t0, 1)).unwrap(), vec![]);
        assert_eq!(g.fail_cause(E1), Some(FailCause::LinkDown));
        // The link comes back: still failed by probes, nothing repaired.
        let n = g.handle(up(E1), secs(t0, 2)).unwrap();
        assert_eq!(n, vec![]);
        assert!(g.member(E1).failed);
        assert_eq!(g.fail_cause(E1), Some(FailCause::Probe));
        // Probes repair it.
        let n = g.handle(probe(&[], &[E1]), secs(t0, 3)).unwrap();
        assert!(has(&n, Notice::MemberRepaired { member: E1 }));
        assert!(!g.member(E1).failed);

        // The other order: probes repair while the link is down.
        g.handle(probe(&[E2], &[]), secs(t0, 4)).unwrap();
        g.handle(down(E2), secs(t0, 5)).unwrap();
        assert_eq!(g.handle(probe(&[], &[E2]), secs(t0, 6)).unwrap(), vec![]);
        assert!(g.member(E2).failed && !g.member(E2).probe_failed);
        let n = g.handle(up(E2), secs(t0, 7)).unwrap();
        assert!(has(&n, Notice::MemberRepaired { member: E2 }));
    }

    #[test]
    fn probe_repair_waits_for_a_withheld_link() {
        let (mut g, t0) = three(true);
        for s in 0..3 {
            g.handle(down(E1), secs(t0, 2 * s + 1)).unwrap();
            g.handle(up(E1), secs(t0, 2 * s + 2)).unwrap();
        }
        let until = g.repair_withheld_until(E1).unwrap();
        g.handle(probe(&[E1], &[]), secs(t0, 7)).unwrap();
        assert_eq!(g.handle(probe(&[], &[E1]), secs(t0, 8)).unwrap(), vec![]);
        assert!(g.member(E1).failed);
        let n = g.handle(Event::Tick, until).unwrap();
        assert!(has(&n, Notice::MemberRepaired { member: E1 }));
    }

    #[test]
    fn group_failure_in_one_event_moves_nothing_member_to_member() {
        let (mut g, t0) = three(true);
        let n = g.handle(probe(&[E1, E2, E3], &[]), secs(t0, 1)).unwrap();
        assert!(has(&n, Notice::GroupFailed));
        assert_eq!(g.state(), GroupState::Failed);
        // Every address leaves its member for nowhere; none lands on a member in between.
        let rebound: Vec<_> = n
            .iter()
            .filter_map(|x| match x {
                Notice::AddressRebound { to, .. } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(rebound, vec![None; 4]);
        assert!(
            !n.iter()
                .any(|x| matches!(x, Notice::MemberActivated { .. }))
        );
        assert_eq!(
            n.iter()
                .filter(|x| matches!(x, Notice::MemberFailed { .. }))
                .count(),
            3
        );
        // Any member's repair brings the group back.
        let n = g.handle(probe(&[], &[E2]), secs(t0, 2)).unwrap();
        assert!(has(&n, Notice::GroupRepaired));
        assert_eq!(g.active_members(), vec![E2]);
    }

    #[test]
    fn probe_verdict_errors_leave_the_group_unchanged() {
        let (mut g, t0) = three(true);
        let before = g.clone();
        assert_eq!(
            g.handle(probe(&[E1, 5], &[]), t0),
            Err(GroupError::UnknownMember {
                group: "ipmp0".into(),
                member: 5,
                count: 3
            })
        );
        assert_eq!(
            g.handle(probe(&[E1, E2], &[E2]), t0),
            Err(GroupError::ConflictingVerdicts {
                group: "ipmp0".into(),
                member: "eth2".into()
            })
        );
        assert_eq!(g, before);
    }

    #[test]
    fn offline_member_keeps_its_probe_verdict() {
        let (mut g, t0) = three(true);
        g.handle(Event::Offline { member: E1 }, secs(t0, 1))
            .unwrap();
        let n = g.handle(probe(&[E1], &[]), secs(t0, 2)).unwrap();
        assert_eq!(
            n,
            vec![Notice::MemberFailed {
                member: E1,
                cause: FailCause::Probe
            }]
        );
        let n = g.handle(Event::Online { member: E1 }, secs(t0, 3)).unwrap();
        assert_eq!(n, vec![Notice::MemberOnline { member: E1 }]);
        assert_eq!(g.member(E1).state, MemberState::Failed);
        let n = g.handle(probe(&[], &[E1]), secs(t0, 4)).unwrap();
        assert!(has(&n, Notice::MemberActivated { member: E1 }));
    }

    // ---- random event sequences keep the invariants ------------------------------------

    #[derive(Clone, Debug)]
    enum Step {
        Link(usize, bool),
        Offline(usize),
        Online(usize),
        /// Probe verdicts as bit masks over member ids 0..6.
        Probe(u8, u8),
        Tick,
        TickAtDeadline,
    }

    fn step() -> impl Strategy<Value = (u64, Step)> {
        let kind = prop_oneof![
            4 => (0usize..6, any::<bool>()).prop_map(|(m, u)| Step::Link(m, u)),
            1 => (0usize..6).prop_map(Step::Offline),
            1 => (0usize..6).prop_map(Step::Online),
            3 => (0u8..64, 0u8..64).prop_map(|(f, r)| Step::Probe(f, r)),
            1 => Just(Step::Tick),
            1 => Just(Step::TickAtDeadline),
        ];
        (0u64..4000, kind)
    }

    fn link() -> impl Strategy<Value = Link> {
        prop_oneof![Just(Link::Up), Just(Link::Down), Just(Link::Unknown)]
    }

    fn group_spec() -> impl Strategy<Value = GroupSpec> {
        (
            proptest::collection::vec(any::<bool>(), 1..6),
            any::<bool>(),
            0usize..7,
            1u32..40,
            0u32..4,
            1u64..10_000,
        )
            .prop_map(
                |(standby, failback, n_addresses, n_buckets, flap_max_ups, window_ms)| GroupSpec {
                    name: "ipmp0".into(),
                    failback,
                    members: standby
                        .iter()
                        .enumerate()
                        .map(|(i, &s)| MemberSpec {
                            name: format!("eth{i}"),
                            standby: s,
                        })
                        .collect(),
                    n_addresses,
                    n_buckets,
                    flap_max_ups,
                    flap_window: Duration::from_millis(window_ms),
                },
            )
    }

    fn balanced(owners: &[Option<MemberId>], active: &[MemberId]) -> Result<(), TestCaseError> {
        if active.is_empty() {
            prop_assert!(owners.iter().all(Option::is_none));
            return Ok(());
        }
        let mut counts = vec![0usize; active.len()];
        for o in owners {
            let o = o.ok_or_else(|| TestCaseError::fail("unassigned with an active member"))?;
            let i = active
                .iter()
                .position(|&a| a == o)
                .ok_or_else(|| TestCaseError::fail(format!("owner {o} is not active")))?;
            counts[i] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        prop_assert!(max - min <= 1, "counts {:?}", counts);
        Ok(())
    }

    fn invariants(g: &Group) -> Result<(), TestCaseError> {
        let n = g.spec().members.len();
        let views: Vec<MemberView> = (0..n).map(|m| g.member(m)).collect();
        let active = g.active_members();
        let usable = views.iter().filter(|v| v.usable).count();
        for (m, v) in views.iter().enumerate() {
            prop_assert_eq!(v.usable, !v.failed && !v.offline);
            prop_assert_eq!(v.active, v.usable && !v.inactive);
            prop_assert_eq!(active.contains(&m), v.active);
            prop_assert_eq!(v.failed, g.fail_cause(m).is_some());
            if v.link == Link::Down {
                prop_assert!(v.failed);
                prop_assert_eq!(g.fail_cause(m), Some(FailCause::LinkDown));
            }
            if v.probe_failed {
                prop_assert!(v.failed);
            }
            if g.fail_cause(m) == Some(FailCause::Probe) {
                prop_assert!(v.probe_failed && v.link != Link::Down);
                prop_assert!(g.repair_withheld_until(m).is_none());
            }
            if let Some(until) = g.repair_withheld_until(m) {
                prop_assert!(v.failed && v.link == Link::Up);
                prop_assert!(g.next_deadline().is_some_and(|d| d <= until));
            }
            let state = match (v.offline, v.failed, v.link) {
                (true, _, _) => MemberState::Offline,
                (false, true, _) => MemberState::Failed,
                (false, false, Link::Unknown) => MemberState::Unknown,
                _ => MemberState::Ok,
            };
            prop_assert_eq!(v.state, state);
        }
        let state = match usable {
            0 => GroupState::Failed,
            u if u == n => GroupState::Ok,
            _ => GroupState::Degraded,
        };
        prop_assert_eq!(g.state(), state);
        if usable > 0 {
            prop_assert!(!active.is_empty(), "usable members but none active");
        }
        let capacity = g.spec().capacity();
        prop_assert!(active.len() <= capacity);
        if g.spec().failback {
            prop_assert_eq!(active.len(), capacity.min(usable));
            for (m, v) in views.iter().enumerate() {
                if v.usable && !v.standby {
                    prop_assert!(v.active, "FAILBACK=yes but usable {} is inactive", m);
                }
            }
        }
        let bindings: Vec<_> = (0..g.spec().n_addresses).map(|a| g.binding(a)).collect();
        balanced(&bindings, &active)?;
        balanced(g.buckets().slots(), &active)?;
        match g.cast() {
            Some(c) => prop_assert!(active.contains(&c)),
            None => prop_assert!(active.is_empty()),
        }
        Ok(())
    }

    /// Notices describe exactly what changed between two states.
    fn notices_match(a: &Group, b: &Group, notices: &[Notice]) -> Result<(), TestCaseError> {
        let n = a.spec().members.len();
        for m in 0..n {
            let (x, y) = (a.member(m), b.member(m));
            prop_assert_eq!(
                x.active && !y.active,
                notices.contains(&Notice::MemberDeactivated { member: m })
            );
            prop_assert_eq!(
                !x.active && y.active,
                notices.contains(&Notice::MemberActivated { member: m })
            );
            // One failure notice exactly when the member becomes failed, naming a detector
            // that now says so.
            let failed_notices: Vec<FailCause> = notices
                .iter()
                .filter_map(|n| match n {
                    Notice::MemberFailed { member, cause } if *member == m => Some(*cause),
                    _ => None,
                })
                .collect();
            if !x.failed && y.failed {
                prop_assert_eq!(failed_notices.len(), 1, "failure notices of {}", m);
                let cause = failed_notices[0];
                prop_assert!(
                    (cause == FailCause::LinkDown && b.fail_cause(m) == Some(FailCause::LinkDown))
                        || (cause == FailCause::Probe && y.probe_failed),
                    "member {} failed by {:?} but its state is {:?}",
                    m,
                    cause,
                    y
                );
            } else {
                prop_assert!(
                    failed_notices.is_empty(),
                    "failure notice for {} that did not fail",
                    m
                );
            }
            if x.failed && !y.failed {
                let repaired = Notice::MemberRepaired { member: m };
                prop_assert!(notices.contains(&repaired), "no notice for repair of {}", m);
            }
        }
        prop_assert_eq!(
            a.state() != GroupState::Failed && b.state() == GroupState::Failed,
            notices.contains(&Notice::GroupFailed)
        );
        prop_assert_eq!(
            a.state() == GroupState::Failed && b.state() != GroupState::Failed,
            notices.contains(&Notice::GroupRepaired)
        );
        for addr in 0..a.spec().n_addresses {
            let moved = a.binding(addr) != b.binding(addr);
            let reported = notices.contains(&Notice::AddressRebound {
                address: addr,
                from: a.binding(addr),
                to: b.binding(addr),
            });
            prop_assert_eq!(moved, reported);
        }
        prop_assert_eq!(
            a.cast() != b.cast(),
            notices.contains(&Notice::CastChanged {
                from: a.cast(),
                to: b.cast()
            })
        );
        let moved = b.buckets().changed_from(a.buckets()).len() as u32;
        let reported: u32 = notices
            .iter()
            .filter_map(|x| match x {
                Notice::BucketsMoved { count } => Some(*count),
                _ => None,
            })
            .sum();
        prop_assert_eq!(moved, reported);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn random_events_keep_invariants(
            spec in group_spec(),
            links in proptest::collection::vec(link(), 0..6),
            steps in proptest::collection::vec(step(), 0..60),
        ) {
            let n = spec.members.len();
            let mut now = Instant::now();
            let mut g = Group::new(spec, &links, now);
            invariants(&g)?;
            for (dt, s) in steps {
                now += Duration::from_millis(dt);
                let event = match s {
                    // Ids up to 5 include some unknown members when the group is small.
                    Step::Link(m, up) => Event::Link { member: m, up },
                    Step::Offline(m) => Event::Offline { member: m },
                    Step::Online(m) => Event::Online { member: m },
                    Step::Probe(f, r) => Event::Probe {
                        failed: (0..6).filter(|i| f & (1 << i) != 0).collect(),
                        repaired: (0..6).filter(|i| r & (1 << i) != 0).collect(),
                    },
                    Step::Tick => Event::Tick,
                    Step::TickAtDeadline => {
                        if let Some(d) = g.next_deadline() {
                            now = now.max(d);
                        }
                        Event::Tick
                    }
                };
                let before = g.clone();
                match g.handle(event, now) {
                    Ok(notices) => notices_match(&before, &g, &notices)?,
                    Err(e) => {
                        prop_assert_eq!(&g, &before, "state changed on error {}", e);
                        let member = match event {
                            Event::Link { member, .. } | Event::Offline { member } | Event::Online { member } => member,
                            Event::Probe { failed, repaired } => {
                                let both = failed.iter().any(|m| repaired.contains(m));
                                let conflict = matches!(e, GroupError::ConflictingVerdicts { .. });
                                prop_assert_eq!(conflict, both && failed.max().max(repaired.max()) < Some(n));
                                failed.max().max(repaired.max()).unwrap_or(0)
                            }
                            Event::Tick => unreachable!("Tick never fails"),
                        };
                        if member < n {
                            let unknown = matches!(e, GroupError::UnknownMember { .. });
                            prop_assert!(!unknown, "member {} is known", member);
                        }
                    }
                }
                invariants(&g)?;
                // A tick handles every withheld repair that is due.
                if event == Event::Tick
                    && let Some(d) = g.next_deadline()
                {
                    prop_assert!(d > now, "deadline {:?} passed but still pending", d);
                }
            }
        }
    }
}
