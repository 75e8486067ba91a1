//! `strata pageserver`: real adapters, the driver, HTTP and signals.
//!
//! Start: read the config, open the SQLite control-plane store, start the driver
//! (which re-attaches and loads every tenant), serve HTTP on the configured address.
//! SIGTERM or SIGINT: stop accepting connections, ask the node to shut down (freeze,
//! flush, upload, wait until everything acknowledged is visible, within the grace
//! period), exit 0 when that completed cleanly and 1 otherwise.
//!
//! With `testing.failpoints` on, the node has failpoints (`strata_adapters::failpoint`),
//! set from `STRATA_FAILPOINTS` at start-up and by `PUT /v1/failpoints`.
//!
//! Panics: a panic inside one tenant's timeline or upload-queue handler is caught
//! by the node (`isolate_tenant_panics`, set here only): that tenant goes Broken and
//! the others keep serving. Any other panic kills the driver task; `tokio::spawn`
//! turns it into a `JoinError`, which ends `run_pageserver` with an error, and the
//! process exits 1.

use crate::config::{ControlPlaneConfig, FileConfig, RemoteStorageConfig, WalRedoConfig};
use crate::control::link::RemoteControlPlane;
use crate::driver::{self, Adapters, NodeStatus};
use crate::http::{AppState, router};
use crate::metrics::Metrics;
use crate::metrics_io::Instrumented;
use crate::trace_sink::TraceSink;
use camino::Utf8Path;
use std::sync::{Arc, Mutex};
use strata_adapters::failpoint::Failpoints;
use strata_adapters::generation_store::{GenerationStore, SendOutcome, StoreError};
use strata_adapters::local_disk::LocalDisk;
use strata_adapters::local_fs::LocalFs;
use strata_adapters::redo::{InProcessRedo, Redo, RedoError};
use strata_adapters::remote::{
    DownloadCheck, ListPage, ListedObject, RemoteError, RemoteStorage, TransferError,
};
use strata_adapters::s3::S3Remote;
use strata_adapters::sqlite_store::SqliteStore;
use strata_adapters::walredo_process::WalRedoProcess;
use strata_core::control_plane::{CpRequest, StoreChange, TenantRecord};
use strata_core::node::api::{Request, Response};
use strata_core::remote_path::RemoteKey;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Setup(String),
    #[error("the node stopped: {0}")]
    NodeStopped(String),
}

