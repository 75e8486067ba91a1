//! S3 remote storage: [`RemoteStorage`] over aws-sdk-s3.
//!
//! One bucket, with every [`RemoteKey`] stored under an optional root prefix
//! (`{prefix}/{key}`). Works against AWS and against S3-compatible servers (moto,
//! MinIO) through [`S3Config::endpoint`].
//!
//! What it promises beyond the trait:
//! - **Retries are the caller's.** The SDK is allowed [`S3Config::max_attempts`]
//!   attempts (default 2: one quick retry hides a pooled connection the server had
//!   already closed); everything else is a [`RemoteErrorKind::Transient`] error for
//!   the upload and deletion queues to back off on.
//! - **Every call is bounded in time**: connect, read (no bytes for that long),
//!   per attempt and per operation timeouts are config fields. A timeout is
//!   `Transient`.
//! - **Errors name the key** (relative to the root prefix) and the operation, and
//!   carry the SDK's full error chain as the message. Kinds: a missing key is
//!   `NotFound`; timeouts, dispatch/connection failures, 5xx, 408/429 and throttling
//!   codes are `Transient`; what an operator can fix while the node runs is
//!   `OperatorFixable` (`AccessDenied`, `AllAccessDisabled` and any other 403:
//!   access denied; `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `ExpiredToken`:
//!   invalid credentials; `NoSuchBucket`), retried by the node until fixed;
//!   everything else (another 4xx, bad config, a listed key outside the key rules,
//!   too many keys in one delete) is `Permanent`. See [`crate::remote`].
//! - `list` pages through ListObjectsV2 with continuation tokens
//!   ([`S3Config::list_page_keys`] keys per page) and returns the keys sorted.
//! - `delete_objects` sends one DeleteObjects request of at most
//!   [`MAX_KEYS_PER_DELETE`] keys; [`S3Remote::delete_batch`] reports the keys the
//!   server refused one by one. Deleting a missing key succeeds.
//! - Layer files stream from and to the data directory of the local disk given
//!   with [`S3Remote::with_local_disk`] without being held in memory: `put_file`
//!   hands the SDK a body read from the file in chunks of
//!   [`TRANSFER_CHUNK_BYTES`]; `get_to_file` writes each chunk of the response
//!   body as it arrives (its size is the HTTP stack's, bounded by the SDK) into a
//!   temp file, through the caller's check.
//!
//! Crash behaviour: a PUT is atomic on the server (the object is the old one or
//! the new one). `get_to_file` writes `{name}.{unique}.___temp` next to the
//! target, and only if the check accepts the whole body fsyncs it, renames it
//! onto the target and fsyncs the directory (the argument is in
//! [`crate::remote`]).
//!
//! Checksums: request checksums are computed only where S3 requires them (e.g.
//! DeleteObjects), so that S3-compatible test servers accept the requests.
//!
//! Credentials: `access_key_id`/`secret_access_key` from the config if set,
//! else the AWS SDK's default credential chain ([`DefaultChain`]): the
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`) environment
//! variables, a profile (`AWS_PROFILE`, `~/.aws/config`, `~/.aws/credentials`), web
//! identity (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`), the ECS container
//! role, then the EC2 instance role (IMDS; `AWS_EC2_METADATA_DISABLED=true` skips
//! it). The chain is built on the first request; none found fails that request
//! (retried like any remote error) rather than the start.

use crate::disk::{DiskError, DiskErrorKind};
use crate::local_disk::{LocalDisk, TempDownload, open_upload_source};
use crate::local_fs::NO_LOCAL_DISK;
use crate::remote::{
    DownloadCheck, FixableKind, ListPage, ListedEntry, ListedObject, MAX_KEYS_PER_DELETE,
    RemoteError, RemoteErrorKind, RemoteStorage, TRANSFER_CHUNK_BYTES, TransferError,
};
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier,
};
use camino::Utf8Path;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use strata_core::remote_path::RemoteKey;
use strata_core::time::WallTime;
use tokio::io::AsyncWriteExt;

/// Most keys S3 returns in one ListObjectsV2 page.
pub const MAX_LIST_PAGE_KEYS: i32 = 1000;
/// Pause before the SDK's own retry, when `max_attempts` allows one.
const SDK_RETRY_BACKOFF_MS: u64 = 100;

