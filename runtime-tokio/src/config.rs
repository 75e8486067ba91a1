//! The node's configuration file (TOML), as `strata init` writes it.
//!
//! ```toml
//! node_id = 1
//! data_dir = "data"                 # relative paths are relative to this file
//! listen_http = "127.0.0.1:9898"
//!
//! [remote_storage]
//! kind = "local"                    # the embedded default: a directory
//! path = "remote"
//! # or: kind = "s3", bucket = "b", region = "us-east-1", prefix = "strata/",
//! #     endpoint = "http://127.0.0.1:5599" (S3-compatible servers)
//!
//! [control_plane]
//! kind = "embedded"                 # in-process generation table on SQLite
//! sqlite_path = "control-plane.sqlite"
//! # or: kind = "remote", url = "http://127.0.0.1:9090" (a `strata control`),
//! #     token = "…" (optional: sent as `Authorization: Bearer …`),
//! #     call_timeout_ms = 10000 (optional: the deadline of one attempt)
//!
//! [walredo]
//! kind = "process"                  # a `strata walredo` child; or "in_process"
//! request_timeout_ms = 60000        # optional (process only)
//!
//! [tuning]                          # every field optional; defaults in the code
//! checkpoint_distance_bytes = 8388608
//! page_cache_bytes = 67108864       # the node-wide page cache
//!
//! [auth]                            # optional: JWT bearer tokens (`crate::auth`)
//! key_files = ["auth.key"]          # HS256 secrets; any of them verifies a token
//!
//! [testing]                         # optional, tests only
//! failpoints = true                 # PUT /v1/failpoints, STRATA_FAILPOINTS
//! ```
//!
//! Unknown keys are errors, so a typo never silently falls back to a default.
//! Every key can also be set by a `STRATA_…` environment variable or `-c key=value`
//! (`crate::config_overrides`); `FileConfig::load` applies them.
//! Without `[auth]` the API is open, which the node allows only when `listen_http`
//! is a loopback address: bound elsewhere it refuses to start.

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use strata_core::NodeId;
use strata_core::node::NodeConfig;

pub const DEFAULT_LISTEN_HTTP: &str = "127.0.0.1:9898";
pub const CONFIG_FILE_NAME: &str = "strata.toml";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_id: u64,
    pub data_dir: Utf8PathBuf,
    pub listen_http: String,
    pub remote_storage: RemoteStorageConfig,
    pub control_plane: ControlPlaneConfig,
    #[serde(default)]
    pub walredo: WalRedoConfig,
    #[serde(default)]
    pub tuning: Tuning,
    /// Bearer-token authentication of the HTTP API; `None`: off (loopback only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Bounds on the HTTP API's load (`crate::http`).
    #[serde(default)]
    pub limits: Limits,
    /// Switches for tests only; all off by default.
    #[serde(default, skip_serializing_if = "Testing::is_off")]
    pub testing: Testing,
}

/// `[testing]`: what only tests turn on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Testing {
    /// Failpoints (`strata_adapters::failpoint`): `PUT /v1/failpoints` and
    /// `STRATA_FAILPOINTS` at start-up. Off: the route answers 404 and the
    /// variable is ignored.
    #[serde(default)]
    pub failpoints: bool,
}

impl Testing {
    fn is_off(&self) -> bool {
        *self == Testing::default()
    }
}

/// The default of `limits.max_concurrent_http_requests`.
pub const DEFAULT_MAX_CONCURRENT_HTTP_REQUESTS: usize = 512;
/// The default of `limits.http_request_deadline_ms`.
pub const DEFAULT_HTTP_REQUEST_DEADLINE_MS: u64 = 30_000;

/// The default of `limits.max_tenants`.
pub const DEFAULT_MAX_TENANTS: usize = 10_000;

/// The default of `limits.max_concurrent_remote_ops`.
pub const DEFAULT_MAX_CONCURRENT_REMOTE_OPS: usize = 64;

/// The default of `limits.max_in_memory_bytes`: 1 GiB.
pub const DEFAULT_MAX_IN_MEMORY_BYTES: u64 = 1 << 30;

/// `[limits]`: every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests handled at once (`/v1/status` and `/metrics` not counted); one
    /// more is answered 503 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_http_requests: Option<usize>,
    /// Longest a request may take, its body's arrival included; past it the
    /// answer is 503 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_request_deadline_ms: Option<u64>,
    /// Tenants the node holds at most; a create or an attach of one more is
    /// answered 503 with `Retry-After` (`core/src/tenant/manager/limits.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tenants: Option<usize>,
    /// Bytes of in-memory layers the node holds at most, over all its timelines;
    /// past it new records are answered 503 with `Retry-After` while the fullest
    /// open layer flushes (`core/src/node/memory.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_memory_bytes: Option<u64>,
    /// Remote storage operations (puts, gets, lists, deletes, transfers) running at
    /// once over the whole node; more wait for a slot (`metrics_io.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_remote_ops: Option<usize>,
}

