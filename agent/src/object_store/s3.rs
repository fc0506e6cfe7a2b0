//! `s3://BUCKET/PREFIX?endpoint=URL&region=REGION`: objects in S3 or anything that speaks its
//! API (MinIO, moto). Path-style addressing and a custom endpoint make local servers work;
//! credentials come from the standard AWS environment variables and profile.

use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{check_key, ObjectMeta, ObjectStore, StorageError};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
}

/// What an `s3://` URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
}

impl S3Location {
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
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            bucket: loc.bucket,
            prefix: loc.prefix,
        })
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

fn remote<E: std::error::Error + 'static>(op: &'static str, key: &str, e: E) -> StorageError {
    StorageError::Remote {
        op,
        key: key.to_string(),
        message: DisplayErrorContext(e).to_string(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let full = self.full_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| remote("put", key, e))?;
        Ok(())
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
                return Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                return Err(StorageError::RangeOutOfBounds {
                    key: key.to_string(),
                    start: range.start,
                    end: range.end,
                    size: 0,
                })
            }
            Err(e) => return Err(remote("get", key, e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| remote("get", key, e))?
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
                return Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => return Err(remote("get", key, e)),
        };
        Ok(out
            .body
            .collect()
            .await
            .map_err(|e| remote("get", key, e))?
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
