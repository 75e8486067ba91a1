//! The simulated walredo child: the node's [`Redo`] adapter under the simulator.
//!
//! Production reconstructs values in a `strata walredo` child process
//! (`strata_adapters::walredo_process`), which is untrusted: it may crash, hang,
//! answer slowly or answer garbage, and each of those must fail the request it hits
//! with a [`RedoError`], never yield a wrong value. This adapter stands in for that
//! process. Each request runs the child's real serve loop
//! ([`walredo_protocol::serve`]) over in-memory pipes: the request is framed as the
//! parent frames it, the child's answer frame is split by the parent's parser
//! ([`split_frame`]). Four sites make the child misbehave:
//!
//! | site | the child | the parent reports |
//! |---|---|---|
//! | `walredo.slow` | answers after 50–500 ms | the value |
//! | `walredo.crash` | dies before answering | `RedoError` at `read response` (the next request starts a new child) |
//! | `walredo.hang` | never answers | `RedoError` at `read response` after [`SIM_REDO_TIMEOUT_MS`] |
//! | `walredo.garbage` | answers a frame with an unknown type byte | `RedoError` at `read response` (the child is killed) |
//!
//! Each injected failure's message contains [`INJECTED_MARK`], so the workloads can
//! tell a walredo failure the simulator caused (a read to retry) from a redo that
//! failed on its own (a bug they report).

use crate::faults::{Faults, site};
use madsim::rand::{Rng, thread_rng};
use std::time::Duration;
use strata_adapters::redo::{Redo, RedoError};
use strata_adapters::walredo_protocol::{self, FrameKind, encode_frame};
use strata_core::walredo_frame::split_frame;

/// The request timeout of the simulated parent (the process adapter's
/// `request_timeout_ms`, set low so that a hang costs seconds, not a minute).
pub const SIM_REDO_TIMEOUT_MS: u64 = 5_000;

/// In the message of every failure this adapter injects.
pub const INJECTED_MARK: &str = "(simulated walredo child)";

/// Whether an error text (an API error's) is a walredo failure the simulator
/// injected: the workloads retry those reads.
pub fn is_injected_failure(text: &str) -> bool {
    text.contains(INJECTED_MARK)
}

/// The simulated child process (cloneable handle; the faults are the world's).
#[derive(Clone, Debug)]
pub struct SimRedo {
    faults: Faults,
}

impl SimRedo {
    pub fn new(faults: Faults) -> SimRedo {
        SimRedo { faults }
    }
}

fn injected(message: &str) -> RedoError {
    RedoError { step: "read response", message: format!("{message} {INJECTED_MARK}") }
}

/// The child's handler: what `strata walredo` runs for each request.
fn child_handler(request: &[u8]) -> Result<Vec<u8>, String> {
    let request = strata_core::redo::RedoRequest::decode(request)
        .map_err(|e| format!("decode request: {e}"))?;
    request.execute().map_err(|e| format!("redo: {e}"))
}

/// One request through the child's serve loop; the bytes it wrote to its stdout.
fn serve_one(request: &[u8]) -> Result<Vec<u8>, RedoError> {
    let frame = encode_frame(FrameKind::Request, request)
        .map_err(|e| RedoError { step: "write request", message: e.to_string() })?;
    let mut stdout = Vec::new();
    walredo_protocol::serve(&frame[..], &mut stdout, child_handler)
        .map_err(|e| RedoError { step: "read response", message: format!("child failed: {e}") })?;
    Ok(stdout)
}

/// The parent's side: the one answer frame in `stdout`.
fn parse_answer(stdout: &[u8]) -> Result<Vec<u8>, RedoError> {
    let read_err = |message: String| RedoError { step: "read response", message };
    let frame = split_frame(stdout)
        .map_err(|e| read_err(format!("bad frame from the child: {e}")))?
        .ok_or_else(|| read_err("the child's answer ended inside a frame".into()))?;
    if frame.len != stdout.len() {
        return Err(read_err("the child answered more than one frame".into()));
    }
    match frame.kind {
        FrameKind::Value => Ok(frame.body.to_vec()),
        FrameKind::Error => Err(RedoError {
            step: "apply",
            message: String::from_utf8_lossy(frame.body).into_owned(),
        }),
        FrameKind::Request => Err(read_err("the child sent a request frame".into())),
    }
}

impl Redo for SimRedo {
    async fn redo(&self, request: Vec<u8>) -> Result<Vec<u8>, RedoError> {
        // A pipe round trip and the child's work: tens of microseconds.
        let mut delay = Duration::from_micros(thread_rng().gen_range(20..200));
        if self.faults.fire(site::WALREDO_SLOW) {
            delay += Duration::from_millis(thread_rng().gen_range(50..=500));
        }
        madsim::time::sleep(delay).await;
        if self.faults.fire(site::WALREDO_CRASH) {
            return Err(injected("the child exited before answering"));
        }
        if self.faults.fire(site::WALREDO_HANG) {
            madsim::time::sleep(Duration::from_millis(SIM_REDO_TIMEOUT_MS)).await;
            return Err(injected(&format!(
                "no answer within {SIM_REDO_TIMEOUT_MS} ms; the child is killed"
            )));
        }
        let mut stdout = serve_one(&request)?;
        if self.faults.fire(site::WALREDO_GARBAGE) {
            // A type byte no frame has: the parent cannot match the answer.
            stdout[0] = b'?';
            return parse_answer(&stdout).map_err(|e| injected(&e.message));
        }
        parse_answer(&stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_garbage_type_byte_is_refused_by_the_parent() {
        let mut frame = encode_frame(FrameKind::Value, b"value").unwrap();
        assert_eq!(parse_answer(&frame).unwrap(), b"value");
        frame[0] = b'?';
        assert!(parse_answer(&frame).is_err());
        let error = encode_frame(FrameKind::Error, b"no base image").unwrap();
        assert_eq!(parse_answer(&error).unwrap_err().step, "apply");
    }
}
