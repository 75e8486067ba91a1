//! Timers: every machine's next timer, indexed, and firing the due ones, each routed
//! by name to the machine it belongs to.

use super::{Machine, Node};
use crate::deletion_queue::TimerReason as DeletionTimer;
use crate::id::{TenantId, TimelineId};
use crate::time::{Instant, JumpDirection, WallClockJump, WallTime};
use crate::timeline::TimelineTimer;
use crate::trace::Direction;
use crate::upload_queue::TimerReason as UploadTimer;
use std::collections::{BTreeMap, BTreeSet};

/// A machine's timer, as the node routes it back: the machine's own closed enum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MachineTimer {
    Timeline(TimelineTimer),
    Upload(UploadTimer),
    Deletion(DeletionTimer),
    ControlPlaneClient(crate::control_plane::client::ClientTimer),
    /// A tenant's stop ran out of its grace period: its machines stop, flushed or
    /// not (`tenant_machine.rs`).
    TenantStop,
    Secondary(crate::secondary::SecondaryTimer),
}

/// The node's own timers: deadlines that belong to no machine, fired by name too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeTimer {
    /// A start-up I/O's backoff ended (`startup/queue.rs`).
    StartupRetry,
    /// Emergency mode: the next re-attach attempt is due (`emergency.rs`).
    EmergencyReAttach,
    /// The shutdown grace period ended (`requests.rs`).
    ShutdownGrace,
}

/// Every machine's next timer, ordered by deadline, so the earliest and the due ones
/// are found in O(log n).
#[derive(Debug, Default)]
pub(crate) struct TimerIndex {
    by_time: BTreeSet<(Instant, Machine)>,
    of: BTreeMap<Machine, (Instant, MachineTimer)>,
}

impl TimerIndex {
    pub(crate) fn set(&mut self, machine: Machine, next: Option<(Instant, MachineTimer)>) {
        if let Some((old, _)) = self.of.remove(&machine) {
            self.by_time.remove(&(old, machine));
        }
        if let Some((at, timer)) = next {
            self.of.insert(machine, (at, timer));
            self.by_time.insert((at, machine));
        }
    }

    pub(crate) fn get(&self, machine: Machine) -> Option<&(Instant, MachineTimer)> {
        self.of.get(&machine)
    }

    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// The earliest timer due at or before `now`, with its machine.
    fn first_due(&self, now: Instant) -> Option<(Machine, MachineTimer)> {
        let (at, machine) = self.by_time.first().filter(|(at, _)| *at <= now)?;
        let (_, timer) = self.of.get(machine).filter(|(a, _)| a == at)?;
        Some((*machine, timer.clone()))
    }
}

/// Most machine timers one `handle_timeout` fires (a bound, not a budget: each
/// fired timer is disarmed by its machine, so this is never reached).
const MAX_TIMERS_PER_TIMEOUT: usize = 1_000_000;

impl Node {
    /// The driver saw the wall clock jump beyond
    /// [`WALL_CLOCK_JUMP_TOLERANCE_MS`](crate::time::WALL_CLOCK_JUMP_TOLERANCE_MS)
    /// relative to the monotonic clock. The node counts it (metric
    /// `strata_wall_clock_jumps_total{direction}`), traces and logs it, and from now
    /// on records wall-clock facts (a tombstone's `deleted_at`) with the new time.
    /// Nothing else changes: no timer, retention or access time uses the wall clock.
    pub fn handle_wall_clock_jump(&mut self, now: Instant, wall: WallTime, jump: WallClockJump) {
        self.advance_clock(now, wall);
        self.wall_clock_jumps[jump.direction as usize] += 1;
        tracing::warn!(%jump, "the wall clock jumped");
        self.trace_line("node", None, Direction::Input, format!("wall clock jumped {jump}"));
        self.pump();
    }

    /// Wall-clock jumps reported in `direction` since start.
    pub fn wall_clock_jumps_total(&self, direction: JumpDirection) -> u64 {
        self.wall_clock_jumps[direction as usize]
    }

    pub(crate) fn fire_timers(&mut self) {
        let now = self.now;
        self.fire_node_timer_if_due(NodeTimer::StartupRetry);
        // One timer at a time, the earliest first; the machine's next timer is read
        // back at once, so a machine with several due timers gets each by name.
        // Timers of machines that are gone fire as no-ops and leave the index.
        for _ in 0..MAX_TIMERS_PER_TIMEOUT {
            let Some((machine, timer)) = self.timers.first_due(now) else { break };
            self.trace_line("node", None, Direction::Input, format!("timer {machine:?} {timer:?}"));
            self.fire_machine_timer(machine, timer.clone());
            let next = self.machine_timer(machine);
            let stuck = next.as_ref().is_some_and(|(at, t)| *at <= now && *t == timer);
            self.timers.set(machine, next);
            self.dirty.insert(machine);
            if stuck {
                debug_assert!(false, "{machine:?}: timer {timer:?} fired at {now} and stayed due");
                break;
            }
        }
        self.fire_node_timer_if_due(NodeTimer::EmergencyReAttach);
        self.fire_node_timer_if_due(NodeTimer::ShutdownGrace);
    }

