//! [`Redo`] through a child process: `strata walredo`, speaking
//! [`crate::walredo_protocol`] on its stdin and stdout.
//!
//! The child is untrusted: it may crash, hang, answer slowly or answer garbage. Any of
//! those fails the request(s) it affects with a [`RedoError`] naming the failing step,
//! and never yields a wrong value.
//!
//! # Shape
//!
//! [`WalRedoProcess`] is a cheap handle (clone it freely). The child is launched
//! lazily by the first request, and again by the first request after a failure. A
//! request's caller writes the request frame to the child's stdin itself, then waits
//! for its answer; one waiting caller at a time (the leader, holding the child's
//! reader lock) reads stdout and hands every answer to its caller, until its own
//! answer is in. At 1 in flight the caller reads its own answer: no other task is
//! involved. There is no supervisor task: callers share the child's queue of
//! requests under a lock held for a few instructions. Per live child there are two
//! helper tasks: a stderr logger (every chunk is logged at error level: a healthy
//! child is silent) and a monitor that wakes every [`MONITOR_MS`] and, when no caller
//! leads, reads what nobody reads (an answer nobody asked for; answers whose callers
//! gave up) and applies the timeout to them. A failure is handled by a task spawned
//! for it (kill, fail the head request, resend the others, and read the next child
//! until the resent requests are answered, as their callers wait on the old one).
//!
//! Both pipes are non-blocking file descriptors polled by tokio. An answer's value is
//! read straight into the `Vec` handed to its caller (one `readv` puts the frame's
//! header in a small array and the value in its own buffer); only answers that arrive
//! together with the end of another one are copied out of a carry buffer.
//!
//! Before a request joins an empty queue, whatever stdout already holds is read: it
//! was not asked for, and the child is killed rather than letting that frame answer
//! the new request.
//!
//! # Requests
//!
//! - At most `max_in_flight_requests` requests are admitted at once (a semaphore
//!   permit per request, held until it is answered); they are pipelined: written as
//!   they arrive, answered strictly in order.
//! - A request joins the child's queue and its frame is written under one async lock
//!   (the writer), so the order of the queue is the order of the frames in the pipe.
//! - Each wait for the next response is bounded by `request_timeout_ms`, counted from
//!   the later of "the request was queued" and "the previous response arrived". A
//!   child that stops reading its stdin is caught by the same timer.
//!
//! # A frame is written whole or the child dies (cancellation)
//!
//! There are no request ids: a frame cut short in the pipe would shift every later
//! frame, and the child could answer a request made of two callers' bytes. So a
//! caller never leaves a frame half written: it writes without waiting while the pipe
//! has room, and if the pipe fills, the rest of the frame is written by a spawned task
//! that holds the writer lock until the frame is complete (a caller dropped while
//! waiting for its answer therefore cannot tear the stream; its answer is read and
//! discarded). That task gives up only when the write fails or makes no progress for
//! `request_timeout_ms`; either way it reports a write failure and the reader kills the
//! child before anything else is read from it, so the torn frame is never answered.
//! Tested by `a_caller_dropped_mid_write_does_not_tear_the_stream` in
//! `adapters/tests/walredo.rs`. Nothing here catches a panic.
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
//! the next child, each at most [`MAX_ATTEMPTS`] times in total. Once the reader gives
//! up on a child it closes the child's queue, so no request joins it afterwards.
//!
//! Every failed request's input is saved as `<failure_dir>/<n>.req` (at most
//! `max_saved_failures` files; the error message names the file); `strata walredo
//! --replay <file>` runs the same pure redo on it.
//!
//! Killing means SIGKILL to the child's process group (the child runs in its own
//! group, so helpers it started die with it), then waiting for it
//! (bounded by [`KILL_WAIT_MS`]). Dropping the last handle kills the child too.

use crate::redo::{Redo, RedoError};
use crate::walredo_protocol::{self, FRAME_HEADER_BYTES, FrameKind};
use bytes::{Buf, Bytes};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, Interest};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

mod frames;
use frames::FrameReader;

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
/// Room made for an answer's value before its length is known: one page
/// (`strata_core::redo::MAX_VALUE_BYTES`), so a page arrives in one read.
const ANSWER_BUFFER_BYTES: usize = strata_core::redo::MAX_VALUE_BYTES;
/// An answer up to this size is copied into a `Vec` of its own and the answer buffer
/// is kept for the next one (a small value should not hold a page of memory).
const SMALL_ANSWER_BYTES: usize = 1024;
/// How often a child's monitor looks for answers nobody reads (see the module doc).
pub const MONITOR_MS: u64 = 100;
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

