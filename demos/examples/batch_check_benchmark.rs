//! What the agent's complete batch check costs, next to the frame-and-CRC check it replaced.
//!
//! `cargo run --release -p demos --example batch_check_benchmark`
//!
//! Builds batches the way the producer does (`--records` records of `--value-size` bytes,
//! LZ4, JSON-like or `--incompressible` values) and times, on one thread, `validate` (length,
//! version and CRC: all an agent checked before) and `verify` (that, decompression into a
//! bounded buffer and a walk of every record). Prints records/s and MB/s of each.

use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use streamhouse_proto::batch::{self, BatchBuilder, Compression, ProducerStamp};

#[derive(Debug, Parser)]
#[command(about = "Cost of the agent's batch check")]
struct Args {
    /// Records per batch (the producer's default batch_size).
    #[arg(long, default_value_t = 1000)]
    records: usize,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    #[arg(long)]
    incompressible: bool,
    /// Time each check for this long.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

/// Runs `check` over the batches for `secs`; returns (batches checked, elapsed).
fn time(batches: &[bytes::Bytes], secs: u64, check: impl Fn(&[u8]) -> bool) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        for b in batches {
            assert!(
                check(black_box(b)),
                "a batch the producer built failed its check"
            );
            n += 1;
        }
    }
    (n, start.elapsed())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let values = demos::values(1024, args.value_size, args.incompressible);
    let now = 1_800_000_000_000;
    let batches: Vec<bytes::Bytes> = (0..64)
        .map(|b| {
            let mut builder = BatchBuilder::new(Compression::Lz4);
            for i in 0..args.records {
                let key = format!("key-{}", (b * args.records + i) % 1000);
                builder.append(
                    now + i as i64,
                    Some(key.as_bytes()),
                    Some(&values[i % 1024]),
                    &[],
                );
            }
            builder
                .finish(ProducerStamp::NONE)
                .ok_or_else(|| anyhow::anyhow!("empty batch"))
        })
        .collect::<anyhow::Result<_>>()?;
    let bytes: usize = batches.iter().map(|b| b.len()).sum();
    let compressed = batch::BatchHeader::peek(&batches[0])?.compression;
    println!(
        "batch_check_benchmark: batches of {} records of {} B ({}), {:.0} KiB each, stored {:?}",
        args.records,
        args.value_size,
        if args.incompressible {
            "random bytes"
        } else {
            "JSON-like text"
        },
        bytes as f64 / batches.len() as f64 / 1024.0,
        compressed,
    );
    let report = |name: &str, (n, elapsed): (u64, Duration)| {
        let secs = elapsed.as_secs_f64();
        let records = n as f64 * args.records as f64;
        println!(
            "  {name:<40} {:>12.0} records/s  {:>8.0} MB/s of batches (one core)",
            records / secs,
            n as f64 * (bytes as f64 / batches.len() as f64) / secs / 1e6
        );
    };
    report(
        "validate (frame + CRC; before)",
        time(&batches, args.seconds, |b| batch::validate(b).is_ok()),
    );
    report(
        "verify (frame + CRC + every record; now)",
        time(&batches, args.seconds, |b| {
            batch::verify(b, 8 << 20).is_ok()
        }),
    );
    Ok(())
}
