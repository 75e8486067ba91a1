//! Metrics measured at the adapters, and the process's own.
//!
//! [`Instrumented`] wraps the node's remote storage and redo: every call is
//! counted and timed where it happens, so the machines stay unaware of metrics.
//!
//! - `strata_remote_storage_operations_total{op, result}`: `op` = `put`, `get`,
//!   `list`, `delete`, `put_file`, `get_to_file`; `result` = `ok` or an error kind
//!   ([`result_label`]);
//! - `strata_remote_storage_bytes_total{op}`: bytes sent (`put`, `put_file`) and
//!   received (`get`, `get_to_file`) by successful operations;
//! - `strata_remote_storage_duration_seconds{op}`: latency of every operation
//!   (from when it got its slot);
//! - `strata_remote_storage_in_flight`: operations running now, at most
//!   `limits.max_concurrent_remote_ops` (the node-wide bound: [`Instrumented`]
//!   holds the slots; an operation past it waits for one, it is not refused);
//! - `strata_remote_storage_waits_total`: operations that found every slot taken
//!   and waited;
//! - `strata_walredo_requests_total{result}` (`ok`, `error`) and
//!   `strata_walredo_duration_seconds`: redo requests;
//! - `strata_walredo_restarts_total`: walredo children killed after a failure
//!   (process redo only), read at scrape time;
//! - `strata_build_info{version}`: always 1;
//! - `strata_process_resident_memory_bytes`, `strata_process_open_fds`,
//!   `strata_process_cpu_seconds_total`: from `/proc/self` at scrape time (0
//!   where `/proc` is missing).

use camino::Utf8Path;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::Arc;
use std::time::Instant;
use strata_adapters::redo::{Redo, RedoError};
use strata_adapters::remote::{
    DownloadCheck, ListedObject, RemoteError, RemoteErrorKind, RemoteStorage, TransferError,
};
use strata_core::remote_path::RemoteKey;

/// The adapter and process metrics, registered in the node's registry.
pub struct IoMetrics {
    remote_ops: IntCounterVec,
    remote_bytes: IntCounterVec,
    remote_latency: HistogramVec,
    remote_in_flight: IntGauge,
    remote_waits: prometheus::IntCounter,
    redo_requests: IntCounterVec,
    redo_latency: Histogram,
    pub(crate) walredo_restarts: IntGauge,
    rss: IntGauge,
    fds: IntGauge,
    cpu: prometheus::Gauge,
}

/// The remote operations, as labelled.
pub const REMOTE_OPS: [&str; 6] = ["put", "get", "list", "delete", "put_file", "get_to_file"];

fn def<T>(r: prometheus::Result<T>) -> T {
    r.unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
}

