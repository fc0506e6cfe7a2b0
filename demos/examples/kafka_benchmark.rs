//! Kafka clients against StreamHouse, beside StreamHouse's own client, on one agent and one
//! run: produce and consume throughput, and acknowledgement latency at a fixed rate, through
//! librdkafka (built from source by the `rdkafka` crate and driven in this process, as an
//! application drives it), each next to the same measurement with `streamhouse-client`.
//!
//! `cargo run --release -p demos --example kafka_benchmark [-- --records 2000000]`
//!
//! Both producers are idempotent, linger 5 ms and compress with LZ4 (librdkafka's LZ4 frames,
//! StreamHouse's LZ4 block); values are the same 100 B of JSON-like text, keyed over 1,000
//! keys with Kafka's murmur2 partitioner, into topics of `--partitions` partitions. The
//! consumers read every record back from the start of every partition. Latency is from the
//! send call to the acknowledgement, at `--rate` records per second for `--seconds`. The
//! target of issue 16 is librdkafka at 70% of StreamHouse's client or better, for produce and
//! for consume.

use std::time::{Duration, Instant};

use clap::Parser;
use demos::{ADMIN_TIMEOUT, CpuUse, Storage, Target, Workload, percentiles_ms, values};
use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};

#[derive(Debug, Parser)]
#[command(about = "librdkafka against StreamHouse, beside StreamHouse's client")]
struct Args {
    #[command(flatten)]
    workload: Workload,
    /// With `--bootstrap`: the agents' Kafka addresses.
    #[arg(long)]
    kafka_bootstrap: Option<String>,
    /// Records per second for the latency runs.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds each latency run lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// A librdkafka setting for its producers and consumer, as `KEY=VALUE`, over the
    /// benchmark's own (repeatable; as kcat's `-X`).
    #[arg(short = 'X', value_parser = demos::rdkafka_setting)]
    rdkafka: Vec<(String, String)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let w = &args.workload;
    anyhow::ensure!(w.records > 0, "--records: at least 1");
    let total = demos::paced_total(args.rate, args.seconds)?;
    let target = Target::connect(w.bootstrap.clone(), Storage::Temporary).await?;
    let kafka = args
        .kafka_bootstrap
        .clone()
        .or_else(|| target.kafka_bootstrap.clone())
        .ok_or_else(|| anyhow::anyhow!("give --kafka-bootstrap with --bootstrap"))?;
    // librdkafka judges the -X settings when a client is made: make both kinds now, so that
    // a wrong one fails here and not after streamhouse-client's runs.
    let kafka = librdkafka::Client {
        bootstrap: kafka,
        settings: args.rdkafka.clone(),
    };
    kafka.check()?;
    let admin =
        Admin::connect_with(&target.bootstrap, ADMIN_TIMEOUT, target.security.clone()).await?;
    let run = std::process::id();
    let topic = |what: &str| format!("kafka-bench-{what}-{run}");
    for t in ["ours", "theirs", "ours-lat", "theirs-lat"] {
        admin
            .create_topic(NewTopic::new(topic(t), w.partitions))
            .await?;
    }
    let vals = values(1024, w.value_size, false);
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();

    // Throughput, each client producing then reading back its own records (so both read
    // from a warm cache): StreamHouse's client first, then librdkafka's from a file of the
    // same records.
    let producer = Producer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .build()
        .await?;
    let hz = demos::tick_hz();
    let cpu = CpuUse::now(hz)?;
    let start = Instant::now();
    for i in 0..w.records {
        let key = &keys[(i % 1000) as usize];
        producer
            .send(
                &topic("ours"),
                Some(key.as_bytes()),
                &vals[(i % 1024) as usize],
            )
            .await?;
    }
    producer.flush().await?;
    let ours_produce = w.records as f64 / start.elapsed().as_secs_f64();
    let ours_produce_cpu = CpuUse::now(hz)?.since(cpu);

