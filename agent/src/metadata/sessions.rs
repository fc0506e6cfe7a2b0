//! Agent sessions: a liveness signal that the metadata store's host ends the moment an agent
//! process dies, so its partitions move without waiting out their leases.
//!
//! - On PostgreSQL a session is a connection of its own holding a session-level advisory
//!   lock (`pg_advisory_lock(SESSION_LOCKS, key)`). The server drops the lock when the
//!   connection closes, which the kernel does when the process dies; every agent sees the
//!   locks held in `pg_locks`.
//! - On SQLite (one machine) it is an exclusive `flock` on `KEY.lock` in a directory beside
//!   the database file; the kernel drops it when the process dies, and a shared try-lock by
//!   another process tells whether it is held.
//!
//! `key` is random for every session and written into the agent's row with each heartbeat,
//! so a restarted agent's session is never taken for its dead predecessor's.
//!
//! A session ending says "this process is gone" and nothing about a live one: a paused
//! (`SIGSTOP`) or partitioned agent keeps its session, and only its leases running out move
//! its partitions. Nor does a session decide anything alone: taking a lease still raises its
//! epoch, which fences whatever the previous holder might still try to commit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::Connection;

use super::*;

/// The first key of every session's advisory lock (`"SH"` and 1): marks the lock as
/// StreamHouse's among any others taken on the same database.
const SESSION_LOCKS: i32 = 0x5348_0001;

/// One agent's session with the metadata store. Dropping it ends the session.
pub struct Session {
    key: i64,
    opened: Instant,
    hold: tokio::sync::Mutex<Hold>,
}

enum Hold {
    /// The connection holding the advisory lock.
    Postgres(sqlx::AnyConnection),
    /// The locked file (held open: closing it unlocks), and where it is.
    File {
        _locked: std::fs::File,
        path: PathBuf,
    },
    /// No session: an in-memory SQLite database, shared by no other process.
    Unsupported,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("key", &self.key)
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The key written into the agent's row; 0 when this store has no sessions.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// How long ago the session was opened.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Whether the session still holds: its connection answers (the lock lives as long as
    /// the connection), or its lock file is still in place. False means open a new one.
    pub async fn holds(&self, within: Duration) -> bool {
        let mut hold = self.hold.lock().await;
        match &mut *hold {
            Hold::Postgres(conn) => {
                matches!(tokio::time::timeout(within, conn.ping()).await, Ok(Ok(())))
            }
            Hold::File { path, .. } => path.exists(),
            Hold::Unsupported => true,
        }
    }
}

impl Drop for Session {
    /// A session file is removed by its owner on a graceful end, and by whoever finds it
    /// unlocked otherwise; the advisory lock ends with its connection.
    fn drop(&mut self) {
        if let Hold::File { path, .. } = self.hold.get_mut() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One registered agent's session as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSession {
    /// The agent.
    pub id: String,
    /// The key of the session its last heartbeat named.
    pub key: i64,
    /// Whether that session is still held.
    pub alive: bool,
    /// Whether the agent is already marked lost.
    pub lost: bool,
}

/// Where a SQLite database's session files live: a directory beside the file.
pub(super) fn sessions_dir(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".sessions");
    PathBuf::from(name)
}

fn session_file(dir: &Path, key: i64) -> PathBuf {
    dir.join(format!("{key}.lock"))
}

/// A random key for a new session: positive, and within both backends' integer types.
fn new_key() -> i64 {
    i64::from(rand::random_range(1..i32::MAX))
}

impl MetadataStore {
    /// Opens a session for this process (see the module docs). Agents open one at start and
    /// a new one whenever [`Session::holds`] says theirs has ended.
    pub async fn open_session(&self) -> Result<Session> {
        self.bounded("open_session", async move {
            if self.dialect == Dialect::Postgres {
                let options = (*self.pool.connect_options()).clone();
                let mut conn = sqlx::AnyConnection::connect_with(&options).await?;
                // A key another session holds (one in two billion) is simply drawn again.
                for _ in 0..8 {
                    let key = new_key();
                    let row = sqlx::query(&format!(
                        "SELECT pg_try_advisory_lock({SESSION_LOCKS}, {key}) AS locked"
                    ))
                    .fetch_one(&mut conn)
                    .await?;
                    if row.try_get::<bool, _>("locked")? {
                        return Ok(Session {
                            key,
                            opened: Instant::now(),
                            hold: tokio::sync::Mutex::new(Hold::Postgres(conn)),
                        });
                    }
                }
                return Err(MetadataError::Unavailable(sqlx::Error::Protocol(
                    "no free advisory lock key for the agent's session".into(),
                )));
            }
            let Some(dir) = &self.sessions_dir else {
                return Ok(Session {
                    key: 0,
                    opened: Instant::now(),
                    hold: tokio::sync::Mutex::new(Hold::Unsupported),
                });
            };
            let io = |source| MetadataError::SessionFiles {
                path: dir.clone(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            let key = new_key();
            // Locked before it is in place, so nobody ever finds the file unlocked and takes
            // the session for ended.
            let staging = dir.join(format!("{key}.new"));
            let file = std::fs::File::create(&staging).map_err(io)?;
            file.lock().map_err(io)?;
            let path = session_file(dir, key);
            std::fs::rename(&staging, &path).map_err(io)?;
            Ok(Session {
                key,
                opened: Instant::now(),
                hold: tokio::sync::Mutex::new(Hold::File {
                    _locked: file,
                    path,
                }),
            })
        })
        .await
    }

    /// Every registered agent that named a session, and whether it is still held: one
    /// query (PostgreSQL reads `pg_locks`), plus a try-lock per agent on SQLite. Empty on an
    /// in-memory SQLite database.
    pub async fn agent_sessions(&self) -> Result<Vec<AgentSession>> {
        self.bounded("agent_sessions", async move {
            let alive = match self.dialect {
                Dialect::Postgres => format!(
                    "EXISTS (SELECT 1 FROM pg_locks l
                             WHERE l.locktype = 'advisory' AND l.granted
                               AND l.database = (SELECT oid FROM pg_database
                                                 WHERE datname = current_database())
                               AND l.classid = {SESSION_LOCKS} AND l.objsubid = 2
                               AND l.objid::bigint = a.session_key)"
                ),
                Dialect::Sqlite => "1".to_string(),
            };
            let sql = format!(
                "SELECT a.id, a.session_key, a.lost,
                        CAST(CASE WHEN {alive} THEN 1 ELSE 0 END AS BIGINT) AS alive
                 FROM agents a WHERE a.session_key <> 0 ORDER BY a.id"
            );
            let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let key: i64 = r.try_get("session_key")?;
                let alive = match self.dialect {
                    Dialect::Postgres => r.try_get::<i64, _>("alive")? == 1,
                    Dialect::Sqlite => match &self.sessions_dir {
                        Some(dir) => file_session_alive(&session_file(dir, key)),
                        None => continue,
                    },
                };
                out.push(AgentSession {
                    id: r.try_get("id")?,
                    key,
                    alive,
                    lost: r.try_get::<i64, _>("lost")? != 0,
                });
            }
            Ok(out)
        })
        .await
    }
}

/// Whether a session file is locked by a live process. An ended session's file is removed
/// by whoever finds it so: the key is never used again. A file that cannot be looked at (no
/// permission, say) tells nothing, and nothing is judged from it.
fn file_session_alive(path: &Path) -> bool {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = std::fs::remove_file(path);
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        // A file system without locks: nothing can be told, so nothing is judged.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}
