//! strata-runtime-sim: strata's node under the madsim simulator.
//!
//! Simulated adapters owned by the simulated world (the node's init code captures
//! only handles), fault injection with named sites, checkers named by invariant id,
//! and seed replay. Everything but this crate-level doc is `cfg(madsim)`: the tokio
//! build compiles it empty.

#[cfg(madsim)]
pub mod sim_disk;
#[cfg(madsim)]
pub mod sim_remote;
#[cfg(madsim)]
pub mod sim_store;
