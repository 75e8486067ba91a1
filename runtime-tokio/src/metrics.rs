//! Prometheus metrics: what operators watch.
//!
//! - `strata_http_requests_total{route, status}` and
//!   `strata_http_request_duration_seconds{route}`;
//! - per timeline, read from the node at scrape time: `strata_timeline_lsn{tenant,
//!   timeline, kind}` for `last_ingested`, `disk_consistent`, `remote_projected` and
//!   `remote_visible`, and `strata_timeline_remote_layers`;
//! - `strata_tenants{state}`: attached tenants by lifecycle state (Active, Broken,
//!   …), read at scrape time; busy refusals show as 503s of `location_config`;
//! - `strata_tenants_generation_conflict_total`: tenants found with objects in
//!   their remote storage of a generation this node's control plane never granted
//!   (each such tenant is Broken, its reason naming the generation; S-GEN-MONO);
//! - `strata_secondary_downloaded_bytes_total` and
//!   `strata_secondary_downloaded_layers_total`: layers warm secondaries downloaded
//!   (checked and renamed into place) since start; `strata_secondary_tenants`: warm
//!   secondaries running, from the driver's status;
//! - `strata_node_in_flight_io`: I/O effects in flight, and
//!   `strata_node_emergency_mode` (1 or 0), from the driver's status;
//! - remote storage, walredo, build and process metrics: `crate::metrics_io`;
//! - `strata_upload_queue_operations{state}` (`queued`, `in_flight`),
//!   `strata_upload_queue_dropped`, `strata_deletion_queue_keys` and
//!   `strata_deletion_queue_lists`: the queues' sizes from the driver's status;
//! - `strata_startup_phase_seconds{phase}`: how long each start-up phase took;
//! - `strata_background_jobs_queued{kind}` and `strata_background_jobs_running{kind}`
//!   (`kind` = `compaction`, `gc`, `eviction`): the node's background-job
//!   scheduler, from the driver's status after the latest input;
//! - the node's page cache: `strata_page_cache_hits_total{request_kind,
//!   content_kind}` and `strata_page_cache_misses_total{..}` (request kind `get` or
//!   `background`, content kind `layer_file` or `value`), `strata_page_cache_bytes`,
//!   `strata_page_cache_entries` and `strata_page_cache_capacity_bytes`, from the
//!   driver's status at scrape time;
//! - `strata_timelines_broken{reason}`: Broken timelines by reason, read at
//!   scrape time: `corrupt` (a remote index or layer does not parse or does not
//!   match its index: no retry helps, an operator must restore the object) or
//!   `failed` (anything else);
//! - `strata_io_errors_total{kind}`: failed I/O effects (disk and remote) by kind
//!   (`transient`, `access_denied`, `invalid_credentials`, `no_such_bucket`,
//!   `no_space`, `fsync_failed`, `corrupt`, `permanent`; see
//!   `strata_core::io_error`), from the counters the
//!   driver keeps. The three operator-fixable kinds are retried with backoff until
//!   an operator fixes permissions, credentials or the bucket.
//! - `strata_wall_clock_jumps_total{direction}` (`forward`, `backward`): times the
//!   driver saw the wall clock move more than `WALL_CLOCK_JUMP_TOLERANCE_MS` further
//!   or less far than the monotonic clock between two readings (see
//!   `strata_core::time`); the node takes the new wall time as it is.
//! - `strata_timelines_disk_full`: timelines whose flush writes fail with no space
//!   left on the local disk (they refuse ingest with 503 and serve reads; past the
//!   budget they are Broken `no_space`), from the driver's status;
//! - `strata_machine_refusals_total{machine}`: inputs the node routed to a machine
//!   that the machine refused (`strata_core::node` `refusals.rs`): each one is a
//!   bug in the node; debug builds stop on the first.
//! - `strata_control_plane_failures_total{kind}` (`unreachable`, `timeout`,
//!   `refused`): control-plane call attempts that failed
//!   (`strata_core::control_plane::client`). While it grows, calls are retried:
//!   deletions and visible-LSN advances wait for a validation, and a start-up
//!   without an answer runs in emergency mode.

