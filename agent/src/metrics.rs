//! Prometheus metrics: lock-free counters and latency histograms the hot paths update, and
//! the text exposition format served on `--metrics-listen` at `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram: one atomic per bucket (not cumulative; summed when rendered).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    /// Above the last bound.
    overflow: AtomicU64,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

/// Everything the agent measures beyond [`crate::Stats`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub produce_seconds: Histogram,
    pub fetch_seconds: Histogram,
    pub produce_errors: AtomicU64,
    pub fetch_errors: AtomicU64,
    /// One flush: encode, object put, metadata commit.
    pub flush_seconds: Histogram,
    pub object_put_seconds: Histogram,
    pub object_put_errors: AtomicU64,
    pub metadata_commit_seconds: Histogram,
    pub metadata_commit_errors: AtomicU64,
    pub object_get_seconds: Histogram,
    pub object_get_errors: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Reads that found an indexed object missing from the object store.
    pub objects_missing: AtomicU64,
    /// Produce requests refused because the flush buffer was full.
    pub produce_throttled: AtomicU64,
    /// Lease rounds skipped because this agent's flushes could not commit.
    pub leases_withheld: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_rows_replaced: AtomicU64,
    pub compaction_bytes: AtomicU64,
    pub compaction_errors: AtomicU64,
    pub compaction_seconds: Histogram,
    pub retention_rows_dropped: AtomicU64,
    pub maintenance_errors: AtomicU64,
    pub gc_runs: AtomicU64,
    pub gc_objects_deleted: AtomicU64,
    pub gc_orphans_deleted: AtomicU64,
    pub gc_bytes_deleted: AtomicU64,
    pub gc_errors: AtomicU64,
    /// Unreferenced objects waiting out the grace period after the last pass.
    pub gc_objects_waiting: AtomicU64,
    pub gc_seconds: Histogram,
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// The agent's metrics in Prometheus' text format.
pub fn render(shared: &crate::Shared) -> String {
    let m = &shared.metrics;
    let s = &shared.stats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(8 * 1024);
    counter(
        &mut out,
        "streamhouse_produced_records_total",
        "Records acknowledged to producers.",
        load(&s.produced_records),
    );
    counter(
        &mut out,
        "streamhouse_produced_bytes_total",
        "Batch bytes acknowledged to producers.",
        load(&s.produced_bytes),
    );
    counter(
        &mut out,
        "streamhouse_fetched_records_total",
        "Records returned to consumers.",
        load(&s.fetched_records),
    );
    counter(
        &mut out,
        "streamhouse_fetched_bytes_total",
        "Batch bytes returned to consumers.",
        load(&s.fetched_bytes),
    );
    counter(
        &mut out,
        "streamhouse_produce_errors_total",
        "Produce requests answered with an error.",
        load(&m.produce_errors),
    );
    counter(
        &mut out,
        "streamhouse_fetch_errors_total",
        "Fetch requests answered with an error.",
        load(&m.fetch_errors),
    );
    let (flushes, flushed_bytes) = shared.writer.flushed();
    counter(
        &mut out,
        "streamhouse_flushes_total",
        "Objects written and committed.",
        flushes,
    );
    counter(
        &mut out,
        "streamhouse_flushed_bytes_total",
        "Bytes of objects written and committed.",
        flushed_bytes,
    );
    counter(
        &mut out,
        "streamhouse_object_put_errors_total",
        "Object store writes that failed.",
        load(&m.object_put_errors),
    );
    counter(
        &mut out,
        "streamhouse_metadata_commit_errors_total",
        "Flush commits the metadata store refused or failed (fencing included).",
        load(&m.metadata_commit_errors),
    );
    let (batches, bytes) = shared.writer.buffered();
    gauge(
        &mut out,
        "streamhouse_buffered_batches",
        "Batches waiting in the flush buffer.",
        batches,
    );
    gauge(
        &mut out,
        "streamhouse_buffered_bytes",
        "Bytes waiting in the flush buffer.",
        bytes,
    );
    gauge(
        &mut out,
        "streamhouse_partitions_led",
        "Partitions whose lease this agent holds.",
        shared
            .topics
            .all()
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.lease_epoch().is_some())
            .count() as u64,
    );
    let cache_bytes = shared.reader.cache().size() as u64;
    gauge(
        &mut out,
        "streamhouse_cache_bytes",
        "Chunk bytes held by the read cache.",
        cache_bytes,
    );
    for (name, help, v) in [
        (
            "streamhouse_object_get_errors_total",
            "Object store reads that failed.",
            &m.object_get_errors,
        ),
        (
            "streamhouse_cache_hits_total",
            "Chunk reads served from the read cache.",
            &m.cache_hits,
        ),
        (
            "streamhouse_cache_misses_total",
            "Chunk reads that went to the object store.",
            &m.cache_misses,
        ),
        (
            "streamhouse_objects_missing_total",
            "Reads that found an indexed object missing from the object store.",
            &m.objects_missing,
        ),
        (
            "streamhouse_produce_throttled_total",
            "Produce requests refused with THROTTLED because the flush buffer was full.",
            &m.produce_throttled,
        ),
        (
            "streamhouse_metadata_timeouts_total",
            "Metadata-store calls that did not finish within --metadata-timeout-ms.",
            shared.meta.timeouts(),
        ),
        (
            "streamhouse_leases_withheld_total",
            "Lease rounds this agent sat out because its flushes could not commit.",
            &m.leases_withheld,
        ),
        (
            "streamhouse_compactions_total",
            "Segments written by compaction.",
            &m.compactions,
        ),
        (
            "streamhouse_compaction_rows_replaced_total",
            "Index rows (chunks) compaction replaced by segments.",
            &m.compaction_rows_replaced,
        ),
        (
            "streamhouse_compaction_bytes_total",
            "Bytes written into segments by compaction.",
            &m.compaction_bytes,
        ),
        (
            "streamhouse_compaction_errors_total",
            "Compactions that failed (fenced, index changed, store errors).",
            &m.compaction_errors,
        ),
        (
            "streamhouse_retention_rows_dropped_total",
            "Index rows dropped by retention.",
            &m.retention_rows_dropped,
        ),
        (
            "streamhouse_maintenance_errors_total",
            "Partition maintenance passes (retention, compaction) that failed.",
            &m.maintenance_errors,
        ),
        (
            "streamhouse_gc_runs_total",
            "Garbage-collection passes this agent completed.",
            &m.gc_runs,
        ),
        (
            "streamhouse_gc_objects_deleted_total",
            "Unreferenced objects deleted after the grace period.",
            &m.gc_objects_deleted,
        ),
        (
            "streamhouse_gc_orphans_deleted_total",
            "Objects never committed (fenced or crashed flushes) deleted.",
            &m.gc_orphans_deleted,
        ),
        (
            "streamhouse_gc_bytes_deleted_total",
            "Bytes of objects garbage collection deleted.",
            &m.gc_bytes_deleted,
        ),
        (
            "streamhouse_gc_errors_total",
            "Garbage-collection passes or deletes that failed.",
            &m.gc_errors,
        ),
    ] {
        counter(&mut out, name, help, load(v));
    }
    gauge(
        &mut out,
        "streamhouse_gc_objects_waiting",
        "Unreferenced objects waiting out the grace period, as of this agent's last pass.",
        load(&m.gc_objects_waiting),
    );
    m.produce_seconds.render(
        &mut out,
        "streamhouse_produce_request_seconds",
        "Produce request latency, until acknowledged.",
    );
    m.fetch_seconds.render(
        &mut out,
        "streamhouse_fetch_request_seconds",
        "Fetch request latency, long-poll waits included.",
    );
    m.flush_seconds.render(
        &mut out,
        "streamhouse_flush_seconds",
        "One flush: object put and metadata commit.",
    );
    m.object_put_seconds.render(
        &mut out,
        "streamhouse_object_put_seconds",
        "Object store write latency.",
    );
    m.metadata_commit_seconds.render(
        &mut out,
        "streamhouse_metadata_commit_seconds",
        "Metadata store flush commit latency.",
    );
    m.object_get_seconds.render(
        &mut out,
        "streamhouse_object_get_seconds",
        "Object store ranged read latency (cache misses).",
    );
    m.compaction_seconds.render(
        &mut out,
        "streamhouse_compaction_seconds",
        "One compaction: read the chunks, write the segment, swap the index.",
    );
    m.gc_seconds.render(
        &mut out,
        "streamhouse_gc_seconds",
        "One garbage-collection pass.",
    );
    out
}

/// Serves `/metrics` on `listener` until the agent stops.
pub async fn serve(listener: TcpListener, shared: Arc<crate::Shared>) {
    use http_body_util::Full;
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
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(render(&shared))))
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
    fn histograms_render_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "X.");
        assert!(out.contains("x_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_seconds_count 3\n"));
        assert!(out.contains("x_seconds_sum 20.0033\n"));
    }
}
