//! The rot phase (`remote.rot`): at the end of a single-node run that passed,
//! layer objects of the workload timeline's newest index rot at rest (one bit
//! each, for good), then everything is read back from remote storage.
//!
//! 1. Each layer the newest index references rots if `remote.rot` fires (asked
//!    once per layer, the faults unhealed for that instant only).
//! 2. The deep scrub reports exactly the rotted layers as `CorruptLayer`, no more
//!    and no fewer, but for a rotted layer that an index uploaded since dropped
//!    (the node runs on: the scrub then reports it as an orphan, or it is gone);
//!    any other finding fails the run as before.
//! 3. The tenant is detached and attached again (no local layer is left), and every
//!    key of the model is read at the visible LSN. A read answers the model's value
//!    (S-VISIBLE), or a typed corrupt error that the rot explains:
//!    - `layer … is corrupt in remote storage` naming a rotted object whose layer's
//!      key range holds the key read (the read needed that layer);
//!    - `timeline … is broken: corrupt: remote object K` with K rotted: the node's
//!      documented answer once a layer it needed proved corrupt (every request of
//!      the timeline answers 500 naming the object, docs/FAULT_MODEL.md).
//!
//!    Anything else (a wrong value, a corrupt error naming an object that did
//!    not rot, a key outside the rotted layer's range) is a violation.
//!
//! Only layers rot: the index is JSON without a checksum, so a flip that keeps it
//! parseable would be trusted (docs/FAULT_MODEL.md, "Remote bit-rot").

use super::*;
use strata_core::index_part::IndexPart;
use strata_core::layer_name::LayerName;
use strata_core::remote_path::{self, RemoteKey};

/// What the rot phase saw (for the report).
#[derive(Clone, Copy, Debug, Default)]
pub struct RotSeen {
    /// Layer objects rotted.
    pub rotted: u64,
    /// Reads answered with a corrupt error the rot explains.
    pub refused_reads: u64,
}

/// The layers of the newest index of `timeline`, with their object keys.
fn newest_layers(
    world: &World,
    tenant: TenantId,
    timeline: TimelineId,
) -> Vec<(LayerName, RemoteKey)> {
    let prefix = remote_path::timeline_prefix(tenant, timeline);
    let objects = world.remote.objects();
    let newest = (objects.iter().filter(|(k, _)| k.as_str().starts_with(&prefix)))
        .filter_map(|(k, body)| match remote_path::parse_index_key(tenant, timeline, k) {
            Some(Ok(version)) => Some((version, body)),
            _ => None,
        })
        .max_by_key(|(version, _)| *version);
    let Some(index) = newest.and_then(|(_, body)| IndexPart::from_json_bytes(body).ok()) else {
        return Vec::new();
    };
    if index.deleted_at.is_some() {
        return Vec::new();
    }
    (index.layer_metadata.iter())
        .map(|(name, meta)| {
            (name.clone(), remote_path::layer_key(tenant, timeline, name, meta.generation))
        })
        .collect()
}

/// Runs the phase if `remote.rot` is on for this seed; `Err` is the violation.
pub(super) async fn rot_phase(
    world: &World,
    client: &madsim::runtime::NodeHandle,
    model: Model,
    within_ms: u64,
) -> Result<RotSeen, String> {
    if world.faults.probability(site::REMOTE_ROT) <= 0.0 {
        return Ok(RotSeen::default());
    }
    let (tenant, timeline) = (WORKLOAD_TENANT, WORKLOAD_TIMELINE);
    world.faults.unheal();
    let rotted: Vec<(LayerName, RemoteKey)> = (newest_layers(world, tenant, timeline).into_iter())
        .filter(|(_, key)| world.faults.fire(site::REMOTE_ROT) && world.remote.rot(key))
        .collect();
    world.faults.heal();
    let mut seen = RotSeen { rotted: rotted.len() as u64, refused_reads: 0 };
    if rotted.is_empty() {
        return Ok(seen);
    }
    nemesis_line(sim_trace::NEMESIS_LANE, format_args!("{} layer objects rotted", rotted.len()));
    scrub_finds_exactly(world, &rotted).await?;
    let reads =
        client.spawn(async move { cold_read(tenant, timeline, model, rotted, within_ms).await });
    seen.refused_reads = reads.await.map_err(|e| format!("rot phase task failed: {e}"))??;
    Ok(seen)
}