/// What every handle shares; dropping the last handle drops it and kills the child.
#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    writer: WriterSlot,
}

/// The live child's stdin and connection (`None` before the first request and after
/// a failure). Held while requests join the queue and their frames are written.
type WriterSlot = Arc<tokio::sync::Mutex<Option<Writer>>>;

/// What the connections need too.
#[derive(Debug)]
struct Shared {
    config: WalRedoConfig,
    stats: Stats,
    saver: tokio::sync::Mutex<FailureSaver>,
}

/// The writing side of a live child.
#[derive(Debug)]
struct Writer {
    stdin: AsyncFd<File>,
    conn: Arc<Conn>,
}

/// One live child: its queue of requests awaiting an answer and its stdout, which
/// one waiting caller at a time (the leader) reads for everyone.
struct Conn {
    shared: Arc<Shared>,
    /// To resend requests after a failure; once no handle is left it cannot be
    /// upgraded.
    slot: Weak<tokio::sync::Mutex<Option<Writer>>>,
    pid: u32,
    timeout: Duration,
    queue: Mutex<QueueState>,
    /// Wakes the leader: a write failed, or every handle is gone.
    wake: Notify,
    reader: tokio::sync::Mutex<ReaderState>,
    /// Taken by whoever kills the child.
    process: Mutex<Option<(Child, JoinHandle<()>)>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("pid", &self.pid).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct QueueState {
    /// Written (or being written), in pipe order.
    pending: VecDeque<Job>,
    /// Given up on (failed or shut down): nothing joins any more.
    closed: bool,
    /// A write to this child's stdin failed (the leader kills it).
    write_error: Option<String>,
}

/// The reading side, held by the leader.
struct ReaderState {
    frames: FrameReader,
    last_answer: Instant,
    /// Armed no later than the head request's deadline, so it may fire early (then
    /// it is re-armed), never late; re-armed only once it fired, so the fast path
    /// does not touch the timer.
    sleep: Pin<Box<Sleep>>,
}

/// One admitted request and its caller's permit, held until it is answered.
#[derive(Debug)]
struct Job {
    /// The request frame (header and body).
    frame: Bytes,
    /// Children this request has been written to.
    sends: u32,
    /// When it joined its child's queue.
    queued: Instant,
    reply: oneshot::Sender<Result<Vec<u8>, RedoError>>,
    permit: OwnedSemaphorePermit,
}

type Answer = oneshot::Receiver<Result<Vec<u8>, RedoError>>;

impl Job {
    fn request(&self) -> &[u8] {
        &self.frame[FRAME_HEADER_BYTES..]
    }

    /// Releases the permit, then answers (so a caller that has its answer sees its
    /// request no longer in flight).
    fn answer(self, result: Result<Vec<u8>, RedoError>) {
        drop(self.permit);
        let _ = self.reply.send(result);
    }
}

/// A panic while a lock was held left nothing half-changed that matters: every
/// change under these locks is a single push, pop, take or flag.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A write task still holding the lock ends within the request timeout; the
        // monitor stops the child once it sees no handle left.
        if let Ok(mut writer) = self.writer.try_lock()
            && let Some(writer) = writer.take()
        {
            writer.conn.shut_down();
        }
    }
}

impl WalRedoProcess {
    /// Must be called inside a tokio runtime. No child is launched until the first
    /// request.
    pub fn start(config: WalRedoConfig) -> WalRedoProcess {
        let max_in_flight = config.max_in_flight_requests.max(1);
        let saver = FailureSaver::new(config.failure_dir.clone(), config.max_saved_failures);
        let shared = Arc::new(Shared { config, stats: Stats::default(), saver: saver.into() });
        let inner = Inner {
            shared,
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            writer: Arc::new(tokio::sync::Mutex::new(None)),
        };
        WalRedoProcess { inner: Arc::new(inner) }
    }

    fn stats(&self) -> &Stats {
        &self.inner.shared.stats
    }

    /// Children launched so far.
    pub fn spawns(&self) -> u64 {
        self.stats().spawns.load(Ordering::Relaxed)
    }

    /// Children killed because of a failure (death, hang, garbage, write error).
    pub fn restarts(&self) -> u64 {
        self.stats().restarts.load(Ordering::Relaxed)
    }

    /// Requests resent to a fresh child after the child they were queued on failed.
    pub fn resent(&self) -> u64 {
        self.stats().resent.load(Ordering::Relaxed)
    }

