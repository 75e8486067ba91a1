//! Prometheus metrics: what operators watch.
//!
//! - `strata_http_requests_total{route, status}` and
//!   `strata_http_request_duration_seconds{route}`;
//! - per timeline, read from the node at scrape time: `strata_timeline_lsn{tenant,
//!   timeline, kind}` for `last_ingested`, `disk_consistent`, `remote_projected` and
//!   `remote_visible`, and `strata_timeline_remote_layers`;
//! - `strata_tenants{state}`: attached tenants by lifecycle state (Active, Broken,
//!   …), read at scrape time; busy refusals show as 503s of `location_config`;
//! - `strata_node_in_flight_io`.

use crate::driver::NodeHandle;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use strata_core::node::api::{ApiError, Request, Response};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    lsn: IntGaugeVec,
    layers: IntGaugeVec,
    tenants: IntGaugeVec,
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
        for c in [
            Box::new(tenants.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(lsn.clone()),
            Box::new(layers.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics { registry, requests, latency, lsn, layers, tenants }
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
