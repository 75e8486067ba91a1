//! [`Redo`] through a child process: `strata walredo`, speaking
//! [`crate::walredo_protocol`] on its stdin and stdout.
//!
//! The child is untrusted: it may crash, hang, answer slowly or answer garbage. Any of
//! those fails the request(s) it affects with a [`RedoError`] naming the failing step,
//! and never yields a wrong value.
//!
//! # Shape
//!
//! [`WalRedoProcess`] is a cheap handle (clone it freely). [`WalRedoProcess::start`]
//! spawns one supervisor task that owns the child; the child itself is launched lazily
//! by the first request, and again by the first request after a failure. Per live
//! child there are three helper tasks: a writer (stdin), a reader (stdout, decodes
//! frames) and a stderr logger (every chunk is logged at error level: a healthy child
//! is silent).
//!
//! # Requests
//!
//! - At most `max_in_flight_requests` requests are admitted at once (a semaphore
//!   permit per request, held until it is answered); they are pipelined: written as
//!   they arrive, answered strictly in order.
//! - Each wait for the next response is bounded by `request_timeout_ms`, counted from
//!   the later of "the request was queued" and "the previous response arrived". A
//!   child that stops reading its stdin is caught by the same timer.
//!
//! # Failures (the `step` of the [`RedoError`])
//!
//! | step | cause | child |
//! |---|---|---|
//! | [`STEP_SPAWN`] | the program could not be started | none |
//! | [`STEP_WRITE_REQUEST`] | writing stdin failed (child gone) or the request is too large to frame | killed, restarted lazily |
//! | [`STEP_READ_RESPONSE`] | stdout ended (child died), a short read, or no response within the timeout | killed, restarted lazily |
//! | [`STEP_DECODE_RESPONSE`] | a frame that does not parse or was not asked for | killed, restarted lazily |
//! | [`STEP_CHILD_ERROR`] | the child answered with an error frame | kept |
//!
//! When a child is killed, the request at the head of the queue (the one whose answer
//! was due) fails. The requests queued behind it did nothing wrong: they are resent to
//! the next child, each at most [`MAX_ATTEMPTS`] times in total.
//!
//! Every failed request's input is saved as `<failure_dir>/<n>.req` (at most
//! `max_saved_failures` files; the error message names the file); `strata walredo
//! --replay <file>` runs the same pure redo on it.
//!
//! Killing means SIGKILL to the child's process group (the child runs in its own
//! group, so helpers it started die with it), then waiting for it
//! (bounded by [`KILL_WAIT_MS`]). Dropping the last handle kills the child too.

use crate::redo::{Redo, RedoError};
use crate::walredo_protocol::{self, FRAME_HEADER_BYTES, FrameError, FrameKind};
use bytes::Bytes;
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const STEP_SPAWN: &str = "spawn";
pub const STEP_WRITE_REQUEST: &str = "write request";
pub const STEP_READ_RESPONSE: &str = "read response";
pub const STEP_DECODE_RESPONSE: &str = "decode response";
pub const STEP_CHILD_ERROR: &str = "child error";

/// How many children a request may be sent to (the first and one resend).
pub const MAX_ATTEMPTS: u32 = 2;
/// How long to wait for a killed child to be reaped before leaving it to the runtime.
pub const KILL_WAIT_MS: u64 = 5_000;
/// The directory name under the data directory for saved failing requests.
pub const FAILURE_DIR_NAME: &str = "walredo-failures";
/// Environment variables passed to the child; everything else is cleared.
pub const CHILD_ENV_ALLOWLIST: &[&str] = &["PATH", "LD_LIBRARY_PATH", "RUST_LOG", "RUST_BACKTRACE"];

pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS: usize = 16;
pub const DEFAULT_MAX_SAVED_FAILURES: usize = 100;
/// Buffer in front of the child's stdin and stdout.
const PIPE_BUFFER_BYTES: usize = 64 * 1024;
/// Largest stderr chunk logged as one line.
const STDERR_CHUNK_BYTES: usize = 4096;

/// How to run the child and the bounds on talking to it.
#[derive(Clone, Debug)]
pub struct WalRedoConfig {
    /// The child program (production: the strata binary itself).
    pub program: Utf8PathBuf,
    /// Its arguments (production: `["walredo"]`).
    pub args: Vec<String>,
    /// Longest wait for one response (see the module doc).
    pub request_timeout_ms: u64,
    /// Requests admitted at once, pipelined to the child.
    pub max_in_flight_requests: usize,
    /// Where failing requests are saved (`<data_dir>/walredo-failures`); `None` saves
    /// nothing.
    pub failure_dir: Option<Utf8PathBuf>,
    /// At most this many `.req` files are kept in `failure_dir`; later failures are
    /// only logged.
    pub max_saved_failures: usize,
}