impl IoMetrics {
    pub fn register(registry: &Registry) -> IoMetrics {
        let remote_ops = def(IntCounterVec::new(
            Opts::new(
                "strata_remote_storage_operations_total",
                "Remote storage operations by operation and result (ok or the error kind)",
            ),
            &["op", "result"],
        ));
        let remote_bytes = def(IntCounterVec::new(
            Opts::new(
                "strata_remote_storage_bytes_total",
                "Bytes sent or received by successful remote storage operations",
            ),
            &["op"],
        ));
        let remote_latency = def(HistogramVec::new(
            HistogramOpts::new(
                "strata_remote_storage_duration_seconds",
                "Latency of remote storage operations",
            ),
            &["op"],
        ));
        let remote_in_flight = def(IntGauge::new(
            "strata_remote_storage_in_flight",
            "Remote storage operations running now (at most limits.max_concurrent_remote_ops)",
        ));
        let remote_waits = def(prometheus::IntCounter::new(
            "strata_remote_storage_waits_total",
            "Remote storage operations that waited for a slot (limits.max_concurrent_remote_ops)",
        ));
        let redo_requests = def(IntCounterVec::new(
            Opts::new("strata_walredo_requests_total", "Redo requests by result (ok, error)"),
            &["result"],
        ));
        let redo_latency = def(Histogram::with_opts(HistogramOpts::new(
            "strata_walredo_duration_seconds",
            "Latency of redo requests",
        )));
        let walredo_restarts = def(IntGauge::new(
            "strata_walredo_restarts_total",
            "walredo children killed after a failure (death, hang, garbage)",
        ));
        let build = def(IntCounterVec::new(
            Opts::new("strata_build_info", "Always 1; the version in a label"),
            &["version"],
        ));
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).inc();
        let rss = def(IntGauge::new(
            "strata_process_resident_memory_bytes",
            "Resident memory of the node process",
        ));
        let fds = def(IntGauge::new("strata_process_open_fds", "Open file descriptors"));
        let cpu = def(prometheus::Gauge::new(
            "strata_process_cpu_seconds_total",
            "User and system CPU time of the node process",
        ));
        for op in REMOTE_OPS {
            remote_ops.with_label_values(&[op, "ok"]);
            remote_latency.with_label_values(&[op]);
        }
        for result in ["ok", "error"] {
            redo_requests.with_label_values(&[result]);
        }
        for c in [
            Box::new(remote_ops.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(remote_bytes.clone()),
            Box::new(remote_latency.clone()),
            Box::new(remote_in_flight.clone()),
            Box::new(remote_waits.clone()),
            Box::new(redo_requests.clone()),
            Box::new(redo_latency.clone()),
            Box::new(walredo_restarts.clone()),
            Box::new(build),
            Box::new(rss.clone()),
            Box::new(fds.clone()),
            Box::new(cpu.clone()),
        ] {
            def(registry.register(c));
        }
        IoMetrics {
            remote_ops,
            remote_bytes,
            remote_latency,
            remote_in_flight,
            remote_waits,
            redo_requests,
            redo_latency,
            walredo_restarts,
            rss,
            fds,
            cpu,
        }
    }

    fn remote_done(&self, op: &'static str, started: Instant, result: &str, bytes: u64) {
        self.remote_ops.with_label_values(&[op, result]).inc();
        self.remote_latency.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
        if bytes > 0 {
            self.remote_bytes.with_label_values(&[op]).inc_by(bytes);
        }
    }

    /// Reads the process's memory, descriptors and CPU time from `/proc/self`.
    pub fn observe_process(&self) {
        let proc_dir = Utf8Path::new("/proc/self");
        // SAFETY: sysconf only reads a configuration value.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        // SAFETY: as above.
        let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
        let statm = std::fs::read_to_string(proc_dir.join("statm")).unwrap_or_default();
        let resident: u64 =
            statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        self.rss.set(i64::try_from(resident * page).unwrap_or(i64::MAX));
        let fds = std::fs::read_dir(proc_dir.join("fd")).map_or(0, Iterator::count);
        self.fds.set(i64::try_from(fds).unwrap_or(i64::MAX));
        // Fields 14 and 15 (utime, stime) follow the command name in parentheses.
        let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        // After ')': state (not a number, filtered), then ppid… utime is the 12th number.
        let cpu_ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        self.cpu.set(cpu_ticks as f64 / ticks as f64);
    }
}

/// The label of a remote operation's outcome.
pub fn result_label(e: &RemoteError) -> &'static str {
    match e.kind {
        RemoteErrorKind::NotFound => "not_found",
        RemoteErrorKind::Transient => "transient",
        RemoteErrorKind::OperatorFixable(k) => k.as_str(),
        RemoteErrorKind::Permanent => "permanent",
    }
}

fn transfer_label(e: &TransferError) -> &'static str {
    match e {
        TransferError::Remote(r) => result_label(r),
        TransferError::Local(_) => "local",
        TransferError::Corrupt { .. } | TransferError::CorruptSource { .. } => "corrupt",
    }
}

