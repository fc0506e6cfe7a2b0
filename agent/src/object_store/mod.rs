//! Where record data lives: one trait, backends chosen by URL (`file://DIR`, `s3://BUCKET/PREFIX`).
//!
//! Objects are immutable once put: the writer puts each flush as one new object under a unique
//! key and never rewrites it, so readers may cache any byte range forever.

mod file;
mod s3;

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

pub use file::FileStore;
pub use s3::{ConditionalPuts, S3Store};

/// Why an object-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL cannot be used.
    #[error("invalid storage URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key that is empty, absolute, or has an empty, `.` or `..` part.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// No object under the key.
    #[error("object {0:?} not found")]
    NotFound(String),
    /// A ranged read past the object's end.
    #[error("object {key:?} has {size} bytes; range {start}..{end} is past its end")]
    RangeOutOfBounds {
        /// The object.
        key: String,
        /// The range's first byte.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The object's size.
        size: u64,
    },
    /// The local file system failed.
    #[error("{op} {key:?}: {source}")]
    Io {
        /// What was being done (`put`, `get`, ...).
        op: &'static str,
        /// The object.
        key: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A put found an object under the key already (keys are unique per writer, so this
    /// means another process wrote it) and left it as it was.
    #[error("object {0:?} exists already; it was not replaced")]
    AlreadyExists(String),
    /// The remote store refused or could not be reached; `message` is one line.
    #[error("{op} {key:?}: {message}")]
    Remote {
        /// What was being done (`put`, `get`, ...).
        op: &'static str,
        /// The object.
        key: String,
        /// The HTTP status the server answered with, when it answered.
        status: Option<u16>,
        /// The server's answer or the transport's error, as one line.
        message: String,
    },
}

/// An error and its sources as one line: each message once, joined by ": ".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// At most one line of 300 characters.
pub(crate) fn clip(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match line.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line,
    }
}

/// One stored object, as `list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A store of immutable objects addressed by `/`-separated keys.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Stores `data` under `key` durably and atomically: readers see all of it or nothing.
    /// Where the store can refuse, an existing object is never replaced: the put fails with
    /// [`StorageError::AlreadyExists`].
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError>;
    /// Reads `range` of the object (end exclusive).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError>;
    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<Bytes, StorageError>;
    /// Every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;
    /// Removes an object; removing one that is absent is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}

/// Opens the store a URL names.
pub async fn open(url: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Arc::new(FileStore::open(path).await?));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3Store::open(url).await?));
    }
    Err(StorageError::InvalidUrl {
        url: url.to_string(),
        reason: "expected file://DIR or s3://BUCKET/PREFIX".into(),
    })
}

/// Keys are relative, `/`-separated, and never climb out of the store's root.
fn check_key(key: &str) -> Result<(), StorageError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\\')
        || key.contains('\0')
        || key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        Err(StorageError::InvalidKey(key.to_string()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod conformance;
