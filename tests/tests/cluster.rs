//! Several real agent processes on one metadata store and one object store: end to end with
//! compaction and garbage collection running, a leader killed under load, an agent paused
//! past its leases, agents joining and leaving. Each scenario runs on SQLite + a local
//! directory, and on PostgreSQL + an S3-compatible server when `STREAMHOUSE_TEST_POSTGRES` and
//! `STREAMHOUSE_TEST_S3_ENDPOINT` name them (always under CI): the production topology. The assertions are invariants: every acknowledged record read back
//! exactly once, offsets dense, no offset given twice, balance within one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use streamhouse_agent::local_cluster::{ClusterSpec, LocalCluster};
use streamhouse_agent::testing::FreshPostgres;
use streamhouse_client::{
    Admin, Consumer, DeliveryFuture, NewTopic, OffsetReset, Producer, TopicDescription,
    TopicPartition,
};
use streamhouse_proto::batch::{BatchBuilder, Compression, ProducerStamp};
use streamhouse_proto::pb::{self, ErrorCode};
use streamhouse_tests::{AgentProcess, Deadline, Signal, data_dir, raw, wait_for};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_test-agent");
const LEASE: [&str; 4] = ["--lease-ttl-ms", "1500", "--heartbeat-ms", "300"];

/// One metadata store and one object store that every agent of a test shares.
struct Stores {
    metadata: String,
    storage: String,
    postgres: Option<FreshPostgres>,
    _dir: tempfile::TempDir,
}

impl Stores {
    fn sqlite() -> Stores {
        let (guard, dir) = data_dir();
        Stores {
            metadata: format!("sqlite://{}", dir.join("metadata.db").display()),
            storage: objects(&dir),
            postgres: None,
            _dir: guard,
        }
    }

    /// The production topology: PostgreSQL and an S3-compatible server (each test gets its
    /// own database and bucket), named by `STREAMHOUSE_TEST_POSTGRES` and
    /// `STREAMHOUSE_TEST_S3_ENDPOINT`.
    async fn postgres_s3() -> Option<Stores> {
        let endpoint = streamhouse_agent::testing::service_env("STREAMHOUSE_TEST_S3_ENDPOINT")?;
        let db = FreshPostgres::create().await?;
        let (guard, _) = data_dir();
        let bucket = format!("sh-cluster-{:016x}", rand_suffix());
        let storage = format!("s3://{bucket}/cluster?endpoint={endpoint}&region=us-east-1");
        streamhouse_agent::object_store::S3Store::open(&storage)
            .await
            .expect("the S3 URL opens")
            .ensure_bucket()
            .await
            .expect("the test bucket can be created");
        Some(Stores {
            metadata: db.url.clone(),
            storage,
            postgres: Some(db),
            _dir: guard,
        })
    }

    async fn done(self) {
        if let Some(db) = self.postgres {
            db.drop_db().await;
        }
    }
}

fn objects(dir: &Path) -> String {
    format!("file://{}", dir.join("objects").display())
}

/// The agent processes of one test, by id (`agent-0`, `agent-1`, ...), with short leases.
struct Cluster {
    local: LocalCluster,
}

impl Cluster {
    fn spec(stores: &Stores) -> ClusterSpec {
        let lease = LEASE.map(String::from);
        let mut spec = ClusterSpec::on_stores(&stores.metadata, &stores.storage, &lease);
        spec.log_filter = Some("warn".into());
        spec.with_program(BIN)
    }

    fn start(stores: &Stores, n: usize) -> Self {
        let local = LocalCluster::start_on(Self::spec(stores), n).expect("agents start");
        Cluster { local }
    }

    fn add(&mut self, id: &str, extra: &[&str]) -> String {
        self.local.spawn_with(id, extra).expect("the agent starts")
    }

    fn bootstrap(&self) -> String {
        self.local.bootstrap()
    }

    fn take(&mut self, id: &str) -> AgentProcess {
        self.local
            .take(id)
            .expect("a running agent of this test")
            .into()
    }
}

/// The topic once every partition has a live leader, with the leaders' loads balanced
/// within one over exactly `agents`.
async fn balanced(admin: &Admin, topic: &str, agents: &[&str]) -> TopicDescription {
    let want: HashSet<&str> = agents.iter().copied().collect();
    wait_for(
        &format!("{topic} balanced over {agents:?}"),
        Duration::from_secs(60),
        || async {
            let t = admin.describe_topic(topic).await.ok()?;
            let mut load: HashMap<String, usize> = HashMap::new();
            for p in &t.partitions {
                *load.entry(p.leader_id.clone()?).or_default() += 1;
            }
            let leaders: HashSet<&str> = load.keys().map(String::as_str).collect();
            let expect_all = t.partitions.len() >= agents.len();
            let ok = leaders.is_subset(&want)
                && (!expect_all || leaders == want)
                && load.values().max()? - load.values().min()? <= 1;
            ok.then_some(t)
        },
    )
    .await
}

