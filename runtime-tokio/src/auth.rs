//! Authentication of the HTTP API: JWT bearer tokens.
//!
//! A token is a JWT signed with HS256 by one of the keys named in the config's
//! `[auth] key_files` (each file holds one secret of at least [`MIN_KEY_BYTES`]
//! bytes; several files let an operator rotate a key: add the new one, re-mint,
//! remove the old). Its claims:
//!
//! | claim | meaning |
//! |---|---|
//! | `scope` | `"admin"`: every route; `"tenant"`: only the routes of its tenant's timelines |
//! | `tenant_id` | with `"tenant"`: the one tenant the token may touch (32 hex digits) |
//! | `node_id` | with `"node"`: the node the token speaks for, on the control plane's node-facing API (`control/service.rs`); a node token opens nothing on a node's own API |
//! | `exp` | expiry, seconds since the Unix epoch (required; accepted up to [`LEEWAY_SECS`] late for clock skew) |
//!
//! What each route needs ([`needed`]): `GET /v1/status`, `GET /metrics` and
//! `GET /v1/openapi.json` are open (probes, scrapers and client generators); `/v1/tenant/{t}/timeline…` needs an admin token or a
//! tenant token for `t`; everything else (creating, listing, placing, detaching and
//! deleting tenants, and unknown routes) needs an admin token.
//!
//! Answers, as JSON `{"msg"}` like every other error: 401 with
//! `WWW-Authenticate: Bearer` when the token is missing, malformed, expired or
//! signed by no configured key; 403 when a valid token's scope does not cover the
//! route. The check runs before the body is read.
//!
//! Off when the config has no `[auth]` section, which the node allows only when
//! `listen_http` is a loopback address (`FileConfig::validate`).
//!
//! `strata token new-key FILE` writes a key; `strata token mint --key-file FILE
//! --scope admin|tenant|node [--tenant T] [--node N] [--ttl-secs N]` prints a token
//! ([`mint`]).

use crate::http::Rejected;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use camino::Utf8Path;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use strata_core::TenantId;

/// The shortest key accepted: HS256 is only as strong as its secret.
pub const MIN_KEY_BYTES: usize = 32;

/// How late after its `exp` a token is still accepted (clock skew between the
/// issuer and the node).
pub const LEEWAY_SECS: u64 = 60;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every route.
    Admin,
    /// The routes of one tenant's timelines (`tenant_id`).
    Tenant,
    /// The control plane's node-facing API as one node (`node_id`): re-attach,
    /// attach and detach for that node, and validate. Nothing on a node's own API.
    Node,
}

/// A token's claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    /// With `"node"`: the one node the token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    /// Seconds since the Unix epoch.
    pub exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading auth key {path}: {source}")]
    ReadKey { path: String, source: std::io::Error },
    #[error("auth key {path} holds {len} bytes; at least {MIN_KEY_BYTES} are required")]
    ShortKey { path: String, len: usize },
    #[error("no auth key configured")]
    NoKeys,
    #[error(
        "a tenant-scoped token needs a tenant id, a node-scoped one a node id, an admin token neither"
    )]
    ScopeTenantMismatch,
    #[error("{0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("unknown scope {0:?}: admin, tenant or node")]
    UnknownScope(String),
    #[error("--tenant: {0}")]
    BadTenant(String),
    #[error("no randomness for a new key: {0}")]
    Random(std::io::Error),
    #[error("writing auth key {path}: {source}")]
    WriteKey { path: String, source: std::io::Error },
}

/// The verifying side: every configured key.
pub struct Auth {
    keys: Vec<DecodingKey>,
    validation: Validation,
}

impl Auth {
    /// Reads every key file (each must hold at least [`MIN_KEY_BYTES`] bytes).
    pub fn from_key_files(paths: &[impl AsRef<Utf8Path>]) -> Result<Self, AuthError> {
        let mut keys = Vec::with_capacity(paths.len());
        for path in paths {
            keys.push(DecodingKey::from_secret(&read_key(path.as_ref())?)?);
        }
        Self::from_decoding_keys(keys)
    }

    /// From secrets in memory (tests).
    pub fn from_secrets(secrets: &[&[u8]]) -> Result<Self, AuthError> {
        let keys = secrets.iter().map(|s| DecodingKey::from_secret(s)).collect::<Result<_, _>>()?;
        Self::from_decoding_keys(keys)
    }