    // Every record back from the start of every partition.
    let mut consumer = Consumer::builder()
        .bootstrap(&target.bootstrap)
        .security(target.security.clone())
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(10_000)
        .max_partition_fetch_bytes(4 * 1024 * 1024)
        .build()
        .await?;
    let cpu = CpuUse::now(hz)?;
    let start = Instant::now();
    consumer
        .assign(
            (0..w.partitions)
                .map(|p| TopicPartition::new(topic("ours"), p))
                .collect(),
        )
        .await?;
    let mut n = 0u64;
    while n < w.records {
        n += consumer.poll(Duration::from_secs(5)).await?.len() as u64;
        anyhow::ensure!(start.elapsed() < Duration::from_secs(300), "read only {n}");
    }
    let ours_consume = w.records as f64 / start.elapsed().as_secs_f64();
    let ours_consume_cpu = CpuUse::now(hz)?.since(cpu);
    consumer.close().await?;

    let cpu = CpuUse::now(hz)?;
    let theirs_produce = {
        let (kafka, topic, keys, vals) =
            (kafka.clone(), topic("theirs"), keys.clone(), vals.clone());
        let records = w.records;
        tokio::task::spawn_blocking(move || {
            librdkafka::produce(&kafka, &topic, records, &keys, &vals)
        })
        .await??
    };
    let theirs_produce_cpu = CpuUse::now(hz)?.since(cpu);
    let cpu = CpuUse::now(hz)?;
    let theirs_consume = {
        let (kafka, topic) = (kafka.clone(), topic("theirs"));
        let (records, partitions) = (w.records, w.partitions);
        tokio::task::spawn_blocking(move || {
            librdkafka::consume(&kafka, &topic, partitions, records)
        })
        .await??
    };
    let theirs_consume_cpu = CpuUse::now(hz)?.since(cpu);

    // Acknowledgement latency at a fixed rate: ours, then librdkafka's.
    let (tx, collector) = demos::ack_timer();
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / args.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let key = &keys[(i % 1000) as usize];
        let sent = Instant::now();
        let d = producer
            .send(
                &topic("ours-lat"),
                Some(key.as_bytes()),
                &vals[(i % 1024) as usize],
            )
            .await?;
        let _ = tx.send((sent, d));
    }
    drop(tx);
    let ours_latency = collector.await??;
    producer.close().await?;

    let theirs_latency = {
        let (kafka, topic, keys, vals) = (
            kafka.clone(),
            topic("theirs-lat"),
            keys.clone(),
            vals.clone(),
        );
        let (rate, seconds) = (args.rate, args.seconds);
        tokio::task::spawn_blocking(move || {
            librdkafka::latency(&kafka, &topic, rate, seconds, &keys, &vals)
        })
        .await??
    };

    println!("kafka_benchmark: {}, idempotent, LZ4", w.describe());
    let ratio = |a: f64, b: f64| 100.0 * a / b;
    println!(
        "  produce:  streamhouse-client {ours_produce:.0} records/s, librdkafka \
         {theirs_produce:.0} records/s: {:.0}% (target >= 70%)",
        ratio(theirs_produce, ours_produce)
    );
    println!(
        "  consume:  streamhouse-client {ours_consume:.0} records/s, librdkafka \
         {theirs_consume:.0} records/s: {:.0}% (target >= 70%)",
        ratio(theirs_consume, ours_consume)
    );
    // Where the time went: with the agent in this process, its threads' CPU and the rest
    // (the client, and for librdkafka its own threads), per run.
    if w.bootstrap.is_none() {
        let line = |what: &str, ours: CpuUse, theirs: CpuUse| {
            println!(
                "  {what} {}; librdkafka's run {}",
                ours.describe(),
                theirs.describe()
            )
        };
        line(
            "produce:  streamhouse-client's run",
            ours_produce_cpu,
            theirs_produce_cpu,
        );
        line(
            "consume:  streamhouse-client's run",
            ours_consume_cpu,
            theirs_consume_cpu,
        );
    }
    println!(
        "  ack latency at {} records/s for {} s:",
        args.rate, args.seconds
    );
    println!(
        "    streamhouse-client:           {}",
        percentiles_ms(&ours_latency)
    );
    println!(
        "    librdkafka {}:             {}",
        librdkafka::version(),
        percentiles_ms(&theirs_latency)
    );
    println!("{}", target.peak_rss_line());
    target.shutdown().await?;
    Ok(())
}

