//! Where trace lines go: the log (production), a shared buffer (the simulator's
//! determinism check and failure reports), or nowhere.

use std::sync::{Arc, Mutex};
use strata_core::trace::TraceLine;

#[derive(Clone, Debug, Default)]
pub enum TraceSink {
    /// `tracing` at debug level, target `strata::trace`.
    #[default]
    Log,
    /// Kept in memory, formatted, in order.
    Collect(Arc<Mutex<Vec<String>>>),
    Off,
}

impl TraceSink {
    pub fn collect() -> (TraceSink, Arc<Mutex<Vec<String>>>) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        (TraceSink::Collect(buffer.clone()), buffer)
    }

    pub fn record(&self, line: &TraceLine) {
        match self {
            TraceSink::Log => tracing::debug!(target: "strata::trace", "{line}"),
            TraceSink::Collect(buffer) => {
                if let Ok(mut lines) = buffer.lock() {
                    lines.push(line.to_string());
                }
            }
            TraceSink::Off => {}
        }
    }

    /// Whether lines go anywhere: with [`TraceSink::Off`] a caller skips building them.
    pub fn is_off(&self) -> bool {
        matches!(self, TraceSink::Off)
    }

    /// Records a line that is not a machine's (the simulator's faults, requests and
    /// object store): `line` is called only when the line goes somewhere (a
    /// collecting sink, or the log at debug level).
    pub fn record_text(&self, line: impl FnOnce() -> String) {
        match self {
            TraceSink::Log => tracing::debug!(target: "strata::trace", "{}", line()),
            TraceSink::Collect(buffer) => {
                let line = line();
                if let Ok(mut lines) = buffer.lock() {
                    lines.push(line);
                }
            }
            TraceSink::Off => {}
        }
    }
}
