//! The simulated object store, owned by the simulated world.
//!
//! The node captures a [`SimRemote`] handle; objects, pending (delayed) requests
//! and the history of applied writes live behind it and survive node kills. A
//! request is applied at a point inside its latency (half before, half after), so
//! a node killed mid-request may or may not have applied it.
//!
//! Faults ([`crate::faults::site`]), each with its own probability:
//! - `remote.{put,get,list,delete}.transient`: the request fails before reaching
//!   the store (`Transient`).
//! - `remote.{put,delete}.lost_response`: the request is applied, the caller sees
//!   `Transient`.
//! - `remote.{put,delete}.delayed`: the caller sees `Transient` now; the request
//!   is applied later (after a seeded delay, by default 1–30 s), after any newer
//!   requests to the same key that landed meanwhile — an old layer or a delete
//!   arriving late.
//! - `remote.latency_spike`: one request takes seconds.
//! - `remote.access_denied`: an episode starts in which every write (PUT, DELETE)
//!   is refused with `OperatorFixable(AccessDenied)` and applies nothing, as a
//!   remote directory made read-only; it ends after a seeded time (by default
//!   1–10 s: an operator fixed the permissions) or when the world heals. Reads
//!   and listings still work (a read-only directory can be read).
//!
//! - `remote.get_to_file.corrupt`: a `get_to_file` hands the check a body with
//!   one byte flipped (the object in the store is intact), as a corruption on the
//!   way; the check refuses it and nothing is written locally.
//!
//! - `remote.complete.late`: the request runs on time (applied, or read), then
//!   its answer is held for 50 ms–3 s, so that later requests of the node complete
//!   first (completions reordered on purpose; `remote.latency_spike` stretches the
//!   latency before the request is applied as well as after).
//!
//! - `remote.rot` ([`SimRemote::rot`]): one bit of a stored object flips at rest,
//!   for good; asked by the single-node scenario's rot phase only.
//!
//! Streaming transfers ([`SimRemote::with_local_disk`]): `put_file` reads the
//! local file from the simulated disk, hands it to the check, and puts it as
//! `put` does (same fault sites) only if the check accepts it; `get_to_file` gets the object as `get` does, hands it to the check in
//! chunks of [`TRANSFER_CHUNK_BYTES`], and only if the check accepts writes it
//! with the simulated disk's `write_atomic` (temp file, fsync, rename, directory
//! fsync: the disk's crash rule applies to every step). The simulator holds every
//! object in memory anyway; what it checks is the order: nothing reaches the
//! target's name before the check accepted the whole body.
//!
//! Listing is strongly consistent (read-after-write, like S3 today) unless
//! [`SimRemoteConfig::list_lag_ms`] is set: then a listing shows the store as it
//! was that long ago (from the history).
//!
//! For checkers: [`SimRemote::objects`], [`SimRemote::get_now`] and
//! [`SimRemote::history`] (every applied put and delete, in order, with its
//! simulated time), all without faults or latency.

use crate::faults::{Faults, site};
use crate::sim_disk::SimDisk;
use camino::Utf8Path;
use madsim::rand::{Rng, thread_rng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use strata_adapters::disk::{Disk, DiskError, DiskErrorKind};
use strata_adapters::remote::{
    DownloadCheck, FixableKind, ListedObject, MAX_KEYS_PER_DELETE, RemoteError, RemoteErrorKind,
    RemoteStorage, TRANSFER_CHUNK_BYTES, TransferError,
};
use strata_core::remote_path::{INDEX_PART_FILE_NAME, RemoteKey};
use tokio::time::Instant;

/// Latencies and delays of the simulated object store.
#[derive(Clone, Debug)]
pub struct SimRemoteConfig {
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Added when `remote.latency_spike` fires.
    pub spike_min_ms: u64,
    pub spike_max_ms: u64,
    /// When a delayed request lands, counted from when the caller gave up.
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// 0: listings are strongly consistent. Otherwise a listing shows the store as
    /// of this long ago.
    pub list_lag_ms: u64,
    /// How long an access-denied episode lasts.
    pub denial_min_ms: u64,
    pub denial_max_ms: u64,
    /// How long `remote.complete.late` holds an answer after the request was
    /// applied (or read).
    pub late_min_ms: u64,
    pub late_max_ms: u64,
}

impl Default for SimRemoteConfig {
    fn default() -> Self {
        SimRemoteConfig {
            latency_min_ms: 5,
            latency_max_ms: 50,
            spike_min_ms: 1_000,
            spike_max_ms: 5_000,
            delay_min_ms: 1_000,
            delay_max_ms: 30_000,
            list_lag_ms: 0,
            denial_min_ms: 1_000,
            denial_max_ms: 10_000,
            late_min_ms: 50,
            late_max_ms: 3_000,
        }
    }
}

/// What an applied request did to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryOp {
    Put {
        size_bytes: u64,
    },
    /// `existed`: whether there was an object to delete.
    Delete {
        existed: bool,
    },
}

