//! Helpers for tests: outside services (PostgreSQL, an S3-compatible server) and an object
//! store that fails on command.
//!
//! A backend test skips when its service is not configured on a developer's machine; under
//! CI (`CI=true`) a missing service fails the test instead.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use crate::object_store::{ObjectMeta, ObjectStore, StorageError};

/// Wraps an object store; while `failing` is set, every put fails as an unreachable store's
/// would (reads still work, as they would from a cache or another region).
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    pub failing: AtomicBool,
    /// Puts refused so far.
    pub refused: AtomicU64,
    /// The next puts under a prefix that are held for a while before they go through:
    /// (prefix, how many, how long).
    delays: std::sync::Mutex<Vec<(String, u32, std::time::Duration)>>,
    /// Puts delayed so far.
    pub delayed: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(FaultyStore {
            inner,
            failing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            delays: std::sync::Mutex::new(Vec::new()),
            delayed: AtomicU64::new(0),
        })
    }

    /// Holds each of the next `count` puts of keys starting with `prefix` for `delay` before
    /// it goes through: a slow store, as seen by a flush or a compaction.
    pub fn delay_puts(&self, prefix: &str, count: u32, delay: std::time::Duration) {
        self.delays.lock().unwrap_or_else(|p| p.into_inner()).push((
            prefix.to_string(),
            count,
            delay,
        ));
    }

    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        if self.failing.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StorageError::Remote {
                op: "put",
                key: key.to_string(),
                status: None,
                message: "injected fault: store unreachable".into(),
            });
        }
        let delay = {
            let mut delays = self.delays.lock().unwrap_or_else(|p| p.into_inner());
            let hit = delays
                .iter_mut()
                .find(|(prefix, count, _)| *count > 0 && key.starts_with(prefix.as_str()));
            hit.map(|(_, count, delay)| {
                *count -= 1;
                *delay
            })
        };
        if let Some(d) = delay {
            self.delayed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(d).await;
        }
        self.inner.put(key, data).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.inner.get_range(key, range).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
}

/// The value of `var`, or `None` (after saying so) when it is unset outside CI.
///
/// # Panics
/// When `var` is unset and `CI` is `true` or `1`.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            present_or_skip(false, &format!("{var} is not set"));
            None
        }
    }
}

/// `found`, after saying why the test skips when it is false (`missing`: what is absent and
/// how to get it).
///
/// # Panics
/// When `found` is false and `CI` is `true` or `1`: there a missing service or tool is a
/// failure, not a skip.
pub fn present_or_skip(found: bool, missing: &str) -> bool {
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "{missing}: under CI=true that is a failure, not a skip"
        );
        eprintln!("skipping: {missing}");
    }
    found
}

/// A PostgreSQL database created for one test and dropped by [`FreshPostgres::drop_db`].
#[derive(Debug)]
pub struct FreshPostgres {
    admin_url: String,
    name: String,
    /// URL of the new, empty database.
    pub url: String,
}

impl FreshPostgres {
    /// Creates an empty database on the server that `STREAMHOUSE_TEST_POSTGRES` names.
    pub async fn create() -> Option<FreshPostgres> {
        let admin_url = service_env("STREAMHOUSE_TEST_POSTGRES")?;
        let name = format!("streamhouse_test_{:016x}", rand::random::<u64>());
        use sqlx::Connection;
        let mut conn = sqlx::postgres::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {admin_url}: {e}"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin_url).expect("STREAMHOUSE_TEST_POSTGRES is a URL");
        url.set_path(&format!("/{name}"));
        Some(FreshPostgres {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    /// Drops the database (closing its other connections first).
    pub async fn drop_db(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}
