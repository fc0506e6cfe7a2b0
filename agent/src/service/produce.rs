//! Produce and InitProducerId: a request's shape, each partition's batches checked in full
//! (size, CRC, timestamps, producer sequence) before any is appended, and one answer once
//! every batch is committed.

use super::*;

/// A produce request whose batches are in the writer's buffer (or refused), waiting for the
/// commit that acknowledges them.
pub(crate) struct PendingProduce {
    shared: Arc<crate::Shared>,
    /// (topic, partition, the partition's acks with its record and byte counts, or why not)
    partitions: Vec<(String, u32, Result<PartitionAcks>)>,
}

/// A partition's acks, with the records and bytes they stand for.
type PartitionAcks = (Vec<Ack>, u64, u64);

impl Service {
    pub(crate) async fn produce_inner(&self, r: pb::ProduceRequest) -> Result<pb::ProduceResponse> {
        Ok(self.produce_append(r).await?.answer().await)
    }

    /// The first half of a produce: every partition's batches checked and handed to the
    /// writer, in the request's order. Appends made in call order keep that order in the
    /// log, so a connection that must keep its requests in order (Kafka's) calls this in
    /// order and may then wait for several answers at once.
    pub(crate) async fn produce_append(&self, r: pb::ProduceRequest) -> Result<PendingProduce> {
        if self.shared.shutting_down.load(Ordering::Acquire) {
            return Err(AgentError::ShuttingDown);
        }
        check_produce_shape(&r)?;
        // One clock reading judges every batch of the request.
        let now = streamhouse_proto::time::now_ms();
        // A topic named by several partitions is looked up once, a producer checked once.
        let mut topics: HashMap<String, Option<Arc<TopicState>>> = HashMap::new();
        let mut producers: Vec<(i64, i16, Issued)> = Vec::new();
        // Append every partition's batches before waiting for any, so they share a flush.
        let mut appended = Vec::with_capacity(r.partitions.len());
        for p in r.partitions {
            let (topic, partition) = (p.topic.clone(), p.partition);
            let state = self
                .memo_partition(&mut topics, &p.topic, p.partition)
                .await;
            let acks = match state {
                Ok(state) => self.append_partition(p, state, now, &mut producers).await,
                Err(e) => Err(e),
            };
            appended.push((topic, partition, acks));
        }
        Ok(PendingProduce {
            shared: self.shared.clone(),
            partitions: appended,
        })
    }
}

impl PendingProduce {
    /// The second half: waits for every partition's commit and answers for each.
    pub(crate) async fn answer(self) -> pb::ProduceResponse {
        let mut results = Vec::with_capacity(self.partitions.len());
        for (topic, partition, acks) in self.partitions {
            let outcome = match acks {
                Ok((acks, records, bytes)) => {
                    let all = all_of(acks).await;
                    if all.is_ok() {
                        let stats = &self.shared.stats;
                        stats.produced_records.fetch_add(records, Ordering::Relaxed);
                        stats.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
                    }
                    all
                }
                Err(e) => Err(e),
            };
            results.push(match outcome {
                Ok(all) => pb::PartitionProduceResult {
                    topic,
                    partition,
                    error: ok(),
                    base_offset: all.first().map_or(0, |a| a.base_offset),
                    append_time_ms: all.iter().map(|a| a.append_time_ms).max().unwrap_or(0),
                    log_start_offset: all.iter().map(|a| a.log_start_offset).max().unwrap_or(0),
                    base_offsets: all.iter().map(|a| a.base_offset).collect(),
                },
                Err(e) => pb::PartitionProduceResult {
                    topic,
                    partition,
                    error: Some(e.to_pb()),
                    ..Default::default()
                },
            });
        }
        pb::ProduceResponse {
            error: ok(),
            results,
        }
    }
}

impl Service {
    /// Whether a producer id and epoch were issued. Each (id, epoch) of a request is judged
    /// once, and a request may carry at most [`limits::MAX_PRODUCERS_PER_REQUEST`] of them,
    /// so forged stamps cost the store a bounded number of queries.
    pub(super) async fn check_producer(
        &self,
        judged: &mut Vec<(i64, i16, Issued)>,
        id: i64,
        epoch: i16,
    ) -> Result<()> {
        if let Some(&(_, _, verdict)) = judged.iter().find(|(i, e, _)| (*i, *e) == (id, epoch)) {
            return verdict.into_result(id, epoch);
        }
        if judged.len() >= limits::MAX_PRODUCERS_PER_REQUEST {
            return Err(AgentError::InvalidRequest(format!(
                "batches stamped with more than {} producer ids and epochs in one request",
                limits::MAX_PRODUCERS_PER_REQUEST
            )));
        }
        let verdict = self
            .shared
            .issued_producers
            .check(&self.shared.meta, id, epoch)
            .await?;
        judged.push((id, epoch, verdict));
        verdict.into_result(id, epoch)
    }