    fn from_decoding_keys(keys: Vec<DecodingKey>) -> Result<Self, AuthError> {
        if keys.is_empty() {
            return Err(AuthError::NoKeys);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp"]);
        Ok(Auth { keys, validation })
    }

    /// The claims of `token` if one configured key signed it and it has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut last = None;
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or(AuthError::NoKeys, AuthError::Jwt))
    }
}

/// Reads a key file: its bytes, surrounding whitespace trimmed.
pub fn read_key(path: &Utf8Path) -> Result<Vec<u8>, AuthError> {
    let bytes = std::fs::read(path)
        .map_err(|source| AuthError::ReadKey { path: path.to_string(), source })?;
    let key = bytes.trim_ascii().to_vec();
    if key.len() < MIN_KEY_BYTES {
        return Err(AuthError::ShortKey { path: path.to_string(), len: key.len() });
    }
    Ok(key)
}

/// Writes a new key (32 random bytes as 64 hex digits) to `path`, readable by its
/// owner only.
pub fn write_new_key(path: &Utf8Path) -> Result<(), AuthError> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(AuthError::Random)?;
    let write_err = |source| AuthError::WriteKey { path: path.to_string(), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

/// A token with `claims`, signed with `secret`.
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    if (claims.scope == Scope::Tenant) != claims.tenant_id.is_some()
        || (claims.scope == Scope::Node) != claims.node_id.is_some()
    {
        return Err(AuthError::ScopeTenantMismatch);
    }
    let key = EncodingKey::from_secret(secret)?;
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)?)
}

/// `strata token mint`: a token for `scope` (`admin`; `tenant`, with `tenant`;
/// `node`, with `node_id`)
/// valid for `ttl_secs`, signed with the key in `key_file`.
pub fn mint_with_key_file(
    key_file: &Utf8Path,
    scope: &str,
    tenant: Option<&str>,
    node_id: Option<u64>,
    ttl_secs: u64,
) -> Result<String, AuthError> {
    let scope = match scope {
        "admin" => Scope::Admin,
        "tenant" => Scope::Tenant,
        "node" => Scope::Node,
        other => return Err(AuthError::UnknownScope(other.to_string())),
    };
    let tenant_id = match tenant {
        Some(t) => Some(t.parse().map_err(|e| AuthError::BadTenant(format!("{e}")))?),
        None => None,
    };
    let exp = now_secs().saturating_add(ttl_secs);
    let claims = Claims { scope, tenant_id, node_id, exp };
    mint(&read_key(key_file)?, &claims)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a request needs, from its path alone (so that it is decided before the
/// body is read).
#[derive(Debug, PartialEq, Eq)]
pub enum Needed<'a> {
    Nothing,
    /// An admin token, or a tenant token whose `tenant_id` prints as this segment.
    Tenant(&'a str),
    Admin,
}

/// What the route of `path` needs.
pub fn needed(path: &str) -> Needed<'_> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "status"] | ["metrics"] | ["v1", "openapi.json"] => Needed::Nothing,
        ["v1", "tenant", tenant, "timeline", ..] => Needed::Tenant(tenant),
        _ => Needed::Admin,
    }
}

/// Whether `claims` cover what is `needed`.
fn allows(claims: &Claims, needed: &Needed<'_>) -> bool {
    match (claims.scope, needed) {
        (_, Needed::Nothing) | (Scope::Admin, _) => true,
        (Scope::Tenant, Needed::Tenant(segment)) => {
            claims.tenant_id.is_some_and(|t| t.to_string() == *segment)
        }
        (Scope::Tenant, Needed::Admin) | (Scope::Node, _) => false,
    }
}

