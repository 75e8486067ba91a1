//! The warm secondary: what a node placed `Secondary { warm: true }` keeps of a
//! tenant it does not hold, so that a later attach (a migration's cut-over) reads
//! its layers from local disk instead of downloading each on demand.
//!
//! # Purpose
//! A warm secondary follows the tenant's newest remote index of every timeline and
//! keeps a local copy of the layers it lists, in the directories an attach reads
//! (`tenants/{t}/timelines/{tl}/{layer}`, no generation suffix). An attach on this
//! node adopts those files like any local file at load: name and size against the
//! index it loads, the CRC32C on every read (a file that fails it is downloaded
//! again), so nothing is downloaded twice and nothing unverified is ever served.
//! One machine per tenant, owned by the tenant manager's `Slot::Secondary` (only
//! `warm: true` has one); `warm: false` downloads nothing.
//!
//! # States ([`Phase`])
//! `Idle` (waiting for [`SecondaryTimer::Refresh`]) → `Listing` (the tenant's
//! remote timelines) → `Reading` (one timeline at a time: its newest index, then
//! its local directory) → `Transferring` (downloads and removals) → `Idle`.
//! A refresh starts at once when the machine is made, then every
//! `refresh_interval_ms` after the previous one ended. [`WarmSecondary::handle_stop`]
//! drops the work not started; the machine is `Draining` until what is in flight
//! completes, then `Idle`.
//!
//! # Inputs, effects
//! Inputs, also as data ([`SecondaryInput`], [`WarmSecondary::handle`]):
//! [`WarmSecondary::handle_completion`] (by op id), [`WarmSecondary::handle_timeout`]
//! (the named timer), [`WarmSecondary::handle_stop`]. Effects
//! ([`SecondaryEffect`], each with an op id): list the tenant's remote timelines,
//! read one index, list one local timeline directory, download one layer
//! (streamed into a temporary file through the size and CRC32C check the index
//! records, renamed onto the layer's name only if it passes: the node's
//! `Io::RemoteGetFile`), read one local layer file back (`ReadLocal`), remove one
//! local file (an unlisted one, or the name of a
//! failed download: what a failed fsync left there is not trusted). Nothing else: a secondary **never
//! writes to remote storage and never deletes a remote object** (S-SINGLE-WRITER);
//! it has no generation.
//!
//! # Which index
//! The newest: the highest sequence of the highest generation listed
//! (`select_index` with no ceiling), as start-up and attach choose theirs below
//! their own generation. A tombstoned index (`deleted_at`) lists nothing to keep.
//! A tenant carrying a deletion mark is not followed (nothing downloaded).
//!
//! # Bounds (named, [`SecondaryConfig`])
//! - `download_concurrency`: downloads and removals in flight at once (reads:
//!   one at a time);
//! - `tenant_bytes_max`: layer bytes kept for the tenant; the newest layers (by
//!   end LSN) come first, and a layer that would pass the bound is left remote
//!   (counted in [`SecondaryStats::skipped_over_budget`]);
//! - `refresh_interval_ms`: time between two refreshes (also the retry of a failed
//!   listing, index read or download).
//!
//! # Invariants (`check_invariants`)
//! - in flight ≤ `download_concurrency`; `Listing` and `Reading` have exactly their
//!   one read in flight;
//! - queued work has something in flight (a refresh never stalls): `Transferring`
//!   with an empty queue has ops in flight, or it would be `Idle`;
//! - the timer is set exactly while `Idle`;
//! - every layer kept is one the newest index read lists, as it lists it, and its
//!   bytes passed the index's check (downloaded through it, or read back).
//!
//! # Local files
//! A listed timeline directory is reconciled against the index: a layer file the
//! index lists with the same size is kept if this machine downloaded or checked
//! it, and otherwise (left by an attached run, a previous machine, a crash) read
//! once and kept only if its CRC32C matches the index (`ReadLocal`: one whole
//! file in memory per op, at most `download_concurrency` at once); the index's
//! other layers, and a file that failed the check, are downloaded. A machine the
//! node starts after an operation (`with_adopt(false)`) reads nothing back: the
//! tenant may have been attached in this process, and a layer whose write failed
//! its fsync must never be read (FSYNC-TRUST), so every file it did not download is
//! downloaded again (a download replaces a same-named file whole, by rename); a layer
//! file the index does not list, a temporary file a crash left behind
//! (`{name}.{unique}.___temp`) or anything else that is not `metadata` is
//! removed. The directory is listed only when nothing of this machine is in
//! flight, so a temporary file found is never one of its own downloads.
//!
//! # Crash
//! Nothing here is durable: the local files are the whole state. A crash leaves
//! the layers downloaded so far (each whole: a name only appears by the rename of
//! a checked, fsynced file) and at most one temporary file per download in flight.
//! After restart the machine starts over with a refresh: files that match the
//! newest index (size and CRC32C, read back) are kept, the rest is downloaded. A temporary file never takes a
//! layer's place: the disk adapters hide `*.___temp` from listings (it goes with
//! the directory), and a listing that shows one (the in-memory worlds of the
//! tests) has it removed like any file the index does not list. A download still in flight when the machine is dropped (its slot
//! changed) lands a whole, checked file or nothing; its completion names a dropped
//! incarnation and is ignored. The node waits for a warm secondary's downloads
//! before any location_config changes its slot (`node/secondary.rs`), so none lands
//! after a detach renamed the directory or an attach listed it.

