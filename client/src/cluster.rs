//! Connections to agents and a cache of topic metadata (partition counts and leaders).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use streamhouse_proto::pb;
use streamhouse_proto::pb::stream_house_client::StreamHouseClient;
use streamhouse_proto::time::Backoff;
use streamhouse_proto::wire::Answer;
use tokio::sync::Semaphore;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::{ClientError, Result};
use crate::security::{Auth, Security};

/// A connection to one agent, every request carrying the client's token.
pub(crate) type Rpc = StreamHouseClient<InterceptedService<Channel, Auth>>;

/// Largest response a client accepts (a fetch of many partitions' batches).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct AgentConn {
    pub client: Rpc,
    /// Bounds the produce requests in flight to this agent.
    pub in_flight: Arc<Semaphore>,
    /// When the last produce request went to this agent.
    pub last_sent: Arc<Mutex<Option<Instant>>>,
}

#[derive(Debug, Clone)]
pub(crate) struct PartitionMeta {
    pub leader_address: Option<String>,
    pub log_start_offset: i64,
    pub high_watermark: i64,
}

#[derive(Debug)]
pub(crate) struct TopicMeta {
    pub partitions: Vec<PartitionMeta>,
    pub fetched_at: Instant,
}

#[derive(Debug)]
pub(crate) struct Cluster {
    bootstrap: Vec<String>,
    max_in_flight: usize,
    request_timeout: Duration,
    security: Security,
    conns: Mutex<HashMap<String, AgentConn>>,
    topics: RwLock<HashMap<String, Arc<TopicMeta>>>,
    /// The live agents the last metadata answer named: asked first, so a client keeps
    /// finding the cluster after every agent it was bootstrapped with has moved or died.
    agents: RwLock<Vec<String>>,
    /// The batch and request limits the last metadata answer announced.
    limits: RwLock<Limits>,
}

/// What the agents accept, as they announce it in `GetMetadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The largest encoded batch.
    pub max_batch_bytes: usize,
    /// The largest request.
    pub max_request_bytes: usize,
    /// How far apart the agents begin flushes.
    pub flush_interval: Duration,
}

impl Default for Limits {
    /// An agent's defaults, until one has answered.
    fn default() -> Self {
        let max_batch_bytes = 1024 * 1024;
        Limits {
            max_batch_bytes,
            max_request_bytes: streamhouse_proto::limits::max_request_bytes(max_batch_bytes),
            flush_interval: Duration::ZERO,
        }
    }
}

/// The flush interval an agent announces, within what agents accept: the producer spaces
/// requests by it, so an absurd figure must not stall a producer for hours.
pub(crate) fn announced_flush_interval(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms).min(streamhouse_proto::limits::MAX_FLUSH_INTERVAL_MS))
}

pub(crate) fn parse_bootstrap(list: &str) -> Result<Vec<String>> {
    let addrs: Vec<String> = list
        .split(',')
        .map(|s| s.trim().trim_start_matches("http://").to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::InvalidConfig(
            "bootstrap needs at least one HOST:PORT".into(),
        ));
    }
    for a in &addrs {
        if !a.contains(':') {
            return Err(ClientError::InvalidConfig(format!(
                "bootstrap address {a:?} is not HOST:PORT"
            )));
        }
    }
    Ok(addrs)
}

impl Cluster {
    pub fn new(
        bootstrap: Vec<String>,
        max_in_flight: usize,
        request_timeout: Duration,
        security: Security,
    ) -> Self {
        Cluster {
            bootstrap,
            max_in_flight,
            request_timeout,
            security,
            conns: Mutex::new(HashMap::new()),
            topics: RwLock::new(HashMap::new()),
            agents: RwLock::new(Vec::new()),
            limits: RwLock::new(Limits::default()),
        }
    }

    /// The agents' limits, as last announced.
    pub fn limits(&self) -> Limits {
        *self.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the live agents to ask first.
    pub fn set_agents(&self, addrs: Vec<String>) {
        *self.agents.write().unwrap_or_else(|p| p.into_inner()) = addrs;
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// A connection to `addr`, made lazily and kept.
    pub fn conn(&self, addr: &str) -> Result<AgentConn> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.get(addr) {
            return Ok(c.clone());
        }
        let invalid = |e: tonic::transport::Error| {
            ClientError::InvalidConfig(format!("agent address {addr:?}: {e}"))
        };
        let mut endpoint = Endpoint::from_shared(format!("{}://{addr}", self.security.scheme()))
            .map_err(invalid)?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if let Some(tls) = self.security.tls_config() {
            endpoint = endpoint.tls_config(tls).map_err(invalid)?;
        }
        let client = StreamHouseClient::with_interceptor(
            endpoint.connect_lazy(),
            self.security.interceptor(),
        )
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
        let conn = AgentConn {
            client,
            in_flight: Arc::new(Semaphore::new(self.max_in_flight)),
            last_sent: Arc::new(Mutex::new(None)),
        };
        conns.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    /// Agents to ask: the live ones the cluster last named, the bootstrap list, then any
    /// leaders learned since.
    fn candidates(&self) -> Vec<String> {
        let mut out = self
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for b in &self.bootstrap {
            if !out.contains(b) {
                out.push(b.clone());
            }
        }
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        for t in topics.values() {
            for p in &t.partitions {
                if let Some(a) = &p.leader_address
                    && !out.contains(a)
                {
                    out.push(a.clone());
                }
            }
        }
        out
    }

    /// Runs `f` against the first agent that answers.
    pub async fn any_agent<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut(Rpc) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = String::from("no agent tried");
        for addr in self.candidates() {
            let conn = self.conn(&addr)?;
            match tokio::time::timeout(self.request_timeout, f(conn.client)).await {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(status)) => match ClientError::from_status(&status) {
                    e @ ClientError::Unauthenticated(_) => return Err(e),
                    e => last = format!("{addr}: {e}"),
                },
                Err(_) => last = format!("{addr}: timed out"),
            }
        }
        Err(ClientError::Unreachable(last))
    }

