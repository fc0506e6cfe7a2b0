//! The StreamHouse agent: a stateless broker. Record data goes to an object store, everything
//! else to a metadata store; any agent can be killed at any moment without losing an
//! acknowledged record.
//!
//! Inside, the modules follow the data: `service` takes a request, `writer` buffers and
//! flushes it to the [`object_store`] and commits it to the [`metadata`] store; `reader`
//! serves it back. `lease` decides which agent writes which partition; `partitions` is what an
//! agent knows of each (docs/ARCHITECTURE.md has the whole module map).
//!
//! The library API runs agents: [`Agent`] on a runtime of yours, [`EmbeddedAgent`] on its
//! own, [`local_cluster`] several as processes, and [`process`] the one way to start and
//! signal an agent process.

#![deny(missing_docs)]

// The library API: running agents, alone or as a local cluster, and the stores they use.
pub mod cli;
pub mod config;
pub mod local_cluster;
pub mod metadata;
pub mod object_store;
pub mod process;
#[doc(hidden)]
pub mod testing;

// The agent's inside.
pub(crate) mod assignment;
pub(crate) mod auth;
pub(crate) mod error;
pub(crate) mod group;
pub(crate) mod kafka;
pub(crate) mod lease;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub(crate) mod partitions;
pub(crate) mod producer_ids;
pub(crate) mod reader;
pub(crate) mod sequence;
pub(crate) mod service;
pub(crate) mod startup;
pub(crate) mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use streamhouse_proto::pb::stream_house_server::StreamHouseServer;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

pub use config::AgentConfig;
pub(crate) use error::AgentError;

use error::Result;
use metadata::MetadataStore;
use object_store::ObjectStore;
use partitions::{TopicState, Topics};
use reader::{ChunkCache, Reader};
use writer::Writer;

/// Why an agent could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong (or the agent's thread ended before it was ready).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A start-up check failed: one line naming the setting, the cause and the remedy.
    #[error("{0}")]
    Check(String),
    /// The object store could not be opened or reached.
    #[error("object store: {0}")]
    Storage(#[from] object_store::StorageError),
    /// The metadata store could not be opened, reached or migrated.
    #[error("metadata store: {0}")]
    Metadata(#[from] metadata::MetadataError),
    /// A listener could not be bound or used.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What every part of a running agent shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub id: String,
    pub advertise: String,
    /// Where and as which broker this agent serves Kafka clients, when it does.
    pub kafka: Option<kafka::KafkaIdentity>,
    pub config: AgentConfig,
    /// Connections for requests, follower polling, groups and maintenance.
    pub meta: MetadataStore,
    /// Connections of the lease rounds alone, so nothing else can starve a renewal.
    pub lease_meta: MetadataStore,
    /// `{id}-{process nonce}`, carried by every object key this process writes.
    pub object_tag: String,
    pub store: Arc<dyn ObjectStore>,
    pub topics: Topics,
    pub writer: Writer,
    pub reader: Reader,
    pub lease_kick: Arc<Notify>,
    /// Lease rounds take turns: the loop's and the one a topic creation runs at once.
    pub lease_round: tokio::sync::Mutex<()>,
    pub shutting_down: AtomicBool,
    pub stats: Stats,
    pub metrics: Arc<metrics::Metrics>,
    /// Producer ids the cluster issued, checked on every stamped batch.
    pub issued_producers: producer_ids::IssuedProducers,
    /// Numbers the segment objects compaction writes.
    pub segment_seq: AtomicU64,
    /// When the lease round last renewed this agent's leases.
    pub last_renewal: std::sync::Mutex<Option<std::time::Instant>>,
    /// Until when lease rounds are sat out because flushes cannot commit.
    pub withheld_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// (sit-outs in a row, objects committed when the streak began): a commit in between
    /// ends the streak.
    pub sit_outs: std::sync::Mutex<(u32, u64)>,
    /// Whether the last lease round succeeded whole: only then does the next one heartbeat.
    pub last_round_ok: AtomicBool,
    /// The last lease round's plan and the snapshot it came from, reused while the live
    /// agents and every partition's holder stay the same.
    pub lease_plan: std::sync::Mutex<Option<lease::CachedPlan>>,
    /// This process's session with the metadata store, whose end tells the other agents at
    /// once that it is gone; replaced when it ends under a live agent.
    pub session: std::sync::Mutex<Arc<metadata::Session>>,
}

/// Counters the agent reports through `GetAgentStats`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub started_at_ms: i64,
    pub produced_records: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub fetched_records: AtomicU64,
    pub fetched_bytes: AtomicU64,
}

