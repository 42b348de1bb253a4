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
        &[Carrier::Up; 3],
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
        &[Carrier::Down, Carrier::Up, Carrier::Up],
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
        &[Carrier::Unknown],
        t0,
    );
    assert_eq!(g.active_members(), vec![E1, E2]);
    assert_eq!(g.member(E2).link, Carrier::Unknown);
    assert_eq!(g.member(E2).state, MemberState::Unknown);
    assert_eq!(g.state(), GroupState::Ok);
}

#[test]
fn all_standby_group_still_has_one_active() {
    let t0 = Instant::now();
    let g = Group::new(
        spec(&[("eth1", true), ("eth2", true)], true),
        &[Carrier::Up; 2],
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
        &[Carrier::Up; 2],
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
        &[Carrier::Down, Carrier::Up, Carrier::Up],
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
        &[Carrier::Up; 2],
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
        &[Carrier::Up; 2],
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
        &[Carrier::Up; 2],
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
        &[Carrier::Down, Carrier::Down, Carrier::Down],
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
    assert_eq!(g.member(E1).link, Carrier::Up);
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
    // Ups at 4, 6, 8 (2 was dropped from the kept history): clear at 4 + 60. The episode was
    // announced already: the deadline moves silently.
    assert_eq!(n, vec![]);
    assert_eq!(g.next_deadline(), Some(secs(t0, 64)));
    assert_eq!(g.repair_withheld_until(E1), Some(secs(t0, 64)));
}

#[test]
fn a_flap_storm_is_one_notice_then_the_repair() {
    let (mut g, t0) = three(true);
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut notices = Vec::new();
    // 500 down/up cycles 10 ms apart: the first two are repaired at once (LINK_UP_PERMIN = 2).
    for i in 0..500 {
        notices.extend(g.handle(down(E1), ms(20 * i)).unwrap());
        notices.extend(g.handle(up(E1), ms(20 * i + 10)).unwrap());
    }
    let count = |n: &[Notice], f: fn(&Notice) -> bool| n.iter().filter(|x| f(x)).count();
    assert_eq!(
        count(&notices, |n| matches!(n, Notice::RepairWithheld { .. })),
        1,
        "{notices:?}"
    );
    assert_eq!(
        count(&notices, |n| matches!(n, Notice::MemberFailed { .. })),
        3
    );
    assert_eq!(
        count(&notices, |n| matches!(n, Notice::MemberRepaired { .. })),
        2
    );
    assert!(g.member(E1).failed);
    // Repaired once the window has cleared after the last up.
    let until = g.next_deadline().expect("withheld");
    assert!(until > ms(20 * 499 + 10), "{until:?}");
    let n = g.handle(Event::Tick, until).unwrap();
    assert!(has(&n, Notice::MemberRepaired { member: E1 }));
    assert!(!g.member(E1).failed);
    // A later episode is announced again.
    let later = until + Duration::from_secs(600);
    let mut again = Vec::new();
    for i in 0..4 {
        again.extend(
            g.handle(down(E1), later + Duration::from_millis(20 * i))
                .unwrap(),
        );
        again.extend(
            g.handle(up(E1), later + Duration::from_millis(20 * i + 10))
                .unwrap(),
        );
    }
    assert_eq!(
        count(&again, |n| matches!(n, Notice::RepairWithheld { .. })),
        1,
        "{again:?}"
    );
}

#[test]
fn bindings_balance_and_move_minimally() {
    let t0 = Instant::now();
    let mut s = spec(&[("eth1", false), ("eth2", false), ("eth3", false)], true);
    s.n_addresses = 7;
    let mut g = Group::new(s, &[Carrier::Up; 3], t0);
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
    assert_eq!(v.link, Carrier::Up);
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

fn link() -> impl Strategy<Value = Carrier> {
    prop_oneof![
        Just(Carrier::Up),
        Just(Carrier::Down),
        Just(Carrier::Unknown)
    ]
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
        if v.link == Carrier::Down {
            prop_assert!(v.failed);
            prop_assert_eq!(g.fail_cause(m), Some(FailCause::LinkDown));
        }
        if v.probe_failed {
            prop_assert!(v.failed);
        }
        if g.fail_cause(m) == Some(FailCause::Probe) {
            prop_assert!(v.probe_failed && v.link != Carrier::Down);
            prop_assert!(g.repair_withheld_until(m).is_none());
        }
        if let Some(until) = g.repair_withheld_until(m) {
            prop_assert!(v.failed && v.link == Carrier::Up);
            prop_assert!(g.next_deadline().is_some_and(|d| d <= until));
        }
        let state = match (v.offline, v.failed, v.link) {
            (true, _, _) => MemberState::Offline,
            (false, true, _) => MemberState::Failed,
            (false, false, Carrier::Unknown) => MemberState::Unknown,
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
