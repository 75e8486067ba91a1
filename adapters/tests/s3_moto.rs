//! The S3 adapter against a real S3 server (moto locally and in CI).
//!
//! ```sh
//! S3_ENDPOINT=$(bash scripts/s3-local.sh start 5599); trap 'bash scripts/s3-local.sh stop' EXIT
//! S3_ENDPOINT=$S3_ENDPOINT cargo test -p strata-adapters --test s3_moto
//! S3_ENDPOINT=$S3_ENDPOINT cargo test -p strata-adapters --test s3_moto -- --ignored --nocapture put_rate
//! ```
//!
//! Without `S3_ENDPOINT` the server tests print a notice and pass without running;
//! the fault tests at the end (timeouts, 5xx, throttling, 4xx from a fake HTTP
//! server on 127.0.0.1) always run. Each server test works in its own fresh bucket.
#![cfg(not(madsim))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use strata_adapters::conformance::{self, RemoteSuiteConfig};
use strata_adapters::remote::{FixableKind, RemoteErrorKind, RemoteStorage};
use strata_adapters::s3::{S3Config, S3Remote};
use strata_core::remote_path::RemoteKey;

fn endpoint() -> Option<String> {
    match std::env::var("S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            eprintln!("S3_ENDPOINT is not set: skipping (see scripts/s3-local.sh)");
            None
        }
    }
}

fn unique_bucket() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("strata-test-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn config(endpoint: &str, bucket: &str, prefix: &str) -> S3Config {
    let mut cfg = S3Config::new("us-east-1", bucket);
    cfg.endpoint = Some(endpoint.to_owned());
    cfg.prefix = prefix.to_owned();
    cfg.access_key_id = Some("testing".into());
    cfg.secret_access_key = Some("testing".into());
    cfg
}

/// An adapter on a new bucket (rooted at `prefix`).
async fn fresh(endpoint: &str, prefix: &str) -> S3Remote {
    let s3 = S3Remote::new(config(endpoint, &unique_bucket(), prefix)).unwrap();
    s3.ensure_bucket().await.unwrap();
    s3.ensure_bucket().await.expect("ensure_bucket is idempotent");
    s3
}

fn key(s: &str) -> RemoteKey {
    RemoteKey::from_listing(s).unwrap()
}

#[tokio::test]
async fn put_get_overwrite_and_not_found() {
    let Some(ep) = endpoint() else { return };
    let s3 = fresh(&ep, "").await;
    let k = key("tenants/a/timelines/b/layer-00000001");
    s3.put(&k, b"one".to_vec()).await.unwrap();
    assert_eq!(s3.get(&k).await.unwrap(), b"one");
    s3.put(&k, b"two, longer".to_vec()).await.unwrap();
    assert_eq!(s3.get(&k).await.unwrap(), b"two, longer");
    s3.put(&key("empty"), Vec::new()).await.unwrap();
    assert_eq!(s3.get(&key("empty")).await.unwrap(), b"");

    let err = s3.get(&key("tenants/a/missing")).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::NotFound, "{err}");
    assert_eq!(err.key, "tenants/a/missing");
    assert_eq!(err.op, "get");
}

#[tokio::test]
async fn list_is_sorted_prefix_filtered_and_rooted() {
    let Some(ep) = endpoint() else { return };
    let s3 = fresh(&ep, "root/sub").await;
    // Another adapter on the same bucket outside the root: never seen by `s3`.
    let mut outside_cfg = config(&ep, s3.bucket(), "other");
    outside_cfg.max_attempts = 1;
    let outside = S3Remote::new(outside_cfg).unwrap();
    outside.put(&key("tenants/x/noise"), b"n".to_vec()).await.unwrap();

    for k in ["tenants/b/2", "tenants/a/1", "tenants/a/0", "tenants/ab/9", "other/z"] {
        s3.put(&key(k), vec![7; k.len()]).await.unwrap();
    }
    let listed = s3.list("tenants/a").await.unwrap();
    let names: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(names, ["tenants/a/0", "tenants/a/1", "tenants/ab/9"]);
    assert_eq!(listed[0].size_bytes, "tenants/a/0".len() as u64);
    assert_eq!(s3.list("tenants/a/").await.unwrap().len(), 2);
    assert_eq!(s3.list("").await.unwrap().len(), 5);
    assert!(s3.list("nothing/").await.unwrap().is_empty());
    // The object really sits under the root prefix in the bucket.
    let raw = s3
        .client()
        .head_object()
        .bucket(s3.bucket())
        .key("root/sub/tenants/a/0")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.content_length(), Some(11));
    assert_eq!(outside.list("").await.unwrap().len(), 1);
}