impl WalRedoConfig {
    /// Defaults for everything but the command line.
    pub fn new(program: impl Into<Utf8PathBuf>, args: Vec<String>) -> WalRedoConfig {
        WalRedoConfig {
            program: program.into(),
            args,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_in_flight_requests: DEFAULT_MAX_IN_FLIGHT_REQUESTS,
            failure_dir: None,
            max_saved_failures: DEFAULT_MAX_SAVED_FAILURES,
        }
    }

    /// Production settings: the running strata binary with `walredo`, failures saved
    /// under `<data_dir>/walredo-failures`.
    pub fn strata_child(data_dir: &Utf8Path) -> std::io::Result<WalRedoConfig> {
        let exe = std::env::current_exe()?;
        let exe = Utf8PathBuf::from_path_buf(exe).map_err(|p| {
            std::io::Error::other(format!("executable path is not UTF-8: {}", p.display()))
        })?;
        let mut config = WalRedoConfig::new(exe, vec!["walredo".to_string()]);
        config.failure_dir = Some(data_dir.join(FAILURE_DIR_NAME));
        Ok(config)
    }
}

/// Counters for metrics. All monotonic except `child_pid`.
#[derive(Debug, Default)]
struct Stats {
    spawns: AtomicU64,
    restarts: AtomicU64,
    resent: AtomicU64,
    saved_failures: AtomicU64,
    child_pid: AtomicU32,
}

/// The walredo child-process adapter. See the module doc.
#[derive(Clone, Debug)]
pub struct WalRedoProcess {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: mpsc::UnboundedSender<Job>,
    permits: Semaphore,
    max_in_flight: usize,
    stats: Arc<Stats>,
}

/// One admitted request. Its caller holds a permit until `reply` is used, which
/// bounds the (otherwise unbounded) job channel to `max_in_flight_requests`.
struct Job {
    request: Bytes,
    /// Children this request has been written to.
    sends: u32,
    reply: oneshot::Sender<Result<Vec<u8>, RedoError>>,
}

impl WalRedoProcess {
    /// Starts the supervisor task; must be called inside a tokio runtime. No child is
    /// launched until the first request.
    pub fn start(config: WalRedoConfig) -> WalRedoProcess {
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        let max_in_flight = config.max_in_flight_requests.max(1);
        let saver = FailureSaver::new(config.failure_dir.clone(), config.max_saved_failures);
        let supervisor = Supervisor {
            config,
            max_in_flight,
            jobs: jobs_rx,
            retry: VecDeque::new(),
            stats: stats.clone(),
            saver,
        };
        tokio::spawn(supervisor.run());
        let permits = Semaphore::new(max_in_flight);
        WalRedoProcess { inner: Arc::new(Inner { jobs, permits, max_in_flight, stats }) }
    }

    /// Children launched so far.
    pub fn spawns(&self) -> u64 {
        self.inner.stats.spawns.load(Ordering::Relaxed)
    }

    /// Children killed because of a failure (death, hang, garbage, write error).
    pub fn restarts(&self) -> u64 {
        self.inner.stats.restarts.load(Ordering::Relaxed)
    }

    /// Requests resent to a fresh child after the child they were queued on failed.
    pub fn resent(&self) -> u64 {
        self.inner.stats.resent.load(Ordering::Relaxed)
    }

    /// Failing requests written to the failure directory.
    pub fn saved_failures(&self) -> u64 {
        self.inner.stats.saved_failures.load(Ordering::Relaxed)
    }

    /// The live child's pid, if one is running.
    pub fn child_pid(&self) -> Option<u32> {
        match self.inner.stats.child_pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.inner.max_in_flight - self.inner.permits.available_permits()
    }
}

