//! The agent's one error type, and its mapping to the typed wire codes clients see.

use streamhouse_proto::batch::CodecError;
use streamhouse_proto::pb;

/// Everything that can go wrong inside the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("this agent does not lead {topic}-{partition}")]
    NotLeader {
        topic: String,
        partition: u32,
        leader_hint: Option<String>,
    },
    #[error("offset {offset} is outside [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    #[error("corrupt record batch: {0}")]
    CorruptBatch(#[from] CodecError),
    #[error("object store: {0}")]
    Storage(#[from] crate::object_store::StorageError),
    #[error("metadata store: {0}")]
    Metadata(crate::metadata::MetadataError),
    #[error("object store unavailable: {0}")]
    StorageUnavailable(String),
    #[error("metadata store unavailable: {0}")]
    MetadataUnavailable(String),
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error(
        "the agent holds {buffered} uncommitted bytes, its limit is {max} (max_buffered_bytes); back off and retry"
    )]
    Throttled { buffered: usize, max: usize },
    #[error(
        "producer {producer_id} sent sequence {got} to {topic}-{partition}, expected {expected}"
    )]
    OutOfOrderSequence {
        topic: String,
        partition: u32,
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("{0}")]
    Group(#[from] crate::group::coordinator::GroupError),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error(
        "record timestamp {timestamp} is {distance_ms} ms {side} the agent's clock; the limit is {limit_ms} ms ({setting})"
    )]
    InvalidTimestamp {
        timestamp: i64,
        distance_ms: i64,
        side: &'static str,
        limit_ms: i64,
        setting: &'static str,
    },
    #[error("damaged data in {topic}-{partition} at offsets {offset} to {}: {reason}", next_offset - 1)]
    DamagedData {
        topic: String,
        partition: u32,
        offset: i64,
        next_offset: i64,
        reason: String,
    },
    #[error("unknown producer id {0}: ask InitProducerId for one")]
    UnknownProducerId(i64),
    #[error("producer {producer_id} epoch {epoch} is negative")]
    NegativeProducerEpoch { producer_id: i64, epoch: i16 },
    #[error(
        "producer {producer_id} epoch {epoch} was never issued (the current epoch is {issued})"
    )]
    ProducerEpochAhead {
        producer_id: i64,
        epoch: i16,
        issued: i16,
    },
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
}

impl AgentError {
    /// The wire form, with the code a client decides on.
    pub fn to_pb(&self) -> pb::Error {
        use pb::ErrorCode as C;
        let mut e = pb::Error {
            code: 0,
            message: self.to_string(),
            ..Default::default()
        };
        let code = match self {
            AgentError::UnknownTopic(topic) => {
                e.topic.clone_from(topic);
                C::UnknownTopic
            }
            AgentError::UnknownPartition { topic, .. } => {
                e.topic.clone_from(topic);
                C::UnknownPartition
            }
            AgentError::TopicExists(topic) => {
                e.topic.clone_from(topic);
                C::TopicExists
            }
            AgentError::InvalidTopic(_) => C::InvalidTopic,
            AgentError::InvalidPartitions(_) => C::InvalidPartitions,
            AgentError::InvalidRequest(_) => C::InvalidRequest,
            AgentError::NotLeader { leader_hint, .. } => {
                e.leader_hint = leader_hint.clone().unwrap_or_default();
                C::NotLeader
            }
            AgentError::OffsetOutOfRange {
                log_start,
                high_watermark,
                ..
            } => {
                e.log_start_offset = *log_start;
                e.high_watermark = *high_watermark;
                C::OffsetOutOfRange
            }
            AgentError::RecordTooLarge { .. } => C::RecordTooLarge,
            AgentError::CorruptBatch(_) => C::CorruptBatch,
            AgentError::DamagedData {
                offset,
                next_offset,
                ..
            } => {
                e.damaged_offset = *offset;
                e.next_offset = *next_offset;
                C::CorruptBatch
            }
            AgentError::Storage(_) | AgentError::StorageUnavailable(_) => C::StorageUnavailable,
            AgentError::MetadataUnavailable(_) => C::MetadataUnavailable,
            AgentError::Metadata(crate::metadata::MetadataError::Fenced(_)) => C::NotLeader,
            AgentError::Metadata(crate::metadata::MetadataError::ProducerFenced { .. }) => {
                C::ProducerFenced
            }
            AgentError::OutOfOrderSequence { .. } => C::OutOfOrderSequence,
            AgentError::ProducerFenced { .. } => C::ProducerFenced,
            AgentError::InvalidTimestamp { .. } => C::InvalidTimestamp,
            AgentError::UnknownProducerId(_)
            | AgentError::NegativeProducerEpoch { .. }
            | AgentError::ProducerEpochAhead { .. } => C::InvalidProducer,
            AgentError::Group(g) => {
                use crate::group::coordinator::GroupError as G;
                match g {
                    G::UnknownMember(_) => C::UnknownMember,
                    G::StaleGeneration(_) => C::StaleGeneration,
                    G::InconsistentAssignors(_) | G::OtherProtocol(_) => C::InconsistentAssignors,
                    G::NotEmpty(_) => C::NonEmptyGroup,
                }
            }
            AgentError::UnknownGroup(_) => C::UnknownGroup,
            AgentError::Metadata(_) => C::MetadataUnavailable,
            AgentError::ShuttingDown => C::ShuttingDown,
            AgentError::Throttled { .. } => C::Throttled,
        };
        e.code = code as i32;
        e
    }
}

/// A metadata-store failure as the agent reports it: the store's verdicts on a topic become
/// the agent's own topic errors, anything else stays a store failure.
impl From<crate::metadata::MetadataError> for AgentError {
    fn from(e: crate::metadata::MetadataError) -> Self {
        use crate::metadata::MetadataError as M;
        match e {
            M::UnknownTopic(topic) => AgentError::UnknownTopic(topic),
            M::TopicExists(topic) => AgentError::TopicExists(topic),
            other => AgentError::Metadata(other),
        }
    }
}

/// The `error` field of a successful response.
pub fn ok() -> Option<pb::Error> {
    Some(pb::Error {
        code: pb::ErrorCode::Ok as i32,
        ..Default::default()
    })
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
