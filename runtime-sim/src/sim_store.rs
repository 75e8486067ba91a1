//! The simulated control-plane generation store.
//!
//! It belongs to the simulated world, not to the node or control plane that uses
//! it: they hold only [`SimStore`] handles (cheap clones of one `Arc`), so the table
//! outlives any crash of its user. Semantics:
//! - `apply` takes a simulated latency; the change commits, all at once, only at
//!   the end of it. [`SimStore::crash`] (called by the world in the same step as it
//!   kills the user) makes every apply still in flight fail without committing: a
//!   crash before commit loses the change.
//! - Injected faults ([`StoreFault`]): fail before commit (nothing written), or
//!   commit and then report a failure (the caller cannot tell the two apart, which
//!   is the point).
//! - Generations never go down (the same check as every store).
//!
//! It is also the node's link to its embedded control plane
//! ([`GenerationStore::reach`]): with the fault sites `cp.unreachable` (an outage
//! episode of [`OUTAGE_MIN_MS`]..[`OUTAGE_MAX_MS`] during which every call is
//! refused) and `cp.slow` (one call delivered [`SLOW_DELIVERY_MS`] late, after the
//! node's deadline, so the node drops it). Every validation that reached the
//! control plane is logged ([`SimStore::validations`]) for the S-DEL-GEN checker.

use crate::faults::{Faults, site};
use madsim::rand::{Rng, thread_rng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use strata_adapters::generation_store::{GenerationStore, StoreError, check_no_regression};
use strata_core::control_plane::{CpRequest, StoreChange, TenantRecord};
use strata_core::generation::Generation;
use strata_core::id::TenantId;
use tokio::time::Instant;

/// Upper bound of the simulated commit latency.
pub const MAX_COMMIT_LATENCY_MS: u64 = 5;

/// How long a `cp.unreachable` outage lasts (seed-chosen within).
pub const OUTAGE_MIN_MS: u64 = 1_000;
pub const OUTAGE_MAX_MS: u64 = 20_000;
/// How late a `cp.slow` call arrives: beyond the client's default deadline.
pub const SLOW_DELIVERY_MS: u64 = 12_000;

/// A validation that reached the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveredValidation {
    /// Simulated time since the world was created.
    pub at: Duration,
    /// The node's run (crashes so far).
    pub epoch: u64,
    pub tenants: Vec<(TenantId, Generation)>,
}

/// A fault the world arms for the next `apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFault {
    /// The apply fails and nothing is written.
    FailBeforeCommit,
    /// The change commits, but the caller is told it failed.
    FailAfterCommit,
}

#[derive(Clone, Debug)]
pub struct SimStore {
    inner: Arc<Mutex<Inner>>,
    faults: Faults,
    created: Instant,
}

impl Default for SimStore {
    fn default() -> Self {
        SimStore::with_faults(Faults::new())
    }
}

#[derive(Debug, Default)]
struct Inner {
    committed: BTreeMap<TenantId, TenantRecord>,
    /// Bumped by every crash; an apply that started in an older epoch never commits.
    epoch: u64,
    faults: Vec<StoreFault>,
    commits_total: u64,
    lost_to_crash_total: u64,
    /// Every committed record with the epoch (crashes so far) it committed in.
    grants: Vec<(u64, TenantRecord)>,
    /// Calls are refused until then (a `cp.unreachable` episode).
    unreachable_until: Option<Instant>,
    validations: Vec<DeliveredValidation>,
}

