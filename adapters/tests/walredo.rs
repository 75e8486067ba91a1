//! The walredo child-process adapter against real children.
//!
//! The well-behaved child is this test binary itself, re-executed in child mode (see
//! [`child_entry`]): it serves the walredo protocol with a handler that misbehaves on
//! request: a body starting with `crash`, `hang`, `garbage`, `short`, `slow:<ms>:`,
//! `error` or `stderr` makes it do that; anything else is echoed back. So one child
//! can be made to fail on one request, and the tests check that the request fails
//! with the right step and that the requests after it are served by a new child. A
//! body that starts with core's redo request magic is redone with core's pure redo,
//! exactly as `strata walredo` does.
#![cfg(not(madsim))]

use std::io::Write;
use std::time::{Duration, Instant};
use strata_adapters::redo::{Redo, RedoError};
use strata_adapters::walredo_process::{
    STEP_CHILD_ERROR, STEP_DECODE_RESPONSE, STEP_READ_RESPONSE, STEP_SPAWN, STEP_WRITE_REQUEST,
    WalRedoConfig, WalRedoProcess,
};
use strata_adapters::walredo_protocol::{self, FrameKind};
use strata_core::redo::{DeltaOp, REDO_REQUEST_MAGIC, RedoRequest};

const CHILD_MODE_VAR: &str = "STRATA_WALREDO_TEST_CHILD";

/// In child mode: serve the protocol on stdin and fd 3 (the parent's pipe; the test
/// harness prints its own lines on fd 1, which the launcher points at stderr).
#[test]
fn child_entry() {
    if std::env::var_os(CHILD_MODE_VAR).is_none() {
        return;
    }
    use std::os::fd::FromRawFd;
    // SAFETY: the launcher (see `test_child`) opens fd 3 for this process and nothing
    // else in it uses that descriptor.
    let out = unsafe { std::fs::File::from_raw_fd(3) };
    let result = walredo_protocol::serve(std::io::stdin().lock(), &out, |body| handle(&out, body));
    match result {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("test child: {e}");
            std::process::exit(2)
        }
    }
}

fn handle(mut out: &std::fs::File, body: &[u8]) -> Result<Vec<u8>, String> {
    if body.starts_with(&REDO_REQUEST_MAGIC) {
        let request = RedoRequest::decode(body).map_err(|e| format!("decode request: {e}"))?;
        return request.execute().map_err(|e| format!("redo: {e}"));
    }
    if body.starts_with(b"crash") {
        std::process::exit(3);
    }
    if body.starts_with(b"hang") {
        loop {
            std::thread::sleep(Duration::from_secs(1000));
        }
    }
    if body.starts_with(b"garbage") {
        out.write_all(b"this is not a frame").map_err(|e| e.to_string())?;
    }
    if body.starts_with(b"short") {
        // A header promising 100 bytes, 10 of them, then death.
        out.write_all(&[b'V', 0, 0, 0, 100]).and_then(|()| out.write_all(&[7; 10])).ok();
        std::process::exit(0);
    }
    if body.starts_with(b"error") {
        return Err("asked to fail".to_string());
    }
    if body.starts_with(b"stderr") {
        eprintln!("test child: a line on stderr");
    }
    if let Some(rest) = body.strip_prefix(b"slow:") {
        let ms: String =
            rest.iter().take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
    }
    Ok(body.to_vec())
}

/// A config that runs this test binary in child mode.
fn test_child() -> WalRedoConfig {
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "{CHILD_MODE_VAR}=1 exec \"$0\" --exact child_entry --nocapture --test-threads=1 -q 3>&1 1>&2"
    );
    let mut config =
        WalRedoConfig::new("sh", vec!["-c".into(), script, exe.to_str().unwrap().into()]);
    config.request_timeout_ms = 10_000;
    config
}

fn sh(script: &str) -> WalRedoConfig {
    WalRedoConfig::new("sh", vec!["-c".into(), script.into()])
}

