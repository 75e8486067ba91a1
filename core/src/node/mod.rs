//! The node: every machine of one storage node, composed, and the routing between
//! them. Itself a machine with the common call protocol.
//!
//! # Purpose
//! A storage node runs an in-process control plane (the generation table, embedded
//! default), one deletion queue, and per attached tenant per timeline a
//! [`Timeline`] (ingest, layers, flush, reads) and an [`UploadQueue`] (what goes to
//! remote storage, in which order). Those machines never call each other: each
//! emits effects, and this module routes an effect addressed to another machine
//! into that machine's `handle_*` **within the same input** (so "a flushed layer is
//! in the upload queue's set whenever it is in the layer map" holds: #5635), and
//! turns effects on the world into primitive [`Io`] effects for the driver.
//!
//! # Call protocol
//! - Inputs: [`Node::handle_request`], [`Node::handle_io`] (completion of an
//!   [`Io`] by op id), [`Node::handle_timeout`] (the node fires each due machine
//!   timer by name, `timers.rs`), [`Node::handle_wall_clock_jump`] (from the driver's
//!   [`ClockWatch`](crate::time::ClockWatch); see [`crate::time`]).
//! - Outputs: [`Node::poll_effect`] ([`NodeEffect::Io`] to execute,
//!   [`NodeEffect::Reply`] to a request), [`Node::poll_timeout`],
//!   [`Node::drain_trace`] (one [`TraceLine`] per input and effect of every
//!   machine), getters.
//!
//! # States
//! `Starting(phase)` → `Active` → `ShuttingDown` → `Stopped`; `Starting` may end in
//! `Failed(reason)` (e.g. local tenants unknown to a fresh control-plane store).
//! Requests during start-up get 503; during shutdown `ShuttingDown`.
//!
//! # Start-up (see `startup/`)
//! List local tenants and read their `config-v1`; refuse to start if the control
//! plane does not know a local tenant (unless told to rebuild: then attach it with a
//! generation above everything in its remote storage and its local config);
//! re-attach (every tenant gets a new generation, durably, before anything is
//! written); rewrite each `config-v1` with it; recover the deletion queue from
//! `deletion/`; then per tenant list remote timelines, pick each index with
//! [`select_index`](crate::index_part::select_index), load it, reconcile local layer
//! files against it (remote is the truth) and start the timeline's machines.
//!
//! # Crash
//! The node holds nothing durable itself: a crash drops it, and start-up rebuilds
//! it from disk, the control-plane store and remote storage.

pub mod api;
mod completions;
mod cp_link;
mod create;
mod deletion;
mod emergency;
pub mod io;
mod isolation;
mod jobs;
mod location;
mod memory;
mod pump;
mod reads;
mod refusals;
mod requests;
mod routing;
mod secondary;
mod slots;
mod startup;
mod tenant_machine;
mod timers;
mod trace;

use crate::control_plane::{ControlPlane, TenantRecord};
use crate::deletion_queue::{DeletionQueue, DeletionQueueConfig};
use crate::id::{NodeId, OpId, OpIds, TenantId, TimelineId};
use crate::page_cache::{PageCache, PageCacheConfig, PageCacheStats};
use crate::scheduler::{JobKind, Scheduler, SchedulerConfig};
use crate::tenant::Slot;
use crate::time::{Instant, WallTime};
use crate::timeline::TimelineConfig;
use crate::trace::{Direction, TraceLine};
use crate::upload_queue::UploadQueueConfig;
use api::{ApiError, Request, RequestId, Response};
use io::{Io, IoResult};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use emergency::{EMERGENCY_RETRY_BASE_MS, EMERGENCY_RETRY_MAX_MS};
pub use refusals::RefusingMachine;
pub use routing::Route;
pub use slots::QueueCounts;
pub(crate) use slots::{BrokenReason, SlotState, TimelineSlot};
pub use startup::StartupPhase;
pub use tenant_machine::STOP_DRAIN_TIMEOUT_MS;
pub(crate) use tenant_machine::{Lifecycle, Tenant};