fn leader_of(t: &TopicDescription, partition: u32) -> String {
    t.partitions[partition as usize]
        .leader_id
        .clone()
        .expect("partition has a leader")
}

/// What producers were told: partition -> offset -> value.
type Acked = BTreeMap<u32, BTreeMap<i64, String>>;

/// Sends `n` records numbered from `*next` (the number is the value; keys cycle over
/// `keys`), noting their deliveries.
async fn send_numbered(
    producer: &Producer,
    topic: &str,
    next: &mut u64,
    n: usize,
    keys: u64,
    deliveries: &mut Vec<(String, DeliveryFuture)>,
) {
    for _ in 0..n {
        let key = format!("k{}", *next % keys);
        let value = format!("{next}");
        let d = producer
            .send(topic, Some(key.as_bytes()), value.as_bytes())
            .await
            .unwrap();
        deliveries.push((value, d));
        *next += 1;
    }
}

/// Awaits deliveries; every one must succeed, and no offset may be given twice.
async fn settle(deliveries: Vec<(String, DeliveryFuture)>, acked: &mut Acked) {
    for (value, d) in deliveries {
        let meta = d
            .await
            .unwrap_or_else(|e| panic!("record {value} failed, which the application sees: {e}"));
        let previous = acked
            .entry(meta.partition)
            .or_default()
            .insert(meta.offset, value);
        assert!(
            previous.is_none(),
            "offset {}-{} given twice",
            meta.partition,
            meta.offset
        );
    }
}

/// Reads `topic`'s partitions from the start to their high watermarks and checks the log is
/// exactly what was acknowledged: nothing lost, nothing twice, offsets dense from 0.
async fn assert_log_is(bootstrap: &str, topic: &str, partitions: u32, acked: &Acked) {
    let admin = Admin::connect(bootstrap).await.unwrap();
    let t = admin.describe_topic(topic).await.unwrap();
    for p in &t.partitions {
        let n = acked.get(&p.partition).map_or(0, BTreeMap::len) as i64;
        assert_eq!(
            p.high_watermark, n,
            "partition {} holds {} records, {n} acknowledged",
            p.partition, p.high_watermark
        );
    }
    let mut consumer = Consumer::builder()
        .bootstrap(bootstrap)
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(5000)
        .build()
        .await
        .unwrap();
    consumer
        .assign(
            (0..partitions)
                .map(|p| TopicPartition::new(topic, p))
                .collect(),
        )
        .await
        .unwrap();
    let want: usize = acked.values().map(BTreeMap::len).sum();
    let mut got: Acked = BTreeMap::new();
    let mut n = 0;
    let deadline = Deadline::within(Duration::from_secs(120));
    while n < want {
        deadline.check(format_args!("read {n} of {want} records"));
        for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            let dup = got.entry(r.partition).or_default().insert(r.offset, value);
            assert!(
                dup.is_none(),
                "offset {}-{} read twice",
                r.partition,
                r.offset
            );
            n += 1;
        }
    }
    consumer.close().await.unwrap();
    for (p, records) in &got {
        for (i, offset) in records.keys().enumerate() {
            assert_eq!(*offset, i as i64, "partition {p} is not dense");
        }
    }
    let mut seen = HashSet::new();
    for v in got.values().flat_map(BTreeMap::values) {
        assert!(seen.insert(v.clone()), "record {v} stored twice");
    }
    // One producer at a time sent the numbers in increasing order, pipelining requests: each
    // partition holds them in that order, whatever was retried or failed over.
    for (p, records) in &got {
        let numbers: Vec<u64> = records.values().filter_map(|v| v.parse().ok()).collect();
        if let Some(w) = numbers.windows(2).find(|w| w[0] > w[1]) {
            panic!(
                "partition {p} holds {} before {}: not the order sent",
                w[0], w[1]
            );
        }
    }
    assert_eq!(&got, acked, "the log differs from what was acknowledged");
}

async fn create(admin: &Admin, topic: &str, partitions: u32) {
    admin
        .create_topic(NewTopic::new(topic, partitions))
        .await
        .unwrap();
}

// ---- end to end, with compaction and garbage collection running --------------------------

