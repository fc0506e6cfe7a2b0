//! Agent processes: starting an agent as a child process, finding the address it serves on,
//! and signalling it. The console's local cluster, the demos and the tests all run agents
//! through here.
//!
//! A program that launches agents re-executes itself in agent mode ([`agent_command`]), so
//! nothing else has to be built or installed; such a program calls [`run_if_agent`] first
//! thing in `main`. The agent binary itself accepts the same invocation.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// The first argument that turns a program into an agent.
pub const AGENT_MODE: &str = "__streamhouse-agent";

/// What an agent's stdout line says between its id and its address, once it serves:
/// `streamhouse-agent {id} listening on {addr}`. Scripts may rely on it.
pub const LISTENING_ON: &str = " listening on ";

/// The line an agent prints on stdout once it serves.
pub fn listening_line(id: &str, addr: impl std::fmt::Display) -> String {
    format!("streamhouse-agent {id}{LISTENING_ON}{addr}")
}

/// The address in an agent's [`listening_line`], if `line` is one.
pub fn address_in(line: &str) -> Option<&str> {
    line.split_once(LISTENING_ON).map(|(_, addr)| addr.trim())
}

/// Call first in `main`, before any runtime exists: when this process was started as an
/// agent ([`agent_command`]), runs it on its own runtime and exits with its status.
pub fn run_if_agent() {
    let mut args = std::env::args_os();
    let program = args.next();
    if args.next().as_deref() == Some(OsStr::new(AGENT_MODE)) {
        let rest = program.into_iter().chain(args);
        let code = crate::cli::exit_code(crate::cli::main_from(rest));
        std::process::exit(if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
}

/// `program` (one that calls [`run_if_agent`], or the agent binary) in agent mode; add the
/// agent's flags.
pub fn agent_command(program: &Path) -> Command {
    let mut c = Command::new(program);
    c.arg(AGENT_MODE);
    c
}

/// Why an agent process did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The program could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It did not print its listening line in time; it has been killed.
    #[error("the agent did not report its address within {} s", .0.as_secs())]
    Timeout(Duration),
    /// It exited before serving.
    #[error("the agent exited before serving ({status}): {said}")]
    Exited {
        /// How it exited.
        status: String,
        /// Its last words (the tail of its stderr or log).
        said: String,
    },
}

/// Runs `command` (whose stdout this takes over) and waits up to `within` for the agent to
/// print its address. `last_words` is asked, if the agent exits first, for what it said (the
/// last line of its stderr log, say). Its stdout is drained for as long as it runs, so the
/// agent never blocks on a full pipe.
pub fn spawn(
    mut command: Command,
    within: Duration,
    last_words: impl FnOnce() -> Option<String>,
) -> Result<AgentProc, LaunchError> {
    let mut child =
        command
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                program: command.get_program().to_string_lossy().into_owned(),
                source,
            })?;
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = address_in(&line) {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
    }
    match rx.recv_timeout(within) {
        Ok(addr) => Ok(AgentProc { child, addr }),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(LaunchError::Timeout(within))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            let said = last_words().unwrap_or_else(|| "no message".into());
            Err(LaunchError::Exited { status, said })
        }
    }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(std::io::Error::from)
}

/// One running agent process. Dropping it kills the process.
#[derive(Debug)]
pub struct AgentProc {
    child: Child,
    /// `HOST:PORT` it serves on.
    pub addr: String,
}

impl AgentProc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` without waiting for anything: `Stop` pauses the agent, `Cont` resumes
    /// it, `Term` asks it to stop gracefully.
    pub fn signal(&self, signal: Signal) -> std::io::Result<()> {
        self::signal(self.pid(), signal)
    }

    /// `kill -9`: no flush, no goodbye; waits until it is gone.
    pub fn kill9(mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Asks the agent to stop (SIGTERM: it flushes, releases its leases and deregisters) and
    /// waits up to `within` for it to exit; kills it if it has not by then.
    pub fn stop(mut self, within: Duration) -> std::io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(within)
    }

    /// Waits up to `within` for the process to exit by itself, then kills it.
    pub fn wait_exit(&mut self, within: Duration) -> std::io::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.child.kill()?;
                self.child.wait()?;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the agent did not exit within {} s", within.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_carries_the_address() {
        let line = listening_line("agent-3", "127.0.0.1:9660");
        assert_eq!(address_in(&line), Some("127.0.0.1:9660"));
        assert_eq!(
            address_in("streamhouse-agent agent-3 metrics at http://x"),
            None
        );
    }
}
