//! The driver: one async loop that runs a [`Node`] on adapters.
//!
//! The same code builds for tokio and, with `--cfg madsim`, for the simulator; only
//! the adapters differ. It holds no business rule: each turn it waits for one input
//! (an I/O completion, the node's next deadline, or a request), feeds it with core's
//! time, drains every effect (spawning one task per [`Io`], answering replies), hands
//! the trace lines to the sink and, in debug builds, checks the node's invariants.
//!
//! The driver is the only clock reader, through a [`Clock`]: [`SystemClock`] in the
//! binary (`Instant` is milliseconds since the loop started, `std::time::Instant`,
//! which madsim makes virtual; `WallTime` is the system clock), a simulated clock
//! that runs fast or slow and jumps in the simulator (`strata_runtime_sim::clock`).
//! At every input the driver reads both clocks and compares them with the previous
//! reading ([`ClockWatch`]): a wall clock that moved more than
//! [`WALL_CLOCK_JUMP_TOLERANCE_MS`] further or less far than the monotonic clock
//! becomes a `handle_wall_clock_jump` input before the input itself (counted in
//! [`NodeStatus::wall_clock_jumps`]). The monotonic reading never goes back (asserted
//! in debug builds; clamped otherwise). Between two effects of one step the loop
//! yields, so that the simulator can kill the node between any two.
//!
//! With failpoints ([`run_with_failpoints`]; a node with `testing.failpoints` on),
//! each I/O's task first passes the failpoints `crate::failpoints` names for it.

use crate::trace_sink::TraceSink;
use std::collections::BTreeMap;
use std::sync::Arc;
use strata_adapters::disk::{Disk, DiskErrorKind};
use strata_adapters::failpoint::Failpoints;
use strata_adapters::generation_store::{GenerationStore, StoreError};
use strata_adapters::redo::Redo;
use strata_adapters::remote::{RemoteErrorKind, RemoteStorage, TransferError};
use strata_core::file_check::FileCheck;
use strata_core::id::OpId;
use strata_core::node::api::{ApiError, Request, RequestId, Response};
use strata_core::node::io::{Entry, Io, IoError, IoErrorKind, IoResult, IoTarget};
use strata_core::node::{Node, NodeConfig, NodeEffect};
use strata_core::time::{
    ClockWatch, Instant, JumpDirection, WALL_CLOCK_JUMP_TOLERANCE_MS, WallTime,
};
use tokio::sync::{mpsc, oneshot};

/// Where the driver reads time. Both readings of one input come from one call each;
/// `monotonic` never goes back.
pub trait Clock: Clone + Send + Sync + 'static {
    /// Monotonic milliseconds since an origin of the clock's choosing.
    fn monotonic(&self) -> Instant;
    /// Wall-clock time; it may jump either way.
    fn wall(&self) -> WallTime;
    /// How long to sleep on the runtime's timer for `monotonic` to advance by `ms`
    /// (a clock that runs fast or slow converts).
    fn sleep_for(&self, ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(ms)
    }
}

/// The machine's clocks: `std::time::Instant` since creation and `SystemTime`
/// (both virtual under madsim).
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    epoch: std::time::Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock { epoch: std::time::Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn wall(&self) -> WallTime {
        wall_now()
    }
}

/// The adapters one node runs on.
#[derive(Clone)]
pub struct Adapters<D, R, S, W> {
    pub disk: D,
    pub remote: R,
    pub store: S,
    pub redo: W,
}

/// A request and where its answer goes.
pub type Command = (Request, oneshot::Sender<Result<Response, ApiError>>);

/// The client side of a running driver: cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    inbox: mpsc::Sender<Command>,
}

impl NodeHandle {
    /// Sends a request and awaits the node's answer.
    pub async fn call(&self, request: Request) -> Result<Response, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.inbox.send((request, reply)).await.map_err(|_| ApiError::ShuttingDown)?;
        answer.await.map_err(|_| ApiError::ShuttingDown)?
    }
}

/// Depth of the request inbox: callers wait (async) when the node is this far behind.
pub const INBOX_CAPACITY: usize = 256;

pub fn channel() -> (NodeHandle, mpsc::Receiver<Command>) {
    let (inbox, rx) = mpsc::channel(INBOX_CAPACITY);
    (NodeHandle { inbox }, rx)
}

/// How a driver run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    pub clean: bool,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("loading the control-plane store failed: {0}")]
    StoreLoad(String),
}

