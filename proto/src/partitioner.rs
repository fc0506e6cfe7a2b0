//! Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`,
//! bit for bit as the Java client computes it, so a key lands on the same partition number in
//! StreamHouse as it would in Kafka.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32-bit, seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `partitions` (> 0).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Apache Kafka's UtilsTest.testMurmur2 vectors.
    const KAFKA_VECTORS: &[(&[u8], i32)] = &[
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        (b"abc", 479470107),
    ];

    #[test]
    fn murmur2_matches_kafka() {
        for (key, want) in KAFKA_VECTORS {
            assert_eq!(murmur2(key), *want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partitions_match_kafkas_default_partitioner() {
        // (key, [(partition count, partition Kafka picks)])
        type Case = (&'static [u8], &'static [(u32, u32)]);
        let cases: &[Case] = &[
            (b"21", &[(3, 0), (8, 4), (12, 0), (100, 40)]),
            (b"foobar", &[(3, 0), (8, 6), (12, 6), (100, 66)]),
            (
                b"a-little-bit-long-string",
                &[(3, 2), (8, 0), (12, 8), (100, 12)],
            ),
            (
                b"a-little-bit-longer-string",
                &[(3, 2), (8, 3), (12, 11), (100, 19)],
            ),
            (b"abc", &[(3, 0), (8, 3), (12, 3), (100, 7)]),
        ];
        for (key, expect) in cases {
            for &(n, p) in *expect {
                assert_eq!(partition_for_key(key, n), p, "{:?} over {n}", key);
            }
        }
    }

    #[test]
    fn every_partition_is_in_range() {
        for i in 0..10_000u32 {
            let key = format!("user-{i}");
            for n in [1, 2, 7, 64] {
                assert!(partition_for_key(key.as_bytes(), n) < n);
            }
        }
    }
}
