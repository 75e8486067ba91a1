//! Reconstruction of a value: base image + ordered deltas → value.
//!
//! Core defines the semantics (`strata_core::redo`); production runs it in a child
//! process (`strata walredo`), the simulator calls the pure function. A failing or
//! hung child is an error for that request, never a wrong value.

use std::future::Future;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("redo failed at {step}: {message}")]
pub struct RedoError {
    /// The step that failed (spawn, write request, read response, decode, apply).
    pub step: &'static str,
    pub message: String,
}

pub trait Redo: Clone + Send + Sync + 'static {
    /// `request` is the encoded redo request of `strata_core::redo`; the answer is
    /// the reconstructed value.
    fn redo(&self, request: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, RedoError>> + Send;
}

/// Runs core's pure redo function in this process: the simulator's twin of the
/// walredo child process, and the fallback when no child is configured.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcessRedo;

impl Redo for InProcessRedo {
    async fn redo(&self, request: Vec<u8>) -> Result<Vec<u8>, RedoError> {
        let request = strata_core::redo::RedoRequest::decode(&request)
            .map_err(|e| RedoError { step: "decode request", message: e.to_string() })?;
        request.execute().map_err(|e| RedoError { step: "apply", message: e.to_string() })
    }
}