use crate::driver::NodeHandle;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Mutex;
use strata_core::node::api::{ApiError, BrokenTimeline, Request, Response, TenantInfo};
use strata_core::page_cache::{ContentKind, PageCacheStats, RequestKind};
use strata_core::scheduler::JobKind;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    lsn: IntGaugeVec,
    layers: IntGaugeVec,
    tenants: IntGaugeVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    /// `bytes`, `entries`, `capacity_bytes`.
    cache_size: [prometheus::IntGauge; 3],
    /// The counts last exported: counters advance by the difference.
    cache_seen: Mutex<PageCacheStats>,
    jobs_queued: IntGaugeVec,
    jobs_running: IntGaugeVec,
    io_errors: IntCounterVec,
    timelines_broken: IntGaugeVec,
    /// The driver's error counts last exported.
    io_errors_seen: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    generation_conflicts: prometheus::IntCounter,
    secondary_bytes: prometheus::IntCounter,
    secondary_layers: prometheus::IntCounter,
    secondary_tenants: prometheus::IntGauge,
    /// The node's warm-secondary counters last exported.
    secondary_seen: Mutex<strata_core::secondary::SecondaryStats>,
    wall_clock_jumps: IntCounterVec,
    /// The node's jump counts last exported.
    wall_clock_jumps_seen: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// The node's count last exported: the counter advances by the difference.
    generation_conflicts_seen: Mutex<u64>,
    /// The node's tenant-limit refusals last exported (`limit="tenants"`).
    tenant_limit_seen: Mutex<u64>,
    /// The node's memory-limit refusals last exported (`limit="memory"`).
    memory_limit_seen: Mutex<u64>,
    in_memory_bytes: prometheus::IntGauge,
    disk_full: prometheus::IntGauge,
    machine_refusals: IntCounterVec,
    /// The node's refusal counts last exported.
    machine_refusals_seen: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    control_plane_failures: IntCounterVec,
    /// The client's failure counts last exported.
    control_plane_failures_seen: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    in_flight_io: prometheus::IntGauge,
    emergency_mode: prometheus::IntGauge,
    limit_hits: IntCounterVec,
    startup_phases: prometheus::GaugeVec,
    /// `strata_upload_queue_operations{state}`, `strata_upload_queue_dropped`,
    /// `strata_deletion_queue_keys`, `strata_deletion_queue_lists`.
    queues: (IntGaugeVec, [prometheus::IntGauge; 3]),
    /// Remote storage, redo, build and process metrics (`crate::metrics_io`).
    pub io: std::sync::Arc<crate::metrics_io::IoMetrics>,
    /// The walredo child's supervisor, for `strata_walredo_restarts_total`.
    walredo: Mutex<Option<strata_adapters::walredo_process::WalRedoProcess>>,
}