/// The deep scrub reports every rotted layer as corrupt, and nothing else. The
/// node runs on meanwhile: an index it uploads after the rot (a compaction's, a
/// GC's) may drop a rotted layer, which the scrub then reports as an orphan, or not
/// at all once deleted; either is right, as no index it reads names the layer any
/// more (single-node seed 639903381: an index landed 33 ms after the rot).
async fn scrub_finds_exactly(
    world: &World,
    rotted: &[(LayerName, RemoteKey)],
) -> Result<(), String> {
    use strata_adapters::scrub::{NoOracle, ScrubOptions};
    use strata_core::scrub::Finding;
    let options = ScrubOptions { deep: true, ..ScrubOptions::default() };
    let now = strata_core::time::WallTime(0);
    let out = strata_adapters::scrub::scrub(&world.remote, &options, &NoOracle, now, &mut |_| {})
        .await
        .map_err(|e| format!("scrub after rot: the walk failed: {e}"))?;
    let found: std::collections::BTreeSet<&RemoteKey> = (out.report.findings.iter())
        .filter_map(|f| match f {
            Finding::CorruptLayer { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    let dropped: std::collections::BTreeSet<&RemoteKey> = (out.report.findings.iter())
        .filter_map(|f| match f {
            Finding::Orphan { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    let objects = world.remote.objects();
    let expected: std::collections::BTreeSet<&RemoteKey> = rotted.iter().map(|(_, k)| k).collect();
    // Each rotted layer is reported corrupt, or dropped by then (an orphan, or gone:
    // it may be deleted after the scrub read it); nothing else is corrupt.
    let unexplained = (expected.iter())
        .any(|k| !found.contains(k) && !dropped.contains(k) && objects.contains_key(*k));
    if !found.is_subset(&expected) || unexplained {
        return Err(format!(
            "scrub after rot: rotted {expected:?}, the deep scrub reports {}",
            out.report.human()
        ));
    }
    Ok(())
}

/// Detach, attach, then read every key back from remote storage; returns how many
/// reads the rot explains.
async fn cold_read(
    tenant: TenantId,
    timeline: TimelineId,
    model: Model,
    rotted: Vec<(LayerName, RemoteKey)>,
    within_ms: u64,
) -> Result<u64, String> {
    let node: SocketAddr = PAGESERVER_ADDR.parse().expect("static address");
    let me: SocketAddr = format!("{CLIENT_IP}:0").parse().expect("static address");
    let ep = madsim::net::Endpoint::bind(me).await.map_err(|e| e.to_string())?;
    let deadline = madsim::time::Instant::now() + Duration::from_millis(within_ms);
    let late = |what: &str| -> Result<(), String> {
        if madsim::time::Instant::now() > deadline {
            return Err(format!("L-ATTACH (rot phase): {what} not done within {within_ms} ms"));
        }
        Ok(())
    };
    for mode in [RequestedMode::Detached, RequestedMode::AttachedSingle] {
        let request = Request::LocationConfig { tenant, request: LocationRequest::new(mode, None) };
        while !matches!(call(&ep, node, request.clone()).await, Ok(Response::LocationConfigured(_)))
        {
            late(&format!("location_config {mode:?}"))?;
            madsim::time::sleep(RETRY_PAUSE).await;
        }
    }
    let explains = |key: Key, e: &str| {
        rotted.iter().any(|(name, object)| {
            let needed = e.contains("is corrupt in remote storage")
                && e.contains(&name.to_string())
                && name.key_range().contains(key);
            let broken = e.contains("is broken: corrupt: remote object");
            e.contains(object.as_str()) && (needed || broken)
        })
    };
    let mut refused = 0;
    let mut lsn = model.visible_lsn();
    for key in model.keys().copied().collect::<Vec<_>>() {
        loop {
            match call(&ep, node, Request::Read { tenant, timeline, key, lsn }).await {
                Ok(Response::Value { value, .. }) => {
                    let expected = model.value_at(key, lsn);
                    if value != expected {
                        return Err(format!(
                            "S-VISIBLE (rot phase): key {key} at {lsn}: read {}, acknowledged {}",
                            super::client::short(value.as_deref()),
                            super::client::short(expected.as_deref())
                        ));
                    }
                    break;
                }
                Err(CallError::Api(ApiError::Internal(e))) if explains(key, &e) => {
                    refused += 1;
                    break;
                }
                Err(CallError::Api(ApiError::Internal(e))) => {
                    return Err(format!(
                        "S-VISIBLE (rot phase): read {key} at {lsn}: {e} (rotted: {rotted:?})"
                    ));
                }
                Err(CallError::Api(ApiError::BadRequest(e)))
                    if e.contains("below the gc cutoff") =>
                {
                    if let Ok(Response::TimelineInfo(info)) =
                        call(&ep, node, Request::TimelineInfo { tenant, timeline }).await
                    {
                        lsn = info.last_ingested_lsn;
                    }
                }
                Ok(other) => return Err(format!("rot phase: unexpected read answer {other:?}")),
                Err(_) => {
                    late(&format!("read of {key}"))?;
                    madsim::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
    Ok(refused)
}