    /// [`Cluster::any_agent`], then the error the response itself carries.
    pub async fn ask<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Answer,
        F: FnMut(Rpc) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let resp = self.any_agent(f).await?;
        match ClientError::from_pb(resp.error()) {
            Some(e) => Err(e),
            None => Ok(resp),
        }
    }

    /// The cluster's metadata for `topics` (all when empty). An agent whose metadata store is
    /// busy (or that is shutting down) is asked again, with backoff, within the request
    /// timeout: a consumer assigning thousands of partitions, say, should not fail over one
    /// slow second of the store.
    pub async fn metadata(&self, topics: Vec<String>) -> Result<pb::GetMetadataResponse> {
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let resp = loop {
            let resp = self
                .any_agent(|mut c| {
                    let topics = topics.clone();
                    async move { c.get_metadata(pb::GetMetadataRequest { topics }).await }
                })
                .await?;
            match ClientError::from_pb(resp.error.as_ref()) {
                None => break resp,
                Some(e) if e.is_retriable() => {
                    let delay = backoff.next_delay();
                    if Instant::now() + delay >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "metadata request refused; asking again");
                    tokio::time::sleep(delay).await;
                }
                Some(e) => return Err(e),
            }
        };
        if !resp.agents.is_empty() {
            self.set_agents(resp.agents.iter().map(|a| a.address.clone()).collect());
        }
        if resp.max_batch_bytes > 0 {
            let max_batch_bytes = resp.max_batch_bytes as usize;
            let max_request_bytes = match resp.max_request_bytes {
                0 => streamhouse_proto::limits::max_request_bytes(max_batch_bytes),
                n => n as usize,
            };
            *self.limits.write().unwrap_or_else(|p| p.into_inner()) = Limits {
                max_batch_bytes,
                max_request_bytes,
                flush_interval: announced_flush_interval(resp.flush_interval_ms),
            };
        }
        Ok(resp)
    }

    /// The topic's partitions and leaders, from the cache or an agent.
    pub async fn topic(&self, name: &str) -> Result<Arc<TopicMeta>> {
        if let Some(t) = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(t.clone());
        }
        self.refresh(name).await
    }

    /// Asks an agent for the topic's current metadata and caches it.
    pub async fn refresh(&self, name: &str) -> Result<Arc<TopicMeta>> {
        let resp = self.metadata(vec![name.to_string()]).await?;
        let info = resp
            .topics
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ClientError::UnknownTopic(name.to_string()))?;
        if let Some(e) = ClientError::from_pb(info.error.as_ref()) {
            self.forget(name);
            return Err(e);
        }
        let mut partitions = vec![
            PartitionMeta {
                leader_address: None,
                log_start_offset: 0,
                high_watermark: 0,
            };
            info.partition_count as usize
        ];
        for p in info.partitions {
            if let Some(slot) = partitions.get_mut(p.partition as usize) {
                *slot = PartitionMeta {
                    leader_address: (!p.leader_address.is_empty()).then_some(p.leader_address),
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                };
            }
        }
        let meta = Arc::new(TopicMeta {
            partitions,
            fetched_at: Instant::now(),
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), meta.clone());
        Ok(meta)
    }

    /// The cached leader of a partition without asking anyone: `None` when the topic is not
    /// cached, `Some(None)` when the cache knows no leader.
    pub fn cached_leader(&self, topic: &str, partition: u32) -> Option<Option<String>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let t = topics.get(topic)?;
        Some(
            t.partitions
                .get(partition as usize)
                .and_then(|p| p.leader_address.clone()),
        )
    }

    /// How old the cached metadata of a topic is, if it is cached.
    pub fn cached_age(&self, topic: &str) -> Option<Duration> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(topic).map(|t| t.fetched_at.elapsed())
    }

    pub fn forget(&self, name: &str) {
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// A connection to the agent leading the partition, refreshing metadata when the cache
    /// knows no leader.
    pub async fn leader(&self, topic: &str, partition: u32) -> Result<AgentConn> {
        let mut meta = self.topic(topic).await?;
        for attempt in 0..2 {
            let p = meta.partitions.get(partition as usize).ok_or_else(|| {
                ClientError::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                }
            })?;
            if let Some(addr) = &p.leader_address {
                return self.conn(addr);
            }
            if attempt == 0 {
                meta = self.refresh(topic).await?;
            }
        }
        Err(ClientError::Agent {
            code: pb::ErrorCode::NotLeader,
            message: format!("no agent leads {topic}-{partition} yet"),
        })
    }
}