impl SimStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose link to the control plane answers to `faults` (share the
    /// world's handle, created in the same step as the object store, so that both
    /// measure time from the same instant).
    pub fn with_faults(faults: Faults) -> Self {
        SimStore { inner: Arc::default(), faults, created: Instant::now() }
    }

    /// Every validation that reached the control plane, in order, for checkers.
    pub fn validations(&self) -> Vec<DeliveredValidation> {
        self.lock().validations.clone()
    }

    /// Whether a `cp.unreachable` episode is on at `now` (or starts now).
    fn unreachable(&self, now: Instant) -> bool {
        if self.faults.is_healed() {
            return false;
        }
        if self.lock().unreachable_until.is_some_and(|until| now < until) {
            return true;
        }
        if !self.faults.fire(site::CP_UNREACHABLE) {
            return false;
        }
        let ms = thread_rng().gen_range(OUTAGE_MIN_MS..=OUTAGE_MAX_MS);
        self.lock().unreachable_until = Some(now + Duration::from_millis(ms));
        true
    }

    /// The user crashed: applies still in flight are lost.
    pub fn crash(&self) {
        self.lock().epoch += 1;
    }

    /// The store's database is lost (`cp.store.lost`, right after a crash, which
    /// bumped the epoch): every record goes. The log of grants, the checkers'
    /// view, stays.
    pub fn lose_everything(&self) {
        let mut s = self.lock();
        s.committed.clear();
        s.faults.clear();
    }

    /// Arms `fault` for a coming apply (faults fire in the order armed).
    pub fn inject(&self, fault: StoreFault) {
        self.lock().faults.push(fault);
    }

    /// What is durable now, for checkers.
    pub fn records(&self) -> Vec<TenantRecord> {
        self.lock().committed.values().cloned().collect()
    }

    /// Every record ever committed, with the epoch (the user's run: crashes so far)
    /// it committed in, for checkers.
    pub fn grants(&self) -> Vec<(u64, TenantRecord)> {
        self.lock().grants.clone()
    }

    pub fn commits_total(&self) -> u64 {
        self.lock().commits_total
    }

    pub fn lost_to_crash_total(&self) -> u64 {
        self.lock().lost_to_crash_total
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl GenerationStore for SimStore {
    async fn load(&self) -> Result<Vec<TenantRecord>, StoreError> {
        Ok(self.records())
    }

    async fn reach(&self, request: &CpRequest) -> Result<(), StoreError> {
        let started_in = self.lock().epoch;
        if self.unreachable(Instant::now()) {
            return Err(StoreError::Io("injected: control plane unreachable".into()));
        }
        if self.faults.fire(site::CP_SLOW) {
            // Past the node's deadline: it has given the attempt up and drops this.
            tokio::time::sleep(Duration::from_millis(SLOW_DELIVERY_MS)).await;
            return Ok(());
        }
        let mut inner = self.lock();
        if inner.epoch != started_in {
            return Err(StoreError::Io("crashed in transit".into()));
        }
        if let CpRequest::Validate { tenants } = request {
            let at = Instant::now().duration_since(self.created);
            let (epoch, tenants) = (inner.epoch, tenants.clone());
            inner.validations.push(DeliveredValidation { at, epoch, tenants });
        }
        Ok(())
    }

    async fn apply(&self, change: &StoreChange) -> Result<(), StoreError> {
        let started_in = self.lock().epoch;
        let latency_ms = thread_rng().gen_range(1..=MAX_COMMIT_LATENCY_MS);
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        let mut inner = self.lock();
        if inner.epoch != started_in {
            inner.lost_to_crash_total += 1;
            return Err(StoreError::Io("crashed before commit".into()));
        }
        let fault = (!inner.faults.is_empty()).then(|| inner.faults.remove(0));
        if fault == Some(StoreFault::FailBeforeCommit) {
            return Err(StoreError::Io("injected: failed before commit".into()));
        }
        for record in change.records() {
            check_no_regression(inner.committed.get(&record.tenant).map(|r| r.generation), record)?;
        }
        let epoch = inner.epoch;
        for record in change.records() {
            inner.committed.insert(record.tenant, record.clone());
            inner.grants.push((epoch, record.clone()));
        }
        inner.commits_total += 1;
        match fault {
            Some(StoreFault::FailAfterCommit) => {
                Err(StoreError::Io("injected: failed after commit".into()))
            }
            Some(StoreFault::FailBeforeCommit) | None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_adapters::generation_store::conformance::{self, Harness};

    /// One world-owned store; "opening" hands out a new handle to it.
    struct SimHarness {
        store: SimStore,
    }

    impl Harness for SimHarness {
        type Store = SimStore;

        async fn open(&mut self) -> SimStore {
            self.store.clone()
        }

        async fn crash_before_commit(&mut self, store: SimStore, change: &StoreChange) {
            let change = change.clone();
            let in_flight = tokio::spawn(async move { store.apply(&change).await });
            // Let the apply start (it commits no sooner than 1 ms in), then crash at
            // once: no simulated time passes, so the crash always comes before the
            // commit. (A sleep here is rounded up to 1 ms and could race the commit.)
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            self.store.crash();
            let result = in_flight.await.expect("apply task");
            assert!(result.is_err(), "an apply cut by a crash reports no success");
        }
    }

    #[madsim::test]
    async fn sim_store_passes_the_conformance_suite() {
        conformance::run_all(&mut SimHarness { store: SimStore::new() }).await;
    }

    #[madsim::test]
    async fn a_fault_after_commit_keeps_the_change() {
        let store = SimStore::new();
        let rec = TenantRecord {
            tenant: TenantId([1; 16]),
            generation: strata_core::Generation::FIRST,
            attached_to: None,
        };
        store.inject(StoreFault::FailAfterCommit);
        assert!(store.apply(&StoreChange::Upsert(rec.clone())).await.is_err());
        assert_eq!(store.records(), vec![rec]);
    }
}
