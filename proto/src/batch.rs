//! The record-batch format: one encoding on the wire and in storage.
//!
//! The producer builds one batch per partition; the agent checks it completely ([`verify`]:
//! header, CRC and every record) and stores the bytes exactly as they came; the consumer
//! decodes them. Nothing in a batch depends on the
//! offsets the agent assigns: a batch's records carry offset deltas `0..record_count`, and the
//! agent tells readers the base offset of each batch it returns (a partition's log is dense, so
//! it derives them from the index and the record counts). That is what lets the CRC cover every
//! byte after itself and the agent never rewrite a byte.
//!
//! ```text
//! offset  size  field
//!  0      4     batch_length   u32, bytes after this field
//!  4      1     magic          u8 = 2
//!  5      4     crc            u32, CRC-32C (Castagnoli) of every byte after this field
//!  9      2     attributes     u16, bits 0-2: compression (0 none, 1 lz4)
//! 11      4     record_count   i32, > 0
//! 15      8     base_timestamp i64, ms since the epoch, of the first record
//! 23      8     max_timestamp  i64
//! 31      8     producer_id    i64, -1 if none
//! 39      2     producer_epoch i16
//! 41      4     base_sequence  i32, -1 if none
//! 45      ..    payload        the records; with lz4: u32 uncompressed length, then one block
//! ```
//!
//! Each record, as in Kafka's record format v2 (varints are zig-zag):
//! `length varint | attributes i8 | timestamp_delta varlong | offset_delta varint |
//! key_len varint (-1 = null) | key | value_len varint (-1 = null) | value |
//! header_count varint | (header_key_len varint | key utf-8 | header_value_len varint | value)*`.
//!
//! Every function here is pure: no I/O, no clock. Decoding never panics on any input.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// Current batch format version.
pub const MAGIC: u8 = 2;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 45;
/// Bytes of `batch_length` itself; `batch_length` counts the bytes after it.
pub const LENGTH_FIELD_LEN: usize = 4;
/// Upper bound on a batch's decompressed payload, so a hostile length cannot make a decoder
/// allocate without limit.
pub const MAX_UNCOMPRESSED_PAYLOAD: usize = 64 * 1024 * 1024;

const CRC_START: usize = 9;
const COMPRESSION_MASK: u16 = 0b111;

/// How a batch's payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Records stored as encoded.
    None,
    /// One LZ4 block (`lz4_flex`), prefixed with the uncompressed length.
    #[default]
    Lz4,
}

impl Compression {
    fn to_bits(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }

    fn from_bits(bits: u16) -> Result<Self, CodecError> {
        match bits & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            other => Err(CodecError::UnsupportedCompression(other)),
        }
    }
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("batch truncated: need {needed} bytes, have {available}")]
    /// Fewer bytes than the header or the declared length need.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    #[error("batch length field says {declared} bytes but {actual} follow it")]
    /// The length field disagrees with the bytes that follow it.
    LengthMismatch {
        /// What the length field says.
        declared: usize,
        /// What follows it.
        actual: usize,
    },
    #[error("unsupported batch format version {0} (expected {MAGIC})")]
    /// A format version this codec does not read.
    BadMagic(u8),
    #[error("batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    /// The CRC over the batch does not match its bytes.
    CrcMismatch {
        /// The CRC in the header.
        expected: u32,
        /// The CRC of the bytes.
        actual: u32,
    },
    #[error("unsupported compression codec {0}")]
    /// A compression codec this codec does not know.
    UnsupportedCompression(u16),
    #[error("batch record count {0} is not positive")]
    /// A batch must hold at least one record.
    BadRecordCount(i32),
    #[error("batch payload does not decompress: {0}")]
    /// The compressed payload is not valid for its codec.
    Decompress(String),
    #[error("decompressed payload of {0} bytes exceeds the limit")]
    /// The payload decompresses to more than the caller's limit.
    PayloadTooLarge(usize),
    #[error("malformed record {index}: {reason}")]
    /// A record's fields run past the payload or hold invalid values.
    BadRecord {
        /// The record's position in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    #[error(
        "batch max_timestamp {max_timestamp} is not its records' latest timestamp {records_max}"
    )]
    /// The header's `max_timestamp` is not the records' latest timestamp.
    BadTimestamps {
        /// The header's `max_timestamp`.
        max_timestamp: i64,
        /// The latest timestamp among the records.
        records_max: i64,
    },
}

/// A record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// Its value; `None` is a null value.
    pub value: Option<Bytes>,
}

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Total encoded size of the batch, including the length field.
    pub total_len: usize,
    /// CRC-32C over everything after the CRC field.
    pub crc: u32,
    /// How the records are compressed.
    pub compression: Compression,
    /// Records in the batch, at least one.
    pub record_count: i32,
    /// The first record's timestamp; records store theirs as deltas from it.
    pub base_timestamp: i64,
    /// The latest record timestamp in the batch.
    pub max_timestamp: i64,
    /// The idempotent producer's id, or -1.
    pub producer_id: i64,
    /// That producer's epoch, or -1.
    pub producer_epoch: i16,
    /// The first record's sequence number, or -1.
    pub base_sequence: i32,
}