    /// [`Service::partition`], looking each topic up at most once per request.
    pub(super) async fn memo_partition(
        &self,
        topics: &mut HashMap<String, Option<Arc<TopicState>>>,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<PartitionState>> {
        let known = match topics.get(topic) {
            Some(t) => t.clone(),
            None => {
                validate_topic_name(topic).map_err(AgentError::InvalidTopic)?;
                let found = match self.shared.topic(topic).await {
                    Ok(t) => Some(t),
                    Err(AgentError::UnknownTopic(_)) => None,
                    Err(e) => return Err(e),
                };
                topics.insert(topic.to_string(), found.clone());
                found
            }
        };
        let t = known.ok_or_else(|| AgentError::UnknownTopic(topic.to_string()))?;
        partition_of(&t, partition)
    }

    /// Checks one partition's batches completely and hands them to the writer: all of them,
    /// or, if any fails, none. Also returns their record and byte counts.
    pub(super) async fn append_partition(
        &self,
        p: pb::PartitionBatches,
        state: Arc<PartitionState>,
        now: i64,
        producers: &mut Vec<(i64, i16, Issued)>,
    ) -> Result<(Vec<Ack>, u64, u64)> {
        if p.batches.is_empty() {
            return Err(AgentError::InvalidRequest(format!(
                "no batch for {}-{}",
                p.topic, p.partition
            )));
        }
        if p.batches.len() > limits::MAX_BATCHES_PER_PARTITION {
            return Err(AgentError::InvalidRequest(format!(
                "{} batches for {}-{}; at most {} per partition in one request",
                p.batches.len(),
                p.topic,
                p.partition,
                limits::MAX_BATCHES_PER_PARTITION
            )));
        }
        let config = &self.shared.config;
        let max = config.max_record_bytes;
        let mut checked = Vec::with_capacity(p.batches.len());
        let (mut records, mut bytes) = (0u64, 0u64);
        for b in p.batches {
            if b.len() > max {
                return Err(AgentError::RecordTooLarge { size: b.len(), max });
            }
            let verified = batch::verify(&b, config.max_decompressed_bytes())?;
            check_timestamps(config, &verified, now)?;
            let header = verified.header;
            if header.producer_id >= 0 {
                self.check_producer(producers, header.producer_id, header.producer_epoch)
                    .await?;
            }
            records += header.record_count.max(0) as u64;
            bytes += b.len() as u64;
            checked.push((b, header));
        }
        let Some(epoch) = state.append_epoch() else {
            return Err(AgentError::NotLeader {
                leader_hint: self.leader_hint(&p.topic, p.partition).await,
                topic: p.topic,
                partition: p.partition,
            });
        };
        let acks = self.shared.writer.append(&state, epoch, checked)?;
        Ok((acks, records, bytes))
    }
}

/// A produce request's shape: some partitions, not too many, each named once.
pub(super) fn check_produce_shape(r: &pb::ProduceRequest) -> Result<()> {
    if r.partitions.is_empty() {
        return Err(AgentError::InvalidRequest(
            "produce request names no partition".into(),
        ));
    }
    if r.partitions.len() > limits::MAX_PRODUCE_PARTITIONS {
        return Err(AgentError::InvalidRequest(format!(
            "produce request names {} partitions; at most {}",
            r.partitions.len(),
            limits::MAX_PRODUCE_PARTITIONS
        )));
    }
    let mut seen = HashSet::with_capacity(r.partitions.len());
    for p in &r.partitions {
        if !seen.insert((p.topic.as_str(), p.partition)) {
            return Err(AgentError::InvalidRequest(format!(
                "produce request names {}-{} twice; put all its batches in one entry",
                p.topic, p.partition
            )));
        }
    }
    Ok(())
}

/// Kafka's timestamp bounds: a batch's records must lie within the configured distance of
/// the agent's clock, so retention neither deletes them at once nor is held back by them.
pub(super) fn check_timestamps(config: &AgentConfig, v: &batch::Verified, now: i64) -> Result<()> {
    let before = config.timestamp_before_max_ms;
    if before >= 0 && v.min_timestamp < now.saturating_sub(before) {
        return Err(AgentError::InvalidTimestamp {
            timestamp: v.min_timestamp,
            distance_ms: now.saturating_sub(v.min_timestamp),
            side: "before",
            limit_ms: before,
            setting: "timestamp_before_max_ms",
        });
    }
    let after = config.timestamp_after_max_ms;
    let max = v.header.max_timestamp;
    if after >= 0 && max > now.saturating_add(after) {
        return Err(AgentError::InvalidTimestamp {
            timestamp: max,
            distance_ms: max.saturating_sub(now),
            side: "after",
            limit_ms: after,
            setting: "timestamp_after_max_ms",
        });
    }
    Ok(())
}

impl Service {
    pub(crate) async fn init_producer_id_inner(
        &self,
        r: pb::InitProducerIdRequest,
    ) -> Result<pb::InitProducerIdResponse> {
        let current = match r.producer_id {
            -1 => None,
            id if id >= 0 => {
                let epoch = i16::try_from(r.producer_epoch).map_err(|_| {
                    AgentError::InvalidRequest(format!(
                        "producer epoch {} is out of range",
                        r.producer_epoch
                    ))
                })?;
                Some((id, epoch))
            }
            id => {
                return Err(AgentError::InvalidRequest(format!(
                    "producer id {id}: -1 asks for a new one, otherwise it must be >= 0"
                )));
            }
        };
        let (producer_id, epoch) = self.shared.meta.init_producer_id(current).await?;
        Ok(pb::InitProducerIdResponse {
            error: ok(),
            producer_id,
            producer_epoch: i32::from(epoch),
        })
    }
}

pub(super) type Ack = tokio::sync::oneshot::Receiver<Result<Appended>>;

/// Waits for every batch appended together and answers for them all: the first error, or
/// where each was stored.
pub(super) async fn all_of(acks: Vec<Ack>) -> Result<Vec<Appended>> {
    let mut all = Vec::with_capacity(acks.len());
    let mut error = None;
    for ack in acks {
        match ack.await.map_err(|_| AgentError::ShuttingDown) {
            Ok(Ok(a)) => all.push(a),
            Ok(Err(e)) | Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(all),
    }
}
