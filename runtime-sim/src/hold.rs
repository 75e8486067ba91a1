//! The hold scenario (issue 16, step 5): a tenant stop while one of its local disk
//! writes and one of its remote calls are held past the stop's drain timeout.
//!
//! Steps, one pageserver, no other faults and no kills:
//! 1. Create the workload tenant and timeline, ingest, wait until it is visible.
//! 2. Switch [`site::REMOTE_HOLD_CALL`] on, ingest more: the next flush's layer PUT
//!    is held for [`REMOTE_HOLD_CALL_MS`]; the site goes off once it fired.
//! 3. Ingest more, switch [`site::DISK_HOLD_WRITE`] on and move the tenant to a newer
//!    generation (`location_config` AttachedSingle, generation + 1): the stop's
//!    flush writes a layer, held for [`DISK_HOLD_WRITE_MS`] (longer than the grace
//!    period plus `stop_drain_timeout_ms`); the site goes off once it fired. The new
//!    incarnation loads the same local paths.
//! 4. The checks: the request answers only after the held write landed (the stop
//!    waited for it), and before the held call ended (the stop abandoned it: the
//!    node's trace says `stopped with N ops abandoned`, which the test reads);
//!    then S-VISIBLE on the new incarnation, L-UPLOAD, and the storage-side
//!    checkers (S-IDX-REF, S-IDX-ORDER, S-CRASHSAFE, FSYNC-TRUST, S-GEN-MONO, S-DEL-GEN); then a
//!    kill and restart, which loads the tenant from the local files the held write
//!    left, and S-VISIBLE and L-UPLOAD once more.
//!
//! A stop that answered before its held local write landed fails the run as
//! S-STOP-LOCAL (the write could land where the new incarnation reads).
//!
//! Both sites stay out of [`site::ALL`], so no swarm seed changes.

use crate::checkers;
use crate::faults::{DISK_HOLD_WRITE_MS, Hold, REMOTE_HOLD_CALL_MS, site};
use crate::model::Model;
use crate::rpc::CallError;
use crate::scenario::{
    CLIENT_IP, PAGESERVER_ADDR, RETRY_PAUSE, WORKLOAD_TENANT, call, check_visible, current_info,
    node_config, pageserver_and_client, retry,
};
use crate::world::{FaultPlan, World};
use madsim::runtime::Handle;
use madsim::time::Instant;
use std::net::SocketAddr;
use std::time::Duration;
use strata_core::node::api::{ApiError, Request, Response};
use strata_core::redo::{IngestRecord, Record};
use strata_core::tenant::{LocationRequest, RequestedMode};
use strata_core::{Key, Lsn, TimelineId};
use strata_runtime_tokio::trace_sink::TraceSink;

/// Within this, after the holds end, everything ingested must be visible.
const SETTLE_WITHIN_MS: u64 = 120_000;

/// What the hold scenario saw.
#[derive(Debug, Default)]
pub struct HoldReport {
    pub seed: u64,
    /// Every hold of the run (the test expects one of each site).
    pub holds: Vec<Hold>,
    /// Simulated ms from the stop's request to its answer.
    pub stop_ms: u64,
    pub visible_lsn: Lsn,
    pub violation: Option<String>,
}

/// Runs the hold scenario in the current madsim runtime.
pub async fn run(trace: TraceSink) -> HoldReport {
    let handle = Handle::current();
    let config = node_config();
    assert!(
        DISK_HOLD_WRITE_MS > config.shutdown_grace_ms + config.stop_drain_timeout_ms,
        "a held write must outlast the stop's grace period and drain timeout"
    );
    let world = World::new(FaultPlan::none());
    let standard = crate::settings::Drawn::standard();
    let (node, client) = pageserver_and_client(&handle, &world, &trace, &standard);
    let w = world.clone();
    let outcome = client.spawn(async move { workload(w).await }).await;
    let mut report =
        HoldReport { seed: handle.seed(), holds: world.faults.holds(), ..Default::default() };
    match outcome {
        Ok(Ok((model, stop_ms))) => {
            report.stop_ms = stop_ms;
            report.visible_lsn = model.visible_lsn();
            // A restart loads the tenant from the local files the held write left.
            handle.kill(node.id());
            world.crash();
            handle.restart(node.id());
            let reread = client.spawn(async move { reread(model).await }).await;
            report.violation = match reread {
                Ok(r) => r.err(),
                Err(e) => Some(format!("re-read task failed: {e}")),
            };
        }
        Ok(Err(violation)) => report.violation = Some(violation),
        Err(e) => report.violation = Some(format!("workload task failed: {e}")),
    }
    if report.violation.is_none() {
        report.violation = checkers::storage(&world)
            .err()
            .or_else(|| checkers::crash_safe(&world).err())
            .or_else(|| checkers::fsync_trust(&world).err())
            .or_else(|| checkers::generations(&world).err())
            .or_else(|| checkers::deletions(&world).err());
    }
    report
}

