//! strata-runtime-sim: strata's node under the madsim simulator.
//!
//! Simulated adapters owned by the simulated world (the node's init code captures
//! only handles), fault injection with named sites, checkers named by invariant id,
//! and seed replay. Everything but the pure workload model is `cfg(madsim)`: the tokio
//! build compiles only the model (and tests it).

pub mod model;

#[cfg(madsim)]
pub mod checkers;
#[cfg(madsim)]
pub mod clock;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod deadlock;
#[cfg(madsim)]
pub mod faults;
#[cfg(madsim)]
pub mod hold;
#[cfg(madsim)]
pub mod inputs;
#[cfg(madsim)]
pub mod rpc;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod schedule;
#[cfg(madsim)]
pub mod settings;
#[cfg(madsim)]
pub mod sim_disk;
#[cfg(madsim)]
pub mod sim_redo;
#[cfg(madsim)]
pub mod sim_remote;
#[cfg(madsim)]
pub mod sim_store;
#[cfg(madsim)]
pub mod sim_trace;
#[cfg(madsim)]
pub mod world;
