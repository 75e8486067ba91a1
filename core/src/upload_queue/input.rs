//! Inputs as data: every input of the upload queue as one [`UploadInput`] value,
//! and one entry point, [`UploadQueue::handle`], that feeds it to the machine and
//! returns a typed error for an illegal one. The `handle_*` methods stay (the node
//! calls them by name); `handle` dispatches to them, so both are the same machine.
//! Fuzz targets and property tests drive the queue through `handle` alone.

use super::machine::UploadQueue;
use super::types::*;
use crate::deletion_queue::{DeletionReport, LsnValidation};
use crate::id::OpId;
use crate::io_error::IoError;
use crate::layer_name::LayerName;
use crate::metadata::TimelineMetadata;
use crate::remote_path::RemoteKey;
use crate::time::{Instant, WallTime};

/// One input of the upload queue. See the module doc of `upload_queue` for what
/// each means; each variant names the `handle_*` method it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadInput {
    /// `handle_add_layer`.
    AddLayer { name: LayerName, file_size: u64, crc32c: u32 },
    /// `handle_unlink_layers`.
    UnlinkLayers(Vec<LayerName>),
    /// `handle_set_metadata`.
    SetMetadata(TimelineMetadata),
    /// `handle_barrier`: answered with [`UploadOutput::Barrier`].
    Barrier,
    /// `handle_delete_timeline`.
    DeleteTimeline { at: WallTime },
    /// `handle_mode_changed`.
    ModeChanged(AttachMode),
    /// `handle_stop`.
    Stop,
    /// `handle_completion`: an `UploadLayer` or `UploadIndex` finished.
    Completion { op: OpId, result: Result<(), IoError> },
    /// `handle_listing`: the answer to `ListTimeline`.
    Listing { op: OpId, result: Result<Vec<RemoteKey>, IoError> },
    /// `handle_timeout`: one named timer fired.
    Timeout(TimerReason),
    /// `handle_deletion_report`, from the deletion queue.
    DeletionReport(DeletionReport),
    /// `handle_lsn_validation`, from the deletion queue.
    LsnValidation(LsnValidation),
    /// `handle_remove_local`: the layer's local file is to be removed.
    RemoveLocal(LayerName),
}

/// What [`UploadQueue::handle`] answers besides the effects it queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadOutput {
    /// The input was taken.
    Done,
    /// The barrier's id: a `BarrierReached` with it follows.
    Barrier(BarrierId),
}

impl UploadQueue {
    /// Feeds one input. An illegal one (a conflict, an unknown layer, a completion
    /// nothing waits for, a change to a stopped, broken or deleting queue) is an
    /// `Err`, exactly as the `handle_*` method it stands for answers it.
    pub fn handle(
        &mut self,
        now: Instant,
        input: UploadInput,
    ) -> Result<UploadOutput, UploadQueueError> {
        match input {
            UploadInput::AddLayer { name, file_size, crc32c } => {
                self.handle_add_layer(now, name, file_size, crc32c)?;
            }
            UploadInput::UnlinkLayers(names) => self.handle_unlink_layers(now, &names)?,
            UploadInput::SetMetadata(metadata) => self.handle_set_metadata(now, metadata)?,
            UploadInput::Barrier => return Ok(UploadOutput::Barrier(self.handle_barrier(now))),
            UploadInput::DeleteTimeline { at } => self.handle_delete_timeline(now, at)?,
            UploadInput::ModeChanged(mode) => self.handle_mode_changed(now, mode),
            UploadInput::Stop => self.handle_stop(now),
            UploadInput::Completion { op, result } => self.handle_completion(now, op, result)?,
            UploadInput::Listing { op, result } => self.handle_listing(now, op, result)?,
            UploadInput::Timeout(timer) => self.handle_timeout(now, timer),
            UploadInput::DeletionReport(report) => self.handle_deletion_report(now, report),
            UploadInput::LsnValidation(v) => self.handle_lsn_validation(now, v),
            UploadInput::RemoveLocal(name) => self.handle_remove_local(now, name),
        }
        Ok(UploadOutput::Done)
    }
}