/// Three agents compacting and collecting garbage every few hundred milliseconds: 20,000
/// keyed records over 8 partitions read back complete while the index is swapped under the
/// reader, then again once every flush object has been merged away and deleted.
async fn end_to_end_with_maintenance(stores: &Stores) {
    let fast = [
        "--flush-interval-ms",
        "20",
        "--segment-bytes",
        "65536",
        "--compaction-age-ms",
        "300",
        "--maintenance-interval-ms",
        "100",
        "--gc-grace-ms",
        "1000",
        "--gc-interval-ms",
        "200",
    ];
    let mut cluster = Cluster::start(stores, 0);
    for i in 0..3 {
        cluster.add(&format!("agent-{i}"), &fast);
    }
    let bootstrap = cluster.bootstrap();
    let admin = Admin::connect(&bootstrap).await.unwrap();
    create(&admin, "e2e", 8).await;
    balanced(&admin, "e2e", &["agent-0", "agent-1", "agent-2"]).await;
    let producer = Producer::builder()
        .bootstrap(&bootstrap)
        .build()
        .await
        .unwrap();
    let (mut next, mut acked, mut deliveries) = (0u64, Acked::new(), Vec::new());
    send_numbered(&producer, "e2e", &mut next, 20_000, 500, &mut deliveries).await;
    producer.flush().await.unwrap();
    settle(deliveries, &mut acked).await;
    producer.close().await.unwrap();
    // Keys stay on their partition, as with Kafka's partitioner.
    let mut key_partition: HashMap<u64, u32> = HashMap::new();
    for (p, records) in &acked {
        for v in records.values() {
            let key = v.parse::<u64>().unwrap() % 500;
            assert_eq!(
                *key_partition.entry(key).or_insert(*p),
                *p,
                "key {key} on two partitions"
            );
        }
    }
    assert_log_is(&bootstrap, "e2e", 8, &acked).await;
    // Every flush object merged into segments and deleted: the log is then all segments.
    let store = streamhouse_agent::object_store::open(&stores.storage)
        .await
        .unwrap();
    wait_for(
        "every flush object compacted away and deleted",
        Duration::from_secs(60),
        || {
            let store = store.clone();
            async move {
                let flushes = store.list("data/").await.ok()?;
                let segments = store.list("segments/").await.ok()?;
                (flushes.is_empty() && !segments.is_empty()).then_some(())
            }
        },
    )
    .await;
    assert_log_is(&bootstrap, "e2e", 8, &acked).await;
}

// ---- kill -9 of a leader under load ------------------------------------------------------

async fn kill_leader_under_load(stores: &Stores) {
    const TOPIC: &str = "load";
    const PARTITIONS: u32 = 6;
    let mut cluster = Cluster::start(stores, 3);
    let admin = Admin::connect(&cluster.bootstrap()).await.unwrap();
    create(&admin, TOPIC, PARTITIONS).await;
    let t = balanced(&admin, TOPIC, &["agent-0", "agent-1", "agent-2"]).await;
    let victim = leader_of(&t, 0);
    let old_epoch = t.partitions[0].lease_epoch;

    let producer = Producer::builder()
        .bootstrap(cluster.bootstrap())
        .delivery_timeout_ms(60_000)
        .build()
        .await
        .unwrap();
    // 100 records every 10 ms: 10,000 records/s, for 6 s, with the kill at 2 s.
    let mut deliveries = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let start = Instant::now();
    let mut killed_at = None;
    let mut i = 0u64;
    while start.elapsed() < Duration::from_secs(6) {
        tick.tick().await;
        send_numbered(&producer, TOPIC, &mut i, 100, 64, &mut deliveries).await;
        if killed_at.is_none() && start.elapsed() >= Duration::from_secs(2) {
            cluster.take(&victim).kill9();
            killed_at = Some(start.elapsed());
        }
    }
    let rate = i as f64 / start.elapsed().as_secs_f64();
    eprintln!("sent {i} records at {rate:.0}/s; killed {victim} at {killed_at:?}");
    producer.flush().await.unwrap();
    let mut acked = Acked::new();
    settle(deliveries, &mut acked).await;
    producer.close().await.unwrap();

    let survivors: Vec<&str> = cluster.local.agents.keys().map(String::as_str).collect();
    let t = balanced(&admin, TOPIC, &survivors).await;
    assert_ne!(leader_of(&t, 0), victim);
    assert!(t.partitions[0].lease_epoch > old_epoch);
    assert_log_is(&cluster.bootstrap(), TOPIC, PARTITIONS, &acked).await;
    let events = admin.list_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "agent_lost" && e.subject == victim)
    );
    assert!(events.iter().any(|e| e.kind == "lease_taken"));
}

