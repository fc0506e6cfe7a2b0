//! Kafka's RecordBatch v2, the layout Kafka clients send and read, beside StreamHouse's own.
//!
//! ```text
//! offset  size  field
//!  0      8     base_offset            i64, stored as 0: the agent tells readers the real one
//!  8      4     batch_length           i32, bytes after this field
//! 12      4     partition_leader_epoch i32, not covered by the CRC
//! 16      1     magic                  2
//! 17      4     crc                    u32, CRC-32C of every byte after this field
//! 21      2     attributes             bits 0-2 compression (0 none, 1 gzip, 2 snappy, 3 lz4,
//!                                      4 zstd); 3 timestamp type; 4 transactional; 5 control
//! 23      4     last_offset_delta      i32, record_count - 1
//! 27      8     base_timestamp         i64
//! 35      8     max_timestamp          i64
//! 43      8     producer_id            i64, -1 if none
//! 51      2     producer_epoch         i16
//! 53      4     base_sequence          i32, -1 if none
//! 57      4     record_count           i32, > 0
//! 61      ..    records                the same record encoding as StreamHouse's, compressed
//!                                      as a whole when a codec is set
//! ```
//!
//! Kafka's CRC covers neither the base offset nor the leader epoch, so a batch is stored as it
//! came with its base offset set to 0 (which also tells it from a StreamHouse batch, whose
//! first four bytes are its non-zero length), and a Kafka fetch stamps the real base offset
//! into a copy. Transactional and control batches, and log-append-time stamps set by a
//! producer, are refused: StreamHouse has no transactions, and its records keep the
//! producer's time.

use bytes::{BufMut, Bytes, BytesMut};

use super::{BatchHeader, CodecError, Compression, Format, MAGIC, arr};

/// Bytes before the records.
pub const HEADER_LEN: usize = 61;
/// Where the CRC's coverage starts (the attributes).
pub(super) const CRC_START: usize = 21;
/// The base offset and batch length before `batch_length` counts.
pub const LOG_OVERHEAD: usize = 12;

const TIMESTAMP_TYPE: u16 = 1 << 3;
const TRANSACTIONAL: u16 = 1 << 4;
const CONTROL: u16 = 1 << 5;
const DELETE_HORIZON: u16 = 1 << 6;
const KNOWN_BITS: u16 = 0b111 | TIMESTAMP_TYPE | TRANSACTIONAL | CONTROL | DELETE_HORIZON;

/// Reads a Kafka-layout header without checking the CRC (see [`BatchHeader::peek`]).
pub(super) fn peek(buf: &[u8]) -> Result<BatchHeader, CodecError> {
    if buf.len() < HEADER_LEN {
        return Err(CodecError::Truncated {
            needed: HEADER_LEN,
            available: buf.len(),
        });
    }
    let base_offset = i64::from_be_bytes(arr(buf, 0));
    if base_offset != 0 {
        return Err(CodecError::KafkaBaseOffset(base_offset));
    }
    let declared = i32::from_be_bytes(arr(buf, 8));
    let total_len = usize::try_from(declared)
        .ok()
        .and_then(|d| d.checked_add(LOG_OVERHEAD))
        .filter(|t| *t >= HEADER_LEN)
        .ok_or(CodecError::LengthMismatch {
            declared: declared.max(0) as usize,
            actual: buf.len() - LOG_OVERHEAD,
        })?;
    if buf[16] != MAGIC {
        return Err(CodecError::BadMagic(buf[16]));
    }
    let attributes = u16::from_be_bytes(arr(buf, 21));
    if attributes & (TRANSACTIONAL | CONTROL) != 0 {
        return Err(CodecError::Unsupported(
            "transactional and control batches (StreamHouse has no transactions)",
        ));
    }
    if attributes & TIMESTAMP_TYPE != 0 {
        return Err(CodecError::Unsupported(
            "log-append-time stamps set by a producer",
        ));
    }
    if attributes & !KNOWN_BITS != 0 || attributes & DELETE_HORIZON != 0 {
        return Err(CodecError::Unsupported(
            "batch attribute bits beyond Kafka's",
        ));
    }
    let record_count = i32::from_be_bytes(arr(buf, 57));
    if record_count <= 0 {
        return Err(CodecError::BadRecordCount(record_count));
    }
    let last_offset_delta = i32::from_be_bytes(arr(buf, 23));
    if last_offset_delta != record_count - 1 {
        return Err(CodecError::LastOffsetDelta {
            last_offset_delta,
            record_count,
        });
    }
    Ok(BatchHeader {
        format: Format::Kafka,
        total_len,
        crc: u32::from_be_bytes(arr(buf, 17)),
        compression: Compression::from_kafka_bits(attributes)?,
        record_count,
        base_timestamp: i64::from_be_bytes(arr(buf, 27)),
        max_timestamp: i64::from_be_bytes(arr(buf, 35)),
        producer_id: i64::from_be_bytes(arr(buf, 43)),
        producer_epoch: i16::from_be_bytes(arr(buf, 51)),
        base_sequence: i32::from_be_bytes(arr(buf, 53)),
    })
}

