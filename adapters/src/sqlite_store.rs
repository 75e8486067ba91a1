//! The embedded generation store: one SQLite file.
//!
//! - Schema: `schema_version(version)` (one row),
//!   `tenants(tenant_id TEXT PRIMARY KEY, generation INTEGER, attached_to INTEGER NULL)`
//!   and (version 2, used by `strata control` only) `nodes(node_id INTEGER PRIMARY
//!   KEY, address TEXT)`, the registered pageservers; node ids are stored as the
//!   two's-complement `i64` of the `u64`; (version 3, `strata control` only)
//!   `migrations(tenant_id TEXT PRIMARY KEY, record TEXT)`, each tenant's last
//!   migration as JSON ([`MigrationStore`]).
//! - [`SqliteStore::open`] creates the schema or migrates it, step by step, up to
//!   [`SCHEMA_VERSION`]; a newer schema is refused ([`StoreError::SchemaTooNew`]).
//! - Each [`StoreChange`] is one `IMMEDIATE` transaction; the database runs with
//!   `journal_mode=WAL` and `synchronous=FULL`, so a commit that returned is durable.
//!   A failed commit is rolled back by SQLite; the caller treats its outcome as
//!   unknown all the same.
//! - Calls run on tokio's blocking pool behind one `Mutex<Connection>`: the store
//!   handles a change at a time, which is all the control plane asks of it.

use crate::generation_store::{GenerationStore, StoreError, check_no_regression, record_from_row};
use crate::migration_store::{self, MigrationStore};
use camino::Utf8Path;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::sync::{Arc, Mutex, PoisonError};
use strata_core::control_plane::migration::MigrationRecord;
use strata_core::control_plane::{StoreChange, TenantRecord};
use strata_core::generation::Generation;
use strata_core::id::NodeId;

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 3;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE tenants (
        tenant_id TEXT PRIMARY KEY NOT NULL,
        generation INTEGER NOT NULL CHECK (generation >= 1),
        attached_to INTEGER
    ) STRICT;",
    "CREATE TABLE nodes (
        node_id INTEGER PRIMARY KEY NOT NULL,
        address TEXT NOT NULL
    ) STRICT;",
    "CREATE TABLE migrations (
        tenant_id TEXT PRIMARY KEY NOT NULL,
        record TEXT NOT NULL
    ) STRICT;",
];

#[derive(Clone, Debug)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, creating or migrating
    /// the schema.
    pub fn open(path: &Utf8Path) -> Result<SqliteStore, StoreError> {
        let mut conn = Connection::open(path.as_std_path()).map_err(io)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(io)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(io)?;
        migrate(&mut conn)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Io(format!("store task failed: {e}")))?
    }
}

#[cfg(test)]
impl SqliteStore {
    /// Test hook: a crash mid-transaction. Writes in a transaction and drops it
    /// without committing: what SQLite finds after a crash mid-transaction.
    pub(crate) async fn crash_in_transaction(&self, write: crate::control_store::CrashWrite<'_>) {
        use crate::control_store::CrashWrite;
        let write = match write {
            CrashWrite::Change(c) => Ok(c.clone()),
            CrashWrite::Migration(r) => Err(r.clone()),
        };
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(io)?;
            match &write {
                Ok(change) => write_change(&tx, change)?,
                Err(record) => put_migration(&tx, record)?,
            }
            drop(tx); // rolled back, never committed
            Ok(())
        })
        .await
        .unwrap();
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(io)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")
        .map_err(io)?;
    let found: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .optional()
        .map_err(io)?;
    let found = match found {
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", []).map_err(io)?;
            0
        }
        Some(v) => u32::try_from(v)
            .map_err(|_| StoreError::Corrupt(format!("schema version {v} out of range")))?,
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.execute_batch(step).map_err(io)?;
    }
    tx.execute("UPDATE schema_version SET version = ?1", params![SCHEMA_VERSION]).map_err(io)?;
    tx.commit().map_err(io)
}

