//! Start-up I/O: one queue bounded by `NodeConfig::startup_concurrency` (S3, S7),
//! the count of what is outstanding (start-up's own, or a tenant's that loads after
//! start-up), and the backoff of remote reads that failed transiently.

use super::{STARTUP_RETRY_BASE_MS, STARTUP_RETRY_MAX_MS, StartupIo};
use crate::id::TenantId;
use crate::node::Node;
use crate::node::io::{Io, IoError, IoErrorKind, IoResult};
use crate::node::routing::Route;
use crate::remote_path;
use crate::time::Instant;

impl Node {
    pub(crate) fn startup_io(&mut self, step: StartupIo, io: Io) {
        self.count_start(&step);
        self.dispatch_startup_io(step, io);
    }

    /// Issues start-up I/O under the `startup_concurrency` bound: reading thousands
    /// of configs and indexes at once would swamp the disk and remote storage.
    fn dispatch_startup_io(&mut self, step: StartupIo, io: Io) {
        if self.startup.in_flight < self.config.startup_concurrency.max(1) {
            self.startup.in_flight += 1;
            self.emit_io(Route::Startup(step), io);
        } else {
            self.startup.waiting.push_back((step, io));
        }
    }

    /// A start-up I/O completed: the next waiting one takes its slot.
    pub(super) fn startup_slot_freed(&mut self) {
        self.startup.in_flight = self.startup.in_flight.saturating_sub(1);
        if let Some((step, io)) = self.startup.waiting.pop_front() {
            self.dispatch_startup_io(step, io);
        }
    }

    /// Counts `step` as outstanding: a tenant's load I/O for that tenant's load
    /// (`Tenant::loading`), any other for start-up itself.
    fn count_start(&mut self, step: &StartupIo) {
        match step.tenant() {
            Some(tenant) => match self.tenants.get_mut(&tenant).and_then(|t| t.loading.as_mut()) {
                Some(n) => *n += 1,
                None => debug_assert!(false, "load I/O {step:?} of a tenant not loading"),
            },
            None => self.startup.outstanding += 1,
        }
    }

    /// A load I/O whose tenant was dropped meanwhile (its load failed, or it was
    /// replaced) counts for nobody: a straggler.
    pub(super) fn count_done(&mut self, step: &StartupIo) {
        match step.tenant() {
            Some(tenant) => {
                if let Some(n) = self.tenants.get_mut(&tenant).and_then(|t| t.loading.as_mut()) {
                    *n -= 1;
                }
            }
            None => self.startup.outstanding -= 1,
        }
    }

    /// Schedules `step` again after a backoff; it stays outstanding meanwhile
    /// (remote reads that failed transiently, config writes that failed).
    pub(super) fn retry_later(&mut self, step: StartupIo, io: Io, why: &str) {
        self.startup.retry_failures += 1;
        let exponent = self.startup.retry_failures.min(16);
        let delay_ms =
            STARTUP_RETRY_BASE_MS.saturating_mul(1 << exponent).min(STARTUP_RETRY_MAX_MS);
        tracing::warn!(?step, delay_ms, why, "start-up: retrying after a backoff");
        self.count_start(&step);
        self.startup.retries.push((self.now.plus_millis(delay_ms), step, io));
    }

    /// The earliest start-up retry.
    pub(crate) fn startup_deadline(&self) -> Option<Instant> {
        self.startup.retries.iter().map(|(at, _, _)| *at).min()
    }

    /// Re-issues the start-up I/O whose backoff has passed.
    pub(crate) fn fire_startup_retries(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.startup.retries)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.startup.retries = later;
        for (_, step, io) in due {
            self.dispatch_startup_io(step, io);
        }
    }

    /// Remote storage is the truth: a listing of `tenant`'s timelines that failed
    /// transiently (or until an operator fixes access to it) is listed again as
    /// `step` after a backoff, rather than starting without the tenant. Any other
    /// result is handed back.
    pub(super) fn retry_failed_listing(
        &mut self,
        tenant: TenantId,
        step: fn(TenantId) -> StartupIo,
        result: IoResult,
    ) -> Option<IoResult> {
        match result {
            IoResult::Listing(Err(IoError {
                kind: IoErrorKind::Transient | IoErrorKind::OperatorFixable(_),
                message: why,
                ..
            })) => {
                let io = Io::RemoteList { prefix: remote_path::timelines_prefix(tenant) };
                self.retry_later(step(tenant), io, &why);
                None
            }
            other => Some(other),
        }
    }
}
