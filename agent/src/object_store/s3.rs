//! `s3://BUCKET/PREFIX?endpoint=URL&region=REGION`: objects in S3 or anything that speaks its
//! API (MinIO, moto). Path-style addressing and a custom endpoint make local servers work;
//! credentials come from the standard AWS environment variables and profile.

use std::ops::Range;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{ObjectMeta, ObjectStore, StorageError, check_key};

/// Objects in an S3 bucket (or an S3-compatible server such as MinIO).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
    /// Where the server is, for messages: the URL's endpoint, or AWS's for the region.
    endpoint: String,
    /// Puts carry `If-None-Match: *`, so an existing object is never replaced. Turned off by
    /// [`S3Store::check`] for a server that refuses the header outright.
    conditional: Arc<AtomicBool>,
}

/// What [`S3Store::check`] found out about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalPuts {
    /// A second put of the probe's key was refused: objects are never replaced.
    Honoured,
    /// The server accepted the header but replaced the object anyway.
    Ignored,
    /// The server refused puts carrying the header; puts go without it.
    Unsupported,
}

/// What an `s3://` URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix within it: empty, or ending with `/`.
    pub prefix: String,
    /// The server, for S3-compatible stores (`?endpoint=`); AWS's otherwise.
    pub endpoint: Option<String>,
    /// `?region=`, else `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
}

impl S3Location {
    /// Reads `s3://bucket[/prefix][?endpoint=URL&region=R]`; any other parameter is an error.
    pub fn parse(url: &str) -> Result<S3Location, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if parsed.scheme() != "s3" {
            return Err(invalid("scheme must be s3"));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid("no bucket"))?
            .to_string();
        let mut prefix = parsed.path().trim_matches('/').to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let mut endpoint = None;
        let mut region = None;
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "endpoint" => endpoint = Some(v.into_owned()),
                "region" => region = Some(v.into_owned()),
                other => return Err(invalid(&format!("unknown parameter {other:?}"))),
            }
        }
        let region = region
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_string());
        Ok(S3Location {
            bucket,
            prefix,
            endpoint,
            region,
        })
    }
}

impl S3Store {
    /// A store for an `s3://bucket[/prefix][?endpoint=URL&region=R]` URL, with the SDK's default
    /// credential chain, path-style addressing and bounded connect and attempt timeouts. Nothing
    /// is sent yet: [`S3Store::check`] asks the server.
    pub async fn open(url: &str) -> Result<S3Store, StorageError> {
        let loc = S3Location::parse(url)?;
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(20))
            .build();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(loc.region.clone()))
            .timeout_config(timeouts)
            .load()
            .await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            // S3-compatible servers differ in their support for the newer default checksums;
            // batches carry their own CRC-32C, so ask for checksums only where S3 requires them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &loc.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        let endpoint = loc
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", loc.region));
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            bucket: loc.bucket,
            prefix: loc.prefix,
            endpoint,
            conditional: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The bucket it writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The server it talks to, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the bucket exists: `Ok(false)` when the server says it does not, an error when
    /// the server cannot be asked or refuses to say.
    pub async fn bucket_exists(&self) -> Result<bool, StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(remote("head bucket", &self.bucket, e)),
        }
    }

    /// Writes, overwrites and deletes a probe object under `key`, and learns whether the
    /// server honours conditional puts (a second put of the same key must be refused).
    pub async fn check(&self, key: &str) -> Result<ConditionalPuts, StorageError> {
        let data = Bytes::from_static(b"streamhouse probe");
        let first = self.put(key, data.clone()).await;
        let verdict = match first {
            Ok(()) => match self.put(key, data).await {
                Err(StorageError::AlreadyExists(_)) => ConditionalPuts::Honoured,
                Ok(()) => ConditionalPuts::Ignored,
                Err(e) => {
                    let _ = self.delete(key).await;
                    return Err(e);
                }
            },
            Err(StorageError::Remote {
                status: Some(501 | 400),
                ..
            }) => {
                self.conditional.store(false, Ordering::Relaxed);
                self.put(key, data).await?;
                ConditionalPuts::Unsupported
            }
            Err(e) => return Err(e),
        };
        self.delete(key).await?;
        Ok(verdict)
    }

    /// Creates the bucket if it does not exist (tests and local setups).
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(remote("create bucket", &self.bucket, e)),
        }
    }

    fn full_key(&self, key: &str) -> Result<String, StorageError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }
}

