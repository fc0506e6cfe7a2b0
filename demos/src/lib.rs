//! What the examples and benchmarks share: reach a cluster given with `--bootstrap`, or start
//! an agent inside the process (on its own runtime and threads) when none is given.

pub mod failover;
pub mod metrics;

use std::path::PathBuf;

use streamhouse_agent::{AgentConfig, EmbeddedAgent};
use streamhouse_client::Security;

/// How long examples wait for an agent to answer an admin request.
pub const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A cluster to talk to, and the agent started for it, if any.
#[derive(Debug)]
pub struct Target {
    /// Comma-separated agent addresses.
    pub bootstrap: String,
    /// How to reach them: for a cluster given with `--bootstrap`, [`Security::from_env`];
    /// plain TCP for the agent started here.
    pub security: Security,
    /// Where the agent started here serves Kafka clients; `None` for a cluster given with
    /// `--bootstrap`.
    pub kafka_bootstrap: Option<String>,
    agent: Option<EmbeddedAgent>,
    _dir: Option<tempfile::TempDir>,
    data: Option<PathBuf>,
}

/// The workload flags the throughput benchmarks share.
#[derive(Debug, Clone, clap::Args)]
pub struct Workload {
    /// Agents to use; without it an agent is started in this process on a temporary directory.
    #[arg(long)]
    pub bootstrap: Option<String>,
    #[arg(long, default_value_t = 2_000_000)]
    pub records: u64,
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Random values that LZ4 cannot compress, instead of JSON-like text.
    #[arg(long)]
    pub incompressible: bool,
    /// Turn the producer's idempotence off (at-least-once), to see what it costs.
    #[arg(long)]
    pub no_idempotence: bool,
}

impl Workload {
    /// "2000000 records of 100 B (JSON-like text) over 8 partitions".
    pub fn describe(&self) -> String {
        format!(
            "{} records of {} B ({}) over {} partitions",
            self.records,
            self.value_size,
            if self.incompressible {
                "random bytes"
            } else {
                "JSON-like text"
            },
            self.partitions
        )
    }
}

/// Where a started agent keeps its data.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A temporary directory, removed at exit (benchmarks).
    Temporary,
    /// A directory that outlives the run (demos share `./streamhouse-data`).
    Dir(PathBuf),
}

impl Target {
    /// Uses `bootstrap` if given; otherwise starts an agent on `storage`.
    /// Against a given cluster, `STREAMHOUSE_TOKEN_FILE`, `STREAMHOUSE_TLS_CA` and
    /// `STREAMHOUSE_TLS_DOMAIN` say how to authenticate and which CA to trust.
    pub async fn connect(bootstrap: Option<String>, storage: Storage) -> anyhow::Result<Target> {
        if let Some(b) = bootstrap {
            return Ok(Target {
                bootstrap: b,
                security: Security::from_env()?,
                kafka_bootstrap: None,
                agent: None,
                _dir: None,
                data: None,
            });
        }
        let (dir, path) = match storage {
            Storage::Temporary => {
                let d = tempfile::tempdir()?;
                let p = d.path().to_path_buf();
                (Some(d), p)
            }
            Storage::Dir(p) => (None, p),
        };
        let agent = start_agent(path.clone()).await?;
        eprintln!("started an agent at {} on {}", agent.addr(), path.display());
        Ok(Target {
            bootstrap: agent.addr().to_string(),
            security: Security::default(),
            kafka_bootstrap: agent.kafka_addr().map(|a| a.to_string()),
            agent: Some(agent),
            _dir: dir,
            data: Some(path),
        })
    }

    /// Stops the started agent and starts a fresh one on the same stores, so reads come from
    /// storage rather than its cache. Does nothing for a cluster given with `--bootstrap`.
    pub async fn restart(&mut self) -> anyhow::Result<bool> {
        let (Some(agent), Some(path)) = (self.agent.take(), self.data.clone()) else {
            return Ok(false);
        };
        tokio::task::spawn_blocking(move || agent.stop())
            .await?
            .map_err(anyhow::Error::msg)?;
        let agent = start_agent(path).await?;
        self.bootstrap = agent.addr().to_string();
        self.kafka_bootstrap = agent.kafka_addr().map(|a| a.to_string());
        self.agent = Some(agent);
        Ok(true)
    }

    /// Where the agent started here serves `/metrics`; `None` for a cluster given with
    /// `--bootstrap`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.agent.as_ref().and_then(EmbeddedAgent::metrics_addr)
    }

    /// Stops the started agent gracefully.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(agent) = self.agent.take() {
            tokio::task::spawn_blocking(move || agent.stop())
                .await?
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}

