//! Bounds both sides of the wire agree on, so that every request does bounded work on an
//! agent and a well-behaved client never builds a request an agent refuses.
//!
//! An agent refuses a request over any of these with `INVALID_REQUEST` naming the bound;
//! the client builds its requests within them.

/// Most partitions one `Produce` request may name; each at most once.
pub const MAX_PRODUCE_PARTITIONS: usize = 1_000;

/// The longest flush interval an agent runs with (and a producer believes it announces), ms.
pub const MAX_FLUSH_INTERVAL_MS: u64 = 60_000;
/// Most batches for one partition in one `Produce` request: the idempotent producer's
/// de-duplication window, so a retried request is always recognised whole.
pub const MAX_BATCHES_PER_PARTITION: usize = crate::batch::DEDUPE_WINDOW;
/// Most distinct idempotent producer ids the batches of one `Produce` request may carry (a
/// producer stamps all its batches with its own): each new one may cost the agent a query.
pub const MAX_PRODUCERS_PER_REQUEST: usize = 4;
/// Most topics one `GetMetadata` request may name (duplicates are answered once).
pub const MAX_METADATA_TOPICS: usize = 1_000;
/// Most topics a group member may subscribe to, or a `FetchOffsets` request name.
pub const MAX_GROUP_TOPICS: usize = 1_000;
/// Most partitions a group member may report owning, or one commit carry.
pub const MAX_GROUP_PARTITIONS: usize = 100_000;
/// Most assignors a member may list.
pub const MAX_ASSIGNORS: usize = 8;
/// Longest group id, member id and client id, in bytes.
pub const MAX_ID_BYTES: usize = 255;
/// Longest metadata string stored with a committed offset (Kafka's
/// `offset.metadata.max.bytes`).
pub const MAX_COMMIT_METADATA_BYTES: usize = 4096;
/// How far an agent's decompression of one batch may go beyond its batch limit: a payload
/// may declare at most `max_batch_bytes × DECOMPRESSION_FACTOR` bytes.
pub const DECOMPRESSION_FACTOR: usize = 8;

/// The largest request an agent with batch limit `max_batch_bytes` decodes: room for two
/// whole batches and a megabyte of framing, and never less than 8 MiB.
pub fn max_request_bytes(max_batch_bytes: usize) -> usize {
    max_batch_bytes
        .saturating_mul(2)
        .saturating_add(1024 * 1024)
        .max(8 * 1024 * 1024)
}
