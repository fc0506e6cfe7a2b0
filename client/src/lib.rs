#![deny(missing_docs)]
//! StreamHouse client: a Kafka-like [`Producer`], [`Consumer`] and [`Admin`] over gRPC.
//!
//! Agents are stateless; any of them can bootstrap a client, which then talks to each
//! partition's leader directly and follows leaders as they move.
//!
//! ```no_run
//! use std::time::Duration;
//! use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};
//!
//! # async fn demo() -> Result<(), streamhouse_client::ClientError> {
//! let admin = Admin::connect("127.0.0.1:9660").await?;
//! admin.create_topic(NewTopic::new("events", 4)).await?;
//!
//! let producer = Producer::builder().bootstrap("127.0.0.1:9660").build().await?;
//! producer.send("events", Some(b"user-1"), b"{\"page\":\"/\"}").await?;
//! let meta = producer.send_and_wait("events", Some(b"user-2"), b"{}").await?;
//! producer.close().await?;
//!
//! let mut consumer = Consumer::builder()
//!     .bootstrap("127.0.0.1:9660")
//!     .auto_offset_reset(OffsetReset::Earliest)
//!     .build()
//!     .await?;
//! consumer.assign(vec![TopicPartition::new("events", meta.partition)]).await?;
//! let records = consumer.poll(Duration::from_millis(500)).await?;
//! # Ok(()) }
//! ```

mod admin;
mod cluster;
mod consumer;
mod error;
mod group;
mod metrics;
mod producer;
mod security;

pub use admin::{
    Admin, AgentDescription, AgentStats, ClusterDescription, ClusterEvent, GroupDescription,
    GroupListing, GroupMemberDescription, GroupPartitionDescription, NewTopic,
    PartitionDescription, ResetTarget, TopicConfig, TopicDescription,
};
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerRecord, OffsetReset, RebalanceListener, TopicPartition,
};
pub use error::{ClientError, Result};
pub use group::AssignorKind;
pub use metrics::{LatencyHistogram, ProducerMetrics};
pub use producer::{DeliveryFuture, Producer, ProducerBuilder, RecordMetadata};
pub use security::Security;
/// Batch compression codecs, and the record header type.
pub use streamhouse_proto::batch::{Compression, Header};
/// The agents' error codes, as [`ClientError::code`] reports them.
pub use streamhouse_proto::pb::ErrorCode;