impl Target {
    /// The line benchmarks print about memory: the peak resident memory of this process,
    /// which holds the agent when it was started here (and the client either way).
    pub fn peak_rss_line(&self) -> String {
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|kb| kb.parse::<u64>().ok())
            });
        match (rss, self.agent.is_some()) {
            (Some(kb), true) => format!(
                "  peak RSS: {} MiB (this process: the agent and the client)",
                kb / 1024
            ),
            (Some(kb), false) => format!(
                "  peak RSS: {} MiB (the client; the agents run elsewhere)",
                kb / 1024
            ),
            (None, _) => "  peak RSS: unknown (no /proc/self/status)".to_string(),
        }
    }
}

async fn start_agent(path: PathBuf) -> anyhow::Result<EmbeddedAgent> {
    let mut config = AgentConfig::embedded(&path, "127.0.0.1:0")?;
    config.metrics_listen = Some("127.0.0.1:0".into());
    config.kafka_listen = Some("127.0.0.1:0".into());
    Ok(tokio::task::spawn_blocking(move || EmbeddedAgent::start(config, 2)).await??)
}

/// A value of `len` bytes: printable, varied, and about as compressible as JSON events.
pub fn value(i: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "{\"user\":",
        "\"page\":",
        "\"/home\"",
        "\"/cart\"",
        "\"ts\":",
        "\"click\"",
        "\"view\"",
        "}",
    ];
    let mut v = Vec::with_capacity(len);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = WORDS[(x % 8) as usize].as_bytes();
        v.extend_from_slice(w);
        v.extend_from_slice(format!("{}", x % 10_000).as_bytes());
    }
    v.truncate(len);
    v
}

/// A value of `len` random bytes: what LZ4 cannot shrink.
pub fn random_value(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Values the benchmarks send: JSON-like text by default, random bytes with `incompressible`.
pub fn values(count: u64, len: usize, incompressible: bool) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            if incompressible {
                random_value(i, len)
            } else {
                value(i, len)
            }
        })
        .collect()
}

/// A client latency histogram as `percentiles_ms` prints a benchmark's own.
pub fn client_percentiles_ms(h: &streamhouse_client::LatencyHistogram) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    describe_ms(|q| ms(h.quantile(q)), ms(h.max()), h.count())
}

/// `p50`, `p99`, `p99.9` and max of a histogram of microseconds, in milliseconds.
pub fn percentiles_ms(h: &hdrhistogram::Histogram<u64>) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    describe_ms(|q| ms(h.value_at_quantile(q)), ms(h.max()), h.len())
}

/// The one line both kinds of histogram print: quantiles and max in milliseconds, and the
/// number of samples.
fn describe_ms(quantile_ms: impl Fn(f64) -> f64, max_ms: f64, samples: u64) -> String {
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {max_ms:.2} ms  ({samples} samples)",
        quantile_ms(0.5),
        quantile_ms(0.99),
        quantile_ms(0.999),
    )
}

/// Where a benchmark hands (send time, delivery) pairs to [`ack_timer`].
pub type AckSender =
    tokio::sync::mpsc::UnboundedSender<(std::time::Instant, streamhouse_client::DeliveryFuture)>;

/// Times acknowledgements off the sending loop: each record from its send to its own
/// delivery (not in send order, so a slow partition does not delay the timing of the rest).
/// Drop the sender when done; the task then ends with the histogram, in microseconds, or the
/// first delivery that failed.
pub fn ack_timer() -> (
    AckSender,
    tokio::task::JoinHandle<anyhow::Result<hdrhistogram::Histogram<u64>>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        use futures::StreamExt;
        let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut sending = true;
        while sending || !pending.is_empty() {
            tokio::select! {
                next = rx.recv(), if sending => match next {
                    Some((sent, delivery)) => {
                        let (sent, delivery): (std::time::Instant, streamhouse_client::DeliveryFuture) =
                            (sent, delivery);
                        pending.push(async move { delivery.await.map(|_| sent.elapsed()) })
                    }
                    None => sending = false,
                },
                Some(done) = pending.next() => {
                    let done = done.map_err(|e| anyhow::anyhow!("a record was not delivered: {e}"))?;
                    h.record(done.as_micros() as u64)?;
                }
            }
        }
        anyhow::Ok(h)
    });
    (tx, task)
}

/// How many records a run paced at `rate` records/s for `seconds` sends; a rate of 0, or a
/// product past `u64`, is refused naming the flags.
pub fn paced_total(rate: u64, seconds: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(rate > 0, "--rate: at least 1 record/s");
    rate.checked_mul(seconds).ok_or_else(|| {
        anyhow::anyhow!("--rate {rate} for --seconds {seconds}: more records than a u64 counts")
    })
}

/// A librdkafka setting given as `KEY=VALUE` (kcat's `-X`): the key must be there, and
/// `bootstrap.servers` comes from the benchmark's own flag. librdkafka itself judges the rest
/// when a client is made.
pub fn rdkafka_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("bootstrap.servers", _)) => Err(format!("-X {s}: give --kafka-bootstrap instead")),
        Some((k, v)) if !k.trim().is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("-X {s}: expected KEY=VALUE with a KEY")),
    }
}

