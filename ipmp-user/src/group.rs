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
//!   - Probe: [`Event::Probe`] carries the verdicts of the prober ([`crate::mpathd::Prober`]),
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

/// Carrier state of a member as netlink reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    Up,
    Down,
    /// The driver reports no link state; treated as up.
    Unknown,
}

impl fmt::Display for Carrier {
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
    /// not be in both sets. [`crate::mpathd::Prober`] produces these.
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
    /// The link came back but flaps; the repair waits until `until` (a Tick then). Once per
    /// episode: further flaps before the repair move the deadline silently
    /// ([`Group::repair_withheld_until`]).
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
    pub link: Carrier,
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
    link: Carrier,
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
    /// A flapping episode was announced ([`Notice::RepairWithheld`]) and the member has not
    /// been repaired since: later flaps only move the deadline, so a storm is one notice.
    flap_announced: bool,
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
    pub fn new(spec: GroupSpec, links: &[Carrier], now: Instant) -> Self {
        let members = (0..spec.members.len())
            .map(|i| {
                let link = links.get(i).copied().unwrap_or(Carrier::Unknown);
                Member {
                    link,
                    link_failed: link == Carrier::Down,
                    probe_failed: false,
                    offline: false,
                    inactive: true,
                    ever_usable: false,
                    ups: VecDeque::new(),
                    withheld_until: None,
                    flap_announced: false,
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
        } else if m.link == Carrier::Unknown {
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
        if m.link == Carrier::Down {
            return;
        }
        m.link = Carrier::Down;
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
        m.link = Carrier::Up;
        // Unknown → up is the driver starting to report; only down → up is a link-up.
        if was != Carrier::Down {
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
        if m.link != Carrier::Up || !m.link_failed {
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
                if let Some(until) = until
                    && !m.flap_announced
                {
                    m.flap_announced = true;
                    notices.push(Notice::RepairWithheld { member, until });
                }
            }
            return;
        }
        m.withheld_until = None;
        m.flap_announced = false;
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
mod tests;