/// Live view of the node for metrics and status, refreshed after every input.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
    pub phase: String,
    pub in_flight_io: usize,
    pub inputs: u64,
    /// The node's page-cache counters (`strata_page_cache_*`).
    pub page_cache: strata_core::page_cache::PageCacheStats,
    /// Per background-job kind: (kind, queued, running) in the node's scheduler.
    pub background_jobs: Vec<(strata_core::scheduler::JobKind, usize, usize)>,
    /// Failed disk and remote-storage effects since start, by
    /// [`IoError::kind_label`] (not-found answers, redo and store failures are not
    /// counted): `strata_io_errors_total{kind}`. A growing
    /// `access_denied`, `invalid_credentials` or `no_such_bucket` count is for an
    /// operator to fix; the node retries meanwhile.
    pub io_errors: BTreeMap<&'static str, u64>,
    /// Routed inputs a machine refused since start, by machine
    /// (`strata_machine_refusals_total{machine}`): each is a bug in the node.
    pub machine_refusals: BTreeMap<&'static str, u64>,
    /// Timelines in a disk-full episode: refusing ingest (503) or Broken `no_space`
    /// (`strata_timelines_disk_full`).
    pub timelines_disk_full: usize,
    /// Generation conflicts found since start (`strata_tenants_generation_conflict_total`).
    pub generation_conflicts_total: u64,
    /// Warm secondaries' downloads since start (`strata_secondary_downloaded_*`)
    /// and the warm secondaries running (`strata_secondary_tenants`).
    pub secondary: strata_core::secondary::SecondaryStats,
    pub warm_secondaries: usize,
    /// Creates and attaches refused by `limits.max_tenants` since start
    /// (`strata_http_limit_hits_total{limit="tenants"}`).
    pub tenant_limit_refusals_total: u64,
    /// In-memory layer bytes on the node (`strata_node_in_memory_bytes`) and ingests
    /// refused by `limits.max_in_memory_bytes` since start
    /// (`strata_http_limit_hits_total{limit="memory"}`).
    pub in_memory_bytes: u64,
    pub memory_limit_refusals_total: u64,
    /// Failed control-plane call attempts since start, by kind (`unreachable`,
    /// `timeout`, `refused`): `strata_control_plane_failures_total{kind}`.
    pub control_plane_failures: BTreeMap<&'static str, u64>,
    /// Wall-clock jumps beyond [`WALL_CLOCK_JUMP_TOLERANCE_MS`] since start, by
    /// direction (`forward`, `backward`): `strata_wall_clock_jumps_total{direction}`.
    pub wall_clock_jumps: BTreeMap<&'static str, u64>,
    /// Running without a control-plane answer to the start-up re-attach
    /// (`strata_node_emergency_mode`).
    pub emergency: bool,
    /// The upload and deletion queues' sizes (`strata_upload_queue_*`,
    /// `strata_deletion_queue_*`).
    pub queues: strata_core::node::QueueCounts,
    /// How long each start-up phase took, in the order they ended
    /// (`strata_startup_phase_seconds{phase}`).
    pub startup_phases_ms: Vec<(String, u64)>,
}

/// Times the start-up phases as the driver sees the node pass through them.
#[derive(Debug, Default)]
struct StartupTimes {
    current: Option<(strata_core::node::StartupPhase, Instant)>,
    ended: Vec<(String, u64)>,
}

impl StartupTimes {
    fn observe(&mut self, phase: &strata_core::node::NodePhase, now: Instant) {
        let phase = match phase {
            strata_core::node::NodePhase::Starting(p) => Some(*p),
            _ => None,
        };
        if self.current.map(|(p, _)| p) == phase {
            return;
        }
        if let Some((p, since)) = self.current.take() {
            self.ended.push((format!("{p:?}"), now.0.saturating_sub(since.0)));
        }
        self.current = phase.map(|p| (p, now));
    }
}

/// Runs `node_config`'s node until it stops, on the system clock. `status` is
/// refreshed after every input.
pub async fn run<D, R, S, W>(
    node_config: NodeConfig,
    adapters: Adapters<D, R, S, W>,
    inbox: mpsc::Receiver<Command>,
    trace: TraceSink,
    status: Arc<std::sync::Mutex<NodeStatus>>,
) -> Result<Stopped, DriverError>
where
    D: Disk,
    R: RemoteStorage,
    S: GenerationStore,
    W: Redo,
{
    run_with_clock(node_config, adapters, SystemClock::new(), inbox, trace, status).await
}

