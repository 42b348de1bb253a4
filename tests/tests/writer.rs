//! The dataplane writer on real (unpinned) maps, at the largest bucket table: what it writes
//! before each flip, the catch-up of the half just left (`MapWriter::settle`), and its first
//! read of a group's halves (one `BPF_MAP_LOOKUP_BATCH`) at the first and the last group slot.
//! The halves it reads back must be exactly what it wrote: a group forgotten and written again
//! costs no bucket write. Needs root; under CI a missing privilege fails the test.

use anyhow::{Result, ensure};
use ipmp_common::{MAX_BUCKETS, MAX_GROUPS};
use ipmp_tests::bench::testbed::{Testbed, in_fresh_netns};

const MEMBERS: usize = 4;

/// Map writes of one `apply` of `bed`'s table with `active` members on group slot `slot`.
fn apply(bed: &mut Testbed, active: &[usize], slot: u32) -> Result<u64> {
    let mut desired = bed.desired(active);
    desired.slot = slot;
    let before = bed.writer.writes;
    bed.writer.apply(&[desired])?;
    Ok(bed.writer.writes - before)
}

#[test]
fn writer_flips_settles_and_reads_back_the_largest_table() -> Result<()> {
    if !ipmp_tests::lab::require_root("writer_flips_settles_and_reads_back_the_largest_table") {
        return Ok(());
    }
    in_fresh_netns(|| {
        let n = u64::from(MAX_BUCKETS);
        let share = n / MEMBERS as u64;
        let all: Vec<usize> = (0..MEMBERS).collect();
        let rest: Vec<usize> = (0..MEMBERS - 1).collect();
        // Written on slot 0 with every member active: half 0 holds the table, half 1 nothing.
        let mut bed = Testbed::with_buckets(MEMBERS, MAX_BUCKETS)?;
        for slot in [0, MAX_GROUPS - 1] {
            if slot != 0 {
                // A moved group: its new slot's halves are read (zeros) and written whole.
                bed.table.rebalance(&all);
                let w = apply(&mut bed, &all, slot)?;
                ensure!(w > n, "slot {slot}: {w} writes for a new table of {n}");
            }
            ensure!(
                bed.writer.settle()? == n,
                "slot {slot}: the empty half is caught up whole"
            );
            ensure!(bed.writer.settle()? == 0, "slot {slot}: a second catch-up");
            ensure!(
                apply(&mut bed, &all, slot)? == 0,
                "slot {slot}: nothing changed"
            );

            // A failure of the last member (not the cast one: no address moves) writes its
            // buckets, the flip, its flag, and retires the remembered paths after the flip and
            // after the flag; the catch-up writes its buckets once more.
            bed.table.rebalance(&rest);
            let w = apply(&mut bed, &rest, slot)?;
            ensure!(
                w == share + 4,
                "slot {slot}: failure wrote {w}, want {}",
                share + 4
            );
            ensure!(
                bed.writer.settle()? == share,
                "slot {slot}: catch-up after the failure"
            );
            // A repair: the flag first, then the buckets and the flip, one retirement after.
            bed.table.rebalance(&all);
            let w = apply(&mut bed, &all, slot)?;
            ensure!(
                w == share + 3,
                "slot {slot}: repair wrote {w}, want {}",
                share + 3
            );
            ensure!(
                bed.writer.settle()? == share,
                "slot {slot}: catch-up after the repair"
            );

            // Forgotten (the group removed) and written again: both halves are read back from
            // the kernel and already hold the table, so no bucket is written — only the group,
            // its members and its addresses.
            bed.writer.apply(&[])?;
            let w = apply(&mut bed, &all, slot)?;
            ensure!(
                w < 16,
                "slot {slot}: {w} writes after reading the halves back (buckets rewritten?)"
            );
            ensure!(
                bed.writer.settle()? == 0,
                "slot {slot}: halves read back differ"
            );
        }
        Ok(())
    })
}

/// `IPMP_ROUTE_GEN`: every advance is a generation not used before, also across a stop (which
/// only sets the off bit), so an entry remembered under an old generation never becomes valid
/// again.
#[test]
fn route_generations_never_repeat() -> Result<()> {
    if !ipmp_tests::lab::require_root("route_generations_never_repeat") {
        return Ok(());
    }
    in_fresh_netns(|| {
        use ipmp_common::ROUTE_GEN_OFF;
        let mut bed = Testbed::new(2)?;
        let w = &mut bed.writer;
        let first = w.advance_route_generation()?;
        let second = w.advance_route_generation()?;
        ensure!(second == first + 1, "{first} then {second}");
        ensure!(w.route_generation()? == second, "advance not written");
        w.stop_route_cache()?;
        ensure!(
            w.route_generation()? == second | ROUTE_GEN_OFF,
            "stop: {:#x}",
            w.route_generation()?
        );
        let third = w.advance_route_generation()?;
        ensure!(
            third == second + 1 && third & ROUTE_GEN_OFF == 0,
            "after a stop: {third:#x}"
        );
        Ok(())
    })
}