// ---- SIGSTOP past the lease ----------------------------------------------------------------

fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b.append(streamhouse_tests::now_ms(), None, Some(v.as_bytes()), &[]);
    }
    b.finish(ProducerStamp::NONE).unwrap()
}

async fn paused_agent_is_fenced(stores: &Stores) {
    const TOPIC: &str = "paused";
    let mut cluster = Cluster::start(stores, 2);
    // The agent to pause begins a flush at most every 5 s, so what it is sent just after a
    // flush is still buffered when it stops.
    let paused_addr = cluster.add("agent-2", &["--flush-interval-ms", "5000"]);
    let admin = Admin::connect(&cluster.bootstrap()).await.unwrap();
    create(&admin, TOPIC, 6).await;
    let to_paused = raw::connect(&paused_addr).await;
    // Send agent-2 a batch for a partition it leads and see it buffered. Under load a lease
    // can move between looking and sending; then the batch is refused at once, and we try
    // again with what agent-2 leads now.
    let deadline = Deadline::within(Duration::from_secs(60));
    // Records written to agent-2's other partition to start a flush: (partition, offset, value).
    let mut warm_ups = Vec::new();
    let (p, ghost) = loop {
        deadline.check("could not get a batch buffered on agent-2");
        let t = balanced(&admin, TOPIC, &["agent-0", "agent-1", "agent-2"]).await;
        let mut led = t
            .partitions
            .iter()
            .filter(|p| p.leader_id.as_deref() == Some("agent-2"));
        let (Some(p), Some(other)) = (led.next().cloned(), led.next().cloned()) else {
            panic!("agent-2 leads two of the six partitions");
        };
        // An idle agent flushes at once: write one record to start a flush, so the next
        // batch waits out the interval.
        let warm = format!("warm-{}", warm_ups.len());
        let mut c = to_paused.clone();
        let w = raw::produce(&mut c, TOPIC, other.partition, vec![batch(&[&warm])]).await;
        if raw::code(&w.error) != ErrorCode::Ok {
            continue;
        }
        warm_ups.push((other.partition, w.base_offset, warm));
        let ghost = {
            let mut c = to_paused.clone();
            let partition = p.partition;
            tokio::spawn(async move {
                raw::produce(&mut c, TOPIC, partition, vec![batch(&["ghost"])]).await
            })
        };
        let buffered = wait_for(
            "the batch buffered or refused",
            Duration::from_secs(30),
            || {
                let mut c = to_paused.clone();
                let finished = ghost.is_finished();
                async move {
                    if finished {
                        return Some(false);
                    }
                    let s = c
                        .get_agent_stats(pb::GetAgentStatsRequest {})
                        .await
                        .ok()?
                        .into_inner();
                    (s.buffered_batches >= 1).then_some(true)
                }
            },
        )
        .await;
        if buffered {
            break (p, ghost);
        }
        let refused = ghost.await.unwrap();
        assert_ne!(
            raw::code(&refused.error),
            ErrorCode::Ok,
            "acknowledged before the pause"
        );
    };
    cluster.local.agents["agent-2"]
        .signal(Signal::SIGSTOP)
        .expect("SIGSTOP");

    // Another agent takes the partition at a higher epoch and writes to it.
    let others = format!(
        "{},{}",
        cluster.local.agents["agent-0"].addr, cluster.local.agents["agent-1"].addr
    );
    let admin = Admin::connect(&others).await.unwrap();
    let taken = wait_for(
        "the paused agent's lease taken",
        Duration::from_secs(60),
        || async {
            let t = admin.describe_topic(TOPIC).await.ok()?;
            let q = &t.partitions[p.partition as usize];
            (q.leader_id.as_deref().is_some_and(|l| l != "agent-2")
                && q.lease_epoch > p.lease_epoch)
                .then(|| q.clone())
        },
    )
    .await;
    let to_new = raw::connect(taken.leader_address.as_deref().unwrap()).await;
    // The lease row can be visible a moment before the new leader has taken the partition
    // on (loaded its producers); until then it answers NOT_LEADER, and a client retries.
    let written = wait_for(
        "the new leader accepting a write",
        Duration::from_secs(30),
        || {
            let mut c = to_new.clone();
            async move {
                let w =
                    raw::produce(&mut c, TOPIC, p.partition, vec![batch(&["a", "b", "c"])]).await;
                (raw::code(&w.error) != ErrorCode::NotLeader).then_some(w)
            }
        },
    )
    .await;
    assert_eq!(raw::code(&written.error), ErrorCode::Ok);
    assert_eq!(written.base_offset, 0);

    // Resumed: its buffered batch is refused, not stored.
    cluster.local.agents["agent-2"]
        .signal(Signal::SIGCONT)
        .expect("SIGCONT");
    let refused = ghost.await.unwrap();
    assert_eq!(
        raw::code(&refused.error),
        ErrorCode::NotLeader,
        "{refused:?}"
    );

    // It comes back as a member and gets its share again, under new epochs.
    let t = balanced(&admin, TOPIC, &["agent-0", "agent-1", "agent-2"]).await;
    assert!(t.partitions[p.partition as usize].lease_epoch >= taken.lease_epoch);
    let c = admin.describe_cluster().await.unwrap();
    assert!(c.agents.iter().any(|a| a.id == "agent-2" && a.live));

    // The partition holds exactly what the new leader acknowledged; a write after the
    // rejoin continues the offsets.
    let mut acked = Acked::new();
    for (i, v) in ["a", "b", "c"].iter().enumerate() {
        acked
            .entry(p.partition)
            .or_default()
            .insert(i as i64, v.to_string());
    }
    for (partition, offset, v) in warm_ups {
        acked.entry(partition).or_default().insert(offset, v);
    }
    let producer = Producer::builder()
        .bootstrap(cluster.bootstrap())
        .build()
        .await
        .unwrap();
    let more = producer
        .send_record(TOPIC, Some(p.partition), None, Some(b"d"), &[], None)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(more.offset, 3);
    producer.close().await.unwrap();
    acked.get_mut(&p.partition).unwrap().insert(3, "d".into());
    assert_log_is(&cluster.bootstrap(), TOPIC, 6, &acked).await;
}

