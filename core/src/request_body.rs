//! The HTTP API's request bodies (and the page query), as data: their JSON shapes and
//! what they turn into. The runtime's routes (`runtime-tokio/src/http.rs`) extract
//! these types and add nothing to them; keeping them here lets the fuzz targets
//! (which depend on core only) parse and re-format exactly what the API accepts.
//!
//! | route | body |
//! |---|---|
//! | `POST /v1/tenant` | [`CreateTenantBody`]: `{"tenant_id"?: hex}` |
//! | `POST /v1/tenant/{t}/timeline` | [`CreateTimelineBody`]: `{"timeline_id"?: hex}` |
//! | `PUT /v1/tenant/{t}/location_config` | [`LocationConfigBody`]: `{"mode", "generation"?: n, "warm"?: bool}` |
//! | `POST /v1/tenant/{t}/timeline/{tl}/ingest` | [`IngestBody`]: `{"records": [IngestRecord...]}` |
//! | `GET /v1/tenant/{t}/timeline/{tl}/page?key=K&lsn=L` | [`PageQuery`] (query string) |
//!
//! Unknown fields are refused in every body. Every body has a `from_json_bytes`
//! (the same `serde_json` reading the HTTP extractor does) and a `to_json_bytes`
//! whose output reads back to an equal value.

use crate::error::ParseError;
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::key::Key;
use crate::lsn::Lsn;
use crate::redo::IngestRecord;
use crate::tenant::{LocationRequest, RequestedMode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A body whose meaning is refused (its JSON shape was fine).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(
        "unknown mode {0:?}: expected AttachedSingle, AttachedMulti, AttachedStale, Secondary or Detached"
    )]
    UnknownMode(String),
    #[error("generation must be at least 1")]
    ZeroGeneration,
}

fn from_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, ParseError> {
    serde_json::from_slice(bytes).map_err(|e| ParseError::invalid(what, e.to_string()))
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Only strings, integers, booleans and maps with string keys: always serializes.
    serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("request bodies serialize: {e}"))
}

/// `POST /v1/tenant`: the id to create, or a random one when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
}

/// `POST /v1/tenant/{t}/timeline`: the id to create, or a random one when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTimelineBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline_id: Option<TimelineId>,
}

/// `PUT /v1/tenant/{t}/location_config`. `mode` is one of `AttachedSingle`,
/// `AttachedMulti`, `AttachedStale`, `Secondary`, `Detached`; `warm` means something
/// for `Secondary` only. `generation`: for the attached modes, the generation
/// expected; for `Secondary` and `Detached`, the newest one the request demotes.
/// `attach_only`: an attach that leaves a tenant already attached at that
/// generation as it is ([`LocationRequest::attach_only`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationConfigBody {
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    #[serde(default)]
    pub warm: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attach_only: bool,
}

/// `POST /v1/tenant/{t}/timeline/{tl}/ingest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    pub records: Vec<IngestRecord>,
}

/// `GET /v1/tenant/{t}/timeline/{tl}/page?key=K&lsn=L`: kept as text until
/// [`PageQuery::parse`], so that a malformed key or LSN is a 400 naming it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageQuery {
    pub key: String,
    pub lsn: String,
}

macro_rules! json_body {
    ($ty:ty, $what:literal) => {
        impl $ty {
            pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, ParseError> {
                from_json($what, bytes)
            }

            pub fn to_json_bytes(&self) -> Vec<u8> {
                to_json(self)
            }
        }
    };
}

json_body!(CreateTenantBody, "create tenant body");
json_body!(CreateTimelineBody, "create timeline body");
json_body!(LocationConfigBody, "location_config body");
json_body!(IngestBody, "ingest body");

