//! A cluster of agent processes on shared stores, by id: the console's bundled cluster (one
//! SQLite file and one object directory), the demos that kill agents, and the tests' clusters
//! on any stores. Processes are started and signalled through [`crate::process`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::process::{self, AgentProc};

pub use crate::process::run_if_agent;

/// How long a launched agent may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping agent may take to flush, hand back its leases and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how a cluster's agents run; cheap to clone, so a slow launch need not hold the
/// [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The program run in agent mode: by default this one (which must call
    /// [`run_if_agent`]).
    pub program: Option<PathBuf>,
    /// The metadata store URL every agent shares.
    pub metadata: String,
    /// The object store URL every agent shares.
    pub storage: String,
    /// Agents log (their tracing log and their stderr) under `logs/<agent id>/` here; `None`:
    /// to this process's stderr.
    pub logs: Option<PathBuf>,
    /// Extra agent flags (lease TTL and such).
    pub extra: Vec<String>,
    /// The agents' log filter (`STREAMHOUSE_LOG`, as `RUST_LOG`); `None`: theirs by default.
    pub log_filter: Option<String>,
}

impl ClusterSpec {
    /// Agents of this program on embedded storage under `dir` (`metadata.db`, `objects/`),
    /// logging under `dir/logs/`.
    pub fn new(dir: &Path, extra: &[String]) -> ClusterSpec {
        ClusterSpec {
            program: None,
            metadata: format!("sqlite://{}", dir.join("metadata.db").display()),
            storage: format!("file://{}", dir.join("objects").display()),
            logs: Some(dir.join("logs")),
            extra: extra.to_vec(),
            log_filter: None,
        }
    }

    /// Agents on the given stores, logging to this process's stderr.
    pub fn on_stores(metadata: &str, storage: &str, extra: &[String]) -> ClusterSpec {
        ClusterSpec {
            program: None,
            metadata: metadata.to_string(),
            storage: storage.to_string(),
            logs: None,
            extra: extra.to_vec(),
            log_filter: None,
        }
    }

    /// The same cluster, run by `program` in agent mode instead of this program.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> ClusterSpec {
        self.program = Some(program.into());
        self
    }

    /// The directory agent `id` logs to (its tracing log and its stderr), if it logs to one.
    pub fn log_dir(&self, id: &str) -> Option<PathBuf> {
        self.logs.as_ref().map(|l| l.join(id))
    }

    /// Starts agent `id` on any free port and waits until it serves.
    pub fn launch(&self, id: &str) -> anyhow::Result<AgentProc> {
        self.launch_with(id, "127.0.0.1:0", &[])
    }

    /// As [`ClusterSpec::launch`], listening on `listen` (`127.0.0.1:0`: any free port).
    pub fn launch_on(&self, id: &str, listen: &str) -> anyhow::Result<AgentProc> {
        self.launch_with(id, listen, &[])
    }

    /// As [`ClusterSpec::launch_on`], with flags for this agent alone after the cluster's.
    /// Its stdout is read for its address; with a log directory its stderr goes to
    /// `stderr.log` there, so nothing reaches a terminal a console is drawing on.
    pub fn launch_with(&self, id: &str, listen: &str, own: &[&str]) -> anyhow::Result<AgentProc> {
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        let mut command = process::agent_command(&program);
        command
            .args(["--metadata", &self.metadata, "--storage", &self.storage])
            .args(["--listen", listen, "--id", id])
            .args(&self.extra)
            .args(own)
            .stdin(Stdio::null());
        if let Some(filter) = &self.log_filter {
            command.env("STREAMHOUSE_LOG", filter);
        }
        let log_dir = self.log_dir(id);
        if let Some(logs) = &log_dir {
            std::fs::create_dir_all(logs)?;
            let stderr = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join("stderr.log"))?;
            command.arg("--log-dir").arg(logs).stderr(stderr);
        }
        let last_words = || {
            let said = std::fs::read_to_string(log_dir.as_ref()?.join("stderr.log")).ok()?;
            said.lines().last().map(str::to_string)
        };
        process::spawn(command, START_TIMEOUT, last_words)
            .map_err(|e| anyhow::anyhow!("agent {id}: {e}"))
    }
}

/// Agents by id (`agent-0`, ...), sharing one metadata store and one object store.
#[derive(Debug)]
pub struct LocalCluster {
    spec: ClusterSpec,
    /// The running agents.
    pub agents: BTreeMap<String, AgentProc>,
}

impl LocalCluster {
    /// A cluster with no agents running yet.
    pub fn new(spec: ClusterSpec) -> LocalCluster {
        LocalCluster {
            spec,
            agents: BTreeMap::new(),
        }
    }

    /// Starts `n` agents on embedded storage under `dir` with `extra` agent flags.
    pub fn start(dir: &Path, n: usize, extra: &[String]) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_on(ClusterSpec::new(dir, extra), n)
    }

    /// Starts `n` agents, `agent-0` to `agent-{n-1}`, as `spec` says.
    pub fn start_on(spec: ClusterSpec, n: usize) -> anyhow::Result<LocalCluster> {
        let mut c = LocalCluster::new(spec);
        for i in 0..n {
            c.spawn(&format!("agent-{i}"))?;
        }
        Ok(c)
    }

    /// How this cluster's agents run.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Starts (or restarts) the agent `id`; returns its address once it serves.
    pub fn spawn(&mut self, id: &str) -> anyhow::Result<String> {
        self.spawn_with(id, &[])
    }

    /// As [`LocalCluster::spawn`], with flags for this agent alone.
    pub fn spawn_with(&mut self, id: &str, own: &[&str]) -> anyhow::Result<String> {
        let p = self.spec.launch_with(id, "127.0.0.1:0", own)?;
        let addr = p.addr.clone();
        self.agents.insert(id.to_string(), p);
        Ok(addr)
    }

    /// Every agent's address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.agents
            .values()
            .map(|a| a.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `kill -9` of agent `id`.
    pub fn kill9(&mut self, id: &str) -> anyhow::Result<()> {
        Ok(self.take(id)?.kill9()?)
    }

    /// Takes agent `id` out of the cluster, to stop or kill it without holding the cluster.
    pub fn take(&mut self, id: &str) -> anyhow::Result<AgentProc> {
        self.agents
            .remove(id)
            .ok_or_else(|| anyhow::anyhow!("no agent {id} was launched here"))
    }

    /// Stops every agent gracefully and waits for them: all are asked at once, so they
    /// release their leases in parallel.
    pub fn stop_all(&mut self) -> anyhow::Result<()> {
        let agents = std::mem::take(&mut self.agents);
        for a in agents.values() {
            a.signal(process::Signal::SIGTERM)?;
        }
        for (_, mut a) in agents {
            a.wait_exit(STOP_TIMEOUT)?;
        }
        Ok(())
    }
}

/// Stops `agent` gracefully within the time a cluster allows, for code that took it out.
pub fn stop(agent: AgentProc) -> anyhow::Result<()> {
    agent.stop(STOP_TIMEOUT)?;
    Ok(())
}