/// The clock ticks per second `/proc` counts CPU time in.
pub fn tick_hz() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// User plus system time in a `/proc/.../stat` line, in clock ticks.
pub fn stat_ticks(stat: &str) -> anyhow::Result<u64> {
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unreadable stat line"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    anyhow::ensure!(fields.len() > 12, "short stat line");
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the command.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// CPU time this process has used: in all (threads that have ended included), and in the
/// threads of an agent started in it ([`Target`] without `--bootstrap`: its runtime's
/// `agent-worker` threads and SQLite's workers), to the clock tick of `/proc` (10 ms at the
/// usual 100 Hz). An agent thread that ends between two readings takes its time with it, so
/// the agent's part can only be undercounted.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    pub total: std::time::Duration,
    pub agent: std::time::Duration,
}

impl CpuUse {
    /// Reads `/proc/self`.
    pub fn now(tick_hz: u64) -> anyhow::Result<CpuUse> {
        let time = |ticks: u64| std::time::Duration::from_millis(ticks * 1000 / tick_hz.max(1));
        let total = stat_ticks(&std::fs::read_to_string("/proc/self/stat")?)?;
        let mut agent = 0;
        for task in std::fs::read_dir("/proc/self/task")?.flatten() {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if (comm.starts_with("agent-worker") || comm.starts_with("sqlx-sqlite"))
                && let Ok(stat) = std::fs::read_to_string(dir.join("stat"))
            {
                agent += stat_ticks(&stat).unwrap_or(0);
            }
        }
        Ok(CpuUse {
            total: time(total),
            agent: time(agent),
        })
    }

    /// What was used between `earlier` and this reading.
    pub fn since(self, earlier: CpuUse) -> CpuUse {
        CpuUse {
            total: self.total.saturating_sub(earlier.total),
            agent: self.agent.saturating_sub(earlier.agent),
        }
    }

    /// `agent A ms, clients C ms` of CPU, the clients being everything but the agent.
    pub fn describe(&self) -> String {
        format!(
            "CPU: agent {} ms, clients {} ms",
            self.agent.as_millis(),
            self.total.saturating_sub(self.agent).as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_runs_refuse_no_rate_and_totals_past_u64() {
        assert_eq!(paced_total(10_000, 20).unwrap(), 200_000);
        assert_eq!(paced_total(1, 0).unwrap(), 0);
        let zero = paced_total(0, 20).unwrap_err().to_string();
        assert_eq!(zero, "--rate: at least 1 record/s");
        let huge = paced_total(u64::MAX, 2).unwrap_err().to_string();
        assert!(
            huge.starts_with("--rate 18446744073709551615 for --seconds 2:"),
            "{huge}"
        );
        assert!(!huge.contains('\n'));
    }

    #[test]
    fn rdkafka_settings_need_a_key_and_leave_the_bootstrap_to_its_flag() {
        let ok = |k: &str, v: &str| Ok((k.to_string(), v.to_string()));
        assert_eq!(rdkafka_setting("linger.ms=5"), ok("linger.ms", "5"));
        // The value is librdkafka's to judge, '=' and emptiness included.
        assert_eq!(
            rdkafka_setting("sasl.password=a=b"),
            ok("sasl.password", "a=b")
        );
        assert_eq!(rdkafka_setting("client.id="), ok("client.id", ""));
        for bad in ["", "nokey", "=x", " =x", "="] {
            let e = rdkafka_setting(bad).unwrap_err();
            assert_eq!(e, format!("-X {bad}: expected KEY=VALUE with a KEY"));
        }
        assert_eq!(
            rdkafka_setting("bootstrap.servers=h:9092").unwrap_err(),
            "-X bootstrap.servers=h:9092: give --kafka-bootstrap instead"
        );
    }

    #[test]
    fn stat_ticks_reads_user_and_system_time_past_any_command_name() {
        // A command may hold spaces and parentheses; utime 1234 and stime 56 follow it.
        let line = "4242 (rdk:broker (1) x) S 1 2 3 4 5 6 7 8 9 10 1234 56 0 0 20 0 1 0";
        assert_eq!(stat_ticks(line).unwrap(), 1290);
        assert!(stat_ticks("4242 (short) S 1 2").is_err());
        assert!(stat_ticks("no command here").is_err());
        assert!(stat_ticks("1 (x) S 1 2 3 4 5 6 7 8 9 10 lots 56").is_err());
    }

    #[test]
    fn this_process_cpu_time_grows_with_work_and_counts_no_agent_when_none_runs() {
        let hz = tick_hz();
        let before = CpuUse::now(hz).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // Work until /proc has counted 50 ms of it (however slowly a shared machine runs it).
        let used = loop {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            let used = CpuUse::now(hz).unwrap().since(before);
            if used.total >= std::time::Duration::from_millis(50) {
                break used;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "{used:?}"
            );
        };
        assert_eq!(used.agent, std::time::Duration::ZERO, "{used:?}");
    }
}