/// How to reach the bucket. Deserializable so the node config can embed it
/// (`[remote_storage.s3]`); unknown fields are rejected.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server, e.g. `http://127.0.0.1:5599`.
    /// `None`: AWS's endpoint for `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Root prefix inside the bucket, without leading or trailing `/`; empty for
    /// the bucket root.
    #[serde(default)]
    pub prefix: String,
    /// Static credentials; both or neither. Neither: read from the environment.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). `None`: on when `endpoint` is
    /// set (local servers rarely have per-bucket DNS), off for AWS.
    #[serde(default)]
    pub force_path_style: Option<bool>,
    /// Attempts the SDK makes per operation, including the first (1 = no SDK retry).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the next bytes of a response.
    #[serde(default = "defaults::read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Longest one attempt may take (a whole PUT or GET body included).
    #[serde(default = "defaults::attempt_timeout_ms")]
    pub attempt_timeout_ms: u64,
    /// Longest one operation may take, all attempts included.
    #[serde(default = "defaults::operation_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// Keys per ListObjectsV2 page, 1..=[`MAX_LIST_PAGE_KEYS`].
    #[serde(default = "defaults::list_page_keys")]
    pub list_page_keys: i32,
}

mod defaults {
    pub(super) fn max_attempts() -> u32 {
        2
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        3_000
    }
    pub(super) fn read_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn attempt_timeout_ms() -> u64 {
        120_000
    }
    pub(super) fn operation_timeout_ms() -> u64 {
        300_000
    }
    pub(super) fn list_page_keys() -> i32 {
        super::MAX_LIST_PAGE_KEYS
    }
}

/// The SDK's default credential chain, built (asynchronously: it reads profile
/// files) on the first request so that [`S3Remote::new`] stays synchronous.
#[derive(Debug)]
struct DefaultChain {
    region: Region,
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
}

impl ProvideCredentials for DefaultChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| {
                    DefaultCredentialsChain::builder().region(self.region.clone()).build()
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

impl S3Config {
    /// A config with every optional field at its default.
    pub fn new(region: impl Into<String>, bucket: impl Into<String>) -> S3Config {
        S3Config {
            endpoint: None,
            region: region.into(),
            bucket: bucket.into(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            force_path_style: None,
            max_attempts: defaults::max_attempts(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            read_timeout_ms: defaults::read_timeout_ms(),
            attempt_timeout_ms: defaults::attempt_timeout_ms(),
            operation_timeout_ms: defaults::operation_timeout_ms(),
            list_page_keys: defaults::list_page_keys(),
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("force_path_style", &self.force_path_style)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("read_timeout_ms", &self.read_timeout_ms)
            .field("attempt_timeout_ms", &self.attempt_timeout_ms)
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field("list_page_keys", &self.list_page_keys)
            .finish()
    }
}

/// The S3 adapter. Cheap to clone (the SDK client is shared).
#[derive(Clone)]
pub struct S3Remote {
    client: Client,
    bucket: Arc<str>,
    /// `""` or `"{prefix}/"`.
    root: Arc<str>,
    region: Arc<str>,
    list_page_keys: i32,
    /// The data directory `put_file` and `get_to_file` paths are relative to.
    local: Option<LocalDisk>,
}

impl fmt::Debug for S3Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Remote").field("bucket", &self.bucket).field("root", &self.root).finish()
    }
}

fn config_error(bucket: &str, message: impl Into<String>) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Permanent, "configure", bucket, message)
}

fn positive_ms(bucket: &str, name: &str, ms: u64) -> Result<Duration, RemoteError> {
    if ms == 0 {
        return Err(config_error(bucket, format!("{name} must be > 0")));
    }
    Ok(Duration::from_millis(ms))
}

