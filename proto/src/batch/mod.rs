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

mod codecs;
mod encode;
pub mod kafka;
#[cfg(test)]
mod tests;

pub use encode::*;

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
    /// StreamHouse's own layout only: one LZ4 block (`lz4_flex`), prefixed with the
    /// uncompressed length.
    #[default]
    Lz4,
    /// Kafka's layout only: gzip.
    Gzip,
    /// Kafka's layout only: snappy, raw or in xerial framing.
    Snappy,
    /// Kafka's layout only: an LZ4 frame.
    Lz4Frame,
    /// Kafka's layout only: zstd.
    Zstd,
}

impl Compression {
    fn to_bits(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            // Not written in StreamHouse's own layout (`BatchBuilder` writes none or LZ4).
            _ => 0,
        }
    }

    fn from_bits(bits: u16) -> Result<Self, CodecError> {
        match bits & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            other => Err(CodecError::UnsupportedCompression(other)),
        }
    }

    /// From the compression bits of a Kafka batch's attributes.
    fn from_kafka_bits(bits: u16) -> Result<Self, CodecError> {
        match bits & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4Frame),
            4 => Ok(Compression::Zstd),
            other => Err(CodecError::UnsupportedCompression(other)),
        }
    }
}

/// Which of the two batch layouts a batch has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// StreamHouse's own: the length first, see the module documentation.
    StreamHouse,
    /// Kafka's RecordBatch v2, as Kafka clients send it, stored with base offset 0 (the
    /// agent tells readers the real one): its first four bytes are zero, where a StreamHouse
    /// batch's length is not. See [`kafka`].
    Kafka,
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
    #[error("payload decompresses to more than {0} bytes")]
    /// A streamed payload (Kafka's codecs) passed the caller's limit while decompressing.
    PayloadOverLimit(usize),
    #[error("Kafka batch base offset {0}: batches are sent with 0, the agent assigns offsets")]
    /// A Kafka-layout batch whose base offset is not 0.
    KafkaBaseOffset(i64),
    #[error(
        "Kafka batch last offset delta {last_offset_delta} does not match its {record_count} records"
    )]
    /// A Kafka-layout batch whose last offset delta is not its record count less one.
    LastOffsetDelta {
        /// The header's last offset delta.
        last_offset_delta: i32,
        /// The header's record count.
        record_count: i32,
    },
    #[error("{0} are not supported")]
    /// A Kafka-layout batch using a feature StreamHouse does not have.
    Unsupported(&'static str),
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

/// The fixed header of a batch, of either layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Which layout the batch has.
    pub format: Format,
    /// Total encoded size of the batch, including the length field (and in Kafka's layout
    /// the base offset before it).
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
    /// Where the payload (the records, compressed or not) starts.
    pub fn payload_start(&self) -> usize {
        match self.format {
            Format::StreamHouse => HEADER_LEN,
            Format::Kafka => kafka::HEADER_LEN,
        }
    }

    fn crc_start(&self) -> usize {
        match self.format {
            Format::StreamHouse => CRC_START,
            Format::Kafka => kafka::CRC_START,
        }
    }

    /// Reads the header at the start of `buf` without checking the CRC: enough to walk a run
    /// of concatenated batches that were checked when they were stored. Either layout: a
    /// batch whose first four bytes are zero is Kafka's.
    pub fn peek(buf: &[u8]) -> Result<BatchHeader, CodecError> {
        if buf.len() >= 4 && buf[..4] == [0; 4] {
            return kafka::peek(buf);
        }
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
            format: Format::StreamHouse,
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
    let actual = crc32c::crc32c(&buf[header.crc_start()..]);
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
    let raw = &buf[header.payload_start()..];
    let limit = max_payload.min(MAX_UNCOMPRESSED_PAYLOAD);
    let walked = match header.compression {
        Compression::None => walk_all(raw, &header),
        Compression::Gzip | Compression::Snappy | Compression::Lz4Frame | Compression::Zstd => {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                codecs::decompress(header.compression, raw, limit, &mut scratch)?;
                walk_all(&scratch, &header)
            })
        }
        Compression::Lz4 => {
            let (len, block) = lz4_parts(raw, buf.len())?;
            if len > limit {
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
        let raw = self.bytes.slice(self.header.payload_start()..);
        match self.header.compression {
            Compression::None => Ok(raw),
            Compression::Gzip | Compression::Snappy | Compression::Lz4Frame | Compression::Zstd => {
                let mut out = Vec::new();
                codecs::decompress(
                    self.header.compression,
                    &raw,
                    MAX_UNCOMPRESSED_PAYLOAD,
                    &mut out,
                )?;
                Ok(Bytes::from(out))
            }
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
