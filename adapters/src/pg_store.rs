//! The control plane's store on PostgreSQL (`strata control --db postgres://…`):
//! the same rows as the SQLite store ([`crate::sqlite_store`]), for a control
//! plane whose database lives on another machine.
//!
//! - Schema (in the database's `search_path`, normally `public`):
//!   `schema_version(version)` (one row), `tenants(tenant_id, generation,
//!   attached_to)`, `nodes(node_id, address)`, `migrations(tenant_id, record)`;
//!   version numbers as SQLite's. Tenant ids are `TEXT COLLATE "C"`, so rows come
//!   back in byte order whatever the database's locale; node ids are the
//!   two's-complement `BIGINT` of the `u64`. [`PgStore::connect`] creates or
//!   migrates the schema under a transaction-scoped advisory lock (two services
//!   starting together do not both create it) and refuses a newer one.
//! - Each [`StoreChange`] and each migration row is one transaction on one
//!   connection. The session runs with `synchronous_commit = on` whatever the
//!   server's default, so a `COMMIT` that returned is on the server's disk (unless
//!   the server itself runs with `fsync = off`, as throwaway test servers do).
//!   A failed or cut `COMMIT` is an [`StoreError::Io`]: outcome unknown, as for
//!   SQLite; the control-plane machine never replies with a change whose commit
//!   did not return Ok, so no answer names an uncommitted generation.
//! - A lowering of a generation is refused in the statement itself (the upsert
//!   only updates a row whose stored generation is not higher), so it holds even
//!   with another writer on the same database; the whole change is rolled back.
//! - Calls take one connection behind an async mutex (a change at a time, like
//!   the SQLite store). A connection seen closed is replaced before the call; a
//!   call that finds it broken mid-way fails, and the next one reconnects. Each
//!   call is bounded ([`CALL_TIMEOUT`]): a database that does not answer fails it
//!   instead of holding the control plane's lock, and its connection is dropped.
//! - No TLS: the client connects without it (`sslmode=require` fails). Use it on
//!   a trusted network or through a local tunnel.

#[cfg(test)]
use crate::control_store::CrashWrite;
use crate::generation_store::{GenerationStore, StoreError, record_from_row};
use crate::migration_store::{self, MigrationStore};
use std::sync::Arc;
use std::time::Duration;
use strata_core::control_plane::migration::MigrationRecord;
use strata_core::control_plane::{StoreChange, TenantRecord};
use strata_core::id::NodeId;
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, Config, NoTls};

/// The schema this build writes (the same numbering as SQLite's).
pub const SCHEMA_VERSION: u32 = 3;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"CREATE TABLE tenants (
        tenant_id TEXT COLLATE "C" PRIMARY KEY,
        generation BIGINT NOT NULL CHECK (generation >= 1),
        attached_to BIGINT
    );"#,
    "CREATE TABLE nodes (
        node_id BIGINT PRIMARY KEY,
        address TEXT NOT NULL
    );",
    r#"CREATE TABLE migrations (
        tenant_id TEXT COLLATE "C" PRIMARY KEY,
        record TEXT NOT NULL
    );"#,
];

/// The advisory lock key that serialises schema creation ("strata" in ASCII).
const SCHEMA_LOCK: i64 = 0x7374_7261_7461;

/// How long a connection attempt may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one call (connecting included) may take before it fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct PgStore {
    config: Arc<Config>,
    conn: Arc<Mutex<Option<Client>>>,
    /// The bound on each call ([`CALL_TIMEOUT`]).
    call_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("hosts", &self.config.get_hosts()).finish()
    }
}

/// The client's error with its causes ("error connecting to server: Connection
/// refused …"): its own message alone often leaves out why.
fn io(e: tokio_postgres::Error) -> StoreError {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !msg.contains(&cause_text) {
            msg.push_str(": ");
            msg.push_str(&cause_text);
        }
        source = cause.source();
    }
    StoreError::Io(msg)
}

/// `postgres://…` or `postgresql://…` (or a key=value string) as a client config.
pub fn parse_url(url: &str) -> Result<Config, StoreError> {
    url.parse::<Config>().map_err(|e| StoreError::Io(format!("database URL: {e}")))
}

async fn open_connection(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(io)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "control-plane database connection ended");
        }
    });
    client.batch_execute("SET synchronous_commit = on").await.map_err(io)?;
    Ok(client)
}