impl LocationConfigBody {
    /// What the body asks for.
    pub fn request(&self) -> Result<LocationRequest, BodyError> {
        let mode = match self.mode.as_str() {
            "AttachedSingle" => RequestedMode::AttachedSingle,
            "AttachedMulti" => RequestedMode::AttachedMulti,
            "AttachedStale" => RequestedMode::AttachedStale,
            "Secondary" => RequestedMode::Secondary { warm: self.warm },
            "Detached" => RequestedMode::Detached,
            other => return Err(BodyError::UnknownMode(other.to_string())),
        };
        let generation = match self.generation {
            None => None,
            Some(n) => Some(Generation::new(n).ok_or(BodyError::ZeroGeneration)?),
        };
        Ok(LocationRequest {
            attach_only: self.attach_only,
            ..LocationRequest::new(mode, generation)
        })
    }

    /// The body that asks for `request` (the inverse of [`LocationConfigBody::request`]).
    pub fn from_request(request: &LocationRequest) -> Self {
        let (mode, warm) = match request.mode {
            RequestedMode::AttachedSingle => ("AttachedSingle", false),
            RequestedMode::AttachedMulti => ("AttachedMulti", false),
            RequestedMode::AttachedStale => ("AttachedStale", false),
            RequestedMode::Secondary { warm } => ("Secondary", warm),
            RequestedMode::Detached => ("Detached", false),
        };
        LocationConfigBody {
            mode: mode.to_string(),
            generation: request.generation.map(Generation::get),
            warm,
            attach_only: request.attach_only,
        }
    }
}

impl PageQuery {
    /// The key and LSN asked for.
    pub fn parse(&self) -> Result<(Key, Lsn), ParseError> {
        Ok((self.key.parse()?, self.lsn.parse()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_config_bodies_mean_what_the_api_doc_says() {
        let body =
            LocationConfigBody::from_json_bytes(br#"{"mode": "Secondary", "warm": true}"#).unwrap();
        let request = body.request().unwrap();
        assert_eq!(request.mode, RequestedMode::Secondary { warm: true });
        assert_eq!(request.generation, None);
        let body =
            LocationConfigBody::from_json_bytes(br#"{"mode":"AttachedMulti","generation":7}"#)
                .unwrap();
        let request = body.request().unwrap();
        assert_eq!(request.generation, Generation::new(7));
        assert_eq!(LocationConfigBody::from_request(&request).request(), Ok(request));
        let zero = LocationConfigBody {
            mode: "Detached".into(),
            generation: Some(0),
            warm: false,
            attach_only: false,
        };
        assert_eq!(zero.request(), Err(BodyError::ZeroGeneration));
        let odd = LocationConfigBody {
            mode: "attached".into(),
            generation: None,
            warm: false,
            attach_only: false,
        };
        assert_eq!(odd.request(), Err(BodyError::UnknownMode("attached".into())));
        assert!(LocationConfigBody::from_json_bytes(br#"{"mode":"Detached","x":1}"#).is_err());
    }

    #[test]
    fn bodies_round_trip_through_json() {
        let tenant = CreateTenantBody { tenant_id: Some(TenantId::from_bytes([7; 16])) };
        assert_eq!(CreateTenantBody::from_json_bytes(&tenant.to_json_bytes()), Ok(tenant));
        assert_eq!(CreateTenantBody::from_json_bytes(b"{}"), Ok(CreateTenantBody::default()));
        let timeline = CreateTimelineBody { timeline_id: None };
        assert_eq!(CreateTimelineBody::from_json_bytes(&timeline.to_json_bytes()), Ok(timeline));
        let ingest = IngestBody::from_json_bytes(
            br#"{"records":[{"key":"000000000000002A","lsn":"0/10","record":{"image":"0a"}}]}"#,
        )
        .unwrap();
        assert_eq!(ingest.records.len(), 1);
        assert_eq!(IngestBody::from_json_bytes(&ingest.to_json_bytes()), Ok(ingest));
    }

    #[test]
    fn page_query_names_what_is_malformed() {
        let q = PageQuery { key: "000000000000002A".into(), lsn: "0/10".into() };
        assert_eq!(q.parse(), Ok((Key(0x2a), Lsn(0x10))));
        assert!(PageQuery { key: "zz".into(), lsn: "0/10".into() }.parse().is_err());
        assert!(PageQuery { key: "000000000000002A".into(), lsn: "10".into() }.parse().is_err());
    }
}
