//! The cluster's checkers, by invariant id, over what the shared object store
//! applied (its history: every write with its writer, the writer's run, when it
//! was sent and when it landed), what the control plane committed and answered
//! ([`CpLog`]), and what the client asked of each node ([`ModeLog`]).
//!
//! - **S-GEN-MONO** ([`generations`]): the control plane's grants of a tenant only
//!   grow, in commit order (so two attachments never share one); every object a
//!   pageserver wrote on time under a generation suffix was written in a run of
//!   that node to which the control plane had granted that generation for that
//!   tenant before the write was sent.
//! - **S-SINGLE-WRITER** ([`single_writer`]): no pageserver sent a write for a
//!   tenant after it answered that it holds the tenant AttachedStale, Secondary or
//!   Detached, nor decided a delete after it answered AttachedMulti, until the
//!   client's next location_config request to it (a request in flight makes the
//!   mode unknown). A delete is decided when the control plane confirms the batch
//!   (the node's last validation of the tenant answered valid before the delete
//!   was sent, in any of its runs): a batch validated in AttachedSingle whose
//!   retries run on after the node went stale (cluster seed 168), or that the node
//!   executes again after a restart (seed 586), is that one decision (the deletion
//!   queue validates a batch once, and the validation is the fence).
//! - **S-DEL-GEN** ([`deletions`]): every layer delete a pageserver sent was
//!   preceded by a validation of that node answered "valid" for the tenant at a
//!   generation granted to it, after the node's own index dropped the layer (when
//!   its deletion can have been queued at the earliest), in any run of the node
//!   (a validated list is executed, and after a restart executed again, without
//!   another validation: cluster seeds 153 and 586); and when it landed, the newest
//!   index of the timeline did not reference it.
//!
//! Writes applied late (given up by their sender, landing later) are not checked:
//! nobody sent them at the time they landed (the one-node checkers' rule).

use super::client::ModeEvent;
use super::cp::{GrantSeen, ValidationSeen};
use crate::checkers::{generation_suffix, timeline_of};
use crate::sim_remote::{HistoryEntry, HistoryOp};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use strata_core::index_part::{IndexPart, IndexVersion};
use strata_core::remote_path::{self, RemoteKey};
use strata_core::tenant::RequestedMode;
use strata_core::{NodeId, TenantId, TimelineId};

/// The tenant a key under `tenants/{t}/` belongs to.
fn tenant_of(key: &RemoteKey) -> Option<TenantId> {
    let mut parts = key.as_str().split('/');
    (parts.next()? == "tenants").then_some(())?;
    parts.next()?.parse().ok()
}

/// S-GEN-MONO across nodes (see the module doc).
pub fn generations(history: &[HistoryEntry], grants: &[GrantSeen]) -> Result<(), String> {
    let mut latest: BTreeMap<TenantId, &GrantSeen> = BTreeMap::new();
    for g in grants {
        if let Some(before) = latest.get(&g.tenant)
            && before.generation >= g.generation
        {
            return Err(format!(
                "S-GEN-MONO: the control plane granted {} of {} to node {} at {:?}, not above {} granted to node {} at {:?}",
                g.generation, g.tenant, g.node.0, g.at, before.generation, before.node.0, before.at
            ));
        }
        latest.insert(g.tenant, g);
    }
    for e in history.iter().filter(|e| !e.late && e.writer > 0) {
        if !matches!(e.op, HistoryOp::Put { .. }) {
            continue;
        }
        let Some((tenant, _)) = timeline_of(&e.key) else { continue };
        let Some(generation) = generation_suffix(e.key.as_str()) else { continue };
        let granted = grants.iter().any(|g| {
            g.tenant == tenant
                && g.generation.get() == generation
                && g.node == NodeId(e.writer)
                && g.node_epoch == e.epoch
                && g.at <= e.issued
        });
        if !granted {
            return Err(format!(
                "S-GEN-MONO: node {} wrote {} (history #{}, its run {}, sent at {:?}) under generation {generation:08x}, which the control plane had not granted it in that run",
                e.writer, e.key, e.seq, e.epoch, e.issued
            ));
        }
    }
    Ok(())
}

/// S-SINGLE-WRITER at the object store (see the module doc). Pageserver `i` of
/// the mode log is writer `i + 1`.
pub fn single_writer(
    history: &[HistoryEntry],
    modes: &[ModeEvent],
    validations: &[ValidationSeen],
) -> Result<(), String> {
    for e in history.iter().filter(|e| !e.late && e.writer > 0) {
        let Some(tenant) = tenant_of(&e.key) else { continue };
        let node = (e.writer - 1) as usize;
        let decided = match e.op {
            HistoryOp::Put { .. } => e.issued,
            HistoryOp::Delete { .. } => validations
                .iter()
                .filter(|v| v.node == NodeId(e.writer) && v.at <= e.issued)
                .filter(|v| v.results.iter().any(|(t, _, valid)| *t == tenant && *valid))
                .map(|v| v.at)
                .next_back()
                .unwrap_or(e.issued),
        };
        let last = modes.iter().rfind(|m| m.node == node && m.tenant == tenant && m.at <= decided);
        let Some(ModeEvent { answered: Some(mode), at, .. }) = last else { continue };
        let is_delete = matches!(e.op, HistoryOp::Delete { .. });
        let forbidden = match mode {
            RequestedMode::AttachedStale
            | RequestedMode::Secondary { .. }
            | RequestedMode::Detached => true,
            RequestedMode::AttachedMulti => is_delete,
            RequestedMode::AttachedSingle => false,
        };
        if forbidden {
            let what = if is_delete { "deleted" } else { "wrote" };
            return Err(format!(
                "S-SINGLE-WRITER: node {} {what} {} (history #{}, sent at {:?}) while it held the tenant {mode:?} (answered at {at:?})",
                e.writer, e.key, e.seq, e.issued
            ));
        }
    }
    Ok(())
}

