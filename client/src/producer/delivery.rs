//! What a sent record resolves to: its batch's shared outcome and the future each record's
//! sender awaits.

use super::*;

/// Where and when a record was stored.
///
/// ```no_run
/// # async fn example(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
/// let meta = producer.send_and_wait("events", Some(b"k"), b"v").await?;
/// println!("{}-{}@{} at {}", meta.topic, meta.partition, meta.offset, meta.timestamp);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition the record went to.
    pub partition: u32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's timestamp (its create time), ms since the epoch.
    pub timestamp: i64,
}

/// A batch's outcome, shared by the futures of all its records.
#[derive(Debug, Default)]
pub(super) struct BatchOutcome {
    pub(super) result: OnceLock<Result<i64>>,
    pub(super) done: Notify,
}

impl BatchOutcome {
    pub(super) fn set(&self, r: Result<i64>) {
        let _ = self.result.set(r);
        self.done.notify_waiters();
    }

    pub(super) async fn wait(&self) -> &Result<i64> {
        loop {
            let notified = self.done.notified();
            if let Some(r) = self.result.get() {
                return r;
            }
            notified.await;
        }
    }
}

/// Resolves to a record's [`RecordMetadata`] once its batch is acknowledged, or to the error
/// that stopped it. Dropping it does not cancel the record.
///
/// ```no_run
/// # async fn demo(producer: streamhouse_client::Producer) -> Result<(), streamhouse_client::ClientError> {
/// let delivery = producer.send("events", Some(b"user-1"), b"clicked").await?;
/// let meta = delivery.await?;
/// println!("stored at {}-{} offset {}", meta.topic, meta.partition, meta.offset);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DeliveryFuture {
    pub(super) outcome: Arc<BatchOutcome>,
    pub(super) topic: Arc<str>,
    pub(super) partition: u32,
    pub(super) index: i64,
    pub(super) timestamp: i64,
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.outcome.wait().await {
                Ok(base) => Ok(RecordMetadata {
                    topic: self.topic.to_string(),
                    partition: self.partition,
                    offset: base + self.index,
                    timestamp: self.timestamp,
                }),
                Err(e) => Err(e.clone()),
            }
        })
    }
}