/// Runs a node until it is told to stop. Returns whether the shutdown was clean.
pub async fn run_pageserver(
    config_path: &Utf8Path,
    overrides: &[String],
    rebuild_generations: bool,
) -> Result<bool, ServerError> {
    let config = effective_config(config_path, overrides)?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ServerError::Setup(format!("creating data dir {}: {e}", config.data_dir)))?;
    let disk = LocalDisk::new(config.data_dir.clone());
    let remote = match &config.remote_storage {
        RemoteStorageConfig::Local { path } => {
            std::fs::create_dir_all(path)
                .map_err(|e| ServerError::Setup(format!("creating remote dir {path}: {e}")))?;
            NodeRemote::Local(LocalFs::new(path.clone()).with_local_disk(disk.clone()))
        }
        RemoteStorageConfig::S3(s3) => NodeRemote::S3(
            S3Remote::new(s3.clone())
                .map_err(|e| ServerError::Setup(format!("configuring S3: {e}")))?
                .with_local_disk(disk.clone()),
        ),
    };
    let mut node_config = config.node_config(rebuild_generations);
    let store = match &config.control_plane {
        ControlPlaneConfig::Embedded { sqlite_path } => {
            NodeStore::Embedded(SqliteStore::open(sqlite_path).map_err(|e| {
                ServerError::Setup(format!("opening control-plane store {sqlite_path}: {e}"))
            })?)
        }
        ControlPlaneConfig::Remote { url, token, .. } => {
            tracing::info!(%url, "control plane: remote");
            let timeout =
                std::time::Duration::from_millis(node_config.control_plane.call_timeout_ms);
            NodeStore::Remote(RemoteControlPlane::new(url, token.clone(), timeout))
        }
    };
    // The binary, and only the binary, isolates a panic in one tenant's machines:
    // that tenant goes Broken and the others keep serving (core `node/isolation.rs`).
    // Tests and the simulator keep the default so that a panic fails the run.
    node_config.isolate_tenant_panics = true;
    let redo = match config.walredo {
        WalRedoConfig::Process { request_timeout_ms } => {
            let mut child =
                strata_adapters::walredo_process::WalRedoConfig::strata_child(&config.data_dir)
                    .map_err(|e| {
                        ServerError::Setup(format!("locating the strata binary for walredo: {e}"))
                    })?;
            if let Some(ms) = request_timeout_ms {
                child.request_timeout_ms = ms;
            }
            NodeRedo::Process(WalRedoProcess::start(child))
        }
        WalRedoConfig::InProcess => NodeRedo::InProcess(InProcessRedo),
    };
    let metrics = Arc::new(Metrics::new());
    if let NodeRedo::Process(process) = &redo {
        metrics.watch_walredo(process.clone());
    }
    let remote = Instrumented::new(remote, metrics.io.clone())
        .with_max_concurrent(config.limits.max_concurrent_remote_ops());
    let redo = Instrumented::new(redo, metrics.io.clone());
    let adapters = Adapters { disk, remote, store, redo };
    let auth = match &config.auth {
        Some(a) => Some(Arc::new(
            crate::auth::Auth::from_key_files(&a.key_files)
                .map_err(|e| ServerError::Setup(e.to_string()))?,
        )),
        None => None,
    };

    let failpoints = failpoints(&config)?;
    let (handle, inbox) = driver::channel();
    let status = Arc::new(Mutex::new(NodeStatus::default()));
    let mut driver_task = tokio::spawn(driver::run_with_failpoints(
        node_config,
        adapters,
        driver::SystemClock::new(),
        failpoints.clone(),
        inbox,
        TraceSink::Log,
        status.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(&config.listen_http)
        .await
        .map_err(|e| ServerError::Setup(format!("binding {}: {e}", config.listen_http)))?;
    tracing::info!(
        addr = %config.listen_http, data_dir = %config.data_dir, auth = auth.is_some(), "serving HTTP"
    );
    let limits = Arc::new(crate::http::HttpLimits::new(
        config.limits.max_concurrent_http_requests(),
        config.limits.http_request_deadline_ms(),
    ));
    let state = AppState { node: handle.clone(), metrics, status, auth, limits, failpoints };
    let (stop_http_tx, stop_http_rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                let _ = stop_http_rx.await;
            })
            .await
    });

    tokio::select! {
        () = shutdown_signal() => {}
        finished = &mut driver_task => {
            let _ = stop_http_tx.send(());
            let reason = match finished {
                Ok(Ok(stopped)) => stopped.reason,
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("driver task failed: {e}"),
            };
            return Err(ServerError::NodeStopped(reason));
        }
    }
    tracing::info!("shutdown requested: no new connections; flushing and uploading");
    let _ = stop_http_tx.send(());
    let clean = matches!(
        handle.call(Request::Shutdown).await,
        Ok(Response::ShutdownComplete { clean: true })
    );
    // A panic outside a tenant's machines (the driver task dies) stops the node
    // with exit 1, even during the shutdown.
    if let Err(e) = driver_task.await {
        let _ = http.await;
        return Err(ServerError::NodeStopped(format!("driver task failed: {e}")));
    }
    let _ = http.await;
    tracing::info!(clean, "stopped");
    Ok(clean)
}

/// The node's failpoints: none unless `testing.failpoints` is on; then those
/// `STRATA_FAILPOINTS` names (`name=action;…`), a bad list refusing the start.
fn failpoints(config: &FileConfig) -> Result<Option<Failpoints>, ServerError> {
    let spec = std::env::var(FAILPOINTS_VARIABLE).ok();
    if !config.testing.failpoints {
        if spec.is_some() {
            tracing::info!("{FAILPOINTS_VARIABLE} ignored: testing.failpoints is off");
        }
        return Ok(None);
    }
    let failpoints = Failpoints::new();
    let list = Failpoints::parse_list(spec.as_deref().unwrap_or_default())
        .map_err(|e| ServerError::Setup(format!("{FAILPOINTS_VARIABLE}: {e}")))?;
    for (site, action) in list {
        failpoints.set(site, action).map_err(|e| ServerError::Setup(e.to_string()))?;
    }
    tracing::info!("failpoints on (testing.failpoints): PUT /v1/failpoints");
    Ok(Some(failpoints))
}

/// The environment variable naming failpoints to set at start-up.
pub const FAILPOINTS_VARIABLE: &str = "STRATA_FAILPOINTS";