mod plan;
#[cfg(test)]
mod tests;

use crate::file_check::ExpectedFile;
use crate::id::{OpId, OpIds, TenantId, TimelineId};
use crate::index_part::{IndexVersion, LayerMeta};
use crate::io_error::IoError;
use crate::layer_name::LayerName;
use crate::time::Instant;
use std::collections::{BTreeMap, VecDeque};

/// Bounds of a warm secondary (per tenant). Units in the names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondaryConfig {
    /// Downloads (and local removals) in flight at once.
    pub download_concurrency: usize,
    /// Layer bytes kept locally for one tenant.
    pub tenant_bytes_max: u64,
    /// Time from the end of one refresh to the next.
    pub refresh_interval_ms: u64,
}

pub const DEFAULT_SECONDARY_DOWNLOAD_CONCURRENCY: usize = 4;
pub const DEFAULT_SECONDARY_TENANT_BYTES_MAX: u64 = 64 << 30;
pub const DEFAULT_SECONDARY_REFRESH_INTERVAL_MS: u64 = 60_000;

impl Default for SecondaryConfig {
    fn default() -> Self {
        SecondaryConfig {
            download_concurrency: DEFAULT_SECONDARY_DOWNLOAD_CONCURRENCY,
            tenant_bytes_max: DEFAULT_SECONDARY_TENANT_BYTES_MAX,
            refresh_interval_ms: DEFAULT_SECONDARY_REFRESH_INTERVAL_MS,
        }
    }
}

/// The one timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum SecondaryTimer {
    /// Time for the next refresh.
    Refresh,
}

/// What the machine asks of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondaryEffect {
    /// List `tenants/{t}/timelines/` in remote storage.
    ListTimelines { op: OpId },
    /// Read one index object.
    GetIndex { op: OpId, timeline: TimelineId, version: IndexVersion },
    /// List the timeline's local directory.
    ListLocal { op: OpId, timeline: TimelineId },
    /// Download the layer into its local file through the check of `expected`.
    Download { op: OpId, timeline: TimelineId, name: LayerName, meta: LayerMeta },
    /// Remove one local file of the timeline's directory.
    RemoveLocal { op: OpId, timeline: TimelineId, file: String },
    /// Read a local layer file this machine did not download, to check it against
    /// the index's size and CRC32C before keeping it.
    ReadLocal { op: OpId, timeline: TimelineId, name: LayerName },
}

impl SecondaryEffect {
    pub fn op(&self) -> OpId {
        match self {
            SecondaryEffect::ListTimelines { op }
            | SecondaryEffect::GetIndex { op, .. }
            | SecondaryEffect::ListLocal { op, .. }
            | SecondaryEffect::Download { op, .. }
            | SecondaryEffect::RemoveLocal { op, .. }
            | SecondaryEffect::ReadLocal { op, .. } => *op,
        }
    }

    /// The check a download's bytes must pass.
    pub fn expected(meta: &LayerMeta) -> ExpectedFile {
        ExpectedFile::from(meta)
    }
}

/// One listed object or directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub is_dir: bool,
    pub size_bytes: u64,
}

/// The completion of an effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondaryCompletion {
    Listing(Result<Vec<Listed>, IoError>),
    Bytes(Result<Vec<u8>, IoError>),
    Done(Result<(), IoError>),
}

/// Every input, as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondaryInput {
    Completion { op: OpId, completion: SecondaryCompletion },
    Timeout(SecondaryTimer),
    Stop,
}

/// An input the machine cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecondaryError {
    #[error("completion for op {0}, which is not in flight")]
    UnknownOp(OpId),
    #[error("op {op}: a {got} completion for a {expected} effect")]
    WrongKind { op: OpId, expected: &'static str, got: &'static str },
}