/// `n` image records from `lsn` on, over eight keys.
fn batch(model: &mut Model, lsn: &mut u64, n: u64) {
    for i in 0..n {
        *lsn += 8;
        let record = Record::Image(vec![(*lsn % 251) as u8; 64]);
        model.push(IngestRecord { key: Key(i % 8), lsn: Lsn(*lsn), record });
    }
}

/// Sends what the node lacks until it has everything.
async fn ingest(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    timeline: TimelineId,
    model: &mut Model,
) -> Result<(), String> {
    let tenant = WORKLOAD_TENANT;
    loop {
        let from = current_info(ep, node, tenant, timeline, model).await?;
        if from >= model.last_lsn() {
            return Ok(());
        }
        let records = model.records_after(from).to_vec();
        if let Ok(Response::Ingested { last_ingested_lsn, .. }) =
            call(ep, node, Request::Ingest { tenant, timeline, records }).await
        {
            model.acked(last_ingested_lsn);
        }
    }
}

/// Waits until the node publishes everything as visible.
async fn settle(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    timeline: TimelineId,
    model: &mut Model,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(SETTLE_WITHIN_MS);
    loop {
        ingest(ep, node, timeline, model).await?;
        if model.visible_lsn() >= model.last_lsn() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "L-UPLOAD: visible is {} but {} was ingested",
                model.visible_lsn(),
                model.last_lsn()
            ));
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (up to `within`) until `site` has held something; then switches it off.
async fn held_once(world: &World, site: &'static str, within: Duration) -> Result<Hold, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(h) = world.faults.holds().into_iter().find(|h| h.site == site) {
            world.faults.set(site, 0.0);
            return Ok(h);
        }
        if Instant::now() > deadline {
            return Err(format!("{site} never held anything within {within:?}"));
        }
        madsim::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After a restart: S-VISIBLE again, and everything is still visible.
async fn reread(mut model: Model) -> Result<(), String> {
    let node: SocketAddr = PAGESERVER_ADDR.parse().expect("static address");
    let me: SocketAddr = format!("{CLIENT_IP}:0").parse().expect("static address");
    let ep = madsim::net::Endpoint::bind(me).await.map_err(|e| e.to_string())?;
    let timeline = TimelineId::from_bytes([9; 16]);
    current_info(&ep, node, WORKLOAD_TENANT, timeline, &mut model).await?;
    check_visible(&ep, node, WORKLOAD_TENANT, timeline, &model).await?;
    settle(&ep, node, timeline, &mut model).await?;
    check_visible(&ep, node, WORKLOAD_TENANT, timeline, &model).await
}