impl S3Remote {
    /// Builds the client. Makes no request: a wrong endpoint or bucket shows up as
    /// an error of the first operation (see [`S3Remote::ensure_bucket`]).
    pub fn new(config: S3Config) -> Result<S3Remote, RemoteError> {
        let bucket = config.bucket.as_str();
        if bucket.is_empty() {
            return Err(config_error(bucket, "bucket is empty"));
        }
        if config.region.is_empty() {
            return Err(config_error(bucket, "region is empty"));
        }
        let prefix = config.prefix.as_str();
        if prefix.starts_with('/')
            || prefix.ends_with('/')
            || (!prefix.is_empty()
                && prefix.split('/').any(|c| c.is_empty() || c == ".." || c == "."))
        {
            return Err(config_error(
                bucket,
                format!(
                    "prefix {prefix:?}: want '/'-separated names, no leading/trailing '/', no '.' or '..'"
                ),
            ));
        }
        if config.max_attempts == 0 {
            return Err(config_error(bucket, "max_attempts must be >= 1"));
        }
        if !(1..=MAX_LIST_PAGE_KEYS).contains(&config.list_page_keys) {
            return Err(config_error(
                bucket,
                format!("list_page_keys {} not in 1..={MAX_LIST_PAGE_KEYS}", config.list_page_keys),
            ));
        }
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(positive_ms(bucket, "connect_timeout_ms", config.connect_timeout_ms)?)
            .read_timeout(positive_ms(bucket, "read_timeout_ms", config.read_timeout_ms)?)
            .operation_attempt_timeout(positive_ms(
                bucket,
                "attempt_timeout_ms",
                config.attempt_timeout_ms,
            )?)
            .operation_timeout(positive_ms(
                bucket,
                "operation_timeout_ms",
                config.operation_timeout_ms,
            )?)
            .build();
        let retries = RetryConfig::standard()
            .with_max_attempts(config.max_attempts)
            .with_initial_backoff(Duration::from_millis(SDK_RETRY_BACKOFF_MS));

        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .retry_config(retries)
            .timeout_config(timeouts)
            .force_path_style(config.force_path_style.unwrap_or(config.endpoint.is_some()))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        builder = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => builder.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "strata-config",
            )),
            (None, None) => builder.credentials_provider(DefaultChain {
                region: Region::new(config.region.clone()),
                chain: tokio::sync::OnceCell::new(),
            }),
            _ => {
                return Err(config_error(
                    bucket,
                    "access_key_id and secret_access_key must be set together",
                ));
            }
        };
        let root = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Ok(S3Remote {
            client: Client::from_conf(builder.build()),
            bucket: bucket.into(),
            root: root.into(),
            region: config.region.as_str().into(),
            list_page_keys: config.list_page_keys,
            local: None,
        })
    }

    /// The SDK client (tests and tools; strata's code goes through the trait).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object's key in the bucket: the root prefix, then `key`.
    pub fn object_key(&self, key: &RemoteKey) -> String {
        format!("{}{}", self.root, key.as_str())
    }

    /// Creates the bucket unless it exists and is ours already.
    pub async fn ensure_bucket(&self) -> Result<(), RemoteError> {
        let mut req = self.client.create_bucket().bucket(&*self.bucket);
        // us-east-1 is the one region that must not be named as a location constraint.
        if &*self.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(&*self.region))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(classify("create_bucket", &*self.bucket, e)),
        }
    }

    /// The node's disk, whose data directory `put_file` and `get_to_file` read
    /// and write. Without one they fail with `BadPath`.
    pub fn with_local_disk(mut self, disk: LocalDisk) -> S3Remote {
        self.local = Some(disk);
        self
    }

    fn local_root(&self, op: &'static str, path: &Utf8Path) -> Result<&Utf8Path, DiskError> {
        match &self.local {
            Some(disk) => Ok(disk.root()),
            None => Err(DiskError::new(DiskErrorKind::BadPath, op, path, NO_LOCAL_DISK)),
        }
    }

    async fn put_stream(&self, key: &RemoteKey, body: ByteStream) -> Result<(), RemoteError> {
        self.client
            .put_object()
            .bucket(&*self.bucket)
            .key(self.object_key(key))
            .body(body)
            .send()
            .await
            .map_err(|e| classify("put", key.as_str(), e))?;
        Ok(())
    }

    /// The check of `put_file`, before anything is sent (a PUT cannot be taken
    /// back): one pass over the local file in chunks of [`TRANSFER_CHUNK_BYTES`].
    /// The upload then reads the file again; strata never changes a layer file in
    /// place (a rewrite is a new file renamed over it), so both reads see the same
    /// bytes unless the file is replaced in between by a write of the same layer.
    async fn check_file<C: DownloadCheck>(
        &self,
        path: &Utf8Path,
        mut check: C,
    ) -> Result<(), TransferError> {
        use std::io::Read;
        const OP: &str = "put_file";
        let root = self.local_root(OP, path)?.to_owned();
        let rel = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let (mut file, _) = open_upload_source(&root, &rel)?;
            let mut buf = vec![0u8; TRANSFER_CHUNK_BYTES];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let why = format!("read: {e}");
                        return Err(DiskError::new(DiskErrorKind::Io, OP, &rel, why).into());
                    }
                };
                check.update(&buf[..n]);
            }
            check
                .finish()
                .map_err(|message| TransferError::CorruptSource { path: rel.clone(), message })
        })
        .await
        .map_err(|e| DiskError::new(DiskErrorKind::Io, OP, path, format!("task: {e}")))?
    }

    /// The body of `put_file`: the local file, read in chunks of
    /// [`TRANSFER_CHUNK_BYTES`] (the SDK may read it again for a retry).
    async fn file_body(&self, path: &Utf8Path) -> Result<(ByteStream, u64), DiskError> {
        const OP: &str = "put_file";
        let root = self.local_root(OP, path)?.to_owned();
        let rel = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            let (file, full) = open_upload_source(&root, &rel)?;
            let len = file
                .metadata()
                .map_err(|e| DiskError::new(DiskErrorKind::Io, OP, &rel, format!("stat: {e}")))?
                .len();
            Ok::<_, DiskError>((full, len))
        })
        .await
        .map_err(|e| DiskError::new(DiskErrorKind::Io, OP, path, format!("task: {e}")))?;
        let (full, len) = opened?;
        let body = ByteStream::read_from()
            .path(full.as_std_path())
            .buffer_size(TRANSFER_CHUNK_BYTES)
            .length(aws_sdk_s3::primitives::Length::Exact(len))
            .build()
            .await
            .map_err(|e| {
                DiskError::new(DiskErrorKind::Io, OP, path, DisplayErrorContext(&e).to_string())
            })?;
        Ok((body, len))
    }

    async fn get_stream(&self, key: &RemoteKey) -> Result<ByteStream, RemoteError> {
        let out = self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(self.object_key(key))
            .send()
            .await
            .map_err(|e| classify("get", key.as_str(), e))?;
        Ok(out.body)
    }

    /// One DeleteObjects request for at most [`MAX_KEYS_PER_DELETE`] keys. `Ok`
    /// holds one error per key the server did not delete (each names its key);
    /// `Err` means the request as a whole failed.
    pub async fn delete_batch(&self, keys: &[RemoteKey]) -> Result<Vec<RemoteError>, RemoteError> {
        let first = keys.first().map(|k| k.as_str()).unwrap_or("");
        if keys.len() > MAX_KEYS_PER_DELETE {
            return Err(RemoteError::new(
                RemoteErrorKind::Permanent,
                "delete",
                first,
                format!("{} keys in one batch, at most {MAX_KEYS_PER_DELETE}", keys.len()),
            ));
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let build_error = |e: aws_sdk_s3::error::BuildError| {
            RemoteError::new(RemoteErrorKind::Permanent, "delete", first, e.to_string())
        };
        let ids = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(self.object_key(k)).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(build_error)?;
        let delete =
            Delete::builder().set_objects(Some(ids)).quiet(true).build().map_err(build_error)?;
        let out = self
            .client
            .delete_objects()
            .bucket(&*self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| classify("delete", format!("{first} (+{} keys)", keys.len() - 1), e))?;
        let mut failed = Vec::new();
        for err in out.errors() {
            let code = err.code().unwrap_or("");
            let kind = match kind_of_code(code) {
                // Already gone: that is what we wanted.
                Some(RemoteErrorKind::NotFound) => continue,
                Some(kind) => kind,
                None => RemoteErrorKind::Permanent,
            };
            let full = err.key().unwrap_or("");
            let key = full.strip_prefix(&*self.root).unwrap_or(full);
            failed.push(RemoteError::new(
                kind,
                "delete",
                key,
                format!("{code}: {}", err.message().unwrap_or("")),
            ));
        }
        Ok(failed)
    }
}

