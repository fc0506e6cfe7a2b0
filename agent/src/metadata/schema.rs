//! The metadata schema and its migrations, embedded in the binary and applied at start.
//!
//! One text serves both backends: `{id}` becomes each backend's auto-increment key and
//! `{bytes}` its byte-string type. Numbers
//! are all BIGINT so both decode to `i64`. Times are milliseconds since the epoch, taken from
//! the metadata store's own clock wherever they decide correctness (lease expiry).

/// (version, SQL). Append only: a released migration is never edited.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
    (8, V8),
    (9, V9),
];

const V1: &str = r#"
CREATE TABLE topics (
    name              TEXT PRIMARY KEY,
    partition_count   BIGINT NOT NULL,
    retention_ms      BIGINT NOT NULL DEFAULT -1,
    retention_bytes   BIGINT NOT NULL DEFAULT -1,
    created_at_ms     BIGINT NOT NULL
);

-- One row per partition: its lease and its log bounds.
CREATE TABLE partitions (
    topic             TEXT NOT NULL,
    partition_id      BIGINT NOT NULL,
    leader_id         TEXT,
    lease_epoch       BIGINT NOT NULL DEFAULT 0,
    lease_expires_ms  BIGINT NOT NULL DEFAULT 0,
    log_start_offset  BIGINT NOT NULL DEFAULT 0,
    high_watermark    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition_id)
);

-- The segment index: where each run of offsets sits in the object store.
CREATE TABLE segments (
    topic             TEXT NOT NULL,
    partition_id      BIGINT NOT NULL,
    base_offset       BIGINT NOT NULL,
    last_offset       BIGINT NOT NULL,
    object_key        TEXT NOT NULL,
    byte_start        BIGINT NOT NULL,
    byte_len          BIGINT NOT NULL,
    record_count      BIGINT NOT NULL,
    max_timestamp     BIGINT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (topic, partition_id, base_offset)
);
CREATE INDEX segments_by_object ON segments (object_key);

-- Every object a flush committed, so garbage collection can find unreferenced ones.
CREATE TABLE objects (
    object_key        TEXT PRIMARY KEY,
    size_bytes        BIGINT NOT NULL,
    agent_id          TEXT NOT NULL,
    created_at_ms     BIGINT NOT NULL
);

CREATE TABLE agents (
    id                TEXT PRIMARY KEY,
    address           TEXT NOT NULL,
    started_at_ms     BIGINT NOT NULL,
    heartbeat_ms      BIGINT NOT NULL
);

CREATE TABLE producer_ids (
    id                {id},
    created_at_ms     BIGINT NOT NULL
);

CREATE TABLE producer_state (
    producer_id       BIGINT NOT NULL,
    topic             TEXT NOT NULL,
    partition_id      BIGINT NOT NULL,
    producer_epoch    BIGINT NOT NULL,
    last_sequence     BIGINT NOT NULL,
    last_offset       BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (producer_id, topic, partition_id)
);

CREATE TABLE consumer_groups (
    group_id          TEXT PRIMARY KEY,
    generation        BIGINT NOT NULL DEFAULT 0,
    state             TEXT NOT NULL DEFAULT 'empty',
    assignor          TEXT NOT NULL DEFAULT 'round-robin',
    created_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id            TEXT NOT NULL,
    member_id           TEXT NOT NULL,
    client_id           TEXT NOT NULL,
    client_host         TEXT NOT NULL,
    subscription        TEXT NOT NULL,
    assigned            TEXT NOT NULL DEFAULT '',
    member_generation   BIGINT NOT NULL DEFAULT 0,
    session_timeout_ms  BIGINT NOT NULL,
    last_heartbeat_ms   BIGINT NOT NULL,
    joined_at_ms        BIGINT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);

CREATE TABLE committed_offsets (
    group_id          TEXT NOT NULL,
    topic             TEXT NOT NULL,
    partition_id      BIGINT NOT NULL,
    committed_offset  BIGINT NOT NULL,
    metadata          TEXT NOT NULL DEFAULT '',
    generation        BIGINT NOT NULL,
    committed_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic, partition_id)
);