async fn ok(redo: &WalRedoProcess, body: &[u8]) {
    assert_eq!(redo.redo(body.to_vec()).await.as_deref(), Ok(body), "request {body:?}");
}

async fn fails(redo: &WalRedoProcess, body: &[u8], step: &str, text: &str) -> RedoError {
    let error = redo.redo(body.to_vec()).await.expect_err("the request must fail");
    assert_eq!(error.step, step, "{error}");
    assert!(error.message.contains(text), "{error} should mention {text:?}");
    error
}

#[tokio::test]
async fn round_trips_are_pipelined_in_order() {
    let mut config = test_child();
    config.max_in_flight_requests = 8;
    let redo = WalRedoProcess::start(config);
    ok(&redo, b"").await;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let redo = redo.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("request {i} {}", "x".repeat(i as usize * 50)).into_bytes();
            let answer = redo.redo(body.clone()).await;
            assert!(redo.in_flight() <= 8);
            (body, answer)
        }));
    }
    for task in tasks {
        let (body, answer) = task.await.unwrap();
        assert_eq!(answer, Ok(body));
    }
    assert_eq!((redo.spawns(), redo.restarts(), redo.in_flight()), (1, 0, 0));
}

#[tokio::test]
async fn core_redo_round_trips_through_the_child() {
    let redo = WalRedoProcess::start(test_child());
    let request = RedoRequest {
        base: Some(b"hello world".to_vec()),
        deltas: vec![
            vec![DeltaOp::WriteAt { offset: 0, bytes: b"J".to_vec() }],
            vec![DeltaOp::Truncate(5), DeltaOp::Append(b"!".to_vec())],
        ],
    };
    let expected = request.execute().unwrap();
    assert_eq!(expected, b"Jello!");
    assert_eq!(redo.redo(request.encode()).await, Ok(expected));
    let too_large = RedoRequest { base: None, deltas: vec![vec![DeltaOp::Append(vec![0; 9000])]] };
    fails(&redo, &too_large.encode(), STEP_CHILD_ERROR, "redo: value too large").await;
    let mut corrupt = request.encode();
    corrupt.truncate(corrupt.len() - 1);
    fails(&redo, &corrupt, STEP_CHILD_ERROR, "decode request").await;
    assert_eq!((redo.spawns(), redo.restarts()), (1, 0));
}

#[tokio::test]
async fn crash_fails_that_request_and_the_next_child_serves() {
    let dir = tempfile::tempdir().unwrap();
    let failures = camino::Utf8PathBuf::from_path_buf(dir.path().join("walredo-failures")).unwrap();
    let mut config = test_child();
    config.failure_dir = Some(failures.clone());
    let redo = WalRedoProcess::start(config);
    ok(&redo, b"before").await;
    let first_pid = redo.child_pid().unwrap();
    let error = fails(&redo, b"crash now", STEP_READ_RESPONSE, "closed its stdout").await;
    assert!(error.message.contains("exit status: 3"), "{error}");
    assert!(error.message.contains("0.req"), "{error}");
    assert_eq!(std::fs::read(failures.join("0.req")).unwrap(), b"crash now");
    assert_eq!(redo.child_pid(), None);
    ok(&redo, b"after").await;
    assert_ne!(redo.child_pid(), Some(first_pid));
    assert_eq!((redo.spawns(), redo.restarts(), redo.saved_failures()), (2, 1, 1));
}

