//! The names of every fault site, in one registry both builds compile.
//!
//! Two kinds of site share these names:
//!
//! - the simulated adapters' sites (`strata_runtime_sim::faults`, re-exported
//!   there as `site`): each fires with a probability per run, drawn from the seed;
//! - the driver's failpoints ([`FAILPOINTS`]): places in `strata-runtime-tokio`'s
//!   driver where an operator or an end-to-end test can make one I/O fail, wait,
//!   pause or stop the process ([`crate::failpoint`]). The generic remote and
//!   control-plane sites of the simulator ([`REMOTE_PUT_TRANSIENT`],
//!   [`REMOTE_GET_TRANSIENT`], [`REMOTE_LIST_TRANSIENT`], [`REMOTE_DELETE_TRANSIENT`],
//!   [`CP_UNREACHABLE`]) are failpoints too: a fault seen in a simulator run can be
//!   asked of a real process by the same name.
//!
//! A name is lower case, dotted, the component first.

/// An fsync (file or directory) fails; the data it covered is unknown.
pub const DISK_FSYNC_FAIL: &str = "disk.fsync_fail";
/// A write or a directory creation fails with ENOSPC.
pub const DISK_ENOSPC: &str = "disk.enospc";
/// An episode starts: the disk is full, every file or directory creation fails
/// with ENOSPC for seconds (until an operator frees space). Counted once per
/// episode. Exercises the disk-full policy (`strata_core::timeline` `disk_full.rs`).
pub const DISK_FULL: &str = "disk.full";
/// One disk step takes much longer than usual.
pub const DISK_SLOW_IO: &str = "disk.slow_io";
/// At a crash, the last unsynced write survives torn at a 512-byte boundary
/// instead of being lost.
pub const DISK_TORN_WRITE: &str = "disk.crash.torn_write";

/// A local read of a layer file fails with EIO (`DiskErrorKind::Io`).
pub const DISK_READ_EIO: &str = "disk.read.eio";
/// A local read of a layer file returns its bytes with one bit flipped (the file
/// on disk is intact): the node's CRC32C check must refuse them.
pub const DISK_READ_BITFLIP: &str = "disk.read.bitflip";

/// A disk operation's effect is applied on time but its answer is held for a
/// seed-chosen while, so later operations of the same node complete first
/// (`disk.slow_io` delays a step before its effect; this delays the answer after it).
pub const DISK_COMPLETE_LATE: &str = "disk.complete.late";

/// A local read of a file the node keeps without a checksum (a tenant's
/// `config-v1`, a deletion list, the deletion header) fails with EIO.
pub const DISK_READ_META_EIO: &str = "disk.read.meta_eio";

/// A request fails before reaching the store.
pub const REMOTE_PUT_TRANSIENT: &str = "remote.put.transient";
/// The put is applied, the caller sees `Transient`.
pub const REMOTE_PUT_LOST_RESPONSE: &str = "remote.put.lost_response";
/// The caller sees `Transient` now; the put is applied later.
pub const REMOTE_PUT_DELAYED: &str = "remote.put.delayed";
pub const REMOTE_GET_TRANSIENT: &str = "remote.get.transient";
pub const REMOTE_LIST_TRANSIENT: &str = "remote.list.transient";
pub const REMOTE_DELETE_TRANSIENT: &str = "remote.delete.transient";
pub const REMOTE_DELETE_LOST_RESPONSE: &str = "remote.delete.lost_response";
pub const REMOTE_DELETE_DELAYED: &str = "remote.delete.delayed";
/// One request takes seconds instead of milliseconds.
pub const REMOTE_LATENCY_SPIKE: &str = "remote.latency_spike";
/// A request is applied (or read) on time but its answer is held for a
/// seed-chosen while, so later requests of the same node complete first
/// (`remote.latency_spike` stretches the whole request, before and after).
pub const REMOTE_COMPLETE_LATE: &str = "remote.complete.late";
/// An episode starts: the store refuses every write (PUT, DELETE) with access
/// denied, as a remote directory made read-only, for seconds; then an operator
/// fixes it. Counted once per episode.
pub const REMOTE_ACCESS_DENIED: &str = "remote.access_denied";
/// A streaming download (`get_to_file`) delivers a body with one byte flipped
/// (the stored object is intact): the caller's size/CRC check must refuse it.
pub const REMOTE_GET_TO_FILE_CORRUPT: &str = "remote.get_to_file.corrupt";