/// [`run`] on the given clock.
pub async fn run_with_clock<D, R, S, W, C>(
    node_config: NodeConfig,
    adapters: Adapters<D, R, S, W>,
    clock: C,
    inbox: mpsc::Receiver<Command>,
    trace: TraceSink,
    status: Arc<std::sync::Mutex<NodeStatus>>,
) -> Result<Stopped, DriverError>
where
    D: Disk,
    R: RemoteStorage,
    S: GenerationStore,
    W: Redo,
    C: Clock,
{
    run_with_failpoints(node_config, adapters, clock, None, inbox, trace, status).await
}

/// [`run_with_clock`], consulting `failpoints` (when given: a node with
/// `testing.failpoints` on) before each I/O at the sites `crate::failpoints` names.
pub async fn run_with_failpoints<D, R, S, W, C>(
    node_config: NodeConfig,
    adapters: Adapters<D, R, S, W>,
    clock: C,
    failpoints: Option<Failpoints>,
    mut inbox: mpsc::Receiver<Command>,
    trace: TraceSink,
    status: Arc<std::sync::Mutex<NodeStatus>>,
) -> Result<Stopped, DriverError>
where
    D: Disk,
    R: RemoteStorage,
    S: GenerationStore,
    W: Redo,
    C: Clock,
{
    let mut readings = Readings::new(&clock);
    let records = adapters.store.load().await.map_err(|e| DriverError::StoreLoad(e.to_string()))?;
    let (now, wall) = readings.read(&clock);
    let mut node = Node::start(node_config, now, wall, records);
    // Lines that go nowhere are not built (the simulator's swarms run so).
    node.set_trace(!trace.is_off());
    // With each result: whether it is a disk or remote-storage operation (the ones
    // `strata_io_errors_total` counts; a failed redo or store change is not I/O).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(OpId, IoResult, bool)>();
    let mut waiting: BTreeMap<RequestId, oneshot::Sender<Result<Response, ApiError>>> =
        BTreeMap::new();
    let mut next_request = 0u64;
    let mut in_flight = 0usize;
    let mut inputs = 0u64;
    let mut io_errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut inbox_open = true;
    let mut startup = StartupTimes::default();
    loop {
        // Drain every effect of the last input, yielding between two so a simulated
        // kill can land between any two effects.
        while let Some(effect) = node.poll_effect() {
            match effect {
                NodeEffect::Io { op, io } => {
                    in_flight += 1;
                    let (adapters, done_tx) = (adapters.clone(), done_tx.clone());
                    let storage = !matches!(
                        io,
                        Io::Redo { .. } | Io::StoreApply { .. } | Io::ControlPlaneSend { .. }
                    );
                    let failpoints = failpoints
                        .as_ref()
                        .map(|f| (f.clone(), crate::failpoints::sites(node.route_of(op), &io)));
                    tokio::spawn(async move {
                        let result = run_io(&adapters, failpoints, io).await;
                        // The loop may be gone (node stopped); the result then does not matter.
                        let _ = done_tx.send((op, result, storage));
                    });
                }
                NodeEffect::Reply { req, result } => {
                    if let Some(reply) = waiting.remove(&req) {
                        // The caller may have given up; the input still counted.
                        let _ = reply.send(result);
                    }
                }
                NodeEffect::Stopped { clean, reason } => {
                    for line in node.drain_trace() {
                        trace.record(&line);
                    }
                    for (_, reply) in std::mem::take(&mut waiting) {
                        let _ = reply.send(Err(ApiError::ShuttingDown));
                    }
                    return Ok(Stopped { clean, reason });
                }
            }
            // Trace lines go out before the yield, so a kill there loses none.
            for line in node.drain_trace() {
                trace.record(&line);
            }
            tokio::task::yield_now().await;
        }
        for line in node.drain_trace() {
            trace.record(&line);
        }
        if cfg!(debug_assertions) {
            node.check_invariants();
        }
        startup.observe(node.phase(), clock.monotonic());
        if let Ok(mut s) = status.lock() {
            *s = NodeStatus {
                phase: if node.in_emergency() {
                    format!("{:?} (emergency mode: control plane unavailable)", node.phase())
                } else {
                    format!("{:?}", node.phase())
                },
                in_flight_io: in_flight,
                emergency: node.in_emergency(),
                queues: node.queue_counts(),
                startup_phases_ms: startup.ended.clone(),
                inputs,
                page_cache: node.page_cache_stats(),
                generation_conflicts_total: node.generation_conflicts_total(),
                secondary: node.secondary_stats(),
                warm_secondaries: node.warm_secondaries(),
                tenant_limit_refusals_total: node.tenant_limit_refusals(),
                in_memory_bytes: node.in_memory_bytes().0,
                memory_limit_refusals_total: node.in_memory_bytes().1,
                control_plane_failures: node
                    .control_plane_client_stats()
                    .attempt_failures()
                    .into_iter()
                    .collect(),
                wall_clock_jumps: JumpDirection::ALL
                    .iter()
                    .map(|d| (d.label(), node.wall_clock_jumps_total(*d)))
                    .collect(),
                background_jobs: strata_core::scheduler::JobKind::ALL
                    .iter()
                    .map(|k| {
                        (*k, node.background_jobs_queued(*k), node.background_jobs_running(*k))
                    })
                    .collect(),
                io_errors: io_errors.clone(),
                timelines_disk_full: node.timelines_disk_full(),
                machine_refusals: node
                    .machine_refusals()
                    .into_iter()
                    .map(|(m, n)| (m.as_str(), n))
                    .collect(),
            };
        }
        let sleep_for =
            node.poll_timeout().map(|at| clock.sleep_for(at.millis_since(clock.monotonic())));
        tokio::select! {
            biased;
            Some((op, result, storage)) = done_rx.recv() => {
                in_flight -= 1;
                if let Some(failure) = result.failure()
                    && storage
                    && !failure.is_not_found()
                {
                    *io_errors.entry(failure.kind_label()).or_default() += 1;
                }
                let (now, wall) = readings.input(&clock, &mut node);
                node.handle_io(now, wall, op, result);
            }
            () = tokio::time::sleep(sleep_for.unwrap_or_default()), if sleep_for.is_some() => {
                let (now, wall) = readings.input(&clock, &mut node);
                node.handle_timeout(now, wall);
            }
            command = inbox.recv(), if inbox_open => match command {
                Some((request, reply)) => {
                    let req = RequestId(next_request);
                    next_request += 1;
                    waiting.insert(req, reply);
                    let (now, wall) = readings.input(&clock, &mut node);
                    node.handle_request(now, wall, req, request);
                }
                None => inbox_open = false,
            },
        }
        inputs += 1;
    }
}