impl BatchHeader {
    /// Reads the header at the start of `buf` without checking the CRC: enough to walk a run
    /// of concatenated batches that were checked when they were stored.
    pub fn peek(buf: &[u8]) -> Result<BatchHeader, CodecError> {
        if buf.len() < HEADER_LEN {
            return Err(CodecError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let declared = u32::from_be_bytes(arr(buf, 0)) as usize;
        let total_len = declared.saturating_add(LENGTH_FIELD_LEN);
        if total_len < HEADER_LEN {
            return Err(CodecError::LengthMismatch {
                declared,
                actual: buf.len() - LENGTH_FIELD_LEN,
            });
        }
        if buf[4] != MAGIC {
            return Err(CodecError::BadMagic(buf[4]));
        }
        let attributes = u16::from_be_bytes(arr(buf, 9));
        let record_count = i32::from_be_bytes(arr(buf, 11));
        if record_count <= 0 {
            return Err(CodecError::BadRecordCount(record_count));
        }
        Ok(BatchHeader {
            total_len,
            crc: u32::from_be_bytes(arr(buf, 5)),
            compression: Compression::from_bits(attributes)?,
            record_count,
            base_timestamp: i64::from_be_bytes(arr(buf, 15)),
            max_timestamp: i64::from_be_bytes(arr(buf, 23)),
            producer_id: i64::from_be_bytes(arr(buf, 31)),
            producer_epoch: i16::from_be_bytes(arr(buf, 39)),
            base_sequence: i32::from_be_bytes(arr(buf, 41)),
        })
    }
}

fn arr<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

/// Checks that `buf` is exactly one batch frame (length, version, header fields) with a
/// correct CRC, and returns its header. This does not look at the records: compaction uses it
/// on bytes that were [`verify`]-ed when they were stored. The agent's edge check is
/// [`verify`].
pub fn validate(buf: &[u8]) -> Result<BatchHeader, CodecError> {
    let header = BatchHeader::peek(buf)?;
    if header.total_len != buf.len() {
        return Err(CodecError::LengthMismatch {
            declared: header.total_len - LENGTH_FIELD_LEN,
            actual: buf.len() - LENGTH_FIELD_LEN,
        });
    }
    let actual = crc32c::crc32c(&buf[CRC_START..]);
    if actual != header.crc {
        return Err(CodecError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    Ok(header)
}

/// What a complete check of a batch found, beyond its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The batch's header.
    pub header: BatchHeader,
    /// The earliest record timestamp (records need not be in timestamp order; the latest is
    /// the header's `max_timestamp`, which the check confirms).
    pub min_timestamp: i64,
}

/// The complete check the agent makes before it appends a batch: the frame and CRC as in
/// [`validate`], then every record walked as [`Batch::records`] will decode it. The
/// records must number exactly `record_count`, with offset deltas `0..count`, every length
/// within its record and the record within the payload, header keys UTF-8, no byte after
/// the last record, and timestamps whose maximum is the header's `max_timestamp`.
///
/// A compressed payload may declare at most `max_payload` uncompressed bytes; it is
/// decompressed into a reused per-thread buffer, so the check allocates nothing in steady
/// state. A batch this accepts always decodes into exactly `record_count` records.
pub fn verify(buf: &[u8], max_payload: usize) -> Result<Verified, CodecError> {
    let header = validate(buf)?;
    let raw = &buf[HEADER_LEN..];
    let walked = match header.compression {
        Compression::None => walk_all(raw, &header),
        Compression::Lz4 => {
            let (len, block) = lz4_parts(raw, buf.len())?;
            if len > max_payload.min(MAX_UNCOMPRESSED_PAYLOAD) {
                return Err(CodecError::PayloadTooLarge(len));
            }
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                if scratch.len() < len {
                    scratch.resize(len, 0);
                }
                let out = &mut scratch[..len];
                decompress_exact(block, out)?;
                walk_all(out, &header)
            })
        }
    }?;
    Ok(Verified {
        header,
        min_timestamp: walked,
    })
}

thread_local! {
    /// Where [`verify`] decompresses payloads; it grows to the largest payload seen.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Splits an LZ4 payload into its declared uncompressed length and its block.
fn lz4_parts(raw: &[u8], batch_len: usize) -> Result<(usize, &[u8]), CodecError> {
    if raw.len() < 4 {
        return Err(CodecError::Truncated {
            needed: HEADER_LEN + 4,
            available: batch_len,
        });
    }
    Ok((u32::from_be_bytes(arr(raw, 0)) as usize, &raw[4..]))
}

fn decompress_exact(block: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let len = out.len();
    let written = lz4_flex::block::decompress_into(block, out)
        .map_err(|e| CodecError::Decompress(e.to_string()))?;
    if written != len {
        return Err(CodecError::Decompress(format!(
            "declared {len} bytes, block holds {written}"
        )));
    }
    Ok(())
}

/// Walks every record of a payload; returns the earliest timestamp.
fn walk_all(payload: &[u8], header: &BatchHeader) -> Result<i64, CodecError> {
    let mut cur = Cursor {
        buf: payload,
        pos: 0,
    };
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for index in 0..header.record_count as usize {
        let r = next_record(&mut cur, index, header.base_timestamp)?;
        min = min.min(r.timestamp);
        max = max.max(r.timestamp);
    }
    if cur.pos != payload.len() {
        return Err(CodecError::BadRecord {
            index: header.record_count as usize,
            reason: "bytes after the last record (record_count is smaller than the records)",
        });
    }
    if max != header.max_timestamp {
        return Err(CodecError::BadTimestamps {
            max_timestamp: header.max_timestamp,
            records_max: max,
        });
    }
    Ok(min)
}

/// One record as it lies in a payload: positions, not copies.
#[derive(Debug)]
struct RawRecord {
    timestamp: i64,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    header_count: usize,
    /// Where the first header starts.
    headers_at: usize,
}

/// Reads and checks record `index` at the cursor: the single definition of the record
/// format that both [`verify`] and [`Batch::records`] follow.
fn next_record(
    cur: &mut Cursor<'_>,
    index: usize,
    base_timestamp: i64,
) -> Result<RawRecord, CodecError> {
    let bad = |reason| CodecError::BadRecord { index, reason };
    let len = cur.varint().ok_or(bad(
        "length varint is truncated or overflows (record_count is larger than the records?)",
    ))?;
    if len < 0 {
        return Err(bad("negative length"));
    }
    let end = cur
        .pos
        .checked_add(len as usize)
        .filter(|&e| e <= cur.buf.len())
        .ok_or(bad("length past the end of the payload"))?;
    // Fields may not run past the record's own end.
    let mut rec = Cursor {
        buf: &cur.buf[..end],
        pos: cur.pos,
    };
    rec.byte().ok_or(bad("attributes"))?;
    let ts_delta = rec.varlong().ok_or(bad("timestamp delta"))?;
    let timestamp = base_timestamp
        .checked_add(ts_delta)
        .ok_or(bad("timestamp overflows"))?;
    let offset_delta = rec.varint().ok_or(bad("offset delta"))?;
    if offset_delta as i64 != index as i64 {
        return Err(bad("offset delta out of sequence"));
    }
    let key = rec.nullable_range().ok_or(bad("key length"))?;
    let value = rec.nullable_range().ok_or(bad("value length"))?;
    let header_count = rec.varint().ok_or(bad("header count"))?;
    if header_count < 0 {
        return Err(bad("negative header count"));
    }
    let headers_at = rec.pos;
    for _ in 0..header_count {
        let key = rec
            .nullable_range()
            .ok_or(bad("header key length"))?
            .ok_or(bad("null header key"))?;
        std::str::from_utf8(&rec.buf[key]).map_err(|_| bad("header key not UTF-8"))?;
        rec.nullable_range().ok_or(bad("header value length"))?;
    }
    if rec.pos != end {
        return Err(bad("length does not match its fields"));
    }
    cur.pos = end;
    Ok(RawRecord {
        timestamp,
        key,
        value,
        header_count: header_count as usize,
        headers_at,
    })
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset in its partition.
    pub offset: i64,
    /// When the record happened (producer time, ms since the epoch).
    pub timestamp: i64,
    /// The record's key, if any.
    pub key: Option<Bytes>,
    /// The record's value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// The record's headers, in order.
    pub headers: Vec<Header>,
}

/// A batch whose frame and CRC are checked and whose records can be decoded.
#[derive(Debug, Clone)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl Batch {
    /// Validates `bytes` as exactly one batch (length, version, CRC).
    pub fn parse(bytes: Bytes) -> Result<Batch, CodecError> {
        let header = validate(&bytes)?;
        Ok(Batch { header, bytes })
    }

    /// The batch's header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch exactly as encoded.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Decodes every record, numbering them from `base_offset`. Keys and values are slices of
    /// one buffer (the decompressed payload, or the batch itself), not copies.
    pub fn records(&self, base_offset: i64) -> Result<Vec<Record>, CodecError> {
        let payload = self.payload()?;
        decode_records(&payload, &self.header, base_offset)
    }

    fn payload(&self) -> Result<Bytes, CodecError> {
        let raw = self.bytes.slice(HEADER_LEN..);
        match self.header.compression {
            Compression::None => Ok(raw),
            Compression::Lz4 => {
                let (len, block) = lz4_parts(&raw, self.bytes.len())?;
                if len > MAX_UNCOMPRESSED_PAYLOAD {
                    return Err(CodecError::PayloadTooLarge(len));
                }
                let mut out = vec![0u8; len];
                decompress_exact(block, &mut out)?;
                Ok(Bytes::from(out))
            }
        }
    }
}

fn decode_records(
    payload: &Bytes,
    header: &BatchHeader,
    base_offset: i64,
) -> Result<Vec<Record>, CodecError> {
    let count = header.record_count as usize;
    // Bound the allocation by what the payload can hold (every record takes at least 7
    // bytes), whatever the header claims.
    let mut records = Vec::with_capacity(count.min(payload.len() / 7 + 1));
    let mut cur = Cursor {
        buf: payload,
        pos: 0,
    };
    for index in 0..count {
        let raw = next_record(&mut cur, index, header.base_timestamp)?;
        let mut headers = Vec::with_capacity(raw.header_count);
        let mut h = Cursor {
            buf: payload,
            pos: raw.headers_at,
        };
        for _ in 0..raw.header_count {
            // `next_record` checked these fields; a failure here is still an error, not a
            // panic.
            let bad = CodecError::BadRecord {
                index,
                reason: "header",
            };
            let key = h.nullable_range().flatten().ok_or(bad.clone())?;
            let key = std::str::from_utf8(&payload[key]).map_err(|_| bad.clone())?;
            let value = h.nullable_range().ok_or(bad)?;
            headers.push(Header {
                key: key.to_string(),
                value: value.map(|r| payload.slice(r)),
            });
        }
        records.push(Record {
            offset: base_offset + index as i64,
            timestamp: raw.timestamp,
            key: raw.key.map(|r| payload.slice(r)),
            value: raw.value.map(|r| payload.slice(r)),
            headers,
        });
    }
    if cur.pos != payload.len() {
        return Err(CodecError::BadRecord {
            index: count,
            reason: "bytes after the last record (record_count is smaller than the records)",
        });
    }
    Ok(records)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn unsigned(&mut self, max_bytes: usize) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        let raw = self.unsigned(5)?;
        let raw = u32::try_from(raw).ok()?;
        Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Option<i64> {
        let raw = self.unsigned(10)?;
        Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A length-prefixed field: `None` if malformed, `Some(None)` for null (-1).
    fn nullable_range(&mut self) -> Option<Option<Range<usize>>> {
        let len = self.varint()?;
        if len < 0 {
            return (len == -1).then_some(None);
        }
        let end = self.pos.checked_add(len as usize)?;
        if end > self.buf.len() {
            return None;
        }
        let range = self.pos..end;
        self.pos = end;
        Some(Some(range))
    }
}

fn put_unsigned(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint(buf: &mut Vec<u8>, v: i32) {
    put_unsigned(buf, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

fn put_varlong(buf: &mut Vec<u8>, v: i64) {
    put_unsigned(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn varint_len(v: i32) -> usize {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn varlong_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn put_nullable(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i32);
            buf.extend_from_slice(b);
        }
    }
}

/// The encoded size of one record with these fields, as it will sit in an uncompressed
/// payload. Producers use it to check a record against the size limits before enqueueing it.
pub fn record_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header]) -> usize {
    // attributes + worst-case timestamp and offset deltas
    let mut body = 1 + 10 + 5;
    body += key.map_or(1, |k| varint_len(k.len() as i32) + k.len());
    body += value.map_or(1, |v| varint_len(v.len() as i32) + v.len());
    body += varint_len(headers.len() as i32);
    for h in headers {
        body += varint_len(h.key.len() as i32) + h.key.len();
        body += h
            .value
            .as_ref()
            .map_or(1, |v| varint_len(v.len() as i32) + v.len());
    }
    body + varint_len(body as i32)
}

/// The most bytes a batch whose records encode to `payload_len` bytes can take on the wire:
/// [`BatchBuilder::finish`] stores a payload uncompressed when compression would not shrink
/// it, so this holds for every codec. Producers seal batches by it against the agent's limit.
pub fn encoded_len_bound(payload_len: usize) -> usize {
    HEADER_LEN + payload_len
}

/// Identity of an idempotent producer, written into each batch it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    /// The producer id the cluster issued.
    pub producer_id: i64,
    /// The epoch of that id; a newer epoch fences older ones.
    pub producer_epoch: i16,
    /// The sequence number of the batch's first record.
    pub base_sequence: i32,
}

/// How many of an idempotent producer's last batches a partition's leader remembers, and so
/// the most batches of one partition a producer may put in one request: a retried request is
/// then always recognised whole. Enough that a saturated producer is not held back by it.
pub const DEDUPE_WINDOW: usize = 16;

/// The sequence number `records` after `seq`. Sequences wrap to 0 after `i32::MAX`, as
/// Kafka's do.
pub fn next_sequence(seq: i32, records: i32) -> i32 {
    ((i64::from(seq) + i64::from(records)) % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerStamp {
    /// No producer identity: the agent does not de-duplicate such batches.
    pub const NONE: ProducerStamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Accumulates records into one batch. Appending encodes straight into one growing buffer;
/// `finish` compresses it and writes the header.
#[derive(Debug)]
pub struct BatchBuilder {
    compression: Compression,
    payload: Vec<u8>,
    record_count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch to be compressed with `compression`.
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    /// As [`BatchBuilder::new`], with room for `bytes` of records before it grows.
    pub fn with_capacity(compression: Compression, bytes: usize) -> Self {
        BatchBuilder {
            compression,
            payload: Vec::with_capacity(bytes),
            record_count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// The records added so far.
    pub fn record_count(&self) -> usize {
        self.record_count as usize
    }

    /// Whether no record was added yet.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Bytes of encoded (uncompressed) records so far.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// Appends one record. `timestamp` is milliseconds since the epoch.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        if self.record_count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        let nullable_len = |b: Option<&[u8]>| b.map_or(1, |b| varint_len(b.len() as i32) + b.len());
        let mut body_len = 1
            + varlong_len(ts_delta)
            + varint_len(self.record_count)
            + nullable_len(key)
            + nullable_len(value)
            + varint_len(headers.len() as i32);
        for h in headers {
            body_len += nullable_len(Some(h.key.as_bytes())) + nullable_len(h.value.as_deref());
        }
        let buf = &mut self.payload;
        buf.reserve(body_len + 5);
        put_varint(buf, body_len as i32);
        buf.push(0); // attributes
        put_varlong(buf, ts_delta);
        put_varint(buf, self.record_count);
        put_nullable(buf, key);
        put_nullable(buf, value);
        put_varint(buf, headers.len() as i32);
        for h in headers {
            put_nullable(buf, Some(h.key.as_bytes()));
            put_nullable(buf, h.value.as_deref());
        }
        self.record_count += 1;
    }

    /// Seals the batch. Returns `None` if no record was appended. A payload LZ4 would not
    /// shrink (random bytes) is sent uncompressed, so a batch's encoded size is never more
    /// than [`encoded_len_bound`] of its payload.
    pub fn finish(self, stamp: ProducerStamp) -> Option<Bytes> {
        if self.record_count == 0 {
            return None;
        }
        let mut compression = self.compression;
        let mut out = BytesMut::new();
        if compression == Compression::Lz4 {
            let bound = lz4_flex::block::get_maximum_output_size(self.payload.len());
            out = BytesMut::zeroed(HEADER_LEN + 4 + bound);
            out[HEADER_LEN..HEADER_LEN + 4]
                .copy_from_slice(&(self.payload.len() as u32).to_be_bytes());
            match lz4_flex::block::compress_into(&self.payload, &mut out[HEADER_LEN + 4..]) {
                Ok(n) if 4 + n < self.payload.len() => out.truncate(HEADER_LEN + 4 + n),
                // No gain (or, never, no room): store the records as they are.
                _ => compression = Compression::None,
            }
        }
        if compression == Compression::None {
            out.clear();
            out.reserve(HEADER_LEN + self.payload.len());
            out.resize(HEADER_LEN, 0);
            out.extend_from_slice(&self.payload);
        }
        let total = out.len();
        let mut h = &mut out[..HEADER_LEN];
        h.put_u32((total - LENGTH_FIELD_LEN) as u32);
        h.put_u8(MAGIC);
        h.put_u32(0); // CRC, filled below
        h.put_u16(compression.to_bits());
        h.put_i32(self.record_count);
        h.put_i64(self.base_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(stamp.producer_id);
        h.put_i16(stamp.producer_epoch);
        h.put_i32(stamp.base_sequence);
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[5..9].copy_from_slice(&crc.to_be_bytes());
        Some(out.freeze())
    }
}

/// Splits a run of concatenated, previously validated batches into their headers and byte
/// ranges, without checking CRCs. Stops with an error at the first malformed header.
pub fn split(
    run: &[u8],
) -> impl Iterator<Item = Result<(BatchHeader, std::ops::Range<usize>), CodecError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= run.len() {
            return None;
        }
        let item = BatchHeader::peek(&run[pos..]).and_then(|h| {
            let end = pos + h.total_len;
            if end > run.len() {
                return Err(CodecError::Truncated {
                    needed: h.total_len,
                    available: run.len() - pos,
                });
            }
            let range = pos..end;
            pos = end;
            Ok((h, range))
        });
        failed = item.is_err();
        Some(item)
    })
}

/// Hand-made batches for tests: a frame with a correct CRC around any payload, as a buggy or
/// hostile client in any language could send. Not for producing records.
#[doc(hidden)]
pub mod forge {
    use super::{CRC_START, HEADER_LEN, MAGIC};

    /// A batch frame around `payload` (already compressed when `lz4`) with a correct CRC,
    /// so that only the record walk can refuse it.
    pub fn frame(payload: &[u8], lz4: bool, count: i32, base_ts: i64, max_ts: i64) -> Vec<u8> {
        frame_stamped(payload, lz4, count, base_ts, max_ts, (-1, -1, -1))
    }

    /// [`frame`] with a producer stamp (id, epoch, base sequence).
    pub fn frame_stamped(
        payload: &[u8],
        lz4: bool,
        count: i32,
        base_ts: i64,
        max_ts: i64,
        (producer_id, epoch, sequence): (i64, i16, i32),
    ) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN];
        buf.extend_from_slice(payload);
        let total = buf.len();
        buf[0..4].copy_from_slice(&((total - 4) as u32).to_be_bytes());
        buf[4] = MAGIC;
        buf[9..11].copy_from_slice(&u16::from(lz4).to_be_bytes());
        buf[11..15].copy_from_slice(&count.to_be_bytes());
        buf[15..23].copy_from_slice(&base_ts.to_be_bytes());
        buf[23..31].copy_from_slice(&max_ts.to_be_bytes());
        buf[31..39].copy_from_slice(&producer_id.to_be_bytes());
        buf[39..41].copy_from_slice(&epoch.to_be_bytes());
        buf[41..45].copy_from_slice(&sequence.to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[5..9].copy_from_slice(&crc.to_be_bytes());
        buf
    }

    /// An LZ4 payload of `plain` that declares `declared` uncompressed bytes.
    pub fn lz4_payload(plain: &[u8], declared: u32) -> Vec<u8> {
        let mut out = declared.to_be_bytes().to_vec();
        out.extend_from_slice(&lz4_flex::block::compress(plain));
        out
    }

    /// The payload of a well-formed batch: its bytes after the header (uncompressed when
    /// the batch is).
    pub fn payload_of(batch: &[u8]) -> &[u8] {
        &batch[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::forge::{frame, lz4_payload};
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct In {
        ts: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    }

    fn record_strategy() -> impl Strategy<Value = In> {
        (
            -1_000_000i64..i64::MAX / 4,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..512)),
            proptest::collection::vec(
                (
                    "[a-z]{0,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
                ),
                0..3,
            ),
        )
            .prop_map(|(ts, key, value, headers)| In {
                ts,
                key,
                value,
                headers,
            })
    }

    fn headers_of(r: &In) -> Vec<Header> {
        r.headers
            .iter()
            .map(|(k, v)| Header {
                key: k.clone(),
                value: v.clone().map(Bytes::from),
            })
            .collect()
    }

    fn build(records: &[In], compression: Compression, stamp: ProducerStamp) -> Bytes {
        let mut b = BatchBuilder::new(compression);
        for r in records {
            b.append(r.ts, r.key.as_deref(), r.value.as_deref(), &headers_of(r));
        }
        b.finish(stamp).expect("non-empty")
    }

    fn compression_strategy() -> impl Strategy<Value = Compression> {
        prop_oneof![Just(Compression::None), Just(Compression::Lz4)]
    }

    proptest! {
        #[test]
        fn any_batch_round_trips(
            records in proptest::collection::vec(record_strategy(), 1..40),
            compression in compression_strategy(),
            base in 0i64..1 << 40,
            pid in -1i64..1000, epoch in -1i16..10, seq in -1i32..1000,
        ) {
            let stamp = ProducerStamp { producer_id: pid, producer_epoch: epoch, base_sequence: seq };
            let bytes = build(&records, compression, stamp);
            let batch = Batch::parse(bytes.clone()).unwrap();
            let h = batch.header();
            prop_assert_eq!(h.record_count as usize, records.len());
            prop_assert_eq!(h.total_len, bytes.len());
            // LZ4 falls back to no compression where it would not shrink the payload.
            prop_assert!(h.compression == compression || h.compression == Compression::None);
            prop_assert!(bytes.len() <= encoded_len_bound(plain_len(&records)));
            prop_assert_eq!(verify(&bytes, MAX_UNCOMPRESSED_PAYLOAD).map(|v| v.header), Ok(*h));
            prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (pid, epoch, seq));
            prop_assert_eq!(h.max_timestamp, records.iter().map(|r| r.ts).max().unwrap());
            let decoded = batch.records(base).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(d.offset, base + i as i64);
                prop_assert_eq!(d.timestamp, r.ts);
                prop_assert_eq!(d.key.as_deref(), r.key.as_deref());
                prop_assert_eq!(d.value.as_deref(), r.value.as_deref());
                prop_assert_eq!(&d.headers, &headers_of(r));
            }
            // The size estimate producers use never undercounts.
            let estimated: usize = records.iter()
                .map(|r| record_size(r.key.as_deref(), r.value.as_deref(), &headers_of(r)))
                .sum();
            let mut plain = BatchBuilder::new(Compression::None);
            for r in &records { plain.append(r.ts, r.key.as_deref(), r.value.as_deref(), &headers_of(r)); }
            prop_assert!(plain.payload_len() <= estimated);
        }

        #[test]
        fn any_flipped_byte_is_detected(
            records in proptest::collection::vec(record_strategy(), 1..10),
            compression in compression_strategy(),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let bytes = build(&records, compression, ProducerStamp::NONE);
            let mut corrupt = bytes.to_vec();
            let i = at.index(corrupt.len());
            corrupt[i] ^= flip;
            prop_assert!(Batch::parse(Bytes::from(corrupt)).is_err(), "flip at {} not detected", i);
        }

        #[test]
        fn any_dropped_byte_is_detected(
            records in proptest::collection::vec(record_strategy(), 1..10),
            compression in compression_strategy(),
            at in any::<prop::sample::Index>(),
        ) {
            let bytes = build(&records, compression, ProducerStamp::NONE);
            let mut corrupt = bytes.to_vec();
            corrupt.remove(at.index(corrupt.len()));
            prop_assert!(Batch::parse(Bytes::from(corrupt)).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(batch) = Batch::parse(Bytes::from(data.clone())) {
                let _ = batch.records(0);
            }
            for item in split(&data) { let _ = item; }
        }

        #[test]
        fn valid_crc_with_garbage_records_is_an_error_not_a_panic(
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            count in 1i32..5,
        ) {
            // A hostile client can compute a correct CRC over nonsense; decoding must refuse it.
            let mut buf = vec![0u8; HEADER_LEN];
            buf.extend_from_slice(&garbage);
            let total = buf.len();
            buf[0..4].copy_from_slice(&((total - 4) as u32).to_be_bytes());
            buf[4] = MAGIC;
            buf[11..15].copy_from_slice(&count.to_be_bytes());
            let crc = crc32c::crc32c(&buf[CRC_START..]);
            buf[5..9].copy_from_slice(&crc.to_be_bytes());
            let batch = Batch::parse(Bytes::from(buf)).unwrap();
            let _ = batch.records(0);
        }
    }

    fn plain_len(records: &[In]) -> usize {
        let mut plain = BatchBuilder::new(Compression::None);
        for r in records {
            plain.append(r.ts, r.key.as_deref(), r.value.as_deref(), &headers_of(r));
        }
        plain.payload_len()
    }

    /// The records' plain payload, as the builder encodes it.
    fn plain_payload(records: &[In]) -> Vec<u8> {
        let bytes = build(records, Compression::None, ProducerStamp::NONE);
        bytes[HEADER_LEN..].to_vec()
    }

    fn one_record(value: &[u8]) -> In {
        In {
            ts: 1_000,
            key: Some(b"k".to_vec()),
            value: Some(value.to_vec()),
            headers: vec![],
        }
    }

    /// The property the agent's edge rests on: whatever `verify` accepts, the consumer's
    /// decoder reads back as exactly `record_count` records.
    fn assert_accepted_is_readable(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(v) = verify(bytes, MAX_UNCOMPRESSED_PAYLOAD) {
            let batch = Batch::parse(Bytes::copy_from_slice(bytes))
                .map_err(|e| TestCaseError::fail(format!("verified but unparsable: {e}")))?;
            let records = batch
                .records(0)
                .map_err(|e| TestCaseError::fail(format!("verified but undecodable: {e}")))?;
            prop_assert_eq!(records.len(), v.header.record_count as usize);
            prop_assert_eq!(
                records.iter().map(|r| r.timestamp).max(),
                Some(v.header.max_timestamp)
            );
            prop_assert_eq!(
                records.iter().map(|r| r.timestamp).min(),
                Some(v.min_timestamp)
            );
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip { at: prop::sample::Index, xor: u8 },
        Insert { at: prop::sample::Index, byte: u8 },
        Remove { at: prop::sample::Index },
        Truncate { at: prop::sample::Index },
        Count(i32),
        MaxTimestamp(i64),
    }

    fn mutation_strategy() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<prop::sample::Index>(), 1u8..=255)
                .prop_map(|(at, xor)| Mutation::Flip { at, xor }),
            (any::<prop::sample::Index>(), any::<u8>())
                .prop_map(|(at, byte)| Mutation::Insert { at, byte }),
            any::<prop::sample::Index>().prop_map(|at| Mutation::Remove { at }),
            any::<prop::sample::Index>().prop_map(|at| Mutation::Truncate { at }),
            prop_oneof![Just(i32::MAX), Just(0), Just(-1), 1i32..50].prop_map(Mutation::Count),
            prop_oneof![Just(i64::MIN), Just(i64::MAX), -5i64..5_000]
                .prop_map(Mutation::MaxTimestamp),
        ]
    }