// ---- joining and leaving -------------------------------------------------------------------

async fn agents_join_and_leave(stores: &Stores) {
    const TOPIC: &str = "moving";
    const PARTITIONS: u32 = 8;
    let mut cluster = Cluster::start(stores, 3);
    let admin = Admin::connect(&cluster.bootstrap()).await.unwrap();
    create(&admin, TOPIC, PARTITIONS).await;
    let before = balanced(&admin, TOPIC, &["agent-0", "agent-1", "agent-2"]).await;

    // A steady producer the whole time: no error may reach it.
    let producer = Producer::builder()
        .bootstrap(cluster.bootstrap())
        .delivery_timeout_ms(60_000)
        .build()
        .await
        .unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let load = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut deliveries = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut i = 0u64;
            while !*stop_rx.borrow_and_update() {
                tick.tick().await;
                send_numbered(&producer, TOPIC, &mut i, 20, 32, &mut deliveries).await;
            }
            deliveries
        })
    };

    // A fourth agent: it takes exactly its share, and only its share moves.
    cluster.add("agent-3", &[]);
    let after = balanced(&admin, TOPIC, &["agent-0", "agent-1", "agent-2", "agent-3"]).await;
    for (b, a) in before.partitions.iter().zip(&after.partitions) {
        if b.leader_id != a.leader_id {
            assert_eq!(
                a.leader_id.as_deref(),
                Some("agent-3"),
                "partition {} moved elsewhere",
                a.partition
            );
        }
    }
    assert_eq!(
        after
            .partitions
            .iter()
            .filter(|p| p.leader_id.as_deref() == Some("agent-3"))
            .count(),
        2
    );

    // One stops gracefully: its partitions move, and only they.
    assert!(cluster.take("agent-1").terminate().success());
    let last = balanced(&admin, TOPIC, &["agent-0", "agent-2", "agent-3"]).await;
    for (a, l) in after.partitions.iter().zip(&last.partitions) {
        if a.leader_id.as_deref() != Some("agent-1") {
            assert_eq!(
                a.leader_id, l.leader_id,
                "partition {} moved needlessly",
                a.partition
            );
        }
    }

    stop_tx.send(true).unwrap();
    let deliveries = load.await.unwrap();
    producer.flush().await.unwrap();
    let mut acked = Acked::new();
    settle(deliveries, &mut acked).await;
    producer.close().await.unwrap();
    assert_log_is(&cluster.bootstrap(), TOPIC, PARTITIONS, &acked).await;
    let events = admin.list_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "agent_left" && e.subject == "agent-1")
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == "lease_released" && e.detail.contains("handed back to agent-3"))
    );
}

// ---- a killed agent's session ends long before its leases -----------------------------------

