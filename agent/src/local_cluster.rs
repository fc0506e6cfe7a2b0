//! A local cluster of real agent processes on shared embedded storage (one SQLite file and
//! one object directory), for the console and the demos that kill agents. The processes are
//! the calling program itself, re-executed in agent mode, so nothing else has to be built or
//! installed: such a program calls [`run_if_agent`] first thing in `main`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The first argument that turns a program into an agent.
const AGENT_MODE: &str = "__streamhouse-agent";

/// How long a launched agent may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Call first in `main`, before any runtime exists: when this process was started as an
/// agent, runs it (on its own runtime) and exits.
pub fn run_if_agent() {
    let mut args = std::env::args_os();
    let program = args.next();
    if args.next().as_deref() == Some(std::ffi::OsStr::new(AGENT_MODE)) {
        let rest = program.into_iter().chain(args);
        let code = crate::cli::exit_code(crate::cli::main_from(rest));
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
}

/// Where and how a cluster's agents run; cheap to clone, so a slow launch need not hold the
/// [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Holds `metadata.db`, `objects/` and `logs/<agent id>/`.
    pub dir: PathBuf,
    /// Extra agent flags (lease TTL and such).
    pub extra: Vec<String>,
}

impl ClusterSpec {
    pub fn new(dir: &Path, extra: &[String]) -> ClusterSpec {
        ClusterSpec {
            dir: dir.to_path_buf(),
            extra: extra.to_vec(),
        }
    }

    /// The directory agent `id` logs to (its tracing log and its stderr).
    pub fn log_dir(&self, id: &str) -> PathBuf {
        self.dir.join("logs").join(id)
    }

    /// Starts agent `id` and waits until it serves. Its stdout is read for its address; its
    /// stderr goes to `stderr.log` in its log directory, so nothing reaches a terminal a
    /// console is drawing on.
    pub fn launch(&self, id: &str) -> anyhow::Result<AgentProc> {
        self.launch_on(id, "127.0.0.1:0")
    }

    /// As [`ClusterSpec::launch`], listening on `listen` (`127.0.0.1:0`: any free port).
    pub fn launch_on(&self, id: &str, listen: &str) -> anyhow::Result<AgentProc> {
        let exe = std::env::current_exe()?;
        let logs = self.log_dir(id);
        std::fs::create_dir_all(&logs)?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join("stderr.log"))?;
        let mut child = Command::new(exe)
            .arg(AGENT_MODE)
            .args([
                "--metadata",
                &format!("sqlite://{}", self.dir.join("metadata.db").display()),
                "--storage",
                &format!("file://{}", self.dir.join("objects").display()),
                "--listen",
                listen,
                "--id",
                id,
                "--log-dir",
                &logs.display().to_string(),
            ])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout after the address so the agent never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split(" listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok(AgentProc {
                id: id.to_string(),
                child,
                addr,
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "agent {id} did not start within {} s (logs in {})",
                    START_TIMEOUT.as_secs(),
                    logs.display()
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                let said = std::fs::read_to_string(logs.join("stderr.log")).unwrap_or_default();
                let last = said.lines().last().unwrap_or("no message");
                anyhow::bail!("agent {id} exited before serving: {last}")
            }
        }
    }
}

/// One agent process. Dropping it kills the process.
#[derive(Debug)]
pub struct AgentProc {
    pub id: String,
    pub addr: String,
    child: Child,
}

impl AgentProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Asks the agent to stop (SIGTERM: it flushes, releases its leases and deregisters)
    /// and waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()?;
        self.child.wait()?;
        Ok(())
    }

    fn terminate(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", self.child.id());
        Ok(())
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Agents by id (`agent-0`, ...), sharing one SQLite file and one object directory.
#[derive(Debug)]
pub struct LocalCluster {
    spec: ClusterSpec,
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

    /// Starts `n` agents on `dir` with `extra` agent flags (lease TTL and such).
    pub fn start(dir: &Path, n: usize, extra: &[String]) -> anyhow::Result<LocalCluster> {
        let mut c = LocalCluster::new(ClusterSpec::new(dir, extra));
        for i in 0..n {
            c.spawn(&format!("agent-{i}"))?;
        }
        Ok(c)
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Starts (or restarts) the agent `id`; returns its address once it serves.
    pub fn spawn(&mut self, id: &str) -> anyhow::Result<String> {
        let p = self.spec.launch(id)?;
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
        self.take(id)?.kill9()
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
            a.terminate()?;
        }
        for (_, mut a) in agents {
            a.child.wait()?;
        }
        Ok(())
    }
}
