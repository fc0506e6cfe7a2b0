//! Writing batches: the record encoding (varints, nullable fields), the producer's stamp and
//! sequence arithmetic, [`BatchBuilder`], and splitting a batch that grew too large.

use super::*;

pub(super) fn put_unsigned(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(super) fn put_varint(buf: &mut Vec<u8>, v: i32) {
    put_unsigned(buf, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

pub(super) fn put_varlong(buf: &mut Vec<u8>, v: i64) {
    put_unsigned(buf, ((v << 1) ^ (v >> 63)) as u64);
}

pub(super) fn varint_len(v: i32) -> usize {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

pub(super) fn varlong_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

pub(super) fn put_nullable(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
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
    pub(super) compression: Compression,
    pub(super) payload: Vec<u8>,
    pub(super) record_count: i32,
    pub(super) base_timestamp: i64,
    pub(super) max_timestamp: i64,
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
