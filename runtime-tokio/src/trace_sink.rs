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
}