#[tokio::test]
async fn hang_times_out_and_the_next_child_serves() {
    let mut config = test_child();
    config.request_timeout_ms = 300;
    let redo = WalRedoProcess::start(config);
    let started = Instant::now();
    let error = fails(&redo, b"hang", STEP_READ_RESPONSE, "no response within 300 ms").await;
    assert!(error.message.contains("SIGKILL"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    ok(&redo, b"after").await;
    assert_eq!((redo.spawns(), redo.restarts()), (2, 1));
}

#[tokio::test]
async fn garbage_is_a_decode_failure_and_the_next_child_serves() {
    let redo = WalRedoProcess::start(test_child());
    fails(&redo, b"garbage", STEP_DECODE_RESPONSE, "unknown frame type byte 0x74").await;
    ok(&redo, b"after").await;
    assert_eq!((redo.spawns(), redo.restarts()), (2, 1));
}

#[tokio::test]
async fn short_response_is_a_read_failure() {
    let redo = WalRedoProcess::start(test_child());
    fails(&redo, b"short", STEP_READ_RESPONSE, "short read: stdout ended after 10 of 100").await;
    ok(&redo, b"after").await;
}

#[tokio::test]
async fn slow_answers_within_the_timeout_succeed_and_slower_ones_fail() {
    let mut config = test_child();
    config.request_timeout_ms = 500;
    let redo = WalRedoProcess::start(config);
    ok(&redo, b"slow:200:").await;
    let (a, b) = tokio::join!(redo.redo(b"slow:300:a".to_vec()), redo.redo(b"slow:300:b".to_vec()));
    // Each answer is due 500 ms after the previous one: both pass although 600 ms in total.
    assert_eq!((a.unwrap(), b.unwrap()), (b"slow:300:a".to_vec(), b"slow:300:b".to_vec()));
    assert_eq!(redo.restarts(), 0);
    fails(&redo, b"slow:3000:", STEP_READ_RESPONSE, "no response within 500 ms").await;
    ok(&redo, b"after").await;
    assert_eq!(redo.restarts(), 1);
}

#[tokio::test]
async fn child_error_fails_the_request_and_keeps_the_child() {
    let redo = WalRedoProcess::start(test_child());
    ok(&redo, b"stderr is logged, not an answer").await;
    let pid = redo.child_pid();
    fails(&redo, b"error", STEP_CHILD_ERROR, "asked to fail").await;
    ok(&redo, b"after").await;
    assert_eq!(redo.child_pid(), pid);
    assert_eq!((redo.spawns(), redo.restarts()), (1, 0));
}

#[tokio::test]
async fn only_the_crashing_request_fails_in_a_pipeline() {
    let mut config = test_child();
    config.max_in_flight_requests = 32;
    let redo = WalRedoProcess::start(config);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let redo = redo.clone();
        let body = if i == 15 { b"crash".to_vec() } else { format!("ok {i}").into_bytes() };
        tasks.push(tokio::spawn(async move { (body.clone(), redo.redo(body).await) }));
    }
    for task in tasks {
        let (body, answer) = task.await.unwrap();
        if body == b"crash" {
            assert_eq!(answer.unwrap_err().step, STEP_READ_RESPONSE);
        } else {
            assert_eq!(answer, Ok(body));
        }
    }
    assert_eq!(redo.restarts(), 1);
}

#[tokio::test]
async fn a_missing_program_fails_at_spawn() {
    let redo = WalRedoProcess::start(WalRedoConfig::new("/nonexistent/strata", vec![]));
    fails(&redo, b"a", STEP_SPAWN, "cannot start /nonexistent/strata").await;
    fails(&redo, b"b", STEP_SPAWN, "No such file").await;
    assert_eq!((redo.spawns(), redo.restarts()), (0, 0));
}

#[tokio::test]
async fn a_child_that_does_not_read_fails_at_write_or_read() {
    let redo = WalRedoProcess::start(sh("exit 0"));
    let error = redo.redo(vec![1; 1 << 20]).await.unwrap_err();
    assert!([STEP_WRITE_REQUEST, STEP_READ_RESPONSE].contains(&error.step), "{error}");
    assert_eq!(redo.restarts(), 1);
}

#[tokio::test]
async fn a_child_that_answers_a_request_frame_is_garbage() {
    // `cat` sends every request straight back: a request frame is not an answer.
    let redo = WalRedoProcess::start(sh("exec cat"));
    fails(&redo, b"x", STEP_DECODE_RESPONSE, "request frame").await;
}

#[tokio::test]
async fn an_answer_nobody_asked_for_is_garbage() {
    // Answers the first request (a 6-byte frame), then sends a second answer unasked.
    let script = "head -c 6 >/dev/null; printf 'V\\000\\000\\000\\001z'; sleep 0.1; \
                  printf 'V\\000\\000\\000\\001z'; exec cat >/dev/null";
    let redo = WalRedoProcess::start(sh(script));
    assert_eq!(redo.redo(b"x".to_vec()).await, Ok(b"z".to_vec()));
    // Nothing was in flight: the child is killed without failing any request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redo.restarts() == 0 {
        assert!(Instant::now() < deadline, "the unsolicited frame was not noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(redo.child_pid(), None);
    assert_eq!(redo.redo(b"y".to_vec()).await, Ok(b"z".to_vec()));
}

#[tokio::test]
async fn saved_failures_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let failures = camino::Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    std::fs::write(failures.join("7.req"), b"old").unwrap();
    let mut config = test_child();
    config.failure_dir = Some(failures.clone());
    config.max_saved_failures = 3;
    let redo = WalRedoProcess::start(config);
    for _ in 0..4 {
        fails(&redo, b"error", STEP_CHILD_ERROR, "asked to fail").await;
    }
    let mut names: Vec<String> = std::fs::read_dir(&failures)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["7.req", "8.req", "9.req"]);
    assert_eq!(redo.saved_failures(), 2);
}

