//! The trace line: one per input fed to a machine and one per effect it emits.
//!
//! Format (one line, tab-free, stable so the determinism check can compare runs):
//!
//! ```text
//! {time} {node} {machine} {op} {direction} {what}
//! 12.345s node-1 upload_queue[t=…/tl=…] op17 effect UploadLayer …
//! ```
//!
//! `direction` is `input` or `effect`; `op` is the operation id the line concerns
//! (`-` when none). `what` is the `Debug` of the input or effect: plain data, with no
//! addresses, no hash-ordered collections and no wall-clock time of the process.

use crate::id::{NodeId, OpId};
use crate::time::Instant;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Input,
    Effect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLine {
    pub at: Instant,
    pub node: NodeId,
    /// The machine, with the instance it belongs to (e.g. `timeline[{tenant}/{timeline}]`).
    pub machine: String,
    pub op: Option<OpId>,
    pub direction: Direction,
    pub what: String,
}

impl fmt::Display for TraceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::Input => "input",
            Direction::Effect => "effect",
        };
        write!(f, "{} {} {} ", self.at, self.node, self.machine)?;
        match self.op {
            Some(op) => write!(f, "{op}")?,
            None => f.write_str("-")?,
        }
        // Keep it one line whatever `what` holds.
        write!(f, " {dir} {}", self.what.replace(['\n', '\t'], " "))
    }
}
