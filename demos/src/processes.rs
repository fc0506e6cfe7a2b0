//! A local cluster of real agent processes on shared embedded storage, for the demos that
//! kill agents. The processes are this program itself, re-executed in agent mode, so nothing
//! else has to be built or installed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The first argument that turns a demo binary into an agent.
const AGENT_MODE: &str = "__streamhouse-agent";

/// Call first in `main`, before any runtime exists: when this process was started as an
/// agent, runs it (on its own runtime) and exits.
pub fn run_if_agent() {
    let mut args = std::env::args_os();
    let program = args.next();
    if args.next().as_deref() == Some(std::ffi::OsStr::new(AGENT_MODE)) {
        let rest = program.into_iter().chain(args);
        let code = match streamhouse_agent::cli::main_from(rest) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("agent: {e:#}");
                1
            }
        };
        std::process::exit(code);
    }
}

/// One agent process.
#[derive(Debug)]
pub struct AgentProc {
    child: Child,
    pub addr: String,
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
    dir: PathBuf,
    extra: Vec<String>,
    pub agents: BTreeMap<String, AgentProc>,
}

impl LocalCluster {
    /// Starts `n` agents on `dir` with `extra` agent flags (lease TTL and such).
    pub fn start(dir: &Path, n: usize, extra: &[String]) -> anyhow::Result<LocalCluster> {
        let mut c = LocalCluster {
            dir: dir.to_path_buf(),
            extra: extra.to_vec(),
            agents: BTreeMap::new(),
        };
        for i in 0..n {
            c.spawn(&format!("agent-{i}"))?;
        }
        Ok(c)
    }

    /// Starts (or restarts) the agent `id`; returns its address once it serves.
    pub fn spawn(&mut self, id: &str) -> anyhow::Result<String> {
        let exe = std::env::current_exe()?;
        let logs = self.dir.join("logs").join(id);
        let mut child = Command::new(exe)
            .arg(AGENT_MODE)
            .args([
                "--metadata",
                &format!("sqlite://{}", self.dir.join("metadata.db").display()),
                "--storage",
                &format!("file://{}", self.dir.join("objects").display()),
                "--listen",
                "127.0.0.1:0",
                "--id",
                id,
                "--log-dir",
                &logs.display().to_string(),
            ])
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split(" listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                anyhow::bail!(
                    "agent {id} did not start within 60 s (logs in {})",
                    logs.display()
                );
            }
        };
        self.agents.insert(
            id.to_string(),
            AgentProc {
                child,
                addr: addr.clone(),
            },
        );
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

    /// `kill -9`: no flush, no goodbye.
    pub fn kill9(&mut self, id: &str) -> anyhow::Result<()> {
        let mut a = self
            .agents
            .remove(id)
            .ok_or_else(|| anyhow::anyhow!("no agent {id}"))?;
        a.child.kill()?;
        a.child.wait()?;
        Ok(())
    }

    /// Stops every agent gracefully (SIGTERM) and waits for them.
    pub fn stop_all(&mut self) -> anyhow::Result<()> {
        for a in self.agents.values() {
            Command::new("kill")
                .args(["-TERM", &a.child.id().to_string()])
                .status()?;
        }
        for (_, mut a) in std::mem::take(&mut self.agents) {
            a.child.wait()?;
        }
        Ok(())
    }
}
