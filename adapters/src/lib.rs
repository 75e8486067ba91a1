//! strata-adapters: what strata's machines ask the world to do.
//!
//! Each adapter is a trait with a real implementation here (compiled only without
//! `--cfg madsim`) and a simulated twin in `strata-runtime-sim`. Both pass the same
//! conformance suite ([`conformance`]), which is generic over the trait.
//!
//! - [`disk::Disk`]: crash-safe local files under the node's data directory.
//! - [`remote::RemoteStorage`]: the object store (LocalFs by default, S3).
//! - [`redo::Redo`]: reconstruction of a value from a base image and deltas.
//!
//! Beside them: [`fault_sites`], the names of every fault site (the simulator's and
//! the driver's failpoints), and [`failpoint`], the failpoint registry the driver
//! consults when a node runs with `testing.failpoints` on.
//!
//! Traits use `fn … -> impl Future<Output = …> + Send` so that implementations can
//! be plain `async fn`s and the driver can spawn them on either runtime.

pub mod conformance;
pub mod disk;
pub mod failpoint;
pub mod fault_sites;
pub mod generation_store;
pub mod migration_store;
pub mod redo;
pub mod remote;
pub mod scrub;
pub mod walredo_protocol;

#[cfg(not(madsim))]
pub mod control_store;
#[cfg(not(madsim))]
pub mod local_disk;
#[cfg(not(madsim))]
pub mod local_fs;
#[cfg(not(madsim))]
pub mod pg_store;
#[cfg(not(madsim))]
pub mod s3;
#[cfg(not(madsim))]
pub mod sqlite_store;
#[cfg(not(madsim))]
pub mod walredo_process;