impl RemoteStorage for S3Remote {
    async fn put(&self, key: &RemoteKey, body: Vec<u8>) -> Result<(), RemoteError> {
        self.put_stream(key, ByteStream::from(body)).await
    }

    async fn get(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
        let body = self.get_stream(key).await?;
        let bytes = body.collect().await.map_err(|e| {
            RemoteError::new(
                RemoteErrorKind::Transient,
                "get",
                key.as_str(),
                format!("reading body: {}", DisplayErrorContext(&e)),
            )
        })?;
        Ok(bytes.to_vec())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
        // S3 gives `..` no meaning, but a key could never hold it either: refuse
        // such a prefix rather than list something outside the key rules.
        if prefix.starts_with('/') || prefix.split('/').any(|c| c == ".." || c == ".") {
            return Err(RemoteError::new(
                RemoteErrorKind::Permanent,
                "list",
                prefix,
                "prefix starts with '/' or has a '.' or '..' component",
            ));
        }
        let full_prefix = format!("{}{prefix}", self.root);
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&*self.bucket)
                .prefix(&full_prefix)
                .max_keys(self.list_page_keys)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| classify("list", prefix, e))?;
            for object in page.contents() {
                let full = object.key().unwrap_or("");
                let key = full
                    .strip_prefix(&*self.root)
                    .and_then(|rel| RemoteKey::from_listing(rel).ok())
                    .ok_or_else(|| {
                        RemoteError::new(
                            RemoteErrorKind::Permanent,
                            "list",
                            full,
                            format!("listed key under prefix {full_prefix:?} is not a valid key"),
                        )
                    })?;
                let size_bytes = u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
                listed.push(ListedObject { key, size_bytes });
            }
            match (page.is_truncated() == Some(true), page.next_continuation_token()) {
                (false, _) => break,
                (true, Some(next)) => token = Some(next.to_owned()),
                (true, None) => {
                    return Err(RemoteError::new(
                        RemoteErrorKind::Transient,
                        "list",
                        prefix,
                        "truncated listing page without a continuation token",
                    ));
                }
            }
        }
        listed.sort();
        Ok(listed)
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&RemoteKey>,
        max_keys: usize,
    ) -> Result<ListPage, RemoteError> {
        if prefix.starts_with('/') || prefix.split('/').any(|c| c == ".." || c == ".") {
            return Err(RemoteError::new(
                RemoteErrorKind::Permanent,
                "list_page",
                prefix,
                "prefix starts with '/' or has a '.' or '..' component",
            ));
        }
        let full_prefix = format!("{}{prefix}", self.root);
        let max_keys =
            i32::try_from(max_keys).unwrap_or(MAX_LIST_PAGE_KEYS).clamp(1, MAX_LIST_PAGE_KEYS);
        let page = self
            .client
            .list_objects_v2()
            .bucket(&*self.bucket)
            .prefix(&full_prefix)
            .max_keys(max_keys)
            .set_start_after(start_after.map(|k| format!("{}{}", self.root, k.as_str())))
            .send()
            .await
            .map_err(|e| classify("list_page", prefix, e))?;
        let mut objects = Vec::with_capacity(page.contents().len());
        for object in page.contents() {
            let full = object.key().unwrap_or("");
            let Some(key) =
                full.strip_prefix(&*self.root).and_then(|rel| RemoteKey::from_listing(rel).ok())
            else {
                return Err(RemoteError::new(
                    RemoteErrorKind::Permanent,
                    "list_page",
                    full,
                    format!("listed key under prefix {full_prefix:?} is not a valid key"),
                ));
            };
            let size_bytes = u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
            let last_modified = object
                .last_modified()
                .and_then(|t| t.to_millis().ok())
                .and_then(|ms| u64::try_from(ms).ok())
                .map(WallTime::from_unix_millis);
            objects.push(ListedEntry { key, size_bytes, last_modified });
        }
        let next_start_after = if page.is_truncated() == Some(true) {
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        Ok(ListPage { objects, next_start_after })
    }

    async fn put_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        self.check_file(path, check).await?;
        let (body, len) = self.file_body(path).await?;
        self.put_stream(key, body).await?;
        Ok(len)
    }

    async fn get_to_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        mut check: C,
    ) -> Result<u64, TransferError> {
        const OP: &str = "get_to_file";
        let root = self.local_root(OP, path)?.to_owned();
        let mut body = self.get_stream(key).await?;
        let rel = path.to_owned();
        let created = tokio::task::spawn_blocking(move || TempDownload::create(&root, &rel))
            .await
            .map_err(|e| DiskError::new(DiskErrorKind::Io, OP, path, format!("task: {e}")))?;
        let (download, file) = created?;
        let mut file = tokio::fs::File::from_std(file);
        let mut size_bytes = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            RemoteError::new(
                RemoteErrorKind::Transient,
                OP,
                key.as_str(),
                format!("reading body: {}", DisplayErrorContext(&e)),
            )
        })? {
            // The check is handed at most TRANSFER_CHUNK_BYTES at a time like
            // every adapter's; the chunk itself is as large as the HTTP stack made it.
            for part in chunk.chunks(TRANSFER_CHUNK_BYTES) {
                check.update(part);
            }
            file.write_all(&chunk).await.map_err(|e| download.write_error(e))?;
            size_bytes += chunk.len() as u64;
        }
        file.flush().await.map_err(|e| download.write_error(e))?;
        if let Err(message) = check.finish() {
            // `download` is dropped uncommitted: the temp file goes.
            return Err(TransferError::Corrupt { key: key.as_str().to_owned(), message });
        }
        let file = file.into_std().await;
        tokio::task::spawn_blocking(move || download.commit(file))
            .await
            .map_err(|e| DiskError::new(DiskErrorKind::Io, OP, path, format!("task: {e}")))??;
        Ok(size_bytes)
    }

    async fn delete_objects(&self, keys: &[RemoteKey]) -> Result<(), RemoteError> {
        let mut failed = self.delete_batch(keys).await?;
        match failed.len() {
            0 => Ok(()),
            n => {
                // A retryable kind wins: retrying the batch may then delete everything.
                let pick =
                    failed.iter().position(|e| e.kind != RemoteErrorKind::Permanent).unwrap_or(0);
                let mut err = failed.swap_remove(pick);
                if n > 1 {
                    err.message = format!("{} (and {} more keys failed)", err.message, n - 1);
                }
                Err(err)
            }
        }
    }
}