    /// Failing requests written to the failure directory.
    pub fn saved_failures(&self) -> u64 {
        self.stats().saved_failures.load(Ordering::Relaxed)
    }

    /// The live child's pid, if one is running.
    pub fn child_pid(&self) -> Option<u32> {
        match self.stats().child_pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.inner.max_in_flight - self.inner.permits.available_permits()
    }
}

fn gone() -> RedoError {
    failed(STEP_READ_RESPONSE, "the walredo adapter is gone")
}

impl Redo for WalRedoProcess {
    async fn redo(&self, request: Vec<u8>) -> Result<Vec<u8>, RedoError> {
        let permit = self.inner.permits.clone().acquire_owned().await.map_err(|_| gone())?;
        let (reply, answer) = oneshot::channel();
        let queued = Instant::now();
        let frame = match walredo_protocol::encode_frame(FrameKind::Request, &request) {
            Ok(frame) => frame,
            Err(e) => {
                // Not framed: kept with an empty header only to be saved and answered.
                let mut frame = vec![0; FRAME_HEADER_BYTES];
                frame.extend_from_slice(&request);
                let job = Job { frame: frame.into(), sends: 0, queued, reply, permit };
                let error = failed(STEP_WRITE_REQUEST, &e.to_string());
                fail(&self.inner.shared, job, error).await;
                return answer.await.map_err(|_| gone())?;
            }
        };
        let job = Job { frame: frame.into(), sends: 0, queued, reply, permit };
        match send(&self.inner.shared, &self.inner.writer, vec![job]).await {
            Some(conn) => wait(&conn, answer).await,
            None => answer.await.map_err(|_| gone())?,
        }
    }
}

/// Waits for `answer`, leading the reading of `conn`'s stdout whenever no one else
/// does.
async fn wait(conn: &Arc<Conn>, mut answer: Answer) -> Result<Vec<u8>, RedoError> {
    loop {
        tokio::select! {
            biased;
            result = &mut answer => return result.map_err(|_| gone())?,
            mut reader = conn.reader.lock() => {
                match conn.lead(&mut reader, Until::Answered(&mut answer)).await {
                    Led::Answered(result) => return result,
                    Led::Done => {}
                    // Whoever handles the failure answers this request, or resends it
                    // and reads the next child until it is answered.
                    Led::Closed => return answer.await.map_err(|_| gone())?,
                }
            }
        }
    }
}

/// When a leader stops reading.
enum Until<'a> {
    /// Its own request is answered.
    Answered(&'a mut Answer),
    /// No resent request is waiting (the failure handler that resent them).
    ResentAnswered,
    /// Nothing is waiting, or the instant has passed (the monitor, when no caller
    /// leads: a caller that comes later waits behind it only that long).
    IdleOr(Instant),
}

enum Led {
    Answered(Result<Vec<u8>, RedoError>),
    Done,
    /// The child failed or was shut down.
    Closed,
}

impl Conn {
    /// Reads and hands out answers until `until`, the child fails, or it is closed.
    async fn lead(self: &Arc<Self>, reader: &mut ReaderState, mut until: Until<'_>) -> Led {
        loop {
            if lock(&self.queue).closed {
                return Led::Closed;
            }
            loop {
                match reader.frames.next_buffered() {
                    Ok(Some((kind, body))) => {
                        if let Err(failure) = self.hand_out(kind, body) {
                            return self.fail_child(failure);
                        }
                        reader.last_answer = Instant::now();
                    }
                    Ok(None) => break,
                    Err(failure) => return self.fail_child(failure),
                }
            }
            if let Until::Answered(answer) = &mut until
                && let Ok(result) = answer.try_recv()
            {
                return Led::Answered(result);
            }
            {
                let mut queue = lock(&self.queue);
                if let Some(error) = queue.write_error.take() {
                    drop(queue);
                    let message = format!("writing the child's stdin: {error}");
                    return self.fail_child(failed(STEP_WRITE_REQUEST, &message));
                }
                let done = match until {
                    Until::Answered(_) => false,
                    Until::ResentAnswered => !queue.pending.iter().any(|job| job.sends > 1),
                    Until::IdleOr(limit) => queue.pending.is_empty() || Instant::now() >= limit,
                };
                if done {
                    return Led::Done;
                }
                if reader.sleep.is_elapsed() {
                    let now = Instant::now();
                    let due = queue.pending.front().map(|job| job.queued.max(reader.last_answer));
                    match due.map(|due| due + self.timeout) {
                        Some(deadline) if deadline <= now => {
                            drop(queue);
                            let message =
                                format!("no response within {} ms", self.timeout.as_millis());
                            return self.fail_child(failed(STEP_READ_RESPONSE, &message));
                        }
                        Some(deadline) => reader.sleep.as_mut().reset(deadline),
                        None => reader.sleep.as_mut().reset(now + self.timeout),
                    }
                }
            }
            tokio::select! {
                biased;
                read = reader.frames.fill() => {
                    if let Err(failure) = read {
                        return self.fail_child(failure);
                    }
                }
                () = reader.sleep.as_mut() => {}
                () = self.wake.notified() => {}
                // Answered by someone else (an error frame's answer is saved first).
                result = async {
                    match &mut until {
                        Until::Answered(answer) => (&mut **answer).await,
                        _ => std::future::pending().await,
                    }
                } => return Led::Answered(result.unwrap_or_else(|_| Err(gone()))),
            }
        }
    }

