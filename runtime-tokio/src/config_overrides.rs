//! Where a configuration key's value comes from, and the list of every key.
//!
//! Precedence, lowest first: the TOML file, `STRATA_…` environment variables, then
//! `-c key=value` on the command line. A key is written as its dotted path in the
//! file (`tuning.page_cache_bytes`, `remote_storage.bucket`, `listen_http`); its
//! environment variable is `STRATA_` followed by the path in upper case with each
//! `.` written `__` (`STRATA_TUNING__PAGE_CACHE_BYTES`, `STRATA_LISTEN_HTTP`).
//!
//! A value is read as a TOML value when it is one (`2`, `true`, `["a.key"]`,
//! `"text"`) and as a string otherwise (`0.0.0.0:9898`, `data`).
//!
//! `-c` with a key that is not in [`every_key`] is an error (a typo never falls
//! back to a default). An environment variable `STRATA_X` whose `X` names no key is
//! ignored and returned for a warning, except the names the binary reads for
//! other purposes ([`OTHER_STRATA_VARIABLES`]).
//!
//! [`every_key`] is derived from example configurations written as exhaustive
//! struct literals, so a field added to the configuration without its example
//! fails to compile, and `docs/OPERATIONS.md`'s configuration reference is checked
//! against it by a test.

use crate::config::{
    AuthConfig, ControlPlaneConfig, FileConfig, Limits, RemoteStorageConfig, Testing, Tuning,
    WalRedoConfig,
};
use std::collections::BTreeSet;

/// Environment variables named `STRATA_…` that are not configuration keys.
pub const OTHER_STRATA_VARIABLES: &[&str] =
    &["STRATA_LOG", "STRATA_LOG_FORMAT", "STRATA_FAILPOINTS", "STRATA_SEEDS"];

/// The environment variable of `key`.
pub fn env_name(key: &str) -> String {
    format!("STRATA_{}", key.replace('.', "__").to_uppercase())
}

/// Every configuration key, as dotted paths.
pub fn every_key() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for example in examples() {
        let table = toml::Table::try_from(&example)
            .unwrap_or_else(|e| unreachable!("FileConfig always serializes: {e}"));
        flatten("", &table, &mut keys);
    }
    keys
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (name, value) in table {
        let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

/// Configurations that together use every key (each variant of each section, every
/// optional field set). Exhaustive struct literals: a new field must be added here.
fn examples() -> Vec<FileConfig> {
    let tuning = Tuning {
        checkpoint_distance_bytes: Some(1),
        checkpoint_timeout_ms: Some(1),
        read_wait_timeout_ms: Some(1),
        layer_upload_concurrency: Some(1),
        shutdown_grace_ms: Some(1),
        validate_delay_ms: Some(1),
        deletion_list_seal_delay_ms: Some(1),
        page_cache_bytes: Some(1),
        max_concurrent_background_jobs: Some(1),
        gc_retention_ms: Some(1),
        secondary_download_concurrency: Some(1),
        secondary_tenant_bytes_max: Some(1),
        secondary_refresh_interval_ms: Some(1),
    };
    let base = FileConfig {
        node_id: 1,
        data_dir: "data".into(),
        listen_http: "127.0.0.1:1".into(),
        remote_storage: RemoteStorageConfig::Local { path: "remote".into() },
        control_plane: ControlPlaneConfig::Embedded { sqlite_path: "cp.sqlite".into() },
        walredo: WalRedoConfig::Process { request_timeout_ms: Some(1) },
        tuning,
        auth: Some(AuthConfig { key_files: vec!["auth.key".into()] }),
        limits: Limits {
            max_concurrent_http_requests: Some(1),
            http_request_deadline_ms: Some(1),
            max_tenants: Some(1),
            max_in_memory_bytes: Some(1),
            max_concurrent_remote_ops: Some(1),
        },
        testing: Testing { failpoints: true },
    };
    let mut remote = base.clone();
    remote.control_plane = ControlPlaneConfig::Remote {
        url: "http://127.0.0.1:1".into(),
        token: Some("t".into()),
        call_timeout_ms: Some(1),
    };
    #[cfg(not(madsim))]
    {
        remote.remote_storage = RemoteStorageConfig::S3(strata_adapters::s3::S3Config {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "r".into(),
            bucket: "b".into(),
            prefix: "p".into(),
            access_key_id: Some("a".into()),
            secret_access_key: Some("s".into()),
            force_path_style: Some(true),
            max_attempts: 1,
            connect_timeout_ms: 1,
            read_timeout_ms: 1,
            attempt_timeout_ms: 1,
            operation_timeout_ms: 1,
            list_page_keys: 1,
        });
    }
    remote.walredo = WalRedoConfig::InProcess;
    vec![base, remote]
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OverrideError {
    #[error("-c {0}: expected KEY=VALUE")]
    NotKeyValue(String),
    #[error("-c {0}: no such configuration key (docs/OPERATIONS.md, Configuration reference)")]
    UnknownKey(String),
    #[error("{key}: {path_part} is a value, not a section")]
    NotASection { key: String, path_part: String },
}

/// `text` as a TOML value if it is one, else as a string.
fn parse_value(text: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.into()),
    }
}

