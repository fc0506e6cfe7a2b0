//! The checks an agent makes of its stores before it serves, so that a wrong setting fails at
//! start with one line naming the setting, the cause and the remedy, and not later as a
//! stream of failed flushes.
//!
//! - The metadata URL connects and its schema migrates.
//! - The object store accepts a probe write and delete: a directory is writable; a bucket
//!   exists (or is created, with `--create-bucket`) and takes the credentials.
//! - No live agent holds this agent's id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metadata::{Deadlines, MetadataError, MetadataStore};
use crate::object_store::{self, ConditionalPuts, FileStore, ObjectStore, S3Store, StorageError};
use crate::{AgentConfig, StartError};

const STORAGE: &str = "--storage / STREAMHOUSE_STORAGE";
const METADATA: &str = "--metadata / STREAMHOUSE_METADATA";
const AGENT_ID: &str = "--id / STREAMHOUSE_AGENT_ID";

fn fail(message: String) -> StartError {
    StartError::Check(object_store::clip(&message))
}

/// Opens the object store the config names and proves it usable with a probe object.
pub async fn open_object_store(config: &AgentConfig) -> Result<Arc<dyn ObjectStore>, StartError> {
    let url = &config.storage;
    let probe = format!("_probe/{:016x}", rand::random::<u64>());
    if let Some(dir) = url.strip_prefix("file://") {
        let store = FileStore::open(dir).await.map_err(|e| {
            fail(format!(
                "directory {dir:?} cannot be created: {} ({STORAGE}); create it, or choose \
                 a directory the agent may write",
                io_cause(&e)
            ))
        })?;
        probe_write(&store, &probe).await.map_err(|e| {
            fail(format!(
                "directory {dir:?} is not writable: {} ({STORAGE}); give the agent's user \
                 write access, or choose another directory",
                io_cause(&e)
            ))
        })?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("s3://") {
        let store = S3Store::open(url)
            .await
            .map_err(|e| fail(format!("{e} ({STORAGE})")))?;
        let (bucket, endpoint) = (store.bucket().to_string(), store.endpoint().to_string());
        let exists = store.bucket_exists().await.map_err(|e| {
            fail(format!(
                "bucket {bucket:?} at {endpoint} cannot be checked: {} ({STORAGE}); check \
                 the endpoint, that the server runs, and the AWS credentials",
                remote_cause(&e)
            ))
        })?;
        if !exists {
            if !config.create_bucket {
                return Err(fail(format!(
                    "bucket {bucket:?} does not exist at {endpoint} ({STORAGE}); create it, \
                     or start with --create-bucket"
                )));
            }
            store.ensure_bucket().await.map_err(|e| {
                fail(format!(
                    "bucket {bucket:?} cannot be created at {endpoint}: {} ({STORAGE}, \
                     --create-bucket); create it yourself, or give credentials that may",
                    remote_cause(&e)
                ))
            })?;
            tracing::info!(bucket, endpoint, "created the bucket (--create-bucket)");
        }
        match store.check(&probe).await {
            Ok(ConditionalPuts::Honoured) => {}
            Ok(ConditionalPuts::Ignored) => tracing::info!(
                endpoint,
                "the object store ignores If-None-Match; object keys stay unique by their \
                 per-process nonce"
            ),
            Ok(ConditionalPuts::Unsupported) => tracing::info!(
                endpoint,
                "the object store refuses If-None-Match; puts go without it, object keys \
                 stay unique by their per-process nonce"
            ),
            Err(e) => {
                return Err(fail(format!(
                    "bucket {bucket:?} at {endpoint} refuses a probe write and delete: {} \
                     ({STORAGE}); give the credentials write and delete access to it",
                    remote_cause(&e)
                )));
            }
        }
        return Ok(Arc::new(store));
    }
    Err(fail(format!(
        "storage URL {url:?} is neither file://DIR nor s3://BUCKET/PREFIX ({STORAGE}); \
         give one of those"
    )))
}

async fn probe_write(store: &dyn ObjectStore, key: &str) -> Result<(), StorageError> {
    store
        .put(key, bytes::Bytes::from_static(b"streamhouse probe"))
        .await?;
    store.delete(key).await
}

fn io_cause(e: &StorageError) -> String {
    match e {
        StorageError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

fn remote_cause(e: &StorageError) -> String {
    match e {
        StorageError::Remote { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The URL as it may be printed: without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Connects to the metadata store with the agent's deadlines and migrates its schema.
pub async fn connect_metadata(config: &AgentConfig) -> Result<MetadataStore, StartError> {
    let deadlines = Deadlines {
        call: config.metadata_timeout(),
        server: config.metadata_timeout(),
    };
    let url = redact(&config.metadata);
    MetadataStore::connect_with(&config.metadata, deadlines)
        .await
        .map_err(|e| fail(metadata_failure(&url, &e)))
}

/// One line for a metadata store that would not connect or migrate.
pub fn metadata_failure(url: &str, e: &MetadataError) -> String {
    let (what, remedy) = match e {
        MetadataError::InvalidUrl { reason, .. } => (
            format!("is not a metadata URL: {reason}"),
            "give sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB",
        ),
        MetadataError::Timeout { .. } => (
            "did not answer in time".to_string(),
            "check the host and port, and that the server is running",
        ),
        MetadataError::Migration { version, source } => (
            format!(
                "cannot be migrated (step {version}): {}",
                object_store::error_chain(source)
            ),
            "check that the user may create tables in the database",
        ),
        MetadataError::Unavailable(sqlx::Error::Database(db)) => (
            format!("refused the connection: {}", db.message()),
            "check the user, password and database named in the URL",
        ),
        MetadataError::Unavailable(sqlx::Error::Configuration(c)) => (
            format!("is not a usable URL: {c}"),
            "give sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB",
        ),
        MetadataError::Unavailable(sqlx::Error::PoolTimedOut) => (
            "did not accept a connection in time".to_string(),
            "check the host and port, and that the server is running",
        ),
        MetadataError::Unavailable(other) => (
            format!("cannot be reached: {}", object_store::error_chain(other)),
            "check the host and port, and that the server is running",
        ),
        other => (other.to_string(), "check the URL"),
    };
    format!("metadata store {url} {what} ({METADATA}); {remedy}")
}

/// Refuses to start when another live agent holds `id`. A registration whose heartbeat is
/// recent may be this agent's own previous run, killed a moment ago: if the session it named
/// has ended, that run is gone; otherwise it is watched for a little over two heartbeats, and
/// only a heartbeat that moves meanwhile means a live agent.
pub async fn claim_id(
    meta: &MetadataStore,
    id: &str,
    config: &AgentConfig,
) -> Result<(), StartError> {
    let unavailable =
        |e: MetadataError| fail(format!("metadata store: {e} ({METADATA}); check the store"));
    let ttl = config.lease_ttl_ms as i64;
    let Some((address, first_beat, age)) = meta.agent_heartbeat(id).await.map_err(unavailable)?
    else {
        return Ok(());
    };
    if age > ttl {
        return Ok(());
    }
    // A registration whose session has ended belongs to a process that is gone.
    let sessions = meta.agent_sessions().await.map_err(unavailable)?;
    if sessions.iter().any(|s| s.id == id && !s.alive) {
        tracing::info!(id, previous = %address,
            "this id's previous session has ended; taking the id over");
        return Ok(());
    }
    let watch = Duration::from_millis(config.heartbeat_ms * 2 + 250);
    let until = Instant::now() + watch;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match meta.agent_heartbeat(id).await.map_err(unavailable)? {
            Some((address, beat, _)) if beat != first_beat => {
                return Err(fail(format!(
                    "agent id {id:?} is held by a live agent at {address} ({AGENT_ID}); stop \
                     that agent, or give this one another id"
                )));
            }
            Some(_) => {}
            None => return Ok(()),
        }
    }
    tracing::info!(id, previous = %address,
        "this id's previous registration has stopped heartbeating; taking it over");
    Ok(())
}
