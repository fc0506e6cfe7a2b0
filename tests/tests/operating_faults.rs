//! Operating faults: settings an operator gets wrong fail at start with one line naming the
//! setting, the cause and the remedy; a second agent with a live agent's id is refused; a
//! missing object never moves a reader; garbage collection never deletes what a slow commit
//! or swap will reference; memory stays bounded with the object store stalled.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use streamhouse_agent::testing::{FaultyStore, FreshPostgres, service_env};
use streamhouse_agent::{Agent, AgentConfig, object_store};
use streamhouse_client::{Admin, Consumer, NewTopic, OffsetReset, Producer, TopicPartition};
use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};
use streamhouse_proto::pb::ErrorCode;
use streamhouse_tests::proxy::{Mode, Proxy};
use streamhouse_tests::{AgentProcess, Deadline, data_dir, raw, start_failure, wait_until};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");

/// The agent's report: exit status 1 and exactly one line on stderr, holding every `part`.
fn assert_one_line(what: &str, status: std::process::ExitStatus, stderr: &str, parts: &[&str]) {
    assert_eq!(
        status.code(),
        Some(1),
        "{what}: exit status; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line, got: {stderr}");
    let line = lines[0];
    assert!(
        line.starts_with("streamhouse-agent: error: "),
        "{what}: {line}"
    );
    assert!(
        line.len() < 600,
        "{what}: a line a person reads, not a dump: {line}"
    );
    for part in parts {
        assert!(line.contains(part), "{what}: {part:?} missing from: {line}");
    }
}

fn sqlite(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("metadata.db").display())
}

/// The worst lease settings an operator could give (none, below the floor, past an hour, the
/// largest number a flag takes; a heartbeat of 0 or longer than half the TTL) fail at start,
/// in one line naming the setting and its bounds, before anything is opened.
#[test]
fn lease_settings_out_of_range_fail_at_start() {
    let (_guard, dir) = data_dir();
    let storage = format!("file://{}", dir.join("objects").display());
    for (flags, parts) in [
        (
            ["--lease-ttl-ms", "0"],
            ["lease_ttl_ms 0", "between 300 and 3600000"],
        ),
        (
            ["--lease-ttl-ms", "299"],
            ["lease_ttl_ms 299", "between 300"],
        ),
        (
            ["--lease-ttl-ms", "3600001"],
            ["lease_ttl_ms 3600001", "3600000"],
        ),
        (
            ["--lease-ttl-ms", "18446744073709551615"],
            ["lease_ttl_ms 18446744073709551615", "3600000"],
        ),
        (
            ["--heartbeat-ms", "0"],
            ["heartbeat_ms 0", "at most half of lease_ttl_ms"],
        ),
        (
            ["--heartbeat-ms", "501"],
            ["heartbeat_ms 501", "at most half of lease_ttl_ms 1000"],
        ),
    ] {
        let (status, err) = start_failure(BIN, &sqlite(&dir), &storage, &flags);
        assert_one_line(&flags.join(" "), status, &err, &parts);
    }
    assert!(
        !dir.join("metadata.db").exists(),
        "a refused setting opened the metadata store"
    );
}

