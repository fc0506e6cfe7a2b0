//! The client's error type.

use streamhouse_proto::pb::{self, ErrorCode};

/// Everything a client call can fail with.
///
/// Errors an agent reports carry the agent's typed code; [`ClientError::is_retriable`] says
/// which ones the producer and consumer retry by themselves.
///
/// ```no_run
/// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
/// match producer.send_and_wait("events", None, b"x").await {
///     Ok(meta) => println!("offset {}", meta.offset),
///     Err(streamhouse_client::ClientError::UnknownTopic(t)) => eprintln!("create {t} first"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// A builder setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// No bootstrap or known agent answered.
    #[error("no agent reachable: {0}")]
    Unreachable(String),
    /// The agents refused the client's credentials: no token, or one they do not accept.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The topic (named here) does not exist.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
    },
    /// A topic of that name (named here) already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The topic name breaks the naming rule; the payload says how.
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// A record (or its batch) exceeds the size limit.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Encoded size of the record or batch.
        size: usize,
        /// The limit it broke.
        max: usize,
    },
    /// An offset outside the partition's log.
    #[error("offset {offset} is outside [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// First offset still stored.
        log_start_offset: i64,
        /// Offset the next record will get.
        high_watermark: i64,
    },
    /// A batch failed the agent's checks; the payload says which.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A stored batch does not decode (damaged at rest, or written before agents checked
    /// every record). Nothing past it is lost: [`Consumer::seek`](crate::Consumer::seek) to
    /// `next_offset` reads on.
    #[error(
        "damaged batch in {topic}-{partition} at offset {offset}: {reason}; seek to {next_offset} to read past it"
    )]
    DamagedBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset of the batch's first record.
        offset: i64,
        /// The first offset after the batch.
        next_offset: i64,
        /// What the decoder found.
        reason: String,
    },
    /// A request was larger than the agent decodes. Not retried: the same request would be
    /// refused again.
    #[error("request too large for the agent: {0}")]
    RequestTooLarge(String),
    /// A record was not acknowledged within the delivery timeout.
    #[error("delivery timed out after {elapsed_ms} ms; last error: {last_error}")]
    DeliveryTimeout {
        /// How long delivery was tried.
        elapsed_ms: u64,
        /// What the last attempt ran into.
        last_error: String,
    },
    /// Any other error an agent reported, with its code.
    #[error("{code:?}: {message}")]
    Agent {
        /// The agent's error code.
        code: ErrorCode,
        /// The agent's explanation.
        message: String,
    },
    /// The producer or consumer was closed.
    #[error("closed")]
    Closed,
    /// The operating system refused what the client needs to run, such as the producer's
    /// timer thread; the message says what and why.
    #[error("system: {0}")]
    System(String),
}

