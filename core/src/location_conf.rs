//! `LocationConf`: how this node holds a tenant, stored per tenant as `config-v1`
//! (TOML) next to its timelines.
//!
//! Format versions: the reader accepts [`LOCATION_CONF_VERSION`] (2) and the previous
//! version 1, and writes only the current one.
//!
//! - v2: `format_version = 2`, a `[mode]` table with `kind` (`AttachedSingle`,
//!   `AttachedMulti`, `AttachedStale`, `Secondary`), `generation` for the attached
//!   kinds and `warm` for Secondary, and a `[tenant_conf]` table of overrides.
//! - v1 (no `format_version` key): `mode = "Attached"` or `"Secondary"`, with
//!   `generation` and `attach_mode` (`Single`/`Multi`/`Stale`) or `warm` at the top
//!   level, and the same `[tenant_conf]` table.
//!
//! A missing or unreadable config is an error for that tenant (reported, the tenant
//! not loaded), never a silent default. `Detached` is a request, never stored: a
//! detached tenant has no directory.

use crate::error::ParseError;
use crate::generation::Generation;
use serde::{Deserialize, Serialize};

pub const LOCATION_CONF_FILE_NAME: &str = "config-v1";
pub const LOCATION_CONF_VERSION: u32 = 2;
pub const LOCATION_CONF_ACCEPTED_VERSIONS: &[u32] = &[1, 2];

/// How this node holds a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum LocationMode {
    /// The sole attachment: uploads and deletes.
    AttachedSingle { generation: Generation },
    /// Migration destination while the origin may still be attached: uploads, never
    /// deletes (the other node's index may still reference the layers).
    AttachedMulti { generation: Generation },
    /// Migration origin, superseded or about to be: uploads and deletes nothing.
    AttachedStale { generation: Generation },
    /// Keeps (warm: downloads) local layers, no generation, no remote writes.
    Secondary { warm: bool },
}

impl LocationMode {
    pub fn generation(&self) -> Option<Generation> {
        match self {
            LocationMode::AttachedSingle { generation }
            | LocationMode::AttachedMulti { generation }
            | LocationMode::AttachedStale { generation } => Some(*generation),
            LocationMode::Secondary { .. } => None,
        }
    }

    pub fn is_attached(&self) -> bool {
        self.generation().is_some()
    }
}

/// Per-tenant overrides of the node's defaults. Every field is optional; unknown
/// fields are rejected so that a typo is an error, not a silent default.
///
/// TOML integers are signed 64-bit: a `u64` above [`TOML_INT_MAX`] is written as
/// [`TOML_INT_MAX`] (for byte counts and milliseconds that is "unbounded" either
/// way), so that every written file reads back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "saturating")]
    pub checkpoint_distance_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "saturating")]
    pub checkpoint_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction_threshold_layers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "saturating")]
    pub gc_horizon_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "saturating")]
    pub pitr_interval_ms: Option<u64>,
}

/// The largest integer TOML can hold.
pub const TOML_INT_MAX: u64 = i64::MAX as u64;

fn saturating<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&(*v).min(TOML_INT_MAX)),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationConf {
    pub mode: LocationMode,
    pub tenant_conf: TenantConfOverrides,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V2 {
    format_version: u32,
    mode: LocationMode,
    #[serde(default)]
    tenant_conf: TenantConfOverrides,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct V1 {
    mode: V1Mode,
    #[serde(default)]
    generation: Option<Generation>,
    #[serde(default)]
    attach_mode: Option<V1AttachMode>,
    #[serde(default)]
    warm: Option<bool>,
    #[serde(default)]
    tenant_conf: TenantConfOverrides,
}

#[derive(Deserialize)]
enum V1Mode {
    Attached,
    Secondary,
}

#[derive(Deserialize)]
enum V1AttachMode {
    Single,
    Multi,
    Stale,
}

impl LocationConf {
    pub fn attached_single(generation: Generation) -> Self {
        LocationConf {
            mode: LocationMode::AttachedSingle { generation },
            tenant_conf: TenantConfOverrides::default(),
        }
    }

    /// Always the current version.
    pub fn to_toml(&self) -> String {
        let v2 = V2 {
            format_version: LOCATION_CONF_VERSION,
            mode: self.mode,
            tenant_conf: self.tenant_conf.clone(),
        };
        toml::to_string(&v2).unwrap_or_else(|e| unreachable!("LocationConf always serializes: {e}"))
    }

    /// Reads the current or the previous format version.
    pub fn from_toml(text: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "location config (config-v1)";
        let table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| ParseError::invalid(WHAT, e.to_string()))?;
        let version = match table.get("format_version") {
            None => 1,
            Some(toml::Value::Integer(v)) => u32::try_from(*v).unwrap_or(u32::MAX),
            Some(other) => {
                return Err(ParseError::malformed(
                    WHAT,
                    "an integer format_version",
                    &other.to_string(),
                ));
            }
        };
        match version {
            2 => {
                let v2: V2 =
                    toml::from_str(text).map_err(|e| ParseError::invalid(WHAT, e.to_string()))?;
                Ok(LocationConf { mode: v2.mode, tenant_conf: v2.tenant_conf })
            }
            1 => {
                let v1: V1 =
                    toml::from_str(text).map_err(|e| ParseError::invalid(WHAT, e.to_string()))?;
                let mode = match (v1.mode, v1.generation, v1.attach_mode) {
                    (V1Mode::Attached, Some(generation), Some(V1AttachMode::Single) | None) => {
                        LocationMode::AttachedSingle { generation }
                    }
                    (V1Mode::Attached, Some(generation), Some(V1AttachMode::Multi)) => {
                        LocationMode::AttachedMulti { generation }
                    }
                    (V1Mode::Attached, Some(generation), Some(V1AttachMode::Stale)) => {
                        LocationMode::AttachedStale { generation }
                    }
                    (V1Mode::Attached, None, _) => {
                        return Err(ParseError::invalid(
                            WHAT,
                            "v1 Attached mode without a generation",
                        ));
                    }
                    (V1Mode::Secondary, None, None) => {
                        LocationMode::Secondary { warm: v1.warm.unwrap_or(false) }
                    }
                    (V1Mode::Secondary, _, _) => {
                        return Err(ParseError::invalid(
                            WHAT,
                            "v1 Secondary mode must carry neither a generation nor an attach_mode",
                        ));
                    }
                };
                Ok(LocationConf { mode, tenant_conf: v1.tenant_conf })
            }
            other => Err(ParseError::UnsupportedVersion {
                what: WHAT,
                version: other,
                accepted: LOCATION_CONF_ACCEPTED_VERSIONS,
            }),
        }
    }
}