/// Kafka listener settings that cannot work: an advertised address without a listener, one
/// Kafka clients could not dial, security the listener would silently not apply, and a port
/// taken or not an address.
#[test]
fn kafka_settings_that_cannot_work_fail_at_start() {
    let (_guard, dir) = data_dir();
    let storage = format!("file://{}", dir.join("objects").display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "a-token-of-thirty-two-characters-at-least\n").unwrap();
    let tokens = tokens.display().to_string();
    // A certificate and a key that is not its own: PEM both, but no usable pair.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("agent.pem"), cert.pem()).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
    let cert = dir.join("agent.pem").display().to_string();
    let other_key = dir.join("other.key").display().to_string();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--kafka-advertise", "h:9092"],
            vec!["kafka_advertise", "without kafka_listen"],
        ),
        (
            vec![
                "--kafka-listen",
                "127.0.0.1:0",
                "--kafka-advertise",
                "nohost",
            ],
            vec!["kafka_advertise \"nohost\"", "HOST:PORT"],
        ),
        (
            vec!["--kafka-listen", "127.0.0.1:0", "--kafka-advertise", "h:0"],
            vec!["kafka_advertise \"h:0\"", "port of 1 to 65535"],
        ),
        (
            vec![
                "--kafka-listen",
                "127.0.0.1:0",
                "--kafka-advertise",
                "h:65536",
            ],
            vec!["kafka_advertise \"h:65536\"", "port of 1 to 65535"],
        ),
        (
            vec![
                "--kafka-listen",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &other_key,
                "--auth-tokens-file",
                &tokens,
            ],
            vec!["tls_cert and tls_key do not make a usable pair"],
        ),
        (
            vec!["--group-initial-rebalance-delay-ms", "300001"],
            vec!["group_initial_rebalance_delay_ms 300001", "5 minutes"],
        ),
        (
            vec![
                "--group-min-session-timeout-ms",
                "6000",
                "--group-max-session-timeout-ms",
                "5999",
            ],
            vec!["group_min_session_timeout_ms 6000", "above", "5999"],
        ),
        (
            vec!["--kafka-listen", &taken],
            vec!["kafka_listen", "cannot listen", "choose another"],
        ),
        (
            vec!["--kafka-listen", "not-an-address"],
            vec!["kafka_listen not-an-address", "cannot listen"],
        ),
    ];
    for (flags, parts) in cases {
        let (status, err) = start_failure(BIN, &sqlite(&dir), &storage, &flags);
        assert_one_line(&flags.join(" "), status, &err, &parts);
    }
}

#[test]
fn a_directory_that_cannot_be_written_fails_at_start() {
    let (_guard, dir) = data_dir();
    // A file where a directory should be: no one, root included, can create under it.
    std::fs::write(dir.join("blocker"), b"x").unwrap();
    let storage = format!("file://{}/objects", dir.join("blocker").display());
    let (status, err) = start_failure(BIN, &sqlite(&dir), &storage, &[]);
    assert_one_line(
        "uncreatable directory",
        status,
        &err,
        &["directory", "cannot be created", "STREAMHOUSE_STORAGE"],
    );
    // A directory that exists but takes no files (procfs refuses even root).
    let (status, err) = start_failure(BIN, &sqlite(&dir), "file:///proc/1", &[]);
    assert_one_line(
        "unwritable directory",
        status,
        &err,
        &[
            "directory \"/proc/1\" is not writable",
            "--storage / STREAMHOUSE_STORAGE",
            "write access",
        ],
    );
}

#[test]
fn a_session_directory_that_cannot_be_created_fails_at_start() {
    let (_guard, dir) = data_dir();
    let storage = format!("file://{}/objects", dir.display());
    // A file where the SQLite sessions' directory should be.
    std::fs::write(dir.join("metadata.db.sessions"), b"x").unwrap();
    let (status, err) = start_failure(BIN, &sqlite(&dir), &storage, &[]);
    assert_one_line(
        "uncreatable session directory",
        status,
        &err,
        &[
            "cannot open the agent's session",
            "metadata.db.sessions",
            "(--metadata / STREAMHOUSE_METADATA)",
            "creatable and writable",
        ],
    );
}