/// The conformance suite every RemoteStorage passes (LocalFs, the simulated
/// twin), here below a root prefix: 1100 keys, so two listing pages of 1000 and
/// two delete batches.
#[tokio::test]
async fn s3_passes_the_remote_suite() {
    let Some(ep) = endpoint() else { return };
    let s3 = fresh(&ep, "root/prefix").await;
    let started = Instant::now();
    conformance::remote_suite(&s3).await;
    eprintln!("remote_suite (1100 keys) on S3 at {ep}: {:?}", started.elapsed());
    // The suite's keys really sit below the root prefix in the bucket.
    let raw = s3.client().list_objects_v2().bucket(s3.bucket()).max_keys(5).send().await.unwrap();
    assert!(raw.contents().iter().all(|o| o.key().unwrap().starts_with("root/prefix/")));
}

/// `list_page` (ListObjectsV2 with StartAfter and MaxKeys, what the scrubber
/// walks) pages through exactly what `list` returns, below a root prefix, with
/// each object's modification time.
#[tokio::test]
async fn s3_list_page_pages_like_list_with_modification_times() {
    let Some(ep) = endpoint() else { return };
    let s3 = fresh(&ep, "root/prefix").await;
    assert!(conformance::remote_list_page_like_list(&s3, "pages/").await);
}

/// The streaming transfers against a real S3 server, below a root prefix: exact
/// bytes over several chunks, a refused download leaving nothing locally.
#[tokio::test]
async fn s3_passes_the_transfer_suite() {
    let Some(ep) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let disk = strata_adapters::local_disk::LocalDisk::new(root);
    let s3 = fresh(&ep, "root/prefix").await.with_local_disk(disk.clone());
    conformance::transfer_suite(&s3, &disk, "transfer/", camino::Utf8Path::new("transfer")).await;
}

/// The suite at the bucket root, with listing pages of 7 keys.
#[tokio::test]
async fn s3_passes_the_remote_suite_with_small_pages() {
    let Some(ep) = endpoint() else { return };
    let mut cfg = config(&ep, &unique_bucket(), "");
    cfg.list_page_keys = 7;
    let s3 = S3Remote::new(cfg).unwrap();
    s3.ensure_bucket().await.unwrap();
    let suite = RemoteSuiteConfig { base: "small-pages/".into(), many_keys: 60 };
    conformance::remote_suite_with(&s3, &suite).await;
}

#[tokio::test]
async fn delete_missing_and_empty_succeed() {
    let Some(ep) = endpoint() else { return };
    let s3 = fresh(&ep, "").await;
    s3.put(&key("a"), b"x".to_vec()).await.unwrap();
    s3.put(&key("b"), b"x".to_vec()).await.unwrap();
    let failed = s3.delete_batch(&[key("a"), key("never-existed")]).await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    s3.delete_objects(&[]).await.unwrap();
    s3.delete_objects(&[key("a")]).await.unwrap();
    let left: Vec<_> = s3.list("").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(left, [key("b")]);
}