/// librdkafka driven the way an application drives it: `rdkafka`'s `BaseProducer` and
/// `BaseConsumer`, polled on this thread, with no per-record work beyond the client's own.
mod librdkafka {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::message::DeliveryResult;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};
    use rdkafka::{ClientContext, Offset, TopicPartitionList};

    /// librdkafka's version, as it reports it.
    pub fn version() -> String {
        rdkafka::util::get_rdkafka_version().1
    }

    /// Counts delivery reports, and times them from the send time each record carries: its
    /// opaque, in nanoseconds since `epoch` plus one (0 for a record not timed).
    struct Reports {
        epoch: Instant,
        delivered: Mutex<(u64, Vec<String>)>,
        latency: Mutex<hdrhistogram::Histogram<u64>>,
    }

    impl ClientContext for Reports {}

    impl ProducerContext for Reports {
        type DeliveryOpaque = usize;

        fn delivery(&self, result: &DeliveryResult<'_>, sent: usize) {
            let mut d = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(_) => {
                    d.0 += 1;
                    if sent > 0 {
                        let sent = self.epoch + Duration::from_nanos(sent as u64 - 1);
                        let us = sent.elapsed().as_micros() as u64;
                        let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
                        h.saturating_record(us);
                    }
                }
                Err((e, _)) if d.1.len() < 10 => d.1.push(e.to_string()),
                Err(_) => {}
            }
        }
    }

    /// Where librdkafka connects, and the settings given with `-X`.
    #[derive(Clone, Debug)]
    pub struct Client {
        pub bootstrap: String,
        pub settings: Vec<(String, String)>,
    }

    impl Client {
        /// `defaults`, then the `-X` settings over them.
        fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &self.bootstrap);
            for (k, v) in defaults {
                c.set(*k, *v);
            }
            for (k, v) in &self.settings {
                c.set(k, v);
            }
            c
        }

        /// Makes a producer and a consumer with these settings, and drops them.
        pub fn check(&self) -> anyhow::Result<()> {
            producer(self)?;
            consumer(self, "check")?;
            Ok(())
        }
    }

    /// librdkafka's refusal of a setting as one line naming it; other errors as they are.
    fn made<T>(r: rdkafka::error::KafkaResult<T>) -> anyhow::Result<T> {
        r.map_err(|e| match e {
            KafkaError::ClientConfig(_, why, key, value) => {
                let why = why.lines().next().unwrap_or_default().trim().to_string();
                anyhow::anyhow!("-X {key}={value}: {why}")
            }
            e => anyhow::anyhow!("librdkafka: {e}"),
        })
    }

    /// The producer both runs use: idempotent, linger 5 ms, LZ4, Kafka's murmur2 partitioner
    /// (as `streamhouse-client`'s).
    fn producer(client: &Client) -> anyhow::Result<BaseProducer<Reports>> {
        let reports = Reports {
            epoch: Instant::now(),
            delivered: Mutex::new((0, Vec::new())),
            latency: Mutex::new(hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3)?),
        };
        made(
            client
                .config(&[
                    ("enable.idempotence", "true"),
                    ("linger.ms", "5"),
                    ("compression.codec", "lz4"),
                    ("partitioner", "murmur2_random"),
                ])
                .create_with_context(reports),
        )
    }

    /// Sends `record`, serving delivery reports while librdkafka's queue is full.
    fn send(
        p: &BaseProducer<Reports>,
        mut record: BaseRecord<'_, [u8], [u8], usize>,
    ) -> anyhow::Result<()> {
        loop {
            match p.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    p.poll(Duration::from_millis(1));
                }
                Err((e, _)) => anyhow::bail!("librdkafka refused a record: {e}"),
            }
        }
    }

    /// Waits for every record sent to be reported, and fails on any that was not delivered.
    fn finish(p: &BaseProducer<Reports>, sent: u64) -> anyhow::Result<()> {
        p.flush(Duration::from_secs(120))?;
        let d = p
            .context()
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        anyhow::ensure!(
            d.1.is_empty(),
            "librdkafka: records not delivered: {:?}",
            d.1
        );
        anyhow::ensure!(
            d.0 == sent,
            "librdkafka: {} of {sent} records delivered",
            d.0
        );
        Ok(())
    }

    /// Produce throughput: `records` records as fast as librdkafka takes them, in records/s
    /// from the first send to the last acknowledgement.
    pub fn produce(
        client: &Client,
        topic: &str,
        records: u64,
        keys: &[String],
        vals: &[Vec<u8>],
    ) -> anyhow::Result<f64> {
        let p = producer(client)?;
        warm_up(&p, topic, keys, vals)?;
        let start = Instant::now();
        for i in 0..records {
            let key = keys[(i % 1000) as usize].as_bytes();
            let value = vals[(i % 1024) as usize].as_slice();
            send(
                &p,
                BaseRecord::with_opaque_to(topic, 0).key(key).payload(value),
            )?;
            if i % 1024 == 0 {
                p.poll(Duration::ZERO);
            }
        }
        finish(&p, records + WARM_UP)?;
        Ok(records as f64 / start.elapsed().as_secs_f64())
    }

    /// Records sent before a run is timed: librdkafka's idempotent producer waits for its
    /// producer id at start, which is start-up, not throughput or acknowledgement latency.
    const WARM_UP: u64 = 8;

    fn warm_up(
        p: &BaseProducer<Reports>,
        topic: &str,
        keys: &[String],
        vals: &[Vec<u8>],
    ) -> anyhow::Result<()> {
        for key in &keys[..WARM_UP as usize] {
            send(
                p,
                BaseRecord::with_opaque_to(topic, 0)
                    .key(key.as_bytes())
                    .payload(&vals[0][..]),
            )?;
        }
        finish(p, WARM_UP)
    }

    /// Acknowledgement latency at `rate` records/s for `seconds`: each record timed from its
    /// send to its delivery report, which `poll` serves while waiting for the next send.
    pub fn latency(
        client: &Client,
        topic: &str,
        rate: u64,
        seconds: u64,
        keys: &[String],
        vals: &[Vec<u8>],
    ) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
        let p = producer(client)?;
        warm_up(&p, topic, keys, vals)?;
        p.context()
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reset();
        let total = rate * seconds;
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            p.poll(due.saturating_duration_since(Instant::now()));
            let key = keys[(i % 1000) as usize].as_bytes();
            let value = vals[(i % 1024) as usize].as_slice();
            let sent = p.context().epoch.elapsed().as_nanos() as usize + 1;
            send(
                &p,
                BaseRecord::with_opaque_to(topic, sent)
                    .key(key)
                    .payload(value),
            )?;
        }
        finish(&p, total + WARM_UP)?;
        let h = p
            .context()
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(h.clone())
    }

    /// The consumer of the consume run: reading by assignment, committing nothing, fetching
    /// 4 MiB a partition (as `streamhouse-client`'s).
    fn consumer(client: &Client, topic: &str) -> anyhow::Result<BaseConsumer> {
        let group = format!("{topic}-reader");
        made(
            client
                .config(&[
                    ("group.id", &group),
                    ("enable.auto.commit", "false"),
                    ("max.partition.fetch.bytes", "4194304"),
                    // librdkafka's default prefetch (100,000 messages for the whole
                    // consumer, then a 1 s back-off) holds less than one fetch of 8
                    // partitions at 4 MiB of LZ4: it would measure the back-off, at about
                    // 0.5M records/s.
                    ("queued.min.messages", "1000000"),
                ])
                .create(),
        )
    }

    /// Consume throughput: every record of `topic` from the start of each partition, in
    /// records/s from the assignment to the last record.
    pub fn consume(
        client: &Client,
        topic: &str,
        partitions: u32,
        records: u64,
    ) -> anyhow::Result<f64> {
        let c = consumer(client, topic)?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment.add_partition_offset(topic, p as i32, Offset::Beginning)?;
        }
        // Warm, as `streamhouse-client`'s consumer is when its clock starts: connected, and
        // knowing the partitions' leaders (else librdkafka retries the offset lookup on a
        // 500 ms timer).
        c.fetch_metadata(Some(topic), Duration::from_secs(30))?;
        let start = Instant::now();
        c.assign(&assignment)?;
        let mut n = 0u64;
        while n < records {
            match c.poll(Duration::from_secs(5)) {
                Some(Ok(_)) => n += 1,
                Some(Err(e)) => anyhow::bail!("librdkafka's consumer failed: {e}"),
                None => anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(300),
                    "librdkafka read only {n} of {records} records"
                ),
            }
        }
        Ok(records as f64 / start.elapsed().as_secs_f64())
    }
}