-- A bounded log of what happened: agents joining and leaving, leases moving, rebalances.
CREATE TABLE events (
    id                {id},
    at_ms             BIGINT NOT NULL,
    kind              TEXT NOT NULL,
    subject           TEXT NOT NULL,
    detail            TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (at_ms);
"#;

/// Idempotent producers, and agents marked lost once (so the event is written once): a producer id's current epoch, and per partition the window of its
/// last batches (`first:last:offset,...`) so a retry after a failover is recognised.
const V2: &str = r#"
ALTER TABLE producer_ids ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE producer_state ADD COLUMN recent TEXT NOT NULL DEFAULT '';
CREATE INDEX producer_state_by_partition ON producer_state (topic, partition_id);
ALTER TABLE agents ADD COLUMN lost BIGINT NOT NULL DEFAULT 0;
"#;

/// Consumer groups: what each member reported owning and the assignors it supports, and the
/// inputs the group's target assignment was computed from.
const V3: &str = r#"
ALTER TABLE consumer_groups ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE group_members ADD COLUMN owned TEXT NOT NULL DEFAULT '';
ALTER TABLE group_members ADD COLUMN assignors TEXT NOT NULL DEFAULT '';
"#;

/// Garbage collection: when an object was first seen with no index row pointing at it (-1:
/// still referenced), so it is deleted only after a grace period that covers in-flight reads.
const V4: &str = r#"
ALTER TABLE objects ADD COLUMN unreferenced_since_ms BIGINT NOT NULL DEFAULT -1;
"#;

/// Agent sessions: the key of the session (an advisory lock, or a lock file) each agent's
/// last heartbeat named; 0 for none. See `metadata::sessions`.
const V5: &str = r#"
ALTER TABLE agents ADD COLUMN session_key BIGINT NOT NULL DEFAULT 0;
"#;

/// Leases renewed by agent: one row per agent says until when every lease it holds is live,
/// so a renewal writes one row however many partitions the agent leads. A partition's lease
/// runs out at the later of this and the expiry it was taken with. See `metadata::leases`.
const V6: &str = r#"
ALTER TABLE agents ADD COLUMN lease_expires_ms BIGINT NOT NULL DEFAULT 0;
"#;

/// The lease generation: raised in the transaction of every change to which partitions exist
/// or who holds them, so a lease round reads every partition's holder again only when it moved.
const V7: &str = r#"
CREATE TABLE lease_generation (
    id                BIGINT PRIMARY KEY,
    generation        BIGINT NOT NULL
);
INSERT INTO lease_generation (id, generation) VALUES (1, 0);
"#;

/// The Kafka listener: where each agent serves Kafka clients (none when it does not), and each
/// agent id's Kafka node id, kept across restarts so the broker ids clients cache stay true.
const V8: &str = r#"
ALTER TABLE agents ADD COLUMN kafka_address TEXT;
CREATE TABLE kafka_nodes (
    agent_id          TEXT PRIMARY KEY,
    node_id           BIGINT NOT NULL UNIQUE
);
"#;

/// Kafka's classic groups on the same tables as ours: the group's protocol type ('' for
/// StreamHouse consumers), the protocol its members chose, its leader and deadlines; each
/// member's rebalance timeout, whether it joined the open rebalance, its protocols and the
/// assignment its leader gave it, as the bytes Kafka clients exchange.
const V9: &str = r#"
ALTER TABLE consumer_groups ADD COLUMN protocol_type TEXT NOT NULL DEFAULT '';
ALTER TABLE consumer_groups ADD COLUMN protocol_name TEXT NOT NULL DEFAULT '';
ALTER TABLE consumer_groups ADD COLUMN leader_id TEXT NOT NULL DEFAULT '';
ALTER TABLE consumer_groups ADD COLUMN deadline_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE consumer_groups ADD COLUMN hold_until_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE group_members ADD COLUMN rebalance_timeout_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE group_members ADD COLUMN joined BIGINT NOT NULL DEFAULT 0;
ALTER TABLE group_members ADD COLUMN protocols {bytes};
ALTER TABLE group_members ADD COLUMN member_assignment {bytes};
"#;