impl Redo for WalRedoProcess {
    async fn redo(&self, request: Vec<u8>) -> Result<Vec<u8>, RedoError> {
        let gone = || RedoError {
            step: STEP_READ_RESPONSE,
            message: "the walredo supervisor task is gone".to_string(),
        };
        let _permit = self.inner.permits.acquire().await.map_err(|_| gone())?;
        let (reply, answer) = oneshot::channel();
        let job = Job { request: Bytes::from(request), sends: 0, reply };
        self.inner.jobs.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Owns the child and every admitted request.
struct Supervisor {
    config: WalRedoConfig,
    max_in_flight: usize,
    jobs: mpsc::UnboundedReceiver<Job>,
    /// Requests to resend to the next child, in their original order.
    retry: VecDeque<Job>,
    stats: Arc<Stats>,
    saver: FailureSaver,
}

/// How one child's life ended.
enum Ended {
    /// Every handle is gone; the child was killed.
    Shutdown,
    /// The child failed and was killed; the next request starts a new one.
    Killed,
}

impl Supervisor {
    async fn run(mut self) {
        loop {
            let first = match self.retry.pop_front() {
                Some(job) => job,
                None => match self.jobs.recv().await {
                    Some(job) => job,
                    None => return,
                },
            };
            let child = match LiveChild::spawn(&self.config, self.max_in_flight) {
                Ok(child) => child,
                Err(e) => {
                    let message = format!("cannot start {}: {e}", self.config.program);
                    tracing::error!("walredo: {message}");
                    let _ = first.reply.send(Err(RedoError { step: STEP_SPAWN, message }));
                    continue;
                }
            };
            self.stats.spawns.fetch_add(1, Ordering::Relaxed);
            self.stats.child_pid.store(child.pid, Ordering::Relaxed);
            let ended = self.serve(child, first).await;
            self.stats.child_pid.store(0, Ordering::Relaxed);
            match ended {
                Ended::Shutdown => return,
                Ended::Killed => {}
            }
        }
    }

    /// Pipelines requests to `child` until it fails or every handle is dropped.
    async fn serve(&mut self, mut child: LiveChild, first: Job) -> Ended {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let mut pending: VecDeque<Job> = VecDeque::new();
        let mut deadline = Instant::now() + timeout;
        let retry = std::mem::take(&mut self.retry);
        for job in std::iter::once(first).chain(retry) {
            child.submit(job, &mut pending);
        }
        let failure = loop {
            let waiting = !pending.is_empty();
            tokio::select! {
                biased;
                frame = child.frames.recv() => {
                    let (kind, body) = match frame {
                        Some(Ok(frame)) => frame,
                        Some(Err(failure)) => break failure,
                        None => break failed(STEP_READ_RESPONSE, "the stdout reader stopped"),
                    };
                    if kind == FrameKind::Request {
                        break failed(STEP_DECODE_RESPONSE, "the child sent a request frame");
                    }
                    let Some(job) = pending.pop_front() else {
                        break failed(
                            STEP_DECODE_RESPONSE,
                            &format!("unsolicited {kind:?} frame of {} bytes", body.len()),
                        );
                    };
                    deadline = Instant::now() + timeout;
                    if kind == FrameKind::Value {
                        let _ = job.reply.send(Ok(body));
                    } else {
                        let message = String::from_utf8_lossy(&body).into_owned();
                        self.fail(job, RedoError { step: STEP_CHILD_ERROR, message }).await;
                    }
                }
                Some(error) = child.write_errors.recv() => {
                    break failed(STEP_WRITE_REQUEST, &format!("writing the child's stdin: {error}"));
                }
                () = tokio::time::sleep_until(deadline), if waiting => {
                    break failed(
                        STEP_READ_RESPONSE,
                        &format!("no response within {} ms", self.config.request_timeout_ms),
                    );
                }
                job = self.jobs.recv(), if pending.len() < self.max_in_flight => {
                    let Some(job) = job else {
                        child.kill().await;
                        return Ended::Shutdown;
                    };
                    if pending.is_empty() {
                        deadline = Instant::now() + timeout;
                    }
                    if let Some((job, error)) = child.submit(job, &mut pending) {
                        self.fail(job, error).await;
                    }
                }
            }
        };
        self.kill_after(child, failure, pending).await;
        Ended::Killed
    }

    /// Kills a failed child: the head request fails with `failure`, the ones queued
    /// behind it are resent to the next child unless they used up their attempts.
    async fn kill_after(&mut self, child: LiveChild, failure: RedoError, pending: VecDeque<Job>) {
        let pid = child.pid;
        let status = child.kill().await;
        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        let message = format!("{} [child pid {pid}: {status}]", failure.message);
        tracing::warn!(
            "walredo: killed the child at step {}: {message}; {} request(s) were in flight",
            failure.step,
            pending.len()
        );
        let error = RedoError { step: failure.step, message };
        let mut pending = pending.into_iter();
        if let Some(head) = pending.next() {
            self.fail(head, error.clone()).await;
        }
        for job in pending {
            if job.sends < MAX_ATTEMPTS {
                self.stats.resent.fetch_add(1, Ordering::Relaxed);
                self.retry.push_back(job);
            } else {
                self.fail(job, error.clone()).await;
            }
        }
    }

    /// Answers `job` with `error`, after saving its input for replay.
    async fn fail(&mut self, job: Job, mut error: RedoError) {
        if let Some(path) = self.saver.save(&job.request).await {
            self.stats.saved_failures.fetch_add(1, Ordering::Relaxed);
            error.message = format!("{}; input saved to {path}", error.message);
        }
        let _ = job.reply.send(Err(error));
    }
}

fn failed(step: &'static str, message: &str) -> RedoError {
    RedoError { step, message: message.to_string() }
}

/// A running child and its helper tasks.
struct LiveChild {
    child: Child,
    pid: u32,
    requests: mpsc::UnboundedSender<([u8; FRAME_HEADER_BYTES], Bytes)>,
    write_errors: mpsc::Receiver<std::io::Error>,
    frames: mpsc::Receiver<Result<(FrameKind, Vec<u8>), RedoError>>,
    tasks: [JoinHandle<()>; 3],
}

impl LiveChild {
    fn spawn(config: &WalRedoConfig, max_in_flight: usize) -> std::io::Result<LiveChild> {
        let mut command = Command::new(config.program.as_std_path());
        command
            .args(&config.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .env_clear();
        for var in CHILD_ENV_ALLOWLIST {
            if let Some(value) = std::env::var_os(var) {
                command.env(var, value);
            }
        }
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or(0);
        let missing = || std::io::Error::other("a child pipe is missing");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (write_errors_tx, write_errors) = mpsc::channel(1);
        let (frames_tx, frames) = mpsc::channel(max_in_flight);
        let tasks = [
            tokio::spawn(write_requests(stdin, requests_rx, write_errors_tx)),
            tokio::spawn(read_frames(stdout, frames_tx)),
            tokio::spawn(log_stderr(pid, stderr)),
        ];
        tracing::info!("walredo: started child pid {pid}: {} {:?}", config.program, config.args);
        Ok(LiveChild { child, pid, requests, write_errors, frames, tasks })
    }

    /// Queues `job` for writing; a request too large to frame is handed back with its
    /// error (the child is not affected).
    fn submit(&mut self, mut job: Job, pending: &mut VecDeque<Job>) -> Option<(Job, RedoError)> {
        let header = match walredo_protocol::encode_header(FrameKind::Request, job.request.len()) {
            Ok(header) => header,
            Err(e @ FrameError::TooLong { .. }) | Err(e @ FrameError::UnknownType(_)) => {
                return Some((job, failed(STEP_WRITE_REQUEST, &e.to_string())));
            }
        };
        job.sends += 1;
        // A closed channel means the writer failed; its error is already queued.
        let _ = self.requests.send((header, job.request.clone()));
        pending.push_back(job);
        None
    }

    /// SIGKILLs the child's process group and reaps the child (bounded); returns how
    /// it ended.
    async fn kill(mut self) -> String {
        self.tasks[0].abort();
        self.tasks[1].abort();
        if let Ok(pid) = i32::try_from(self.pid)
            && pid > 0
        {
            // SAFETY: plain syscall; the child is not reaped yet (only `wait` below
            // reaps it), so its pid, which is also its group id, is still ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
        let status = tokio::time::timeout(Duration::from_millis(KILL_WAIT_MS), self.child.wait());
        let status = match status.await {
            Ok(Ok(status)) => describe(status),
            Ok(Err(e)) => format!("wait failed: {e}"),
            Err(_) => format!("not reaped within {KILL_WAIT_MS} ms"),
        };
        self.tasks[2].abort();
        status
    }
}

fn describe(status: ExitStatus) -> String {
    status.to_string()
}

/// Writes queued requests to the child's stdin, flushing whenever the queue is empty.
async fn write_requests(
    stdin: ChildStdin,
    mut requests: mpsc::UnboundedReceiver<([u8; FRAME_HEADER_BYTES], Bytes)>,
    errors: mpsc::Sender<std::io::Error>,
) {
    let mut stdin = BufWriter::with_capacity(PIPE_BUFFER_BYTES, stdin);
    while let Some((header, body)) = requests.recv().await {
        let mut written = stdin.write_all(&header).await;
        if written.is_ok() {
            written = stdin.write_all(&body).await;
        }
        if written.is_ok() && requests.is_empty() {
            written = stdin.flush().await;
        }
        if let Err(e) = written {
            let _ = errors.send(e).await;
            return;
        }
    }
}

/// Decodes frames from the child's stdout until the first failure, which is sent last.
async fn read_frames(
    stdout: impl AsyncRead + Unpin,
    frames: mpsc::Sender<Result<(FrameKind, Vec<u8>), RedoError>>,
) {
    let mut stdout = BufReader::with_capacity(PIPE_BUFFER_BYTES, stdout);
    loop {
        let frame = read_frame(&mut stdout).await;
        let stop = frame.is_err();
        if frames.send(frame).await.is_err() || stop {
            return;
        }
    }
}

async fn read_frame(
    stdout: &mut (impl AsyncRead + Unpin),
) -> Result<(FrameKind, Vec<u8>), RedoError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let got = read_full(stdout, &mut header).await?;
    if got == 0 {
        return Err(failed(STEP_READ_RESPONSE, "the child closed its stdout"));
    }
    if got < FRAME_HEADER_BYTES {
        return Err(failed(
            STEP_READ_RESPONSE,
            &format!("short read: stdout ended after {got} of {FRAME_HEADER_BYTES} header bytes"),
        ));
    }
    let header = walredo_protocol::parse_header(header)
        .map_err(|e| failed(STEP_DECODE_RESPONSE, &e.to_string()))?;
    let mut body = vec![0u8; header.body_len];
    let got = read_full(stdout, &mut body).await?;
    if got < header.body_len {
        return Err(failed(
            STEP_READ_RESPONSE,
            &format!("short read: stdout ended after {got} of {} body bytes", header.body_len),
        ));
    }
    Ok((header.kind, body))
}

/// Reads until `buf` is full or end of file; returns the bytes read.
async fn read_full(
    stdout: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
) -> Result<usize, RedoError> {
    let mut filled = 0;
    while filled < buf.len() {
        match stdout.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(STEP_READ_RESPONSE, &format!("reading stdout: {e}"))),
        }
    }
    Ok(filled)
}

/// Logs everything the child writes to stderr, at error level: a healthy child is
/// silent.
async fn log_stderr(pid: u32, mut stderr: impl AsyncRead + Unpin) {
    let mut chunk = vec![0u8; STDERR_CHUNK_BYTES];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let text = String::from_utf8_lossy(&chunk[..n]);
                tracing::error!("walredo child {pid} stderr: {}", text.trim_end());
            }
        }
    }
}