    /// Hands one answer to the head request.
    fn hand_out(&self, kind: FrameKind, body: Vec<u8>) -> Result<(), RedoError> {
        if kind == FrameKind::Request {
            return Err(failed(STEP_DECODE_RESPONSE, "the child sent a request frame"));
        }
        let Some(job) = lock(&self.queue).pending.pop_front() else {
            let message = format!("unsolicited {kind:?} frame of {} bytes", body.len());
            return Err(failed(STEP_DECODE_RESPONSE, &message));
        };
        if kind == FrameKind::Value {
            job.answer(Ok(body));
        } else {
            let message = String::from_utf8_lossy(&body).into_owned();
            let shared = self.shared.clone();
            tokio::spawn(async move {
                fail(&shared, job, RedoError { step: STEP_CHILD_ERROR, message }).await;
            });
        }
        Ok(())
    }

    /// Before a request joins an empty queue: whatever stdout holds now was not
    /// asked for. Skipped when someone else holds the reader.
    fn check_idle(self: &Arc<Self>) {
        let Ok(mut reader) = self.reader.try_lock() else { return };
        if lock(&self.queue).closed {
            return;
        }
        if let Err(failure) = reader.frames.try_fill() {
            self.fail_child(failure);
            return;
        }
        match reader.frames.next_buffered() {
            Ok(None) => {}
            Ok(Some((kind, body))) => {
                if let Err(failure) = self.hand_out(kind, body) {
                    self.fail_child(failure);
                }
            }
            Err(failure) => {
                self.fail_child(failure);
            }
        }
    }

    /// Closes the queue and hands the failure to a task that kills the child, fails
    /// the head request and resends the others.
    fn fail_child(self: &Arc<Self>, failure: RedoError) -> Led {
        if let Some(pending) = self.close() {
            tokio::spawn(self.clone().after_failure(failure, pending));
        }
        Led::Closed
    }

    /// Closes the queue; returns what was in it (`None`: it was closed already).
    fn close(&self) -> Option<VecDeque<Job>> {
        let mut queue = lock(&self.queue);
        let was_open = !std::mem::replace(&mut queue.closed, true);
        was_open.then(|| std::mem::take(&mut queue.pending))
    }