/// Every tenant's record, read from the store at `path` opened **read-only**
/// (`strata scrub --purge` on the single-node default: it never writes, creates
/// or migrates the node's store; a missing file or another schema version is an
/// error, never an empty table).
pub fn read_tenants_read_only(path: &Utf8Path) -> Result<Vec<TenantRecord>, StoreError> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path.as_std_path(), flags).map_err(io)?;
    let found: u32 =
        conn.query_row("SELECT version FROM schema_version", [], |row| row.get(0)).map_err(io)?;
    if found != SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "schema version {found}, this build reads {SCHEMA_VERSION}"
        )));
    }
    load(&conn)
}

fn load(conn: &Connection) -> Result<Vec<TenantRecord>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT tenant_id, generation, attached_to FROM tenants ORDER BY tenant_id")
        .map_err(io)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, Option<i64>>(2)?))
        })
        .map_err(io)?;
    let mut out = Vec::new();
    for row in rows {
        let (tenant, generation, node) = row.map_err(io)?;
        out.push(record_from_row(tenant, generation, node)?);
    }
    Ok(out)
}

/// Writes `change` inside `tx` (which the caller commits or drops).
fn write_change(tx: &rusqlite::Transaction<'_>, change: &StoreChange) -> Result<(), StoreError> {
    for record in change.records() {
        let tenant = record.tenant.to_string();
        let stored: Option<i64> = tx
            .query_row("SELECT generation FROM tenants WHERE tenant_id = ?1", [&tenant], |r| {
                r.get(0)
            })
            .optional()
            .map_err(io)?;
        let stored = stored.and_then(|g| u32::try_from(g).ok()).and_then(Generation::new);
        check_no_regression(stored, record)?;
        tx.execute(
            "INSERT INTO tenants (tenant_id, generation, attached_to) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant_id) DO UPDATE
             SET generation = excluded.generation, attached_to = excluded.attached_to",
            params![tenant, record.generation.get(), record.attached_to.map(|n| n.0 as i64)],
        )
        .map_err(io)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Registers (or re-addresses) a pageserver, durably (`strata control`).
    pub async fn register_node(&self, node: NodeId, address: String) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(io)?;
            tx.execute(
                "INSERT INTO nodes (node_id, address) VALUES (?1, ?2)
                 ON CONFLICT (node_id) DO UPDATE SET address = excluded.address",
                params![node.0 as i64, address],
            )
            .map_err(io)?;
            tx.commit().map_err(io)
        })
        .await
    }

    /// Every registered pageserver and its address, by node id.
    pub async fn nodes(&self) -> Result<Vec<(NodeId, String)>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt =
                conn.prepare("SELECT node_id, address FROM nodes ORDER BY node_id").map_err(io)?;
            let rows = stmt
                .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
                .map_err(io)?;
            let mut out = Vec::new();
            for row in rows {
                let (node, address) = row.map_err(io)?;
                out.push((NodeId(node as u64), address));
            }
            Ok(out)
        })
        .await
    }
}

fn put_migration(
    tx: &rusqlite::Transaction<'_>,
    record: &MigrationRecord,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO migrations (tenant_id, record) VALUES (?1, ?2)
         ON CONFLICT (tenant_id) DO UPDATE SET record = excluded.record",
        params![record.tenant.to_string(), migration_store::encode(record)],
    )
    .map_err(io)?;
    Ok(())
}

impl MigrationStore for SqliteStore {
    async fn load_migrations(&self) -> Result<Vec<MigrationRecord>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT tenant_id, record FROM migrations ORDER BY tenant_id")
                .map_err(io)?;
            let rows = stmt
                .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                .map_err(io)?;
            let mut out = Vec::new();
            for row in rows {
                let (tenant, text) = row.map_err(io)?;
                let record = migration_store::decode(&text)?;
                migration_store::check_row_tenant(&tenant, &record)?;
                out.push(record);
            }
            Ok(out)
        })
        .await
    }

    async fn put_migration(&self, record: &MigrationRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(io)?;
            put_migration(&tx, &record)?;
            tx.commit().map_err(io)
        })
        .await
    }
}

