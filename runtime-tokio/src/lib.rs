//! strata-runtime-tokio: runs strata's machines.
//!
//! - [`driver`]: the one async loop that feeds a node's machines and executes their
//!   effects on adapters. It compiles for tokio and, unchanged, for madsim.
//! - [`config`]: the node's configuration file (`strata init` writes one).
//! - `http` (tokio build only): the HTTP API, a thin mapping onto the
//!   transport-independent request layer (`strata_core::node::api`).
//! - `server` (tokio build only): wiring of real adapters, HTTP and signals for the
//!   `strata pageserver` command.

pub mod config;
pub mod config_overrides;
pub mod driver;
pub mod failpoints;
pub mod trace_sink;
pub mod walredo_child;

#[cfg(not(madsim))]
pub mod auth;
#[cfg(not(madsim))]
pub mod control;
#[cfg(not(madsim))]
pub mod http;
#[cfg(not(madsim))]
pub mod metrics;
#[cfg(not(madsim))]
pub mod metrics_io;
#[cfg(not(madsim))]
pub mod openapi;
#[cfg(not(madsim))]
pub mod scrub;
#[cfg(not(madsim))]
pub mod server;