async fn workload(world: World) -> Result<(Model, u64), String> {
    let node: SocketAddr = PAGESERVER_ADDR.parse().expect("static address");
    let me: SocketAddr = format!("{CLIENT_IP}:0").parse().expect("static address");
    let ep = madsim::net::Endpoint::bind(me).await.map_err(|e| e.to_string())?;
    let (tenant, timeline) = (WORKLOAD_TENANT, TimelineId::from_bytes([9; 16]));
    let mut model = Model::default();
    let mut lsn = 0x100u64;
    let conflict = |r: &Result<Response, ApiError>| matches!(r, Err(ApiError::Conflict(_)));
    retry(&ep, node, Request::CreateTenant { tenant }, conflict).await;
    retry(&ep, node, Request::CreateTimeline { tenant, timeline }, conflict).await;

    // 1. Something visible.
    batch(&mut model, &mut lsn, 40);
    settle(&ep, node, timeline, &mut model).await?;

    // 2. A layer PUT held (the checkpoint timeout flushes within seconds).
    world.faults.set(site::REMOTE_HOLD_CALL, 1.0);
    batch(&mut model, &mut lsn, 40);
    ingest(&ep, node, timeline, &mut model).await?;
    let call_hold = held_once(&world, site::REMOTE_HOLD_CALL, Duration::from_secs(20)).await?;

    // 3. A stop whose flush writes a layer that is held.
    batch(&mut model, &mut lsn, 40);
    ingest(&ep, node, timeline, &mut model).await?;
    let generation = match call(&ep, node, Request::TimelineInfo { tenant, timeline }).await {
        Ok(Response::TimelineInfo(info)) => info.generation,
        other => return Err(format!("timeline info before the stop: {other:?}")),
    };
    world.faults.set(site::DISK_HOLD_WRITE, 1.0);
    let request = Request::LocationConfig {
        tenant,
        request: LocationRequest::new(RequestedMode::AttachedSingle, generation.next()),
    };
    let asked = Instant::now();
    // A write of the tenant's own (under its local directory, `tenants/{t}/`), not a
    // node-wide one such as a deletion list.
    let tenant_dir = format!("tenants/{tenant}/");
    let tenant_write =
        |h: &Hold| h.site == site::DISK_HOLD_WRITE && h.what.starts_with(tenant_dir.as_str());
    let mut write_hold = None;
    let answered = loop {
        if write_hold.is_none() {
            write_hold = world.faults.holds().into_iter().find(|h| tenant_write(h));
            if write_hold.is_some() {
                world.faults.set(site::DISK_HOLD_WRITE, 0.0);
            }
        }
        match call(&ep, node, request.clone()).await {
            Ok(Response::LocationConfigured(_)) => break Instant::now(),
            Ok(other) => return Err(format!("unexpected location_config answer {other:?}")),
            Err(CallError::Api(ApiError::Internal(e))) => {
                return Err(format!("the stop failed: {e}"));
            }
            Err(_) => {}
        }
        if asked.elapsed() > Duration::from_millis(SETTLE_WITHIN_MS) {
            return Err("L-ATTACH: the move to a new generation never finished".into());
        }
        madsim::time::sleep(RETRY_PAUSE).await;
    };
    let stop_ms = u64::try_from((answered - asked).as_millis()).unwrap_or(u64::MAX);
    let Some(write_hold) =
        write_hold.or_else(|| world.faults.holds().into_iter().find(|h| tenant_write(h)))
    else {
        return Err("the stop wrote nothing locally: no write was held".into());
    };
    world.faults.set(site::DISK_HOLD_WRITE, 0.0);
    // (b) The stop waited for the local write: it landed before the answer.
    let landed = world
        .faults
        .holds()
        .into_iter()
        .find(|h| h.began == write_hold.began && h.site == write_hold.site)
        .and_then(|h| h.ended);
    match landed {
        Some(at) if at <= answered => {}
        _ => {
            return Err(format!(
                "S-STOP-LOCAL: the stop answered {stop_ms} ms after it was asked, while the local write to {} held since {:?} had not landed",
                write_hold.what, write_hold.began
            ));
        }
    }
    // (a) … and abandoned the remote call: still held when the stop answered.
    let ended = |h: &Hold| {
        h.site == call_hold.site
            && h.began == call_hold.began
            && h.ended.is_some_and(|e| e <= answered)
    };
    if world.faults.holds().iter().any(ended) {
        return Err(format!(
            "the held remote call to {} ended before the stop answered: nothing was abandoned",
            call_hold.what
        ));
    }

    // 4. The new incarnation serves what is visible, and everything becomes visible.
    current_info(&ep, node, tenant, timeline, &mut model).await?;
    check_visible(&ep, node, tenant, timeline, &model).await?;
    settle(&ep, node, timeline, &mut model).await?;
    check_visible(&ep, node, tenant, timeline, &model).await?;
    // Outlive the held call, so that its late PUT lands before the checkers run.
    madsim::time::sleep(Duration::from_millis(REMOTE_HOLD_CALL_MS)).await;
    settle(&ep, node, timeline, &mut model).await?;
    check_visible(&ep, node, tenant, timeline, &model).await?;
    Ok((model, stop_ms))
}