/// One applied write or delete, as the store saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Position in the store's order of application (0, 1, 2, ...).
    pub seq: u64,
    /// Simulated time of application, since the store was created.
    pub at: Duration,
    pub key: RemoteKey,
    pub op: HistoryOp,
    /// Applied late by a delayed request (the caller had been told it failed).
    pub late: bool,
    /// How many crashes its writer had seen when it was applied: requests applied
    /// on time belong to the writer's run of that number.
    pub epoch: u64,
    /// Which node's handle sent it ([`SimRemote::for_writer`]; 0 in a one-node world).
    pub writer: u64,
    /// Simulated time the caller sent it (a delayed request lands long after).
    pub issued: Duration,
    /// The body of a PUT of an index (`index_part.json…`), so that checkers can
    /// replay what every index referenced when it landed. `None` otherwise.
    pub body: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
enum Request {
    Put { key: RemoteKey, body: Vec<u8> },
    Delete { keys: Vec<RemoteKey> },
}

#[derive(Debug)]
struct Pending {
    due: Instant,
    request: Request,
    /// Who sent it and when.
    from: Origin,
}

/// Who sent a request and when.
#[derive(Clone, Copy, Debug)]
struct Origin {
    writer: u64,
    issued: Instant,
}

#[derive(Debug)]
struct State {
    objects: BTreeMap<RemoteKey, Vec<u8>>,
    history: Vec<HistoryEntry>,
    /// Delayed requests by (due time, arrival order).
    pending: BTreeMap<(Instant, u64), Pending>,
    next_pending: u64,
    /// Per writer, its crashes so far (see [`SimRemote::crash`]).
    epochs: BTreeMap<u64, u64>,
    /// Writes are refused until then (an access-denied episode).
    denied_until: Option<Instant>,
    created: Instant,
    config: SimRemoteConfig,
    brk: StoreBreak,
}

/// A deliberate break of the object store, for a test that shows a checker
/// failing (`sim-tests`: `single_node_breaks_are_caught`); the swarm never sets one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreBreak {
    #[default]
    None,
    /// The first index PUT of each timeline is answered "done" and dropped: the
    /// node reports a timeline Active whose index is not durable (S-ACTIVE-UPLOADED).
    LoseFirstIndex,
    /// Every index PUT past the first of its generation is stored with each layer
    /// relabelled to the index's own generation, as an eviction that rebuilt layer
    /// metadata from the current generation would write it (S-GEN-SUFFIX).
    RelabelLayerGenerations,
    /// `get_to_file` writes what it got without asking the caller's check, as an
    /// adapter that never verified a download would: a rotted layer (`remote.rot`)
    /// lands under its name (the rot phase must notice).
    UncheckedDownloads,
    /// A layer PUT is answered done at once and applied 2 s later, as a store
    /// acknowledging before it is durable would: an index naming the layer can
    /// land first (S-IDX-ORDER).
    AckedLayersLandLate,
    /// Every index PUT past the first of its timeline fails (503) and is not
    /// applied, tombstones aside: nothing becomes visible after the timeline's
    /// creation (L-UPLOAD).
    FailsLaterIndexPuts,
    /// A DELETE of an index is answered done and not applied: a deleted
    /// timeline's tombstone and old indexes stay for ever (L-DELETE).
    IgnoresIndexDeletes,
    /// A DELETE of layers also deletes the next layer object of the same timeline
    /// in key order, which the node did not ask for: a layer an index still
    /// names is gone (S-IDX-REF, S-DEL-AFTER-INDEX).
    DeletesANeighbour,
}

/// How late [`StoreBreak::AckedLayersLandLate`] applies a layer PUT.
const ACKED_LAYER_LANDS_AFTER: Duration = Duration::from_secs(2);