/// Saves failing requests as `<dir>/<n>.req`, numbering on from the files already
/// there, at most `max_files` files in the directory.
struct FailureSaver {
    dir: Option<Utf8PathBuf>,
    max_files: usize,
    /// `(next number, files in the directory)`, read from the directory on first use.
    state: Option<(u64, usize)>,
}

impl FailureSaver {
    fn new(dir: Option<Utf8PathBuf>, max_files: usize) -> FailureSaver {
        FailureSaver { dir, max_files, state: None }
    }

    async fn save(&mut self, request: &[u8]) -> Option<Utf8PathBuf> {
        let dir = self.dir.clone()?;
        match self.try_save(&dir, request).await {
            Ok(path) => path,
            Err(e) => {
                tracing::error!("walredo: cannot save a failing request under {dir}: {e}");
                None
            }
        }
    }

    async fn try_save(
        &mut self,
        dir: &Utf8Path,
        request: &[u8],
    ) -> std::io::Result<Option<Utf8PathBuf>> {
        let (next, files) = match self.state {
            Some(state) => state,
            None => {
                let state = scan_failures(dir).await?;
                self.state = Some(state);
                state
            }
        };
        if files >= self.max_files {
            tracing::warn!("walredo: {dir} already holds {files} saved requests; not saving more");
            return Ok(None);
        }
        let path = dir.join(format!("{next}.req"));
        let tmp = dir.join(format!("{next}.req.tmp"));
        tokio::fs::write(&tmp, request).await?;
        tokio::fs::rename(&tmp, &path).await?;
        self.state = Some((next + 1, files + 1));
        tracing::warn!("walredo: saved a failing request to {path}");
        Ok(Some(path))
    }
}

/// Creates `dir` if needed; returns the next free number and the count of `.req` files.
async fn scan_failures(dir: &Utf8Path) -> std::io::Result<(u64, usize)> {
    tokio::fs::create_dir_all(dir).await?;
    let mut entries = tokio::fs::read_dir(dir).await?;
    let (mut next, mut files) = (0u64, 0usize);
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|n| n.strip_suffix(".req")) else { continue };
        files += 1;
        if let Ok(number) = number.parse::<u64>() {
            next = next.max(number + 1);
        }
    }
    Ok((next, files))
}
