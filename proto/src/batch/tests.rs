//! The codec's properties: every batch the builder writes verifies and decodes to what went
//! in, and no bytes a client can send make the checks panic or accept a damaged batch.

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
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        (any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<prop::sample::Index>().prop_map(|at| Mutation::Remove { at }),
        any::<prop::sample::Index>().prop_map(|at| Mutation::Truncate { at }),
        prop_oneof![Just(i32::MAX), Just(0), Just(-1), 1i32..50].prop_map(Mutation::Count),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), -5i64..5_000].prop_map(Mutation::MaxTimestamp),
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

// Kafka's layout (RecordBatch v2), as Kafka clients send it.

use super::kafka::forge::batch as kafka_batch;
use std::io::Write as _;

/// `plain` records compressed with Kafka codec `bits` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
fn kafka_compress(plain: &[u8], bits: u16) -> Vec<u8> {
    match bits {
        0 => plain.to_vec(),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        2 => snap::raw::Encoder::new().compress_vec(plain).unwrap(),
        3 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        _ => ruzstd::encoding::compress_to_vec(plain, ruzstd::encoding::CompressionLevel::Fastest),
    }
}

fn kafka_of(records: &[In], bits: u16, stamp: (i64, i16, i32)) -> Vec<u8> {
    let max_ts = records.iter().map(|r| r.ts).max().unwrap_or(0);
    let packed = kafka_compress(&plain_payload(records), bits);
    kafka_batch(
        &packed,
        bits,
        0,
        records.len() as i32,
        records[0].ts,
        max_ts,
        stamp,
        0,
    )
}

proptest! {
    #[test]
    fn kafka_batches_of_every_codec_verify_and_decode(
        records in proptest::collection::vec(record_strategy(), 1..30),
        bits in 0u16..=4,
        pid in -1i64..1000, epoch in -1i16..10, seq in -1i32..1000,
        base in 0i64..1 << 40,
    ) {
        let bytes = kafka_of(&records, bits, (pid, epoch, seq));
        let v = verify(&bytes, MAX_UNCOMPRESSED_PAYLOAD).unwrap();
        prop_assert_eq!(v.header.format, Format::Kafka);
        prop_assert_eq!(v.header.record_count as usize, records.len());
        prop_assert_eq!(
            (v.header.producer_id, v.header.producer_epoch, v.header.base_sequence),
            (pid, epoch, seq)
        );
        let decoded = Batch::parse(Bytes::from(bytes.clone())).unwrap().records(base).unwrap();
        let want = Batch::parse(build(&records, Compression::None, ProducerStamp::NONE))
            .unwrap()
            .records(base)
            .unwrap();
        prop_assert_eq!(&decoded, &want);

        // Served to a Kafka client: the same bytes but the base offset and leader epoch.
        let mut out = BytesMut::new();
        kafka::append_for_kafka(&mut out, &bytes, base, 7).unwrap();
        prop_assert_eq!(&out[..8], &base.to_be_bytes()[..]);
        prop_assert_eq!(&out[12..16], &7i32.to_be_bytes()[..]);
        prop_assert_eq!(&out[16..], &bytes[16..]);
    }

    #[test]
    fn streamhouse_batches_reach_kafka_clients_with_the_same_records(
        records in proptest::collection::vec(record_strategy(), 1..30),
        compression in compression_strategy(),
        base in 0i64..1 << 40,
    ) {
        let stamp = ProducerStamp { producer_id: 5, producer_epoch: 1, base_sequence: 9 };
        let ours = build(&records, compression, stamp);
        let mut out = BytesMut::new();
        kafka::append_for_kafka(&mut out, &ours, base, -1).unwrap();
        prop_assert_eq!(&out[..8], &base.to_be_bytes()[..]);
        // What a Kafka client gets is a Kafka batch (checked here as stored, base offset 0)
        // holding the same records.
        let mut stored = out.to_vec();
        stored[..8].fill(0);
        let v = verify(&stored, MAX_UNCOMPRESSED_PAYLOAD).unwrap();
        prop_assert_eq!(v.header.format, Format::Kafka);
        prop_assert_eq!((v.header.producer_id, v.header.base_sequence), (5, 9));
        let theirs = Batch::parse(Bytes::from(stored)).unwrap().records(base).unwrap();
        prop_assert_eq!(theirs, Batch::parse(ours).unwrap().records(base).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn accepted_is_readable_for_mutated_kafka_batches(
        records in proptest::collection::vec(record_strategy(), 1..12),
        mutations in proptest::collection::vec(mutation_strategy(), 1..4),
        bits in 0u16..=4,
    ) {
        let mut plain = plain_payload(&records);
        let mut count = records.len() as i32;
        let mut max_ts = records.iter().map(|r| r.ts).max().unwrap_or(0);
        for m in &mutations {
            mutate(&mut plain, &mut count, &mut max_ts, m);
        }
        let packed = kafka_compress(&plain, bits);
        let bytes = kafka_batch(&packed, bits, 0, count, records[0].ts, max_ts, (-1, -1, -1), 0);
        assert_accepted_is_readable(&bytes)?;
    }

    #[test]
    fn accepted_is_readable_for_arbitrary_kafka_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        bits in 0u16..8,
        count in prop_oneof![1i32..6, Just(i32::MAX)],
    ) {
        let bytes = kafka_batch(&data, bits, 0, count, 0, 0, (-1, -1, -1), 0);
        assert_accepted_is_readable(&bytes)?;
        // Raw bytes that claim Kafka's layout (four zero bytes first).
        let mut raw = vec![0u8; 4];
        raw.extend_from_slice(&data);
        assert_accepted_is_readable(&raw)?;
    }
}

#[test]
fn kafka_batches_stamped_with_what_streamhouse_lacks_are_refused() {
    let records = vec![one_record(b"v")];
    let plain = plain_payload(&records);
    let good = |attrs: u16, base_offset: i64| {
        kafka_batch(&plain, 0, attrs, 1, 1_000, 1_000, (-1, -1, -1), base_offset)
    };
    assert!(verify(&good(0, 0), 1 << 20).is_ok());
    for (attrs, what) in [
        (1 << 4, "transactional"),
        (1 << 5, "transactional and control"),
        (1 << 3, "log-append-time"),
        (1 << 6, "attribute bits"),
        (1 << 9, "attribute bits"),
    ] {
        let e = verify_err(&good(attrs, 0));
        assert!(e.to_string().contains(what), "{attrs:#x}: {e}");
    }
    assert_eq!(
        verify_err(&good(5, 0)),
        CodecError::UnsupportedCompression(5)
    );
    assert_eq!(verify_err(&good(0, 42)), CodecError::KafkaBaseOffset(42));
    // A client's base offset is set to 0 when it is taken in, and the batch is then whole.
    let taken = kafka::as_stored(Bytes::from(good(0, 42)));
    assert!(verify(&taken, 1 << 20).is_ok());
    // Last offset delta must agree with the count; the CRC must cover the rest.
    let mut wrong_delta = good(0, 0);
    wrong_delta[23..27].copy_from_slice(&5i32.to_be_bytes());
    let crc = crc32c::crc32c(&wrong_delta[21..]);
    wrong_delta[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        verify_err(&wrong_delta),
        CodecError::LastOffsetDelta { .. }
    ));
    let mut flipped = good(0, 0);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        verify_err(&flipped),
        CodecError::CrcMismatch { .. }
    ));
}