#[test]
fn a_metadata_url_that_does_not_connect_fails_at_start() {
    let (_guard, dir) = data_dir();
    let storage = format!("file://{}/objects", dir.display());
    // Nothing listens on port 1.
    let (status, err) = start_failure(
        BIN,
        "postgres://streamhouse:secret@127.0.0.1:1/db",
        &storage,
        &[],
    );
    assert_one_line(
        "unreachable PostgreSQL",
        status,
        &err,
        &[
            "metadata store postgres://streamhouse:****@127.0.0.1:1/db",
            "(--metadata / STREAMHOUSE_METADATA)",
            "check the host and port",
        ],
    );
    assert!(
        !err.contains("secret"),
        "the password is never printed: {err}"
    );
    let (status, err) = start_failure(BIN, "mysql://127.0.0.1/db", &storage, &[]);
    assert_one_line(
        "unknown scheme",
        status,
        &err,
        &["is not a metadata URL", "sqlite://PATH or postgres://"],
    );
}

#[tokio::test]
async fn a_database_that_does_not_exist_fails_at_start() {
    let Some(admin_url) = service_env("STREAMHOUSE_TEST_POSTGRES") else {
        return;
    };
    let (_guard, dir) = data_dir();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path("/streamhouse_no_such_database");
    let storage = format!("file://{}/objects", dir.display());
    let (status, err) = start_failure(BIN, url.as_str(), &storage, &[]);
    assert_one_line(
        "missing database",
        status,
        &err,
        &[
            "refused the connection",
            "streamhouse_no_such_database",
            "does not exist",
            "STREAMHOUSE_METADATA",
        ],
    );
}

#[tokio::test]
async fn a_missing_bucket_fails_at_start_unless_asked_to_create_it() {
    let Some(endpoint) = service_env("STREAMHOUSE_TEST_S3_ENDPOINT") else {
        return;
    };
    let (_guard, dir) = data_dir();
    let bucket = format!("sh-missing-{:08x}", rand::random::<u32>());
    let storage = format!("s3://{bucket}/p?endpoint={endpoint}&region=us-east-1");
    let (status, err) = start_failure(BIN, &sqlite(&dir), &storage, &[]);
    assert_one_line(
        "missing bucket",
        status,
        &err,
        &[
            &format!("bucket \"{bucket}\" does not exist at {endpoint}"),
            "(--storage / STREAMHOUSE_STORAGE)",
            "create it, or start with --create-bucket",
        ],
    );
    // An endpoint where nothing listens.
    let nowhere = format!("s3://{bucket}/p?endpoint=http://127.0.0.1:1&region=us-east-1");
    let (status, err) = start_failure(BIN, &sqlite(&dir), &nowhere, &[]);
    assert_one_line(
        "unreachable S3",
        status,
        &err,
        &[
            "cannot be checked",
            "cannot reach the server",
            "STREAMHOUSE_STORAGE",
        ],
    );
    // With --create-bucket the agent makes it and serves.
    let agent = AgentProcess::start_with(BIN, &sqlite(&dir), &storage, &["--create-bucket"]);
    let store = object_store::S3Store::open(&storage).await.unwrap();
    assert!(store.bucket_exists().await.unwrap());
    assert!(agent.terminate().success());
}

#[test]
fn an_id_held_by_a_live_agent_is_refused() {
    let (_guard, dir) = data_dir();
    let storage = format!("file://{}/objects", dir.join("objects").display());
    let first = AgentProcess::start_with(BIN, &sqlite(&dir), &storage, &["--id", "twin"]);
    let (status, err) = start_failure(BIN, &sqlite(&dir), &storage, &["--id", "twin"]);
    assert_one_line(
        "duplicate id",
        status,
        &err,
        &[
            &format!(
                "agent id \"twin\" is held by a live agent at {}",
                first.addr
            ),
            "(--id / STREAMHOUSE_AGENT_ID)",
            "give this one another id",
        ],
    );
    // Killed without a goodbye, its registration stops heartbeating: a new process with the
    // same id (a restart) takes over after watching it for two heartbeats.
    first.kill9();
    let started = std::time::Instant::now();
    let again = AgentProcess::start_with(BIN, &sqlite(&dir), &storage, &["--id", "twin"]);
    eprintln!(
        "restart with the same id served after {:?}",
        started.elapsed()
    );
    assert!(again.terminate().success());
}