/// Configuration of a node's machines. Every bound has a unit in its name.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub upload: UploadQueueConfig,
    pub deletion: DeletionQueueConfig,
    pub timeline: TimelineConfig,
    /// How long a shutdown may wait for flush, upload and validation.
    pub shutdown_grace_ms: u64,
    /// How long a tenant's stop waits, once its machines are stopped, for its
    /// remote calls and reads still in flight before it abandons them (local
    /// writes are always waited for; see `tenant_machine.rs`, Crash).
    pub stop_drain_timeout_ms: u64,
    /// Start even if local tenants are unknown to the control plane, attaching them
    /// with a generation above any found in remote storage and local config.
    pub rebuild_generations: bool,
    /// Tenants whose start-up I/O runs at once.
    pub startup_concurrency: usize,
    /// The node-wide page cache (layer files and reconstructed values), shared by
    /// every timeline; see [`crate::page_cache`].
    pub page_cache: PageCacheConfig,
    /// The background-job scheduler shared by every timeline (compaction, GC,
    /// eviction).
    pub scheduler: SchedulerConfig,
    /// Catch a panic inside one timeline's or upload queue's handler and break only
    /// that tenant (see `isolation.rs`). Off by default: tests and the simulator
    /// keep it off so that a panic fails the run; only the tokio binary's server
    /// turns it on.
    pub isolate_tenant_panics: bool,
    /// Deadlines, retry budgets and backoff of calls to the control plane.
    pub control_plane: crate::control_plane::client::ClientConfig,
    /// The control plane is a remote service (`strata control`): the in-process
    /// table stays empty, so the start-up checks that read it (the lost-store
    /// rebuild, the generation-conflict listing) are skipped; see
    /// `startup/generations.rs`.
    pub remote_control_plane: bool,
    /// Tenants this node holds at most (`tenant/manager/limits.rs`); `None`: no
    /// bound.
    pub max_tenants: Option<usize>,
    /// Bytes of in-memory layers the node holds at most, summed over its timelines
    /// (`memory.rs`); `None`: no bound.
    pub max_in_memory_bytes: Option<u64>,
    /// Bounds and refresh interval of each warm secondary (`crate::secondary`).
    pub secondary: crate::secondary::SecondaryConfig,
}

impl NodeConfig {
    pub fn new(node_id: NodeId) -> Self {
        NodeConfig {
            node_id,
            upload: UploadQueueConfig::default(),
            deletion: DeletionQueueConfig::default(),
            // The node's page cache is the one bounded cache of layer files: the
            // timelines' own parsed-file caches are off under a node.
            timeline: TimelineConfig { layer_cache_bytes: 0, ..TimelineConfig::default() },
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            stop_drain_timeout_ms: STOP_DRAIN_TIMEOUT_MS,
            rebuild_generations: false,
            startup_concurrency: DEFAULT_STARTUP_CONCURRENCY,
            page_cache: PageCacheConfig::default(),
            scheduler: SchedulerConfig::default(),
            isolate_tenant_panics: false,
            control_plane: crate::control_plane::client::ClientConfig::default(),
            remote_control_plane: false,
            max_tenants: None,
            max_in_memory_bytes: None,
            secondary: crate::secondary::SecondaryConfig::default(),
        }
    }
}

pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
pub const DEFAULT_STARTUP_CONCURRENCY: usize = 16;

/// What the node asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEffect {
    Io {
        op: OpId,
        io: Io,
    },
    Reply {
        req: RequestId,
        result: Result<Response, ApiError>,
    },
    /// The node has stopped (after a shutdown, or a failed start); the driver exits.
    Stopped {
        clean: bool,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePhase {
    Starting(StartupPhase),
    Active,
    ShuttingDown { req: RequestId, deadline: Instant },
    Stopped,
    Failed(String),
}

/// Which machine an address names; used to drain effects after routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Machine {
    ControlPlane,
    /// The control-plane client (calls, deadlines, retries).
    ControlPlaneClient,
    DeletionQueue,
    Timeline(TenantId, TimelineId),
    Upload(TenantId, TimelineId),
    /// The tenant manager (slots, location_config).
    Manager,
    Scheduler,
    /// A warm secondary's machine, owned by its slot (`secondary.rs`).
    Secondary(TenantId),
    /// One attached tenant's own progress (`tenant_machine.rs`); sorts last, so the
    /// pump looks at it once the other machines are quiet.
    Tenant(TenantId),
}

pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) phase: NodePhase,
    pub(crate) now: Instant,
    pub(crate) wall: WallTime,
    pub(crate) cp: ControlPlane,
    pub(crate) dq: Option<DeletionQueue>,
    /// Background jobs of every timeline (see `jobs.rs`).
    pub(crate) scheduler: Scheduler,
    pub(crate) tenants: BTreeMap<TenantId, Tenant>,
    /// The slot of every tenant this node knows; `tenants` holds the machines of the
    /// attached ones.
    pub(crate) manager: crate::tenant::TenantManager,
    /// Request ids for operations the node starts itself (their replies go nowhere).
    pub(crate) internal_requests: u64,
    /// Set while the node runs without a control plane (see `emergency.rs`).
    pub(crate) emergency: Option<emergency::Emergency>,
    pub(crate) startup: startup::Startup,
    /// Tenants found with objects of a generation their control plane never granted
    /// (S-GEN-MONO), since start (metric).
    pub(crate) generation_conflicts_total: u64,
    pub(crate) ops: OpIds,
    pub(crate) routes: BTreeMap<OpId, Route>,
    /// Every call to the control plane goes through it (see `cp_link.rs`).
    pub(crate) cp_client: crate::control_plane::ControlPlaneClient,
    pub(crate) cp_waiters: BTreeMap<crate::control_plane::client::CallId, routing::CpWaiter>,
    pub(crate) dirty: BTreeSet<Machine>,
    /// Every machine's next deadline, kept current as machines are drained, so that
    /// `poll_timeout` and timer firing cost O(log n) per input, not O(tenants).
    pub(crate) timers: timers::TimerIndex,
    /// Wall-clock jumps reported by the driver, forward and backward (metric).
    pub(crate) wall_clock_jumps: [u64; 2],
    pub(crate) effects: VecDeque<NodeEffect>,
    pub(crate) trace: Vec<TraceLine>,
    /// Whether trace lines are built at all ([`Node::set_trace`]).
    pub(crate) trace_on: bool,
    /// Shared by every timeline; waiters of a layer read are timeline op ids.
    pub(crate) page_cache: PageCache<OpId>,
    /// Routed inputs a machine refused (bugs, see `refusals.rs`), per machine.
    pub(crate) refusals: refusals::Refusals,
    /// In-memory layer bytes of every timeline, the node's bound on them, and the
    /// ingests it refused (`memory.rs`).
    pub(crate) memory: memory::MemoryBudget,
    /// Warm secondaries' counters, summed over every machine run (metrics).
    pub(crate) secondary_totals: crate::secondary::SecondaryStats,
}

impl Node {
    /// Starts a node from what the control-plane store holds. Start-up I/O follows
    /// as effects.
    pub fn start(
        config: NodeConfig,
        now: Instant,
        wall: WallTime,
        cp_records: Vec<TenantRecord>,
    ) -> Self {
        let page_cache = PageCache::new(&config.page_cache);
        let scheduler = Scheduler::new(config.scheduler.clone());
        let cp_config = config.control_plane.clone();
        let max_tenants = config.max_tenants;
        let memory =
            memory::MemoryBudget { limit: config.max_in_memory_bytes, ..Default::default() };
        let mut node = Node {
            page_cache,
            config,
            phase: NodePhase::Starting(StartupPhase::ListTenants),
            now,
            wall,
            cp: ControlPlane::recover(cp_records),
            dq: None,
            scheduler,
            tenants: BTreeMap::new(),
            manager: {
                let mut manager = crate::tenant::TenantManager::default();
                manager.set_max_tenants(max_tenants);
                manager
            },
            emergency: None,
            internal_requests: 0,
            startup: startup::Startup::default(),
            generation_conflicts_total: 0,
            ops: OpIds::default(),
            routes: BTreeMap::new(),
            cp_client: crate::control_plane::ControlPlaneClient::new(cp_config),
            cp_waiters: BTreeMap::new(),
            dirty: BTreeSet::new(),
            timers: timers::TimerIndex::default(),
            wall_clock_jumps: [0; 2],
            effects: VecDeque::new(),
            refusals: refusals::Refusals::default(),
            memory,
            secondary_totals: Default::default(),
            trace: Vec::new(),
            trace_on: true,
        };
        node.trace_line("node", None, Direction::Input, "start".to_string());
        node.begin_startup();
        node.pump();
        node
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn phase(&self) -> &NodePhase {
        &self.phase
    }

    /// A request from a client. The answer comes as [`NodeEffect::Reply`].
    pub fn handle_request(
        &mut self,
        now: Instant,
        wall: WallTime,
        req: RequestId,
        request: Request,
    ) {
        self.advance_clock(now, wall);
        self.trace_lazy("node", None, Direction::Input, || {
            format!("request {req:?} {}", trace::describe_request(&request))
        });
        self.on_request(req, request);
        self.pump();
    }

    /// The completion of an [`Io`] effect.
    pub fn handle_io(&mut self, now: Instant, wall: WallTime, op: OpId, result: IoResult) {
        self.advance_clock(now, wall);
        self.trace_lazy("node", Some(op), Direction::Input, || format!("{result:?}"));
        let route = self.routes.remove(&op);
        let current = route.as_ref().is_none_or(|route| self.untrack_op(op, route));
        match route {
            // An op of a tenant incarnation that is gone (its stop gave up waiting
            // for it): dropped by identity, never handed to the new machines.
            Some(route) if !current => {
                self.on_io_of_dropped_tenant(route, result, "a replaced tenant incarnation")
            }
            // A tenant broken by a panic: its machines are gone (`isolation.rs`).
            Some(route) if self.machines_dropped(route.tenant()) => {
                self.on_io_of_dropped_tenant(route, result, "a broken tenant")
            }
            Some(route) => self.on_io_done(route, result),
            None => tracing::warn!(%op, "completion for an unknown op (ignored)"),
        }
        self.pump();
    }

    /// Fires every machine timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, wall: WallTime) {
        self.advance_clock(now, wall);
        self.trace_line("node", None, Direction::Input, "timeout".to_string());
        self.fire_timers();
        self.pump();
    }

