//! Short, stable descriptions of requests and effects for trace lines: byte
//! payloads show only their length, so a trace stays readable and two runs compare
//! line by line.

use super::Node;
use super::api::{ApiError, Request, Response};
use crate::deletion_queue::DeletionEffect;
use crate::id::OpId;
use crate::timeline::TimelineEffect;
use crate::trace::{Direction, TraceLine};
use crate::upload_queue::UploadEffect;

pub(crate) fn describe_request(r: &Request) -> String {
    match r {
        Request::Ingest { tenant, timeline, records } => format!(
            "Ingest {tenant}/{timeline} {} records, lsn {:?}..={:?}",
            records.len(),
            records.first().map(|r| r.lsn),
            records.last().map(|r| r.lsn)
        ),
        other => format!("{other:?}"),
    }
}

pub(crate) fn describe_result(r: &Result<Response, ApiError>) -> String {
    match r {
        Ok(Response::Value { key, lsn, value }) => {
            format!(
                "Value {key} @ {lsn}: {:?}",
                value.as_ref().map(|v| format!("{} bytes crc {:08x}", v.len(), crc32c::crc32c(v)))
            )
        }
        other => format!("{other:?}"),
    }
}

pub(crate) fn describe_timeline(e: &TimelineEffect) -> String {
    match e {
        TimelineEffect::WriteLayer { op, name, bytes } => {
            format!("WriteLayer {op} {name} ({} bytes)", bytes.len())
        }
        TimelineEffect::Redo { op, request } => {
            format!("Redo {op} ({} deltas)", request.deltas.len())
        }
        TimelineEffect::ReadDone { req, result } => format!(
            "ReadDone {req:?} {:?}",
            result.as_ref().map(|v| v.as_ref().map(|v| format!(
                "{} bytes crc {:08x}",
                v.len(),
                crc32c::crc32c(v)
            )))
        ),
        other => format!("{other:?}"),
    }
}

pub(crate) fn describe_upload(e: &UploadEffect) -> String {
    match e {
        UploadEffect::UploadIndex { op, version, index } => format!(
            "UploadIndex {op} {version:?} {} layers, disk_consistent {}{}",
            index.layer_metadata.len(),
            index.disk_consistent_lsn,
            if index.deleted_at.is_some() { " (tombstone)" } else { "" }
        ),
        other => format!("{other:?}"),
    }
}

pub(crate) fn describe_dq(e: &DeletionEffect) -> String {
    match e {
        DeletionEffect::WriteList { op, sequence, bytes } => {
            format!("WriteList {op} seq {sequence} ({} bytes)", bytes.len())
        }
        DeletionEffect::WriteHeader { op, bytes } => {
            format!("WriteHeader {op} ({} bytes)", bytes.len())
        }
        other => format!("{other:?}"),
    }
}

impl Node {
    /// Whether the node builds trace lines (on from the start). A driver whose
    /// lines go nowhere turns it off: nothing the node decides depends on them, and
    /// building them (the `Debug` of every request, completion and effect) was the
    /// simulator's largest cost left in release builds (`docs/PERFORMANCE.md`).
    pub fn set_trace(&mut self, on: bool) {
        self.trace_on = on;
    }

    pub(crate) fn trace_line(
        &mut self,
        machine: &str,
        op: Option<OpId>,
        direction: Direction,
        what: String,
    ) {
        if !self.trace_on {
            return;
        }
        self.trace.push(TraceLine {
            at: self.now,
            node: self.config.node_id,
            machine: machine.to_string(),
            op,
            direction,
            what,
        });
    }

    /// [`Node::trace_line`], building `what` only when the trace is on.
    pub(crate) fn trace_lazy(
        &mut self,
        machine: &str,
        op: Option<OpId>,
        direction: Direction,
        what: impl FnOnce() -> String,
    ) {
        if self.trace_on {
            let what = what();
            self.trace_line(machine, op, direction, what);
        }
    }
}
