//! Command-line options and start-up: what to launch or attach to, logging, and the
//! terminal, which is restored on every exit, panics included.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use streamhouse_agent::local_cluster::ClusterSpec;
use streamhouse_client::{ClientError, NewTopic};
use tokio::sync::{mpsc, watch};

use crate::action::Action;
use crate::app::App;
use crate::connect::Connect;
use crate::runtime::{POLL_PERIOD, Runner};
use crate::supervisor::Supervisor;

/// The StreamHouse operations console. With no arguments it launches a local cluster of
/// agent processes on embedded storage and shows it live.
#[derive(Debug, Clone, Parser)]
#[command(name = "streamhouse-tui", version)]
pub struct Args {
    /// Agent processes to launch.
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    /// Where launched agents keep their metadata, objects and logs, and the console its log.
    #[arg(long, default_value = "./streamhouse-data")]
    pub data_dir: PathBuf,
    /// Watch a cluster started elsewhere: HOST:PORT[,HOST:PORT...]. Launches nothing.
    #[arg(long)]
    pub attach: Option<String>,
    /// Turn off every action that changes anything.
    #[arg(long)]
    pub read_only: bool,
    /// Run a scripted scenario on the launched cluster.
    #[arg(long, value_enum)]
    pub demo: Option<Demo>,
    /// Launched agent `agent-N` listens on 127.0.0.1 at this port + N (0: any free port).
    #[arg(long, default_value_t = 9660)]
    pub base_port: u16,
    /// Launched agent `agent-N` serves Kafka clients on 127.0.0.1 at this port + N (0: any
    /// free port).
    #[arg(long, default_value_t = 19092)]
    pub kafka_base_port: u16,
    /// Launched agents' lease TTL: how long a dead leader's partitions wait for a new one.
    #[arg(long, default_value_t = 1_000)]
    pub lease_ttl_ms: u64,
    /// With --attach: a file holding the bearer token the cluster's agents accept.
    #[arg(long, env = "STREAMHOUSE_TOKEN_FILE")]
    pub token_file: Option<String>,
    /// With --attach: connect over TLS, trusting agents this PEM CA signed.
    #[arg(long, env = "STREAMHOUSE_TLS_CA")]
    pub tls_ca: Option<String>,
    /// With --attach and --tls-ca: the name agents' certificates carry, when not the host they advertise.
    #[arg(long, env = "STREAMHOUSE_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Demo {
    /// Load, `kill -9` of a partition leader, a restart; then the gap and the loss measured.
    Failover,
    /// Three consumers in one group; one dies, one joins: rebalances and lag on 3 Groups.
    Groups,
}

/// The launched agents' garbage-collection grace.
const LOCAL_GC_GRACE_MS: u64 = 60_000;

/// The topic a fresh bundled cluster gets, so there is something to watch.
const DEMO_TOPIC: &str = "demo";

pub fn main() -> anyhow::Result<()> {
    streamhouse_agent::process::run_if_agent();
    let args = Args::parse();
    anyhow::ensure!(args.agents >= 1, "--agents must be at least 1");
    // The bundled cluster is plain TCP without tokens; only an attached one may need them.
    let connect = match &args.attach {
        Some(_) => Connect::new(streamhouse_client::Security::from_files(
            args.token_file.as_deref().map(std::path::Path::new),
            args.tls_ca.as_deref().map(std::path::Path::new),
            args.tls_domain.as_deref(),
        )?),
        None => Connect::default(),
    };
    anyhow::ensure!(
        args.attach.is_none() || args.demo.is_none(),
        "--demo runs on a cluster the console launches; leave out --attach"
    );
    std::fs::create_dir_all(&args.data_dir)?;
    let appender = tracing_appender::rolling::daily(
        args.data_dir.join("logs").join("console"),
        "streamhouse-tui.log",
    );
    let (writer, _guard) = tracing_appender::non_blocking(appender);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STREAMHOUSE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,h2=warn,tower=warn,hyper=warn")
            }),
        )
        .with_writer(writer)
        .with_ansi(false)
        .init();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args, connect))
}