/// Remembered paths (`IPMP_ROUTES`) are retired by every write that can move a flow to another
/// member (a member, a bucket table, a group) or change the MAC it is sent to (a neighbour's
/// new MAC, or its entry gone), and by nothing else: a new neighbour does not retire them (an
/// unconfirmed path looks it up itself), nor does an apply that changes nothing.
#[test]
fn paths_are_retired_by_what_can_move_a_flow() -> Result<()> {
    if !ipmp_tests::lab::require_root("paths_are_retired_by_what_can_move_a_flow") {
        return Ok(());
    }
    in_fresh_netns(|| {
        use ipmp_common::{NeighKey, ROUTE_GEN_OFF};
        use std::net::{IpAddr, Ipv4Addr};
        let mut bed = Testbed::new(MEMBERS)?;
        let all: Vec<usize> = (0..MEMBERS).collect();
        let rest: Vec<usize> = (0..MEMBERS - 1).collect();
        let generation =
            |bed: &Testbed| -> Result<u64> { Ok(bed.writer.route_generation()? & !ROUTE_GEN_OFF) };
        let mut last = generation(&bed)?;
        let mut expect = |bed: &Testbed, retired: bool, what: &str| -> Result<()> {
            let now = generation(bed)?;
            ensure!(
                (now > last) == retired,
                "{what}: generation {last} -> {now}, want {}",
                if retired { "advanced" } else { "unchanged" }
            );
            last = now;
            Ok(())
        };
        apply(&mut bed, &all, 0)?;
        expect(&bed, false, "an apply that changes nothing")?;
        bed.table.rebalance(&rest);
        apply(&mut bed, &rest, 0)?;
        expect(&bed, true, "a member's failure")?;
        bed.table.rebalance(&all);
        apply(&mut bed, &all, 0)?;
        expect(&bed, true, "its repair")?;
        bed.writer.apply(&[])?;
        expect(&bed, true, "the group removed")?;

        let key = NeighKey::new(
            bed.members[0],
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)).into(),
        );
        let (mac, new_mac) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let epoch = bed.writer.neigh_epoch()?;
        bed.writer.put_neighbour(key, mac)?;
        expect(&bed, false, "a new neighbour")?;
        // Paths remembered unconfirmed look for a neighbour once per epoch.
        ensure!(
            bed.writer.neigh_epoch()? == epoch.wrapping_add(1),
            "a new neighbour began no neighbour epoch"
        );
        bed.writer.put_neighbour(key, mac)?;
        expect(&bed, false, "the same neighbour again")?;
        ensure!(
            bed.writer.neigh_epoch()? == epoch.wrapping_add(1),
            "the same neighbour again began a neighbour epoch"
        );
        bed.writer.put_neighbour(key, new_mac)?;
        expect(&bed, true, "a neighbour's new MAC")?;
        let epoch = bed.writer.neigh_epoch()?;
        ensure!(
            !bed.writer.stale_neighbour(key, None)?,
            "an unused stale neighbour was kept"
        );
        expect(&bed, true, "an unused stale neighbour dropped")?;
        ensure!(
            bed.writer.neigh_epoch()? == epoch,
            "no used mark was cleared, yet a neighbour epoch began"
        );
        bed.writer.put_neighbour(key, mac)?;
        bed.writer.remove_neighbour(key)?;
        expect(&bed, true, "a neighbour removed")?;
        Ok(())
    })
}

/// `IPMP_NEIGHS` full: one more neighbour is left to the kernel's neighbour code (`Ok(false)`),
/// not an error; a known neighbour's new MAC still fits, and a removal makes room.
#[test]
fn a_full_neighbour_map_leaves_the_rest_to_the_kernel() -> Result<()> {
    if !ipmp_tests::lab::require_root("a_full_neighbour_map_leaves_the_rest_to_the_kernel") {
        return Ok(());
    }
    in_fresh_netns(|| {
        use ipmp_common::{MAX_NEIGHS, NeighKey};
        use std::net::{IpAddr, Ipv4Addr};
        let mut bed = Testbed::new(2)?;
        let member = bed.members[0];
        let w = &mut bed.writer;
        // The test bed already holds a few neighbours of its own; fill the rest.
        let key =
            |i: u32| NeighKey::new(member, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)).into());
        let mut stored = 0;
        for i in 0..MAX_NEIGHS {
            if w.put_neighbour(key(i), [2, 0, 0, 0, 0, 1])? {
                stored += 1;
            } else {
                break;
            }
        }
        ensure!(stored > 0 && stored < MAX_NEIGHS, "stored {stored}");
        ensure!(
            !w.put_neighbour(key(stored), [2, 0, 0, 0, 0, 1])?,
            "a neighbour beyond the map's size was stored"
        );
        ensure!(
            w.put_neighbour(key(0), [2, 0, 0, 0, 0, 2])?,
            "a known neighbour's new MAC must fit"
        );
        w.remove_neighbour(key(0))?;
        ensure!(
            w.put_neighbour(key(stored), [2, 0, 0, 0, 0, 1])?,
            "a removal made no room"
        );
        Ok(())
    })
}
