//! The control plane's durable generation table.
//!
//! The control-plane machine ([`strata_core::control_plane`]) decides; a
//! [`GenerationStore`] keeps its table. Every implementation keeps these rules (the
//! [`conformance`] suite checks them, for SQLite and PostgreSQL
//! (`control_store/tests.rs`) and for the simulated store in
//! `strata-runtime-sim`):
//! - `apply` is one transaction: after it returns Ok, the whole change survives a
//!   crash or restart; after a crash before it returns, none or all of it is there,
//!   never a part.
//! - `apply` refuses to lower a tenant's generation ([`StoreError::Regression`]),
//!   a last line of defence for S-GEN-MONO.
//! - `load` returns every row, ordered by tenant.

use std::future::Future;
use strata_core::control_plane::{
    ControlPlaneError, ControlPlaneReply, CpRequest, StoreChange, TenantRecord,
};
use strata_core::generation::Generation;
use strata_core::id::TenantId;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not read or commit; for `apply`, the outcome is unknown.
    #[error("generation store I/O: {0}")]
    Io(String),
    /// A row or the schema does not parse.
    #[error("generation store corrupt: {0}")]
    Corrupt(String),
    /// The schema is newer than this build understands.
    #[error("generation store schema version {found} is newer than this build's {supported}")]
    SchemaTooNew { found: u32, supported: u32 },
    /// The change would lower a tenant's generation; nothing was written.
    #[error("tenant {tenant}: refusing to lower generation {stored} to {proposed}")]
    Regression { tenant: TenantId, stored: Generation, proposed: Generation },
}

pub trait GenerationStore: Clone + Send + Sync + 'static {
    /// Every record, ordered by tenant.
    fn load(&self) -> impl Future<Output = Result<Vec<TenantRecord>, StoreError>> + Send;

    /// Applies `change` in one transaction and returns once it is durable.
    fn apply(&self, change: &StoreChange) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The link to the embedded control plane this store backs: Ok when `request`
    /// reaches it (the node then hands it to its in-process control plane). A real
    /// store is always reachable; the simulated one refuses or delays calls (fault
    /// sites `cp.unreachable`, `cp.slow`) and logs what reached it for checkers.
    fn reach(&self, request: &CpRequest) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = request;
        std::future::ready(Ok(()))
    }

    /// Carries `request` over the node's link to its control plane: `Ok(None)` when
    /// it reached the embedded control plane (the node hands it to its in-process
    /// machine: [`GenerationStore::reach`]); `Ok(Some(answer))` when a remote
    /// control plane answered it (`strata control`, over HTTP); `Err` when it could
    /// not be carried (unreachable).
    fn send(&self, request: &CpRequest) -> impl Future<Output = SendOutcome> + Send {
        let reached = self.reach(request);
        async move { reached.await.map(|()| None) }
    }
}

/// What [`GenerationStore::send`] gives back.
pub type SendOutcome = Result<Option<Result<ControlPlaneReply, ControlPlaneError>>, StoreError>;

/// Checks a change against the stored rows: no generation goes down.
pub fn check_no_regression(
    stored: Option<Generation>,
    record: &TenantRecord,
) -> Result<(), StoreError> {
    match stored {
        Some(stored) if stored > record.generation => Err(StoreError::Regression {
            tenant: record.tenant,
            stored,
            proposed: record.generation,
        }),
        _ => Ok(()),
    }
}

/// One stored row as a record: a tenant id in hex, a generation (at least 1) and
/// the node it is attached to (the two's-complement `i64` of the node id), as the
/// SQL stores keep them; a row that does not parse is [`StoreError::Corrupt`].
pub fn record_from_row(
    tenant: String,
    generation: i64,
    node: Option<i64>,
) -> Result<TenantRecord, StoreError> {
    let tenant: TenantId =
        tenant.parse().map_err(|e| StoreError::Corrupt(format!("tenant id: {e}")))?;
    let generation = u32::try_from(generation)
        .ok()
        .and_then(Generation::new)
        .ok_or_else(|| StoreError::Corrupt(format!("{tenant}: generation {generation}")))?;
    let attached_to = node.map(|n| strata_core::id::NodeId(n as u64));
    Ok(TenantRecord { tenant, generation, attached_to })
}

/// The suite every [`GenerationStore`] passes. Call [`conformance::run_all`] with a
/// [`conformance::Harness`] for the implementation under test.
pub mod conformance {
    use super::*;
    use strata_core::control_plane::{
        ControlPlane, ControlPlaneEffect, ControlPlaneReply, RequestId,
    };
    use strata_core::id::NodeId;
    use strata_core::time::Instant;

    /// How the suite restarts and crashes the store under test.
    pub trait Harness {
        type Store: GenerationStore;

        /// Opens the store as a starting process would (every earlier handle is
        /// dropped first by the suite): the schema is created or migrated.
        fn open(&mut self) -> impl Future<Output = Self::Store>;