fn unauthorized(msg: impl Into<String>) -> Response {
    let mut response = Rejected::new(StatusCode::UNAUTHORIZED, msg).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The middleware: with auth configured, every request but the open ones carries
/// a valid token whose scope covers its route.
pub async fn authorize(
    State(auth): State<Option<Arc<Auth>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(auth) = auth else { return next.run(req).await };
    let needed = needed(req.uri().path());
    if needed == Needed::Nothing {
        return next.run(req).await;
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return unauthorized("missing Authorization: Bearer token");
    };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return unauthorized("Authorization is not a Bearer token");
    };
    let claims = match auth.verify(token.trim()) {
        Ok(claims) => claims,
        Err(e) => return unauthorized(format!("invalid token: {e}")),
    };
    if !allows(&claims, &needed) {
        let msg = match needed {
            Needed::Tenant(t) => format!("the token's scope does not cover tenant {t}"),
            _ => "this route needs an admin token".to_string(),
        };
        return Rejected::new(StatusCode::FORBIDDEN, msg).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const A: &str = "0000000000000000000000000000000a";

    fn claims(scope: Scope, tenant: Option<&str>, exp: u64) -> Claims {
        Claims { scope, tenant_id: tenant.map(|t| t.parse().unwrap()), node_id: None, exp }
    }

    #[test]
    fn routes_need_what_the_module_doc_says() {
        assert_eq!(needed("/v1/status"), Needed::Nothing);
        assert_eq!(needed("/metrics"), Needed::Nothing);
        assert_eq!(needed("/v1/openapi.json"), Needed::Nothing);
        assert_eq!(needed(&format!("/v1/tenant/{A}/timeline")), Needed::Tenant(A));
        assert_eq!(needed(&format!("/v1/tenant/{A}/timeline/x/page")), Needed::Tenant(A));
        for admin in [
            "/v1/tenant",
            &format!("/v1/tenant/{A}"),
            &format!("/v1/tenant/{A}/detach"),
            "/v1/failpoints",
        ] {
            assert_eq!(needed(admin), Needed::Admin, "{admin}");
        }
        assert_eq!(needed("/v1/status/x"), Needed::Admin);
        assert_eq!(needed("/nope"), Needed::Admin);
    }

    #[test]
    fn a_tenant_token_covers_only_its_tenants_timelines() {
        let t = claims(Scope::Tenant, Some(A), 0);
        assert!(allows(&t, &Needed::Tenant(A)));
        assert!(!allows(&t, &Needed::Tenant("0000000000000000000000000000000b")));
        assert!(!allows(&t, &Needed::Admin));
        let admin = claims(Scope::Admin, None, 0);
        assert!(allows(&admin, &Needed::Tenant(A)) && allows(&admin, &Needed::Admin));
        // A node token is for the control plane: nothing on a node's own API.
        let node = Claims { node_id: Some(1), ..claims(Scope::Node, None, 0) };
        assert!(!allows(&node, &Needed::Tenant(A)) && !allows(&node, &Needed::Admin));
        assert!(
            mint(SECRET, &claims(Scope::Node, None, 1)).is_err(),
            "a node token names its node"
        );
    }

    #[test]
    fn verify_accepts_a_fresh_token_and_refuses_expired_and_foreign_ones() {
        let auth = Auth::from_secrets(&[b"another key, rotated in, 32 bytes", SECRET]).unwrap();
        let fresh = claims(Scope::Tenant, Some(A), now_secs() + 600);
        assert_eq!(auth.verify(&mint(SECRET, &fresh).unwrap()).unwrap(), fresh);
        let expired = claims(Scope::Admin, None, now_secs() - LEEWAY_SECS - 60);
        assert!(auth.verify(&mint(SECRET, &expired).unwrap()).is_err());
        let foreign = mint(b"not a configured key, 32 bytes long", &fresh).unwrap();
        assert!(auth.verify(&foreign).is_err());
        assert!(auth.verify("not.a.jwt").is_err());
        assert!(mint(SECRET, &claims(Scope::Tenant, None, 1)).is_err());
        assert!(mint(SECRET, &claims(Scope::Admin, Some(A), 1)).is_err());
    }

    #[test]
    fn key_files_are_read_trimmed_and_short_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("auth.key");
        write_new_key(&path).unwrap();
        assert_eq!(read_key(&path).unwrap().len(), 64);
        assert!(write_new_key(&path).is_err(), "an existing key is never overwritten");
        let short = Utf8Path::from_path(dir.path()).unwrap().join("short.key");
        std::fs::write(&short, "tooshort\n").unwrap();
        assert!(matches!(read_key(&short), Err(AuthError::ShortKey { len: 8, .. })));
    }
}