fn batch(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.append(
        streamhouse_tests::now_ms(),
        None,
        Some(value.as_bytes()),
        &[],
    );
    b.finish(ProducerStamp::NONE).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_reported_and_never_moves_a_reader() {
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &[]);
    let mut c = raw::connect(&agent.addr).await;
    raw::create_topic(&mut c, "holes", 1).await;
    // Three produces, three flushes, three objects.
    for v in ["a", "b", "c"] {
        let r = raw::produce(&mut c, "holes", 0, vec![batch(v)]).await;
        assert_eq!(raw::code(&r.error), ErrorCode::Ok);
    }
    assert!(agent.terminate().success());
    let data = dir.join("objects").join("data");
    let mut objects: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    objects.sort();
    assert_eq!(objects.len(), 3, "{objects:?}");
    std::fs::remove_file(data.join(&objects[1])).unwrap();

    // A new process: nothing of the object in its cache.
    let agent = AgentProcess::start(BIN, &dir, &[]);
    let mut c = raw::connect(&agent.addr).await;
    let f = raw::fetch(&mut c, "holes", 0, 0, 1 << 20, 0).await;
    assert_eq!(raw::code(&f.error), ErrorCode::Ok);
    assert_eq!(
        f.base_offsets,
        vec![0],
        "what comes before the hole is served"
    );
    let f = raw::fetch(&mut c, "holes", 0, 1, 1 << 20, 0).await;
    assert_eq!(raw::code(&f.error), ErrorCode::StorageUnavailable, "{f:?}");
    let message = &f.error.as_ref().unwrap().message;
    assert!(
        message.contains(&objects[1]) && message.contains("missing from the object store"),
        "{message}"
    );

    // A consumer that would reset to the end on an out-of-range offset stays put.
    let tp = TopicPartition::new("holes", 0);
    let mut consumer = Consumer::builder()
        .bootstrap(&agent.addr)
        .auto_offset_reset(OffsetReset::Latest)
        .build()
        .await
        .unwrap();
    consumer.assign(vec![tp.clone()]).await.unwrap();
    consumer.seek(&tp, 0).await.unwrap();
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for r in consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap_or_default()
        {
            seen.push(r.offset);
        }
    }
    assert_eq!(seen, vec![0], "offset 2 must not be reached by skipping 1");
    assert_eq!(consumer.position(&tp), Some(1));
}