/// S-DEL-GEN across nodes (see the module doc).
pub fn deletions(
    history: &[HistoryEntry],
    validations: &[ValidationSeen],
    grants: &[GrantSeen],
) -> Result<(), String> {
    // Per writer and timeline, the layers its last on-time index referenced; per
    // writer and layer, when its index first left the layer out.
    let mut referenced: BTreeMap<(u64, TenantId, TimelineId), BTreeSet<RemoteKey>> =
        BTreeMap::new();
    let mut dropped_at: BTreeMap<(u64, RemoteKey), Duration> = BTreeMap::new();
    // What the store holds: objects, and per timeline its indexes by version.
    let mut objects: BTreeSet<RemoteKey> = BTreeSet::new();
    let mut indexes: BTreeMap<(TenantId, TimelineId), BTreeMap<IndexVersion, BTreeSet<RemoteKey>>> =
        BTreeMap::new();
    for e in history {
        let timeline = timeline_of(&e.key);
        let version =
            timeline.and_then(|(t, tl)| remote_path::parse_index_key(t, tl, &e.key)?.ok());
        let layers = |t, tl| -> Option<BTreeSet<RemoteKey>> {
            let index = IndexPart::from_json_bytes(e.body.as_deref()?).ok()?;
            if index.deleted_at.is_some() {
                return Some(BTreeSet::new());
            }
            let keys = index.layer_metadata.iter();
            Some(keys.map(|(n, m)| remote_path::layer_key(t, tl, n, m.generation)).collect())
        };
        match (&e.op, timeline, version) {
            (HistoryOp::Put { .. }, Some((t, tl)), Some(v)) => {
                let now = layers(t, tl).unwrap_or_default();
                indexes.entry((t, tl)).or_default().insert(v, now.clone());
                if !e.late {
                    let before =
                        referenced.insert((e.writer, t, tl), now.clone()).unwrap_or_default();
                    for key in before.difference(&now) {
                        dropped_at.entry((e.writer, key.clone())).or_insert(e.at);
                    }
                    for key in &now {
                        dropped_at.remove(&(e.writer, key.clone()));
                    }
                }
            }
            (HistoryOp::Delete { .. }, Some((t, tl)), Some(v)) => {
                indexes.entry((t, tl)).or_default().remove(&v);
            }
            (HistoryOp::Delete { .. }, Some((t, tl)), None) => {
                if let Some((v, refs)) = indexes.get(&(t, tl)).and_then(|i| i.last_key_value())
                    && refs.contains(&e.key)
                    && objects.contains(&e.key)
                {
                    return Err(format!(
                        "S-DEL-GEN: node {} deleted {} (history #{}), which the newest index {v:?} references",
                        e.writer, e.key, e.seq
                    ));
                }
                if !e.late && e.writer > 0 {
                    validated_delete(e, t, &dropped_at, validations, grants)?;
                }
            }
            _ => {}
        }
        match e.op {
            HistoryOp::Put { .. } => objects.insert(e.key.clone()),
            HistoryOp::Delete { .. } => objects.remove(&e.key),
        };
    }
    Ok(())
}

/// A layer delete `e` of tenant `t` had a validation after it was queued.
fn validated_delete(
    e: &HistoryEntry,
    t: TenantId,
    dropped_at: &BTreeMap<(u64, RemoteKey), Duration>,
    validations: &[ValidationSeen],
    grants: &[GrantSeen],
) -> Result<(), String> {
    let Some(since) = dropped_at.get(&(e.writer, e.key.clone())) else { return Ok(()) };
    let node = NodeId(e.writer);
    // A validated list is executed, retried and, once durable, executed after a
    // restart without another validation (cluster seeds 153, 586): the check is
    // on the validation, whichever run of the node sent it.
    let granted = |g: strata_core::Generation| {
        grants.iter().any(|x| x.tenant == t && x.generation == g && x.node == node)
    };
    let confirmed = validations.iter().any(|v| {
        v.node == node
            && v.at >= *since
            && v.at <= e.issued
            && v.results.iter().any(|(vt, g, valid)| *vt == t && *valid && granted(*g))
    });
    if confirmed {
        return Ok(());
    }
    Err(format!(
        "S-DEL-GEN: node {} deleted {} (history #{}, its run {}, sent at {:?}) with no validation of {t} at its generation confirmed by the control plane since its index dropped the layer (at {since:?})",
        e.writer, e.key, e.seq, e.epoch, e.issued
    ))
}