impl Shared {
    /// A topic's state, loaded from the metadata store if this agent has not seen it.
    pub async fn topic(&self, name: &str) -> Result<Arc<TopicState>> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t);
        }
        match self.meta.get_topic(name).await? {
            Some(row) => Ok(self.topics.upsert(&row)),
            None => Err(AgentError::UnknownTopic(name.to_string())),
        }
    }
}

fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A started agent: registered, holding its first leases, ready to serve.
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
    kafka_listener: Option<TcpListener>,
    metrics_listener: Option<TcpListener>,
    tls: Option<tonic::transport::Identity>,
    tokens: auth::TokenCheck,
    kafka_security: kafka::security::Security,
}

impl Agent {
    /// Connects to the stores, registers, and takes this agent's share of the leases.
    pub async fn start(config: AgentConfig, listener: TcpListener) -> Result<Agent, StartError> {
        config.validate().map_err(StartError::Config)?;
        let store = startup::open_object_store(&config).await?;
        Self::start_with_store(config, listener, store).await
    }

    /// [`Agent::start`] with an object store given rather than opened from the config's URL
    /// (tests use it to wrap a store with faults).
    pub async fn start_with_store(
        config: AgentConfig,
        listener: TcpListener,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Agent, StartError> {
        config.validate().map_err(StartError::Config)?;
        let id = config
            .id
            .clone()
            .unwrap_or_else(|| format!("agent-{:08x}", rand::random::<u32>()));
        if !valid_agent_id(&id) {
            return Err(StartError::Config(format!(
                "agent id {id:?} must be 1-64 of [A-Za-z0-9._-]"
            )));
        }
        let addr = listener.local_addr()?;
        let tls = auth::load_identity(&config).map_err(StartError::Config)?;
        let tokens = auth::TokenCheck::load(config.auth_tokens_file.as_deref())
            .map_err(StartError::Config)?;
        if tokens.enabled() && tls.is_none() {
            tracing::warn!(
                "bearer tokens are on without TLS: tokens cross the network in clear text; \
                 set --tls-cert and --tls-key"
            );
        }
        let kafka_security =
            kafka::security::Security::new(&config, tokens.clone()).map_err(StartError::Config)?;
        let advertise = config.advertise.clone().unwrap_or_else(|| addr.to_string());
        let meta = startup::connect_metadata(&config).await?;
        startup::claim_id(&meta, &id, &config).await?;
        let dedicated = |role: &'static str, e: metadata::MetadataError| {
            StartError::Check(format!(
                "metadata store {}: cannot open the {role} connections: {e} \
                 (--metadata / STREAMHOUSE_METADATA); check the server's connection limit",
                startup::redact(&config.metadata)
            ))
        };
        let lease_meta = meta
            .dedicated(2, config.metadata_timeout())
            .await
            .map_err(|e| dedicated("lease", e))?;
        let commit_meta = meta
            .dedicated(2, config.commit_server_timeout())
            .await
            .map_err(|e| dedicated("commit", e))?;
        let object_tag = format!("{id}-{:016x}", rand::random::<u64>());
        let cache = Arc::new(ChunkCache::new(config.cache_bytes));
        let lease_kick = Arc::new(Notify::new());
        let metrics = Arc::new(metrics::Metrics::default());
        let metrics_listener = match &config.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let kafka_listener = match &config.kafka_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                StartError::Check(format!(
                    "kafka_listen {addr}: cannot listen: {e}; free the port or choose another"
                ))
            })?),
            None => None,
        };
        let kafka_advertise = match &kafka_listener {
            Some(l) => Some(match &config.kafka_advertise {
                Some(a) => a.clone(),
                None => l.local_addr()?.to_string(),
            }),
            None => None,
        };
        let writer = Writer::start(
            id.clone(),
            object_tag.clone(),
            writer::FlushSettings {
                interval: config.flush_interval(),
                bytes: config.flush_bytes,
                commit_deadline: config.commit_deadline(),
                max_buffered: config.max_buffered_bytes,
            },
            commit_meta,
            store.clone(),
            cache.clone(),
            lease_kick.clone(),
            metrics.clone(),
        );
        let reader = Reader::new(meta.clone(), store.clone(), cache, metrics.clone());
        let session = meta.open_session().await.map_err(|e| {
            let remedy = match meta.dialect() {
                metadata::Dialect::Postgres => "check the server's connection limit",
                metadata::Dialect::Sqlite => {
                    "the directory beside the database file must be creatable and writable"
                }
            };
            StartError::Check(format!(
                "metadata store {}: cannot open the agent's session: {e} \
                 (--metadata / STREAMHOUSE_METADATA); {remedy}",
                startup::redact(&config.metadata)
            ))
        })?;
        meta.register_agent(&id, &advertise, kafka_advertise.as_deref(), session.key())
            .await?;
        let kafka = match kafka_advertise {
            Some(advertise) => Some(kafka::KafkaIdentity::new(
                advertise,
                meta.kafka_node_id(&id).await?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            id,
            advertise,
            kafka,
            config,
            meta,
            lease_meta,
            object_tag,
            store,
            topics: Topics::default(),
            writer,
            reader,
            lease_kick,
            lease_round: tokio::sync::Mutex::new(()),
            shutting_down: AtomicBool::new(false),
            stats: Stats {
                started_at_ms: streamhouse_proto::time::now_ms(),
                ..Stats::default()
            },
            metrics,
            issued_producers: producer_ids::IssuedProducers::default(),
            segment_seq: AtomicU64::new(0),
            last_renewal: std::sync::Mutex::new(None),
            withheld_until: std::sync::Mutex::new(None),
            sit_outs: std::sync::Mutex::new((0, 0)),
            last_round_ok: AtomicBool::new(true),
            lease_plan: std::sync::Mutex::new(None),
            session: std::sync::Mutex::new(Arc::new(session)),
        });
        if let Err(e) = lease::tick(&shared).await {
            tracing::warn!(error = %e, "first lease round failed; the lease loop will retry");
        }
        Ok(Agent {
            shared,
            listener,
            addr,
            kafka_listener,
            metrics_listener,
            tls,
            tokens,
            kafka_security,
        })
    }

    /// The address the agent listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Where Kafka clients are served, when `kafka_listen` is set.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The agent's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Serves until `shutdown` completes, then stops gracefully: refuse new writes, flush and
    /// acknowledge what is buffered, finish in-flight requests, deregister, release leases.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StartError> {
        let shared = self.shared;
        let (stop_tx, stop_rx) = watch::channel(false);
        let lease_task = tokio::spawn(lease::run(shared.clone(), stop_rx.clone()));
        let maintenance_task = tokio::spawn(maintenance::run(shared.clone(), stop_rx.clone()));
        let kafka_task = self.kafka_listener.map(|l| {
            tokio::spawn(kafka::serve(
                l,
                shared.clone(),
                self.kafka_security,
                stop_rx.clone(),
            ))
        });
        let gc_task = tokio::spawn(maintenance::run_gc(shared.clone(), stop_rx));
        let metrics_task = self
            .metrics_listener
            .map(|l| tokio::spawn(metrics::serve(l, shared.clone())));
        let max_msg = shared.config.max_request_bytes();
        let reload_task = self.tokens.enabled().then(|| {
            let tokens = self.tokens.clone();
            tokio::spawn(async move {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    tracing::warn!("cannot watch SIGHUP; tokens reload only at restart");
                    return;
                };
                while hup.recv().await.is_some() {
                    match tokens.reload() {
                        Ok(n) => tracing::info!(tokens = n, "SIGHUP: tokens file reloaded"),
                        Err(e) => tracing::warn!(error = %e, "SIGHUP: tokens kept; {e}"),
                    }
                }
            })
        });
        let svc = tonic::service::interceptor::InterceptedService::new(
            StreamHouseServer::new(service::Service::new(shared.clone()))
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(128 * 1024 * 1024),
            self.tokens,
        );
        let incoming =
            tonic::transport::server::TcpIncoming::from(self.listener).with_nodelay(Some(true));
        tracing::info!(id = %shared.id, addr = %self.addr, "agent serving");
        let drain = shared.clone();
        let mut server = tonic::transport::Server::builder();
        if let Some(identity) = self.tls {
            server =
                server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
        }
        let result = server
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async move {
                shutdown.await;
                tracing::info!("shutting down: flushing buffered batches");
                drain.shutting_down.store(true, Ordering::Release);
                drain.writer.close().await;
            })
            .await;
        // Also when the server failed: whatever was buffered is answered before leaving.
        shared.shutting_down.store(true, Ordering::Release);
        shared.writer.close().await;
        let _ = stop_tx.send(true);
        let _ = lease_task.await;
        let _ = maintenance_task.await;
        let _ = gc_task.await;
        if let Some(t) = metrics_task {
            t.abort();
        }
        if let Some(t) = kafka_task {
            t.abort();
        }
        if let Some(t) = reload_task {
            t.abort();
        }
        // Deregister first, so that the leases released next are taken by the others and
        // not waited for by them as ours.
        if let Err(e) = shared.meta.deregister_agent(&shared.id).await {
            tracing::warn!(error = %e, "could not deregister");
        }
        if let Err(e) = shared.meta.release_leases(&shared.id).await {
            tracing::warn!(error = %e, "could not release leases; they will expire");
        }
        shared.meta.close().await;
        shared.lease_meta.close().await;
        tracing::info!(id = %shared.id, "agent stopped");
        result.map_err(StartError::from)
    }
}