fn status_of<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn remote<E>(op: &'static str, key: &str, e: SdkError<E>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    StorageError::Remote {
        op,
        key: key.to_string(),
        status: status_of(&e),
        message: one_line(&e),
    }
}

/// An SDK error as one line a person reads: the server's code and message, or what kept the
/// request from reaching it. Never the SDK's Debug output, which runs to kilobytes.
fn one_line<E>(e: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = status_of(e).map_or(String::new(), |s| format!(" (HTTP {s})"));
    let text = match e {
        SdkError::ServiceError(_) => match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}{status}"),
            (Some(code), None) => format!("{code}{status}"),
            (None, Some(message)) => format!("{message}{status}"),
            (None, None) => format!("the server refused the request{status}"),
        },
        SdkError::TimeoutError(_) => "timed out".to_string(),
        SdkError::DispatchFailure(d) => {
            let why = match d.as_connector_error() {
                Some(c) => super::error_chain(c),
                None => super::error_chain(e),
            };
            if d.is_timeout() {
                format!("timed out reaching the server: {why}")
            } else {
                format!("cannot reach the server: {why}")
            }
        }
        SdkError::ResponseError(_) => format!("unreadable response{status}"),
        _ => super::error_chain(e),
    };
    super::clip(&text)
}

fn body_error(key: &str, e: &dyn std::error::Error) -> StorageError {
    StorageError::Remote {
        op: "get",
        key: key.to_string(),
        status: None,
        message: super::clip(&format!("reading the body: {}", super::error_chain(e))),
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let full = self.full_key(key)?;
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data));
        if self.conditional.load(Ordering::Relaxed) {
            put = put.if_none_match("*");
        }
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(412) => Err(StorageError::AlreadyExists(key.into())),
            Err(e) => Err(remote("put", key, e)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let full = self.full_key(key)?;
        if range.end <= range.start {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(StorageError::NotFound(key.to_string()));
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                return Err(StorageError::RangeOutOfBounds {
                    key: key.to_string(),
                    start: range.start,
                    end: range.end,
                    size: 0,
                });
            }
            Err(e) => return Err(remote("get", key, e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| body_error(key, &e))?
            .into_bytes();
        let want = (range.end - range.start) as usize;
        if body.len() != want {
            // S3 answers a range that runs past the end with what there is.
            return Err(StorageError::RangeOutOfBounds {
                key: key.to_string(),
                start: range.start,
                end: range.end,
                size: range.start + body.len() as u64,
            });
        }
        Ok(body)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let full = self.full_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(StorageError::NotFound(key.to_string()));
            }
            Err(e) => return Err(remote("get", key, e)),
        };
        Ok(out
            .body
            .collect()
            .await
            .map_err(|e| body_error(key, &e))?
            .into_bytes())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| remote("list", prefix, e))?;
            for obj in page.contents() {
                let Some(k) = obj.key() else { continue };
                let Some(rel) = k.strip_prefix(&self.prefix) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: rel.to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let full = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| remote("delete", key, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let loc = S3Location::parse(
            "s3://data/streamhouse/prod?endpoint=http://127.0.0.1:9000&region=eu-west-1",
        )
        .unwrap();
        assert_eq!(loc.bucket, "data");
        assert_eq!(loc.prefix, "streamhouse/prod/");
        assert_eq!(loc.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(loc.region, "eu-west-1");
        assert_eq!(S3Location::parse("s3://b").unwrap().prefix, "");
        assert!(S3Location::parse("s3:///nobucket").is_err());
        assert!(S3Location::parse("s3://b/p?colour=red").is_err());
    }

    /// Runs against the S3-compatible server named by `STREAMHOUSE_TEST_S3_ENDPOINT`. Skips
    /// when it is unset on a developer's machine; under CI a missing server is a failure.
    #[tokio::test]
    async fn conformance() {
        let Some(endpoint) = crate::testing::service_env("STREAMHOUSE_TEST_S3_ENDPOINT") else {
            return;
        };
        let bucket = format!("sh-test-{:08x}", rand::random::<u32>());
        let url = format!("s3://{bucket}/conformance?endpoint={endpoint}&region=us-east-1");
        let store = S3Store::open(&url).await.unwrap();
        store.ensure_bucket().await.unwrap();
        crate::object_store::conformance::run(&store).await;
    }
}