impl Limits {
    pub fn max_concurrent_http_requests(&self) -> usize {
        self.max_concurrent_http_requests.unwrap_or(DEFAULT_MAX_CONCURRENT_HTTP_REQUESTS)
    }

    pub fn http_request_deadline_ms(&self) -> u64 {
        self.http_request_deadline_ms.unwrap_or(DEFAULT_HTTP_REQUEST_DEADLINE_MS)
    }

    pub fn max_tenants(&self) -> usize {
        self.max_tenants.unwrap_or(DEFAULT_MAX_TENANTS)
    }

    pub fn max_concurrent_remote_ops(&self) -> usize {
        self.max_concurrent_remote_ops.unwrap_or(DEFAULT_MAX_CONCURRENT_REMOTE_OPS)
    }

    pub fn max_in_memory_bytes(&self) -> u64 {
        self.max_in_memory_bytes.unwrap_or(DEFAULT_MAX_IN_MEMORY_BYTES)
    }
}

/// `[auth]`: the keys that verify bearer tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Files holding an HS256 secret each (`strata token new-key` writes one); a
    /// token signed by any of them is accepted (key rotation).
    pub key_files: Vec<Utf8PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RemoteStorageConfig {
    /// A local directory as the object store.
    Local { path: Utf8PathBuf },
    /// An S3 bucket (or an S3-compatible server): the fields of
    /// `strata_adapters::s3::S3Config` (`bucket`, `region`, `prefix`, `endpoint`, …).
    #[cfg(not(madsim))]
    S3(strata_adapters::s3::S3Config),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ControlPlaneConfig {
    /// The generation table in-process, stored in SQLite.
    Embedded { sqlite_path: Utf8PathBuf },
    /// A `strata control` service at `url` (the control_plane_url).
    Remote {
        url: String,
        /// A static bearer token the service requires of nodes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The deadline of one call attempt (the client machine's
        /// `call_timeout_ms`); its default otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_timeout_ms: Option<u64>,
    },
}

/// How values are reconstructed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WalRedoConfig {
    /// A `strata walredo` child process (the production default): a crash or hang
    /// of the child fails that request, never the node.
    Process {
        /// Longest wait for the child's answer to one request before it is killed
        /// and restarted; the adapter's default (60 s) otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_timeout_ms: Option<u64>,
    },
    /// Core's redo function in the node process.
    InProcess,
}

impl Default for WalRedoConfig {
    fn default() -> Self {
        WalRedoConfig::Process { request_timeout_ms: None }
    }
}

/// Optional overrides of the machines' defaults. Units are in the names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_distance_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_wait_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_upload_concurrency: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_ms: Option<u64>,
    /// How long the deletion queue gathers deletions and LSN updates before it
    /// validates them: the lag of the visible LSN behind the projected one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate_delay_ms: Option<u64>,
    /// How long the deletion queue's open list gathers keys before it is sealed
    /// (written, then validated and executed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_list_seal_delay_ms: Option<u64>,
    /// Bound of the node-wide page cache (layer files and reconstructed values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_cache_bytes: Option<u64>,
    /// Background jobs (compaction, GC, eviction) running at once on the node,
    /// across all tenants (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_background_jobs: Option<usize>,
    /// GC keeps history ingested less than this long ago (0: only the LSN distance
    /// bounds GC). After a restart the clock for what was there starts again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_retention_ms: Option<u64>,
    /// Layer downloads in flight at once per warm secondary tenant (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_download_concurrency: Option<usize>,
    /// Layer bytes a warm secondary keeps locally per tenant, newest layers first
    /// (default 64 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_tenant_bytes_max: Option<u64>,
    /// Time between two refreshes of a warm secondary (default 60000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_refresh_interval_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read { path: Utf8PathBuf, source: std::io::Error },
    #[error("config {path} is invalid: {message}")]
    Invalid { path: Utf8PathBuf, message: String },
}