    /// Every handle is gone: kill the child, nobody waits for anything.
    fn shut_down(self: &Arc<Self>) {
        drop(self.close());
        self.wake.notify_one();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(self.clone().kill());
        }
    }

    async fn after_failure(self: Arc<Self>, failure: RedoError, pending: VecDeque<Job>) {
        let pid = self.pid;
        let status = self.clone().kill().await;
        let stats = &self.shared.stats;
        stats.restarts.fetch_add(1, Ordering::Relaxed);
        let message = format!("{} [child pid {pid}: {status}]", failure.message);
        tracing::warn!(
            "walredo: killed the child at step {}: {message}; {} request(s) were in flight",
            failure.step,
            pending.len()
        );
        let error = RedoError { step: failure.step, message };
        let mut pending = pending.into_iter();
        if let Some(head) = pending.next() {
            fail(&self.shared, head, error.clone()).await;
        }
        let mut resend = Vec::new();
        for job in pending {
            if job.sends < MAX_ATTEMPTS {
                stats.resent.fetch_add(1, Ordering::Relaxed);
                resend.push(job);
            } else {
                fail(&self.shared, job, error.clone()).await;
            }
        }
        // Once every handle is gone nobody waits for them. Their callers wait on this
        // child, so this task reads the next one until they are answered.
        if !resend.is_empty()
            && let Some(slot) = self.slot.upgrade()
            && let Some(next) = send(&self.shared, &slot, resend).await
        {
            let mut reader = next.reader.lock().await;
            next.lead(&mut reader, Until::ResentAnswered).await;
        }
    }

    /// SIGKILLs the child's process group and reaps the child (bounded); returns how
    /// it ended. The first call does it; later calls find nothing to kill.
    async fn kill(self: Arc<Self>) -> String {
        let Some((mut child, stderr)) = lock(&self.process).take() else {
            return "already killed".to_string();
        };
        let _ = self.shared.stats.child_pid.compare_exchange(
            self.pid,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if let Ok(pid) = i32::try_from(self.pid)
            && pid > 0
        {
            // SAFETY: plain syscall; the child is not reaped yet (only `wait` below
            // reaps it), so its pid, which is also its group id, is still ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = child.start_kill();
        let status = tokio::time::timeout(Duration::from_millis(KILL_WAIT_MS), child.wait());
        let status = match status.await {
            Ok(Ok(status)) => describe(status),
            Ok(Err(e)) => format!("wait failed: {e}"),
            Err(_) => format!("not reaped within {KILL_WAIT_MS} ms"),
        };
        stderr.abort();
        status
    }

    /// While the child lives: every [`MONITOR_MS`], unless a caller leads, reads what
    /// nobody reads (an answer nobody asked for, or answers whose callers gave up),
    /// and stops the child once every handle is gone.
    async fn monitor(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(MONITOR_MS)).await;
            if lock(&self.queue).closed {
                return;
            }
            if self.slot.strong_count() == 0 {
                self.shut_down();
                return;
            }
            let Ok(mut reader) = self.reader.try_lock() else { continue };
            let idle = lock(&self.queue).pending.is_empty();
            if idle {
                drop(reader);
                self.check_idle();
            } else if let Led::Closed = self
                .lead(
                    &mut reader,
                    Until::IdleOr(Instant::now() + Duration::from_millis(MONITOR_MS)),
                )
                .await
            {
                return;
            }
        }
    }
}

/// Queues `jobs` on the live child (launching one if there is none) and writes
/// their frames, in order; returns the child's connection (`None`: no child could be
/// started, and the jobs are answered). Returns once the frames are written, or
/// handed to a task that finishes writing them (the pipe was full).
async fn send(shared: &Arc<Shared>, slot: &WriterSlot, mut jobs: Vec<Job>) -> Option<Arc<Conn>> {
    let mut writer = slot.clone().lock_owned().await;
    let (conn, frames) = loop {
        let live = match writer.take() {
            Some(live) => live,
            None => match spawn_child(shared, slot) {
                Ok(live) => live,
                Err(error) => {
                    for job in jobs {
                        job.answer(Err(error.clone()));
                    }
                    return None;
                }
            },
        };
        if lock(&live.conn.queue).pending.is_empty() {
            live.conn.check_idle();
        }
        let mut frames = VecDeque::with_capacity(jobs.len());
        {
            let mut queue = lock(&live.conn.queue);
            if queue.closed {
                // Given up on: the next turn launches another child.
                continue;
            }
            let now = Instant::now();
            for mut job in jobs.drain(..) {
                job.sends += 1;
                job.queued = now;
                frames.push_back(job.frame.clone());
                queue.pending.push_back(job);
            }
        }
        let conn = live.conn.clone();
        *writer = Some(live);
        break (conn, frames);
    };
    write_frames(writer, frames);
    Some(conn)
}

/// Writes `frames` while the pipe has room; if it fills, a task holding the writer
/// lock writes the rest (see the module doc: a frame is written whole or the child
/// dies).
fn write_frames(writer: OwnedMutexGuard<Option<Writer>>, mut frames: VecDeque<Bytes>) {
    let Some(live) = writer.as_ref() else { return };
    match write_now(live.stdin.get_ref(), &mut frames) {
        Ok(true) => {}
        Ok(false) => {
            tokio::spawn(finish_writing(writer, frames));
        }
        Err(e) => live.conn.write_failed(e),
    }
}