impl State {
    fn apply(&mut self, at: Instant, request: Request, late: bool, from: Origin) {
        let at = at.duration_since(self.created);
        let from = (from.writer, from.issued.duration_since(self.created));
        match request {
            Request::Put { key, body } => {
                let Some(body) = self.broken(&key, body) else { return };
                let op = HistoryOp::Put { size_bytes: body.len() as u64 };
                let kept = key.file_name().starts_with(INDEX_PART_FILE_NAME).then(|| body.clone());
                self.record(at, key.clone(), op, (late, from), kept);
                self.objects.insert(key, body);
            }
            Request::Delete { keys } => {
                for key in keys {
                    let existed = self.objects.remove(&key).is_some();
                    self.record(at, key, HistoryOp::Delete { existed }, (late, from), None);
                }
            }
        }
    }

    /// What a deliberately broken store does with a PUT: `None` drops it.
    fn broken(&self, key: &RemoteKey, body: Vec<u8>) -> Option<Vec<u8>> {
        let Some((tenant, timeline)) = crate::checkers::timeline_of(key) else { return Some(body) };
        let Some(Ok(version)) = strata_core::remote_path::parse_index_key(tenant, timeline, key)
        else {
            return Some(body);
        };
        match self.brk {
            StoreBreak::None
            | StoreBreak::UncheckedDownloads
            | StoreBreak::AckedLayersLandLate
            | StoreBreak::FailsLaterIndexPuts
            | StoreBreak::IgnoresIndexDeletes
            | StoreBreak::DeletesANeighbour => Some(body),
            StoreBreak::LoseFirstIndex => {
                let prefix = strata_core::remote_path::timeline_prefix(tenant, timeline);
                let seen = (self.history.iter()).any(|h| {
                    h.key.as_str().starts_with(&prefix)
                        && h.key.file_name().starts_with(INDEX_PART_FILE_NAME)
                });
                seen.then_some(body)
            }
            StoreBreak::RelabelLayerGenerations => {
                let Ok(mut index) = strata_core::index_part::IndexPart::from_json_bytes(&body)
                else {
                    return Some(body);
                };
                if version.seq < 2 {
                    return Some(body);
                }
                for meta in index.layer_metadata.values_mut() {
                    meta.generation = version.generation;
                }
                Some(index.to_json_bytes())
            }
        }
    }

    fn record(
        &mut self,
        at: Duration,
        key: RemoteKey,
        op: HistoryOp,
        (late, (writer, issued)): (bool, (u64, Duration)),
        body: Option<Vec<u8>>,
    ) {
        let seq = self.history.len() as u64;
        let epoch = self.epochs.get(&writer).copied().unwrap_or(0);
        let late_text = if late { " (late: its caller was told it failed)" } else { "" };
        crate::sim_trace::record(
            crate::sim_trace::Lane::Named(crate::sim_trace::STORE_LANE),
            "remote",
            "-",
            "input",
            format_args!("{op:?} {} by writer {writer}{late_text}", key.as_str()),
        );
        self.history.push(HistoryEntry { seq, at, key, op, late, body, epoch, writer, issued });
    }

    /// Applies the delayed requests that are due by `now`, in due order.
    fn settle(&mut self, now: Instant) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            self.apply(p.due, p.request, true, p.from);
        }
    }

    /// Keys and sizes as of `at` (replayed from the history).
    fn listing_as_of(&self, at: Duration) -> BTreeMap<RemoteKey, u64> {
        let mut out = BTreeMap::new();
        for h in self.history.iter().take_while(|h| h.at <= at) {
            match h.op {
                HistoryOp::Put { size_bytes } => {
                    out.insert(h.key.clone(), size_bytes);
                }
                HistoryOp::Delete { .. } => {
                    out.remove(&h.key);
                }
            }
        }
        out
    }
}

/// The simulated object store (a handle: clones share one store).
#[derive(Clone, Debug)]
pub struct SimRemote {
    state: Arc<Mutex<State>>,
    faults: Faults,
    /// The node's disk, for `put_file` and `get_to_file`.
    local: Option<SimDisk>,
    /// Which node this handle writes for (history's `writer`).
    writer: u64,
}

impl Default for SimRemote {
    fn default() -> Self {
        SimRemote::new()
    }
}