/// Sets `key` (dotted) to `value` in `table`, creating sections as needed.
fn set(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), OverrideError> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(OverrideError::NotASection { key: key.into(), path_part: part.into() });
            }
        };
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// Applies the environment's `STRATA_…` keys, then `cli` (`key=value` each), to
/// `table`. Returns the `STRATA_…` variables that name no key.
pub fn apply(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    cli: &[String],
) -> Result<Vec<String>, OverrideError> {
    let keys = every_key();
    let by_env: std::collections::BTreeMap<String, &String> =
        keys.iter().map(|k| (env_name(k), k)).collect();
    let mut ignored = Vec::new();
    let mut env: Vec<(String, String)> =
        env.into_iter().filter(|(name, _)| name.starts_with("STRATA_")).collect();
    env.sort();
    for (name, value) in env {
        match by_env.get(&name) {
            Some(key) => set(table, key, parse_value(&value))?,
            None if OTHER_STRATA_VARIABLES.contains(&name.as_str()) => {}
            None => ignored.push(name),
        }
    }
    for item in cli {
        let Some((key, value)) = item.split_once('=') else {
            return Err(OverrideError::NotKeyValue(item.clone()));
        };
        let key = key.trim();
        if !keys.contains(key) {
            return Err(OverrideError::UnknownKey(key.into()));
        }
        set(table, key, parse_value(value.trim()))?;
    }
    Ok(ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_then_cli_override_the_file_with_typed_values() {
        let mut table: toml::Table =
            toml::from_str(&FileConfig::embedded_defaults().to_toml()).unwrap();
        let env = [
            ("STRATA_NODE_ID", "7"),
            ("STRATA_LISTEN_HTTP", "127.0.0.1:7000"),
            ("STRATA_TUNING__PAGE_CACHE_BYTES", "4096"),
            ("STRATA_LOG", "debug"),
            ("STRATA_NOT_A_KEY", "1"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let cli = ["node_id=9".to_string(), "auth.key_files=[\"a.key\"]".to_string()];
        let ignored = apply(&mut table, env, &cli).unwrap();
        assert_eq!(ignored, vec!["STRATA_NOT_A_KEY".to_string()]);
        let c: FileConfig = table.try_into().unwrap();
        assert_eq!(c.node_id, 9, "-c wins over the environment");
        assert_eq!(c.listen_http, "127.0.0.1:7000");
        assert_eq!(c.tuning.page_cache_bytes, Some(4096));
        assert_eq!(c.auth.unwrap().key_files, vec![camino::Utf8PathBuf::from("a.key")]);
    }

    #[test]
    fn unknown_or_malformed_cli_keys_are_errors() {
        let mut table = toml::Table::new();
        assert_eq!(
            apply(&mut table, [], &["tuning.page_cache_byte=1".into()]),
            Err(OverrideError::UnknownKey("tuning.page_cache_byte".into()))
        );
        assert_eq!(
            apply(&mut table, [], &["node_id".into()]),
            Err(OverrideError::NotKeyValue("node_id".into()))
        );
    }

    #[test]
    fn every_key_names_each_section_and_variant() {
        let keys = every_key();
        for key in [
            "node_id",
            "tuning.gc_retention_ms",
            "walredo.kind",
            "walredo.request_timeout_ms",
            "control_plane.token",
            "control_plane.sqlite_path",
            "auth.key_files",
        ] {
            assert!(keys.contains(key), "{key}: {keys:?}");
        }
        #[cfg(not(madsim))]
        assert!(keys.contains("remote_storage.bucket"), "{keys:?}");
        assert_eq!(env_name("tuning.page_cache_bytes"), "STRATA_TUNING__PAGE_CACHE_BYTES");
    }

    #[cfg(not(madsim))]
    fn flatten_values(prefix: &str, table: &toml::Table, out: &mut BTreeSet<(String, i64)>) {
        for (name, value) in table {
            let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            match value {
                toml::Value::Table(inner) => flatten_values(&key, inner, out),
                toml::Value::Integer(n) => {
                    out.insert((key, *n));
                }
                _ => {}
            }
        }
    }

    /// docs/OPERATIONS.md's configuration reference lists exactly the keys of the
    /// configuration, each with a default and a unit; a numeric default is the
    /// node's.
    #[cfg(not(madsim))]
    #[test]
    fn the_documented_keys_are_the_configuration_keys() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md"))
                .unwrap();
        let section = doc
            .split("\n## Configuration reference\n")
            .nth(1)
            .expect("docs/OPERATIONS.md has a '## Configuration reference' section");
        let section = section.split("\n## ").next().unwrap_or_default();
        let mut documented = BTreeSet::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let key = cells[1].trim_matches('`').to_string();
            assert!(cells.len() >= 5, "{line}");
            assert!(
                !cells[2].is_empty() && !cells[3].is_empty(),
                "default and unit of {key}: {line}"
            );
            assert!(documented.insert(key.clone()), "{key} documented twice");
        }
        // Numeric defaults are the ones the node uses.
        let mut defaults = BTreeSet::new();
        let mut effective =
            toml::Table::try_from(FileConfig::embedded_defaults().effective()).unwrap();
        let s3 = strata_adapters::s3::S3Config::new("r", "b");
        effective.insert("remote_storage".into(), toml::Value::try_from(s3).unwrap());
        flatten_values("", &effective, &mut defaults);
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let key = cells[1].trim_matches('`');
            let number = cells[2].split_whitespace().next().unwrap_or_default().parse::<i64>();
            if let Ok(n) = number
                && defaults.iter().any(|(k, _)| k == key)
            {
                assert!(
                    defaults.contains(&(key.to_string(), n)),
                    "{key}: documented {n}, the node uses {defaults:?}"
                );
            }
        }
        let keys = every_key();
        let undocumented: Vec<_> = keys.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&keys).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "undocumented keys {undocumented:?}; documented keys that do not exist {stale:?}"
        );
    }
}