/// An adapter whose calls are counted and timed in [`IoMetrics`]; for remote
/// storage, also held to a node-wide number of operations at once (`slots`).
#[derive(Clone)]
pub struct Instrumented<T> {
    pub inner: T,
    pub metrics: Arc<IoMetrics>,
    /// Remote operations allowed at once (`None`: no bound).
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl<T> Instrumented<T> {
    /// `inner` measured, with no bound on concurrency.
    pub fn new(inner: T, metrics: Arc<IoMetrics>) -> Self {
        Instrumented { inner, metrics, slots: None }
    }

    /// At most `n` remote operations at once; the others wait for a slot.
    pub fn with_max_concurrent(mut self, n: usize) -> Self {
        self.slots = Some(Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }
}

/// A taken slot: the in-flight gauge counts it until it is dropped.
struct Slot<'a> {
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
    gauge: &'a IntGauge,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl<R: RemoteStorage> Instrumented<R> {
    /// Waits for a slot (counting the wait when every slot is taken).
    async fn slot(&self) -> Slot<'_> {
        let permit = match &self.slots {
            None => None,
            Some(slots) => match slots.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.metrics.remote_waits.inc();
                    // The semaphore is never closed.
                    slots.acquire().await.ok()
                }
            },
        };
        self.metrics.remote_in_flight.inc();
        Slot { _permit: permit, gauge: &self.metrics.remote_in_flight }
    }

    async fn measure<T>(
        &self,
        op: &'static str,
        bytes: impl Fn(&T) -> u64,
        call: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        let _slot = self.slot().await;
        let started = Instant::now();
        let result = call.await;
        match &result {
            Ok(v) => self.metrics.remote_done(op, started, "ok", bytes(v)),
            Err(e) => self.metrics.remote_done(op, started, result_label(e), 0),
        }
        result
    }

    async fn measure_transfer(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<u64, TransferError>>,
    ) -> Result<u64, TransferError> {
        let _slot = self.slot().await;
        let started = Instant::now();
        let result = call.await;
        match &result {
            Ok(n) => self.metrics.remote_done(op, started, "ok", *n),
            Err(e) => self.metrics.remote_done(op, started, transfer_label(e), 0),
        }
        result
    }
}

impl<R: RemoteStorage> RemoteStorage for Instrumented<R> {
    async fn put(&self, key: &RemoteKey, body: Vec<u8>) -> Result<(), RemoteError> {
        let n = body.len() as u64;
        self.measure("put", |()| n, self.inner.put(key, body)).await
    }

    async fn get(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
        self.measure("get", |v: &Vec<u8>| v.len() as u64, self.inner.get(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
        self.measure("list", |_| 0, self.inner.list(prefix)).await
    }

    async fn delete_objects(&self, keys: &[RemoteKey]) -> Result<(), RemoteError> {
        self.measure("delete", |()| 0, self.inner.delete_objects(keys)).await
    }

    async fn put_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        self.measure_transfer("put_file", self.inner.put_file(key, path, check)).await
    }

    async fn get_to_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        self.measure_transfer("get_to_file", self.inner.get_to_file(key, path, check)).await
    }
}

