//! The record-batch format: one encoding on the wire and in storage.
//!
//! The producer builds one batch per partition; the agent checks the header and CRC and stores
//! the bytes exactly as they came; the consumer decodes them. Nothing in a batch depends on the
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
    Truncated { needed: usize, available: usize },
    #[error("batch length field says {declared} bytes but {actual} follow it")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unsupported batch format version {0} (expected {MAGIC})")]
    BadMagic(u8),
    #[error("batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u16),
    #[error("batch record count {0} is not positive")]
    BadRecordCount(i32),
    #[error("batch payload does not decompress: {0}")]
    Decompress(String),
    #[error("decompressed payload of {0} bytes exceeds the limit")]
    PayloadTooLarge(usize),
    #[error("malformed record {index}: {reason}")]
    BadRecord { index: usize, reason: &'static str },
}

/// A record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// The fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Total encoded size of the batch, including the length field.
    pub total_len: usize,
    pub crc: u32,
    pub compression: Compression,
    pub record_count: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
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

/// Checks that `buf` is exactly one well-formed batch with a correct CRC and returns its
/// header. This is all the agent does to a batch before storing it.
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

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A validated batch whose records can be decoded.
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
                if raw.len() < 4 {
                    return Err(CodecError::Truncated {
                        needed: HEADER_LEN + 4,
                        available: self.bytes.len(),
                    });
                }
                let len = u32::from_be_bytes(arr(&raw, 0)) as usize;
                if len > MAX_UNCOMPRESSED_PAYLOAD {
                    return Err(CodecError::PayloadTooLarge(len));
                }
                let mut out = vec![0u8; len];
                let written = lz4_flex::block::decompress_into(&raw[4..], &mut out)
                    .map_err(|e| CodecError::Decompress(e.to_string()))?;
                if written != len {
                    return Err(CodecError::Decompress(format!(
                        "expected {len} bytes, got {written}"
                    )));
                }
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
    // The count is covered by the CRC, but bound the allocation by what the payload can hold
    // (every record takes at least 7 bytes).
    let mut records = Vec::with_capacity(count.min(payload.len() / 7 + 1));
    let mut cur = Cursor {
        buf: payload,
        pos: 0,
    };
    for index in 0..count {
        let bad = |reason| CodecError::BadRecord { index, reason };
        let len = cur.varint().ok_or(bad("length"))?;
        if len < 0 {
            return Err(bad("negative length"));
        }
        let end = cur
            .pos
            .checked_add(len as usize)
            .filter(|&e| e <= payload.len())
            .ok_or(bad("length past the end of the payload"))?;
        let _attributes = cur.byte().ok_or(bad("attributes"))?;
        let ts_delta = cur.varlong().ok_or(bad("timestamp delta"))?;
        let offset_delta = cur.varint().ok_or(bad("offset delta"))?;
        if offset_delta as i64 != index as i64 {
            return Err(bad("offset delta out of sequence"));
        }
        let key = cur.nullable_bytes().ok_or(bad("key"))?;
        let value = cur.nullable_bytes().ok_or(bad("value"))?;
        let header_count = cur.varint().ok_or(bad("header count"))?;
        if header_count < 0 {
            return Err(bad("negative header count"));
        }
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let key = cur.nullable_bytes().ok_or(bad("header key"))?;
            let key = key.ok_or(bad("null header key"))?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| bad("header key not UTF-8"))?;
            let value = cur.nullable_bytes().ok_or(bad("header value"))?;
            headers.push(Header { key, value });
        }
        if cur.pos != end {
            return Err(bad("length does not match its fields"));
        }
        records.push(Record {
            offset: base_offset + index as i64,
            timestamp: header.base_timestamp.wrapping_add(ts_delta),
            key,
            value,
            headers,
        });
    }
    if cur.pos != payload.len() {
        return Err(CodecError::BadRecord {
            index: count,
            reason: "bytes after the last record",
        });
    }
    Ok(records)
}

struct Cursor<'a> {
    buf: &'a Bytes,
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

    fn nullable_bytes(&mut self) -> Option<Option<Bytes>> {
        let len = self.varint()?;
        if len < 0 {
            return (len == -1).then_some(None);
        }
        let end = self.pos.checked_add(len as usize)?;
        if end > self.buf.len() {
            return None;
        }
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Some(Some(out))
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

/// Identity of an idempotent producer, written into each batch it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
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
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    pub fn with_capacity(compression: Compression, bytes: usize) -> Self {
        BatchBuilder {
            compression,
            payload: Vec::with_capacity(bytes),
            record_count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    pub fn record_count(&self) -> usize {
        self.record_count as usize
    }

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

    /// Seals the batch. Returns `None` if no record was appended.
    pub fn finish(self, stamp: ProducerStamp) -> Option<Bytes> {
        if self.record_count == 0 {
            return None;
        }
        let mut out;
        match self.compression {
            Compression::None => {
                out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
                out.resize(HEADER_LEN, 0);
                out.extend_from_slice(&self.payload);
            }
            Compression::Lz4 => {
                let bound = lz4_flex::block::get_maximum_output_size(self.payload.len());
                out = BytesMut::zeroed(HEADER_LEN + 4 + bound);
                out[HEADER_LEN..HEADER_LEN + 4]
                    .copy_from_slice(&(self.payload.len() as u32).to_be_bytes());
                let n = lz4_flex::block::compress_into(&self.payload, &mut out[HEADER_LEN + 4..])
                    .expect("output buffer sized by get_maximum_output_size");
                out.truncate(HEADER_LEN + 4 + n);
            }
        }
        let total = out.len();
        let mut h = &mut out[..HEADER_LEN];
        h.put_u32((total - LENGTH_FIELD_LEN) as u32);
        h.put_u8(MAGIC);
        h.put_u32(0); // CRC, filled below
        h.put_u16(self.compression.to_bits());
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

#[cfg(test)]
mod tests {
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
            prop_assert_eq!(h.compression, compression);
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
