//! Harness for tests against real agent processes: start one on free ports, read the address
//! it prints, stop it gracefully or kill it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use streamhouse_agent::process::Signal;
use streamhouse_agent::process::{self, AgentProc};

pub mod proxy;

/// How long a test agent may take to start serving, or to stop.
const AGENT_PATIENCE: Duration = Duration::from_secs(60);

/// A running `test-agent` process: [`process::AgentProc`], failing the test instead of
/// returning errors.
#[derive(Debug)]
pub struct AgentProcess {
    proc: AgentProc,
    /// `HOST:PORT` it listens on.
    pub addr: String,
}

impl From<AgentProc> for AgentProcess {
    fn from(proc: AgentProc) -> Self {
        AgentProcess {
            addr: proc.addr.clone(),
            proc,
        }
    }
}

impl AgentProcess {
    /// Starts the agent binary at `bin` on embedded storage under `dir`, listening on a free
    /// port, with `extra` flags; returns once it serves.
    pub fn start(bin: &str, dir: &Path, extra: &[&str]) -> AgentProcess {
        let meta = format!("sqlite://{}", dir.join("metadata.db").display());
        let storage = format!("file://{}", dir.join("objects").display());
        Self::start_with(bin, &meta, &storage, extra)
    }

    /// Starts the agent binary with explicit metadata and storage URLs.
    pub fn start_with(bin: &str, metadata: &str, storage: &str, extra: &[&str]) -> AgentProcess {
        let mut command = agent_command(bin, metadata, storage, extra);
        command
            .env("STREAMHOUSE_LOG", "warn")
            .stderr(Stdio::inherit());
        process::spawn(command, AGENT_PATIENCE, || None)
            .unwrap_or_else(|e| panic!("test agent: {e}"))
            .into()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The most memory the process has held resident so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        peak_rss_of(self.pid())
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(self) -> ExitStatus {
        self.proc
            .stop(AGENT_PATIENCE)
            .unwrap_or_else(|e| panic!("stopping the agent: {e}"))
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(self) {
        self.proc.kill9().expect("kill -9");
    }

    /// Sends `signal` (`SIGSTOP`, `SIGCONT`, ...) without waiting for anything.
    pub fn signal(&self, signal: Signal) {
        self.proc
            .signal(signal)
            .unwrap_or_else(|e| panic!("sending {signal}: {e}"));
    }
}

/// The agent binary on the given stores, listening on a free port, with `extra` flags.
pub fn agent_command(bin: &str, metadata: &str, storage: &str, extra: &[&str]) -> Command {
    let mut c = process::agent_command(Path::new(bin));
    c.args(["--metadata", metadata, "--storage", storage])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    c
}

/// How long a test may wait for something: the one deadline every waiting loop of the tests
/// checks, whether through [`wait_for`], [`wait_until`], [`block_until`], or a loop of its
/// own (one that polls a consumer, say).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    within: Duration,
}

impl Deadline {
    /// `within` from now.
    pub fn within(within: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + within,
            within,
        }
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Fails the test, saying what it waited for, once the deadline has passed.
    #[track_caller]
    pub fn check(&self, waiting_for: impl std::fmt::Display) {
        assert!(
            !self.passed(),
            "timed out after {:?} waiting for {waiting_for}",
            self.within
        );
    }
}

/// Polls `probe` every 50 ms until it yields a value, failing the test after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Deadline::within(within);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        deadline.check(what);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` every 50 ms until it holds, failing the test after `within`.
pub async fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    wait_for(what, within, || std::future::ready(check().then_some(()))).await
}

