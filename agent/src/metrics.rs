//! Prometheus metrics. The hot paths update [`prometheus_client`] counters and histograms held
//! in [`Metrics`]; `/metrics` on `--metrics-listen` encodes them, and the figures other parts of
//! the agent already keep (acknowledged records, the flush buffer, leases, the read cache), in
//! Prometheus' text format (0.0.4) with the crate's encoder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in seconds: fine below 10 ms, where a flush's steps
/// on a local disk fall, so their p99 can be read to the millisecond.
const BUCKETS: [f64; 21] = [
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram in seconds, over [`BUCKETS`].
#[derive(Debug, Clone)]
pub struct Latency(Histogram);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new(BUCKETS))
    }
}

impl Latency {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// Everything the agent measures beyond [`crate::Stats`]. Cloning a metric shares it, so the
/// registry [`Metrics::registry`] builds reads the values the hot paths update.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Produce requests, until acknowledged.
    pub produce_seconds: Latency,
    /// Fetch requests, long-poll waits included.
    pub fetch_seconds: Latency,
    /// Produce requests answered with an error as a whole.
    pub produce_errors: Counter,
    /// Fetch requests answered with an error as a whole.
    pub fetch_errors: Counter,
    /// How long the oldest batch of a flush waited in the buffer for it to begin.
    pub flush_wait_seconds: Latency,
    /// One flush: object put, metadata commit.
    pub flush_seconds: Latency,
    /// Object store writes.
    pub object_put_seconds: Latency,
    /// Object store writes that failed.
    pub object_put_errors: Counter,
    /// Flush commits in the metadata store.
    pub metadata_commit_seconds: Latency,
    /// Flush commits refused (fencing) or failed.
    pub metadata_commit_errors: Counter,
    /// Ranged object reads on cache misses.
    pub object_get_seconds: Latency,
    /// Object store reads that failed.
    pub object_get_errors: Counter,
    /// Chunk reads served from the read cache.
    pub cache_hits: Counter,
    /// Chunk reads that went to the object store.
    pub cache_misses: Counter,
    /// Reads that found an indexed object missing from the object store.
    pub objects_missing: Counter,
    /// Produce requests refused because the flush buffer was full.
    pub produce_throttled: Counter,
    /// Lease rounds skipped because this agent's flushes could not commit.
    pub leases_withheld: Counter,
    /// Segments written by compaction.
    pub compactions: Counter,
    /// Index rows (chunks) compaction replaced by segments.
    pub compaction_rows_replaced: Counter,
    /// Bytes written into segments by compaction.
    pub compaction_bytes: Counter,
    /// Compactions that failed.
    pub compaction_errors: Counter,
    /// One compaction: read, write the segment, swap the index.
    pub compaction_seconds: Latency,
    /// Index rows dropped by retention.
    pub retention_rows_dropped: Counter,
    /// Maintenance passes (retention, compaction) that failed.
    pub maintenance_errors: Counter,
    /// Garbage-collection passes completed.
    pub gc_runs: Counter,
    /// Unreferenced objects deleted after the grace period.
    pub gc_objects_deleted: Counter,
    /// Objects never committed (fenced or crashed flushes) deleted.
    pub gc_orphans_deleted: Counter,
    /// Bytes of objects garbage collection deleted.
    pub gc_bytes_deleted: Counter,
    /// Garbage-collection passes or deletes that failed.
    pub gc_errors: Counter,
    /// Unreferenced objects waiting out the grace period after the last pass.
    pub gc_objects_waiting: Gauge,
    /// One garbage-collection pass.
    pub gc_seconds: Latency,
    /// One maintenance pass (retention and compaction) over every partition this agent leads.
    pub maintenance_seconds: Latency,
}