/// A batch as a Kafka client sent it, ready to be checked and stored: its base offset set to
/// 0 (a copy only when it was not 0 already). Bytes too short to hold one are returned as
/// they are, for the check to refuse.
pub fn as_stored(batch: Bytes) -> Bytes {
    if batch.len() < HEADER_LEN || batch[..8] == [0; 8] {
        return batch;
    }
    let mut b = BytesMut::from(&batch[..]);
    b[..8].fill(0);
    b.freeze()
}

/// Appends stored batch `stored` (either layout) to `out` as a Kafka client reads it: in
/// Kafka's layout, with `base_offset` and `leader_epoch` stamped.
///
/// A Kafka-layout batch goes out as it is stored: its CRC covers neither stamped field, and
/// the client checks it, so it is not computed here. A StreamHouse-layout batch gets Kafka's
/// header over the same records and a new CRC, so its own CRC is checked first (a damaged
/// batch must not go out with a CRC that vouches for it); one compressed with StreamHouse's
/// LZ4 block (which Kafka does not have) is decompressed straight into `out`. On an error
/// nothing is appended.
pub fn append_for_kafka(
    out: &mut BytesMut,
    stored: &[u8],
    base_offset: i64,
    leader_epoch: i32,
) -> Result<(), CodecError> {
    let h = BatchHeader::peek(stored)?;
    if h.total_len != stored.len() {
        return Err(CodecError::LengthMismatch {
            declared: h.total_len,
            actual: stored.len(),
        });
    }
    if h.format == Format::Kafka {
        out.reserve(stored.len());
        out.put_i64(base_offset);
        out.put_slice(&stored[8..12]);
        out.put_i32(leader_epoch);
        out.put_slice(&stored[16..]);
        return Ok(());
    }
    let h = super::validate(stored)?;
    let raw = &stored[super::HEADER_LEN..];
    let start = out.len();
    out.reserve(HEADER_LEN + raw.len());
    out.put_i64(base_offset);
    out.put_i32(0); // batch length, filled below
    out.put_i32(leader_epoch);
    out.put_u8(MAGIC);
    out.put_u32(0); // CRC, filled below
    out.put_u16(0); // uncompressed, create time
    out.put_i32(h.record_count - 1);
    out.put_i64(h.base_timestamp);
    out.put_i64(h.max_timestamp);
    out.put_i64(h.producer_id);
    out.put_i16(h.producer_epoch);
    out.put_i32(h.base_sequence);
    out.put_i32(h.record_count);
    if h.compression == Compression::Lz4 {
        let written = super::lz4_parts(raw, stored.len()).and_then(|(len, block)| {
            if len > super::MAX_UNCOMPRESSED_PAYLOAD {
                return Err(CodecError::PayloadTooLarge(len));
            }
            let at = out.len();
            out.resize(at + len, 0);
            super::decompress_exact(block, &mut out[at..])
        });
        if let Err(e) = written {
            out.truncate(start);
            return Err(e);
        }
    } else {
        // The StreamHouse layout has no other codec.
        out.put_slice(raw);
    }
    let batch_length = (out.len() - start - LOG_OVERHEAD) as i32;
    out[start + 8..start + 12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Hand-made Kafka batches for tests, as a Kafka client (or a hostile one) would send them.
#[doc(hidden)]
pub mod forge {
    use super::*;

    /// A Kafka batch around `records` (already compressed with `codec`'s bits) with a correct
    /// CRC; `attributes` beyond the codec as given.
    #[allow(clippy::too_many_arguments)]
    pub fn batch(
        records: &[u8],
        codec_bits: u16,
        extra_attributes: u16,
        count: i32,
        base_ts: i64,
        max_ts: i64,
        (producer_id, epoch, sequence): (i64, i16, i32),
        base_offset: i64,
    ) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_i64(base_offset);
        out.put_i32((HEADER_LEN - LOG_OVERHEAD + records.len()) as i32);
        out.put_i32(-1);
        out.put_u8(MAGIC);
        out.put_u32(0);
        out.put_u16(codec_bits | extra_attributes);
        out.put_i32(count - 1);
        out.put_i64(base_ts);
        out.put_i64(max_ts);
        out.put_i64(producer_id);
        out.put_i16(epoch);
        out.put_i32(sequence);
        out.put_i32(count);
        out.put_slice(records);
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out.to_vec()
    }
}