/// Writes without waiting; `Ok(false)` when the pipe is full with bytes left.
fn write_now(stdin: &File, frames: &mut VecDeque<Bytes>) -> std::io::Result<bool> {
    let mut stdin = stdin;
    while let Some(frame) = frames.front_mut() {
        match stdin.write(frame) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                frame.advance(n);
                if frame.is_empty() {
                    frames.pop_front();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The rest of [`write_frames`], holding the writer lock throughout; gives up when
/// the pipe takes no bytes for the request timeout.
async fn finish_writing(writer: OwnedMutexGuard<Option<Writer>>, mut frames: VecDeque<Bytes>) {
    let Some(live) = writer.as_ref() else { return };
    let timeout = live.conn.timeout;
    while !frames.is_empty() {
        let mut ready = match tokio::time::timeout(timeout, live.stdin.writable()).await {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => return live.conn.write_failed(e),
            Err(_) => {
                let message = format!("stdin took no bytes for {} ms", timeout.as_millis());
                return live.conn.write_failed(std::io::Error::other(message));
            }
        };
        match ready.try_io(|stdin| match write_now(stdin.get_ref(), &mut frames) {
            Ok(false) => Err(std::io::ErrorKind::WouldBlock.into()),
            other => other,
        }) {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => return live.conn.write_failed(e),
        }
    }
}

impl Conn {
    fn write_failed(&self, error: std::io::Error) {
        let mut queue = lock(&self.queue);
        if !queue.closed && queue.write_error.is_none() {
            queue.write_error = Some(error.to_string());
        }
        drop(queue);
        self.wake.notify_one();
    }
}

/// Launches a child and its stderr and monitor tasks.
fn spawn_child(shared: &Arc<Shared>, slot: &WriterSlot) -> Result<Writer, RedoError> {
    let config = &shared.config;
    let cannot = |e: std::io::Error| {
        let message = format!("cannot start {}: {e}", config.program);
        tracing::error!("walredo: {message}");
        failed(STEP_SPAWN, &message)
    };
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
    let mut child = command.spawn().map_err(cannot)?;
    let pid = child.id().unwrap_or(0);
    // From here on, dropping `child` kills it (`kill_on_drop`).
    let missing = || std::io::Error::other("a child pipe is missing");
    let stdin = child.stdin.take().ok_or_else(missing).and_then(|p| p.into_owned_fd());
    let stdout = child.stdout.take().ok_or_else(missing).and_then(|p| p.into_owned_fd());
    let stderr = child.stderr.take().ok_or_else(missing).map_err(cannot)?;
    let stdin = stdin.and_then(|fd| non_blocking(fd, Interest::WRITABLE)).map_err(cannot)?;
    let stdout = stdout.and_then(|fd| non_blocking(fd, Interest::READABLE)).map_err(cannot)?;
    shared.stats.spawns.fetch_add(1, Ordering::Relaxed);
    shared.stats.child_pid.store(pid, Ordering::Relaxed);
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let reader = ReaderState {
        frames: FrameReader::new(stdout),
        last_answer: Instant::now(),
        sleep: Box::pin(tokio::time::sleep(timeout)),
    };
    let conn = Arc::new(Conn {
        shared: shared.clone(),
        slot: Arc::downgrade(slot),
        pid,
        timeout,
        queue: Mutex::default(),
        wake: Notify::new(),
        reader: tokio::sync::Mutex::new(reader),
        process: Mutex::new(Some((child, tokio::spawn(log_stderr(pid, stderr))))),
    });
    tokio::spawn(conn.clone().monitor());
    tracing::info!("walredo: started child pid {pid}: {} {:?}", config.program, config.args);
    Ok(Writer { stdin, conn })
}

/// A pipe end as a non-blocking descriptor polled by tokio for `interest`.
fn non_blocking(fd: OwnedFd, interest: Interest) -> std::io::Result<AsyncFd<File>> {
    let raw = fd.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor this function owns.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the `File` owns the descriptor, which stays open, and refers to the same
    // pipe, until the `AsyncFd` drops it: nothing else reaches it by number.
    Ok(unsafe { AsyncFd::register_with_interest(File::from(fd), interest) }?)
}

/// Answers `job` with `error`, after saving its input for replay.
async fn fail(shared: &Shared, job: Job, mut error: RedoError) {
    if let Some(path) = shared.saver.lock().await.save(job.request()).await {
        shared.stats.saved_failures.fetch_add(1, Ordering::Relaxed);
        error.message = format!("{}; input saved to {path}", error.message);
    }
    job.answer(Err(error));
}

fn failed(step: &'static str, message: &str) -> RedoError {
    RedoError { step, message: message.to_string() }
}

fn describe(status: ExitStatus) -> String {
    status.to_string()
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
#[derive(Debug)]
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