/// A 6 MiB object (24 chunks of `TRANSFER_CHUNK_BYTES`) streams from and to
/// files in the local disk's data directory.
#[tokio::test]
async fn streams_large_objects_from_and_to_files() {
    use strata_adapters::disk::DiskErrorKind;
    use strata_adapters::remote::{NoCheck, TransferError};
    let Some(ep) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = camino::Utf8Path::from_path(dir.path()).unwrap();
    let disk = strata_adapters::local_disk::LocalDisk::new(root.to_owned());
    let s3 = fresh(&ep, "files").await.with_local_disk(disk);
    let src = camino::Utf8Path::new("src");
    let body: Vec<u8> =
        (0..(6u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join(src), &body).unwrap();

    let k = key("tenants/t/big-layer");
    assert_eq!(s3.put_file(&k, src, NoCheck).await.unwrap(), body.len() as u64);
    let dst = camino::Utf8Path::new("dst");
    assert_eq!(s3.get_to_file(&k, dst, NoCheck).await.unwrap(), body.len() as u64);
    assert!(std::fs::read(root.join(dst)).unwrap() == body, "downloaded bytes differ");
    let names: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "only src and dst, no temp file: {names:?}");

    let m = camino::Utf8Path::new("m");
    match s3.get_to_file(&key("tenants/t/missing"), m, NoCheck).await {
        Err(TransferError::Remote(e)) => assert_eq!(e.kind, RemoteErrorKind::NotFound, "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_dir(root).unwrap().count(), 2, "nothing written for a missing key");

    match s3.put_file(&k, camino::Utf8Path::new("no-such-file"), NoCheck).await {
        Err(TransferError::Local(e)) => {
            assert_eq!(e.kind, DiskErrorKind::NotFound, "{e}");
            assert_eq!(e.path, "no-such-file");
        }
        other => panic!("{other:?}"),
    }
}

/// A missing bucket is for an operator to create (the node retries meanwhile), and
/// is never mistaken for a missing key.
#[tokio::test]
async fn missing_bucket_is_operator_fixable_not_not_found() {
    let Some(ep) = endpoint() else { return };
    let s3 = S3Remote::new(config(&ep, &unique_bucket(), "")).unwrap();
    let no_bucket = RemoteErrorKind::OperatorFixable(FixableKind::NoSuchBucket);
    let err = s3.get(&key("k")).await.unwrap_err();
    assert_eq!(err.kind, no_bucket, "{err}");
    let err = s3.put(&key("k"), b"x".to_vec()).await.unwrap_err();
    assert_eq!(err.kind, no_bucket, "{err}");
    assert_eq!(err.key, "k");
    let err = s3.list("p/").await.unwrap_err();
    assert_eq!((err.kind, err.op, err.key.as_str()), (no_bucket, "list", "p/"));
}

/// Objects PUT per second to the server through the adapter, next to raw
/// aws-sdk-s3 PUTs of the same objects, in the same run.
#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture against S3_ENDPOINT"]
async fn put_rate_adapter_vs_raw_sdk() {
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation,
    };
    use aws_sdk_s3::primitives::ByteStream;

    let Some(ep) = endpoint() else { return };
    const OBJECTS: usize = 400;
    const OBJECT_BYTES: usize = 8 << 10;
    let s3 = fresh(&ep, "").await;
    let raw = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&ep)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "static"))
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build(),
    );
    let objects: Vec<(RemoteKey, Vec<u8>)> = (0..OBJECTS)
        .map(|i| (key(&format!("bench/obj-{i:05}")), vec![(i % 251) as u8; OBJECT_BYTES]))
        .collect();

    async fn adapter_run(s3: &S3Remote, objects: &[(RemoteKey, Vec<u8>)], lanes: usize) -> f64 {
        let start = Instant::now();
        let tasks: Vec<_> = (0..lanes)
            .map(|lane| {
                let s3 = s3.clone();
                let mine: Vec<_> = objects.iter().skip(lane).step_by(lanes).cloned().collect();
                tokio::spawn(async move {
                    for (k, body) in mine {
                        s3.put(&k, body).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        objects.len() as f64 / start.elapsed().as_secs_f64()
    }
    async fn raw_run(
        raw: &aws_sdk_s3::Client,
        bucket: &str,
        objects: &[(RemoteKey, Vec<u8>)],
        lanes: usize,
    ) -> f64 {
        let start = Instant::now();
        let tasks: Vec<_> = (0..lanes)
            .map(|lane| {
                let raw = raw.clone();
                let bucket = bucket.to_owned();
                let mine: Vec<_> = objects.iter().skip(lane).step_by(lanes).cloned().collect();
                tokio::spawn(async move {
                    for (k, body) in mine {
                        raw.put_object()
                            .bucket(&bucket)
                            .key(k.as_str())
                            .body(ByteStream::from(body))
                            .send()
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        objects.len() as f64 / start.elapsed().as_secs_f64()
    }

    // Warm both clients' connection pools, then alternate A B B A so neither
    // side gets all the warm-up or all the server's growing state.
    adapter_run(&s3, &objects[..20], 1).await;
    raw_run(&raw, s3.bucket(), &objects[..20], 1).await;
    println!("PUT rate to {ep}, {OBJECTS} objects x {OBJECT_BYTES} bytes (objects/s):");
    for lanes in [1, 8] {
        let a1 = adapter_run(&s3, &objects, lanes).await;
        let r1 = raw_run(&raw, s3.bucket(), &objects, lanes).await;
        let r2 = raw_run(&raw, s3.bucket(), &objects, lanes).await;
        let a2 = adapter_run(&s3, &objects, lanes).await;
        println!(
            "  {lanes} in flight: adapter {:.0} ({a1:.0}, {a2:.0})   raw aws-sdk-s3 {:.0} ({r1:.0}, {r2:.0})",
            (a1 + a2) / 2.0,
            (r1 + r2) / 2.0
        );
    }
    assert_eq!(s3.list("bench/").await.unwrap().len(), OBJECTS);
}

// ------------------------------------------------ faults, from a fake server
//
// These need no S3 server: a few lines of HTTP on 127.0.0.1 answer every request
// the same way, and count the requests (to see the SDK's own retries).

mod fake {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[derive(Clone, Copy)]
    pub enum Answer {
        /// Accept, read the request, never answer.
        Hang,
        /// An S3 error document with this status and code.
        Error(u16, &'static str),
    }

    /// Serves `answer` on a fresh port; returns the endpoint and a request counter.
    pub async fn serve(answer: Answer) -> (String, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU32::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request per connection is enough for these tests.
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        counter.fetch_add(1, Ordering::SeqCst);
                        match answer {
                            Answer::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                            Answer::Error(status, code) => {
                                let body = format!(
                                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>fake {code}</Message><RequestId>r</RequestId></Error>"
                                );
                                let head = format!(
                                    "HTTP/1.1 {status} Fake\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n",
                                    body.len()
                                );
                                if conn.write_all(head.as_bytes()).await.is_err()
                                    || conn.write_all(body.as_bytes()).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (endpoint, requests)
    }
}

async fn fake_remote(answer: fake::Answer, max_attempts: u32) -> (S3Remote, Arc<AtomicU32>) {
    let (ep, requests) = fake::serve(answer).await;
    let mut cfg = config(&ep, "bucket", "");
    cfg.max_attempts = max_attempts;
    cfg.read_timeout_ms = 300;
    cfg.attempt_timeout_ms = 500;
    cfg.operation_timeout_ms = 2_000;
    (S3Remote::new(cfg).unwrap(), requests)
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_transient() {
    let (s3, requests) = fake_remote(fake::Answer::Hang, 1).await;
    let started = Instant::now();
    let err = s3.get(&key("tenants/t/hung")).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind, RemoteErrorKind::Transient, "{err}");
    assert_eq!((err.op, err.key.as_str()), ("get", "tenants/t/hung"));
    assert!(took < std::time::Duration::from_millis(1_500), "bounded by the timeouts: {took:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    let err = s3.put(&key("tenants/t/hung"), vec![1; 100]).await.unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::Transient, "{err}");
}

#[tokio::test]
async fn throttling_and_5xx_are_transient_and_retried_at_most_max_attempts() {
    for (status, code) in [(503, "SlowDown"), (500, "InternalError"), (502, "BadGateway")] {
        let (s3, requests) = fake_remote(fake::Answer::Error(status, code), 2).await;
        let err = s3.get(&key("k")).await.unwrap_err();
        assert_eq!(err.kind, RemoteErrorKind::Transient, "{status} {code}: {err}");
        assert_eq!(err.key, "k");
        assert_eq!(requests.load(Ordering::SeqCst), 2, "{status} {code}: one SDK retry");
        let err = s3.list("tenants/").await.unwrap_err();
        assert_eq!((err.kind, err.key.as_str()), (RemoteErrorKind::Transient, "tenants/"));
        let err = s3.delete_objects(&[key("a"), key("b")]).await.unwrap_err();
        assert_eq!(err.kind, RemoteErrorKind::Transient, "{status} {code}: {err}");
    }
    let (s3, requests) = fake_remote(fake::Answer::Error(503, "SlowDown"), 1).await;
    s3.get(&key("k")).await.unwrap_err();
    assert_eq!(requests.load(Ordering::SeqCst), 1, "max_attempts 1: no SDK retry");
}

#[tokio::test]
async fn client_errors_are_permanent_or_operator_fixable_and_not_retried_by_the_sdk() {
    let access_denied = RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied);
    let bad_keys = RemoteErrorKind::OperatorFixable(FixableKind::InvalidCredentials);
    for (status, code, kind) in [
        (403, "AccessDenied", access_denied),
        (403, "InvalidAccessKeyId", bad_keys),
        (403, "SignatureDoesNotMatch", bad_keys),
        (404, "NoSuchBucket", RemoteErrorKind::OperatorFixable(FixableKind::NoSuchBucket)),
        (400, "InvalidArgument", RemoteErrorKind::Permanent),
    ] {
        let (s3, requests) = fake_remote(fake::Answer::Error(status, code), 2).await;
        let err = s3.put(&key("tenants/t/x"), b"x".to_vec()).await.unwrap_err();
        assert_eq!(err.kind, kind, "{status} {code}: {err}");
        assert_eq!((err.op, err.key.as_str()), ("put", "tenants/t/x"));
        assert!(err.message.contains(code), "message has the S3 code: {}", err.message);
        assert_eq!(requests.load(Ordering::SeqCst), 1, "{status} {code}: not retried");
    }
}
