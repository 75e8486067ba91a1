//! How many machine inputs a run's drivers handled, summed over every node life.
//!
//! Each life's driver counts its own inputs in [`NodeStatus::inputs`], refreshed
//! after every input; a kill ends the life and its driver with it. The tally keeps
//! each life's status, so a run can sum them at its end (`strata-sim` reports
//! machine inputs per wall second). Counting is the driver's own; the tally reads
//! nothing from the node and changes nothing in the run.

use std::sync::{Arc, Mutex};
use strata_runtime_tokio::driver::NodeStatus;

/// One run's tally: a clone per node, shared by all of its lives.
#[derive(Clone, Debug, Default)]
pub struct InputTally {
    lives: Arc<Mutex<Vec<Arc<Mutex<NodeStatus>>>>>,
}

impl InputTally {
    pub fn new() -> Self {
        InputTally::default()
    }

    /// The status a new node life's driver refreshes.
    pub fn new_life(&self) -> Arc<Mutex<NodeStatus>> {
        let status = Arc::new(Mutex::new(NodeStatus::default()));
        self.lives.lock().unwrap_or_else(|e| e.into_inner()).push(status.clone());
        status
    }

    /// The phase the newest life's driver last reported (`NodeStatus::phase`;
    /// empty before its first input): a killed life keeps its last one until the
    /// next life starts.
    pub fn newest_phase(&self) -> String {
        let lives = self.lives.lock().unwrap_or_else(|e| e.into_inner());
        lives
            .last()
            .map(|s| s.lock().map_or_else(|_| String::new(), |s| s.phase.clone()))
            .unwrap_or_default()
    }

    /// How many lives have started.
    pub fn lives(&self) -> usize {
        self.lives.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Inputs handled by every life so far (a killed life's up to its last input).
    pub fn total(&self) -> u64 {
        let lives = self.lives.lock().unwrap_or_else(|e| e.into_inner());
        lives.iter().map(|s| s.lock().map_or(0, |s| s.inputs)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_sums_every_life() {
        let tally = InputTally::new();
        let first = tally.new_life();
        first.lock().unwrap().inputs = 5;
        let second = tally.clone().new_life();
        second.lock().unwrap().inputs = 7;
        assert_eq!(tally.total(), 12);
    }
}
