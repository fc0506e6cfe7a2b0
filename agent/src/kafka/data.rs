//! Kafka's data path: Produce, InitProducerId, Fetch and ListOffsets, through the same
//! checks, writer and reader as the gRPC service.
//!
//! A Kafka batch is stored as it came (its base offset set to 0); a fetch serves stored
//! batches in Kafka's layout with their offsets stamped into a copy, so records produced by
//! either protocol are read by both.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use streamhouse_proto::batch::{self, Batch, kafka};
use streamhouse_proto::pb;

use super::apis::{error_code, kafka_code};
use crate::Shared;
use crate::error::AgentError;
use crate::partitions::PartitionState;
use crate::service::Service;

/// Longest a Kafka fetch waits for data, whatever it asks.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// Most bytes one Kafka fetch answers with, whatever it asks (Kafka's `fetch.max.bytes`).
const MAX_FETCH_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of stored batches a ListOffsets by timestamp reads to find the record, at most.
const TIME_SEARCH_BYTES: usize = 8 * 1024 * 1024;
/// Most partitions one Fetch or ListOffsets may name (a topic has at most 10,000); the rest
/// are answered `INVALID_REQUEST` without work.
const MAX_PARTITIONS_PER_REQUEST: usize = 10_000;

/// A request's partitions, led here, by (topic, number): each topic looked up once per
/// request, so a name the store does not know costs one query however many partitions name it.
struct Led<'a> {
    shared: &'a Arc<Shared>,
    topics:
        std::collections::HashMap<String, Result<Arc<crate::partitions::TopicState>, AgentError>>,
    /// Partitions named so far.
    named: usize,
}

impl<'a> Led<'a> {
    fn new(shared: &'a Arc<Shared>) -> Self {
        Led {
            shared,
            topics: std::collections::HashMap::new(),
            named: 0,
        }
    }