impl SimRemote {
    /// An empty store with its own fault settings (all off). Call inside the
    /// simulation (it reads the simulated clock).
    pub fn new() -> SimRemote {
        SimRemote::with_faults(Faults::new(), SimRemoteConfig::default())
    }

    pub fn with_faults(faults: Faults, config: SimRemoteConfig) -> SimRemote {
        let state = State {
            objects: BTreeMap::new(),
            history: Vec::new(),
            pending: BTreeMap::new(),
            next_pending: 0,
            epochs: BTreeMap::new(),
            denied_until: None,
            created: Instant::now(),
            config,
            brk: StoreBreak::None,
        };
        SimRemote { state: Arc::new(Mutex::new(state)), faults, local: None, writer: 0 }
    }

    /// Breaks the store on purpose (a test showing a checker failing; never the swarm).
    pub fn set_break(&self, brk: StoreBreak) {
        self.lock().brk = brk;
    }

    /// A handle to the same store for node `writer` (a cluster's pageservers
    /// share one store): its writes are recorded as that node's, and
    /// [`SimRemote::crash`] counts that node's crashes. No local disk until
    /// [`SimRemote::with_local_disk`].
    pub fn for_writer(&self, writer: u64) -> SimRemote {
        SimRemote { local: None, writer, ..self.clone() }
    }

    /// This handle with the node's disk: `put_file` reads from it, `get_to_file`
    /// writes to it. Without one they fail with `BadPath`.
    pub fn with_local_disk(mut self, disk: SimDisk) -> SimRemote {
        self.local = Some(disk);
        self
    }

    fn local(&self, op: &'static str, path: &Utf8Path) -> Result<&SimDisk, DiskError> {
        self.local.as_ref().ok_or_else(|| {
            DiskError::new(DiskErrorKind::BadPath, op, path, "no local disk (with_local_disk)")
        })
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.settle(Instant::now());
        state
    }

    /// This handle's node crashed: its requests applied from now on belong to its
    /// next run.
    pub fn crash(&self) {
        *self.lock().epochs.entry(self.writer).or_insert(0) += 1;
    }

    /// Every object now (after applying what is due).
    pub fn objects(&self) -> BTreeMap<RemoteKey, Vec<u8>> {
        self.lock().objects.clone()
    }

    /// `remote.rot`: one bit of the object at `key` flips at rest, for good (a
    /// later PUT of the key replaces it). Returns whether there was an object.
    pub fn rot(&self, key: &RemoteKey) -> bool {
        let mut s = self.lock();
        let Some(body) = s.objects.get_mut(key).filter(|b| !b.is_empty()) else { return false };
        let at = thread_rng().gen_range(0..body.len() * 8);
        body[at / 8] ^= 1 << (at % 8);
        crate::sim_trace::record(
            crate::sim_trace::Lane::Named(crate::sim_trace::STORE_LANE),
            "remote",
            "-",
            "input",
            format_args!("{} rotted: bit {at} flipped at rest", key.as_str()),
        );
        true
    }

