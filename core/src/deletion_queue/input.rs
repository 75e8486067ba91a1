//! Inputs as data: every input of the deletion queue as one [`DeletionInput`]
//! value, and one entry point, [`DeletionQueue::handle`], that feeds it to the
//! machine and returns a typed error for an illegal one. The `handle_*` methods stay
//! (the node calls them by name); `handle` dispatches to them, so both are the same
//! machine. Fuzz targets drive the queue through `handle` alone.

use super::{DeletionQueue, DeletionQueueError, FlushId, TimerReason};
use crate::control_plane::CallFailure;
use crate::generation::Generation;
use crate::id::{OpId, TenantId, TimelineId};
use crate::io_error::IoError;
use crate::lsn::Lsn;
use crate::remote_path::RemoteKey;
use crate::time::Instant;

/// One input of the deletion queue; each variant names the `handle_*` method it
/// stands for (see the module doc of `deletion_queue` for what each means).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionInput {
    /// `handle_push`.
    Push { tenant: TenantId, timeline: TimelineId, generation: Generation, keys: Vec<RemoteKey> },
    /// `handle_cancel`.
    Cancel { tenant: TenantId, timeline: TimelineId, key: RemoteKey },
    /// `handle_stop_deleting`.
    StopDeleting { tenant: TenantId },
    /// `handle_push_lsn_update`.
    PushLsnUpdate { tenant: TenantId, timeline: TimelineId, generation: Generation, lsn: Lsn },
    /// `handle_flush`: answered with [`DeletionOutput::Flush`].
    Flush,
    /// `handle_flush_advisory`.
    FlushAdvisory,
    /// `handle_completion`: a list write or removal, the header write, or a delete.
    Completion { op: OpId, result: Result<(), IoError> },
    /// `handle_validation`: the control plane's answer, in request order.
    Validation { op: OpId, results: Vec<(TenantId, bool)> },
    /// `handle_validation_failed`: the validation call failed.
    ValidationFailed { op: OpId, failure: CallFailure },
    /// `handle_timeout`: one named timer fired.
    Timeout(TimerReason),
}

/// What [`DeletionQueue::handle`] answers besides the effects it queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionOutput {
    /// The input was taken.
    Done,
    /// The flush's id: a `FlushDone` with it follows.
    Flush(FlushId),
}

impl DeletionQueue {
    /// Feeds one input. A completion or validation answer nothing waits for is an
    /// `Err`, exactly as the `handle_*` method it stands for answers it.
    pub fn handle(
        &mut self,
        now: Instant,
        input: DeletionInput,
    ) -> Result<DeletionOutput, DeletionQueueError> {
        match input {
            DeletionInput::Push { tenant, timeline, generation, keys } => {
                self.handle_push(now, tenant, timeline, generation, keys);
            }
            DeletionInput::Cancel { tenant, timeline, key } => {
                self.handle_cancel(now, tenant, timeline, key);
            }
            DeletionInput::StopDeleting { tenant } => self.handle_stop_deleting(now, tenant),
            DeletionInput::PushLsnUpdate { tenant, timeline, generation, lsn } => {
                self.handle_push_lsn_update(now, tenant, timeline, generation, lsn);
            }
            DeletionInput::Flush => return Ok(DeletionOutput::Flush(self.handle_flush(now))),
            DeletionInput::FlushAdvisory => self.handle_flush_advisory(now),
            DeletionInput::Completion { op, result } => self.handle_completion(now, op, result)?,
            DeletionInput::Validation { op, results } => {
                self.handle_validation(now, op, results)?;
            }
            DeletionInput::ValidationFailed { op, failure } => {
                self.handle_validation_failed(now, op, &failure)?;
            }
            DeletionInput::Timeout(timer) => self.handle_timeout(now, timer),
        }
        Ok(DeletionOutput::Done)
    }
}
