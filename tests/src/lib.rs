//! Harness for tests against real agent processes: start one on free ports, read the address
//! it prints, stop it gracefully or kill it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `test-agent` process.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    /// `HOST:PORT` it listens on.
    pub addr: String,
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
        let mut child = Command::new(bin)
            .args([
                "--metadata",
                metadata,
                "--storage",
                storage,
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("STREAMHOUSE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start test-agent");
        let stdout = child.stdout.take().expect("piped stdout");
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
                panic!("agent did not report its address within 60 s");
            }
        };
        AgentProcess { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.wait_exit(Duration::from_secs(60))
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh directory for one test's data.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().to_path_buf();
    (d, p)
}

/// Awaits `cond` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
