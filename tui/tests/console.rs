//! The real `streamhouse-tui` binary in a pseudo-terminal, read back through a terminal
//! emulator: once launching its own cluster and killing an agent through the keys, once
//! attached (read-only) to agents started separately.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use streamhouse_agent::local_cluster::ClusterSpec;
use streamhouse_agent::process::AgentProc;
use streamhouse_tests::{Deadline, block_until};

const BIN: &str = env!("CARGO_BIN_EXE_streamhouse-tui");

/// The console in a 120x40 pseudo-terminal, its output parsed into a screen.
struct Console {
    screen: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Console {
    fn start(args: &[&str], dir: &Path) -> Console {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.cwd(dir);
        cmd.env("TERM", "xterm-256color");
        let child = pair
            .slave
            .spawn_command(cmd)
            .expect("streamhouse-tui starts");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let writer = pair.master.take_writer().expect("pty writer");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(40).expect("rows"),
            std::num::NonZeroU16::new(120).expect("cols"),
            0,
        )));
        let s = screen.clone();
        std::thread::spawn(move || {
            let _master = pair.master;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .process(&buf[..n]);
            }
        });
        Console {
            screen,
            writer,
            child,
        }
    }

    fn text(&self) -> String {
        self.screen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .screen()
            .contents()
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("key written");
        self.writer.flush().expect("key flushed");
    }

    /// Waits until `ok` holds for the screen; panics with the screen after `secs`.
    fn wait_for(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Deadline::within(Duration::from_secs(secs));
        loop {
            let text = self.text();
            if ok(&text) {
                return text;
            }
            deadline.check(format_args!("{what}; the screen:\n{text}"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The words of each table row on the screen (borders dropped).
fn rows(screen: &str) -> impl Iterator<Item = Vec<&str>> {
    screen.lines().map(|l| {
        l.trim_matches(|c| c == '│' || c == ' ')
            .split_whitespace()
            .collect()
    })
}

/// The ids of the agents table's rows (`ID  HOST:PORT  STATE ...`) in `state`.
fn agents_in_state(screen: &str, state: &str) -> Vec<String> {
    rows(screen)
        .filter(|w| w.len() > 3 && w[1].starts_with("127.0.0.1:") && w[2] == state)
        .map(|w| w[0].to_string())
        .collect()
}

/// (partition, leader) of each `topic` row on the Partitions screen.
fn leaders(screen: &str, topic: &str) -> Vec<(u32, String)> {
    rows(screen)
        .filter(|w| w.len() > 3 && w[0] == topic)
        .filter_map(|w| Some((w[1].parse().ok()?, w[2].to_string())))
        .collect()
}

#[test]
fn launched_cluster_survives_a_kill_through_the_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut c = Console::start(
        &["--data-dir", data.to_str().expect("utf-8 path")],
        dir.path(),
    );
    c.wait_for("three agents up", 180, |s| {
        agents_in_state(s, "up").len() == 3
    });
    // Each launched agent serves Kafka clients too, and the Overview says where.
    c.wait_for("three Kafka addresses under the agents", 30, |s| {
        s.lines()
            .find_map(|l| l.split("bootstrap.servers=").nth(1))
            .is_some_and(|list| list.trim().split(',').count() == 3)
    });

    c.press("2");
    let before = c.wait_for("six led partitions of demo", 60, |s| {
        let l = leaders(s, "demo");
        l.len() == 6 && l.iter().all(|(_, a)| a.starts_with("agent-"))
    });
    let before = leaders(&before, "demo");
    let victim = before[0].1.trim_end_matches(" ←").to_string();
    let victim_index: usize = victim
        .trim_start_matches("agent-")
        .parse()
        .expect("agent-N");
    let theirs: Vec<u32> = before
        .iter()
        .filter(|(_, a)| *a == victim)
        .map(|(p, _)| *p)
        .collect();

    c.press("1");
    for _ in 0..victim_index {
        c.press("j");
    }
    c.press("x");
    c.wait_for("the kill confirmation", 10, |s| {
        s.contains(&format!("kill -9 {victim}"))
    });
    c.press("y");
    c.wait_for("the victim down", 30, |s| {
        agents_in_state(s, "down").contains(&victim)
    });

    c.press("2");
    c.wait_for("new leaders for the victim's partitions", 60, |s| {
        let now = leaders(s, "demo");
        now.len() == 6
            && theirs.iter().all(|p| {
                now.iter()
                    .any(|(q, a)| q == p && a.starts_with("agent-") && !a.starts_with(&victim))
            })
    });

    c.press("q");
    c.wait_for("the quit confirmation", 10, |s| s.contains("Quit and stop"));
    c.press("y");
    let mut status = None;
    block_until(
        "the console to exit after q, y",
        Duration::from_secs(60),
        || {
            status = c.child.try_wait().ok().flatten();
            status.is_some()
        },
    );
    let status = status.expect("exited");
    assert!(status.success(), "the console exited with {status:?}");
    let log_dir = data.join("logs").join("console");
    assert!(
        std::fs::read_dir(&log_dir).is_ok_and(|mut d| d.next().is_some()),
        "the console logs to {}",
        log_dir.display()
    );
}

/// An agent started apart from the console: the console binary in agent mode, on the
/// embedded stores under `dir`, with `extra` flags.
fn outside_agent(dir: &Path, id: &str, extra: &[&str]) -> AgentProc {
    ClusterSpec::new(dir, &[])
        .with_program(BIN)
        .launch_with(id, "127.0.0.1:0", extra)
        .expect("the agent starts")
}

#[test]
fn attached_read_only_console_watches_and_refuses_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = outside_agent(dir.path(), "outside-0", &[]);
    let b = outside_agent(dir.path(), "outside-1", &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let admin = streamhouse_client::Admin::connect(&a.addr)
            .await
            .expect("admin");
        admin
            .create_topic(streamhouse_client::NewTopic::new("watched", 4))
            .await
            .expect("topic created");
    });
    let attach = format!("{},{}", a.addr, b.addr);
    let logs = dir.path().join("console");
    let mut c = Console::start(
        &[
            "--attach",
            &attach,
            "--read-only",
            "--data-dir",
            logs.to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    c.wait_for("both outside agents up", 60, |s| {
        agents_in_state(s, "up").len() == 2 && s.contains("outside-0") && s.contains("read-only")
    });
    c.press("x");
    c.wait_for("the read-only refusal", 10, |s| {
        s.contains("read-only: changes are turned off")
    });
    assert!(!c.text().contains("Confirm"));

    c.press("2");
    c.wait_for("the watched topic's leaders", 60, |s| {
        let l = leaders(s, "watched");
        l.len() == 4 && l.iter().all(|(_, a)| a.starts_with("outside-"))
    });
    // Quitting an attached console does not ask: it launched nothing.
    c.press("q");
    block_until(
        "the attached console to quit",
        Duration::from_secs(30),
        || matches!(c.child.try_wait(), Ok(Some(_))),
    );
    drop(b);
}

/// A CA and an agent certificate for 127.0.0.1 it signed, written under `dir`.
fn write_certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("signed");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("agent.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("agent.key"), key.serialize_pem()).expect("write");
}

#[test]
fn console_attaches_to_a_cluster_with_tls_and_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_certs(d);
    std::fs::write(d.join("tokens"), "console-token-0123456789\n").expect("write");
    std::fs::write(d.join("token"), "console-token-0123456789\n").expect("write");
    std::fs::write(d.join("wrong"), "console-token-9876543210\n").expect("write");
    let path = |f: &str| d.join(f).display().to_string();
    let agent = outside_agent(
        d,
        "secure-0",
        &[
            "--tls-cert",
            &path("agent.pem"),
            "--tls-key",
            &path("agent.key"),
            "--auth-tokens-file",
            &path("tokens"),
        ],
    );
    // With a token the agents do not accept, the console says why it cannot see them.
    let refused = Console::start(
        &[
            "--attach",
            &agent.addr,
            "--tls-ca",
            &path("ca.pem"),
            "--token-file",
            &path("wrong"),
            "--data-dir",
            &path("console-refused"),
        ],
        d,
    );
    refused.wait_for("the refusal on screen", 30, |s| {
        s.contains("not authenticated")
    });
    drop(refused);

    let mut c = Console::start(
        &[
            "--attach",
            &agent.addr,
            "--tls-ca",
            &path("ca.pem"),
            "--token-file",
            &path("token"),
            "--data-dir",
            &path("console"),
        ],
        d,
    );
    c.wait_for("the secured agent up", 60, |s| {
        agents_in_state(s, "up") == ["secure-0"]
    });
    // Changes go through the same secured connection: create a topic from the palette.
    c.press(":create sealed 2\r");
    c.press("2");
    c.wait_for("the new topic's leaders", 60, |s| {
        leaders(s, "sealed").len() == 2
    });
}
