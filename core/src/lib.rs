//! strata-core: everything strata decides, and nothing it does.
//!
//! This crate holds the typed ids and file formats every part of strata shares, and
//! the sans-IO state machines that make strata's decisions: the upload queue, the
//! deletion queue, the control-plane generation table, the timeline data path and
//! the tenant lifecycle. It promises:
//!
//! - **No hidden inputs.** No clock, no randomness, no I/O, no threads, no tokio,
//!   no hash-order iteration (`clippy.toml` bans them). Time comes in as
//!   [`time::Instant`] / [`time::WallTime`] arguments.
//! - **One call protocol** for every machine: `handle_*` inputs, `poll_effect`
//!   outputs carrying [`id::OpId`]s, `poll_timeout`, getters, `check_invariants`.
//!   See `docs/ARCHITECTURE.md`.
//! - **No panics on outside input.** Every parser returns [`error::ParseError`].
//! - **Short functions.** No non-test function is over 100 lines
//!   (`clippy::too_many_lines`, threshold in `clippy.toml`; test harnesses and
//!   reference models, built for tests and the `fuzzing` feature, are test code):
//!   a longer one is split into its named steps.

#![cfg_attr(not(any(test, feature = "fuzzing")), warn(clippy::too_many_lines))]

pub mod control_plane;
pub mod deletion_list;
pub mod deletion_queue;
pub mod error;
pub mod file_check;
pub mod generation;
pub mod id;
pub mod index_part;
pub mod io_error;
pub mod key;
pub mod layer_file;
pub mod layer_name;
pub mod location_conf;
pub mod lsn;
pub mod metadata;
pub mod node;
pub mod page_cache;
pub mod redo;
pub mod remote_path;
pub mod request_body;
pub mod scheduler;
pub mod scrub;
pub mod secondary;
pub mod tenant;
pub mod time;
pub mod timeline;
pub mod trace;
pub mod upload_queue;
pub mod walredo_frame;

pub use error::ParseError;
pub use generation::Generation;
pub use id::{NodeId, OpId, TenantId, TimelineId};
pub use key::Key;
pub use layer_name::LayerName;
pub use lsn::Lsn;
pub use time::{Instant, WallTime};