/// Leases that outlast the test's waits: only an agent's session ending can move them in time.
const LONG_LEASE: [&str; 4] = ["--lease-ttl-ms", "30000", "--heartbeat-ms", "300"];

/// With 30 s leases: a paused agent keeps its session and its partitions (nobody takes them
/// on its behalf), while a killed agent's session ends with its process, so the others take
/// its partitions and acknowledge writes to them well before its leases would have run out.
async fn a_killed_agents_partitions_move_before_its_leases_end(stores: &Stores) {
    const TOPIC: &str = "sessions";
    let lease = LONG_LEASE.map(String::from);
    let mut spec = ClusterSpec::on_stores(&stores.metadata, &stores.storage, &lease);
    spec.log_filter = Some("warn".into());
    let mut cluster = Cluster {
        local: LocalCluster::start_on(spec.with_program(BIN), 3).expect("agents start"),
    };
    let admin = Admin::connect(&cluster.bootstrap()).await.unwrap();
    create(&admin, TOPIC, 6).await;
    let all = ["agent-0", "agent-1", "agent-2"];
    let before = balanced(&admin, TOPIC, &all).await;
    let victim = leader_of(&before, 0);
    let paused = all.iter().find(|a| **a != victim).unwrap().to_string();
    let survivor = all.iter().find(|a| **a != victim && **a != paused).unwrap();
    let addrs: HashMap<String, String> = all
        .iter()
        .map(|id| (id.to_string(), cluster.local.agents[*id].addr.clone()))
        .collect();
    let addr = |id: &str| addrs[id].clone();
    let watcher = Admin::connect(&format!("{},{}", addr(&victim), addr(survivor)))
        .await
        .unwrap();

    // Paused for ten heartbeats: its session holds, so its partitions stay where they are.
    cluster.local.agents[&paused]
        .signal(Signal::SIGSTOP)
        .expect("SIGSTOP");
    let deadline = Deadline::within(Duration::from_millis(3000));
    while !deadline.passed() {
        let t = watcher.describe_topic(TOPIC).await.unwrap();
        let leases = |t: &TopicDescription| -> Vec<(Option<String>, i64)> {
            t.partitions
                .iter()
                .map(|p| (p.leader_id.clone(), p.lease_epoch))
                .collect()
        };
        assert_eq!(
            leases(&t),
            leases(&before),
            "a paused agent's partitions moved although its session holds"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.local.agents[&paused]
        .signal(Signal::SIGCONT)
        .expect("SIGCONT");

    // Killed: led by the survivors and acknowledging within half the lease.
    let killed_at = Instant::now();
    cluster.take(&victim).kill9();
    let survivors = format!("{},{}", addr(&paused), addr(survivor));
    let admin = Admin::connect(&survivors).await.unwrap();
    let after = tokio::time::timeout(
        Duration::from_secs(15),
        balanced(&admin, TOPIC, &[paused.as_str(), survivor]),
    )
    .await
    .unwrap_or_else(|_| panic!("{victim}'s partitions still led by it 15 s after kill -9"));
    for (b, a) in before.partitions.iter().zip(&after.partitions) {
        if b.leader_id.as_deref() == Some(victim.as_str()) {
            assert!(a.lease_epoch > b.lease_epoch, "{a:?} after {b:?}");
        }
    }
    let producer = Producer::builder()
        .bootstrap(&survivors)
        .delivery_timeout_ms(15_000)
        .request_timeout_ms(5_000)
        .build()
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    let mut next = 0;
    send_numbered(&producer, TOPIC, &mut next, 600, 60, &mut deliveries).await;
    producer.flush().await.unwrap();
    let mut acked = Acked::new();
    settle(deliveries, &mut acked).await;
    producer.close().await.unwrap();
    assert_eq!(acked.len(), 6, "every partition acknowledged a write");
    eprintln!(
        "{victim} killed; its partitions led and written again after {:?}",
        killed_at.elapsed()
    );
    assert!(killed_at.elapsed() < Duration::from_secs(30));
    assert_log_is(&survivors, TOPIC, 6, &acked).await;
    let events = admin.list_events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "agent_lost" && e.subject == victim && e.detail.contains("session")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.kind == "agent_lost" && e.subject == paused),
        "the paused agent was taken for lost"
    );
}

