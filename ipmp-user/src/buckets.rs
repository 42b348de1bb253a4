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

use std::{cmp::Reverse, collections::BinaryHeap};

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
    /// 2. While the busiest and the idlest member differ by more than one, a bucket moves to
    ///    the idlest (ties: lowest id): one coming home to it from a member at least two
    ///    buckets busier (the lowest such member id), else the busiest's (ties: lowest id)
    ///    highest-numbered bucket.
    ///
    /// Starting from a balanced table, step 1 alone keeps it balanced (water-filling), so a
    /// removal moves exactly the removed member's buckets; after an addition only step 2 runs,
    /// and every move goes to the newcomer.
    ///
    /// O(B log N) for step 1 and O(M·(N + log B)) for the M moves of step 2 (B buckets, N
    /// active members): it runs on the failover path, with tables of up to 65 536 buckets.
    pub fn rebalance(&mut self, active: &[usize]) -> u32 {
        let before = self.slots.clone();
        let mut ids = active.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            self.slots.iter_mut().for_each(|s| *s = None);
            return count_changes(&before, &self.slots);
        }
        // Each active member's buckets by index into `ids`: ascending, then appended orphans.
        let mut lists: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
        let mut orphans = Vec::new();
        for (bucket, slot) in self.slots.iter().enumerate() {
            match slot.and_then(|m| ids.binary_search(&m).ok()) {
                Some(i) => lists[i].push(bucket),
                None => {
                    if self.home[bucket].is_none() {
                        self.home[bucket] = *slot;
                    }
                    orphans.push(bucket);
                }
            }
        }
        // Index order is id order, so the heap's ties go to the lowest id.
        let mut idle: BinaryHeap<Reverse<(usize, usize)>> = lists
            .iter()
            .enumerate()
            .map(|(i, l)| Reverse((l.len(), i)))
            .collect();
        for bucket in orphans {
            if let Some(Reverse((len, i))) = idle.pop() {
                lists[i].push(bucket);
                self.slots[bucket] = Some(ids[i]);
                idle.push(Reverse((len + 1, i)));
            }
        }
        if unbalanced_pair(&lists).is_some() {
            Spread::new(&ids, &mut self.slots, &self.home, lists).run();
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

/// The busiest and the idlest member by index (ties: lowest each) when they differ by more
/// than one.
fn unbalanced_pair(lists: &[Vec<usize>]) -> Option<(usize, usize)> {
    // `min_by_key` keeps the first minimum, so ties go to the lowest index; the maximum
    // compares on (len, Reverse(index)) for the same effect.
    let (idlest, idle) = lists
        .iter()
        .enumerate()
        .min_by_key(|(i, l)| (l.len(), *i))?;
    let (busiest, busy) = lists
        .iter()
        .enumerate()
        .max_by_key(|(i, l)| (l.len(), Reverse(*i)))?;
    (busy.len() > idle.len() + 1).then_some((busiest, idlest))
}

/// Step 2 of [`BucketTable::rebalance`]. The member lists are kept exactly as a plain
/// `Vec` per member would be (moves `swap_remove` from the giver and push onto the taker),
/// so the choice of bucket is fixed by the rule; the heaps only find it without scanning:
/// entries go stale when their bucket moves and are dropped when they surface.
struct Spread<'a> {
    ids: &'a [usize],
    slots: &'a mut [Option<usize>],
    /// The member each bucket remembers as home (a member id, as in the table).
    home: &'a [Option<usize>],
    lists: Vec<Vec<usize>>,
    /// Position of each bucket in its owner's list.
    pos: Vec<usize>,
    /// Per member: its buckets, highest first (built when first needed: a repair takes only
    /// homecoming buckets).
    highest: Vec<Option<BinaryHeap<usize>>>,
    /// Per owner, per home member (both indices into `ids`): positions in the owner's list of
    /// the buckets whose home that member is, lowest first.
    homing: Vec<Vec<(usize, BinaryHeap<Reverse<usize>>)>>,
}

impl<'a> Spread<'a> {
    fn new(
        ids: &'a [usize],
        slots: &'a mut [Option<usize>],
        home: &'a [Option<usize>],
        lists: Vec<Vec<usize>>,
    ) -> Self {
        let mut spread = Spread {
            ids,
            slots,
            home,
            pos: vec![0; home.len()],
            highest: vec![None; lists.len()],
            homing: vec![Vec::new(); lists.len()],
            lists: Vec::new(),
        };
        for (m, list) in lists.iter().enumerate() {
            for (p, &bucket) in list.iter().enumerate() {
                spread.placed(m, p, bucket);
            }
        }
        spread.lists = lists;
        spread
    }