/// Where a refresh is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the refresh timer at `next`.
    Idle {
        next: Instant,
    },
    Listing,
    /// Reading the timelines still in `todo` (the first one is in flight).
    Reading,
    Transferring,
    /// Stopped: what is in flight completes, nothing new starts.
    Draining,
}

/// Counters (the node sums them into its metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondaryStats {
    pub downloaded_layers: u64,
    pub downloaded_bytes: u64,
    pub failed_downloads: u64,
    pub removed_files: u64,
    pub skipped_over_budget: u64,
    /// Local files found with the index's name and size whose bytes passed (kept)
    /// or failed (downloaded again) the CRC32C check.
    pub verified_layers: u64,
    pub mismatched_layers: u64,
    pub refreshes: u64,
    pub failed_reads: u64,
}

/// What an op in flight was for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum InFlight {
    ListTimelines,
    GetIndex { timeline: TimelineId },
    ListLocal { timeline: TimelineId },
    Download { timeline: TimelineId, name: LayerName, meta: LayerMeta },
    Remove { timeline: TimelineId },
    Verify { timeline: TimelineId, name: LayerName, meta: LayerMeta },
}

/// A queued transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Transfer {
    Download { timeline: TimelineId, name: LayerName, meta: LayerMeta },
    Remove { timeline: TimelineId, file: String },
    Verify { timeline: TimelineId, name: LayerName, meta: LayerMeta },
}

/// One tenant's warm secondary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmSecondary {
    tenant: TenantId,
    /// Who started it (the node: one of its op ids), so completions for a
    /// machine that was replaced are recognised.
    incarnation: OpId,
    config: SecondaryConfig,
    phase: Phase,
    ops: OpIds,
    in_flight: BTreeMap<OpId, InFlight>,
    /// Timelines (with the index chosen for each) still to read in this refresh.
    todo: VecDeque<(TimelineId, IndexVersion)>,
    /// The index of the timeline being read, between its read and its listing.
    reading: Option<(TimelineId, BTreeMap<LayerName, LayerMeta>)>,
    queue: VecDeque<Transfer>,
    /// Layers on local disk that the newest index read lists, as that index
    /// records them (kept or downloaded).
    kept: BTreeMap<(TimelineId, LayerName), LayerMeta>,
    /// The layers of the newest index read, per timeline.
    indexes: BTreeMap<TimelineId, BTreeMap<LayerName, LayerMeta>>,
    /// Bytes of `kept` plus the downloads queued or in flight, this refresh.
    budget_used: u64,
    effects: VecDeque<SecondaryEffect>,
    stats: SecondaryStats,
    /// Files it did not download are read back and kept if they match (see
    /// [`WarmSecondary::with_adopt`]); otherwise they are downloaded again.
    adopt: bool,
}

impl WarmSecondary {
    /// A machine for `tenant`; its first refresh starts at once.
    pub fn new(tenant: TenantId, config: SecondaryConfig, now: Instant) -> Self {
        let mut machine = WarmSecondary {
            tenant,
            incarnation: OpId(0),
            config,
            phase: Phase::Idle { next: now },
            ops: OpIds::default(),
            in_flight: BTreeMap::new(),
            todo: VecDeque::new(),
            reading: None,
            queue: VecDeque::new(),
            kept: BTreeMap::new(),
            indexes: BTreeMap::new(),
            budget_used: 0,
            effects: VecDeque::new(),
            stats: SecondaryStats::default(),
            adopt: true,
        };
        machine.start_refresh();
        machine
    }

    /// The same machine, named `incarnation` by whoever runs it.
    pub fn with_incarnation(mut self, incarnation: OpId) -> Self {
        self.incarnation = incarnation;
        self
    }

    /// Whether a layer file this machine did not download may be read back and kept
    /// (`true`, the default) or is downloaded again. The node says `false` for a
    /// machine started after start-up: the files may be ones this node process wrote
    /// while it held the tenant attached, and one whose write failed its fsync has
    /// unknown contents that must never be read back (FSYNC-TRUST). Files found at
    /// start-up predate the process (a crash leaves each its old or new durable
    /// version), so they are read back and checked.
    pub fn with_adopt(mut self, adopt: bool) -> Self {
        self.adopt = adopt;
        self
    }