/// Each scenario as two tests: on SQLite and a local directory, and on PostgreSQL and an
/// S3-compatible server (skipped when they are not configured, except under CI).
macro_rules! on_both_backends {
    ($($scenario:ident),*) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let stores = super::Stores::sqlite();
                super::$scenario(&stores).await;
                stores.done().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                let Some(stores) = super::Stores::postgres_s3().await else {
                    return;
                };
                super::$scenario(&stores).await;
                stores.done().await;
            }
        }
    )*};
}

on_both_backends!(
    end_to_end_with_maintenance,
    kill_leader_under_load,
    paused_agent_is_fenced,
    agents_join_and_leave,
    a_killed_agents_partitions_move_before_its_leases_end
);

// ---- metadata-store faults through a proxy --------------------------------------------------

/// What the proxy between the agents and PostgreSQL does, from 3 s into the run.
#[derive(Debug, Clone, Copy)]
enum StoreFault {
    /// Drop the connection right after forwarding a `COMMIT`, five times: outcome unknown.
    CommitOutcomeUnknown,
    /// Hold all traffic for twice the lease TTL, then let it go.
    StallPastTheLease,
    /// Refuse every connection (closing the open ones) for 10 s.
    RefuseForTenSeconds,
}

/// Three agents on PostgreSQL (through a proxy) and S3, an idempotent producer at 5,000
/// records/s, and one store fault: the log must equal what was acknowledged, and
/// acknowledgements must resume within two heartbeats of the store's return.
async fn store_fault(stores: &Stores, fault: StoreFault) {
    use streamhouse_tests::proxy::{Mode, Proxy};
    const TOPIC: &str = "faults";
    const PARTITIONS: u32 = 6;
    let heartbeat = Duration::from_millis(300); // LEASE
    let ttl = Duration::from_millis(1500);
    let (proxy, url) = Proxy::in_front_of(&stores.metadata).await;
    let proxied = Stores {
        metadata: url,
        storage: stores.storage.clone(),
        postgres: None,
        _dir: data_dir().0,
    };
    let cluster = Cluster::start(&proxied, 3);
    let admin = Admin::connect(&cluster.bootstrap()).await.unwrap();
    create(&admin, TOPIC, PARTITIONS).await;
    balanced(&admin, TOPIC, &["agent-0", "agent-1", "agent-2"]).await;

    let producer = Producer::builder()
        .bootstrap(cluster.bootstrap())
        .delivery_timeout_ms(120_000)
        .retry_backoff_ms(50)
        .retry_backoff_max_ms(100)
        .build()
        .await
        .unwrap();
    let acks: std::sync::Arc<std::sync::Mutex<Vec<Instant>>> = Default::default();
    let mut deliveries = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let start = Instant::now();
    let fault_at = Duration::from_secs(3);
    let fault_for = match fault {
        StoreFault::CommitOutcomeUnknown => Duration::ZERO,
        StoreFault::StallPastTheLease => ttl * 2,
        StoreFault::RefuseForTenSeconds => Duration::from_secs(10),
    };
    let run_for = fault_at + fault_for + Duration::from_secs(4);
    let (mut began, mut returned) = (None, None);
    let mut i = 0u64;
    while start.elapsed() < run_for {
        tick.tick().await;
        // 50 records every 10 ms: 5,000 records/s.
        let mut sent = Vec::new();
        send_numbered(&producer, TOPIC, &mut i, 50, 64, &mut sent).await;
        for (value, d) in sent {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let acks = acks.clone();
            tokio::spawn(async move {
                let r = d.await;
                if r.is_ok() {
                    acks.lock().unwrap().push(Instant::now());
                }
                let _ = tx.send(r);
            });
            deliveries.push((value, rx));
        }
        let now = start.elapsed();
        if began.is_none() && now >= fault_at {
            began = Some(Instant::now());
            match fault {
                StoreFault::CommitOutcomeUnknown => proxy.drop_after_commits(5),
                StoreFault::StallPastTheLease => proxy.set(Mode::Stall),
                StoreFault::RefuseForTenSeconds => proxy.set(Mode::Refuse),
            }
        }
        if began.is_some() && returned.is_none() && now >= fault_at + fault_for {
            match fault {
                StoreFault::CommitOutcomeUnknown => {
                    if proxy.commits_dropped() < 5 {
                        continue;
                    }
                }
                _ => proxy.set(Mode::Pass),
            }
            returned = Some(Instant::now());
        }
    }
    let returned = returned.expect("the fault ended within the run");
    producer.flush().await.unwrap();
    let mut acked = Acked::new();
    let mut settled = Vec::new();
    for (value, rx) in deliveries {
        let meta = rx
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("record {value} failed, which the application sees: {e}"));
        settled.push((value, meta));
    }
    for (value, meta) in settled {
        let previous = acked
            .entry(meta.partition)
            .or_default()
            .insert(meta.offset, value);
        assert!(previous.is_none(), "offset given twice");
    }
    producer.close().await.unwrap();

    let mut times = acks.lock().unwrap().clone();
    times.sort();
    let pause = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let resumed = times
        .iter()
        .find(|t| **t >= returned)
        .map(|t| *t - returned)
        .expect("acknowledgements after the store's return");
    eprintln!(
        "{fault:?}: sent {i} records; longest pause between acknowledgements {} ms; first \
         acknowledgement {} ms after the store's return",
        pause.as_millis(),
        resumed.as_millis()
    );
    // How soon is a figure to read off a quiet machine (ARCHITECTURE.md records them: within
    // two heartbeats); what the test holds is that they resume at all, long before any
    // delivery timeout, and without a restart.
    assert!(
        resumed <= ttl * 10,
        "{fault:?}: acknowledgements resumed only {} ms after the store's return \
         (heartbeat {} ms)",
        resumed.as_millis(),
        heartbeat.as_millis()
    );
    if let StoreFault::CommitOutcomeUnknown = fault {
        assert_eq!(proxy.commits_dropped(), 5);
    }
    assert_log_is(&cluster.bootstrap(), TOPIC, PARTITIONS, &acked).await;
    drop(cluster);
}