/// Retention, compaction and GC every few hundred ms with a 1 s grace, on SQLite and a
/// directory wrapped in a store that delays puts on command.
async fn gc_agent(
    dir: &std::path::Path,
    metadata: Option<String>,
) -> (
    std::sync::Arc<FaultyStore>,
    String,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let mut config =
        AgentConfig::embedded(dir, "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    streamhouse_tests::fast_maintenance(&mut config);
    if let Some(m) = metadata {
        config.metadata = m;
    }
    let store = FaultyStore::new(object_store::open(&config.storage).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent = Agent::start_with_store(config, listener, store.clone())
        .await
        .unwrap();
    let addr = agent.local_addr().to_string();
    let metrics = agent.metrics_addr().expect("metrics on");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent.serve(async {
        let _ = stopped.await;
    }));
    (store, addr, metrics, stop)
}

/// Sends `n` records in a few bursts and returns what was acknowledged, by partition.
async fn produce_acked(addr: &str, topic: &str, n: usize) -> BTreeMap<u32, BTreeMap<i64, String>> {
    let producer = Producer::builder()
        .bootstrap(addr)
        .delivery_timeout_ms(120_000)
        .build()
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..n {
        let v = format!("{i:06}-{}", "x".repeat(200));
        deliveries.push((
            v.clone(),
            producer.send(topic, None, v.as_bytes()).await.unwrap(),
        ));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut acked: BTreeMap<u32, BTreeMap<i64, String>> = BTreeMap::new();
    for (v, d) in deliveries {
        let m = d.await.unwrap();
        assert!(
            acked
                .entry(m.partition)
                .or_default()
                .insert(m.offset, v)
                .is_none()
        );
    }
    producer.close().await.unwrap();
    acked
}

/// Reads every partition from its log start and checks the records acknowledged are there.
async fn assert_readable(addr: &str, topic: &str, acked: &BTreeMap<u32, BTreeMap<i64, String>>) {
    let mut c = raw::connect(addr).await;
    for (p, records) in acked {
        let mut offset = 0;
        let mut got = BTreeMap::new();
        let last = *records.keys().last().unwrap();
        while offset <= last {
            let f = raw::fetch(&mut c, topic, *p, offset, 1 << 20, 0).await;
            assert_eq!(
                raw::code(&f.error),
                ErrorCode::Ok,
                "partition {p} at {offset}: {f:?}"
            );
            for (bytes, base) in f.batches.iter().zip(&f.base_offsets) {
                let batch = streamhouse_proto::batch::Batch::parse(bytes.clone()).unwrap();
                for r in batch.records(*base).unwrap() {
                    let value = r.value.expect("a value");
                    got.insert(r.offset, String::from_utf8(value.to_vec()).unwrap());
                    offset = offset.max(r.offset + 1);
                }
            }
        }
        for (o, v) in records {
            assert_eq!(got.get(o), Some(v), "partition {p} offset {o}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_never_deletes_what_a_slow_commit_or_swap_references() {
    let (_guard, dir) = data_dir();
    let (store, addr, metrics, stop) = gc_agent(&dir, None).await;
    Admin::connect(&addr)
        .await
        .unwrap()
        .create_topic(NewTopic::new("gc", 2))
        .await
        .unwrap();
    // Puts that take longer than half the 1 s grace: flushes and compactions past their
    // deadline, whose objects GC may take for orphans. Their commits must be refused.
    store.delay_puts("data/", 3, Duration::from_millis(800));
    store.delay_puts("segments/", 2, Duration::from_millis(800));
    let acked = produce_acked(&addr, "gc", 3_000).await;
    // Compaction runs, GC passes run (every 200 ms) well past the grace.
    wait_until("the delayed puts", Duration::from_secs(60), || {
        store.delayed.load(std::sync::atomic::Ordering::SeqCst) >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_readable(&addr, "gc", &acked).await;
    // The late ones were refused by the store (the commit deadline, checked in the
    // transaction), not committed after all.
    use streamhouse_tests::metrics::metric;
    let late_flushes = metric(metrics, "streamhouse_metadata_commit_errors_total");
    let late_swaps = metric(metrics, "streamhouse_compaction_errors_total");
    assert!(late_flushes >= 3.0, "{late_flushes} flush commits refused");
    assert!(late_swaps >= 2.0, "{late_swaps} swaps refused");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_held_in_the_network_past_the_grace_never_lands() {
    let Some(db) = FreshPostgres::create().await else {
        return;
    };
    let (proxy, url) = Proxy::in_front_of(&db.url).await;
    let (_guard, dir) = data_dir();
    let (_store, addr, _metrics, stop) = gc_agent(&dir, Some(url)).await;
    Admin::connect(&addr)
        .await
        .unwrap()
        .create_topic(NewTopic::new("gc", 2))
        .await
        .unwrap();
    // For 3 s every COMMIT is held for 2.5 s, longer than the client waits (1.5 s) and than
    // the whole 1 s grace: without the server-side idle-transaction timeout they would land
    // after GC deleted their objects as orphans, and index rows would point at nothing.
    let producing = tokio::spawn({
        let addr = addr.clone();
        async move { produce_acked(&addr, "gc", 3_000).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.delay_commits(usize::MAX, Duration::from_millis(2_500));
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.delay_commits(0, Duration::ZERO);
    let acked = producing.await.unwrap();
    assert!(proxy.commits_delayed() > 0);
    // GC passes run (every 200 ms) well past the held COMMITs.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_readable(&addr, "gc", &acked).await;
    proxy.set(Mode::Pass);
    let _ = stop.send(());
    db.drop_db().await;
}

const MIB: u64 = 1024 * 1024;

/// A batch of one record of `len` bytes that do not compress.
fn big_batch(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let value: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut b = BatchBuilder::new(Compression::None);
    b.append(streamhouse_tests::now_ms(), None, Some(&value), &[]);
    b.finish(ProducerStamp::NONE).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_the_object_store_stalls() {
    let Some(endpoint) = service_env("STREAMHOUSE_TEST_S3_ENDPOINT") else {
        return;
    };
    let (proxy, proxied) = Proxy::in_front_of(&endpoint).await;
    let (_guard, dir) = data_dir();
    let bucket = format!("sh-mem-{:08x}", rand::random::<u32>());
    let proxied = proxied.trim_end_matches('/');
    let storage = format!("s3://{bucket}/p?endpoint={proxied}&region=us-east-1");
    const MAX_BUFFERED: u64 = 32 * MIB;
    let agent = AgentProcess::start_with(
        BIN,
        &sqlite(&dir),
        &storage,
        &[
            "--create-bucket",
            "--max-buffered-bytes",
            &MAX_BUFFERED.to_string(),
        ],
    );
    let mut c = raw::connect(&agent.addr).await;
    raw::create_topic(&mut c, "mem", 4).await;
    let r = raw::produce(&mut c, "mem", 0, vec![big_batch(1000, 1)]).await;
    assert_eq!(raw::code(&r.error), ErrorCode::Ok);
    let before = agent.peak_rss();

    // The object store stops answering; 1 GiB is offered in requests of 1 MiB (4 batches
    // of 256 KiB, one per partition), up to 48 at a time.
    proxy.set(Mode::Stall);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(48));
    let throttled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let batches: Vec<Bytes> = (0..4).map(|p| big_batch(256 * 1024 - 100, p + 2)).collect();
    let mut tasks = Vec::new();
    for _ in 0..1024 {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let mut c = c.clone();
        let batches = batches.clone();
        let throttled = throttled.clone();
        tasks.push(tokio::spawn(async move {
            let parts = (0..4u32)
                .map(|p| ("mem", p, vec![batches[p as usize].clone()]))
                .collect();
            let resp = raw::produce_many(&mut c, parts).await;
            for r in &resp.results {
                if raw::code(&r.error) == ErrorCode::Throttled {
                    throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            drop(permit);
        }));
        if tasks.len() % 64 == 0 {
            // Let the throttled answers come back: the offer is paced by the agent.
            tokio::task::yield_now().await;
        }
    }
    let throttled = throttled.load(std::sync::atomic::Ordering::Relaxed);
    let during = agent.peak_rss();
    eprintln!(
        "1 GiB offered with the store stalled: {throttled} of 4096 partition writes refused \
         THROTTLED; agent peak RSS {} MiB before, {} MiB after (bound {} MiB buffered)",
        before / MIB,
        during / MIB,
        MAX_BUFFERED / MIB
    );
    assert!(throttled > 3000, "the buffer bound refused the excess");
    // What is held: the buffer and the flush under way (at most MAX_BUFFERED together), the
    // flush object being put (a copy of the flush), and the requests being decoded.
    let bound = before + 2 * MAX_BUFFERED + 48 * MIB + 48 * MIB;
    assert!(
        during <= bound,
        "peak RSS {} MiB above the bound {} MiB",
        during / MIB,
        bound / MIB
    );
    proxy.set(Mode::Pass);
    for t in tasks {
        t.await.unwrap();
    }
    // Writes go through again once the store answers.
    let deadline = Deadline::within(Duration::from_secs(60));
    loop {
        let r = raw::produce(&mut c, "mem", 1, vec![big_batch(1000, 9)]).await;
        if raw::code(&r.error) == ErrorCode::Ok {
            break;
        }
        deadline.check(format_args!("writes to resume (last answer {r:?})"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_500_partitions_keeps_memory_near_the_cache_size() {
    const CACHE: u64 = 16 * MIB;
    const PARTITIONS: u32 = 500;
    let (_guard, dir) = data_dir();
    let agent = AgentProcess::start(BIN, &dir, &["--cache-bytes", &CACHE.to_string()]);
    let mut c = raw::connect(&agent.addr).await;
    raw::create_topic(&mut c, "wide", PARTITIONS).await;
    let base = agent.peak_rss();
    // 200 KiB to every partition, 25 partitions a request: 100 MB in flush objects of
    // several partitions each, whose chunks the writer caches.
    for first in (0..PARTITIONS).step_by(25) {
        let parts = (first..first + 25)
            .map(|p| ("wide", p, vec![big_batch(200 * 1024, u64::from(p) + 1)]))
            .collect();
        let resp = raw::produce_many(&mut c, parts).await;
        for r in &resp.results {
            assert_eq!(raw::code(&r.error), ErrorCode::Ok, "{r:?}");
        }
    }
    for p in 0..PARTITIONS {
        let f = raw::fetch(&mut c, "wide", p, 0, 1 << 20, 0).await;
        assert_eq!(raw::code(&f.error), ErrorCode::Ok);
        assert_eq!(f.batches.len(), 1);
    }
    let peak = agent.peak_rss();
    eprintln!(
        "100 MB written to and read from {PARTITIONS} partitions with a {} MiB cache: agent \
         peak RSS {} MiB, {} MiB after start",
        CACHE / MIB,
        peak / MIB,
        base / MIB
    );
    let bound = base + CACHE + 48 * MIB;
    assert!(
        peak <= bound,
        "peak RSS {} MiB above the bound {} MiB",
        peak / MIB,
        bound / MIB
    );
}

/// Sends one plain HTTP request and returns the status line.
fn http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).expect("request sent");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_gone_while_running_is_reported_in_one_line() {
    let Some(endpoint) = service_env("STREAMHOUSE_TEST_S3_ENDPOINT") else {
        return;
    };
    let (_guard, dir) = data_dir();
    let bucket = format!("sh-gone-{:08x}", rand::random::<u32>());
    let storage = format!("s3://{bucket}/p?endpoint={endpoint}&region=us-east-1");
    let agent = AgentProcess::start_with(BIN, &sqlite(&dir), &storage, &["--create-bucket"]);
    let mut c = raw::connect(&agent.addr).await;
    raw::create_topic(&mut c, "gone", 1).await;
    // The bucket is empty (the start-up probe cleaned up after itself): delete it.
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let status = http(
        host,
        &format!("DELETE /{bucket} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert!(
        status.contains(" 204") || status.contains(" 200"),
        "{status}"
    );

    // A write: refused with the server's code and message, in one short line.
    let r = raw::produce(&mut c, "gone", 0, vec![batch("x")]).await;
    assert_eq!(raw::code(&r.error), ErrorCode::StorageUnavailable);
    let message = &r.error.as_ref().unwrap().message;
    assert!(message.contains("NoSuchBucket"), "{message}");
    assert!(!message.contains('\n') && message.len() < 400, "{message}");

    // A producer that gives up is told that cause, not a routing error that came later.
    let producer = Producer::builder()
        .bootstrap(&agent.addr)
        .delivery_timeout_ms(3_000)
        .request_timeout_ms(1_000)
        .build()
        .await
        .unwrap();
    let e = producer
        .send_and_wait("gone", None, b"y")
        .await
        .expect_err("no bucket, no delivery");
    let text = e.to_string();
    assert!(
        text.contains("DeliveryTimeout") || text.contains("delivery timed out"),
        "{text}"
    );
    assert!(text.contains("NoSuchBucket"), "{text}");
}