#[test]
fn a_run_of_both_layouts_splits_into_its_batches() {
    let records = vec![one_record(b"a"), one_record(b"b")];
    let ours = build(&records, Compression::Lz4, ProducerStamp::NONE);
    let theirs = kafka_of(&records, 4, (-1, -1, -1));
    let mut run = ours.to_vec();
    run.extend_from_slice(&theirs);
    run.extend_from_slice(&ours);
    let parts: Vec<_> = split(&run).collect::<Result<_, _>>().unwrap();
    let formats: Vec<_> = parts.iter().map(|(h, _)| h.format).collect();
    assert_eq!(
        formats,
        [Format::StreamHouse, Format::Kafka, Format::StreamHouse]
    );
    assert_eq!(parts[1].1, ours.len()..ours.len() + theirs.len());
}

#[test]
fn serving_kafka_clients_never_vouches_for_a_damaged_batch() {
    let records = vec![one_record(b"a"), one_record(b"b")];
    // A StreamHouse batch gets a new CRC on its way out, so a damaged one is refused, and
    // nothing of it is appended.
    for compression in [Compression::None, Compression::Lz4] {
        let mut ours = build(&records, compression, ProducerStamp::NONE).to_vec();
        let last = ours.len() - 1;
        ours[last] ^= 1;
        let mut out = BytesMut::from(&b"before"[..]);
        assert!(matches!(
            kafka::append_for_kafka(&mut out, &ours, 0, -1),
            Err(CodecError::CrcMismatch { .. })
        ));
        assert_eq!(&out[..], b"before");
    }
    // A Kafka batch keeps its own CRC, which the client checks: a damaged one goes out as it
    // is stored, and the client's check refuses it.
    let mut theirs = kafka_of(&records, 0, (-1, -1, -1));
    let last = theirs.len() - 1;
    theirs[last] ^= 1;
    let mut out = BytesMut::new();
    kafka::append_for_kafka(&mut out, &theirs, 5, -1).unwrap();
    out[..8].fill(0);
    assert!(matches!(verify_err(&out), CodecError::CrcMismatch { .. }));
    // A batch cut short is refused either way.
    let whole = kafka_of(&records, 0, (-1, -1, -1));
    assert!(
        kafka::append_for_kafka(&mut BytesMut::new(), &whole[..whole.len() - 3], 0, -1).is_err()
    );
}