impl ClientError {
    /// True for transient conditions worth retrying: a leader moved, an agent is stopping or
    /// unreachable, a store is briefly unavailable.
    ///
    /// ```
    /// let e = streamhouse_client::ClientError::Unreachable("connection refused".into());
    /// assert!(e.is_retriable());
    /// assert!(!streamhouse_client::ClientError::UnknownTopic("t".into()).is_retriable());
    /// ```
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Unreachable(_) => true,
            ClientError::Agent { code, .. } => matches!(
                code,
                ErrorCode::NotLeader
                    | ErrorCode::StorageUnavailable
                    | ErrorCode::MetadataUnavailable
                    | ErrorCode::ShuttingDown
                    | ErrorCode::Fenced
                    | ErrorCode::Throttled
            ),
            _ => false,
        }
    }

    pub(crate) fn from_status(s: &tonic::Status) -> Self {
        match s.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                ClientError::Unauthenticated(s.message().to_string())
            }
            // tonic's answer to a message over its size limit, on either side.
            tonic::Code::OutOfRange => ClientError::RequestTooLarge(s.message().to_string()),
            code => ClientError::Unreachable(format!("{code:?}: {}", s.message())),
        }
    }

    /// The error an agent's response carries, or `None` when the response reports success.
    pub(crate) fn from_pb(e: Option<&pb::Error>) -> Option<Self> {
        let e = e?;
        let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unknown);
        let msg = e.message.clone();
        // The topic an error names; an agent that predates `Error.topic` only said it in
        // its message.
        let topic = || {
            if e.topic.is_empty() {
                msg.clone()
            } else {
                e.topic.clone()
            }
        };
        Some(match code {
            ErrorCode::Ok => return None,
            ErrorCode::UnknownTopic => ClientError::UnknownTopic(topic()),
            ErrorCode::TopicExists => ClientError::TopicExists(topic()),
            ErrorCode::InvalidTopic => ClientError::InvalidTopic(msg),
            ErrorCode::CorruptBatch => ClientError::CorruptBatch(msg),
            ErrorCode::OffsetOutOfRange => ClientError::OffsetOutOfRange {
                offset: -1,
                log_start_offset: e.log_start_offset,
                high_watermark: e.high_watermark,
            },
            code => ClientError::Agent { code, message: msg },
        })
    }

    /// The agent's error code behind this error, where there is one.
    ///
    /// ```
    /// let e = streamhouse_client::ClientError::UnknownTopic("t".into());
    /// assert_eq!(e.code(), Some(streamhouse_client::ErrorCode::UnknownTopic));
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::UnknownTopic(_) => Some(ErrorCode::UnknownTopic),
            ClientError::UnknownPartition { .. } => Some(ErrorCode::UnknownPartition),
            ClientError::TopicExists(_) => Some(ErrorCode::TopicExists),
            ClientError::InvalidTopic(_) => Some(ErrorCode::InvalidTopic),
            ClientError::RecordTooLarge { .. } => Some(ErrorCode::RecordTooLarge),
            ClientError::OffsetOutOfRange { .. } => Some(ErrorCode::OffsetOutOfRange),
            ClientError::CorruptBatch(_) | ClientError::DamagedBatch { .. } => {
                Some(ErrorCode::CorruptBatch)
            }
            ClientError::RequestTooLarge(_) => Some(ErrorCode::RequestTooLarge),
            ClientError::Agent { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A gRPC status as the client reports it: for code talking to agents through the generated
/// `streamhouse_proto::pb` client directly.
///
/// ```
/// let e = streamhouse_client::ClientError::from(tonic::Status::out_of_range("too large"));
/// assert!(matches!(e, streamhouse_client::ClientError::RequestTooLarge(_)));
/// assert!(!e.is_retriable());
/// ```
impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::from_status(&s)
    }
}

/// The result type of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(code: ErrorCode, message: &str, topic: &str) -> pb::Error {
        pb::Error {
            code: code as i32,
            message: message.into(),
            topic: topic.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_topic_error_from_the_wire_names_the_topic_once() {
        let e = ClientError::from_pb(Some(&wire(
            ErrorCode::UnknownTopic,
            "unknown topic \"x\"",
            "x",
        )));
        let e = e.expect("an error");
        assert!(matches!(&e, ClientError::UnknownTopic(t) if t == "x"));
        assert_eq!(e.to_string(), "unknown topic \"x\"");
        let e = ClientError::from_pb(Some(&wire(ErrorCode::TopicExists, "m", "y")));
        assert!(matches!(e, Some(ClientError::TopicExists(t)) if t == "y"));
    }

    #[test]
    fn ok_is_no_error_and_unknown_codes_stay_agent_errors() {
        assert!(ClientError::from_pb(None).is_none());
        assert!(ClientError::from_pb(Some(&wire(ErrorCode::Ok, "", ""))).is_none());
        let e = ClientError::from_pb(Some(&pb::Error {
            code: 9999,
            message: "new".into(),
            ..Default::default()
        }));
        assert!(matches!(
            e,
            Some(ClientError::Agent {
                code: ErrorCode::Unknown,
                ..
            })
        ));
    }
}