/// A layer object rots at rest: one bit of its stored bytes flips, for good. The
/// single-node scenario asks it once per layer of the workload timeline's newest
/// index at the end of a run, then reads everything back from remote storage
/// (`strata_runtime_sim::scenario`, the rot phase); other scenarios never ask it.
pub const REMOTE_ROT: &str = "remote.rot";

/// An episode starts: calls to the control plane cannot reach it (connection
/// refused) for seconds; counted once per episode.
pub const CP_UNREACHABLE: &str = "cp.unreachable";
/// One call to the control plane arrives after the node's deadline for it
/// (the node has timed it out; the late delivery is dropped).
pub const CP_SLOW: &str = "cp.slow";

/// At a kill of the one-node scenario's pageserver, its embedded control plane's
/// store is lost with it (the database file is gone). The node must refuse to
/// start until an operator passes `--rebuild-generations`, then grant every tenant
/// a generation above the highest in remote storage (S-GEN-MONO).
pub const CP_STORE_LOST: &str = "cp.store.lost";

/// The pageserver's clock starts running fast or slow (0.5–2x), both its
/// monotonic and its wall clock (one oscillator). Asked twice a simulated second.
pub const CLOCK_SKEW: &str = "clock.skew";
/// The pageserver's clocks jump forward together by 1–30 s (a paused VM resumes):
/// every timer that fell due fires at once. Asked twice a simulated second.
pub const CLOCK_MONOTONIC_JUMP: &str = "clock.monotonic_jump";
/// The pageserver's wall clock alone steps forward or back by 2 s–1 h (an
/// operator or NTP stepping it): beyond the tolerance, so the driver reports it
/// to the node. Asked twice a simulated second.
pub const CLOCK_WALL_JUMP: &str = "clock.wall_jump";

/// The walredo child answers 50–500 ms late (`strata_runtime_sim::sim_redo`).
pub const WALREDO_SLOW: &str = "walredo.slow";
/// The walredo child dies before answering a request: that request fails.
pub const WALREDO_CRASH: &str = "walredo.crash";
/// The walredo child stops answering: the request fails at the parent's timeout.
pub const WALREDO_HANG: &str = "walredo.hang";
/// The walredo child answers a frame the parent cannot parse: the request fails.
pub const WALREDO_GARBAGE: &str = "walredo.garbage";

/// A local file write (`write_atomic`) is held for `DISK_HOLD_WRITE_MS` (`strata_runtime_sim::faults`)
/// just before it lands (the rename into place). Not in [`ALL`]: off in every
/// swarm run; the hold scenario (`strata_runtime_sim::hold`) switches it on.
pub const DISK_HOLD_WRITE: &str = "disk.hold_write";
/// A remote PUT or DELETE is held for `REMOTE_HOLD_CALL_MS` (`strata_runtime_sim::faults`) before it is
/// applied. Not in [`ALL`]: off in every swarm run; the hold scenario switches it on.
pub const REMOTE_HOLD_CALL: &str = "remote.hold_call";

/// Every site above but the two hold sites.
pub const ALL: &[&str] = &[
    DISK_FSYNC_FAIL,
    DISK_ENOSPC,
    DISK_SLOW_IO,
    DISK_TORN_WRITE,
    REMOTE_PUT_TRANSIENT,
    REMOTE_PUT_LOST_RESPONSE,
    REMOTE_PUT_DELAYED,
    REMOTE_GET_TRANSIENT,
    REMOTE_LIST_TRANSIENT,
    REMOTE_DELETE_TRANSIENT,
    REMOTE_DELETE_LOST_RESPONSE,
    REMOTE_DELETE_DELAYED,
    REMOTE_LATENCY_SPIKE,
    REMOTE_ACCESS_DENIED,
    REMOTE_GET_TO_FILE_CORRUPT,
    CP_UNREACHABLE,
    CP_SLOW,
    CLOCK_SKEW,
    CLOCK_MONOTONIC_JUMP,
    CLOCK_WALL_JUMP,
    DISK_FULL,
    DISK_READ_EIO,
    DISK_READ_BITFLIP,
    REMOTE_ROT,
    WALREDO_SLOW,
    WALREDO_CRASH,
    WALREDO_HANG,
    WALREDO_GARBAGE,
    CP_STORE_LOST,
    DISK_COMPLETE_LATE,
    REMOTE_COMPLETE_LATE,
    DISK_READ_META_EIO,
];

