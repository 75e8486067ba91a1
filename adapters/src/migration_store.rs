//! The control plane's durable migration state: one row per tenant, its last
//! migration ([`MigrationRecord`], the reconciler's persisted phase).
//!
//! The reconciler (`strata_core::control_plane::migration`) decides; a
//! [`MigrationStore`] keeps its rows. Every implementation keeps these rules (the
//! [`conformance`] suite checks them):
//! - `put_migration` is one transaction that replaces the tenant's row: after it
//!   returns Ok, the row survives a crash or restart; after a crash before it
//!   returns, the old row or the new one is there, never a mix.
//! - `load_migrations` returns every row, ordered by tenant; a row that does not
//!   parse is [`StoreError::Corrupt`], never skipped (a migration would be lost).

use crate::generation_store::StoreError;
use std::future::Future;
use strata_core::control_plane::migration::MigrationRecord;

pub trait MigrationStore: Clone + Send + Sync + 'static {
    /// Every tenant's last migration, ordered by tenant.
    fn load_migrations(
        &self,
    ) -> impl Future<Output = Result<Vec<MigrationRecord>, StoreError>> + Send;

    /// Replaces the tenant's row with `record`, durably.
    fn put_migration(
        &self,
        record: &MigrationRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A record as the JSON text a store keeps.
pub fn encode(record: &MigrationRecord) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// The JSON text back; `Corrupt` names what does not parse.
pub fn decode(text: &str) -> Result<MigrationRecord, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("migration row: {e}")))
}

/// A row keyed by `tenant` must hold that tenant's record.
pub fn check_row_tenant(tenant: &str, record: &MigrationRecord) -> Result<(), StoreError> {
    if record.tenant.to_string() == tenant {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!("migration row {tenant} holds {}", record.tenant)))
    }
}

/// The suite every [`MigrationStore`] passes: call [`conformance::run_all`] with a
/// [`conformance::Harness`] for the implementation under test.
pub mod conformance {
    use super::*;
    use std::collections::BTreeMap;
    use strata_core::control_plane::migration::{OriginAfter, Phase};
    use strata_core::generation::Generation;
    use strata_core::id::{NodeId, TenantId, TimelineId};
    use strata_core::lsn::Lsn;

    /// How the suite restarts and crashes the store under test.
    pub trait Harness {
        type Store: MigrationStore;

        /// Opens the store as a starting process would.
        fn open(&mut self) -> impl Future<Output = Self::Store>;

        /// Starts writing `record` and crashes before the commit: afterwards the
        /// store must still hold the old row.
        fn crash_before_commit(
            &mut self,
            store: Self::Store,
            record: &MigrationRecord,
        ) -> impl Future<Output = ()>;
    }

    fn g(n: u32) -> Generation {
        Generation::new(n).expect("test generations are >= 1")
    }

    /// A record of tenant `t` in each phase (`phase` 0..=5).
    pub fn record(t: u8, phase: u8) -> MigrationRecord {
        let destination_generation = g(8);
        let target: BTreeMap<TimelineId, Lsn> =
            [(TimelineId([1; 16]), Lsn(0x1_0000_0010)), (TimelineId([2; 16]), Lsn(0))].into();
        let phase = match phase {
            0 => Phase::AttachDestination,
            1 => Phase::StaleOrigin { destination_generation },
            2 => Phase::CatchUp { destination_generation, target },
            3 => Phase::DemoteOrigin { destination_generation },
            4 => Phase::FinalizeDestination { destination_generation },
            _ => Phase::Done { generation: destination_generation },
        };
        MigrationRecord {
            tenant: TenantId([t; 16]),
            origin: NodeId(1),
            origin_generation: g(7),
            destination: NodeId(u64::MAX),
            origin_after: if t.is_multiple_of(2) {
                OriginAfter::SecondaryWarm
            } else {
                OriginAfter::Detached
            },
            phase,
        }
    }

    pub async fn run_all<H: Harness>(h: &mut H) {
        a_fresh_store_has_no_migrations(h).await;
        every_phase_round_trips_and_a_put_replaces_the_row(h).await;
        rows_survive_a_restart(h).await;
        a_crash_before_commit_keeps_the_old_row(h).await;
    }

    pub async fn a_fresh_store_has_no_migrations<H: Harness>(h: &mut H) {
        assert_eq!(h.open().await.load_migrations().await, Ok(vec![]));
    }

    pub async fn every_phase_round_trips_and_a_put_replaces_the_row<H: Harness>(h: &mut H) {
        let store = h.open().await;
        for phase in 0..=5 {
            store.put_migration(&record(3, phase)).await.unwrap();
            assert_eq!(store.load_migrations().await, Ok(vec![record(3, phase)]));
        }
        store.put_migration(&record(2, 1)).await.unwrap();
        assert_eq!(store.load_migrations().await, Ok(vec![record(2, 1), record(3, 5)]));
    }

    pub async fn rows_survive_a_restart<H: Harness>(h: &mut H) {
        let store = h.open().await;
        store.put_migration(&record(9, 2)).await.unwrap();
        drop(store);
        let rows = h.open().await.load_migrations().await.unwrap();
        assert!(rows.contains(&record(9, 2)), "a committed row survives: {rows:?}");
    }

    pub async fn a_crash_before_commit_keeps_the_old_row<H: Harness>(h: &mut H) {
        let store = h.open().await;
        store.put_migration(&record(20, 1)).await.unwrap();
        h.crash_before_commit(store, &record(20, 2)).await;
        let rows = h.open().await.load_migrations().await.unwrap();
        assert!(rows.contains(&record(20, 1)), "the old row is kept: {rows:?}");
        assert!(!rows.contains(&record(20, 2)), "an uncommitted row is served: {rows:?}");
    }
}