    pub fn incarnation(&self) -> OpId {
        self.incarnation
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn stats(&self) -> SecondaryStats {
        self.stats
    }

    /// Ops in flight (a location_config waits for them: `node/secondary.rs`).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Layers on local disk that the newest index read lists.
    pub fn kept_layers(&self) -> impl Iterator<Item = (&TimelineId, &LayerName)> {
        self.kept.keys().map(|(tl, name)| (tl, name))
    }

    pub fn handle(&mut self, now: Instant, input: SecondaryInput) -> Result<(), SecondaryError> {
        match input {
            SecondaryInput::Completion { op, completion } => {
                self.handle_completion(now, op, completion)
            }
            SecondaryInput::Timeout(timer) => {
                self.handle_timeout(now, timer);
                Ok(())
            }
            SecondaryInput::Stop => {
                self.handle_stop(now);
                Ok(())
            }
        }
    }

    /// The named timer fired; a timer not set or not yet due does nothing.
    pub fn handle_timeout(&mut self, now: Instant, timer: SecondaryTimer) {
        match (timer, &self.phase) {
            (SecondaryTimer::Refresh, Phase::Idle { next }) if *next <= now => self.start_refresh(),
            (SecondaryTimer::Refresh, _) => {}
        }
    }

    /// Stop: no new download or read starts (queued removals do); what is in
    /// flight completes (`Draining`), then the machine idles until its next refresh.
    pub fn handle_stop(&mut self, now: Instant) {
        self.todo.clear();
        self.reading = None;
        // Removals still go (a failed download's file is not to be adopted).
        self.queue.retain(|t| matches!(t, Transfer::Remove { .. }));
        self.phase = Phase::Draining;
        self.pump(now);
    }

    pub fn poll_effect(&mut self) -> Option<SecondaryEffect> {
        self.effects.pop_front()
    }

    pub fn next_timer(&self) -> Option<(Instant, SecondaryTimer)> {
        match self.phase {
            Phase::Idle { next } => Some((next, SecondaryTimer::Refresh)),
            _ => None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    fn start_refresh(&mut self) {
        self.stats.refreshes += 1;
        self.phase = Phase::Listing;
        let op = self.ops.next_id();
        self.in_flight.insert(op, InFlight::ListTimelines);
        self.effects.push_back(SecondaryEffect::ListTimelines { op });
    }

    /// A refresh is over (or stopped and drained): idle until the next one.
    fn settle(&mut self, now: Instant) {
        let done = match self.phase {
            Phase::Transferring => self.queue.is_empty() && self.in_flight.is_empty(),
            Phase::Draining => self.in_flight.is_empty() && self.queue.is_empty(),
            Phase::Reading => self.in_flight.is_empty() && self.todo.is_empty(),
            Phase::Idle { .. } | Phase::Listing => false,
        };
        if done {
            self.phase = Phase::Idle { next: now.plus_millis(self.config.refresh_interval_ms) };
        }
    }

    /// Panics if a rule is broken (after every input in tests and debug builds).
    pub fn check_invariants(&self) {
        let n = self.in_flight.len();
        assert!(
            n <= self.config.download_concurrency.max(1),
            "{}: {n} ops in flight above download_concurrency {}",
            self.tenant,
            self.config.download_concurrency
        );
        match &self.phase {
            Phase::Idle { .. } => {
                assert!(n == 0 && self.queue.is_empty() && self.todo.is_empty(), "idle with work")
            }
            Phase::Listing => assert!(
                n == 1 && matches!(self.in_flight.values().next(), Some(InFlight::ListTimelines)),
                "listing without its listing in flight"
            ),
            Phase::Reading => assert!(n == 1, "reading with {n} reads in flight"),
            Phase::Transferring => {
                assert!(n > 0, "transferring with nothing in flight (a stall)");
                assert!(self.todo.is_empty(), "transferring with timelines still to read");
            }
            Phase::Draining => {
                assert!(n > 0, "draining with nothing in flight");
                let only_removals = self.queue.iter().all(|t| matches!(t, Transfer::Remove { .. }));
                assert!(only_removals, "draining with downloads queued");
            }
        }
        assert_eq!(self.next_timer().is_some(), matches!(self.phase, Phase::Idle { .. }));
        // A download is queued only within the byte bound.
        let downloading = self.queue.iter().any(|t| matches!(t, Transfer::Download { .. }))
            || self.in_flight.values().any(|f| matches!(f, InFlight::Download { .. }));
        assert!(
            !downloading || self.budget_used <= self.config.tenant_bytes_max,
            "{}: downloading with {} bytes counted, above tenant_bytes_max {}",
            self.tenant,
            self.budget_used,
            self.config.tenant_bytes_max
        );
        for ((tl, name), meta) in &self.kept {
            let listed = self.indexes.get(tl).and_then(|layers| layers.get(name));
            assert_eq!(
                listed,
                Some(meta),
                "{}: kept {tl}/{name} is not as its index lists it",
                self.tenant
            );
        }
    }
}