    pub fn poll_effect(&mut self) -> Option<NodeEffect> {
        self.effects.pop_front()
    }

    /// The earliest deadline of any machine, and of the shutdown grace period.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.node_timers().map(|(at, _)| at);
        own.chain(self.timers.earliest()).min()
    }

    /// Trace lines produced since the last call, in order.
    pub fn drain_trace(&mut self) -> Vec<TraceLine> {
        std::mem::take(&mut self.trace)
    }

    /// Counters and size of the page cache (hits and misses by request and content
    /// kind, bytes, entries).
    pub fn page_cache_stats(&self) -> PageCacheStats {
        self.page_cache.stats()
    }

    pub fn page_cache(&self) -> &PageCache<OpId> {
        &self.page_cache
    }

    pub fn tenant_ids(&self) -> impl Iterator<Item = &TenantId> {
        self.tenants.keys()
    }

    /// Generation conflicts found since start (S-GEN-MONO): tenants whose remote
    /// storage holds a generation their control plane never granted; each is Broken.
    pub fn generation_conflicts_total(&self) -> u64 {
        self.generation_conflicts_total
    }

    /// Bytes of in-memory layers on the node, and ingests refused by its bound
    /// (`max_in_memory_bytes`) since start.
    pub fn in_memory_bytes(&self) -> (u64, u64) {
        (self.memory.total, self.memory.refusals)
    }

    /// Creates and attaches refused because the node holds `max_tenants` tenants.
    pub fn tenant_limit_refusals(&self) -> u64 {
        self.manager.tenant_limit_refusals()
    }

    /// The control-plane client's counters (calls, attempts, failures by kind).
    pub fn control_plane_client_stats(&self) -> crate::control_plane::client::ClientStats {
        self.cp_client.stats()
    }

    /// The tenant manager's slots (read-only).
    pub fn tenant_manager(&self) -> &crate::tenant::TenantManager {
        &self.manager
    }

    /// Background jobs of `kind` waiting for a scheduler slot.
    pub fn background_jobs_queued(&self, kind: JobKind) -> usize {
        self.scheduler.queued(kind)
    }

    /// Background jobs of `kind` holding a scheduler slot.
    pub fn background_jobs_running(&self, kind: JobKind) -> usize {
        self.scheduler.running(kind)
    }

    /// Panics if a rule is broken. The driver runs it after every input in debug
    /// builds, the simulator always.
    pub fn check_invariants(&self) {
        self.cp.check_invariants();
        self.cp_client.check_invariants();
        self.manager.check_invariants();
        if self.dirty.is_empty() {
            self.check_memory_count();
        }
        self.check_tenant_slots();
        self.page_cache.check_invariants();
        self.scheduler.check_invariants();
        // A timeline that leaves the node frees its jobs' slots as it leaves
        // (`jobs.rs`): no running job belongs to a timeline that is gone.
        for owner in self.scheduler.running_jobs() {
            let here = self.tenants.get(&owner.tenant);
            assert!(
                here.is_some_and(|t| t.timelines.contains_key(&owner.timeline)),
                "a running {:?} job of {}/{}, which left the node",
                owner.kind,
                owner.tenant,
                owner.timeline
            );
        }
        if let Some(dq) = &self.dq {
            dq.check_invariants();
        }
        for (tenant_id, tenant) in &self.tenants {
            for (timeline_id, slot) in &tenant.timelines {
                slot.timeline.check_invariants();
                slot.upload.check_invariants();
                // S-PROJECTED: visible ≤ projected ≤ disk_consistent ≤ last ingested.
                let (v, p) = (slot.upload.visible_lsn(), slot.upload.projected_lsn());
                let (d, l) =
                    (slot.timeline.disk_consistent_lsn(), slot.timeline.last_ingested_lsn());
                assert!(
                    v <= p && p <= d && d <= l,
                    "S-PROJECTED broken on {tenant_id}/{timeline_id}: visible {v} projected {p} disk_consistent {d} last_ingested {l}"
                );
            }
        }
        // The timer index matches every machine's own deadline (a machine whose
        // deadline changed without being drained would never be woken).
        let mut machines = vec![Machine::DeletionQueue];
        for (t, tenant) in &self.tenants {
            machines.push(Machine::Tenant(*t));
            assert!(
                !tenant.is_broken() || tenant.timelines.is_empty(),
                "broken tenant {t} holds machines"
            );
            for tl in tenant.timelines.keys() {
                machines.push(Machine::Timeline(*t, *tl));
                machines.push(Machine::Upload(*t, *tl));
            }
        }
        for m in machines {
            assert_eq!(
                self.timers.get(m),
                self.machine_timer(m).as_ref(),
                "timer index out of date for {m:?}"
            );
        }
        self.check_in_flight_counts();
        self.check_secondaries();
        let startup_routes =
            self.routes.values().filter(|r| matches!(r, Route::Startup(_))).count();
        assert_eq!(startup_routes, self.startup.in_flight, "start-up I/O miscounted");
        assert!(
            self.startup.in_flight <= self.config.startup_concurrency.max(1),
            "start-up I/O above its bound: {} > {}",
            self.startup.in_flight,
            self.config.startup_concurrency
        );
        for effect in &self.effects {
            if let NodeEffect::Io { op, .. } = effect {
                assert!(self.routes.contains_key(op), "effect {op} has no route");
            }
        }
    }

    /// The tenant manager and the tenant machines agree: an attached slot that is
    /// not broken has its machines once the node is active, and in every phase
    /// machines run only under an attached slot (in its mode and generation) or an
    /// operation in progress (start-up's loads among them).
    fn check_tenant_slots(&self) {
        if self.phase == NodePhase::Active {
            // A settled attached slot that is not broken has its tenant machine
            // (which alone holds its lifecycle).
            for (tenant, slot) in self.manager.slots() {
                if let Slot::Attached { broken: None, .. } = slot {
                    assert!(
                        self.tenants.contains_key(tenant),
                        "tenant {tenant} attached without its tenant machine"
                    );
                }
            }
        }
        // In every phase, start-up included: machines run only for a tenant the
        // manager placed (a settled attached slot, whose mode and generation they
        // run in) or is placing (an operation, start-up's loads among them).
        for (id, tenant) in &self.tenants {
            match self.manager.slot(*id) {
                Some(Slot::Attached { mode, .. }) => assert!(
                    tenant.mode == *mode && Some(tenant.generation) == mode.generation(),
                    "tenant {id} runs in {:?} at {}, its slot says {mode:?}",
                    tenant.mode,
                    tenant.generation
                ),
                Some(Slot::InProgress(_)) => {}
                other => panic!("tenant {id} has machines but no attached slot: {other:?}"),
            }
        }
    }

    pub(crate) fn advance_clock(&mut self, now: Instant, wall: WallTime) {
        // The driver's clock is monotonic; guard anyway so machines never see time go back.
        self.now = self.now.max(now);
        // The wall clock is taken as it is: a jump beyond the tolerance comes as its
        // own input first (`handle_wall_clock_jump`), never hidden by a clamp.
        self.wall = wall;
    }

    /// Emits an [`Io`] effect and remembers where its completion goes.
    pub(crate) fn emit_io(&mut self, route: Route, io: Io) {
        let op = self.ops.next_id();
        self.trace_lazy("node", Some(op), Direction::Effect, || format!("{io:?} for {route:?}"));
        self.track_op(op, &route, &io);
        self.routes.insert(op, route);
        self.effects.push_back(NodeEffect::Io { op, io });
    }

    pub(crate) fn reply(&mut self, req: RequestId, result: Result<Response, ApiError>) {
        self.trace_lazy("node", None, Direction::Effect, || {
            format!("reply {req:?} {}", trace::describe_result(&result))
        });
        self.effects.push_back(NodeEffect::Reply { req, result });
    }
}

#[cfg(test)]
mod bench;
#[cfg(test)]
mod startup_trace;
#[cfg(any(test, feature = "fuzzing"))]
pub mod tenant_world;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod world;