    /// The objects now under `prefix` (after applying what is due), with their
    /// bodies.
    pub fn objects_under(&self, prefix: &str) -> BTreeMap<RemoteKey, Vec<u8>> {
        let s = self.lock();
        s.objects
            .iter()
            .filter(|(k, _)| k.as_str().starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn get_now(&self, key: &RemoteKey) -> Option<Vec<u8>> {
        self.lock().objects.get(key).cloned()
    }

    /// Every applied put and delete so far, in order of application.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.lock().history.clone()
    }

    /// Delayed requests not applied yet.
    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// When the last delayed request will land, if any (a liveness check waits
    /// past it).
    pub fn last_pending_due(&self) -> Option<Instant> {
        self.lock().pending.last_key_value().map(|(k, _)| k.0)
    }

    /// Half of one request's latency.
    async fn half_latency(&self, spike: bool) {
        let (min, max, smin, smax) = {
            let s = self.lock();
            let c = &s.config;
            (c.latency_min_ms, c.latency_max_ms, c.spike_min_ms, c.spike_max_ms)
        };
        let mut ms = thread_rng().gen_range(min..=max.max(min));
        if spike {
            ms += thread_rng().gen_range(smin..=smax.max(smin));
        }
        tokio::time::sleep(Duration::from_micros(ms * 500)).await;
    }

    /// Runs a write (put or delete) through the fault sites: applied now, lost
    /// response, delayed, or refused. `issued`: when the caller asked for it (a
    /// `put_file` reads its local file first).
    async fn write(
        &self,
        op: &'static str,
        key: &str,
        request: Request,
        (sites, issued): ([&'static str; 3], Instant),
    ) -> Result<(), RemoteError> {
        let [transient, lost_response, delayed] = sites;
        let from = Origin { writer: self.writer, issued };
        let spike = self.faults.fire(site::REMOTE_LATENCY_SPIKE);
        self.half_latency(spike).await;
        self.faults.hold(site::REMOTE_HOLD_CALL, key, crate::faults::REMOTE_HOLD_CALL_MS).await;
        if self.write_denied() {
            self.half_latency(spike).await;
            let kind = RemoteErrorKind::OperatorFixable(FixableKind::AccessDenied);
            let why = "Permission denied (os error 13) (simulated read-only directory)";
            return Err(RemoteError::new(kind, op, key, why));
        }
        let outcome = if let Some(outcome) = self.write_break(&request, from) {
            outcome
        } else if self.faults.fire(transient) {
            Err("service unavailable (simulated 503)")
        } else if self.faults.fire(delayed) {
            let mut s = self.lock();
            let (dmin, dmax) = (s.config.delay_min_ms, s.config.delay_max_ms);
            let due = Instant::now()
                + Duration::from_millis(thread_rng().gen_range(dmin..=dmax.max(dmin)));
            let order = s.next_pending;
            s.next_pending += 1;
            s.pending.insert((due, order), Pending { due, request, from });
            Err("timed out (the request will still land)")
        } else {
            self.lock().apply(Instant::now(), request, false, from);
            if self.faults.fire(lost_response) {
                Err("connection reset after the request was applied")
            } else {
                Ok(())
            }
        };
        self.half_latency(spike).await;
        outcome.map_err(|m| RemoteError::new(RemoteErrorKind::Transient, op, key, m))
    }

    /// What a [`StoreBreak`] does with a write instead of the normal path, if
    /// anything.
    fn write_break(&self, request: &Request, from: Origin) -> Option<Result<(), &'static str>> {
        let mut s = self.lock();
        let is_index = |key: &RemoteKey| key.file_name().starts_with(INDEX_PART_FILE_NAME);
        let dir = |key: &RemoteKey| key.as_str().rsplit_once('/').map(|(d, _)| d.to_owned());
        let has_index = |s: &State, key: &RemoteKey| {
            s.history.iter().any(|h| is_index(&h.key) && dir(&h.key) == dir(key))
        };
        match (s.brk, request) {
            (StoreBreak::AckedLayersLandLate, Request::Put { key, .. })
                if crate::checkers::timeline_of(key).is_some() && !is_index(key) =>
            {
                let due = Instant::now() + ACKED_LAYER_LANDS_AFTER;
                let order = s.next_pending;
                s.next_pending += 1;
                s.pending.insert((due, order), Pending { due, request: request.clone(), from });
                Some(Ok(()))
            }
            (StoreBreak::FailsLaterIndexPuts, Request::Put { key, body }) if is_index(key) => {
                // A tombstone still lands: a timeline deletion is not what this breaks.
                let index = strata_core::index_part::IndexPart::from_json_bytes(body);
                if index.is_ok_and(|i| i.deleted_at.is_some()) {
                    return None;
                }
                has_index(&s, key)
                    .then_some(Err("service unavailable (simulated 503, a broken store)"))
            }
            (StoreBreak::IgnoresIndexDeletes, Request::Delete { keys })
                if keys.iter().any(is_index) =>
            {
                let rest: Vec<RemoteKey> = keys.iter().filter(|k| !is_index(k)).cloned().collect();
                s.apply(Instant::now(), Request::Delete { keys: rest }, false, from);
                Some(Ok(()))
            }
            (StoreBreak::DeletesANeighbour, Request::Delete { keys }) => {
                let first = keys.iter().find(|k| !is_index(k) && dir(k).is_some())?;
                let neighbour = s
                    .objects
                    .range::<RemoteKey, _>((
                        std::ops::Bound::Excluded(first),
                        std::ops::Bound::Unbounded,
                    ))
                    .map(|(k, _)| k.clone())
                    .find(|k| !keys.contains(k))
                    .filter(|k| dir(k) == dir(first) && !is_index(k))?;
                let mut keys = keys.clone();
                keys.push(neighbour);
                s.apply(Instant::now(), Request::Delete { keys }, false, from);
                Some(Ok(()))
            }
            _ => None,
        }
    }

    async fn put_issued(
        &self,
        key: &RemoteKey,
        body: Vec<u8>,
        issued: Instant,
    ) -> Result<(), RemoteError> {
        let sites =
            [site::REMOTE_PUT_TRANSIENT, site::REMOTE_PUT_LOST_RESPONSE, site::REMOTE_PUT_DELAYED];
        let request = Request::Put { key: key.clone(), body };
        self.write("put", key.as_str(), request, (sites, issued)).await
    }

    /// Whether writes are refused now: an access-denied episode is under way, or
    /// `remote.access_denied` fires and one starts. Healing ends any episode.
    fn write_denied(&self) -> bool {
        if self.faults.is_healed() {
            return false;
        }
        let now = Instant::now();
        if self.lock().denied_until.is_some_and(|until| now < until) {
            return true;
        }
        if !self.faults.fire(site::REMOTE_ACCESS_DENIED) {
            return false;
        }
        let mut s = self.lock();
        let (min, max) = (s.config.denial_min_ms, s.config.denial_max_ms);
        s.denied_until =
            Some(now + Duration::from_millis(thread_rng().gen_range(min..=max.max(min))));
        true
    }

    /// The common path of a read: latency, the transient site, then `f`.
    async fn read<T>(
        &self,
        op: &'static str,
        key: &str,
        transient: &'static str,
        f: impl FnOnce(&State) -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        let spike = self.faults.fire(site::REMOTE_LATENCY_SPIKE);
        self.half_latency(spike).await;
        let outcome = if self.faults.fire(transient) {
            Err(RemoteError::new(RemoteErrorKind::Transient, op, key, "simulated 503"))
        } else {
            f(&self.lock())
        };
        self.half_latency(spike).await;
        outcome
    }
}

impl RemoteStorage for SimRemote {
    async fn put(&self, key: &RemoteKey, body: Vec<u8>) -> Result<(), RemoteError> {
        self.answer(self.put_issued(key, body, Instant::now()).await).await
    }

    async fn get(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
        self.answer(self.get_on_time(key).await).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
        self.answer(self.list_on_time(prefix).await).await
    }

    async fn delete_objects(&self, keys: &[RemoteKey]) -> Result<(), RemoteError> {
        self.answer(self.delete_objects_on_time(keys).await).await
    }

    async fn put_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        self.answer(self.put_file_on_time(key, path, check).await).await
    }

    async fn get_to_file<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        check: C,
    ) -> Result<u64, TransferError> {
        self.answer(self.get_to_file_on_time(key, path, check).await).await
    }
}

