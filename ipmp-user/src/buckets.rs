//! The minimal-disruption bucket table.
//!
//! A group's flows hash into `n` buckets ([`ipmp_common::bucket_of`]); each bucket names the
//! member that carries its flows. When the active set changes, [`BucketTable::rebalance`] moves
//! as few buckets as it can while keeping every active member within one bucket of the others:
//! a lost member's buckets go to the least-loaded survivors and nothing else moves; a new member
//! takes about `n / N` buckets from the busiest members and nothing else moves. So a failure
//! remaps only the flows the failed member carried, and a repair moves about 1/N of the flows
//! — the same flows: a returning member takes back the buckets it lost first, so flows the
//! failure never touched stay where they are.
//!
//! The same table balances data addresses over members in [`crate::group`] (the kernel's
//! `ipmp_illgrp_min_ill` rule for binding addresses is this algorithm with one slot per address).

use std::collections::BTreeMap;

/// Owner (member id) per bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketTable {
    slots: Vec<Option<usize>>,
    /// The owner a bucket had before that owner left the active set. When it comes back, it
    /// takes these buckets first, so a repair moves back exactly the flows the failure moved
    /// and leaves every other flow where it is.
    home: Vec<Option<usize>>,
}

impl BucketTable {
    /// A table of `n` buckets, none assigned.
    pub fn new(n: u32) -> Self {
        Self {
            slots: vec![None; n as usize],
            home: vec![None; n as usize],
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Member id per bucket; `None` when the group has no active member.
    pub fn slots(&self) -> &[Option<usize>] {
        &self.slots
    }

    /// Owner of bucket `bucket` (`None` when unassigned or out of range).
    pub fn owner(&self, bucket: usize) -> Option<usize> {
        self.slots.get(bucket).copied().flatten()
    }

    /// Number of buckets `member` owns.
    pub fn load(&self, member: usize) -> u32 {
        let n = self.slots.iter().filter(|s| **s == Some(member)).count();
        // A table has at most u32::MAX slots (`new` takes a u32).
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Reassigns buckets so that only members in `active` own any, balanced to within one
    /// bucket, moving as few as needed. Returns how many buckets changed owner.
    ///
    /// 1. Buckets whose owner is not active (or that have none) go one by one, in bucket order,
    ///    to the active member with the fewest buckets (ties: lowest member id).
    /// 2. While the busiest and the idlest member differ by more than one, the busiest (ties:
    ///    lowest id) hands its highest-numbered bucket to the idlest (ties: lowest id).
    ///
    /// Starting from a balanced table, step 1 alone keeps it balanced (water-filling), so a
    /// removal moves exactly the removed member's buckets; after an addition only step 2 runs,
    /// and every move goes to the newcomer.
    pub fn rebalance(&mut self, active: &[usize]) -> u32 {
        let before = self.slots.clone();
        let mut owned: BTreeMap<usize, Vec<usize>> =
            active.iter().map(|&m| (m, Vec::new())).collect();
        if owned.is_empty() {
            self.slots.iter_mut().for_each(|s| *s = None);
            return count_changes(&before, &self.slots);
        }
        let mut orphans = Vec::new();
        for (bucket, slot) in self.slots.iter().enumerate() {
            match slot.and_then(|m| owned.get_mut(&m)) {
                Some(list) => list.push(bucket),
                None => {
                    if self.home[bucket].is_none() {
                        self.home[bucket] = *slot;
                    }
                    orphans.push(bucket);
                }
            }
        }
        for bucket in orphans {
            if let Some((&member, list)) = owned.iter_mut().min_by_key(|(m, l)| (l.len(), **m)) {
                list.push(bucket);
                self.slots[bucket] = Some(member);
            }
        }
        while let Some((busiest, idlest)) = unbalanced_pair(&owned) {
            // A bucket coming home to the idlest member, from any member at least two buckets
            // busier (so the move still narrows the spread); else the busiest member's highest.
            let idle_len = owned.get(&idlest).map_or(0, Vec::len);
            let homecoming = owned
                .iter()
                .filter(|(m, l)| **m != idlest && l.len() > idle_len + 1)
                .flat_map(|(m, l)| l.iter().enumerate().map(move |(pos, b)| (*m, pos, *b)))
                .find(|(_, _, b)| self.home[*b] == Some(idlest));
            let moved = match homecoming {
                Some((from, pos, _)) => owned.get_mut(&from).map(|l| l.swap_remove(pos)),
                None => owned.get_mut(&busiest).and_then(|l| {
                    // Each list is ascending except for appended orphans: take the highest.
                    let (pos, _) = l.iter().enumerate().max_by_key(|(_, b)| **b)?;
                    Some(l.swap_remove(pos))
                }),
            };
            let Some(bucket) = moved else {
                break;
            };
            if let Some(l) = owned.get_mut(&idlest) {
                l.push(bucket);
            }
            self.slots[bucket] = Some(idlest);
        }
        // A bucket is home once its owner is the one it remembers (or it never left).
        for (home, slot) in self.home.iter_mut().zip(&self.slots) {
            if home.is_some() && *home == *slot {
                *home = None;
            }
        }
        count_changes(&before, &self.slots)
    }

    /// Buckets whose owner differs from `other`'s (for writing only the changed entries of a
    /// map). Tables of different length compare over the common prefix.
    pub fn changed_from(&self, other: &Self) -> Vec<usize> {
        self.slots
            .iter()
            .zip(&other.slots)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The busiest and the idlest member (ties: lowest id each) when they differ by more than one.
fn unbalanced_pair(owned: &BTreeMap<usize, Vec<usize>>) -> Option<(usize, usize)> {
    // `min_by_key` keeps the first minimum and a BTreeMap iterates by id, so ties go to the
    // lowest id; the maximum compares on (len, Reverse(id)) for the same effect.
    let (&idlest, idle) = owned.iter().min_by_key(|(m, l)| (l.len(), **m))?;
    let (&busiest, busy) = owned
        .iter()
        .max_by_key(|(m, l)| (l.len(), std::cmp::Reverse(**m)))?;
    (busy.len() > idle.len() + 1).then_some((busiest, idlest))
}

fn count_changes(before: &[Option<usize>], after: &[Option<usize>]) -> u32 {
    let n = before.iter().zip(after).filter(|(a, b)| a != b).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ipmp_common::{FlowKey, bucket_of, flow_hash};
    use proptest::prelude::*;

    use super::*;

    fn loads(t: &BucketTable, active: &[usize]) -> Vec<u32> {
        active.iter().map(|&m| t.load(m)).collect()
    }

    fn assert_balanced(t: &BucketTable, active: &[usize]) {
        let set: BTreeSet<usize> = active.iter().copied().collect();
        if set.is_empty() {
            assert!(t.slots().iter().all(Option::is_none));
            return;
        }
        for s in t.slots() {
            let m = s.expect("every bucket is assigned when a member is active");
            assert!(set.contains(&m), "bucket on inactive member {m}");
        }
        let l: Vec<u32> = set.iter().map(|&m| t.load(m)).collect();
        let (min, max) = (l.iter().min().unwrap(), l.iter().max().unwrap());
        assert!(max - min <= 1, "loads {l:?} not within ±1");
    }

    #[test]
    fn new_is_unassigned() {
        let t = BucketTable::new(8);
        assert_eq!(t.len(), 8);
        assert!(!t.is_empty());
        assert!(t.slots().iter().all(Option::is_none));
        assert_eq!(t.load(0), 0);
        assert!(BucketTable::new(0).is_empty());
    }

    #[test]
    fn first_assignment_round_robins_by_load_then_id() {
        let mut t = BucketTable::new(7);
        assert_eq!(t.rebalance(&[2, 0, 1]), 7);
        assert_eq!(
            t.slots(),
            &[
                Some(0),
                Some(1),
                Some(2),
                Some(0),
                Some(1),
                Some(2),
                Some(0)
            ]
        );
        assert_eq!(loads(&t, &[0, 1, 2]), vec![3, 2, 2]);
    }

    #[test]
    fn removal_moves_only_the_removed_members_buckets_to_least_loaded() {
        let mut t = BucketTable::new(7);
        t.rebalance(&[0, 1, 2]);
        let before = t.clone();
        // Member 0 had 3, 1 and 2 had 2 each: its buckets alternate over 1 and 2, lowest id first.
        assert_eq!(t.rebalance(&[1, 2]), 3);
        assert_eq!(
            t.slots(),
            &[
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                Some(1),
                Some(2),
                Some(1)
            ]
        );
        assert_eq!(t.changed_from(&before), vec![0, 3, 6]);
    }

    #[test]
    fn addition_takes_from_the_busiest_only_as_needed() {
        let mut t = BucketTable::new(12);
        t.rebalance(&[0, 1]);
        assert_eq!(loads(&t, &[0, 1]), vec![6, 6]);
        let moved = t.rebalance(&[0, 1, 2]);
        assert_eq!(moved, 4);
        assert_eq!(loads(&t, &[0, 1, 2]), vec![4, 4, 4]);
    }

    #[test]
    fn empty_active_unassigns_everything() {
        let mut t = BucketTable::new(5);
        t.rebalance(&[3]);
        assert_eq!(t.load(3), 5);
        assert_eq!(t.rebalance(&[]), 5);
        assert!(t.slots().iter().all(Option::is_none));
        assert_eq!(t.rebalance(&[]), 0);
    }

    #[test]
    fn duplicate_ids_in_active_are_one_member() {
        let mut t = BucketTable::new(6);
        t.rebalance(&[1, 1, 4]);
        assert_eq!(loads(&t, &[1, 4]), vec![3, 3]);
    }

    #[test]
    fn more_members_than_buckets() {
        let mut t = BucketTable::new(2);
        t.rebalance(&[0, 1, 2, 3]);
        assert_eq!(t.slots(), &[Some(0), Some(1)]);
        assert_balanced(&t, &[0, 1, 2, 3]);
        // Losing an empty member moves nothing.
        assert_eq!(t.rebalance(&[0, 1, 3]), 0);
    }

    #[test]
    fn deterministic() {
        let run = || {
            let mut t = BucketTable::new(100);
            t.rebalance(&[0, 1, 2, 3]);
            t.rebalance(&[0, 2, 3]);
            t.rebalance(&[0, 1, 2, 3, 4]);
            t
        };
        assert_eq!(run(), run());
    }

    /// 10 000 flows over 4 members: failing one remaps exactly the flows it carried.
    #[test]
    fn failure_remaps_only_the_failed_members_flows() {
        let n = 1024;
        let seed = 0x5eed_1234;
        let mut t = BucketTable::new(n);
        t.rebalance(&[0, 1, 2, 3]);
        let flows: Vec<FlowKey> = (0..10_000u32)
            .map(|i| {
                let b = i.to_be_bytes();
                FlowKey::v4(
                    [198, 51, 100, 10],
                    [203, 0, 113, b[3]],
                    6,
                    32768 + (i as u16 % 28000),
                    443 + b[2] as u16,
                )
            })
            .collect();
        let owner = |t: &BucketTable, k: &FlowKey| {
            t.owner(bucket_of(flow_hash(k, seed), n) as usize).unwrap()
        };
        let before: Vec<usize> = flows.iter().map(|k| owner(&t, k)).collect();
        let on_failed = before.iter().filter(|&&m| m == 2).count();
        assert!(
            on_failed > 2000 && on_failed < 3000,
            "member 2 carried {on_failed} flows"
        );
        t.rebalance(&[0, 1, 3]);
        for (k, &was) in flows.iter().zip(&before) {
            let now = owner(&t, k);
            if was == 2 {
                assert_ne!(now, 2);
            } else {
                assert_eq!(now, was, "a flow of a surviving member moved");
            }
        }
        // The survivors share the failed member's flows roughly evenly.
        let after: Vec<usize> = flows.iter().map(|k| owner(&t, k)).collect();
        for m in [0, 1, 3] {
            let c = after.iter().filter(|&&x| x == m).count();
            assert!((2900..=3800).contains(&c), "member {m} carries {c} flows");
        }
    }

    fn active_set() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::btree_set(0usize..12, 0..8).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn balanced_for_any_active_set(n in 0u32..300, a in active_set(), b in active_set()) {
            let mut t = BucketTable::new(n);
            t.rebalance(&a);
            assert_balanced(&t, &a);
            t.rebalance(&b);
            assert_balanced(&t, &b);
        }

        #[test]
        fn repair_brings_back_the_failed_members_buckets(n in 1u32..300, a in active_set(), pick in any::<proptest::sample::Index>()) {
            prop_assume!(a.len() >= 2);
            let mut t = BucketTable::new(n);
            t.rebalance(&a);
            let original = t.slots().to_vec();
            let gone = a[pick.index(a.len())];
            let rest: Vec<usize> = a.iter().copied().filter(|&m| m != gone).collect();
            t.rebalance(&rest);
            t.rebalance(&a);
            assert_balanced(&t, &a);
            // Every bucket that moved back went home: buckets that stayed put during the
            // failure did not move on repair, and at most one bucket per member ends up
            // elsewhere than before the failure (balancing to ±1 may leave it there).
            let away = t
                .slots()
                .iter()
                .zip(&original)
                .filter(|(now, was)| now != was)
                .count();
            prop_assert!(away <= a.len(), "{} buckets not home after repair", away);
            for (now, was) in t.slots().iter().zip(&original) {
                if *was != Some(gone) {
                    prop_assert_eq!(now, was, "a bucket the failure did not move moved on repair");
                }
            }
        }

        #[test]
        fn same_active_set_moves_nothing(n in 0u32..300, a in active_set(), b in active_set()) {
            let mut t = BucketTable::new(n);
            t.rebalance(&a);
            t.rebalance(&b);
            let snapshot = t.clone();
            prop_assert_eq!(t.rebalance(&b), 0);
            prop_assert_eq!(t, snapshot);
        }

        #[test]
        fn removing_one_moves_exactly_its_buckets(n in 1u32..300, a in active_set(), pick in any::<proptest::sample::Index>()) {
            prop_assume!(a.len() >= 2);
            let mut t = BucketTable::new(n);
            t.rebalance(&a);
            let gone = a[pick.index(a.len())];
            let its = t.load(gone);
            let before = t.clone();
            let rest: Vec<usize> = a.iter().copied().filter(|&m| m != gone).collect();
            prop_assert_eq!(t.rebalance(&rest), its);
            for (i, s) in before.slots().iter().enumerate() {
                if *s != Some(gone) {
                    prop_assert_eq!(t.slots()[i], *s);
                }
            }
            assert_balanced(&t, &rest);
        }

        #[test]
        fn adding_one_moves_at_most_its_share(n in 1u32..300, a in active_set(), new in 0usize..12) {
            prop_assume!(!a.contains(&new) && !a.is_empty());
            let mut t = BucketTable::new(n);
            t.rebalance(&a);
            let mut grown = a.clone();
            grown.push(new);
            let moved = t.rebalance(&grown);
            let share = n.div_ceil(grown.len() as u32);
            prop_assert!(moved <= share + 1, "moved {} > ceil({}/{}) + 1", moved, n, grown.len());
            // Everything that moved went to the newcomer.
            prop_assert_eq!(moved, t.load(new));
            assert_balanced(&t, &grown);
        }

        #[test]
        fn fail_then_repair_keeps_balance(n in 1u32..300, a in active_set(), pick in any::<proptest::sample::Index>()) {
            prop_assume!(a.len() >= 2);
            let mut t = BucketTable::new(n);
            t.rebalance(&a);
            let gone = a[pick.index(a.len())];
            let rest: Vec<usize> = a.iter().copied().filter(|&m| m != gone).collect();
            t.rebalance(&rest);
            let back = t.rebalance(&a);
            assert_balanced(&t, &a);
            prop_assert!(back <= n.div_ceil(a.len() as u32) + 1);
        }
    }
}