/// The kind an S3 error code implies, if the code alone decides it.
fn kind_of_code(code: &str) -> Option<RemoteErrorKind> {
    match code {
        "NoSuchKey" | "NotFound" => Some(RemoteErrorKind::NotFound),
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "InternalError"
        | "ServiceUnavailable"
        | "BandwidthLimitExceeded"
        | "PriorRequestNotComplete" => Some(RemoteErrorKind::Transient),
        // Configuration an operator can fix while the node runs and retries.
        "AccessDenied" | "AllAccessDisabled" => {
            Some(RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied))
        }
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" => {
            Some(RemoteErrorKind::OperatorFixable(FixableKind::InvalidCredentials))
        }
        // The bucket, not the key, is missing.
        "NoSuchBucket" => Some(RemoteErrorKind::OperatorFixable(FixableKind::NoSuchBucket)),
        _ => None,
    }
}

fn kind_of_status(status: u16) -> RemoteErrorKind {
    match status {
        404 => RemoteErrorKind::NotFound,
        408 | 429 | 500..=599 => RemoteErrorKind::Transient,
        403 => RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied),
        _ => RemoteErrorKind::Permanent,
    }
}

/// Maps an SDK error onto strata's kinds (see the module doc).
fn classify<E>(
    op: &'static str,
    key: impl Into<String>,
    err: SdkError<E, HttpResponse>,
) -> RemoteError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let kind = match &err {
        SdkError::ConstructionFailure(_) => RemoteErrorKind::Permanent,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            RemoteErrorKind::Transient
        }
        SdkError::ServiceError(service) => kind_of_code(service.err().code().unwrap_or(""))
            .unwrap_or_else(|| kind_of_status(service.raw().status().as_u16())),
        _ => RemoteErrorKind::Transient,
    };
    RemoteError::new(kind, op, key, DisplayErrorContext(&err).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_deserializes_with_defaults() {
        let cfg: S3Config = serde_json::from_str(
            r#"{"endpoint":"http://127.0.0.1:5599","region":"us-east-1","bucket":"b","prefix":"p/q"}"#,
        )
        .unwrap();
        let mut want = S3Config::new("us-east-1", "b");
        want.endpoint = Some("http://127.0.0.1:5599".into());
        want.prefix = "p/q".into();
        assert_eq!(cfg, want);
        assert_eq!(cfg.max_attempts, 2);
        assert!(
            serde_json::from_str::<S3Config>(r#"{"region":"r","bucket":"b","typo":1}"#).is_err()
        );
    }

    #[test]
    fn debug_redacts_secret() {
        let mut cfg = S3Config::new("us-east-1", "b");
        cfg.secret_access_key = Some("hunter2".into());
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    fn local(bucket: &str) -> S3Config {
        let mut cfg = S3Config::new("us-east-1", bucket);
        cfg.endpoint = Some("http://127.0.0.1:1".into());
        cfg.access_key_id = Some("testing".into());
        cfg.secret_access_key = Some("testing".into());
        cfg
    }

    #[test]
    fn new_rejects_bad_config() {
        type Change = fn(&mut S3Config);
        let bad: Vec<(&str, Change)> = vec![
            ("empty bucket", |c: &mut S3Config| c.bucket.clear()),
            ("leading slash", |c: &mut S3Config| c.prefix = "/p".into()),
            ("trailing slash", |c: &mut S3Config| c.prefix = "p/".into()),
            ("dotdot", |c: &mut S3Config| c.prefix = "a/../b".into()),
            ("double slash", |c: &mut S3Config| c.prefix = "a//b".into()),
            ("zero attempts", |c: &mut S3Config| c.max_attempts = 0),
            ("page 0", |c: &mut S3Config| c.list_page_keys = 0),
            ("page 1001", |c: &mut S3Config| c.list_page_keys = 1001),
            ("zero timeout", |c: &mut S3Config| c.read_timeout_ms = 0),
            ("half credentials", |c: &mut S3Config| c.secret_access_key = None),
        ];
        for (what, change) in bad {
            let mut cfg = local("b");
            change(&mut cfg);
            let err = S3Remote::new(cfg).expect_err(what);
            assert_eq!(err.kind, RemoteErrorKind::Permanent, "{what}");
            assert_eq!(err.op, "configure", "{what}");
        }
    }

    #[test]
    fn object_keys_sit_under_the_prefix() {
        let key = RemoteKey::from_listing("tenants/t/x").unwrap();
        let mut cfg = local("b");
        assert_eq!(S3Remote::new(cfg.clone()).unwrap().object_key(&key), "tenants/t/x");
        cfg.prefix = "root/sub".into();
        assert_eq!(S3Remote::new(cfg).unwrap().object_key(&key), "root/sub/tenants/t/x");
    }

    #[test]
    fn error_kinds() {
        assert_eq!(kind_of_code("NoSuchKey"), Some(RemoteErrorKind::NotFound));
        assert_eq!(kind_of_code("SlowDown"), Some(RemoteErrorKind::Transient));
        assert_eq!(kind_of_code("SomethingNew"), None);
        assert_eq!(kind_of_status(404), RemoteErrorKind::NotFound);
        assert_eq!(kind_of_status(503), RemoteErrorKind::Transient);
        assert_eq!(kind_of_status(429), RemoteErrorKind::Transient);
        assert_eq!(kind_of_status(400), RemoteErrorKind::Permanent);
    }

    /// Issue 15 item 6: what an operator can fix while the node runs is retried,
    /// never `Permanent` (which breaks the timeline for good).
    #[test]
    fn operator_fixable_codes() {
        use FixableKind::*;
        for (code, kind) in [
            ("AccessDenied", AccessDenied),
            ("AllAccessDisabled", AccessDenied),
            ("InvalidAccessKeyId", InvalidCredentials),
            ("SignatureDoesNotMatch", InvalidCredentials),
            ("ExpiredToken", InvalidCredentials),
            ("NoSuchBucket", NoSuchBucket),
        ] {
            assert_eq!(kind_of_code(code), Some(RemoteErrorKind::OperatorFixable(kind)), "{code}");
        }
        // A 403 with a code of its own is still access denied.
        assert_eq!(kind_of_status(403), RemoteErrorKind::OperatorFixable(AccessDenied));
    }

    /// Nothing listens on port 1: a dispatch failure, which is transient.
    #[tokio::test]
    async fn unreachable_endpoint_is_transient() {
        let mut cfg = local("b");
        cfg.max_attempts = 1;
        let s3 = S3Remote::new(cfg).unwrap();
        let key = RemoteKey::from_listing("k").unwrap();
        let err = s3.get(&key).await.unwrap_err();
        assert_eq!(err.kind, RemoteErrorKind::Transient, "{err}");
        assert_eq!(err.key, "k");
        assert_eq!(err.op, "get");
    }
}