impl FileConfig {
    /// The configuration `strata init` writes for a directory: everything under it.
    pub fn embedded_defaults() -> Self {
        FileConfig {
            node_id: 1,
            data_dir: "data".into(),
            listen_http: DEFAULT_LISTEN_HTTP.to_string(),
            remote_storage: RemoteStorageConfig::Local { path: "remote".into() },
            control_plane: ControlPlaneConfig::Embedded {
                sqlite_path: "control-plane.sqlite".into(),
            },
            walredo: WalRedoConfig::default(),
            tuning: Tuning::default(),
            auth: None,
            limits: Limits::default(),
            testing: Testing::default(),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| unreachable!("FileConfig always serializes: {e}"))
    }

    /// Reads the file at `path`, applies the `STRATA_…` variables of `env` and the
    /// `-c key=value` items of `cli` (`crate::config_overrides`), checks the result.
    /// Also returns the `STRATA_…` variables that name no key (to warn about).
    pub fn load(
        path: &Utf8Path,
        env: impl IntoIterator<Item = (String, String)>,
        cli: &[String],
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_owned(), message };
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let ignored = crate::config_overrides::apply(&mut table, env, cli)
            .map_err(|e| invalid(e.to_string()))?;
        let config: FileConfig = table.try_into().map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok((config, ignored))
    }

    /// This configuration with every optional value the node would use written
    /// out (`strata pageserver --print-config`).
    pub fn effective(&self) -> FileConfig {
        let mut out = self.clone();
        let c = self.node_config(false);
        out.tuning = Tuning {
            checkpoint_distance_bytes: Some(c.timeline.checkpoint_distance_bytes),
            checkpoint_timeout_ms: Some(c.timeline.checkpoint_timeout_ms),
            read_wait_timeout_ms: Some(c.timeline.read_wait_timeout_ms),
            layer_upload_concurrency: Some(c.upload.layer_upload_concurrency),
            shutdown_grace_ms: Some(c.shutdown_grace_ms),
            validate_delay_ms: Some(c.deletion.validate_delay_ms),
            deletion_list_seal_delay_ms: Some(c.deletion.list_seal_delay_ms),
            page_cache_bytes: Some(c.page_cache.capacity_bytes),
            max_concurrent_background_jobs: Some(c.scheduler.max_concurrent_jobs),
            gc_retention_ms: Some(c.timeline.gc_retention_ms),
            secondary_download_concurrency: Some(c.secondary.download_concurrency),
            secondary_tenant_bytes_max: Some(c.secondary.tenant_bytes_max),
            secondary_refresh_interval_ms: Some(c.secondary.refresh_interval_ms),
        };
        #[cfg(not(madsim))]
        if let WalRedoConfig::Process { request_timeout_ms: t @ None } = &mut out.walredo {
            *t = Some(strata_adapters::walredo_process::DEFAULT_REQUEST_TIMEOUT_MS);
        }
        out.limits = Limits {
            max_concurrent_http_requests: Some(self.limits.max_concurrent_http_requests()),
            http_request_deadline_ms: Some(self.limits.http_request_deadline_ms()),
            max_tenants: Some(self.limits.max_tenants()),
            max_in_memory_bytes: Some(self.limits.max_in_memory_bytes()),
            max_concurrent_remote_ops: Some(self.limits.max_concurrent_remote_ops()),
        };
        if let ControlPlaneConfig::Remote { call_timeout_ms: t @ None, .. } = &mut out.control_plane
        {
            *t = Some(c.control_plane.call_timeout_ms);
        }
        out
    }

    pub fn parse(path: &Utf8Path, text: &str) -> Result<Self, ConfigError> {
        let config: FileConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Invalid { path: path.to_owned(), message: e.to_string() })?;
        config
            .validate()
            .map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        Ok(config)
    }

    /// The rules no single field's type states.
    pub fn validate(&self) -> Result<(), String> {
        if self.tuning.max_concurrent_background_jobs == Some(0) {
            return Err("max_concurrent_background_jobs must be at least 1".into());
        }
        if self.tuning.secondary_download_concurrency == Some(0) {
            return Err("secondary_download_concurrency must be at least 1".into());
        }
        if self.node_id == 0 {
            return Err("node_id must be at least 1".into());
        }
        if self.limits.max_concurrent_http_requests == Some(0)
            || self.limits.http_request_deadline_ms == Some(0)
        {
            return Err("limits: max_concurrent_http_requests and http_request_deadline_ms must be at least 1".into());
        }
        match &self.auth {
            Some(auth) if auth.key_files.is_empty() => {
                Err("[auth] key_files is empty: name at least one key file".into())
            }
            Some(_) => Ok(()),
            None if is_loopback(&self.listen_http) => Ok(()),
            None => Err(format!(
                "listen_http {} is not a loopback address and [auth] is not configured: \
                 an open API is allowed on loopback only (see docs/OPERATIONS.md, Authentication)",
                self.listen_http
            )),
        }
    }

    /// Makes every relative path relative to `base` (the config file's directory).
    pub fn resolve_paths(mut self, base: &Utf8Path) -> Self {
        let abs = |p: &Utf8Path| if p.is_absolute() { p.to_owned() } else { base.join(p) };
        self.data_dir = abs(&self.data_dir);
        // Under madsim the S3 variant is compiled out and this pattern is irrefutable.
        #[allow(irrefutable_let_patterns)]
        if let RemoteStorageConfig::Local { path } = &mut self.remote_storage {
            *path = abs(path);
        }
        if let ControlPlaneConfig::Embedded { sqlite_path } = &mut self.control_plane {
            *sqlite_path = abs(sqlite_path);
        }
        if let Some(auth) = &mut self.auth {
            for key in &mut auth.key_files {
                *key = abs(key);
            }
        }
        self
    }

    /// The machines' configuration with this file's overrides applied.
    pub fn node_config(&self, rebuild_generations: bool) -> NodeConfig {
        let mut c = NodeConfig::new(NodeId(self.node_id));
        let t = &self.tuning;
        if let Some(v) = t.checkpoint_distance_bytes {
            c.timeline.checkpoint_distance_bytes = v;
        }
        if let Some(v) = t.checkpoint_timeout_ms {
            c.timeline.checkpoint_timeout_ms = v;
        }
        if let Some(v) = t.read_wait_timeout_ms {
            c.timeline.read_wait_timeout_ms = v;
        }
        if let Some(v) = t.layer_upload_concurrency {
            c.upload.layer_upload_concurrency = v;
        }
        if let Some(v) = t.shutdown_grace_ms {
            c.shutdown_grace_ms = v;
        }
        if let Some(v) = t.validate_delay_ms {
            c.deletion.validate_delay_ms = v;
        }
        if let Some(v) = t.deletion_list_seal_delay_ms {
            c.deletion.list_seal_delay_ms = v;
        }
        if let Some(v) = t.page_cache_bytes {
            c.page_cache.capacity_bytes = v;
        }
        if let Some(v) = t.max_concurrent_background_jobs {
            c.scheduler.max_concurrent_jobs = v;
        }
        if let Some(v) = t.gc_retention_ms {
            c.timeline.gc_retention_ms = v;
        }
        if let Some(v) = t.secondary_download_concurrency {
            c.secondary.download_concurrency = v;
        }
        if let Some(v) = t.secondary_tenant_bytes_max {
            c.secondary.tenant_bytes_max = v;
        }
        if let Some(v) = t.secondary_refresh_interval_ms {
            c.secondary.refresh_interval_ms = v;
        }
        c.rebuild_generations = rebuild_generations;
        c.max_tenants = Some(self.limits.max_tenants());
        c.max_in_memory_bytes = Some(self.limits.max_in_memory_bytes());
        if let ControlPlaneConfig::Remote { call_timeout_ms, .. } = &self.control_plane {
            c.remote_control_plane = true;
            if let Some(ms) = call_timeout_ms {
                c.control_plane.call_timeout_ms = *ms;
            }
        }
        c
    }
}