impl GenerationStore for SqliteStore {
    async fn load(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.with_conn(|conn| load(conn)).await
    }

    async fn apply(&self, change: &StoreChange) -> Result<(), StoreError> {
        let change = change.clone();
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(io)?;
            write_change(&tx, &change)?;
            tx.commit().map_err(io)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! What only SQLite has; the suite both stores pass is `control_store/tests.rs`.
    use super::*;
    use camino::Utf8PathBuf;
    use strata_core::id::TenantId;

    struct SqliteHarness {
        _dir: tempfile::TempDir,
        path: Utf8PathBuf,
    }

    impl SqliteHarness {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = Utf8PathBuf::from_path_buf(dir.path().join("control.db")).unwrap();
            SqliteHarness { _dir: dir, path }
        }
    }

    /// What `strata scrub --control-db` reads: the rows a running node's open store
    /// has committed, read again at every question (a grant committed after the
    /// first read is seen by the next), never a row of a transaction not committed;
    /// a missing store is an error, not a new file (it opens read-only).
    #[tokio::test]
    async fn the_read_only_reader_sees_each_commit_and_writes_nothing() {
        let h = SqliteHarness::new();
        assert!(read_tenants_read_only(&h.path).is_err());
        assert!(!h.path.exists(), "the reader created the store");
        let rec = |t: u8, g: u32| TenantRecord {
            tenant: TenantId([t; 16]),
            generation: Generation::new(g).unwrap(),
            attached_to: Some(NodeId(1)),
        };
        let store = SqliteStore::open(&h.path).unwrap();
        store.apply(&StoreChange::Upsert(rec(1, 3))).await.unwrap();
        assert_eq!(read_tenants_read_only(&h.path).unwrap(), vec![rec(1, 3)]);
        store.apply(&StoreChange::UpsertAll(vec![rec(1, 4), rec(2, 1)])).await.unwrap();
        assert_eq!(read_tenants_read_only(&h.path).unwrap(), vec![rec(1, 4), rec(2, 1)]);
        // A transaction the writer holds open (not committed) is not seen.
        let writer = Connection::open(h.path.as_std_path()).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer.execute("UPDATE tenants SET generation = 9", []).unwrap();
        assert_eq!(read_tenants_read_only(&h.path).unwrap(), vec![rec(1, 4), rec(2, 1)]);
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(store.load().await.unwrap(), vec![rec(1, 4), rec(2, 1)]);
    }

    #[tokio::test]
    async fn registered_nodes_survive_a_reopen_and_a_version_1_store_migrates() {
        let h = SqliteHarness::new();
        // A store written by a build with schema version 1 (no nodes table).
        let conn = Connection::open(h.path.as_std_path()).unwrap();
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL);").unwrap();
        conn.execute("INSERT INTO schema_version (version) VALUES (1)", []).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute("INSERT INTO tenants VALUES (?1, 3, 7)", [TenantId([1; 16]).to_string()])
            .unwrap();
        drop(conn);
        let store = SqliteStore::open(&h.path).unwrap();
        store.register_node(NodeId(7), "http://127.0.0.1:1".into()).await.unwrap();
        store.register_node(NodeId(2), "http://127.0.0.1:2".into()).await.unwrap();
        store.register_node(NodeId(7), "http://127.0.0.1:3".into()).await.unwrap();
        drop(store);
        let store = SqliteStore::open(&h.path).unwrap();
        assert_eq!(
            store.nodes().await.unwrap(),
            vec![
                (NodeId(2), "http://127.0.0.1:2".into()),
                (NodeId(7), "http://127.0.0.1:3".into())
            ]
        );
        assert_eq!(store.load().await.unwrap().len(), 1, "tenants kept across the migration");
    }
}
