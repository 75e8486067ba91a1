//! The upload queue: one timeline's remote client as a sans-IO machine. It owns the
//! timeline's remote layer set, builds every [`IndexPart`] itself, and decides what is
//! uploaded to and deleted from remote storage, and in which order. Callers say what
//! changed (a layer was added, layers were unlinked, the metadata moved), never what
//! the index is.
//!
//! # States ([`QueueState`])
//! - `Active`: attached; uploads and deletions run as the [`AttachMode`] allows.
//! - `Deleting(phase)`: timeline deletion (only from `Active` in `Single`):
//!   `Tombstone` (the index with `deleted_at` is uploading; queued uploads were
//!   dropped, in-flight ones finish) → `Objects` (every layer, then every older
//!   index key it knows, is handed to the deletion queue; then `ListTimeline` asks
//!   the driver to list the prefix, and every other key found — leftovers of
//!   earlier runs — is handed too; waiting for all their reports) → `Deleted`. The
//!   tombstone itself stays for good: a PUT the store applies late (an older index
//!   given up on) can never become the newest index and bring the timeline back or
//!   name deleted layers, and while any object of the timeline exists an index does
//!   (seed 47). A mode change away from `Single` aborts it (`DeletionAborted`, then
//!   `Stopped`).
//! - `Stopped`: `handle_stop`, or a deletion aborted by a mode change. Terminal:
//!   queued work was dropped (and counted), in-flight completions are still accepted.
//! - `Broken { reason }`: a permanent remote error (never an operator-fixable one:
//!   those are retried). Terminal, like `Stopped`.
//! - `Tombstoned`: recovered from an index with `deleted_at` set; refuses every change.
//!   The owner resumes an interrupted deletion (a new queue is not needed: listing
//!   the prefix finds every object left).
//! - `Deleted`: the deletion finished; every object of the timeline is gone.
//!
//! # Inputs
//! Every input is also data: [`UploadInput`], fed by [`UploadQueue::handle`] (which
//! dispatches to the `handle_*` methods below, and is what the fuzz target drives).
//! [`UploadQueue::new_timeline`] / [`UploadQueue::recover`]; `handle_add_layer`,
//! `handle_unlink_layers`, `handle_set_metadata`, `handle_barrier`,
//! `handle_delete_timeline`, `handle_mode_changed`, `handle_stop`,
//! `handle_completion` (by [`OpId`]: ok / transient / operator-fixable / permanent), `handle_listing`
//! (the answer to `ListTimeline`), `handle_timeout`, `handle_deletion_report` and
//! `handle_lsn_validation` (from the deletion queue), `handle_remove_local` (a layer's
//! local file is to be removed: eviction, or an unlink by compaction or GC).
//!
//! # Effects ([`UploadEffect`])
//! `UploadLayer`, `UploadIndex`, `ListTimeline` (driver work, completed by
//! `OpId`); `HandDeletions`,
//! `CancelDeletion`, `ValidateLsn` (routed to the deletion queue by the node
//! composite); `BarrierReached`, `LsnAdvanced`, `Backpressure`, `Broken`,
//! `DeletionAborted`, `TimelineDeleted` (for the timeline); `RemoveLocal` (a local
//! layer file no upload reads any more: the driver removes it). Retry timers are not
//! effects: [`UploadQueue::poll_timeout`] says when to call `handle_timeout`, and
//! [`UploadQueue::timers`] lists each with its [`TimerReason`].
//!
//! # Invariants (checked by [`UploadQueue::check_invariants`])
//! - **S-IDX-ORDER**: an index upload starts only when every layer it names has
//!   finished uploading. One index upload at a time, in sequence order; at most
//!   `layer_upload_concurrency` layer uploads at a time.
//! - **S-DEL-AFTER-INDEX**: an unlinked layer is handed to the deletion queue only
//!   after an index that no longer names it is durable, and only when no upload of
//!   that key is in flight.
//! - **Re-added keys**: a layer key re-added while its deletion is waiting here is
//!   simply taken back; if it was already handed on, the machine emits
//!   `CancelDeletion` and holds the re-upload until the deletion queue reports that
//!   key's outcome (executed, cancelled or failed), so the re-upload always lands
//!   after any delete of it. One key holds one content: re-adding a name with other
//!   size or checksum while the old content is still named or uploading is refused
//!   (`ContentChanged`).
//! - **S-GEN-SUFFIX**: a layer keeps the generation it was written in; layers added
//!   here get this queue's generation, recovered layers keep theirs.
//! - **S-PROJECTED**: `visible ≤ projected ≤ disk_consistent_lsn`. `projected`
//!   advances when the index covering it is durable; the machine then emits
//!   `ValidateLsn`, and `visible` advances only on an [`LsnValidation`] that is
//!   valid, of this generation and at most both `projected` and the highest LSN it
//!   asked to validate (the deletion queue answers only with a validation
//!   requested after the update reached it). After recovery the loaded index is
//!   first re-published under the new generation (see [`UploadQueue::recover`]).
//! - **S-SINGLE-WRITER**: `Stale`/`Emergency` upload nothing; `Multi` and
//!   `Stale`/`Emergency` hand on no deletions (they are kept until `Single`).
//! - **LOCAL-READ**: a layer's local file is removed (`RemoveLocal`) only while no
//!   upload of that layer is queued, held or in flight: an upload reads the file
//!   when it runs, and a layer unlinked while its upload is in flight keeps its file
//!   until that upload ends (`local_files.rs`; cluster seed 3636).
//! - Queued work always has something in flight, a timer set, a deletion report
//!   awaited, or a mode that holds it.
//!
//! # Ordering and the "no rollback" rule
//! Index keys are sequence-numbered ([`crate::remote_path::index_key`]): every index
//! upload of a generation gets the next `seq` (`IndexPart::seq` equals the key's),
//! and readers pick the highest. A request that timed out and is applied late
//! lands under its own, older key and can never roll back a newer index. A retry of
//! an index upload reuses its sequence (same key, same bytes). Once an index is
//! durable, the older index keys of this generation are handed to the deletion queue
//! (the newest durable one is kept). Index uploads are snapshots taken when a change
//! is made; when the index slot frees up, the newest snapshot whose layers are all
//! uploaded starts and older not-yet-started snapshots are skipped (the newer one
//! covers everything before it; barriers and deletions wait for it instead).
//! Consecutive snapshots waiting for the same layers are merged, so the snapshot
//! queue is at most one longer than the number of layers waiting to upload; its
//! length is exported by [`UploadQueue::queued_count`]. Layer uploads themselves are
//! unbounded by design (ingest decides); in `Stale`/`Emergency`, where nothing
//! drains them, backpressure bounds them by `stale_hold_max_bytes`.
//!
//! # Crash: what each step leaves behind in remote storage
//! Nothing here is persisted: after a crash the newest durable index is the truth
//! ([`UploadQueue::recover`]), and the node restarts in a new generation.
//! - During a layer upload: the object may or may not exist; no index names it yet,
//!   so at worst it is leaked until a scrubber (or re-upload under the new
//!   generation's key) — never referenced half-written.
//! - During an index upload: the old index or the new one is the newest; both only
//!   name layers that were durable before the upload started.
//! - After an unlink: the layer stays until the deletion queue (which persists its
//!   lists) deletes it; a durable index never names a deleted layer. Its local file
//!   stays until no upload of it is left; a crash before its `RemoveLocal` leaves the
//!   file to start-up (kept if the loaded index names the layer, else removed).
//! - During timeline deletion: the tombstone is written first and deleted last, so
//!   while any object of the timeline exists the newest index is the tombstone and
//!   no older index can come back; a restart recovers into `Tombstoned`.
//! - Not prevented (leaks, never a wrong read): a layer or index PUT given up on
//!   that lands after its key was deleted, or after the whole timeline was deleted.
//!
//! Nothing here writes a local file or fsyncs; the one local thing decided here is
//! when a layer's file may be removed (LOCAL-READ; a removal lost in a crash leaves
//! a file that start-up keeps if the index names it, else removes). A failed
//! upload is a remote failure ([`IoError`](crate::io_error::IoError), retried unless `Permanent` or
//! `Corrupt`: [`IoErrorKind::is_retried_remotely`](crate::io_error::IoErrorKind::is_retried_remotely)): transient, or refused for a reason an operator can fix
//! (access denied, bad credentials, a missing bucket): retried with capped
//! exponential backoff (`backoff_base_ms` doubling up to `backoff_max_ms`),
//! indefinitely, while the timeline keeps serving and the visible LSN waits;
//! permanent (the request can never succeed as written): `Broken`.
//!
//! [`IndexPart`]: crate::index_part::IndexPart
//! [`OpId`]: crate::id::OpId
//! [`LsnValidation`]: crate::deletion_queue::LsnValidation

mod completions;
mod input;
mod invariants;
mod local_files;
mod machine;
mod pump;
mod types;

pub use input::{UploadInput, UploadOutput};
pub use machine::UploadQueue;
pub use types::*;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod check_tests;
/// The test harness (a synchronous world around one queue), for tests and, with
/// the `fuzzing` feature, for the fuzz targets.
#[cfg(any(test, feature = "fuzzing"))]
pub mod harness;
/// The reference model and the step language of the property test and fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub mod model;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trace_tests;