/// One agent's COMMITs are held (its flushes cannot commit) while its single-statement lease
/// renewals still go through: it must give its partitions up, and the other agents, whose
/// store is fine, must take them and acknowledge again, with nothing lost or twice.
async fn flusher_cannot_commit(stores: &Stores) {
    use streamhouse_tests::proxy::Proxy;
    const TOPIC: &str = "sick";
    const PARTITIONS: u32 = 6;
    let (proxy, url) = Proxy::in_front_of(&stores.metadata).await;
    let mut cluster = Cluster::start(stores, 2);
    // agent-2 reaches the store through the proxy.
    let mut spec = Cluster::spec(stores);
    spec.metadata = url;
    let sick = spec.launch("agent-2").expect("agent-2 starts");
    cluster.local.agents.insert("agent-2".into(), sick);
    let admin = Admin::connect(&cluster.bootstrap()).await.unwrap();
    create(&admin, TOPIC, PARTITIONS).await;
    balanced(&admin, TOPIC, &["agent-0", "agent-1", "agent-2"]).await;

    let producer = Producer::builder()
        .bootstrap(cluster.bootstrap())
        .delivery_timeout_ms(120_000)
        .retry_backoff_max_ms(100)
        .build()
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    let mut i = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let start = Instant::now();
    let mut held = false;
    while start.elapsed() < Duration::from_secs(12) {
        tick.tick().await;
        send_numbered(&producer, TOPIC, &mut i, 50, 64, &mut deliveries).await;
        if !held && start.elapsed() >= Duration::from_secs(2) {
            // Every COMMIT of agent-2 held for a minute: its flush transactions never finish.
            proxy.delay_commits(usize::MAX, Duration::from_secs(60));
            held = true;
        }
    }
    // The healthy agents lead everything while agent-2 is still up and renewing nothing.
    let t = balanced(&admin, TOPIC, &["agent-0", "agent-1"]).await;
    assert!(
        t.partitions
            .iter()
            .all(|p| p.leader_id.as_deref() != Some("agent-2"))
    );
    producer.flush().await.unwrap();
    let mut acked = Acked::new();
    settle(deliveries, &mut acked).await;
    producer.close().await.unwrap();
    assert!(proxy.commits_delayed() > 0);
    proxy.delay_commits(0, Duration::ZERO);
    assert_log_is(&cluster.bootstrap(), TOPIC, PARTITIONS, &acked).await;
}

mod metadata_store_faults {
    use super::{StoreFault, Stores, store_fault};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_agent_that_cannot_commit_gives_its_partitions_away() {
        let Some(stores) = Stores::postgres_s3().await else {
            return;
        };
        super::flusher_cannot_commit(&stores).await;
        stores.done().await;
    }

    async fn run(fault: StoreFault) {
        let Some(stores) = Stores::postgres_s3().await else {
            return;
        };
        store_fault(&stores, fault).await;
        stores.done().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commit_outcome_unknown() {
        run(StoreFault::CommitOutcomeUnknown).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stall_past_the_lease() {
        run(StoreFault::StallPastTheLease).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_for_ten_seconds() {
        run(StoreFault::RefuseForTenSeconds).await;
    }
}

fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32)
}