    /// Index of the active member `bucket` remembers as home.
    fn home_of(&self, bucket: usize) -> Option<usize> {
        self.home[bucket].and_then(|h| self.ids.binary_search(&h).ok())
    }

    /// Records that `bucket` now sits at position `p` of member `m`'s list.
    fn placed(&mut self, m: usize, p: usize, bucket: usize) {
        self.pos[bucket] = p;
        if let Some(h) = self.home_of(bucket).filter(|&h| h != m) {
            let homing = &mut self.homing[m];
            match homing.iter_mut().find(|(home, _)| *home == h) {
                Some((_, heap)) => heap.push(Reverse(p)),
                None => homing.push((h, BinaryHeap::from([Reverse(p)]))),
            }
        }
    }

    fn run(&mut self) {
        while let Some((busiest, idlest)) = unbalanced_pair(&self.lists) {
            // A bucket coming home to the idlest member, from any member at least two buckets
            // busier (so the move still narrows the spread); else the busiest member's highest.
            let idle_len = self.lists[idlest].len();
            let homecoming = (0..self.lists.len()).find_map(|m| {
                (m != idlest && self.lists[m].len() > idle_len + 1)
                    .then(|| self.first_homing(m, idlest).map(|p| (m, p)))
                    .flatten()
            });
            let Some((from, p)) =
                homecoming.or_else(|| self.highest(busiest).map(|p| (busiest, p)))
            else {
                break;
            };
            let bucket = self.lists[from].swap_remove(p);
            if let Some(&last) = self.lists[from].get(p) {
                self.placed(from, p, last);
            }
            let at = self.lists[idlest].len();
            self.lists[idlest].push(bucket);
            if let Some(heap) = &mut self.highest[idlest] {
                heap.push(bucket);
            }
            self.placed(idlest, at, bucket);
            self.slots[bucket] = Some(self.ids[idlest]);
        }
    }

    /// Position of the first bucket in `m`'s list whose home is `h`.
    fn first_homing(&mut self, m: usize, h: usize) -> Option<usize> {
        let heap = self.homing[m]
            .iter_mut()
            .find_map(|(home, heap)| (*home == h).then_some(heap))?;
        let want = Some(self.ids[h]);
        while let Some(&Reverse(p)) = heap.peek() {
            if self.lists[m].get(p).is_some_and(|&b| self.home[b] == want) {
                return Some(p);
            }
            heap.pop();
        }
        None
    }

    /// Position of the highest-numbered bucket in `m`'s list.
    fn highest(&mut self, m: usize) -> Option<usize> {
        let heap = self.highest[m].get_or_insert_with(|| BinaryHeap::from(self.lists[m].clone()));
        let owner = Some(self.ids[m]);
        while let Some(&bucket) = heap.peek() {
            if self.slots[bucket] == owner {
                return Some(self.pos[bucket]);
            }
            heap.pop();
        }
        None
    }
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

    /// The straightforward quadratic form of [`BucketTable::rebalance`] (each move scans every
    /// list for a homecoming bucket), kept to check that the fast one decides the same.
    fn reference_rebalance(t: &mut BucketTable, active: &[usize]) -> u32 {
        use std::collections::BTreeMap;

        let before = t.slots.clone();
        let mut owned: BTreeMap<usize, Vec<usize>> =
            active.iter().map(|&m| (m, Vec::new())).collect();
        if owned.is_empty() {
            t.slots.iter_mut().for_each(|s| *s = None);
            return count_changes(&before, &t.slots);
        }
        let mut orphans = Vec::new();
        for (bucket, slot) in t.slots.iter().enumerate() {
            match slot.and_then(|m| owned.get_mut(&m)) {
                Some(list) => list.push(bucket),
                None => {
                    if t.home[bucket].is_none() {
                        t.home[bucket] = *slot;
                    }
                    orphans.push(bucket);
                }
            }
        }
        for bucket in orphans {
            if let Some((&member, list)) = owned.iter_mut().min_by_key(|(m, l)| (l.len(), **m)) {
                list.push(bucket);
                t.slots[bucket] = Some(member);
            }
        }
        loop {
            let (&idlest, idle) = owned.iter().min_by_key(|(m, l)| (l.len(), **m)).unwrap();
            let (&busiest, busy) = owned
                .iter()
                .max_by_key(|(m, l)| (l.len(), Reverse(**m)))
                .unwrap();
            if busy.len() <= idle.len() + 1 {
                break;
            }
            let idle_len = idle.len();
            let homecoming = owned
                .iter()
                .filter(|(m, l)| **m != idlest && l.len() > idle_len + 1)
                .flat_map(|(m, l)| l.iter().enumerate().map(move |(pos, b)| (*m, pos, *b)))
                .find(|(_, _, b)| t.home[*b] == Some(idlest));
            let bucket = match homecoming {
                Some((from, pos, _)) => owned.get_mut(&from).unwrap().swap_remove(pos),
                None => {
                    let l = owned.get_mut(&busiest).unwrap();
                    let (pos, _) = l.iter().enumerate().max_by_key(|(_, b)| **b).unwrap();
                    l.swap_remove(pos)
                }
            };
            owned.get_mut(&idlest).unwrap().push(bucket);
            t.slots[bucket] = Some(idlest);
        }
        for (home, slot) in t.home.iter_mut().zip(&t.slots) {
            if home.is_some() && *home == *slot {
                *home = None;
            }
        }
        count_changes(&before, &t.slots)
    }

