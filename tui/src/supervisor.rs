//! The agents this console launched: starting, stopping and killing them off the render
//! loop, and telling the state what phase each is in.

use std::sync::{Arc, Mutex};

use streamhouse_agent::local_cluster::{self, ClusterSpec, LocalCluster};
use streamhouse_agent::process::{self, AgentProc};
use tokio::sync::{mpsc, watch};

use crate::action::{Action, Phase};

/// Process ids of running launched agents, for the panic hook: a panicking console must
/// not leave agents behind.
static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Asks every launched agent to stop (SIGTERM), without waiting. For the panic hook.
pub fn emergency_stop() {
    let pids = std::mem::take(&mut *PIDS.lock().unwrap_or_else(|p| p.into_inner()));
    for pid in pids {
        let _ = process::signal(pid, process::Signal::SIGTERM);
    }
}

fn remember(pid: u32, running: bool) {
    let mut pids = PIDS.lock().unwrap_or_else(|p| p.into_inner());
    pids.retain(|p| *p != pid);
    if running {
        pids.push(pid);
    }
}

#[derive(Debug, Clone)]
pub struct Supervisor {
    spec: ClusterSpec,
    cluster: Arc<Mutex<LocalCluster>>,
    tx: mpsc::UnboundedSender<Action>,
    /// Every running agent's address, comma-separated: what clients bootstrap from.
    bootstrap: Arc<watch::Sender<String>>,
    /// `agent-N` listens on this port + N; 0: any free port.
    base_port: u16,
    /// `agent-N` serves Kafka clients on this port + N; 0: any free port.
    kafka_base_port: u16,
}

impl Supervisor {
    pub fn new(
        spec: ClusterSpec,
        (base_port, kafka_base_port): (u16, u16),
        tx: mpsc::UnboundedSender<Action>,
        bootstrap: Arc<watch::Sender<String>>,
    ) -> Supervisor {
        Supervisor {
            base_port,
            kafka_base_port,
            cluster: Arc::new(Mutex::new(LocalCluster::new(spec.clone()))),
            spec,
            tx,
            bootstrap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalCluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn phase(&self, id: &str, phase: Phase) {
        let _ = self.tx.send(Action::Agent {
            id: id.to_string(),
            phase,
        });
    }

    fn publish(&self) {
        let b = self.lock().bootstrap();
        if !b.is_empty() {
            self.bootstrap.send_replace(b);
        }
    }

    pub fn running(&self) -> Vec<String> {
        self.lock().agents.keys().cloned().collect()
    }

    /// The lowest `agent-N` id not running now.
    pub fn next_id(&self) -> String {
        let c = self.lock();
        (0..)
            .map(|i| format!("agent-{i}"))
            .find(|id| !c.agents.contains_key(id))
            .unwrap_or_default()
    }

    /// Where agent `id` listens (gRPC from `base_port`, Kafka from `kafka_base_port`): a port
    /// of its own after the base (so it comes back where it was after a restart), or any free
    /// port if that one is taken.
    fn listen_for(id: &str, base_port: u16) -> String {
        let n = id
            .strip_prefix("agent-")
            .and_then(|n| n.parse::<u16>().ok());
        match n {
            Some(n) if base_port != 0 => {
                let addr = format!("127.0.0.1:{}", base_port.saturating_add(n));
                // A port someone else holds is not worth failing over: take any free one.
                match std::net::TcpListener::bind(&addr) {
                    Ok(_) => addr,
                    Err(_) => "127.0.0.1:0".to_string(),
                }
            }
            _ => "127.0.0.1:0".to_string(),
        }
    }

    /// Starts agent `id` and waits until it serves.
    pub async fn start(&self, id: String) -> anyhow::Result<String> {
        self.phase(&id, Phase::Starting);
        let spec = self.spec.clone();
        let launch_id = id.clone();
        let listen = Self::listen_for(&id, self.base_port);
        let kafka = Self::listen_for(&id, self.kafka_base_port);
        let launch = move || spec.launch_with(&launch_id, &listen, &["--kafka-listen", &kafka]);
        match tokio::task::spawn_blocking(launch).await? {
            Ok(p) => {
                let addr = p.addr.clone();
                remember(p.pid(), true);
                self.lock().agents.insert(id.clone(), p);
                self.publish();
                self.phase(&id, Phase::Up { addr: addr.clone() });
                Ok(addr)
            }
            Err(e) => {
                self.phase(&id, Phase::Failed(format!("{e:#}")));
                Err(e)
            }
        }
    }

    fn take(&self, id: &str) -> anyhow::Result<AgentProc> {
        let p = self.lock().take(id)?;
        remember(p.pid(), false);
        self.publish();
        Ok(p)
    }

    /// `kill -9` of agent `id`.
    pub async fn kill(&self, id: &str) -> anyhow::Result<()> {
        let p = self.take(id)?;
        tokio::task::spawn_blocking(move || p.kill9()).await??;
        self.phase(id, Phase::Killed);
        Ok(())
    }

    /// Graceful stop: the agent flushes, hands back its leases and deregisters.
    pub async fn stop(&self, id: &str) -> anyhow::Result<()> {
        let p = self.take(id)?;
        self.phase(id, Phase::Stopping);
        tokio::task::spawn_blocking(move || local_cluster::stop(p)).await??;
        self.phase(id, Phase::Stopped);
        Ok(())
    }

    pub async fn restart(&self, id: &str) -> anyhow::Result<()> {
        if self.lock().agents.contains_key(id) {
            self.stop(id).await?;
        }
        self.start(id.to_string()).await.map(|_| ())
    }

    /// Notes agents that exited by themselves.
    pub fn reap(&self) {
        let exited: Vec<String> = self
            .lock()
            .agents
            .iter_mut()
            .filter_map(|(id, p)| p.has_exited().then(|| id.clone()))
            .collect();
        for id in exited {
            if let Ok(p) = self.take(&id) {
                drop(p);
                let why = match self.spec.log_dir(&id) {
                    Some(log) => format!("exited on its own; see {}", log.display()),
                    None => "exited on its own".to_string(),
                };
                self.phase(&id, Phase::Failed(why));
            }
        }
    }

    /// Stops every agent gracefully, all at once.
    pub async fn stop_all(&self) -> anyhow::Result<()> {
        let cluster = self.cluster.clone();
        for id in self.running() {
            self.phase(&id, Phase::Stopping);
        }
        tokio::task::spawn_blocking(move || {
            let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
            for p in c.agents.values() {
                remember(p.pid(), false);
            }
            c.stop_all()
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::Supervisor;

    #[test]
    fn each_agent_gets_its_port_after_the_base_or_any_free_one() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        // Taken: any free port instead of failing the agent's start.
        assert_eq!(Supervisor::listen_for("agent-0", port), "127.0.0.1:0");
        // Base 0, or an id that is not agent-N: any free port.
        assert_eq!(Supervisor::listen_for("agent-3", 0), "127.0.0.1:0");
        assert_eq!(Supervisor::listen_for("other", 19092), "127.0.0.1:0");
        // Past the last port: saturates at 65535, which is taken or free like any other.
        let top = Supervisor::listen_for("agent-65535", 65535);
        assert!(top == "127.0.0.1:65535" || top == "127.0.0.1:0", "{top}");
    }
}