        /// Starts applying `change` and crashes before the commit: afterwards the
        /// store must not hold it. Earlier handles may be unusable until `open`.
        fn crash_before_commit(
            &mut self,
            store: Self::Store,
            change: &StoreChange,
        ) -> impl Future<Output = ()>;
    }

    fn g(n: u32) -> Generation {
        Generation::new(n).expect("test generations are >= 1")
    }

    fn t(n: u8) -> TenantId {
        TenantId([n; 16])
    }

    fn rec(tenant: u8, generation: u32, node: Option<u64>) -> TenantRecord {
        TenantRecord { tenant: t(tenant), generation: g(generation), attached_to: node.map(NodeId) }
    }

    pub async fn run_all<H: Harness>(h: &mut H) {
        a_fresh_store_is_empty(h).await;
        changes_round_trip(h).await;
        generations_survive_a_restart(h).await;
        generations_never_go_down(h).await;
        a_crash_before_commit_loses_the_change_and_no_reply_was_sent(h).await;
    }

    pub async fn a_fresh_store_is_empty<H: Harness>(h: &mut H) {
        let store = h.open().await;
        assert_eq!(store.load().await, Ok(vec![]));
    }

    pub async fn changes_round_trip<H: Harness>(h: &mut H) {
        let store = h.open().await;
        store.apply(&StoreChange::Upsert(rec(2, 1, Some(1)))).await.unwrap();
        store.apply(&StoreChange::Upsert(rec(1, 5, None))).await.unwrap();
        store.apply(&StoreChange::Upsert(rec(2, 2, Some(u64::MAX)))).await.unwrap();
        let all = StoreChange::UpsertAll(vec![rec(1, 6, Some(3)), rec(3, 1, Some(3))]);
        store.apply(&all).await.unwrap();
        let want = vec![rec(1, 6, Some(3)), rec(2, 2, Some(u64::MAX)), rec(3, 1, Some(3))];
        assert_eq!(store.load().await, Ok(want));
    }

    pub async fn generations_survive_a_restart<H: Harness>(h: &mut H) {
        let before = h.open().await.load().await.unwrap();
        let store = h.open().await;
        store.apply(&StoreChange::Upsert(rec(9, 7, Some(4)))).await.unwrap();
        drop(store);
        let after = h.open().await.load().await.unwrap();
        assert!(after.contains(&rec(9, 7, Some(4))), "a committed change survives: {after:?}");
        assert_eq!(after.len(), before.len() + 1);
    }

    pub async fn generations_never_go_down<H: Harness>(h: &mut H) {
        let store = h.open().await;
        store.apply(&StoreChange::Upsert(rec(10, 8, Some(1)))).await.unwrap();
        let lower = StoreChange::UpsertAll(vec![rec(11, 1, Some(1)), rec(10, 7, Some(1))]);
        let err = store.apply(&lower).await.unwrap_err();
        assert!(matches!(err, StoreError::Regression { .. }), "{err:?}");
        let rows = store.load().await.unwrap();
        assert!(rows.contains(&rec(10, 8, Some(1))));
        assert!(!rows.iter().any(|r| r.tenant == t(11)), "all or nothing");
    }

    /// Drives the machine against the store: the grant's persist is cut by a crash,
    /// so the machine never replies and a restarted table serves the old generation.
    pub async fn a_crash_before_commit_loses_the_change_and_no_reply_was_sent<H: Harness>(
        h: &mut H,
    ) {
        let now = Instant::ZERO;
        let store = h.open().await;
        store.apply(&StoreChange::Upsert(rec(20, 3, Some(1)))).await.unwrap();
        let mut cp = ControlPlane::recover(store.load().await.unwrap());
        cp.handle_attach(now, RequestId(1), t(20), NodeId(2), None);
        let Some(ControlPlaneEffect::Persist { change, .. }) = cp.poll_effect() else {
            panic!("an attach of a known tenant persists first");
        };
        assert_eq!(cp.poll_effect(), None, "no reply before the commit");
        drop(cp); // the process dies with it
        h.crash_before_commit(store, &change).await;
        let store = h.open().await;
        let mut cp = ControlPlane::recover(store.load().await.unwrap());
        assert_eq!(cp.record(t(20)).map(|r| r.generation), Some(g(3)));
        cp.handle_attach(now, RequestId(2), t(20), NodeId(2), None);
        let Some(ControlPlaneEffect::Persist { op, change }) = cp.poll_effect() else {
            panic!("persist expected");
        };
        store.apply(&change).await.unwrap();
        cp.handle_persisted(now, op, Ok(())).unwrap();
        let reply = Ok(ControlPlaneReply::Attached { generation: g(4) });
        assert_eq!(cp.poll_effect(), Some(ControlPlaneEffect::Reply { req: RequestId(2), reply }));
    }
}