/// The driver's view of its clock: the last monotonic reading (so it never goes
/// back) and the wall clock's watch.
struct Readings {
    last: Instant,
    watch: ClockWatch,
}

impl Readings {
    fn new(clock: &impl Clock) -> Self {
        let (now, wall) = (clock.monotonic(), clock.wall());
        Readings { last: now, watch: ClockWatch::new(now, wall, WALL_CLOCK_JUMP_TOLERANCE_MS) }
    }

    /// One reading of both clocks; the monotonic one never goes back.
    fn read(&mut self, clock: &impl Clock) -> (Instant, WallTime) {
        let (now, wall) = (clock.monotonic(), clock.wall());
        debug_assert!(now >= self.last, "the monotonic clock went back: {now} < {}", self.last);
        self.last = self.last.max(now);
        (self.last, wall)
    }

    /// The reading for an input: a wall-clock jump since the previous reading is
    /// fed to the node first, as its own input.
    fn input(&mut self, clock: &impl Clock, node: &mut Node) -> (Instant, WallTime) {
        let (now, wall) = self.read(clock);
        if let Some(jump) = self.watch.observe(now, wall) {
            node.handle_wall_clock_jump(now, wall, jump);
        }
        (now, wall)
    }
}

fn wall_now() -> WallTime {
    let since_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    WallTime::from_unix_millis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

/// Runs one [`Io`], after the failpoints it passes (if any): a failpoint's `error`
/// completes it without running it.
async fn run_io<D, R, S, W>(
    a: &Adapters<D, R, S, W>,
    failpoints: Option<(Failpoints, [Option<&'static str>; 2])>,
    io: Io,
) -> IoResult
where
    D: Disk,
    R: RemoteStorage,
    S: GenerationStore,
    W: Redo,
{
    if let Some((failpoints, sites)) = failpoints {
        let what = format!("{io:?}");
        for site in sites.into_iter().flatten() {
            if let Err(injected) = failpoints.hit(site, &what).await {
                return crate::failpoints::failed(&io, &injected);
            }
        }
    }
    execute(a, io).await
}

/// Runs one [`Io`] on the adapters and maps errors to what the machines branch on.
async fn execute<D, R, S, W>(a: &Adapters<D, R, S, W>, io: Io) -> IoResult
where
    D: Disk,
    R: RemoteStorage,
    S: GenerationStore,
    W: Redo,
{
    match io {
        Io::DiskWrite { path, bytes } => {
            IoResult::Done(a.disk.write_atomic(&path, bytes).await.map_err(disk_failure))
        }
        Io::DiskRead { path } => IoResult::Bytes(a.disk.read(&path).await.map_err(disk_failure)),
        Io::DiskRemove { path } => {
            IoResult::Done(a.disk.remove_file(&path).await.map_err(disk_failure))
        }
        Io::DiskCreateDir { path } => {
            IoResult::Done(a.disk.create_dir_all(&path).await.map_err(disk_failure))
        }
        Io::DiskRename { from, to } => {
            IoResult::Done(a.disk.rename(&from, &to).await.map_err(disk_failure))
        }
        Io::DiskRemoveDir { path } => {
            IoResult::Done(a.disk.remove_dir_all(&path).await.map_err(disk_failure))
        }
        Io::DiskList { path } => IoResult::Listing(
            a.disk
                .list_dir(&path)
                .await
                .map(|entries| {
                    entries
                        .into_iter()
                        .map(|e| Entry { name: e.name, is_dir: e.is_dir, size_bytes: e.size_bytes })
                        .collect()
                })
                .map_err(disk_failure),
        ),
        Io::RemotePut { key, bytes } => {
            IoResult::Done(a.remote.put(&key, bytes).await.map_err(remote_failure))
        }
        Io::RemotePutFile { key, path, expected } => IoResult::Done(
            a.remote
                .put_file(&key, &path, FileCheck::new(expected))
                .await
                .map(drop)
                .map_err(transfer_failure),
        ),
        Io::RemoteGet { key } => IoResult::Bytes(a.remote.get(&key).await.map_err(remote_failure)),
        Io::RemoteGetFile { key, path, expected } => IoResult::Done(
            a.remote
                .get_to_file(&key, &path, FileCheck::new(expected))
                .await
                .map(drop)
                .map_err(transfer_failure),
        ),
        Io::RemoteList { prefix } => IoResult::Listing(
            a.remote
                .list(&prefix)
                .await
                .map(|objects| {
                    objects
                        .into_iter()
                        .map(|o| Entry {
                            name: o.key.as_str().to_string(),
                            is_dir: false,
                            size_bytes: o.size_bytes,
                        })
                        .collect()
                })
                .map_err(remote_failure),
        ),
        Io::RemoteDelete { keys } => {
            IoResult::Done(a.remote.delete_objects(&keys).await.map_err(remote_failure))
        }
        Io::StoreApply { change } => {
            IoResult::Done(a.store.apply(&change).await.map_err(store_failure))
        }
        // The embedded control plane runs inside the node: the link is the store's
        // (the simulated store can refuse or delay it). A remote one (`cp_http`)
        // answers with its reply.
        Io::ControlPlaneSend { request } => match a.store.send(&request).await {
            Ok(None) => IoResult::Done(Ok(())),
            Ok(Some(reply)) => IoResult::CpReply(reply),
            Err(e) => IoResult::Done(Err(store_failure(e))),
        },
        Io::Redo { request } => IoResult::Bytes(
            a.redo
                .redo(request.encode())
                .await
                .map_err(|e| IoError::new(IoErrorKind::Permanent, IoTarget::Redo, e.to_string())),
        ),
    }
}

/// Local disk errors, kind for kind (the table is in `strata_adapters::disk`): a
/// full disk and a failed fsync keep their kinds, so that the machines can apply
/// their policies (`strata_core::io_error`).
fn disk_failure(e: strata_adapters::disk::DiskError) -> IoError {
    let kind = match e.kind {
        DiskErrorKind::NotFound => IoErrorKind::NotFound,
        DiskErrorKind::NoSpace => IoErrorKind::NoSpace,
        DiskErrorKind::FsyncFailed => IoErrorKind::FsyncFailed,
        DiskErrorKind::BadPath | DiskErrorKind::Io => IoErrorKind::Permanent,
    };
    IoError::local(kind, e.path, format!("{}: {}", e.op, e.message))
}

/// Remote-storage errors, kind for kind (the table is in `strata_adapters::remote`).
fn remote_failure(e: strata_adapters::remote::RemoteError) -> IoError {
    let kind = match e.kind {
        RemoteErrorKind::NotFound => IoErrorKind::NotFound,
        RemoteErrorKind::Transient => IoErrorKind::Transient,
        RemoteErrorKind::OperatorFixable(kind) => IoErrorKind::OperatorFixable(kind),
        RemoteErrorKind::Permanent => IoErrorKind::Permanent,
    };
    IoError::remote(kind, e.key, format!("{}: {}", e.op, e.message))
}

/// Streaming-transfer errors: the store's and the local disk's keep their kinds
/// (and name the key or the local path); a download the check refused is
/// `Corrupt`, naming the key.
fn transfer_failure(e: TransferError) -> IoError {
    match e {
        TransferError::Remote(e) => remote_failure(e),
        TransferError::Local(e) => disk_failure(e),
        TransferError::Corrupt { key, message } => {
            IoError::remote(IoErrorKind::Corrupt, key, message)
        }
        TransferError::CorruptSource { path, message } => IoError::local(
            IoErrorKind::Corrupt,
            path,
            format!("the local copy is corrupt: {message}"),
        ),
    }
}

/// Control-plane store errors: a failed or unknown commit is `Transient` (the
/// control plane fails the request; its caller retries), a store that does not
/// parse is `Corrupt`, a refused change `Permanent`.
fn store_failure(e: StoreError) -> IoError {
    let kind = match &e {
        StoreError::Io(_) => IoErrorKind::Transient,
        StoreError::Corrupt(_) => IoErrorKind::Corrupt,
        StoreError::SchemaTooNew { .. } | StoreError::Regression { .. } => IoErrorKind::Permanent,
    };
    IoError::new(kind, IoTarget::Store, e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn startup_times_record_each_phase_when_it_ends() {
        use strata_core::node::{NodePhase, StartupPhase};
        let mut t = super::StartupTimes::default();
        t.observe(&NodePhase::Starting(StartupPhase::ListTenants), Instant(10));
        t.observe(&NodePhase::Starting(StartupPhase::ListTenants), Instant(15));
        t.observe(&NodePhase::Starting(StartupPhase::ReAttach), Instant(40));
        t.observe(&NodePhase::Active, Instant(100));
        t.observe(&NodePhase::Active, Instant(200));
        assert_eq!(t.ended, vec![("ListTenants".to_string(), 30), ("ReAttach".to_string(), 60)]);
    }

    use super::*;
    use strata_adapters::disk::DiskError;
    use strata_adapters::remote::{FixableKind, RemoteError};

    #[test]
    fn every_disk_error_keeps_its_kind_and_path() {
        let cases = [
            (DiskErrorKind::NotFound, IoErrorKind::NotFound),
            (DiskErrorKind::NoSpace, IoErrorKind::NoSpace),
            (DiskErrorKind::FsyncFailed, IoErrorKind::FsyncFailed),
            (DiskErrorKind::BadPath, IoErrorKind::Permanent),
            (DiskErrorKind::Io, IoErrorKind::Permanent),
        ];
        let path = camino::Utf8Path::new("tenants/t/timelines/tl/layer");
        for (disk, core) in cases {
            let e = disk_failure(DiskError::new(disk, "write_atomic", path, "boom"));
            assert_eq!(e.kind, core, "{disk:?}");
            assert_eq!(e.target, IoTarget::Local(path.to_owned()));
            assert_eq!(e.message, "write_atomic: boom");
        }
    }

    #[test]
    fn every_remote_error_keeps_its_kind_and_key() {
        let cases = [
            (RemoteErrorKind::NotFound, IoErrorKind::NotFound),
            (RemoteErrorKind::Transient, IoErrorKind::Transient),
            (
                RemoteErrorKind::OperatorFixable(FixableKind::NoSuchBucket),
                IoErrorKind::OperatorFixable(FixableKind::NoSuchBucket),
            ),
            (RemoteErrorKind::Permanent, IoErrorKind::Permanent),
        ];
        for (remote, core) in cases {
            let e = remote_failure(RemoteError::new(remote, "put", "tenants/t/x", "boom"));
            assert_eq!(e.kind, core, "{remote:?}");
            assert_eq!(e.target, IoTarget::Remote("tenants/t/x".into()));
        }
    }

    #[test]
    fn store_errors_are_typed() {
        assert_eq!(store_failure(StoreError::Io("locked".into())).kind, IoErrorKind::Transient);
        assert_eq!(store_failure(StoreError::Corrupt("row".into())).kind, IoErrorKind::Corrupt);
        let too_new = StoreError::SchemaTooNew { found: 9, supported: 1 };
        assert_eq!(store_failure(too_new).kind, IoErrorKind::Permanent);
        assert_eq!(store_failure(StoreError::Io("x".into())).target, IoTarget::Store);
    }
}
