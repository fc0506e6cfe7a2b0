//! Fetch: whole stored batches from an offset, waiting up to the request's bound for data.

use super::*;

impl Service {
    pub(super) async fn fetch_inner(&self, r: pb::FetchRequest) -> Result<pb::FetchResponse> {
        let (_, state) = self.partition(&r.topic, r.partition).await?;
        let max_bytes = match r.max_bytes as usize {
            0 => DEFAULT_FETCH_BYTES,
            n => n.min(MAX_FETCH_BYTES),
        };
        let max_wait = Duration::from_millis(u64::from(r.max_wait_ms)).min(MAX_FETCH_WAIT);
        let fetched = self
            .shared
            .reader
            .fetch(&state, r.offset, max_bytes, max_wait)
            .await?;
        let stats = &self.shared.stats;
        for (_, b) in &fetched.batches {
            if let Ok(h) = batch::BatchHeader::peek(b) {
                stats
                    .fetched_records
                    .fetch_add(h.record_count.max(0) as u64, Ordering::Relaxed);
            }
            stats
                .fetched_bytes
                .fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        let (base_offsets, batches) = fetched.batches.into_iter().unzip();
        Ok(pb::FetchResponse {
            error: ok(),
            batches,
            base_offsets,
            high_watermark: fetched.high_watermark,
            log_start_offset: fetched.log_start_offset,
        })
    }
}