/// Polls `check` every 20 ms on this thread until it holds, failing the test after `within`:
/// for tests without a runtime.
pub fn block_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Deadline::within(within);
    while !check() {
        deadline.check(what);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the agent binary with the given stores and flags, expecting it to fail at start:
/// returns its exit status and what it wrote to stderr (logging off, so only its own error
/// report). Panics if it starts serving instead, or has not exited within 60 s.
pub fn start_failure(
    bin: &str,
    metadata: &str,
    storage: &str,
    extra: &[&str],
) -> (ExitStatus, String) {
    let mut child = agent_command(bin, metadata, storage, extra)
        .env("STREAMHOUSE_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start test-agent");
    let mut status = None;
    block_until("the agent to fail at start", AGENT_PATIENCE, || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    let status = status.expect("exited");
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        !out.contains(process::LISTENING_ON),
        "the agent started serving: {out}"
    );
    (status, err)
}

/// The peak resident memory (`VmHWM`) of process `pid`, in bytes.
pub fn peak_rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Settings under which retention, compaction (into 64 KiB segments) and garbage collection
/// (after a 1 s grace) run every few hundred milliseconds, so a test sees them happen; a
/// 5 ms flush interval, and metrics on a free port.
pub fn fast_maintenance(c: &mut streamhouse_agent::AgentConfig) {
    c.flush_interval_ms = Some(5);
    c.segment_bytes = 64 * 1024;
    c.compaction_age_ms = 200;
    c.maintenance_interval_ms = 100;
    c.gc_grace_ms = 1_000;
    c.gc_interval_ms = 200;
    c.metrics_listen = Some("127.0.0.1:0".into());
}

/// A consumer of one partition without a group, positioned at `offset`, whose `poll` reports
/// falling out of the log (`OffsetOutOfRange`) instead of resetting.
pub async fn consumer_at(
    addr: &str,
    tp: &streamhouse_client::TopicPartition,
    offset: i64,
) -> streamhouse_client::Consumer {
    let mut c = streamhouse_client::Consumer::builder()
        .bootstrap(addr)
        .auto_offset_reset(streamhouse_client::OffsetReset::None)
        .build()
        .await
        .expect("consumer");
    c.assign(vec![tp.clone()]).await.expect("assign");
    c.seek(tp, offset).await.expect("seek");
    c
}

/// An agent's `/metrics`, scraped over plain HTTP.
pub mod metrics {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    /// The whole response to `GET path` (status line, headers, body).
    pub fn scrape(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect to the metrics port");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("request sent");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response read");
        out
    }

    /// The value of `series` (a name with its labels, if any) in a scrape.
    pub fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
            .parse()
            .expect("a number")
    }

    /// `series` scraped now.
    pub fn metric(addr: SocketAddr, series: &str) -> f64 {
        value(&scrape(addr, "/metrics"), series)
    }

    /// Metadata-store calls of operation `op` the agent has made (0 before its first).
    pub fn metadata_calls(addr: SocketAddr, op: &str) -> f64 {
        let series = format!("streamhouse_metadata_calls_total{{op=\"{op}\"}} ");
        scrape(addr, "/metrics")
            .lines()
            .find_map(|l| {
                l.strip_prefix(&series)
                    .map(|v| v.parse().expect("a number"))
            })
            .unwrap_or(0.0)
    }
}

/// Now, in ms since the epoch: the timestamp for hand-built batches, which retention (7 days
/// by default) would drop at once if they claimed to be from 1970.
pub use streamhouse_proto::time::now_ms;

/// A fresh directory for one test's data.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().to_path_buf();
    (d, p)
}

/// Requests straight over gRPC, for tests that check what the agent itself answers.
pub mod raw {
    use bytes::Bytes;
    use streamhouse_proto::pb::stream_house_client::StreamHouseClient;
    use streamhouse_proto::pb::{self, ErrorCode};
    use tonic::transport::Channel;

    pub type Client = StreamHouseClient<Channel>;

    pub async fn connect(addr: &str) -> Client {
        StreamHouseClient::connect(format!("http://{addr}"))
            .await
            .expect("connect to the agent")
    }

    /// The code of a response's error field (which every response sets).
    pub fn code(e: &Option<pb::Error>) -> ErrorCode {
        ErrorCode::try_from(e.as_ref().expect("error field set").code).expect("a known code")
    }

    pub async fn create_topic(
        c: &mut Client,
        name: &str,
        partitions: u32,
    ) -> pb::CreateTopicResponse {
        c.create_topic(pb::CreateTopicRequest {
            name: name.into(),
            partitions,
            ..Default::default()
        })
        .await
        .expect("a typed response, not a transport error")
        .into_inner()
    }

    /// Produces to several partitions in one request.
    pub async fn produce_many(
        c: &mut Client,
        parts: Vec<(&str, u32, Vec<Bytes>)>,
    ) -> pb::ProduceResponse {
        c.produce(pb::ProduceRequest {
            partitions: parts
                .into_iter()
                .map(|(topic, partition, batches)| pb::PartitionBatches {
                    topic: topic.into(),
                    partition,
                    batches,
                })
                .collect(),
        })
        .await
        .expect("a typed response, not a transport error")
        .into_inner()
    }

    /// Produces batches to one partition and returns that partition's result.
    pub async fn produce(
        c: &mut Client,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
    ) -> pb::PartitionProduceResult {
        let resp = produce_many(c, vec![(topic, partition, batches)]).await;
        assert_eq!(
            code(&resp.error),
            ErrorCode::Ok,
            "request refused as a whole"
        );
        assert_eq!(resp.results.len(), 1);
        resp.results.into_iter().next().expect("one result")
    }

    pub async fn fetch(
        c: &mut Client,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u32,
        max_wait_ms: u32,
    ) -> pb::FetchResponse {
        c.fetch(pb::FetchRequest {
            topic: topic.into(),
            partition,
            offset,
            max_bytes,
            max_wait_ms,
            min_bytes: 1,
        })
        .await
        .expect("a typed response, not a transport error")
        .into_inner()
    }
}

/// Writes a CA-signed certificate for 127.0.0.1 and localhost to `dir/agent.pem`, its key to
/// `dir/agent.key` and the CA to `dir/ca.pem`; returns the CA's PEM.
pub fn write_certs(dir: &Path) -> Vec<u8> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Distinct names: OpenSSL (librdkafka) takes a certificate whose subject is its issuer's
    // for self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "StreamHouse test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a key")).expect("a CA");
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("certificate parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "streamhouse-agent");
    let cert = params.signed_by(&key, &ca).expect("a certificate");
    std::fs::write(dir.join("agent.pem"), cert.pem()).expect("write agent.pem");
    std::fs::write(dir.join("agent.key"), key.serialize_pem()).expect("write agent.key");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
    ca.pem().into_bytes()
}