    /// The node's own timers that are set, with their deadlines.
    pub(crate) fn node_timers(&self) -> impl Iterator<Item = (Instant, NodeTimer)> {
        let shutdown = match self.phase {
            super::NodePhase::ShuttingDown { deadline, .. } => Some(deadline),
            _ => None,
        };
        [
            (self.startup_deadline(), NodeTimer::StartupRetry),
            (self.emergency_deadline(), NodeTimer::EmergencyReAttach),
            (shutdown, NodeTimer::ShutdownGrace),
        ]
        .into_iter()
        .filter_map(|(at, timer)| at.map(|at| (at, timer)))
    }

    /// Fires one of the node's own timers if it is set and due now.
    fn fire_node_timer_if_due(&mut self, timer: NodeTimer) {
        let now = self.now;
        if !self.node_timers().any(|(at, t)| t == timer && at <= now) {
            return;
        }
        self.trace_line("node", None, Direction::Input, format!("timer node {timer:?}"));
        match timer {
            NodeTimer::StartupRetry => self.fire_startup_retries(),
            NodeTimer::EmergencyReAttach => self.fire_emergency_retry(),
            NodeTimer::ShutdownGrace => self.check_shutdown_deadline(),
        }
        // A timer that fired must move on (or go): one still due would have the
        // driver fire it again and again at the same instant.
        let stuck = self.node_timers().any(|(at, t)| t == timer && at <= now);
        debug_assert!(!stuck, "node timer {timer:?} fired at {now} and stayed due");
    }

    /// Hands `timer` to `machine`, and to that machine only.
    fn fire_machine_timer(&mut self, machine: Machine, timer: MachineTimer) {
        let now = self.now;
        match (machine, timer) {
            (Machine::Timeline(t, tl), MachineTimer::Timeline(timer)) => {
                self.with_machines(t, tl, |slot| slot.timeline.handle_timeout(now, timer));
            }
            (Machine::Upload(t, tl), MachineTimer::Upload(timer)) => {
                self.with_machines(t, tl, |slot| slot.upload.handle_timeout(now, timer));
            }
            (Machine::DeletionQueue, MachineTimer::Deletion(timer)) => {
                if let Some(dq) = &mut self.dq {
                    dq.handle_timeout(now, timer);
                }
            }
            (Machine::ControlPlaneClient, MachineTimer::ControlPlaneClient(timer)) => {
                self.cp_client.handle_timeout(now, timer);
            }
            (Machine::Tenant(t), MachineTimer::TenantStop) => self.advance_tenant(t),
            (Machine::Secondary(t), MachineTimer::Secondary(timer)) => {
                if let Some(machine) = self.manager.secondary_mut(t) {
                    machine.handle_timeout(now, timer);
                }
            }
            (machine, timer) => {
                unreachable!("{machine:?} was given {timer:?}: the index mixes machines")
            }
        }
    }

    /// A machine's own next timer, computed from the machine (the timer index caches
    /// these).
    pub(crate) fn machine_timer(&self, machine: Machine) -> Option<(Instant, MachineTimer)> {
        let slot = |t: TenantId, tl: TimelineId| self.tenants.get(&t)?.timelines.get(&tl);
        match machine {
            Machine::DeletionQueue => {
                let (at, timer) = self.dq.as_ref()?.next_timer()?;
                Some((at, MachineTimer::Deletion(timer)))
            }
            Machine::Timeline(t, tl) => {
                let (at, timer) = slot(t, tl)?.timeline.next_timer()?;
                Some((at, MachineTimer::Timeline(timer)))
            }
            Machine::Upload(t, tl) => {
                let (at, timer) = slot(t, tl)?.upload.next_timer()?;
                Some((at, MachineTimer::Upload(timer)))
            }
            Machine::ControlPlaneClient => {
                let (at, timer) = self.cp_client.next_timer()?;
                Some((at, MachineTimer::ControlPlaneClient(timer)))
            }
            Machine::Tenant(t) => {
                let at = self.tenants.get(&t)?.deadline()?;
                Some((at, MachineTimer::TenantStop))
            }
            Machine::Secondary(t) => {
                let (at, timer) = self.manager.secondary(t)?.next_timer()?;
                Some((at, MachineTimer::Secondary(timer)))
            }
            Machine::ControlPlane | Machine::Manager | Machine::Scheduler => None,
        }
    }
}
