//! The store of `strata control`, chosen by `--db`: SQLite (`sqlite:PATH`, the
//! embedded default's store and schema) or PostgreSQL (`postgres://…`, for a
//! control plane whose database lives elsewhere). Both keep the same rows under
//! the same rules ([`crate::generation_store`], [`crate::migration_store`]) and
//! pass one suite (`tests.rs`: every test body runs on each; the PostgreSQL runs
//! need `DATABASE_URL`).

use crate::generation_store::{GenerationStore, StoreError};
use crate::migration_store::MigrationStore;
use crate::pg_store::PgStore;
use crate::sqlite_store::SqliteStore;
use camino::Utf8Path;
use strata_core::control_plane::migration::MigrationRecord;
use strata_core::control_plane::{StoreChange, TenantRecord};
use strata_core::id::NodeId;

#[cfg(test)]
mod tests;

#[derive(Clone, Debug)]
pub enum ControlStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// What `--db` names, before anything is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbSpec {
    Sqlite(String),
    Postgres(String),
}

impl DbSpec {
    /// `sqlite:PATH`, or a `postgres://` / `postgresql://` URL.
    pub fn parse(db: &str) -> Result<DbSpec, String> {
        if let Some(path) = db.strip_prefix("sqlite:") {
            Ok(DbSpec::Sqlite(path.to_string()))
        } else if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            Ok(DbSpec::Postgres(db.to_string()))
        } else {
            Err(format!(
                "--db {db:?}: expected sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB"
            ))
        }
    }

    /// For logs and errors: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            DbSpec::Sqlite(path) => format!("sqlite:{path}"),
            DbSpec::Postgres(url) => redact(url),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_string() };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let slash = if rest.contains('/') { "/" } else { "" };
    format!("{scheme}://{user}:***@{host}{slash}{tail}")
}

impl ControlStore {
    /// Opens the store `db` names (see [`DbSpec::parse`]), creating or migrating
    /// its schema.
    pub async fn open(db: &str) -> Result<ControlStore, String> {
        let spec = DbSpec::parse(db)?;
        let opened = match &spec {
            DbSpec::Sqlite(path) => {
                SqliteStore::open(Utf8Path::new(path)).map(ControlStore::Sqlite)
            }
            DbSpec::Postgres(url) => PgStore::connect(url).await.map(ControlStore::Postgres),
        };
        opened.map_err(|e| format!("opening {}: {e}", spec.describe()))
    }

    /// Registers (or re-addresses) a pageserver, durably.
    pub async fn register_node(&self, node: NodeId, address: String) -> Result<(), StoreError> {
        match self {
            ControlStore::Sqlite(s) => s.register_node(node, address).await,
            ControlStore::Postgres(s) => s.register_node(node, address).await,
        }
    }

    /// Every registered pageserver and its address, by node id.
    pub async fn nodes(&self) -> Result<Vec<(NodeId, String)>, StoreError> {
        match self {
            ControlStore::Sqlite(s) => s.nodes().await,
            ControlStore::Postgres(s) => s.nodes().await,
        }
    }
}

impl GenerationStore for ControlStore {
    async fn load(&self) -> Result<Vec<TenantRecord>, StoreError> {
        match self {
            ControlStore::Sqlite(s) => s.load().await,
            ControlStore::Postgres(s) => s.load().await,
        }
    }

    async fn apply(&self, change: &StoreChange) -> Result<(), StoreError> {
        match self {
            ControlStore::Sqlite(s) => s.apply(change).await,
            ControlStore::Postgres(s) => s.apply(change).await,
        }
    }
}

impl MigrationStore for ControlStore {
    async fn load_migrations(&self) -> Result<Vec<MigrationRecord>, StoreError> {
        match self {
            ControlStore::Sqlite(s) => s.load_migrations().await,
            ControlStore::Postgres(s) => s.load_migrations().await,
        }
    }

    async fn put_migration(&self, record: &MigrationRecord) -> Result<(), StoreError> {
        match self {
            ControlStore::Sqlite(s) => s.put_migration(record).await,
            ControlStore::Postgres(s) => s.put_migration(record).await,
        }
    }
}

/// What a suite's crash hook writes before the crash.
#[cfg(test)]
pub(crate) enum CrashWrite<'a> {
    Change(&'a StoreChange),
    Migration(&'a MigrationRecord),
}