/// Whether every address `listen` resolves to is a loopback address (and it
/// resolves to at least one).
fn is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_resolve() {
        let c = FileConfig::embedded_defaults();
        let text = c.to_toml();
        let back = FileConfig::parse("x.toml".into(), &text).unwrap();
        assert_eq!(back, c);
        let resolved = back.resolve_paths("/srv/strata".into());
        assert_eq!(resolved.data_dir, "/srv/strata/data");
        assert_eq!(
            resolved.remote_storage,
            RemoteStorageConfig::Local { path: "/srv/strata/remote".into() }
        );
    }

    #[cfg(not(madsim))]
    #[test]
    fn s3_remote_storage_parses() {
        let text = FileConfig::embedded_defaults().to_toml().replace(
            "[remote_storage]\nkind = \"local\"\npath = \"remote\"",
            "[remote_storage]\nkind = \"s3\"\nbucket = \"b\"\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:5599\"",
        );
        let c = FileConfig::parse("x.toml".into(), &text).unwrap();
        match c.remote_storage {
            RemoteStorageConfig::S3(s3) => {
                assert_eq!((s3.bucket.as_str(), s3.region.as_str()), ("b", "eu-west-1"));
                assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:5599"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn background_job_tuning_applies_and_zero_jobs_is_an_error() {
        let mut file = FileConfig::embedded_defaults();
        file.tuning.max_concurrent_background_jobs = Some(2);
        file.tuning.gc_retention_ms = Some(3_600_000);
        let text = file.to_toml();
        assert!(text.contains("gc_retention_ms = 3600000"), "{text}");
        let c = FileConfig::parse("x.toml".into(), &text).unwrap().node_config(false);
        assert_eq!(c.scheduler.max_concurrent_jobs, 2);
        assert_eq!(c.timeline.gc_retention_ms, 3_600_000);
        file.tuning.max_concurrent_background_jobs = Some(0);
        let err = FileConfig::parse("x.toml".into(), &file.to_toml()).unwrap_err();
        assert!(err.to_string().contains("max_concurrent_background_jobs"), "{err}");
    }

    #[test]
    fn page_cache_bytes_tunes_the_node_page_cache() {
        let default = FileConfig::embedded_defaults().node_config(false);
        assert_eq!(
            default.page_cache.capacity_bytes,
            strata_core::page_cache::DEFAULT_PAGE_CACHE_BYTES
        );
        let text = FileConfig::embedded_defaults()
            .to_toml()
            .replace("[tuning]", "[tuning]\npage_cache_bytes = 1048576");
        let c = FileConfig::parse("x.toml".into(), &text).unwrap();
        assert_eq!(c.node_config(false).page_cache.capacity_bytes, 1_048_576);
    }

    #[test]
    fn an_open_api_is_refused_off_loopback_and_auth_allows_any_address() {
        let mut c = FileConfig::embedded_defaults();
        for open in ["127.0.0.1:9898", "[::1]:9898", "127.0.0.2:1"] {
            c.listen_http = open.into();
            assert_eq!(c.validate(), Ok(()), "{open}");
        }
        for exposed in ["0.0.0.0:9898", "[::]:9898", "10.1.2.3:9898"] {
            c.listen_http = exposed.into();
            let err = c.validate().unwrap_err();
            assert!(err.contains("not a loopback address"), "{exposed}: {err}");
        }
        c.auth = Some(AuthConfig { key_files: vec!["auth.key".into()] });
        assert_eq!(c.validate(), Ok(()));
        let text = c.to_toml();
        assert!(text.contains("[auth]\nkey_files = [\"auth.key\"]"), "{text}");
        let back = FileConfig::parse("x.toml".into(), &text).unwrap().resolve_paths("/srv".into());
        assert_eq!(back.auth.unwrap().key_files, vec![Utf8PathBuf::from("/srv/auth.key")]);
        c.auth = Some(AuthConfig { key_files: vec![] });
        assert!(c.validate().unwrap_err().contains("key_files is empty"));
    }

    #[test]
    fn walredo_request_timeout_is_optional_and_effective_fills_every_default() {
        let c =
            FileConfig::parse("x.toml".into(), &FileConfig::embedded_defaults().to_toml()).unwrap();
        assert_eq!(c.walredo, WalRedoConfig::Process { request_timeout_ms: None });
        let text = FileConfig::embedded_defaults()
            .to_toml()
            .replace("kind = \"process\"", "kind = \"process\"\nrequest_timeout_ms = 2500");
        let c = FileConfig::parse("x.toml".into(), &text).unwrap();
        assert_eq!(c.walredo, WalRedoConfig::Process { request_timeout_ms: Some(2500) });
        let effective = FileConfig::embedded_defaults().effective();
        let defaults = NodeConfig::new(NodeId(1));
        assert_eq!(effective.tuning.page_cache_bytes, Some(defaults.page_cache.capacity_bytes));
        assert_eq!(effective.tuning.gc_retention_ms, Some(defaults.timeline.gc_retention_ms));
        #[cfg(not(madsim))]
        assert_eq!(
            effective.walredo,
            WalRedoConfig::Process {
                request_timeout_ms: Some(
                    strata_adapters::walredo_process::DEFAULT_REQUEST_TIMEOUT_MS
                )
            }
        );
    }

    #[test]
    fn typos_and_node_zero_are_errors() {
        let mut text = FileConfig::embedded_defaults().to_toml();
        text.push_str("\ncheckpoint_distanse = 5\n");
        let err = FileConfig::parse("x.toml".into(), &text).unwrap_err();
        assert!(err.to_string().contains("checkpoint_distanse"), "{err}");
        let zero = FileConfig::embedded_defaults().to_toml().replace("node_id = 1", "node_id = 0");
        assert!(
            FileConfig::parse("x.toml".into(), &zero).unwrap_err().to_string().contains("node_id")
        );
    }
}