/// The requests, answered on time; [`RemoteStorage`] above holds an answer when
/// `remote.complete.late` fires.
impl SimRemote {
    /// `remote.complete.late`: the request is done (applied, read, or failed); its
    /// answer waits 50 ms–3 s more if the site fires.
    async fn answer<T>(&self, result: T) -> T {
        let range = {
            let s = self.lock();
            (s.config.late_min_ms, s.config.late_max_ms)
        };
        self.faults.late(site::REMOTE_COMPLETE_LATE, range).await;
        result
    }

    async fn get_on_time(&self, key: &RemoteKey) -> Result<Vec<u8>, RemoteError> {
        self.read("get", key.as_str(), site::REMOTE_GET_TRANSIENT, |s| {
            s.objects.get(key).cloned().ok_or_else(|| {
                RemoteError::new(RemoteErrorKind::NotFound, "get", key.as_str(), "no such key")
            })
        })
        .await
    }

    async fn list_on_time(&self, prefix: &str) -> Result<Vec<ListedObject>, RemoteError> {
        self.read("list", prefix, site::REMOTE_LIST_TRANSIENT, |s| {
            let matching = |(k, size): (&RemoteKey, u64)| {
                k.as_str()
                    .starts_with(prefix)
                    .then(|| ListedObject { key: k.clone(), size_bytes: size })
            };
            Ok(if s.config.list_lag_ms == 0 {
                s.objects.iter().filter_map(|(k, v)| matching((k, v.len() as u64))).collect()
            } else {
                let now = Instant::now().duration_since(s.created);
                let as_of = now.saturating_sub(Duration::from_millis(s.config.list_lag_ms));
                s.listing_as_of(as_of).iter().filter_map(|(k, v)| matching((k, *v))).collect()
            })
        })
        .await
    }