    fn mutate(plain: &mut Vec<u8>, count: &mut i32, max_ts: &mut i64, m: &Mutation) {
        let n = plain.len().max(1);
        match m {
            Mutation::Flip { at, xor } => {
                if !plain.is_empty() {
                    let i = at.index(n);
                    plain[i] ^= xor;
                }
            }
            Mutation::Insert { at, byte } => plain.insert(at.index(n + 1).min(plain.len()), *byte),
            Mutation::Remove { at } => {
                if !plain.is_empty() {
                    plain.remove(at.index(n));
                }
            }
            Mutation::Truncate { at } => plain.truncate(at.index(n)),
            Mutation::Count(c) => *count = *c,
            Mutation::MaxTimestamp(t) => *max_ts = *t,
        }
    }

    proptest! {
        // The edge's invariant gets more cases than the round trips.
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn accepted_is_readable_for_mutated_payloads(
            records in proptest::collection::vec(record_strategy(), 1..12),
            mutations in proptest::collection::vec(mutation_strategy(), 1..4),
            lz4 in any::<bool>(),
            misdeclare in prop_oneof![Just(0i64), -3i64..3, Just(1i64 << 31)],
        ) {
            // Mutate the records themselves, then frame them with a correct CRC (and, for
            // LZ4, a valid block), as a buggy or hostile client in any language could.
            let mut plain = plain_payload(&records);
            let mut count = records.len() as i32;
            let mut max_ts = records.iter().map(|r| r.ts).max().unwrap_or(0);
            for m in &mutations {
                mutate(&mut plain, &mut count, &mut max_ts, m);
            }
            let payload = if lz4 {
                let declared = (plain.len() as i64 + misdeclare).clamp(0, u32::MAX as i64) as u32;
                lz4_payload(&plain, declared)
            } else {
                plain
            };
            let bytes = frame(&payload, lz4, count, records[0].ts, max_ts);
            assert_accepted_is_readable(&bytes)?;
        }

        #[test]
        fn accepted_is_readable_for_arbitrary_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..400),
            count in prop_oneof![1i32..6, Just(i32::MAX)],
            lz4 in any::<bool>(),
            max_ts in prop_oneof![Just(0i64), any::<i64>()],
        ) {
            let bytes = frame(&data, lz4, count, 0, max_ts);
            assert_accepted_is_readable(&bytes)?;
            // And raw bytes with no frame at all.
            assert_accepted_is_readable(&data)?;
        }

        #[test]
        fn accepted_is_readable_for_flipped_compressed_bytes(
            records in proptest::collection::vec(record_strategy(), 1..12),
            at in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            // Damage inside the LZ4 block, CRC recomputed.
            let plain = plain_payload(&records);
            let mut payload = lz4_payload(&plain, plain.len() as u32);
            let i = 4 + at.index(payload.len() - 4);
            payload[i] ^= xor;
            let max_ts = records.iter().map(|r| r.ts).max().unwrap_or(0);
            let bytes = frame(&payload, true, records.len() as i32, records[0].ts, max_ts);
            assert_accepted_is_readable(&bytes)?;
        }
    }

    fn verify_err(bytes: &[u8]) -> CodecError {
        match verify(bytes, 1 << 20) {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_named_malformation_is_refused() {
        let rec = one_record(b"value");
        let plain = plain_payload(std::slice::from_ref(&rec));
        let ts = rec.ts;
        // The good batch passes.
        assert!(verify(&frame(&plain, false, 1, ts, ts), 1 << 20).is_ok());
        assert!(
            verify(
                &frame(&lz4_payload(&plain, plain.len() as u32), true, 1, ts, ts),
                1 << 20
            )
            .is_ok()
        );

        // One record claiming i32::MAX, or 2.
        for count in [i32::MAX, 2] {
            let e = verify_err(&frame(&plain, false, count, ts, ts));
            assert!(matches!(e, CodecError::BadRecord { index: 1, .. }), "{e}");
        }
        // Two records claiming one.
        let two = plain_payload(&[rec.clone(), rec.clone()]);
        let e = verify_err(&frame(&two, false, 1, ts, ts));
        assert!(e.to_string().contains("bytes after the last record"), "{e}");
        // A truncated record.
        let e = verify_err(&frame(&plain[..plain.len() - 2], false, 1, ts, ts));
        assert!(matches!(e, CodecError::BadRecord { index: 0, .. }), "{e}");
        // A length varint that overflows.
        let e = verify_err(&frame(
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0],
            false,
            1,
            ts,
            ts,
        ));
        assert!(e.to_string().contains("length varint"), "{e}");
        // A key length of -7: record = attributes, ts delta 0, offset delta 0, key len -7.
        let mut body = vec![0u8, 0, 0];
        put_varint(&mut body, -7);
        body.extend_from_slice(&[0, 0, 0]);
        let mut bad_key = Vec::new();
        put_varint(&mut bad_key, body.len() as i32);
        bad_key.extend_from_slice(&body);
        let e = verify_err(&frame(&bad_key, false, 1, ts, ts));
        assert!(e.to_string().contains("key length"), "{e}");
        // Offset deltas out of sequence: two records both at delta 0.
        let first = plain_payload(std::slice::from_ref(&rec));
        let mut dup = first.clone();
        dup.extend_from_slice(&first);
        let e = verify_err(&frame(&dup, false, 2, ts, ts));
        assert!(e.to_string().contains("offset delta"), "{e}");
        // A record length shorter than its fields.
        let mut short = plain.clone();
        short[0] = 4; // zig-zag 2
        let e = verify_err(&frame(&short, false, 1, ts, ts));
        assert!(matches!(e, CodecError::BadRecord { .. }), "{e}");
        // max_timestamp that is not the records' latest.
        let e = verify_err(&frame(&plain, false, 1, ts, ts + 1));
        assert!(matches!(e, CodecError::BadTimestamps { .. }), "{e}");
        // An LZ4 block that does not decompress.
        let e = verify_err(&frame(&[0, 0, 0, 10, 0xff, 0xff, 0xff], true, 1, ts, ts));
        assert!(matches!(e, CodecError::Decompress(_)), "{e}");
        // An LZ4 block declaring 2^31 bytes, or more than the limit, or the wrong size.
        let e = verify_err(&frame(&lz4_payload(&plain, 1 << 31), true, 1, ts, ts));
        assert!(matches!(e, CodecError::PayloadTooLarge(_)), "{e}");
        let e = verify_err(&frame(&lz4_payload(&plain, (1 << 20) + 1), true, 1, ts, ts));
        assert!(matches!(e, CodecError::PayloadTooLarge(_)), "{e}");
        let e = verify_err(&frame(
            &lz4_payload(&plain, plain.len() as u32 + 1),
            true,
            1,
            ts,
            ts,
        ));
        assert!(matches!(e, CodecError::Decompress(_)), "{e}");
        // A header key that is not UTF-8.
        let mut with_header = rec.clone();
        with_header.headers = vec![("ab".into(), None)];
        let mut hp = plain_payload(&[with_header]);
        let at = hp.windows(2).position(|w| w == b"ab").unwrap();
        hp[at] = 0xff;
        let e = verify_err(&frame(&hp, false, 1, ts, ts));
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }

    #[test]
    fn incompressible_payloads_go_uncompressed_within_the_bound() {
        let mut b = BatchBuilder::new(Compression::Lz4);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let value: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        b.append(1, None, Some(&value), &[]);
        let payload_len = b.payload_len();
        let bytes = b.finish(ProducerStamp::NONE).unwrap();
        assert_eq!(bytes.len(), encoded_len_bound(payload_len));
        let batch = Batch::parse(bytes).unwrap();
        assert_eq!(batch.header().compression, Compression::None);
        assert_eq!(
            batch.records(0).unwrap()[0].value.as_deref(),
            Some(&value[..])
        );
    }

    #[test]
    fn split_walks_concatenated_batches() {
        let one = In {
            ts: 5,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
        };
        let a = build(
            &[one.clone(), one.clone()],
            Compression::Lz4,
            ProducerStamp::NONE,
        );
        let b = build(
            std::slice::from_ref(&one),
            Compression::None,
            ProducerStamp::NONE,
        );
        let mut run = a.to_vec();
        run.extend_from_slice(&b);
        let parts: Vec<_> = split(&run).collect::<Result<_, _>>().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0.record_count, 2);
        assert_eq!(parts[0].1, 0..a.len());
        assert_eq!(parts[1].1, a.len()..a.len() + b.len());
        // A run cut short reports truncation instead of a partial batch.
        let cut = &run[..run.len() - 1];
        assert!(split(cut).last().unwrap().is_err());
    }

    #[test]
    fn lz4_length_bomb_is_refused() {
        let mut buf = vec![0u8; HEADER_LEN];
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(&[0u8; 8]);
        let total = buf.len();
        buf[0..4].copy_from_slice(&((total - 4) as u32).to_be_bytes());
        buf[4] = MAGIC;
        buf[9..11].copy_from_slice(&1u16.to_be_bytes());
        buf[11..15].copy_from_slice(&1i32.to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[5..9].copy_from_slice(&crc.to_be_bytes());
        let batch = Batch::parse(Bytes::from(buf)).unwrap();
        assert!(matches!(
            batch.records(0),
            Err(CodecError::PayloadTooLarge(_))
        ));
    }
}