#[tokio::test]
async fn dropping_the_last_handle_kills_the_child() {
    let redo = WalRedoProcess::start(test_child());
    ok(&redo, b"hello").await;
    let pid = redo.child_pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(redo);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "child {pid} still alive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `cargo test -p strata-adapters --release --test walredo -- --ignored --nocapture bench`
///
/// Round trips per second through the adapter (one in flight, then 16 pipelined)
/// next to a raw ping-pong of the same frame bytes through `cat` on blocking pipes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_round_trips_against_a_raw_pipe() {
    let round_trips: usize =
        std::env::var("BENCH_ROUND_TRIPS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    for size in [64usize, 8192] {
        let body = vec![b'x'; size];
        let frame = walredo_protocol::encode_frame(FrameKind::Request, &body).unwrap();

        let raw = tokio::task::spawn_blocking({
            let frame = frame.clone();
            move || raw_pipe_ping_pong(&frame, round_trips)
        })
        .await
        .unwrap();

        let redo = WalRedoProcess::start(test_child());
        ok(&redo, &body).await;
        let started = Instant::now();
        for _ in 0..round_trips {
            redo.redo(body.clone()).await.unwrap();
        }
        let sequential = round_trips as f64 / started.elapsed().as_secs_f64();

        let started = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (redo, body) = (redo.clone(), body.clone());
                tokio::spawn(async move {
                    for _ in 0..round_trips / 16 {
                        redo.redo(body.clone()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let pipelined = (round_trips / 16 * 16) as f64 / started.elapsed().as_secs_f64();
        assert_eq!(redo.restarts(), 0);
        println!(
            "walredo {size:>5} B bodies, {round_trips} round trips: raw pipe (cat, blocking) \
             {raw:>8.0}/s | adapter 1 in flight {sequential:>8.0}/s | adapter 16 in flight \
             {pipelined:>8.0}/s"
        );
    }
}

/// Writes `frame` to `cat` and reads it back, `round_trips` times; returns round trips
/// per second.
fn raw_pipe_ping_pong(frame: &[u8], round_trips: usize) -> f64 {
    use std::io::Read;
    let mut cat = std::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = cat.stdin.take().unwrap();
    let mut stdout = cat.stdout.take().unwrap();
    let mut back = vec![0u8; frame.len()];
    let started = Instant::now();
    for _ in 0..round_trips {
        stdin.write_all(frame).unwrap();
        stdout.read_exact(&mut back).unwrap();
    }
    let per_second = round_trips as f64 / started.elapsed().as_secs_f64();
    assert_eq!(back, frame);
    drop(stdin);
    cat.wait().unwrap();
    per_second
}