pub struct RequestTimer(std::time::Instant);

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("strata_http_requests_total", "HTTP requests by route and status class"),
            &["route", "status"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "strata_http_request_duration_seconds",
                "HTTP request latency by route",
            ),
            &["route"],
        )
        .expect("static metric definition");
        let lsn = IntGaugeVec::new(
            Opts::new("strata_timeline_lsn", "Per-timeline LSNs: last_ingested, disk_consistent, remote_projected, remote_visible"),
            &["tenant", "timeline", "kind"],
        )
        .expect("static metric definition");
        let layers = IntGaugeVec::new(
            Opts::new("strata_timeline_remote_layers", "Layers in the timeline's remote index"),
            &["tenant", "timeline"],
        )
        .expect("static metric definition");
        let tenants = IntGaugeVec::new(
            Opts::new("strata_tenants", "Attached tenants by lifecycle state"),
            &["state"],
        )
        .expect("static metric definition");
        let cache_labels = &["request_kind", "content_kind"];
        let cache_hits = IntCounterVec::new(
            Opts::new(
                "strata_page_cache_hits_total",
                "Page cache hits by request and content kind",
            ),
            cache_labels,
        )
        .expect("static metric definition");
        let cache_misses = IntCounterVec::new(
            Opts::new(
                "strata_page_cache_misses_total",
                "Page cache misses by request and content kind",
            ),
            cache_labels,
        )
        .expect("static metric definition");
        let gauge = |name: &str, help: &str| {
            prometheus::IntGauge::new(name, help).expect("static metric definition")
        };
        let cache_size = [
            gauge("strata_page_cache_bytes", "Bytes held by the page cache"),
            gauge(
                "strata_page_cache_entries",
                "Entries (layer files and values) in the page cache",
            ),
            gauge("strata_page_cache_capacity_bytes", "The page cache's configured bound"),
        ];
        for c in [
            Box::new(cache_hits.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cache_misses.clone()),
            Box::new(cache_size[0].clone()),
            Box::new(cache_size[1].clone()),
            Box::new(cache_size[2].clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let jobs_queued = IntGaugeVec::new(
            Opts::new(
                "strata_background_jobs_queued",
                "Background jobs waiting for a scheduler slot, by kind",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let jobs_running = IntGaugeVec::new(
            Opts::new(
                "strata_background_jobs_running",
                "Background jobs holding a scheduler slot, by kind",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let io_errors = IntCounterVec::new(
            Opts::new(
                "strata_io_errors_total",
                "Failed I/O effects by kind; access_denied, invalid_credentials and no_such_bucket are retried until an operator fixes them",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        for kind in strata_core::io_error::IoErrorKind::ERROR_LABELS {
            io_errors.with_label_values(&[kind]);
        }
        let timelines_broken = IntGaugeVec::new(
            Opts::new(
                "strata_timelines_broken",
                "Broken timelines by reason: corrupt (a remote object no retry can fix) or failed",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        for kind in BrokenTimeline::KINDS {
            timelines_broken.with_label_values(&[kind]);
        }
        let generation_conflicts = prometheus::IntCounter::new(
            "strata_tenants_generation_conflict_total",
            "Tenants found with remote objects of a generation this node's control plane never granted (S-GEN-MONO); each is Broken",
        )
        .expect("static metric definition");
        let secondary_bytes = prometheus::IntCounter::new(
            "strata_secondary_downloaded_bytes_total",
            "Layer bytes warm secondaries downloaded (checked by size and CRC32C, renamed into place)",
        )
        .expect("static metric definition");
        let secondary_layers = prometheus::IntCounter::new(
            "strata_secondary_downloaded_layers_total",
            "Layers warm secondaries downloaded",
        )
        .expect("static metric definition");
        let secondary_tenants = prometheus::IntGauge::new(
            "strata_secondary_tenants",
            "Warm secondary tenants on the node (each follows its tenant's newest index)",
        )
        .expect("static metric definition");
        let wall_clock_jumps = IntCounterVec::new(
            Opts::new(
                "strata_wall_clock_jumps_total",
                "Wall-clock jumps beyond the tolerance relative to the monotonic clock, by direction",
            ),
            &["direction"],
        )
        .expect("static metric definition");
        for d in strata_core::time::JumpDirection::ALL {
            wall_clock_jumps.with_label_values(&[d.label()]);
        }
        let machine_refusals = IntCounterVec::new(
            Opts::new(
                "strata_machine_refusals_total",
                "Inputs the node routed to a machine that the machine refused: each is a bug in the node's routing",
            ),
            &["machine"],
        )
        .expect("static metric definition");
        for machine in strata_core::node::RefusingMachine::ALL {
            machine_refusals.with_label_values(&[machine.as_str()]);
        }
        let control_plane_failures = IntCounterVec::new(
            Opts::new(
                "strata_control_plane_failures_total",
                "Control-plane call attempts that failed, by kind; each is retried within its budget",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        for kind in strata_core::control_plane::CallFailure::LABELS {
            control_plane_failures.with_label_values(&[kind]);
        }
        let disk_full = prometheus::IntGauge::new(
            "strata_timelines_disk_full",
            "Timelines whose flush writes fail with no space left on the local disk: they refuse ingest (503) and serve reads; past no_space_budget_ms they are Broken no_space",
        )
        .expect("static metric definition");
        let in_flight_io = gauge(
            "strata_node_in_flight_io",
            "I/O effects (disk, remote storage, redo, control plane) started and not yet completed",
        );
        let emergency_mode = gauge(
            "strata_node_emergency_mode",
            "1 while the node runs without a control-plane answer to its start-up re-attach (uploads continue, deletions wait)",
        );
        let in_memory_bytes = gauge(
            "strata_node_in_memory_bytes",
            "Bytes of open and frozen in-memory layers over every timeline of the node (bounded by limits.max_in_memory_bytes)",
        );
        let limit_hits = IntCounterVec::new(
            Opts::new(
                "strata_http_limit_hits_total",
                "Requests refused with 503 by a [limits] bound: concurrency, deadline, tenants or memory",
            ),
            &["limit"],
        )
        .expect("static metric definition");
        for limit in ["concurrency", "deadline", "tenants", "memory"] {
            limit_hits.with_label_values(&[limit]);
        }
        let upload_ops = IntGaugeVec::new(
            Opts::new(
                "strata_upload_queue_operations",
                "Upload-queue operations of attached timelines by state: queued or in_flight",
            ),
            &["state"],
        )
        .expect("static metric definition");
        let queue_gauges = [
            gauge(
                "strata_upload_queue_dropped",
                "Operations dropped by the current upload queues (stop, break, deletion)",
            ),
            gauge("strata_deletion_queue_keys", "Object keys waiting in the deletion queue"),
            gauge("strata_deletion_queue_lists", "Deletion lists held by the deletion queue"),
        ];
        for state in ["queued", "in_flight"] {
            upload_ops.with_label_values(&[state]);
        }
        let startup_phases = prometheus::GaugeVec::new(
            Opts::new(
                "strata_startup_phase_seconds",
                "How long each start-up phase of this process took",
            ),
            &["phase"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(startup_phases.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upload_ops.clone()),
            Box::new(queue_gauges[0].clone()),
            Box::new(queue_gauges[1].clone()),
            Box::new(queue_gauges[2].clone()),
            Box::new(limit_hits.clone()),
            Box::new(in_flight_io.clone()),
            Box::new(emergency_mode.clone()),
            Box::new(in_memory_bytes.clone()),
            Box::new(io_errors.clone()),
            Box::new(control_plane_failures.clone()),
            Box::new(disk_full.clone()),
            Box::new(wall_clock_jumps.clone()),
            Box::new(machine_refusals.clone()),
            Box::new(timelines_broken.clone()),
            Box::new(tenants.clone()),
            Box::new(generation_conflicts.clone()),
            Box::new(secondary_bytes.clone()),
            Box::new(secondary_layers.clone()),
            Box::new(secondary_tenants.clone()),
            Box::new(jobs_queued.clone()),
            Box::new(jobs_running.clone()),
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(lsn.clone()),
            Box::new(layers.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let io = std::sync::Arc::new(crate::metrics_io::IoMetrics::register(&registry));
        Metrics {
            registry,
            requests,
            latency,
            lsn,
            layers,
            tenants,
            cache_hits,
            cache_misses,
            cache_size,
            cache_seen: Mutex::new(PageCacheStats::default()),
            jobs_queued,
            jobs_running,
            io_errors,
            timelines_broken,
            io_errors_seen: Mutex::new(Default::default()),
            generation_conflicts,
            generation_conflicts_seen: Mutex::new(0),
            secondary_bytes,
            secondary_layers,
            secondary_tenants,
            secondary_seen: Mutex::new(Default::default()),
            tenant_limit_seen: Mutex::new(0),
            memory_limit_seen: Mutex::new(0),
            in_memory_bytes,
            wall_clock_jumps,
            wall_clock_jumps_seen: Mutex::new(Default::default()),
            machine_refusals,
            machine_refusals_seen: Mutex::new(Default::default()),
            control_plane_failures,
            control_plane_failures_seen: Mutex::new(Default::default()),
            disk_full,
            in_flight_io,
            emergency_mode,
            limit_hits,
            startup_phases,
            queues: (upload_ops, queue_gauges),
            io,
            walredo: Mutex::new(None),
        }
    }

    /// Sets the queue gauges from the driver's status.
    pub fn observe_queues(&self, q: &strata_core::node::QueueCounts) {
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (ops, [dropped, keys, lists]) = &self.queues;
        ops.with_label_values(&["queued"]).set(as_i64(q.upload_queued as u64));
        ops.with_label_values(&["in_flight"]).set(as_i64(q.upload_in_flight as u64));
        dropped.set(as_i64(q.upload_dropped));
        keys.set(as_i64(q.deletion_queued_keys as u64));
        lists.set(as_i64(q.deletion_lists as u64));
    }

    /// Sets `strata_startup_phase_seconds` from the driver's status.
    pub fn observe_startup(&self, phases_ms: &[(String, u64)]) {
        for (phase, ms) in phases_ms {
            #[allow(clippy::cast_precision_loss)]
            self.startup_phases.with_label_values(&[phase]).set(*ms as f64 / 1000.0);
        }
    }

    /// Counts a request refused by `limit` (`strata_http_limit_hits_total`).
    pub fn limit_hit(&self, limit: &'static str) {
        self.limit_hits.with_label_values(&[limit]).inc();
    }

    /// The walredo child's supervisor whose restarts `/metrics` shows.
    pub fn watch_walredo(&self, process: strata_adapters::walredo_process::WalRedoProcess) {
        if let Ok(mut w) = self.walredo.lock() {
            *w = Some(process);
        }
    }

    /// Sets the node gauges from the driver's status and reads the process's.
    pub fn observe_node(&self, in_flight_io: usize, emergency: bool) {
        self.in_flight_io.set(i64::try_from(in_flight_io).unwrap_or(i64::MAX));
        self.emergency_mode.set(i64::from(emergency));
        if let Ok(w) = self.walredo.lock()
            && let Some(p) = w.as_ref()
        {
            self.io.walredo_restarts.set(i64::try_from(p.restarts()).unwrap_or(i64::MAX));
        }
        self.io.observe_process();
    }

    /// Sets `strata_timelines_disk_full` from the driver's status.
    pub fn observe_disk_full(&self, timelines: usize) {
        self.disk_full.set(i64::try_from(timelines).unwrap_or(i64::MAX));
    }

    /// Brings `strata_control_plane_failures_total` up to the client's counts (they
    /// only grow).
    pub fn observe_control_plane_failures(
        &self,
        counts: &std::collections::BTreeMap<&'static str, u64>,
    ) {
        let Ok(mut seen) = self.control_plane_failures_seen.lock() else { return };
        for (kind, n) in counts {
            let before = seen.get(kind).copied().unwrap_or(0);
            self.control_plane_failures.with_label_values(&[kind]).inc_by(n.saturating_sub(before));
        }
        *seen = counts.clone();
    }

    /// Brings `strata_machine_refusals_total` up to the node's counts (they only grow).
    pub fn observe_machine_refusals(&self, counts: &std::collections::BTreeMap<&'static str, u64>) {
        let Ok(mut seen) = self.machine_refusals_seen.lock() else { return };
        for (machine, n) in counts {
            let before = seen.get(machine).copied().unwrap_or(0);
            self.machine_refusals.with_label_values(&[machine]).inc_by(n.saturating_sub(before));
        }
        *seen = counts.clone();
    }

    /// Sets `strata_timelines_broken{reason}` from the node's tenant list.
    pub fn observe_broken_timelines(&self, tenants: &[TenantInfo]) {
        for kind in BrokenTimeline::KINDS {
            let n =
                tenants.iter().flat_map(|t| &t.broken_timelines).filter(|b| b.kind == kind).count();
            self.timelines_broken.with_label_values(&[kind]).set(i64::try_from(n).unwrap_or(0));
        }
    }

    /// Brings `strata_io_errors_total` up to the driver's counts (they only grow).
    pub fn observe_io_errors(&self, counts: &std::collections::BTreeMap<&'static str, u64>) {
        let Ok(mut seen) = self.io_errors_seen.lock() else { return };
        for (kind, n) in counts {
            let before = seen.get(kind).copied().unwrap_or(0);
            self.io_errors.with_label_values(&[kind]).inc_by(n.saturating_sub(before));
        }
        *seen = counts.clone();
    }

    /// Brings `strata_wall_clock_jumps_total` up to the node's counts (they only grow).
    pub fn observe_wall_clock_jumps(&self, counts: &std::collections::BTreeMap<&'static str, u64>) {
        let Ok(mut seen) = self.wall_clock_jumps_seen.lock() else { return };
        for (direction, n) in counts {
            let before = seen.get(direction).copied().unwrap_or(0);
            self.wall_clock_jumps.with_label_values(&[direction]).inc_by(n.saturating_sub(before));
        }
        *seen = counts.clone();
    }

    /// Brings `strata_tenants_generation_conflict_total` up to the node's count.
    /// Advances `strata_http_limit_hits_total{limit="tenants"}` to the node's count
    /// of creates and attaches refused by `limits.max_tenants`.
    pub fn observe_tenant_limit(&self, total: u64) {
        let Ok(mut seen) = self.tenant_limit_seen.lock() else { return };
        let hits = self.limit_hits.with_label_values(&["tenants"]);
        hits.inc_by(total.saturating_sub(*seen));
        *seen = (*seen).max(total);
    }

    /// Sets `strata_node_in_memory_bytes` and advances
    /// `strata_http_limit_hits_total{limit="memory"}` to the node's count.
    pub fn observe_memory(&self, bytes: u64, refusals_total: u64) {
        self.in_memory_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let Ok(mut seen) = self.memory_limit_seen.lock() else { return };
        let hits = self.limit_hits.with_label_values(&["memory"]);
        hits.inc_by(refusals_total.saturating_sub(*seen));
        *seen = (*seen).max(refusals_total);
    }

    /// Brings the warm-secondary counters up to the node's and sets the gauge.
    pub fn observe_secondaries(
        &self,
        stats: &strata_core::secondary::SecondaryStats,
        running: usize,
    ) {
        self.secondary_tenants.set(i64::try_from(running).unwrap_or(i64::MAX));
        let Ok(mut seen) = self.secondary_seen.lock() else { return };
        self.secondary_bytes.inc_by(stats.downloaded_bytes.saturating_sub(seen.downloaded_bytes));
        self.secondary_layers
            .inc_by(stats.downloaded_layers.saturating_sub(seen.downloaded_layers));
        seen.downloaded_bytes = seen.downloaded_bytes.max(stats.downloaded_bytes);
        seen.downloaded_layers = seen.downloaded_layers.max(stats.downloaded_layers);
    }

    pub fn observe_generation_conflicts(&self, total: u64) {
        let Ok(mut seen) = self.generation_conflicts_seen.lock() else { return };
        self.generation_conflicts.inc_by(total.saturating_sub(*seen));
        *seen = (*seen).max(total);
    }

    /// Sets the scheduler gauges from the driver's status: `(kind, queued, running)`.
    pub fn observe_background_jobs(&self, jobs: &[(JobKind, usize, usize)]) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for (kind, queued, running) in jobs {
            self.jobs_queued.with_label_values(&[kind.as_str()]).set(gauge(*queued));
            self.jobs_running.with_label_values(&[kind.as_str()]).set(gauge(*running));
        }
    }

    /// Brings the page-cache metrics up to `stats` (the node's counters only grow).
    pub fn observe_page_cache(&self, stats: &PageCacheStats) {
        let Ok(mut seen) = self.cache_seen.lock() else { return };
        for request in RequestKind::ALL {
            for content in ContentKind::ALL {
                let (now, before) = (stats.get(request, content), seen.get(request, content));
                let labels = [request.as_str(), content.as_str()];
                self.cache_hits
                    .with_label_values(&labels)
                    .inc_by(now.hits.saturating_sub(before.hits));
                self.cache_misses
                    .with_label_values(&labels)
                    .inc_by(now.misses.saturating_sub(before.misses));
            }
        }
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.cache_size[0].set(as_i64(stats.bytes));
        self.cache_size[1].set(as_i64(stats.entries as u64));
        self.cache_size[2].set(as_i64(stats.capacity_bytes));
        *seen = stats.clone();
    }

    pub fn request_started(&self, _route: &'static str) -> RequestTimer {
        RequestTimer(std::time::Instant::now())
    }

    pub fn request_finished(
        &self,
        route: &'static str,
        timer: RequestTimer,
        error: Option<&ApiError>,
    ) {
        let status = match error {
            None => "ok",
            Some(ApiError::BadRequest(_)) => "400",
            Some(ApiError::NotFound(_)) => "404",
            Some(ApiError::Conflict(_)) => "409",
            Some(ApiError::Unavailable { .. } | ApiError::ShuttingDown) => "503",
            Some(ApiError::Internal(_)) => "500",
        };
        self.requests.with_label_values(&[route, status]).inc();
        self.latency.with_label_values(&[route]).observe(timer.0.elapsed().as_secs_f64());
    }

    /// Refreshes the per-timeline gauges from the node, then renders everything.
    pub async fn render(&self, node: &NodeHandle) -> String {
        if let Ok(Response::Tenants(tenants)) = node.call(Request::ListTenants).await {
            self.lsn.reset();
            self.layers.reset();
            self.tenants.reset();
            self.observe_broken_timelines(&tenants);
            for state in strata_core::tenant::TenantState::LABELS {
                let n = tenants.iter().filter(|t| t.state == state).count();
                self.tenants.with_label_values(&[state]).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            for t in tenants {
                for timeline in t.timelines {
                    let Ok(Response::TimelineInfo(info)) =
                        node.call(Request::TimelineInfo { tenant: t.tenant, timeline }).await
                    else {
                        continue;
                    };
                    let (tn, tl) = (t.tenant.to_string(), timeline.to_string());
                    for (kind, lsn) in [
                        ("last_ingested", info.last_ingested_lsn),
                        ("disk_consistent", info.disk_consistent_lsn),
                        ("remote_projected", info.remote_consistent_lsn_projected),
                        ("remote_visible", info.remote_consistent_lsn_visible),
                    ] {
                        self.lsn
                            .with_label_values(&[&tn, &tl, kind])
                            .set(i64::try_from(lsn.0).unwrap_or(i64::MAX));
                    }
                    self.layers
                        .with_label_values(&[&tn, &tl])
                        .set(i64::try_from(info.layers).unwrap_or(i64::MAX));
                }
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::page_cache::HitMiss;

    fn text(m: &Metrics) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&m.registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn wall_clock_jumps_are_exported_by_direction_without_double_counting() {
        let m = Metrics::new();
        let t = text(&m);
        assert!(t.contains(r#"strata_wall_clock_jumps_total{direction="backward"} 0"#), "{t}");
        let counts = [("backward", 2), ("forward", 0)].into_iter().collect();
        m.observe_wall_clock_jumps(&counts);
        m.observe_wall_clock_jumps(&counts);
        let t = text(&m);
        assert!(t.contains(r#"strata_wall_clock_jumps_total{direction="backward"} 2"#), "{t}");
        assert!(t.contains(r#"strata_wall_clock_jumps_total{direction="forward"} 0"#), "{t}");
    }

    #[test]
    fn page_cache_counters_follow_the_node_without_double_counting() {
        let m = Metrics::new();
        let mut s = PageCacheStats {
            bytes: 4096,
            entries: 2,
            capacity_bytes: 1 << 20,
            ..Default::default()
        };
        s.counts.insert((RequestKind::Get, ContentKind::LayerFile), HitMiss { hits: 5, misses: 2 });
        m.observe_page_cache(&s);
        m.observe_page_cache(&s);
        s.counts.insert((RequestKind::Get, ContentKind::LayerFile), HitMiss { hits: 7, misses: 2 });
        m.observe_page_cache(&s);
        let t = text(&m);
        assert!(
            t.contains(
                r#"strata_page_cache_hits_total{content_kind="layer_file",request_kind="get"} 7"#
            ),
            "{t}"
        );
        assert!(t.contains(
            r#"strata_page_cache_misses_total{content_kind="value",request_kind="background"} 0"#
        ));
        assert!(t.contains("strata_page_cache_bytes 4096"), "{t}");
        assert!(t.contains("strata_page_cache_entries 2"), "{t}");
    }

    #[test]
    fn io_error_counters_follow_the_driver_by_kind() {
        let m = Metrics::new();
        let t = text(&m);
        assert!(t.contains(r#"strata_io_errors_total{kind="access_denied"} 0"#), "{t}");
        let mut counts = std::collections::BTreeMap::new();
        counts.insert("access_denied", 3);
        m.observe_io_errors(&counts);
        m.observe_io_errors(&counts);
        counts.insert("access_denied", 5);
        counts.insert("transient", 1);
        m.observe_io_errors(&counts);
        let t = text(&m);
        assert!(t.contains(r#"strata_io_errors_total{kind="access_denied"} 5"#), "{t}");
        assert!(t.contains(r#"strata_io_errors_total{kind="transient"} 1"#), "{t}");
        assert!(t.contains(r#"strata_io_errors_total{kind="no_such_bucket"} 0"#), "{t}");
    }

    #[test]
    fn control_plane_failures_are_counted_by_kind() {
        let m = Metrics::new();
        let t = text(&m);
        assert!(t.contains(r#"strata_control_plane_failures_total{kind="timeout"} 0"#), "{t}");
        let mut counts = std::collections::BTreeMap::new();
        counts.insert("unreachable", 3);
        m.observe_control_plane_failures(&counts);
        m.observe_control_plane_failures(&counts);
        counts.insert("unreachable", 5);
        m.observe_control_plane_failures(&counts);
        let t = text(&m);
        assert!(t.contains(r#"strata_control_plane_failures_total{kind="unreachable"} 5"#), "{t}");
    }

    #[test]
    fn the_disk_full_gauge_follows_the_status() {
        let m = Metrics::new();
        assert!(text(&m).contains("strata_timelines_disk_full 0"));
        m.observe_disk_full(2);
        assert!(text(&m).contains("strata_timelines_disk_full 2"));
    }

    #[test]
    fn machine_refusals_are_counted_by_machine() {
        let m = Metrics::new();
        let t = text(&m);
        assert!(t.contains(r#"strata_machine_refusals_total{machine="timeline"} 0"#), "{t}");
        assert!(t.contains(r#"strata_machine_refusals_total{machine="scheduler"} 0"#), "{t}");
        let mut counts = std::collections::BTreeMap::new();
        counts.insert("upload_queue", 2);
        m.observe_machine_refusals(&counts);
        m.observe_machine_refusals(&counts);
        let t = text(&m);
        assert!(t.contains(r#"strata_machine_refusals_total{machine="upload_queue"} 2"#), "{t}");
    }

    #[test]
    fn broken_timelines_are_counted_by_reason() {
        let m = Metrics::new();
        let broken = |kind: &str| BrokenTimeline {
            timeline: strata_core::TimelineId([1; 16]),
            kind: kind.to_string(),
            reason: "why".to_string(),
        };
        let tenant = TenantInfo {
            tenant: strata_core::TenantId([1; 16]),
            generation: None,
            state: "Active".to_string(),
            reason: None,
            timelines: Vec::new(),
            broken_timelines: vec![broken("corrupt"), broken("corrupt"), broken("failed")],
        };
        m.observe_broken_timelines(&[tenant]);
        let t = text(&m);
        assert!(t.contains(r#"strata_timelines_broken{reason="corrupt"} 2"#), "{t}");
        assert!(t.contains(r#"strata_timelines_broken{reason="failed"} 1"#), "{t}");
        m.observe_broken_timelines(&[]);
        assert!(text(&m).contains(r#"strata_timelines_broken{reason="corrupt"} 0"#));
    }

    #[test]
    fn background_job_gauges_follow_the_status() {
        let m = Metrics::new();
        m.observe_background_jobs(&[(JobKind::Compaction, 3, 2), (JobKind::Gc, 0, 1)]);
        let t = text(&m);
        assert!(t.contains(r#"strata_background_jobs_queued{kind="compaction"} 3"#), "{t}");
        assert!(t.contains(r#"strata_background_jobs_running{kind="compaction"} 2"#), "{t}");
        assert!(t.contains(r#"strata_background_jobs_running{kind="gc"} 1"#), "{t}");
    }
}