impl PgStore {
    /// Connects to the database at `url` and creates or migrates the schema.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        PgStore::connect_config(parse_url(url)?).await
    }

    /// [`PgStore::connect`] from a parsed config (tests add `options` to it).
    pub async fn connect_config(mut config: Config) -> Result<PgStore, StoreError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let store = PgStore {
            config: Arc::new(config),
            conn: Arc::new(Mutex::new(None)),
            call_timeout: CALL_TIMEOUT,
        };
        store
            .bounded(async {
                let client = store.client().await?;
                let migrated = transaction(&client, migrate(&client)).await;
                client.done(migrated)
            })
            .await?;
        Ok(store)
    }

    /// Runs one call, at most `call_timeout`: a database that does not answer
    /// (a lock held elsewhere, a network that drops packets) fails the call with
    /// [`StoreError::Io`] instead of holding the control plane. The call's
    /// connection is dropped with it (closed, its transaction aborted by the
    /// server unless the `COMMIT` had already arrived: outcome unknown).
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Io(format!(
                "no answer from the database within {:?}",
                self.call_timeout
            ))),
        }
    }

    /// Test hook: a shorter bound on each call.
    #[cfg(test)]
    pub(crate) fn set_call_timeout(&mut self, timeout: Duration) {
        self.call_timeout = timeout;
    }

    /// The connection, opened again if there is none or it was seen closed. It is
    /// out of the store while the call runs: [`Conn::done`] puts it back unless the
    /// call failed with an I/O error, and a call dropped half-way (a cancelled
    /// request) drops it, so no later call inherits a half-done transaction.
    async fn client(&self) -> Result<Conn<'_>, StoreError> {
        let mut slot = self.conn.lock().await;
        let client = match slot.take() {
            Some(client) if !client.is_closed() => client,
            _ => open_connection(&self.config).await?,
        };
        Ok(Conn { slot, client })
    }

    /// Registers (or re-addresses) a pageserver, durably (`strata control`).
    pub async fn register_node(&self, node: NodeId, address: String) -> Result<(), StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let written = client
                .execute(
                    "INSERT INTO nodes (node_id, address) VALUES ($1, $2)
                     ON CONFLICT (node_id) DO UPDATE SET address = excluded.address",
                    &[&(node.0 as i64), &address],
                )
                .await
                .map_err(io);
            client.done(written).map(|_| ())
        })
        .await
    }

    /// Every registered pageserver and its address, by node id.
    pub async fn nodes(&self) -> Result<Vec<(NodeId, String)>, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let rows = client
                .query("SELECT node_id, address FROM nodes ORDER BY node_id", &[])
                .await
                .map_err(io);
            let rows = client.done(rows)?;
            rows.iter()
                .map(|row| {
                    Ok((
                        NodeId(row.try_get::<_, i64>(0).map_err(io)? as u64),
                        row.try_get(1).map_err(io)?,
                    ))
                })
                .collect()
        })
        .await
    }

    /// Test hook: a crash mid-transaction. Begins one, runs `write` in it, and
    /// drops the connection without `COMMIT` (the server aborts it, as after a
    /// crash of this process); the next call opens a new connection.
    #[cfg(test)]
    pub(crate) async fn crash_in_transaction(&self, write: CrashWrite<'_>) {
        let client = self.client().await.unwrap();
        client.batch_execute("BEGIN").await.unwrap();
        match write {
            CrashWrite::Change(change) => write_change(&client, change).await.unwrap(),
            CrashWrite::Migration(record) => put_migration(&client, record).await.unwrap(),
        }
        drop(client); // not handed back: the connection closes
    }
}

/// The store's connection, taken for one call ([`PgStore::client`]).
struct Conn<'a> {
    slot: MutexGuard<'a, Option<Client>>,
    client: Client,
}

