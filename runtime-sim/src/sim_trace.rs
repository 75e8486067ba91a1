//! Trace lines of the simulated world, beside the nodes' own (issue 18 item 5):
//! every fault firing, every kill and restart, every request a simulated client
//! sends (the workload, the chaos client, the control plane's reconciler) with its
//! answer, and every write and delete the object store applies.
//!
//! They have the shape of the nodes' lines (`strata_core::trace`), so a replay
//! reads as one trace and the HTML picture (`strata-sim --html`) puts each in its
//! lane:
//!
//! ```text
//! 1.234s node-2 fault - effect disk.fsync_fail fired
//! 1.300s client request rq17 effect to node-1: Ingest { … }
//! 1.342s client request rq17 input from node-1: Ok(Ingested { … })
//! 2.000s node-1 nemesis - effect killed (its disk and store crash)
//! 2.417s object-store remote - input Put { size_bytes: 812 } tenants/…/index_part.json-… by writer 1
//! ```
//!
//! The time is the simulator's since the run began (a node's own lines carry its
//! clock, which a clock fault skews). The lane is the simulated machine the line
//! happened on: `node-N` (a pageserver), `control-plane`, `client`, `chaos`,
//! `object-store`, or `nemesis` (the run's main task).
//!
//! One run per thread at a time (madsim runs a seed on the calling thread), so the
//! run's sink lives in a thread-local set by [`begin`]. Nothing is formatted unless
//! a sink takes lines ([`TraceSink::is_off`]), and a line's text stops at
//! [`MAX_WHAT`] characters (a request's records are long) without formatting the rest.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use strata_runtime_tokio::trace_sink::TraceSink;

/// The object store's lane.
pub const STORE_LANE: &str = "object-store";
/// The lane of the run's main task (the kill and partition nemeses).
pub const NEMESIS_LANE: &str = "nemesis";
/// Longest text of one line; a longer one ends with `…`.
pub const MAX_WHAT: usize = 400;

struct State {
    sink: TraceSink,
    started: madsim::time::Instant,
    lanes: HashMap<madsim::task::NodeId, String>,
    by_ip: HashMap<IpAddr, String>,
    next_request: u64,
}

thread_local! {
    static TRACE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// The run's simulated-world trace, until dropped.
#[must_use = "the trace ends when this is dropped"]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        TRACE.with(|t| *t.borrow_mut() = None);
    }
}

/// Starts a run's trace on `sink` (nothing when it is off). Call from the run's
/// main task: its node becomes the [`NEMESIS_LANE`].
pub fn begin(sink: &TraceSink) -> Guard {
    let state = (!sink.is_off()).then(|| {
        let mut lanes = HashMap::new();
        lanes.insert(madsim::plugin::node(), NEMESIS_LANE.to_string());
        State {
            sink: sink.clone(),
            started: madsim::time::Instant::now(),
            lanes,
            by_ip: HashMap::new(),
            next_request: 0,
        }
    });
    TRACE.with(|t| *t.borrow_mut() = state);
    Guard(())
}

/// Names the lane of a simulated machine (and of its address, for requests sent to it).
pub fn name_node(node: &madsim::runtime::NodeHandle, ip: IpAddr, lane: &str) {
    TRACE.with(|t| {
        if let Some(s) = t.borrow_mut().as_mut() {
            s.lanes.insert(node.id(), lane.to_string());
            s.by_ip.insert(ip, lane.to_string());
        }
    });
}

/// Where a line goes.
#[derive(Clone, Copy, Debug)]
pub enum Lane<'a> {
    /// The simulated machine the calling task runs on.
    Here,
    Named(&'a str),
}

/// Records `{time} {lane} {machine} {op} {direction} {what}`; `what` is formatted
/// only when the run's sink takes lines.
pub fn record(lane: Lane<'_>, machine: &str, op: &str, direction: &str, what: fmt::Arguments<'_>) {
    TRACE.with(|t| {
        let t = t.borrow();
        let Some(s) = t.as_ref() else { return };
        s.sink.record_text(|| {
            let ms = s.started.elapsed().as_millis();
            let lane = match lane {
                Lane::Named(name) => name,
                Lane::Here => {
                    s.lanes.get(&madsim::plugin::node()).map_or("unnamed", String::as_str)
                }
            };
            let mut line =
                format!("{}.{:03}s {lane} {machine} {op} {direction} ", ms / 1000, ms % 1000);
            let mut out = Bounded { out: &mut line, left: MAX_WHAT };
            let _ = out.write_fmt(what);
            line
        });
    });
}

/// A request's number for its two lines (`rq{n}`), or `None` when nothing is traced.
pub fn next_request() -> Option<u64> {
    TRACE.with(|t| {
        let mut t = t.borrow_mut();
        let s = t.as_mut()?;
        s.next_request += 1;
        Some(s.next_request)
    })
}

/// The lane of the machine at `ip` (its address when unnamed).
pub fn lane_of(ip: IpAddr) -> String {
    TRACE.with(|t| {
        t.borrow()
            .as_ref()
            .and_then(|s| s.by_ip.get(&ip).cloned())
            .unwrap_or_else(|| ip.to_string())
    })
}

/// A writer that keeps the first `left` bytes (on one line) and then stops the
/// formatting with an error, so a long value is never formatted whole.
struct Bounded<'a> {
    out: &'a mut String,
    left: usize,
}

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut cut = s.len().min(self.left);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let kept = &s[..cut];
        if kept.contains(['\n', '\t']) {
            self.out.push_str(&kept.replace(['\n', '\t'], " "));
        } else {
            self.out.push_str(kept);
        }
        self.left -= cut;
        if cut < s.len() {
            self.out.push('…');
            return Err(fmt::Error);
        }
        Ok(())
    }
}
