//! Retention: how much of a partition's oldest index rows its topic's `retention_ms` and
//! `retention_bytes` let go.

use super::*;

/// The log start retention asks for, given the partition's oldest rows in order and its
/// total bytes: the offset after the last row to drop, or `None` to drop nothing. Only a
/// prefix of whole rows is dropped, and a row is dropped by time only when even its newest
/// record is older than `retention_ms`.
pub fn retention_cut(
    rows: &[SegmentRow],
    total_bytes: i64,
    now_ms: i64,
    retention_ms: i64,
    retention_bytes: i64,
) -> Option<i64> {
    let mut remaining = total_bytes;
    let mut cut = None;
    for row in rows {
        let too_old = retention_ms > 0 && row.max_timestamp < now_ms - retention_ms;
        let too_big = retention_bytes > 0 && remaining - row.byte_len as i64 >= retention_bytes;
        if !(too_old || too_big) {
            break;
        }
        remaining -= row.byte_len as i64;
        cut = Some(row.last_offset + 1);
    }
    cut
}