impl Conn<'_> {
    /// Ends the call: the connection goes back unless `result` is an I/O error
    /// (the connection may be broken or mid-transaction; the next call opens one).
    fn done<T>(mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if !matches!(result, Err(StoreError::Io(_))) {
            *self.slot = Some(self.client);
        }
        result
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Runs `body` between `BEGIN` and `COMMIT`; on its error, `ROLLBACK`.
async fn transaction<T>(
    client: &Client,
    body: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    client.batch_execute("BEGIN").await.map_err(io)?;
    match body.await {
        Ok(value) => {
            client.batch_execute("COMMIT").await.map_err(io)?;
            Ok(value)
        }
        Err(e) => match client.batch_execute("ROLLBACK").await {
            Ok(()) => Err(e),
            // An I/O error, so the connection is not reused (`Conn::done`).
            Err(rollback) => Err(StoreError::Io(format!("{e}; then ROLLBACK failed: {rollback}"))),
        },
    }
}

async fn migrate(client: &Client) -> Result<(), StoreError> {
    client.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(io)?;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")
        .await
        .map_err(io)?;
    let found = client.query_opt("SELECT version FROM schema_version", &[]).await.map_err(io)?;
    let found = match found {
        None => {
            client
                .execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                .await
                .map_err(io)?;
            0
        }
        Some(row) => {
            let v: i32 = row.try_get(0).map_err(io)?;
            u32::try_from(v)
                .map_err(|_| StoreError::Corrupt(format!("schema version {v} out of range")))?
        }
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    for step in &MIGRATIONS[found as usize..] {
        client.batch_execute(step).await.map_err(io)?;
    }
    let version = SCHEMA_VERSION as i32;
    client.execute("UPDATE schema_version SET version = $1", &[&version]).await.map_err(io)?;
    Ok(())
}

/// Writes `change` inside the open transaction; a lowering is refused.
async fn write_change(client: &Client, change: &StoreChange) -> Result<(), StoreError> {
    for record in change.records() {
        let tenant = record.tenant.to_string();
        let generation = i64::from(record.generation.get());
        let node = record.attached_to.map(|n| n.0 as i64);
        let written = client
            .execute(
                "INSERT INTO tenants (tenant_id, generation, attached_to) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id) DO UPDATE
                 SET generation = excluded.generation, attached_to = excluded.attached_to
                 WHERE tenants.generation <= excluded.generation",
                &[&tenant, &generation, &node],
            )
            .await
            .map_err(io)?;
        if written == 0 {
            let row = client
                .query_one(
                    "SELECT tenant_id, generation, attached_to FROM tenants WHERE tenant_id = $1",
                    &[&tenant],
                )
                .await
                .map_err(io)?;
            let stored = record_from_row(
                row.try_get(0).map_err(io)?,
                row.try_get(1).map_err(io)?,
                row.try_get(2).map_err(io)?,
            )?;
            return Err(StoreError::Regression {
                tenant: record.tenant,
                stored: stored.generation,
                proposed: record.generation,
            });
        }
    }
    Ok(())
}

async fn put_migration(client: &Client, record: &MigrationRecord) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO migrations (tenant_id, record) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET record = excluded.record",
            &[&record.tenant.to_string(), &migration_store::encode(record)],
        )
        .await
        .map_err(io)?;
    Ok(())
}

impl GenerationStore for PgStore {
    async fn load(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT tenant_id, generation, attached_to FROM tenants ORDER BY tenant_id",
                    &[],
                )
                .await
                .map_err(io);
            let rows = client.done(rows)?;
            rows.iter()
                .map(|row| {
                    record_from_row(
                        row.try_get(0).map_err(io)?,
                        row.try_get(1).map_err(io)?,
                        row.try_get(2).map_err(io)?,
                    )
                })
                .collect()
        })
        .await
    }

    async fn apply(&self, change: &StoreChange) -> Result<(), StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let committed = transaction(&client, write_change(&client, change)).await;
            client.done(committed)
        })
        .await
    }
}

impl MigrationStore for PgStore {
    async fn load_migrations(&self) -> Result<Vec<MigrationRecord>, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let rows = client
                .query("SELECT tenant_id, record FROM migrations ORDER BY tenant_id", &[])
                .await
                .map_err(io);
            let rows = client.done(rows)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let tenant: String = row.try_get(0).map_err(io)?;
                let record = migration_store::decode(row.try_get(1).map_err(io)?)?;
                migration_store::check_row_tenant(&tenant, &record)?;
                out.push(record);
            }
            Ok(out)
        })
        .await
    }

    async fn put_migration(&self, record: &MigrationRecord) -> Result<(), StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let committed = transaction(&client, put_migration(&client, record)).await;
            client.done(committed)
        })
        .await
    }
}