/// An agent on its own thread and runtime inside this process: the console's local cluster
/// and the benchmarks use it. Nothing is shared with the caller's runtime.
#[derive(Debug)]
pub struct EmbeddedAgent {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    kafka_addr: Option<SocketAddr>,
    id: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl EmbeddedAgent {
    /// Starts an agent with `config` (whose `listen` may use port 0) and waits until it serves.
    pub fn start(config: AgentConfig, worker_threads: usize) -> Result<EmbeddedAgent, StartError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("streamhouse-agent".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(worker_threads.max(1))
                    .thread_name("agent-worker")
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let started = async {
                        let listener = TcpListener::bind(&config.listen).await?;
                        Agent::start(config, listener).await
                    }
                    .await;
                    let agent = match started {
                        Ok(a) => {
                            let _ = ready_tx.send(Ok((
                                a.local_addr(),
                                a.metrics_addr(),
                                a.kafka_addr(),
                                a.id().to_string(),
                            )));
                            a
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            let _ = ready_tx.send(Err(e));
                            return Err(msg);
                        }
                    };
                    agent
                        .serve(async {
                            let _ = stop_rx.await;
                        })
                        .await
                        .map_err(|e| e.to_string())
                })
            })?;
        match ready_rx.recv() {
            Ok(Ok((addr, metrics_addr, kafka_addr, id))) => Ok(EmbeddedAgent {
                addr,
                metrics_addr,
                kafka_addr,
                id,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let why = match thread.join() {
                    Ok(Err(e)) => e,
                    _ => "agent thread ended before it was ready".into(),
                };
                Err(StartError::Config(why))
            }
        }
    }

    /// Where it serves clients.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where `/metrics` is served, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where Kafka clients are served, when `kafka_listen` is set.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka_addr
    }

    /// Stops gracefully and waits for the agent to finish.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("agent thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for EmbeddedAgent {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
