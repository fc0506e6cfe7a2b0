use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

fn row(base: i64, last: i64, bytes: u64, created: i64, max_ts: i64) -> SegmentRow {
    SegmentRow {
        base_offset: base,
        last_offset: last,
        object_key: format!("data/{base}"),
        byte_start: 0,
        byte_len: bytes,
        record_count: last - base + 1,
        max_timestamp: max_ts,
        created_at_ms: created,
    }
}

#[test]
fn object_names_carry_their_time() {
    assert_eq!(
        object_time_ms("data/1700000000123-agent-1-00000007.obj"),
        Some(1_700_000_000_123)
    );
    assert_eq!(
        object_time_ms("segments/0000000000042-a-00000000.obj"),
        Some(42)
    );
    assert_eq!(object_time_ms("data/notes.txt"), None);
    assert_eq!(object_time_ms("data/12-x.obj"), None);
}

#[test]
fn retention_drops_whole_rows_from_the_start() {
    let rows = [
        row(0, 9, 100, 0, 1_000),
        row(10, 19, 100, 0, 2_000),
        row(20, 29, 100, 0, 9_000),
        row(30, 39, 100, 0, 1_500), // older than its predecessor: kept behind it
    ];
    // By time: rows whose newest record is older than now - retention.
    assert_eq!(retention_cut(&rows, 400, 10_000, 7_500, -1), Some(20));
    assert_eq!(retention_cut(&rows, 400, 10_000, 9_500, -1), None);
    assert_eq!(retention_cut(&rows, 400, 10_000, -1, -1), None);
    // By size: drop while what remains is still at least the limit.
    assert_eq!(retention_cut(&rows, 400, 10_000, -1, 250), Some(10));
    assert_eq!(retention_cut(&rows, 400, 10_000, -1, 200), Some(20));
    assert_eq!(retention_cut(&rows, 400, 10_000, -1, 1_000), None);
    // Both: a row goes when either says so, until one that neither drops.
    assert_eq!(retention_cut(&rows, 400, 10_000, 8_500, 250), Some(10));
    assert_eq!(retention_cut(&rows, 400, 10_000, 8_500, 150), Some(20));
}

#[test]
fn compaction_merges_full_runs_at_once_and_partial_ones_when_old() {
    let rows: Vec<SegmentRow> = (0..10)
        .map(|i| row(i * 10, i * 10 + 9, 300, 1_000 + i, 0))
        .collect();
    // 1,000-byte segments: three chunks each; the last chunk waits until it is old.
    assert_eq!(
        plan_compaction(&rows, 2_000, 1_000, 5_000),
        vec![0..3, 3..6, 6..9]
    );
    assert_eq!(
        plan_compaction(&rows, 10_000, 1_000, 5_000),
        vec![0..3, 3..6, 6..9, 9..10]
    );
    // Nothing full and nothing old: nothing to do.
    assert!(plan_compaction(&rows[..2], 2_000, 1_000, 5_000).is_empty());
    // A chunk larger than the target is a run of its own.
    let big = vec![row(0, 9, 5_000, 0, 0), row(10, 19, 10, 0, 0)];
    assert_eq!(plan_compaction(&big, 1, 1_000, 5_000), vec![0..1]);
    // A gap in offsets ends a run.
    let gap = vec![row(0, 9, 10, 0, 0), row(20, 29, 10, 0, 0)];
    assert_eq!(
        plan_compaction(&gap, 10_000, 1_000, 5_000),
        vec![0..1, 1..2]
    );
}

#[test]
fn segment_index_rows_cover_the_segment_end_to_end() {
    let rows: Vec<SegmentRow> = (0..5).map(|i| row(i * 10, i * 10 + 9, 400, 0, i)).collect();
    let index = segment_index(&rows, 1_000);
    let spans: Vec<(i64, i64, u64, u64, i64)> = index
        .iter()
        .map(|r| {
            (
                r.base_offset,
                r.last_offset,
                r.byte_start,
                r.byte_len,
                r.max_timestamp,
            )
        })
        .collect();
    assert_eq!(
        spans,
        [
            (0, 19, 0, 800, 1),
            (20, 39, 800, 800, 3),
            (40, 49, 1_600, 400, 4)
        ]
    );
}

fn key(i: u8) -> String {
    format!("data/{:013}-a-{i:08}.obj", 1_000 * u64::from(i))
}