impl<W: Redo> Redo for Instrumented<W> {
    async fn redo(&self, request: Vec<u8>) -> Result<Vec<u8>, RedoError> {
        let started = Instant::now();
        let result = self.inner.redo(request).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.redo_requests.with_label_values(&[label]).inc();
        self.metrics.redo_latency.observe(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_adapters::redo::InProcessRedo;

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn remote_calls_are_counted_by_result_with_bytes_and_latency() {
        let dir = tempfile::tempdir().unwrap();
        let root = camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let registry = Registry::new();
        let metrics = Arc::new(IoMetrics::register(&registry));
        let remote =
            Instrumented::new(strata_adapters::local_fs::LocalFs::new(root), metrics.clone());
        let key = RemoteKey::from_listing("tenants/x/obj").unwrap();
        remote.put(&key, vec![7; 10]).await.unwrap();
        assert_eq!(remote.get(&key).await.unwrap().len(), 10);
        let missing = RemoteKey::from_listing("tenants/x/none").unwrap();
        assert!(remote.get(&missing).await.is_err());
        let t = text(&registry);
        for line in [
            "strata_remote_storage_operations_total{op=\"put\",result=\"ok\"} 1",
            "strata_remote_storage_operations_total{op=\"get\",result=\"ok\"} 1",
            "strata_remote_storage_operations_total{op=\"get\",result=\"not_found\"} 1",
            "strata_remote_storage_bytes_total{op=\"put\"} 10",
            "strata_remote_storage_bytes_total{op=\"get\"} 10",
            "strata_remote_storage_duration_seconds_count{op=\"get\"} 2",
            "strata_build_info{version=",
        ] {
            assert!(t.contains(line), "{line} missing:\n{t}");
        }
        let redo = Instrumented::new(InProcessRedo, metrics.clone());
        assert!(redo.redo(b"garbage".to_vec()).await.is_err());
        metrics.observe_process();
        let t = text(&registry);
        assert!(t.contains("strata_walredo_requests_total{result=\"error\"} 1"), "{t}");
        assert!(!t.contains("strata_process_resident_memory_bytes 0"), "{t}");
    }

    /// A remote whose puts take a while and which records how many ran at once.
    #[derive(Clone)]
    struct Slow {
        inner: strata_adapters::local_fs::LocalFs,
        now: Arc<std::sync::atomic::AtomicUsize>,
        most: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl RemoteStorage for Slow {
        async fn put(&self, key: &RemoteKey, body: Vec<u8>) -> Result<(), RemoteError> {
            use std::sync::atomic::Ordering::SeqCst;
            let running = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(running, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            self.now.fetch_sub(1, SeqCst);
            self.inner.put(key, body).await
        }
        async fn get(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
            self.inner.list(prefix).await
        }
        async fn delete_objects(&self, keys: &[RemoteKey]) -> Result<(), RemoteError> {
            self.inner.delete_objects(keys).await
        }
        async fn put_file<C: DownloadCheck>(
            &self,
            key: &RemoteKey,
            path: &Utf8Path,
            check: C,
        ) -> Result<u64, TransferError> {
            self.inner.put_file(key, path, check).await
        }
        async fn get_to_file<C: DownloadCheck>(
            &self,
            key: &RemoteKey,
            path: &Utf8Path,
            check: C,
        ) -> Result<u64, TransferError> {
            self.inner.get_to_file(key, path, check).await
        }
    }

    /// `limits.max_concurrent_remote_ops`: with two slots, eight puts at once run
    /// at most two at a time; the others wait (counted) and all complete.
    #[tokio::test]
    async fn remote_operations_past_the_bound_wait_for_a_slot_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let registry = Registry::new();
        let metrics = Arc::new(IoMetrics::register(&registry));
        let slow = Slow {
            inner: strata_adapters::local_fs::LocalFs::new(root),
            now: Arc::default(),
            most: Arc::default(),
        };
        let remote = Instrumented::new(slow.clone(), metrics.clone()).with_max_concurrent(2);
        let puts = (0..8).map(|i| {
            let remote = remote.clone();
            tokio::spawn(async move {
                let key = RemoteKey::from_listing(&format!("tenants/x/obj{i}")).unwrap();
                remote.put(&key, vec![1; 4]).await
            })
        });
        for put in puts.collect::<Vec<_>>() {
            put.await.unwrap().unwrap();
        }
        assert_eq!(slow.most.load(std::sync::atomic::Ordering::SeqCst), 2);
        let t = text(&registry);
        assert!(t.contains("strata_remote_storage_in_flight 0"), "{t}");
        let waits: u64 = t
            .lines()
            .find_map(|l| l.strip_prefix("strata_remote_storage_waits_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!((6..=8).contains(&waits), "{waits} waits:\n{t}");
        assert!(
            t.contains("strata_remote_storage_operations_total{op=\"put\",result=\"ok\"} 8"),
            "{t}"
        );
    }
}