impl Metrics {
    /// Every series the agent serves, named `streamhouse_*`: the metrics above, and a
    /// collector that reads the rest from `shared` at each scrape. Counters gain `_total` and
    /// latencies `_seconds` from the encoder.
    pub fn registry(shared: Arc<crate::Shared>) -> Registry {
        let m = &shared.metrics;
        let mut r = Registry::with_prefix("streamhouse");
        for (name, help, c) in [
            (
                "produce_errors",
                "Produce requests answered with an error",
                &m.produce_errors,
            ),
            (
                "fetch_errors",
                "Fetch requests answered with an error",
                &m.fetch_errors,
            ),
            (
                "object_put_errors",
                "Object store writes that failed",
                &m.object_put_errors,
            ),
            (
                "metadata_commit_errors",
                "Flush commits the metadata store refused or failed (fencing included)",
                &m.metadata_commit_errors,
            ),
            (
                "object_get_errors",
                "Object store reads that failed",
                &m.object_get_errors,
            ),
            (
                "cache_hits",
                "Chunk reads served from the read cache",
                &m.cache_hits,
            ),
            (
                "cache_misses",
                "Chunk reads that went to the object store",
                &m.cache_misses,
            ),
            (
                "objects_missing",
                "Reads that found an indexed object missing from the object store",
                &m.objects_missing,
            ),
            (
                "produce_throttled",
                "Produce requests refused with THROTTLED because the flush buffer was full",
                &m.produce_throttled,
            ),
            (
                "leases_withheld",
                "Lease rounds this agent sat out because its flushes could not commit",
                &m.leases_withheld,
            ),
            (
                "compactions",
                "Segments written by compaction",
                &m.compactions,
            ),
            (
                "compaction_rows_replaced",
                "Index rows (chunks) compaction replaced by segments",
                &m.compaction_rows_replaced,
            ),
            (
                "compaction_bytes",
                "Bytes written into segments by compaction",
                &m.compaction_bytes,
            ),
            (
                "compaction_errors",
                "Compactions that failed (fenced, index changed, store errors)",
                &m.compaction_errors,
            ),
            (
                "retention_rows_dropped",
                "Index rows dropped by retention",
                &m.retention_rows_dropped,
            ),
            (
                "maintenance_errors",
                "Partition maintenance passes (retention, compaction) that failed",
                &m.maintenance_errors,
            ),
            (
                "gc_runs",
                "Garbage-collection passes this agent completed",
                &m.gc_runs,
            ),
            (
                "gc_objects_deleted",
                "Unreferenced objects deleted after the grace period",
                &m.gc_objects_deleted,
            ),
            (
                "gc_orphans_deleted",
                "Objects never committed (fenced or crashed flushes) deleted",
                &m.gc_orphans_deleted,
            ),
            (
                "gc_bytes_deleted",
                "Bytes of objects garbage collection deleted",
                &m.gc_bytes_deleted,
            ),
            (
                "gc_errors",
                "Garbage-collection passes or deletes that failed",
                &m.gc_errors,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        r.register(
            "gc_objects_waiting",
            "Unreferenced objects waiting out the grace period, as of this agent's last pass",
            m.gc_objects_waiting.clone(),
        );
        for (name, help, h) in [
            (
                "produce_request",
                "Produce request latency, until acknowledged",
                &m.produce_seconds,
            ),
            (
                "fetch_request",
                "Fetch request latency, long-poll waits included",
                &m.fetch_seconds,
            ),
            (
                "flush_wait",
                "How long the oldest batch of a flush waited for it to begin",
                &m.flush_wait_seconds,
            ),
            (
                "flush",
                "One flush: object put and metadata commit",
                &m.flush_seconds,
            ),
            (
                "object_put",
                "Object store write latency",
                &m.object_put_seconds,
            ),
            (
                "metadata_commit",
                "Metadata store flush commit latency",
                &m.metadata_commit_seconds,
            ),
            (
                "object_get",
                "Object store ranged read latency (cache misses)",
                &m.object_get_seconds,
            ),
            (
                "compaction",
                "One compaction: read the chunks, write the segment, swap the index",
                &m.compaction_seconds,
            ),
            ("gc", "One garbage-collection pass", &m.gc_seconds),
            (
                "maintenance",
                "One maintenance pass (retention, compaction) over the partitions led",
                &m.maintenance_seconds,
            ),
        ] {
            r.register_with_unit(name, help, Unit::Seconds, h.0.clone());
        }
        r.register_collector(Box::new(Derived(shared.clone())));
        r
    }
}

/// The series other parts of the agent keep, read at each scrape.
struct Derived(Arc<crate::Shared>);

impl fmt::Debug for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Derived")
    }
}

