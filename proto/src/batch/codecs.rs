//! Decompressing the payloads of Kafka-layout batches: gzip, snappy (raw, or in the xerial
//! framing the Java client and kafka-python write), LZ4 frames and zstd, each bounded so a
//! small hostile payload cannot make the decoder allocate or work past a limit.

use std::io::Read;

use super::{CodecError, Compression};

/// The xerial snappy stream header: magic, then a version and a compatible version.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
/// The largest zstd window a frame may ask for, whatever its declared content: a frame's
/// window is decoder memory.
const MAX_ZSTD_WINDOW: u64 = 8 * 1024 * 1024;

fn failed(codec: &str, e: impl std::fmt::Display) -> CodecError {
    CodecError::Decompress(format!("{codec}: {e}"))
}

/// Decompresses `input`, compressed with `codec` (one of Kafka's: gzip, snappy, LZ4 frame or
/// zstd), into `out` (cleared first), refusing it once it passes `limit` bytes.
pub(super) fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    out.clear();
    match codec {
        Compression::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(input), "gzip", limit, out)
        }
        Compression::Snappy => snappy(input, limit, out),
        Compression::Lz4Frame => {
            read_bounded(lz4_flex::frame::FrameDecoder::new(input), "lz4", limit, out)
        }
        Compression::Zstd => zstd(input, limit, out),
        Compression::None | Compression::Lz4 => Err(CodecError::Decompress(format!(
            "{codec:?} is not a Kafka codec"
        ))),
    }
}

/// Reads all of `reader` into `out`, failing once more than `limit` bytes have come out in
/// total (`out` may hold earlier output).
fn read_bounded(
    reader: impl Read,
    codec: &str,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let room = limit.saturating_sub(out.len()) as u64;
    reader
        .take(room + 1)
        .read_to_end(out)
        .map_err(|e| failed(codec, e))?;
    if out.len() > limit {
        return Err(CodecError::PayloadOverLimit(limit));
    }
    Ok(())
}

fn snappy(input: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if input.len() >= XERIAL_HEADER_LEN && input.starts_with(XERIAL_MAGIC) {
        // Blocks, each a big-endian length and a raw snappy block.
        let mut rest = &input[XERIAL_HEADER_LEN..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(failed("snappy", "truncated xerial block length"));
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let block = rest
                .get(4..4 + len)
                .ok_or_else(|| failed("snappy", "xerial block past the end of the payload"))?;
            snappy_block(block, limit, out)?;
            rest = &rest[4 + len..];
        }
        Ok(())
    } else {
        snappy_block(input, limit, out)
    }
}

/// Appends one raw snappy block to `out`, its declared length checked before anything is
/// reserved.
fn snappy_block(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let len = snap::raw::decompress_len(block).map_err(|e| failed("snappy", e))?;
    if out.len().saturating_add(len) > limit {
        return Err(CodecError::PayloadOverLimit(limit));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| failed("snappy", e))?;
    out.truncate(start + n);
    Ok(())
}

fn zstd(input: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    // One or more frames back to back.
    let mut rest = input;
    while !rest.is_empty() {
        let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
            &mut rest,
            MAX_ZSTD_WINDOW,
        )
        .map_err(|e| failed("zstd", e))?;
        read_bounded(decoder, "zstd", limit, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn plain() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd_of(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// Snappy in the xerial framing, in blocks of `block` bytes.
    fn xerial(data: &[u8], block: usize) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for chunk in data.chunks(block) {
            let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            out.extend_from_slice(&(c.len() as u32).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    fn all_codecs(data: &[u8]) -> Vec<(Compression, Vec<u8>)> {
        vec![
            (Compression::Gzip, gzip(data)),
            (
                Compression::Snappy,
                snap::raw::Encoder::new().compress_vec(data).unwrap(),
            ),
            (Compression::Snappy, xerial(data, 32 * 1024)),
            (Compression::Lz4Frame, lz4(data)),
            (Compression::Zstd, zstd_of(data)),
        ]
    }

    #[test]
    fn every_codec_round_trips_into_a_reused_buffer() {
        let data = plain();
        let mut out = Vec::new();
        for (codec, packed) in all_codecs(&data) {
            decompress(codec, &packed, data.len(), &mut out).unwrap();
            assert_eq!(out, data, "{codec:?}");
        }
        // Two zstd frames back to back are one payload.
        let mut two = zstd_of(&data[..1000]);
        two.extend_from_slice(&zstd_of(&data[1000..]));
        decompress(Compression::Zstd, &two, data.len(), &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn a_payload_past_the_limit_is_refused_without_producing_it() {
        // 64 MiB of zeros compress to almost nothing: a bomb for an unbounded decoder.
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let mut out = Vec::new();
        for (codec, packed) in all_codecs(&zeros) {
            assert!(packed.len() < 4 * 1024 * 1024, "{codec:?} {}", packed.len());
            let err = decompress(codec, &packed, 1024 * 1024, &mut out).unwrap_err();
            assert_eq!(err, CodecError::PayloadOverLimit(1024 * 1024), "{codec:?}");
            assert!(
                out.capacity() <= 8 * 1024 * 1024,
                "{codec:?}: {}",
                out.capacity()
            );
        }
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let data = plain();
        let mut out = Vec::new();
        for (codec, packed) in all_codecs(&data) {
            for cut in [0, 1, 5, 17, packed.len() / 2, packed.len() - 1] {
                // An error, or (a decoder lenient about a missing end mark) what was there.
                if decompress(codec, &packed[..cut], data.len(), &mut out).is_ok() {
                    assert!(data.starts_with(&out), "{codec:?} cut at {cut}");
                }
            }
            let mut flipped = packed.clone();
            for i in (0..flipped.len()).step_by(97) {
                flipped[i] ^= 0x5a;
            }
            let _ = decompress(codec, &flipped, data.len(), &mut out);
        }
        // A raw snappy block declaring 4 GiB is refused before anything is reserved.
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(
            decompress(Compression::Snappy, &huge, 1024, &mut out),
            Err(CodecError::PayloadOverLimit(1024))
        );
    }
}