    /// 65 536 buckets over 8 members: failures move only the failed members' buckets, repairs
    /// bring back exactly those, and every step stays balanced.
    #[test]
    fn large_table_fail_repair() {
        let n = 65_536;
        let all: Vec<usize> = (0..8).collect();
        let without = |gone: &[usize]| -> Vec<usize> {
            all.iter().copied().filter(|m| !gone.contains(m)).collect()
        };
        let mut t = BucketTable::new(n);
        assert_eq!(t.rebalance(&all), n);
        assert_balanced(&t, &all);
        assert_eq!(loads(&t, &all), vec![n / 8; 8]);
        let original = t.clone();
        assert_eq!(t.rebalance(&all), 0, "same set moves nothing");
        assert_eq!(t, original);

        for gone in [vec![3], vec![2, 6]] {
            let rest = without(&gone);
            let its: u32 = gone.iter().map(|&m| t.load(m)).sum();
            let before = t.clone();
            assert_eq!(t.rebalance(&rest), its, "failure of {gone:?}");
            assert_balanced(&t, &rest);
            for (now, was) in t.slots().iter().zip(before.slots()) {
                if !gone.contains(&was.unwrap()) {
                    assert_eq!(now, was, "a bucket of a survivor moved");
                }
            }
            assert_eq!(t.rebalance(&rest), 0);
            // 65 536 divides by 8, so every bucket can go home: the table is the original.
            assert_eq!(t.rebalance(&all), its, "repair of {gone:?}");
            assert_balanced(&t, &all);
            assert_eq!(t.slots(), original.slots(), "repair of {gone:?}");
        }

        // Adding a ninth member moves at most its share, all to it.
        let mut grown = all.clone();
        grown.push(8);
        let moved = t.rebalance(&grown);
        assert!(moved <= n.div_ceil(9) + 1);
        assert_eq!(moved, t.load(8));
        assert_balanced(&t, &grown);

        let mut again = BucketTable::new(n);
        again.rebalance(&all);
        again.rebalance(&without(&[3]));
        again.rebalance(&all);
        again.rebalance(&without(&[2, 6]));
        again.rebalance(&all);
        again.rebalance(&grown);
        assert_eq!(again, t, "deterministic");
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
        fn same_moves_as_the_reference(n in 0u32..300, sets in proptest::collection::vec(active_set(), 1..8)) {
            let mut fast = BucketTable::new(n);
            let mut reference = BucketTable::new(n);
            for a in &sets {
                let moved = fast.rebalance(a);
                prop_assert_eq!(moved, reference_rebalance(&mut reference, a));
                prop_assert_eq!(&fast, &reference);
            }
        }

        #[test]
        fn same_moves_as_the_reference_member_by_member(n in 0u32..300, start in active_set(), toggles in proptest::collection::vec(0usize..12, 1..16)) {
            // One member failing or coming back at a time, as a group sees it: homecoming
            // buckets on every repair.
            let mut fast = BucketTable::new(n);
            let mut reference = BucketTable::new(n);
            let mut set: BTreeSet<usize> = start.into_iter().collect();
            for m in toggles {
                let a: Vec<usize> = set.iter().copied().collect();
                let moved = fast.rebalance(&a);
                prop_assert_eq!(moved, reference_rebalance(&mut reference, &a));
                prop_assert_eq!(&fast, &reference);
                if !set.remove(&m) {
                    set.insert(m);
                }
            }
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
