//! The JSON shapes of the control plane's HTTP API, shared by the service, the
//! node's link and `strata ctl`.

use serde::{Deserialize, Serialize};
use strata_core::control_plane::ControlPlaneError;
use strata_core::generation::Generation;
use strata_core::id::{NodeId, TenantId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReAttachRequest {
    pub node_id: u64,
    /// Tenants the node holds back (left as they are, unanswered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReAttachedTenant {
    pub id: String,
    pub r#gen: u32,
    pub previous_was_own: bool,
    /// A migration of the tenant to this node is under way (absent: no).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub migration_destination: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReAttachResponse {
    pub tenants: Vec<ReAttachedTenant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantGen {
    pub id: String,
    pub r#gen: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub tenants: Vec<TenantGen>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub id: String,
    pub valid: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateResponse {
    pub tenants: Vec<Validity>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    pub tenant_id: String,
    pub node_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_gen: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachResponse {
    pub r#gen: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetachRequest {
    pub tenant_id: String,
    /// The node letting the tenant go: nothing changes if another node holds it.
    pub node_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterNode {
    pub node_id: u64,
    /// The node's HTTP API, e.g. `http://127.0.0.1:9898`.
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub tenant_id: String,
    pub node_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRow {
    pub tenant_id: String,
    /// The node it is attached to; `None` when detached.
    pub node_id: Option<u64>,
    pub generation: u32,
    /// The tenant's last migration, if it ever had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSummary {
    pub phase: String,
    pub origin: u64,
    pub destination: u64,
    /// Still running (false once `done`).
    pub active: bool,
}

/// `POST /admin/migrations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartMigration {
    pub tenant_id: String,
    /// The destination.
    pub node_id: u64,
    /// `secondary_warm` (default) or `detached`: what the origin becomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_after: Option<String>,
}

/// A migration and its events (`GET /admin/migrations/{tenant}?since=SEQ`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRow {
    /// Changes when the control plane restarts (event numbers start over).
    pub incarnation: u64,
    pub tenant_id: String,
    pub origin: Option<u64>,
    pub destination: Option<u64>,
    pub origin_generation: Option<u32>,
    pub phase: String,
    pub destination_generation: Option<u32>,
    pub active: bool,
    pub events: Vec<EventRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub seq: u64,
    /// Milliseconds since the control plane started.
    pub at_ms: u64,
    pub what: String,
}

/// A refusal of the control-plane machine, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    UnknownTenant { tenant: String },
    UnknownNode { node: u64 },
    GenerationExhausted { tenant: String, r#gen: u32 },
    Overloaded { queued: usize },
    StoreFailed { message: String },
}

/// An error answer: `{"msg"}`, plus the machine's refusal when it is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

impl Refusal {
    pub fn from_error(e: &ControlPlaneError) -> Option<Refusal> {
        Some(match e {
            ControlPlaneError::UnknownTenant(t) => Refusal::UnknownTenant { tenant: t.to_string() },
            ControlPlaneError::UnknownNode(n) => Refusal::UnknownNode { node: n.0 },
            ControlPlaneError::GenerationExhausted(t, g) => {
                Refusal::GenerationExhausted { tenant: t.to_string(), r#gen: g.get() }
            }
            ControlPlaneError::Overloaded { queued } => Refusal::Overloaded { queued: *queued },
            ControlPlaneError::StoreFailed(m) => Refusal::StoreFailed { message: m.clone() },
            ControlPlaneError::Rejected(_) => return None,
        })
    }

    /// Back to the machine's error; `Err` names what does not parse.
    pub fn into_error(self) -> Result<ControlPlaneError, String> {
        Ok(match self {
            Refusal::UnknownTenant { tenant } => {
                ControlPlaneError::UnknownTenant(tenant_id(&tenant)?)
            }
            Refusal::UnknownNode { node } => ControlPlaneError::UnknownNode(NodeId(node)),
            Refusal::GenerationExhausted { tenant, r#gen } => {
                ControlPlaneError::GenerationExhausted(tenant_id(&tenant)?, generation(r#gen)?)
            }
            Refusal::Overloaded { queued } => ControlPlaneError::Overloaded { queued },
            Refusal::StoreFailed { message } => ControlPlaneError::StoreFailed(message),
        })
    }
}

pub fn tenant_id(s: &str) -> Result<TenantId, String> {
    s.parse().map_err(|e| format!("tenant id {s:?}: {e}"))
}

pub fn generation(g: u32) -> Result<Generation, String> {
    Generation::new(g).ok_or_else(|| format!("generation {g} is not >= 1"))
}
