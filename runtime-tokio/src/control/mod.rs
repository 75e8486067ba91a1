//! `strata control`: core's control-plane machine as a service, and the node's
//! HTTP link to it.
//!
//! - [`service`]: the axum server. It drives one
//!   [`ControlPlane`](strata_core::control_plane::ControlPlane) on the store
//!   `--db` names (`strata_adapters::control_store`): SQLite (the same store and
//!   schema the in-process control plane uses, plus the registered nodes) or
//!   PostgreSQL (`strata_adapters::pg_store`, the same rows).
//! - [`link`]: the node side: answers the client machine's `ControlPlaneSend`
//!   effects over HTTP, with a timeout, failures mapped to the client's kinds.
//! - [`ctl`]: the `strata ctl …` verbs (admin API calls).
//! - [`migrate`]: the migration reconciler's driver (persists, node calls, timers).
//!
//! # Authentication ([`service::ControlAuth`])
//! `strata control --key-file K` (repeatable): every request carries a JWT signed
//! by one of the keys (`strata token mint --scope …`, see `crate::auth`). The
//! admin API needs the admin scope; the node-facing API the admin scope or the
//! `node` scope of the node the request names (`node_id` in the body; `/validate`
//! names none, so any node token). A missing, expired or wrongly signed token is
//! 401; a scope that does not cover the request 403. `--token T` (one static
//! token for everything) is the older way and stays for one machine; without
//! either, the API is open.
//!
//! Calls the other way, to nodes (a tenant create, a migration's status and
//! location_config calls), carry the token in `--node-token-file`
//! ([`service::NodeToken`]: an admin token of nodes with auth on), read at each
//! call; without it they carry none.
//!
//! # Node-facing API
//! | request | body | answer |
//! |---|---|---|
//! | `POST /re-attach` | `{"node_id": 1}` | `{"tenants": [{"id": hex, "gen": 7, "previous_was_own": true}]}`: every tenant attached to the node, each bumped to a new generation, committed before the answer; `"migration_destination": true` on a tenant migrating to the node (a node without its config loads it AttachedMulti) |
//! | `POST /validate` | `{"tenants": [{"id": hex, "gen": 7}]}` | `{"tenants": [{"id": hex, "valid": bool}]}`: valid iff `gen` is the tenant's latest; unknown tenants are invalid |
//! | `POST /attach` | `{"tenant_id": hex, "node_id": 1, "reported_gen"?: 6}` | `{"gen": 8}` (committed first) |
//! | `POST /detach` | `{"tenant_id": hex, "node_id": 1}` | `{}`: the tenant is attached nowhere if the node held it; nothing changes if another node holds it (a migration's origin letting go) |
//!
//! A refusal of the machine answers `{"msg", "refusal": {"kind": …}}` (404 unknown
//! tenant or node, 409 generations exhausted, 503 overloaded or store failed); a
//! malformed body 400 `{"msg"}`; a missing or wrong token 401 `{"msg"}`, a token
//! for another node 403.
//!
//! # Admin API (admin scope)
//! `POST /admin/nodes {"node_id", "address"}`, `GET /admin/nodes`,
//! `POST /admin/tenants {"tenant_id", "node_id"}` (the control plane asks the node
//! to create the tenant; the node attaches it through `/attach`),
//! `GET /admin/tenants` (`[{"tenant_id", "node_id", "generation", "migration"?:
//! {"phase", "origin", "destination", "active"}}]`),
//! `POST /admin/migrations {"tenant_id", "node_id", "origin_after"?:
//! "secondary_warm"|"detached"}` (201 once the migration's first phase is durable;
//! 409 while one runs; it then runs in the background, [`migrate`]),
//! `GET /admin/migrations/{tenant}?since=SEQ` (its phase and events from `SEQ`).

pub mod ctl;
pub mod link;
pub mod migrate;
pub mod service;
pub mod wire;