proptest! {
    /// The plan never deletes an object an index row points at, never deletes a known object
    /// before it has been unreferenced for the grace, and never an unknown one younger than it.
    #[test]
    fn gc_never_deletes_what_is_referenced_or_too_young(
        known in proptest::collection::vec((0u8..40, -1i64..300_000, any::<bool>()), 0..40),
        extra in proptest::collection::vec(0u8..40, 0..20),
        store_now in 0i64..400_000,
        wall_now in 0i64..400_000,
        grace in 1i64..200_000,
    ) {
        // Keys are the store's primary key: one record each.
        let known: Vec<(u8, i64, bool)> = known
            .into_iter()
            .map(|(i, since, r)| (i, (since, r)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .map(|(i, (since, r))| (i, since, r))
            .collect();
        let records: Vec<ObjectRecord> = known
            .iter()
            .map(|(i, since, _)| ObjectRecord {
                key: key(*i),
                size_bytes: 1,
                unreferenced_since_ms: *since,
            })
            .collect();
        let referenced: HashSet<String> = known
            .iter()
            .filter(|(_, _, r)| *r)
            .map(|(i, _, _)| key(*i))
            .collect();
        let listed: Vec<ObjectMeta> = known
            .iter()
            .map(|(i, _, _)| *i)
            .chain(extra.iter().copied())
            .map(|i| ObjectMeta { key: key(i), size: 1 })
            .collect();
        let plan = gc_plan(&listed, &records, &referenced, store_now, wall_now, grace);
        let by_key: HashMap<&str, &ObjectRecord> =
            records.iter().map(|r| (r.key.as_str(), r)).collect();
        for k in plan.delete.iter().chain(&plan.orphans).chain(&plan.mark) {
            prop_assert!(!referenced.contains(k), "{k} is referenced");
        }
        for k in &plan.delete {
            let r = by_key[k.as_str()];
            prop_assert!(r.unreferenced_since_ms >= 0);
            prop_assert!(store_now - r.unreferenced_since_ms >= grace);
        }
        for k in &plan.orphans {
            prop_assert!(!by_key.contains_key(k.as_str()), "{k} has a row");
            prop_assert!(wall_now - object_time_ms(k).unwrap() >= grace);
        }
        for k in &plan.mark {
            prop_assert!(by_key[k.as_str()].unreferenced_since_ms < 0);
        }
    }

    /// Compaction's runs are disjoint, in order, contiguous in offsets and within the target
    /// (unless a single chunk is larger).
    #[test]
    fn compaction_runs_are_contiguous_and_bounded(
        sizes in proptest::collection::vec((1u64..3_000, 0i64..3, 0i64..10_000), 0..60),
        target in 500u64..5_000,
        now in 0i64..20_000,
    ) {
        let mut rows = Vec::new();
        let mut base = 0;
        for (bytes, gap, created) in &sizes {
            base += gap;
            rows.push(row(base, base + 4, *bytes, *created, 0));
            base += 5;
        }
        let runs = plan_compaction(&rows, now, target, 5_000);
        let mut end = 0;
        for r in &runs {
            prop_assert!(r.start >= end && r.start < r.end && r.end <= rows.len());
            end = r.end;
            let run = &rows[r.clone()];
            for w in run.windows(2) {
                prop_assert_eq!(w[0].last_offset + 1, w[1].base_offset);
            }
            let bytes: u64 = run.iter().map(|x| x.byte_len).sum();
            prop_assert!(bytes <= target || run.len() == 1);
        }
    }
}

#[test]
fn compaction_refuses_damaged_or_mislabelled_chunks() {
    use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..3 {
        b.append(1_000, None, Some(format!("v{i}").as_bytes()), &[]);
    }
    let good = b.finish(ProducerStamp::NONE).unwrap();
    let r = row(10, 12, good.len() as u64, 0, 1_000);
    check_chunk(&r, &good).unwrap();
    // The row says 4 records; the chunk holds 3.
    assert!(check_chunk(&row(10, 13, good.len() as u64, 0, 1_000), &good).is_err());
    // A flipped byte in a record: the CRC catches it.
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let e = check_chunk(&r, &bad).unwrap_err().to_string();
    assert!(e.contains("malformed batch"), "{e}");
    // Truncated.
    assert!(check_chunk(&r, &good[..good.len() - 2]).is_err());
}

/// Index rows for segments of the given sizes laid end to end, `rows_per` rows each.
fn segments(sizes: &[u64], rows_per: i64) -> Vec<SegmentRow> {
    let mut out = Vec::new();
    let mut base = 0;
    for (i, size) in sizes.iter().enumerate() {
        for _ in 0..rows_per {
            let mut r = row(base, base + 9, size / rows_per as u64, 0, 0);
            r.object_key = format!("segments/{i}");
            out.push(r);
            base += 10;
        }
    }
    out
}

#[test]
fn tiers_merge_four_segments_of_one_size() {
    // Four 1 KiB segments of two rows each: one run over all eight rows.
    assert_eq!(plan_tiers(&segments(&[1024; 4], 2)), vec![0..8]);
    // Three are not enough.
    assert!(plan_tiers(&segments(&[1024; 3], 2)).is_empty());
    // A larger, older segment stays out; the four newer small ones merge.
    assert_eq!(
        plan_tiers(&segments(&[64 * 1024, 1024, 1024, 1100, 2000], 1)),
        vec![1..5]
    );
    // Eight of a tier: two runs.
    assert_eq!(plan_tiers(&segments(&[2048; 8], 1)), vec![0..4, 4..8]);
    // A gap in offsets ends a run.
    let mut gap = segments(&[1024; 4], 1);
    for r in &mut gap[2..] {
        r.base_offset += 100;
        r.last_offset += 100;
    }
    assert!(plan_tiers(&gap).is_empty());
}

proptest! {
    /// Tier runs cover whole segments, contiguous in offsets, never overlapping, in order.
    #[test]
    fn tier_runs_cover_whole_contiguous_segments(
        sizes in proptest::collection::vec(1u64..100_000, 0..40),
        rows_per in 1i64..4,
    ) {
        let rows = segments(&sizes, rows_per);
        let mut end = 0;
        for run in plan_tiers(&rows) {
            prop_assert!(run.start >= end && run.end > run.start);
            end = run.end;
            prop_assert!(run.start == 0 || rows[run.start - 1].object_key != rows[run.start].object_key);
            prop_assert!(run.end == rows.len() || rows[run.end].object_key != rows[run.end - 1].object_key);
            let objects: std::collections::BTreeSet<&str> =
                rows[run.clone()].iter().map(|r| r.object_key.as_str()).collect();
            prop_assert_eq!(objects.len(), TIER_FANOUT);
            for w in rows[run].windows(2) {
                prop_assert_eq!(w[0].last_offset + 1, w[1].base_offset);
            }
        }
    }
}