/// The file at `config_path` with the environment's `STRATA_…` keys and
/// `overrides` (`key=value`) applied, its relative paths resolved against the
/// file's directory. Warns about `STRATA_…` variables that name no key.
pub fn effective_config(
    config_path: &Utf8Path,
    overrides: &[String],
) -> Result<FileConfig, ServerError> {
    let (config, ignored) = FileConfig::load(config_path, std::env::vars(), overrides)?;
    for name in ignored {
        tracing::warn!(%name, "environment variable names no configuration key: ignored");
    }
    let base = config_path.parent().map(Utf8Path::to_owned).unwrap_or_default();
    let base = if base.as_str().is_empty() { ".".into() } else { base };
    Ok(config.resolve_paths(&base))
}

/// Logs to stderr: `STRATA_LOG` is the filter (`info` by default),
/// `STRATA_LOG_FORMAT` the format: `text` (the default) or `json` (one object per
/// line with `timestamp`, `level`, `target`, `fields`, and the enclosing `span`
/// and `spans`, e.g. a request's `id`, `tenant` and `timeline`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = std::env::var("STRATA_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format.as_str() {
        "json" => builder.json().with_current_span(true).with_span_list(true).init(),
        "" | "text" => builder.init(),
        other => {
            builder.init();
            tracing::warn!(format = other, "STRATA_LOG_FORMAT is text or json: logging text");
        }
    }
}

/// SIGTERM or SIGINT (also `strata control`'s stop).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the node can only be killed; keep serving.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The remote storage a configuration chooses.
#[derive(Clone)]
pub enum NodeRemote {
    Local(LocalFs),
    S3(S3Remote),
}

impl RemoteStorage for NodeRemote {
    async fn put(&self, key: &RemoteKey, body: Vec<u8>) -> Result<(), RemoteError> {
        match self {
            NodeRemote::Local(r) => r.put(key, body).await,
            NodeRemote::S3(r) => r.put(key, body).await,
        }
    }

    async fn get(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
        match self {
            NodeRemote::Local(r) => r.get(key).await,
            NodeRemote::S3(r) => r.get(key).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
        match self {
            NodeRemote::Local(r) => r.list(prefix).await,
            NodeRemote::S3(r) => r.list(prefix).await,
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&RemoteKey>,
        max_keys: usize,
    ) -> Result<ListPage, RemoteError> {
        match self {
            NodeRemote::Local(r) => r.list_page(prefix, start_after, max_keys).await,
            NodeRemote::S3(r) => r.list_page(prefix, start_after, max_keys).await,
        }
    }

    async fn delete_objects(&self, keys: &[RemoteKey]) -> Result<(), RemoteError> {
        match self {
            NodeRemote::Local(r) => r.delete_objects(keys).await,
            NodeRemote::S3(r) => r.delete_objects(keys).await,
        }
    }

    async fn put_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        match self {
            NodeRemote::Local(r) => r.put_file(key, path, check).await,
            NodeRemote::S3(r) => r.put_file(key, path, check).await,
        }
    }

    async fn get_to_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        match self {
            NodeRemote::Local(r) => r.get_to_file(key, path, check).await,
            NodeRemote::S3(r) => r.get_to_file(key, path, check).await,
        }
    }
}

/// The redo a configuration chooses.
#[derive(Clone)]
pub enum NodeRedo {
    InProcess(InProcessRedo),
    Process(WalRedoProcess),
}

impl Redo for NodeRedo {
    async fn redo(&self, request: Vec<u8>) -> Result<Vec<u8>, RedoError> {
        match self {
            NodeRedo::InProcess(r) => r.redo(request).await,
            NodeRedo::Process(r) => r.redo(request).await,
        }
    }
}

/// The node's control plane: in process on SQLite, or a `strata control`.
#[derive(Clone, Debug)]
pub enum NodeStore {
    Embedded(SqliteStore),
    Remote(RemoteControlPlane),
}

impl GenerationStore for NodeStore {
    async fn load(&self) -> Result<Vec<TenantRecord>, StoreError> {
        match self {
            NodeStore::Embedded(s) => s.load().await,
            NodeStore::Remote(r) => r.load().await,
        }
    }

    async fn apply(&self, change: &StoreChange) -> Result<(), StoreError> {
        match self {
            NodeStore::Embedded(s) => s.apply(change).await,
            NodeStore::Remote(r) => r.apply(change).await,
        }
    }

    async fn send(&self, request: &CpRequest) -> SendOutcome {
        match self {
            NodeStore::Embedded(s) => s.send(request).await,
            NodeStore::Remote(r) => r.send(request).await,
        }
    }
}
