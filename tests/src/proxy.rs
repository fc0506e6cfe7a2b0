//! A TCP proxy to put between agents and a store (PostgreSQL, S3) and break on command: stall
//! all traffic, refuse connections, or drop a connection right after it forwards a `COMMIT`,
//! so a transaction's outcome is unknown to the client that sent it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards everything.
    Pass,
    /// Holds every byte in both directions (connections stay open) until the mode changes.
    Stall,
    /// Closes every open connection and every new one at once, as a store that is down.
    Refuse,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped when refusing starts: connections of an older generation close.
    generation: AtomicU64,
    /// COMMITs still to be followed by a dropped connection.
    drop_commits: AtomicUsize,
    /// COMMITs still to be held back, and for how long (ms).
    delay_commits: AtomicUsize,
    commit_delay_ms: AtomicU64,
    commits_delayed: AtomicUsize,
    commits_dropped: AtomicUsize,
    connections: AtomicUsize,
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`, on the current
    /// runtime.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            mode: watch::Sender::new(Mode::Pass),
            generation: AtomicU64::new(0),
            drop_commits: AtomicUsize::new(0),
            delay_commits: AtomicUsize::new(0),
            commit_delay_ms: AtomicU64::new(0),
            commits_delayed: AtomicUsize::new(0),
            commits_dropped: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *s.mode.borrow() == Mode::Refuse {
                    drop(client);
                    continue;
                }
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(s.upstream).await else {
                        return;
                    };
                    s.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let generation = s.generation.load(Ordering::Acquire);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = pump(s.clone(), cr, sw, generation, true);
                    let down = pump(s.clone(), sr, cw, generation, false);
                    // Either side ending ends the connection.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        Proxy { addr, shared, task }
    }

    /// A proxy to the server a URL names (`postgres://…`, `http://…`), and the same URL
    /// pointing at the proxy instead.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let mut url = url::Url::parse(url).expect("a URL");
        let host = url.host_str().expect("a host").to_string();
        let port = url
            .port_or_known_default()
            .unwrap_or(if url.scheme().starts_with("postgres") {
                5432
            } else {
                80
            });
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("the server's address resolves")
            .next()
            .expect("an address");
        let proxy = Proxy::start(upstream).await;
        url.set_port(Some(proxy.addr().port()))
            .expect("a URL with a port");
        (proxy, url.to_string())
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes what the proxy does; [`Mode::Refuse`] also closes the open connections.
    pub fn set(&self, mode: Mode) {
        if mode == Mode::Refuse {
            self.shared.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.shared.mode.send_replace(mode);
    }

    /// The next `n` times a client sends `COMMIT`, it is forwarded and then the connection is
    /// closed before the server's answer can come back.
    pub fn drop_after_commits(&self, n: usize) {
        self.shared.drop_commits.store(n, Ordering::Release);
    }

    /// The next `n` times a client sends `COMMIT`, it is held back for `delay` before it is
    /// forwarded (a commit stalled in the network).
    pub fn delay_commits(&self, n: usize, delay: Duration) {
        self.shared
            .commit_delay_ms
            .store(delay.as_millis() as u64, Ordering::Release);
        self.shared.delay_commits.store(n, Ordering::Release);
    }

    /// `COMMIT`s held back so far.
    pub fn commits_delayed(&self) -> usize {
        self.shared.commits_delayed.load(Ordering::Acquire)
    }

    /// Connections closed after forwarding a `COMMIT` so far.
    pub fn commits_dropped(&self) -> usize {
        self.shared.commits_dropped.load(Ordering::Acquire)
    }

    /// Connections made through the proxy so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.set(Mode::Refuse);
    }
}

async fn pump(
    s: Arc<Shared>,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    generation: u64,
    client_to_server: bool,
) {
    let mut mode = s.mode.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = mode.changed() => {
                if *mode.borrow_and_update() == Mode::Refuse {
                    return;
                }
                continue;
            }
        };
        // Hold the bytes while stalled; a refusal meanwhile closes the connection.
        loop {
            let now = *mode.borrow_and_update();
            if s.generation.load(Ordering::Acquire) != generation || now == Mode::Refuse {
                return;
            }
            if now == Mode::Pass {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), mode.changed()).await;
        }
        let commit = client_to_server && contains(&buf[..n], b"COMMIT");
        if commit
            && s.delay_commits
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| k.checked_sub(1))
                .is_ok()
        {
            s.commits_delayed.fetch_add(1, Ordering::AcqRel);
            let ms = s.commit_delay_ms.load(Ordering::Acquire);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if commit {
            let armed = s
                .drop_commits
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| k.checked_sub(1))
                .is_ok();
            if armed {
                let _ = to.flush().await;
                s.commits_dropped.fetch_add(1, Ordering::AcqRel);
                return;
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
