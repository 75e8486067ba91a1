//! Inputs as data: every call that changes the timeline as one [`TimelineInput`]
//! value, and one entry point, [`Timeline::handle`], that dispatches to the named
//! `handle_*` methods (they stay: the node calls most of them by name). A fuzz
//! target or a property test drives the timeline through `handle` alone.
//!
//! **Errors.** `handle` answers an illegal input with a typed
//! [`TimelineInputError`], never a panic: a completion for an op not in flight or
//! of the wrong kind, a grant nobody asked for ([`TimelineError`]), and a refused
//! ingest batch ([`IngestError`]: legal input, refused by a rule the caller
//! must respect, e.g. backpressure). A read's refusal is its answer
//! ([`TimelineEffect::ReadDone`](super::TimelineEffect::ReadDone)), not an error.

use super::{
    FlushId, IngestError, IngestOutcome, ReadId, Timeline, TimelineCompletion, TimelineError,
    TimelineTimer,
};
use crate::id::OpId;
use crate::key::Key;
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::redo::IngestRecord;
use crate::scheduler::JobKind as BackgroundJob;
use crate::time::Instant;

/// One input of the timeline; each variant names the method it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimelineInput {
    /// `handle_ingest`: answered with [`TimelineOutput::Ingested`].
    Ingest(Vec<IngestRecord>),
    /// `handle_read`: answered later by a `ReadDone` effect.
    Read { req: ReadId, key: Key, lsn: Lsn },
    /// `handle_flush`: answered with [`TimelineOutput::Flush`] (its `FlushDone`
    /// effect comes later).
    Flush,
    /// `handle_backpressure`.
    Backpressure(bool),
    /// `handle_completion`.
    Completion { op: OpId, completion: TimelineCompletion },
    /// `handle_timeout`.
    Timeout(TimelineTimer),
    /// `handle_mode`.
    Mode { may_compact: bool, may_delete: bool },
    /// `handle_layers_uploaded`.
    LayersUploaded(Vec<LayerName>),
    /// `handle_job_granted`.
    JobGranted(BackgroundJob),
}

/// What [`Timeline::handle`] answers for a taken input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimelineOutput {
    /// The input was taken; its answers, if any, come as effects.
    Done,
    /// `handle_ingest`'s answer.
    Ingested(IngestOutcome),
    /// `handle_flush`'s answer: the id its `FlushDone` will carry.
    Flush(FlushId),
}

/// Why [`Timeline::handle`] refused an input (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimelineInputError {
    /// An input the caller must never send (a bug in the caller).
    #[error(transparent)]
    Illegal(#[from] TimelineError),
    /// An ingest batch refused by a rule (invalid, or the timeline cannot take
    /// it now): nothing of it was applied.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl Timeline {
    /// Feeds one input: the one entry point every `handle_*` method is reachable
    /// through.
    pub fn handle(
        &mut self,
        now: Instant,
        input: TimelineInput,
    ) -> Result<TimelineOutput, TimelineInputError> {
        match input {
            TimelineInput::Ingest(records) => {
                return Ok(TimelineOutput::Ingested(self.handle_ingest(now, records)?));
            }
            TimelineInput::Read { req, key, lsn } => self.handle_read(now, req, key, lsn),
            TimelineInput::Flush => return Ok(TimelineOutput::Flush(self.handle_flush(now))),
            TimelineInput::Backpressure(on) => self.handle_backpressure(now, on),
            TimelineInput::Completion { op, completion } => {
                self.handle_completion(now, op, completion)?
            }
            TimelineInput::Timeout(timer) => self.handle_timeout(now, timer),
            TimelineInput::Mode { may_compact, may_delete } => {
                self.handle_mode(now, may_compact, may_delete)
            }
            TimelineInput::LayersUploaded(names) => self.handle_layers_uploaded(now, &names),
            TimelineInput::JobGranted(kind) => self.handle_job_granted(now, kind)?,
        }
        Ok(TimelineOutput::Done)
    }
}
