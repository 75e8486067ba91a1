//! Timers: every machine's next deadline, indexed, and firing the due ones.

use super::{Machine, Node};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// Every machine's next deadline, ordered, so the earliest and the due ones are
/// found in O(log n).
#[derive(Debug, Default)]
pub(crate) struct TimerIndex {
    by_time: BTreeSet<(Instant, Machine)>,
    of: BTreeMap<Machine, Instant>,
}

impl TimerIndex {
    pub(crate) fn set(&mut self, machine: Machine, at: Option<Instant>) {
        if let Some(old) = self.of.remove(&machine) {
            self.by_time.remove(&(old, machine));
        }
        if let Some(at) = at {
            self.of.insert(machine, at);
            self.by_time.insert((at, machine));
        }
    }

    pub(crate) fn get(&self, machine: Machine) -> Option<Instant> {
        self.of.get(&machine).copied()
    }

    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// The machines whose deadline is at or before `now`.
    pub(crate) fn due(&self, now: Instant) -> Vec<Machine> {
        self.by_time.iter().take_while(|(at, _)| *at <= now).map(|(_, m)| *m).collect()
    }
}

impl Node {
    pub(crate) fn fire_timers(&mut self) {
        let now = self.now;
        self.fire_startup_retries();
        // Deadlines of machines that are gone fire as no-ops and leave the index.
        let due = self.timers.due(now);
        for machine in due {
            match machine {
                Machine::Timeline(t, tl) => {
                    self.with_machines(t, tl, |slot| slot.timeline.handle_timeout(now));
                }
                Machine::Upload(t, tl) => {
                    self.with_machines(t, tl, |slot| slot.upload.handle_timeout(now));
                }
                Machine::DeletionQueue => {
                    if let Some(dq) = &mut self.dq {
                        dq.handle_timeout(now);
                    }
                }
                Machine::ControlPlane | Machine::Manager | Machine::Scheduler => {}
            }
            self.dirty.insert(machine);
        }
        self.check_stopping();
        self.fire_emergency_retry();
        self.check_shutdown_deadline();
    }

    pub(crate) fn node_deadline(&self) -> Option<crate::time::Instant> {
        self.startup_deadline()
    }
}