    /// Partition `partition` of `topic` if this agent leads it: Kafka clients read from
    /// leaders, and one led elsewhere sends the client to its metadata.
    async fn partition(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<PartitionState>, AgentError> {
        self.named += 1;
        if self.named > MAX_PARTITIONS_PER_REQUEST {
            return Err(AgentError::InvalidRequest(format!(
                "more than {MAX_PARTITIONS_PER_REQUEST} partitions in one request"
            )));
        }
        let n = u32::try_from(partition)
            .map_err(|_| AgentError::InvalidRequest(format!("partition {partition}")))?;
        if !self.topics.contains_key(topic) {
            let found = match streamhouse_proto::validate_topic_name(topic) {
                Err(e) => Err(AgentError::InvalidTopic(e)),
                Ok(()) => self.shared.topic(topic).await,
            };
            self.topics.insert(topic.to_string(), found);
        }
        let t = match &self.topics[topic] {
            Ok(t) => t,
            Err(e) => return Err(again(e)),
        };
        let state =
            t.partitions
                .get(n as usize)
                .cloned()
                .ok_or_else(|| AgentError::UnknownPartition {
                    topic: topic.to_string(),
                    partition: n,
                    count: t.partitions.len() as u32,
                })?;
        if state.lease_epoch().is_none() {
            return Err(AgentError::NotLeader {
                topic: topic.to_string(),
                partition: n,
                leader_hint: None,
            });
        }
        Ok(state)
    }
}

/// A topic lookup's failure, for each partition that names the topic.
fn again(e: &AgentError) -> AgentError {
    match e {
        AgentError::UnknownTopic(t) => AgentError::UnknownTopic(t.clone()),
        AgentError::InvalidTopic(why) => AgentError::InvalidTopic(why.clone()),
        other => AgentError::MetadataUnavailable(other.to_string()),
    }
}

/// Produce versions 0-2, which the codec does not know: they carry message formats 0 and 1
/// (magic 0 and 1), which are not stored here, so every partition is refused with Kafka's
/// `UNSUPPORTED_FOR_MESSAGE_FORMAT`. Reads the request body (after the header) and returns the
/// answer's body, or `None` for `acks=0`. Every length is checked against what is left.
pub(super) fn old_produce(mut body: Bytes, version: i16) -> Result<Option<BytesMut>, String> {
    use bytes::{Buf, BufMut};
    fn need(b: &Bytes, n: usize, what: &str) -> Result<(), String> {
        if b.remaining() < n {
            return Err(format!("{what} runs past the request"));
        }
        Ok(())
    }
    fn count(b: &mut Bytes, what: &str) -> Result<usize, String> {
        need(b, 4, what)?;
        let n = b.get_i32();
        // Each entry takes at least 4 bytes: a count beyond that cannot be true.
        if n < 0 || n as usize > b.remaining() / 4 {
            return Err(format!("{what} count {n} for {} bytes", b.remaining()));
        }
        Ok(n as usize)
    }
    need(&body, 6, "acks and timeout")?;
    let acks = body.get_i16();
    body.advance(4);
    let code = ResponseError::UnsupportedForMessageFormat.code();
    let mut out = BytesMut::new();
    let topics = count(&mut body, "topics")?;
    out.put_i32(topics as i32);
    for _ in 0..topics {
        need(&body, 2, "topic name")?;
        let len = body.get_i16();
        let len = usize::try_from(len).map_err(|_| format!("topic name length {len}"))?;
        need(&body, len, "topic name")?;
        out.put_i16(len as i16);
        out.extend_from_slice(&body[..len]);
        body.advance(len);
        let partitions = count(&mut body, "partitions")?;
        out.put_i32(partitions as i32);
        for _ in 0..partitions {
            need(&body, 8, "partition")?;
            let index = body.get_i32();
            let size = body.get_i32();
            let size = usize::try_from(size).unwrap_or(0);
            need(&body, size, "message set")?;
            body.advance(size);
            out.put_i32(index);
            out.put_i16(code);
            out.put_i64(-1); // base offset
            if version >= 2 {
                out.put_i64(-1); // log append time
            }
        }
    }
    if body.has_remaining() {
        return Err(format!(
            "{} bytes left over after the request",
            body.remaining()
        ));
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
    Ok((acks != 0).then_some(out))
}

/// A produce's answer, once its batches are committed; `None` for `acks=0`, which Kafka
/// answers with nothing at all.
pub(super) type ProduceAnswer =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<ProduceResponse>> + Send>>;

/// `Produce`: each partition's one batch (Kafka's rule since version 3), checked as
/// completely as the gRPC client's and appended now, in the connection's order; the answer
/// comes once they are durable.
pub(super) async fn produce(shared: &Arc<Shared>, r: ProduceRequest) -> ProduceAnswer {
    let acks = r.acks;
    let mut out = ProduceResponse::default();
    // Transactional producers are refused here as at InitProducerId; acks other than Kafka's
    // three values as Kafka refuses them. Either way nothing is stored.
    let refusal = if r.transactional_id.is_some() {
        Some((ResponseError::InvalidRequest.code(), NO_TXN.to_string()))
    } else if !matches!(acks, -1..=1) {
        Some((
            ResponseError::InvalidRequiredAcks.code(),
            format!("acks {acks}: give -1 (all), 1 or 0"),
        ))
    } else {
        None
    };
    if let Some((code, why)) = refusal {
        for t in r.topic_data {
            let parts = t
                .partition_data
                .iter()
                .map(|p| refused(p.index, code, &why))
                .collect();
            out.responses.push(topic_response(t.name, parts));
        }
        return Box::pin(std::future::ready((acks != 0).then_some(out)));
    }
    // Shape first: what cannot be a partition's one batch is answered without a request.
    let mut request = pb::ProduceRequest::default();
    // (topic entry, partition, its place in the gRPC request or Kafka's refusal of it)
    let mut slots: Vec<(usize, i32, Taken)> = Vec::new();
    for (t, topic) in r.topic_data.iter().enumerate() {
        let name = topic.name.0.as_str();
        for p in &topic.partition_data {
            let taken = one_batch(p.records.clone(), p.index).map(|b| {
                request.partitions.push(pb::PartitionBatches {
                    topic: name.to_string(),
                    partition: p.index as u32,
                    batches: vec![b],
                });
                request.partitions.len() - 1
            });
            slots.push((t, p.index, taken));
        }
    }
    let service = Service::new(shared.clone());
    let appended = if request.partitions.is_empty() {
        None
    } else {
        Some(service.produce_append(request).await)
    };
    Box::pin(async move {
        let results = match appended {
            None => Ok(Vec::new()),
            Some(Ok(pending)) => Ok(pending.answer().await.results),
            Some(Err(e)) => Err(e),
        };
        let out = answer_produce(r, slots, results);
        (acks != 0).then_some(out)
    })
}

/// The Kafka answer to a produce from its partitions' outcomes.
fn answer_produce(
    r: ProduceRequest,
    slots: Vec<(usize, i32, Taken)>,
    results: Result<Vec<pb::PartitionProduceResult>, AgentError>,
) -> ProduceResponse {
    let mut out = ProduceResponse::default();
    let mut per_topic: Vec<Vec<PartitionProduceResponse>> = vec![Vec::new(); r.topic_data.len()];
    for (t, index, taken) in slots {
        let answer = match (taken, &results) {
            (Err((code, msg)), _) => refused(index, code, &msg),
            (Ok(_), Err(e)) => refused(index, error_code(e), &e.to_string()),
            (Ok(i), Ok(results)) => match results.get(i) {
                Some(res) => match &res.error {
                    Some(e) if e.code != pb::ErrorCode::Ok as i32 => {
                        refused(index, kafka_code(e.code()), &e.message)
                    }
                    _ => PartitionProduceResponse::default()
                        .with_index(index)
                        .with_base_offset(res.base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(res.log_start_offset),
                },
                None => refused(index, ResponseError::UnknownServerError.code(), "no result"),
            },
        };
        per_topic[t].push(answer);
    }
    for (topic, parts) in r.topic_data.into_iter().zip(per_topic) {
        out.responses.push(topic_response(topic.name, parts));
    }
    out
}

/// A partition's batch in the request built, or the (code, message) it was refused with.
type Taken = Result<usize, (i16, String)>;

const NO_TXN: &str = "transactions are not supported";

fn refused(index: i32, code: i16, message: &str) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
}

fn topic_response(name: TopicName, parts: Vec<PartitionProduceResponse>) -> TopicProduceResponse {
    TopicProduceResponse::default()
        .with_name(name)
        .with_partition_responses(parts)
}

/// A partition's records as one batch to store, or Kafka's error for them.
fn one_batch(records: Option<Bytes>, index: i32) -> Result<Bytes, (i16, String)> {
    let invalid = |msg: String| (ResponseError::InvalidRecord.code(), msg);
    if index < 0 {
        return Err((
            ResponseError::UnknownTopicOrPartition.code(),
            format!("partition {index}"),
        ));
    }
    let records = records.ok_or_else(|| invalid("no records".into()))?;
    let records = kafka::as_stored(records);
    let h = batch::BatchHeader::peek(&records).map_err(|e| invalid(e.to_string()))?;
    if h.format != batch::Format::Kafka {
        return Err(invalid("records must be a RecordBatch of magic 2".into()));
    }
    if h.total_len != records.len() {
        return Err(invalid(format!(
            "{} bytes of records hold a batch of {}: a partition takes exactly one batch",
            records.len(),
            h.total_len
        )));
    }
    Ok(records)
}

/// `InitProducerId` for idempotent producers (a transactional id is refused: no
/// transactions).
pub(super) async fn init_producer_id(
    shared: &Arc<Shared>,
    r: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let out = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if r.transactional_id.is_some() {
        return out.with_error_code(ResponseError::InvalidRequest.code());
    }
    let issued = Service::new(shared.clone())
        .init_producer_id_inner(pb::InitProducerIdRequest {
            producer_id: r.producer_id.0,
            producer_epoch: i32::from(r.producer_epoch),
        })
        .await;
    match issued {
        Ok(i) => out
            .with_producer_id(ProducerId(i.producer_id))
            .with_producer_epoch(i.producer_epoch as i16),
        Err(e) => out.with_error_code(error_code(&e)),
    }
}

/// One partition a fetch asks for, and what it found.
struct Wanted {
    topic: usize,
    index: i32,
    offset: i64,
    max_bytes: usize,
    state: Result<Arc<PartitionState>, AgentError>,
}

/// `Fetch`: every asked partition this agent leads is read from its offset; when less than
/// `min_bytes` is there, the fetch waits (up to `max_wait_ms`) for any of them to get more.
pub(super) async fn fetch(shared: &Arc<Shared>, r: FetchRequest) -> FetchResponse {
    let mut led = Led::new(shared);
    let max_wait = Duration::from_millis(r.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let budget = match r.max_bytes {
        n if n > 0 => (n as usize).min(MAX_FETCH_BYTES),
        _ => MAX_FETCH_BYTES,
    };
    let mut wanted = Vec::new();
    for (t, topic) in r.topics.iter().enumerate() {
        for p in &topic.partitions {
            let state = led.partition(topic.topic.0.as_str(), p.partition).await;
            wanted.push(Wanted {
                topic: t,
                index: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(1) as usize,
                state,
            });
        }
    }
    let min_bytes = r.min_bytes.max(0) as usize;
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut answer = read_all(shared, &wanted, budget).await;
    // Short of min_bytes: wait for any partition to grow past what was just read (each at its
    // own end), read again, and so on until there is enough or max_wait has passed.
    while answer.1 < min_bytes && tokio::time::Instant::now() < deadline {
        let left = deadline - tokio::time::Instant::now();
        let mut waits: futures::stream::FuturesUnordered<_> = wanted
            .iter()
            .zip(&answer.0)
            .filter_map(|(w, seen)| {
                let s = w.state.as_ref().ok()?;
                // Past what this read reached: its high watermark (its offset if it failed).
                (seen.error_code == 0).then(|| (s, w.offset.max(seen.high_watermark)))
            })
            .map(|(s, end)| shared.reader.fetch(s, end, 1, left))
            .collect();
        if waits.is_empty() {
            break;
        }
        let grew = tokio::time::timeout(left, async {
            while let Some(got) = waits.next().await {
                if got.is_ok_and(|f| !f.batches.is_empty()) {
                    return true;
                }
            }
            false
        })
        .await;
        drop(waits);
        if grew != Ok(true) {
            // max_wait passed, or no partition can grow (each failed): answer what there is.
            break;
        }
        answer = read_all(shared, &wanted, budget).await;
    }
    let mut topics: Vec<FetchableTopicResponse> = r
        .topics
        .iter()
        .map(|t| FetchableTopicResponse::default().with_topic(t.topic.clone()))
        .collect();
    for (w, data) in wanted.iter().zip(answer.0) {
        topics[w.topic].partitions.push(data);
    }
    FetchResponse::default().with_responses(topics)
}

/// Reads every wanted partition once, without waiting, within `budget` bytes in all (the
/// first partition with data gets at least one batch, as in Kafka). Returns each partition's
/// answer and the bytes of records in all of them.
async fn read_all(
    shared: &Arc<Shared>,
    wanted: &[Wanted],
    budget: usize,
) -> (Vec<PartitionData>, usize) {
    let mut left = budget;
    let mut total = 0;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let base = PartitionData::default()
            .with_partition_index(w.index)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1);
        let state = match &w.state {
            Ok(s) => s,
            Err(e) => {
                out.push(base.with_error_code(error_code(e)));
                continue;
            }
        };
        let epoch = state
            .lease_epoch()
            .map_or(-1, |e| e.clamp(0, i64::from(i32::MAX)) as i32);
        if left == 0 && total > 0 {
            // The budget is spent: this partition's bounds only, as this agent knows them.
            let hw = state.high_watermark();
            out.push(
                base.with_high_watermark(hw)
                    .with_last_stable_offset(hw)
                    .with_log_start_offset(state.log_start())
                    .with_records(Some(Bytes::new())),
            );
            continue;
        }
        let limit = w.max_bytes.min(left).max(1);
        let fetched = shared
            .reader
            .fetch(state, w.offset, limit, Duration::ZERO)
            .await;
        let f = match fetched {
            Ok(f) => f,
            Err(e) => {
                let data = base.with_error_code(error_code(&e));
                out.push(match e {
                    AgentError::OffsetOutOfRange {
                        log_start,
                        high_watermark,
                        ..
                    } => data
                        .with_high_watermark(high_watermark)
                        .with_last_stable_offset(high_watermark)
                        .with_log_start_offset(log_start),
                    _ => data,
                });
                continue;
            }
        };
        let mut records = BytesMut::new();
        let mut damaged = None;
        for (base_offset, bytes) in &f.batches {
            if let Err(e) = kafka::append_for_kafka(&mut records, bytes, *base_offset, epoch) {
                damaged = Some(e);
                break;
            }
        }
        let data = base
            .with_high_watermark(f.high_watermark)
            .with_last_stable_offset(f.high_watermark)
            .with_log_start_offset(f.log_start_offset);
        if let Some(e) = damaged.filter(|_| records.is_empty()) {
            tracing::warn!(error = %e, "Kafka fetch: a stored batch does not decode");
            out.push(data.with_error_code(ResponseError::CorruptMessage.code()));
            continue;
        }
        let n = records.len();
        let stats = &shared.stats;
        stats
            .fetched_bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let count: i64 = f
            .batches
            .iter()
            .filter_map(|(_, b)| batch::BatchHeader::peek(b).ok())
            .map(|h| i64::from(h.record_count))
            .sum();
        stats
            .fetched_records
            .fetch_add(count.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        left = left.saturating_sub(n);
        total += n;
        out.push(data.with_records(Some(records.freeze())));
    }
    (out, total)
}

/// Kafka's special timestamps in ListOffsets.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// `ListOffsets`: a partition's earliest or latest offset, or the first offset whose record
/// is stamped at or after a time.
pub(super) async fn list_offsets(
    shared: &Arc<Shared>,
    r: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut led = Led::new(shared);
    let mut out = ListOffsetsResponse::default();
    for t in r.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let found = match led.partition(t.name.0.as_str(), p.partition_index).await {
                Ok(state) => offset_for(shared, &state, p.timestamp).await,
                Err(e) => Err(e),
            };
            parts.push(match found {
                // The leader epoch is in the answer from version 4 on.
                Ok((timestamp, offset, epoch)) => answer
                    .with_timestamp(timestamp)
                    .with_offset(offset)
                    .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                Err(e) => answer.with_error_code(error_code(&e)),
            });
        }
        out.topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    out
}

/// (timestamp, offset, leader epoch) for one partition: -1 and -1 when no record is that
/// late, as in Kafka.
async fn offset_for(
    shared: &Arc<Shared>,
    state: &Arc<PartitionState>,
    timestamp: i64,
) -> Result<(i64, i64, i32), AgentError> {
    let epoch = state
        .lease_epoch()
        .map_or(-1, |e| e.clamp(0, i64::from(i32::MAX)) as i32);
    let (topic, n) = (&*state.topic, state.partition);
    match timestamp {
        LATEST => Ok((-1, state.high_watermark(), epoch)),
        EARLIEST => Ok((-1, state.log_start(), epoch)),
        ts if ts >= 0 => {
            let Some(chunk) = shared.meta.first_chunk_at(topic, n, ts).await? else {
                return Ok((-1, -1, epoch));
            };
            let from = chunk.max(state.log_start());
            let fetched = shared
                .reader
                .fetch(state, from, TIME_SEARCH_BYTES, Duration::ZERO)
                .await?;
            for (base, bytes) in fetched.batches {
                let records = Batch::parse(bytes)?.records(base)?;
                if let Some(r) = records
                    .iter()
                    .find(|r| r.offset >= from && r.timestamp >= ts)
                {
                    return Ok((r.timestamp, r.offset, epoch));
                }
            }
            Ok((-1, -1, epoch))
        }
        other => Err(AgentError::InvalidRequest(format!(
            "ListOffsets timestamp {other}: give -1 (latest), -2 (earliest) or a time"
        ))),
    }
}