async fn run(args: Args, connect: Connect) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (bootstrap, bootstrap_rx) = watch::channel(args.attach.clone().unwrap_or_default());
    let bootstrap = Arc::new(bootstrap);
    let launched = args.attach.is_none();
    let supervisor = launched.then(|| {
        let ttl = args.lease_ttl_ms;
        let flags = [
            "--lease-ttl-ms".to_string(),
            ttl.to_string(),
            "--heartbeat-ms".to_string(),
            (ttl / 4).max(100).to_string(),
            // Every reader of the bundled cluster is on this machine, so objects merged away
            // need not linger the 5 minutes a production grace gives remote readers: a laptop
            // under load keeps a third of the small files.
            "--gc-grace-ms".to_string(),
            LOCAL_GC_GRACE_MS.to_string(),
        ];
        Supervisor::new(
            ClusterSpec::new(&args.data_dir, &flags),
            (args.base_port, args.kafka_base_port),
            tx.clone(),
            bootstrap.clone(),
        )
    });
    let label = match &args.attach {
        Some(a) => {
            let mut addrs = a.split(',');
            let first = addrs.next().unwrap_or_default();
            match addrs.count() {
                0 => format!("attached {first}"),
                more => format!("attached {first} +{more}"),
            }
        }
        None => format!("local cluster in {}", args.data_dir.display()),
    };
    let app = App::new(label, launched, args.read_only);
    let runner = Runner::new(
        tx.clone(),
        bootstrap.clone(),
        supervisor.clone(),
        connect.clone(),
    );
    tracing::info!(?args, "console starting");

    if let Some(sup) = &supervisor {
        for i in 0..args.agents {
            let sup = sup.clone();
            tokio::spawn(async move {
                if let Err(e) = sup.start(format!("agent-{i}")).await {
                    tracing::error!("agent-{i}: {e:#}");
                }
            });
        }
        let r = runner.clone();
        let demo = args.demo;
        let agents = args.agents;
        tokio::spawn(async move {
            if let Err(e) = first_topic(&r).await {
                let _ =
                    r.tx.send(Action::Notice(format!("creating {DEMO_TOPIC}: {e:#}")));
            }
            let outcome = match demo {
                Some(Demo::Failover) => crate::demo::failover(r.clone(), agents).await,
                Some(Demo::Groups) => crate::demo::groups(r.clone(), agents).await,
                None => Ok(()),
            };
            if let Err(e) = outcome {
                let _ =
                    r.tx.send(Action::Caption(format!("the demo stopped: {e:#}")));
            }
        });
    }
    let reaper = supervisor.clone();
    tokio::spawn(crate::workers::poll_cluster(
        bootstrap_rx,
        connect,
        runner.watched_group.subscribe(),
        POLL_PERIOD,
        tx.clone(),
        move || {
            if let Some(s) = &reaper {
                s.reap();
            }
        },
    ));

    let mut terminal = ratatui::init();
    install_panic_hook();
    let result = crate::runtime::run(&mut terminal, app, &runner, rx).await;
    ratatui::restore();
    if launched {
        println!("stopping the agents this console launched (flushing, handing back leases)...");
    }
    runner.shutdown().await;
    if launched {
        println!("stopped. Data and logs are in {}", args.data_dir.display());
    }
    result
}

/// Creates the demo topic once the first agent serves, if the cluster has no topic yet.
async fn first_topic(runner: &Runner) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if !runner.bootstrap().is_empty()
            && let Ok(admin) = runner.admin().await
            && let Ok(topics) = admin.list_topics().await
        {
            if topics.is_empty() {
                match admin.create_topic(NewTopic::new(DEMO_TOPIC, 6)).await {
                    Ok(_) => {
                        let _ = runner.tx.send(Action::Notice(format!(
                            "created topic {DEMO_TOPIC} (6 partitions); 5 Produce sends to it"
                        )));
                    }
                    Err(ClientError::TopicExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "no agent served within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restores the terminal and asks launched agents to stop before the default panic report,
/// so a panic leaves neither a raw-mode terminal nor orphaned agents.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        ratatui::restore();
        crate::supervisor::emergency_stop();
        previous(info);
        std::process::exit(101);
    }));
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn a_port_base_out_of_range_is_refused_naming_the_flag() {
        for v in ["70000", "-1", "abc", ""] {
            let err = super::Args::try_parse_from(["streamhouse-tui", "--kafka-base-port", v])
                .unwrap_err()
                .to_string();
            let first = err.lines().next().unwrap_or_default();
            assert!(
                first.contains("--kafka-base-port") || first.contains(&format!("'{v}'")),
                "{v}: {first}"
            );
        }
        let ok =
            super::Args::try_parse_from(["streamhouse-tui", "--kafka-base-port", "0"]).unwrap();
        assert_eq!(ok.kafka_base_port, 0);
    }
}