    async fn delete_objects_on_time(&self, keys: &[RemoteKey]) -> Result<(), RemoteError> {
        let first = keys.first().map(|k| k.as_str()).unwrap_or("");
        if keys.len() > MAX_KEYS_PER_DELETE {
            return Err(RemoteError::new(
                RemoteErrorKind::Permanent,
                "delete_objects",
                first,
                format!("{} keys in one batch; at most {MAX_KEYS_PER_DELETE}", keys.len()),
            ));
        }
        let sites = [
            site::REMOTE_DELETE_TRANSIENT,
            site::REMOTE_DELETE_LOST_RESPONSE,
            site::REMOTE_DELETE_DELAYED,
        ];
        let request = Request::Delete { keys: keys.to_vec() };
        self.write("delete_objects", first, request, (sites, Instant::now())).await
    }

    async fn put_file_on_time<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        mut check: C,
    ) -> Result<u64, TransferError> {
        // Sent now, as far as the history is concerned: the local read can be slow.
        let issued = Instant::now();
        let bytes = self.local("put_file", path)?.read_unfaulted(path).await?;
        for chunk in bytes.chunks(TRANSFER_CHUNK_BYTES) {
            check.update(chunk);
        }
        if let Err(message) = check.finish() {
            return Err(TransferError::CorruptSource { path: path.to_owned(), message });
        }
        let len = bytes.len() as u64;
        self.put_issued(key, bytes, issued).await?;
        Ok(len)
    }

    async fn get_to_file_on_time<C: DownloadCheck>(
        &self,
        key: &RemoteKey,
        path: &Utf8Path,
        mut check: C,
    ) -> Result<u64, TransferError> {
        let disk = self.local("get_to_file", path)?;
        let mut bytes = self.get_on_time(key).await?;
        if !bytes.is_empty() && self.faults.fire(site::REMOTE_GET_TO_FILE_CORRUPT) {
            let at = thread_rng().gen_range(0..bytes.len());
            bytes[at] ^= 0x01;
        }
        for chunk in bytes.chunks(TRANSFER_CHUNK_BYTES) {
            check.update(chunk);
        }
        let unchecked = self.lock().brk == StoreBreak::UncheckedDownloads;
        if let Err(message) = check.finish()
            && !unchecked
        {
            return Err(TransferError::Corrupt { key: key.as_str().to_owned(), message });
        }
        let len = bytes.len() as u64;
        disk.write_atomic(path, bytes).await?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `remote.complete.late`: the PUT is in the store while its answer is still
    /// held, so a request sent after it completes first.
    #[madsim::test]
    async fn a_late_answer_follows_its_effect() {
        let config =
            SimRemoteConfig { late_min_ms: 1_000, late_max_ms: 1_000, ..Default::default() };
        let remote = SimRemote::with_faults(Faults::new(), config);
        remote.faults().set(site::REMOTE_COMPLETE_LATE, 1.0);
        let key = |name: &str| RemoteKey::from_listing(&format!("k/{name}")).unwrap();
        let answered = Arc::new(Mutex::new(Vec::new()));
        let (r, done, a) = (remote.clone(), answered.clone(), key("a"));
        let first = tokio::spawn(async move {
            r.put(&a, b"x".to_vec()).await.unwrap();
            done.lock().unwrap().push("a");
        });
        while remote.get_now(&key("a")).is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(answered.lock().unwrap().is_empty(), "applied before its answer");
        // The hold began: the next request is answered on time.
        while remote.faults().fired()[site::REMOTE_COMPLETE_LATE] == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        remote.faults().set(site::REMOTE_COMPLETE_LATE, 0.0);
        remote.put(&key("b"), b"y".to_vec()).await.unwrap();
        answered.lock().unwrap().push("b");
        first.await.unwrap();
        assert_eq!(*answered.lock().unwrap(), ["b", "a"], "the later PUT answered first");
        assert_eq!(remote.faults().fired()[site::REMOTE_COMPLETE_LATE], 1);
    }
}