/// An episode starts (cluster scenario): one pageserver and the control plane
/// cannot reach each other, both ways, for 1–15 s (`strata_runtime_sim::cluster::net`).
pub const NET_PARTITION_CP: &str = "net.partition.cp";
/// An episode starts (cluster scenario): one pageserver and the client cannot
/// reach each other, both ways, for 1–15 s.
pub const NET_PARTITION_CLIENT: &str = "net.partition.client";
/// One control-plane call is held 1–12 s in transit (cluster scenario).
pub const NET_DELAY_CP: &str = "net.delay.cp";
/// One client request to a pageserver is held 1–8 s in transit (cluster scenario).
pub const NET_DELAY_CLIENT: &str = "net.delay.client";

/// The cluster scenario's sites, beyond [`ALL`]: drawn from a mix of the seed
/// (never from the run's stream), on only in cluster runs.
pub const CLUSTER: &[&str] =
    &[NET_PARTITION_CP, NET_PARTITION_CLIENT, NET_DELAY_CP, NET_DELAY_CLIENT];

/// The clock sites: asked by the clock nemesis (`scenario.rs`), which runs only
/// when one of them is on.
pub const CLOCK: &[&str] = &[CLOCK_SKEW, CLOCK_MONOTONIC_JUMP, CLOCK_WALL_JUMP];

/// The sites of [`ALL`] added after the corpus's first seeds: their setting
/// comes from a separate mix of the seed, not from the run's random stream, so
/// that adding one did not change the runs of the seeds in the corpus. Every
/// other site is drawn from that stream, in the order of [`ALL`].
pub const MIXED: &[&str] = ALL.split_at(FIRST_MIXED).1;

/// Where [`MIXED`] starts in [`ALL`]: the sites before it are the corpus's first
/// ones, drawn from the run's stream; every site added later goes at the end.
const FIRST_MIXED: usize = 13;

/// Before a layer upload's PUT (`RemotePutFile` of an upload queue).
pub const UPLOAD_LAYER: &str = "upload.layer";
/// Before an index PUT of an upload queue (not a deletion's tombstone).
pub const UPLOAD_INDEX: &str = "upload.index";
/// Before a validated deletion list's objects are deleted (`RemoteDelete` of the
/// deletion queue): the last step of every remote deletion.
pub const DELETION_EXECUTE: &str = "deletion.execute";
/// Before a validation is sent to the control plane (an error here is the call
/// failing unreachable: nothing deleted, nothing made visible).
pub const CP_VALIDATE: &str = "cp.validate";
/// A timeline deletion, step 1: before the PUT of its tombstone index.
pub const TIMELINE_DELETE_TOMBSTONE: &str = "timeline_delete.tombstone";
/// A timeline deletion, step 2: before the listing of the timeline's objects
/// (which are then handed to the deletion queue: step 3 is [`DELETION_EXECUTE`]).
pub const TIMELINE_DELETE_LIST: &str = "timeline_delete.list";
/// A timeline deletion, step 4: before its local directory is removed (remote
/// storage holds only the tombstone by then).
pub const TIMELINE_DELETE_LOCAL: &str = "timeline_delete.local";

/// Every failpoint the driver consults: its own sites, then the simulator's sites
/// it shares (every remote PUT, GET, LIST and DELETE, every control-plane call).
pub const FAILPOINTS: &[&str] = &[
    UPLOAD_LAYER,
    UPLOAD_INDEX,
    DELETION_EXECUTE,
    CP_VALIDATE,
    TIMELINE_DELETE_TOMBSTONE,
    TIMELINE_DELETE_LIST,
    TIMELINE_DELETE_LOCAL,
    REMOTE_PUT_TRANSIENT,
    REMOTE_GET_TRANSIENT,
    REMOTE_LIST_TRANSIENT,
    REMOTE_DELETE_TRANSIENT,
    CP_UNREACHABLE,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The mixed sites are the tail of `ALL`, from the first site added after
    /// the corpus's first seeds: moving the split would change which sites draw
    /// from the run's stream, and so every seed's run.
    #[test]
    fn the_mixed_sites_start_at_the_first_one_added_after_the_corpus() {
        assert_eq!(MIXED.first(), Some(&REMOTE_ACCESS_DENIED));
        assert_eq!(MIXED.last(), ALL.last());
        assert!(!ALL[..FIRST_MIXED].contains(&REMOTE_ACCESS_DENIED));
    }
}