impl Collector for Derived {
    fn encode(&self, mut out: DescriptorEncoder<'_>) -> fmt::Result {
        let shared = &self.0;
        let s = &shared.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (flushes, flushed_bytes) = shared.writer.flushed();
        for (name, help, v) in [
            (
                "produced_records",
                "Records acknowledged to producers.",
                load(&s.produced_records),
            ),
            (
                "produced_bytes",
                "Batch bytes acknowledged to producers.",
                load(&s.produced_bytes),
            ),
            (
                "fetched_records",
                "Records returned to consumers.",
                load(&s.fetched_records),
            ),
            (
                "fetched_bytes",
                "Batch bytes returned to consumers.",
                load(&s.fetched_bytes),
            ),
            ("flushes", "Objects written and committed.", flushes),
            (
                "flushed_bytes",
                "Bytes of objects written and committed.",
                flushed_bytes,
            ),
            (
                "metadata_timeouts",
                "Metadata-store calls that did not finish within --metadata-timeout-ms.",
                load(shared.meta.timeouts()),
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(out.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let calls = out.encode_descriptor(
            "metadata_calls",
            "Metadata-store calls by operation (one transaction or query each).",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        let mut calls = calls;
        for (op, n) in shared.meta.calls() {
            let c = ConstCounter::new(n);
            c.encode(calls.encode_family(&[("op", op)])?)?;
        }
        let (batches, bytes) = shared.writer.buffered();
        let led = shared
            .topics
            .all()
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.lease_epoch().is_some())
            .count();
        for (name, help, v) in [
            (
                "buffered_batches",
                "Batches waiting in the flush buffer.",
                batches,
            ),
            (
                "buffered_bytes",
                "Bytes waiting in the flush buffer.",
                bytes,
            ),
            (
                "partitions_led",
                "Partitions whose lease this agent holds.",
                led as u64,
            ),
            (
                "cache_bytes",
                "Chunk bytes held by the read cache.",
                shared.reader.cache().size() as u64,
            ),
        ] {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(out.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// The registry in Prometheus' text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail, and the crate's encoders only fail when the writer does.
    let _ = prometheus_text::encode(&mut out, registry);
    out
}

/// Serves `/metrics` on `listener` until the agent stops.
pub async fn serve(listener: TcpListener, shared: Arc<crate::Shared>) {
    use http_body_util::Full;
    let registry = Arc::new(Metrics::registry(shared));
    use hyper::body::Bytes;
    use hyper::{Request, Response, StatusCode};
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: do not spin on it.
                tracing::warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", prometheus_text::CONTENT_TYPE)
                            .body(Full::new(Bytes::from(render(&registry))))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"try /metrics\n")))
                    }
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_render_cumulative_buckets_in_seconds() {
        let h = Latency::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let mut r = Registry::with_prefix("streamhouse");
        r.register_with_unit("x", "X", Unit::Seconds, h.0.clone());
        let out = render(&r);
        assert!(
            out.contains("# TYPE streamhouse_x_seconds histogram\n"),
            "{out}"
        );
        assert!(
            out.contains("streamhouse_x_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("streamhouse_x_seconds_bucket{le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("streamhouse_x_seconds_bucket{le=\"10\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("streamhouse_x_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("streamhouse_x_seconds_count 3\n"), "{out}");
        assert!(out.contains("streamhouse_x_seconds_sum 20.0033\n"), "{out}");
    }

    #[test]
    fn counters_gain_total() {
        let c = Counter::<u64>::default();
        c.inc_by(7);
        let mut r = Registry::with_prefix("streamhouse");
        r.register("x", "X", c.clone());
        let out = render(&r);
        assert!(out.contains("# HELP streamhouse_x_total X.\n"), "{out}");
        assert!(
            out.contains("# TYPE streamhouse_x_total counter\n"),
            "{out}"
        );
        assert!(out.contains("streamhouse_x_total 7\n"), "{out}");
    }
}
