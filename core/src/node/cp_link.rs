//! The node's calls to the control plane, through the client machine.
//!
//! Every request the node makes (re-attach, attach, detach, validate) is a call of
//! the [`ControlPlaneClient`](crate::control_plane::ControlPlaneClient): the caller
//! names who waits for the outcome ([`CpWaiter`]) and the client owns the deadline,
//! the retry budget and the typed failure. The node never calls the control plane
//! itself.
//!
//! The client's `Send { attempt, request }` goes out as [`Io::ControlPlaneSend`]:
//! the driver's link to the control plane. With the embedded control plane the
//! driver answers `Done(Ok)` ("delivered") and the node hands the request to the
//! in-process [`ControlPlane`](crate::control_plane::ControlPlane), whose reply
//! returns to the client by attempt id; `Done(Err)` means the control plane could
//! not be reached (the simulator's `cp.unreachable` site; a delayed delivery is its
//! `cp.slow` site, which the client's deadline turns into a timeout). A delivery
//! for an attempt the client no longer waits for (its deadline passed) is dropped:
//! the request is lost in transit. A remote control plane (`strata control`,
//! `NodeConfig::remote_control_plane`) answers the same `Io` with the reply itself
//! (`IoResult::CpReply`); the client machine does not change.

use super::io::{Io, IoResult};
use super::routing::{CpWaiter, Route};
use super::{Machine, Node, RefusingMachine};
use crate::control_plane::client::{CallId, ClientEffect};
use crate::control_plane::{CallFailure, ControlPlaneReply, CpRequest, RequestId};
use crate::id::OpId;
use crate::trace::Direction;

impl Node {
    /// Starts a control-plane call; its outcome goes to `waiter`.
    pub(crate) fn cp_call(&mut self, waiter: CpWaiter, request: CpRequest) -> CallId {
        let call = self.cp_client.handle_call(self.now, request);
        self.cp_waiters.insert(call, waiter);
        self.dirty.insert(Machine::ControlPlaneClient);
        call
    }

    pub(crate) fn drain_cp_client(&mut self) {
        while let Some(effect) = self.cp_client.poll_effect() {
            self.trace_lazy("control_plane_client", None, Direction::Effect, || {
                format!("{effect:?}")
            });
            match effect {
                ClientEffect::Send { attempt, request } => {
                    self.emit_io(
                        Route::ControlPlaneCall { attempt },
                        Io::ControlPlaneSend { request },
                    );
                }
                ClientEffect::Done { call, result } => self.on_cp_call_done(call, result),
            }
        }
    }

    /// The link carried (or failed to carry) one attempt.
    pub(crate) fn on_cp_sent(&mut self, attempt: OpId, result: IoResult) {
        let now = self.now;
        match result {
            IoResult::Done(Ok(())) => {
                let Some(request) = self.cp_client.in_flight_request(attempt).cloned() else {
                    // Its deadline passed on the way: lost in transit.
                    return;
                };
                let req = RequestId(attempt.0);
                match request {
                    CpRequest::ReAttach { node, held_back } => {
                        self.cp.handle_re_attach_holding_back(now, req, node, held_back)
                    }
                    CpRequest::Attach { tenant, node, reported } => {
                        self.cp.handle_attach(now, req, tenant, node, reported)
                    }
                    CpRequest::Detach { tenant, node } => {
                        self.cp.handle_detach(now, req, tenant, node)
                    }
                    CpRequest::Validate { tenants } => self.cp.handle_validate(now, req, tenants),
                }
                self.dirty.insert(Machine::ControlPlane);
            }
            // A remote control plane answered over the link (`runtime-tokio`'s
            // `cp_http`): the reply goes to the client by attempt id, as the
            // in-process machine's does.
            IoResult::CpReply(reply) => self.on_cp_reply(RequestId(attempt.0), reply),
            IoResult::Done(Err(e)) => {
                let message = e.to_string();
                if let Err(e) = self.cp_client.handle_unreachable(now, attempt, message) {
                    self.refused(RefusingMachine::ControlPlaneClient, "a link failure", &e);
                }
                self.dirty.insert(Machine::ControlPlaneClient);
            }
            other => self.bug(&format!("unexpected result for a control-plane send: {other:?}")),
        }
    }

    /// The in-process control plane answered request `req` (an attempt id).
    pub(crate) fn on_cp_reply(
        &mut self,
        req: RequestId,
        reply: Result<ControlPlaneReply, crate::control_plane::ControlPlaneError>,
    ) {
        if let Err(e) = self.cp_client.handle_reply(self.now, OpId(req.0), reply) {
            self.refused(RefusingMachine::ControlPlaneClient, "a reply", &e);
        }
        self.dirty.insert(Machine::ControlPlaneClient);
    }

    /// A call's one outcome, to whoever waits for it.
    fn on_cp_call_done(&mut self, call: CallId, result: Result<ControlPlaneReply, CallFailure>) {
        let Some(waiter) = self.cp_waiters.remove(&call) else {
            return self.bug(&format!("control-plane call {call:?} done, nobody waits"));
        };
        match waiter {
            CpWaiter::Startup => self.on_startup_cp_reply(result),
            CpWaiter::Manager { tenant } => self.on_manager_cp_reply(tenant, result),
            CpWaiter::EmergencyReAttach => self.on_emergency_cp_reply(result),
            CpWaiter::Validation { dq_op } => self.on_validation_reply(dq_op, result),
        }
    }

    /// The outcome of the deletion queue's `Validate`: results go in; a failure is
    /// the deletion queue's failed-validation input (nothing is deleted or made
    /// visible; it retries after a backoff).
    fn on_validation_reply(&mut self, dq_op: OpId, result: Result<ControlPlaneReply, CallFailure>) {
        let Some(dq) = &mut self.dq else { return };
        let refused = match result {
            Ok(ControlPlaneReply::Validated { results }) => {
                dq.handle_validation(self.now, dq_op, results)
            }
            Ok(other) => {
                // The client checks the kind of every reply: a bug.
                return self.bug(&format!("a validation answered with {other:?}"));
            }
            Err(failure) => dq.handle_validation_failed(self.now, dq_op, &failure),
        };
        self.dirty.insert(Machine::DeletionQueue);
        if let Err(e) = refused {
            self.refused(RefusingMachine::DeletionQueue, "a validation answer", &e);
        }
    }
}
