//! How the scenario's clients talk to a pageserver: calls (the last failed one
//! kept for [`SEED_BOUND`]), retries, timeline info, and the S-VISIBLE read-back
//! check the one-node and the cluster scenarios share.

use super::*;

pub(crate) async fn call(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    request: Request,
) -> Result<Response, CallError> {
    // Kept to name the call if it fails, and formatted only then: formatting every
    // request (its values byte by byte) was the largest cost of a release swarm
    // (docs/PERFORMANCE.md); a clone costs a copy.
    let kept = request.clone();
    let answer = rpc::call(ep, node, request, CALL_TIMEOUT).await;
    if let Err(e) = &answer {
        note_refusal(kept, String::new(), format!("{e:?}"));
    }
    answer
}

/// Records a call of the run's workload (or the cluster's client) that failed:
/// what a seed past [`SEED_BOUND`] names as stuck, as `{request:?}{to}` (formatted
/// only then). The chaos client's calls are not recorded: it is refused all the
/// time, on purpose.
pub(crate) fn note_refusal(request: Request, to: String, answer: String) {
    let at = madsim::time::Instant::now();
    LAST_REFUSAL.with(|last| *last.borrow_mut() = Some(Refusal { at, request, to, answer }));
}

/// The last call of a run that failed.
struct Refusal {
    at: madsim::time::Instant,
    request: Request,
    /// What follows the request in the text (the cluster names the pageserver).
    to: String,
    answer: String,
}

thread_local! {
    /// The last call of this run that failed (when, what, the answer): what a seed
    /// past its bound ([`SEED_BOUND`]) was stuck on. One simulated run is one thread.
    static LAST_REFUSAL: std::cell::RefCell<Option<Refusal>> =
        const { std::cell::RefCell::new(None) };
}

/// No seed runs longer than this in simulated time: a seed normally takes 20–60
/// simulated s, and every bound a liveness rule names (`heal_within_ms`,
/// `attach_within_ms`) is far shorter. A workload past it is reported as stuck,
/// with the call it last saw fail, instead of running for ever (issue 18 item 3).
pub const SEED_BOUND: Duration = Duration::from_secs(1_800);

/// Forgets the last failed call: a run starts with none.
pub(crate) fn forget_last_refusal() {
    LAST_REFUSAL.with(|last| *last.borrow_mut() = None);
}

/// The violation of a seed past [`SEED_BOUND`].
pub(crate) fn stuck(started: madsim::time::Instant) -> String {
    let last = LAST_REFUSAL.with(|last| match &*last.borrow() {
        Some(Refusal { at, request, to, answer }) => format!(
            "its last failed call, at {} simulated ms: {request:?}{to} answered {answer}",
            at.duration_since(started).as_millis()
        ),
        None => "no call of it failed".to_string(),
    });
    format!(
        "SEED-BOUND: the workload did not finish within {} simulated s ({last})",
        SEED_BOUND.as_secs()
    )
}

/// Retries until the node answers; `done_if` accepts an error as success (e.g. a
/// creation that already happened before a crash).
pub(crate) async fn retry(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    request: Request,
    done_if: impl Fn(&Result<Response, ApiError>) -> bool,
) {
    loop {
        match call(ep, node, request.clone()).await {
            Ok(_) => return,
            Err(CallError::Api(e)) if done_if(&Err(e.clone())) => return,
            Err(_) => madsim::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// Creates the timeline, retrying through kills and busy answers until the node
/// answers it created (then S-ACTIVE-UPLOADED: its index is in remote storage) or
/// that it exists (an earlier attempt's answer was lost).
pub(crate) async fn create_timeline(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    (tenant, timeline): (TenantId, TimelineId),
    remote: &crate::sim_remote::SimRemote,
) -> Result<(), String> {
    loop {
        match call(ep, node, Request::CreateTimeline { tenant, timeline }).await {
            Ok(Response::TimelineCreated(_)) => {
                return crate::checkers::active_uploaded(remote, tenant, timeline);
            }
            Ok(other) => return Err(format!("unexpected create answer {other:?}")),
            Err(CallError::Api(ApiError::Conflict(_))) => return Ok(()),
            Err(_) => madsim::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// The node's last ingested LSN for the timeline (asked until it answers). Below
/// `visible`, an LSN the node published as visible, it has lost data (S-VISIBLE).
pub(super) async fn last_ingested(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    tenant: TenantId,
    timeline: TimelineId,
    visible: Lsn,
) -> Result<Lsn, String> {
    loop {
        if let Ok(Response::TimelineInfo(info)) =
            call(ep, node, Request::TimelineInfo { tenant, timeline }).await
        {
            let last = info.last_ingested_lsn;
            if last < visible {
                return Err(format!("S-VISIBLE: last ingested {last} is below visible {visible}"));
            }
            return Ok(last);
        }
        madsim::time::sleep(RETRY_PAUSE).await;
    }
}

/// Waits until the node answers timeline info; records its visible LSN and returns
/// its last ingested LSN.
pub(crate) async fn current_info(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    tenant: TenantId,
    timeline: TimelineId,
    model: &mut Model,
) -> Result<Lsn, String> {
    loop {
        match call(ep, node, Request::TimelineInfo { tenant, timeline }).await {
            Ok(Response::TimelineInfo(info)) => {
                model.published_visible(info.remote_consistent_lsn_visible)?;
                let chain = [
                    info.remote_consistent_lsn_visible,
                    info.remote_consistent_lsn_projected,
                    info.disk_consistent_lsn,
                    info.last_ingested_lsn,
                ];
                if chain.windows(2).any(|w| w[0] > w[1]) {
                    return Err(format!(
                        "S-PROJECTED: info breaks visible <= projected <= disk_consistent <= \
                         last ingested: {info:?}"
                    ));
                }
                return Ok(info.last_ingested_lsn);
            }
            Ok(other) => return Err(format!("unexpected info answer {other:?}")),
            Err(CallError::Api(ApiError::NotFound(what))) => {
                // After a crash the timeline must still be known if anything of it was visible.
                if model.visible_lsn() > Lsn::ZERO {
                    return Err(format!(
                        "S-VISIBLE: {what} vanished after data at {} was visible",
                        model.visible_lsn()
                    ));
                }
                retry(ep, node, Request::CreateTenant { tenant }, |r| {
                    matches!(r, Err(ApiError::Conflict(_)))
                })
                .await;
                retry(ep, node, Request::CreateTimeline { tenant, timeline }, |r| {
                    matches!(r, Err(ApiError::Conflict(_)))
                })
                .await;
            }
            Err(_) => madsim::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// S-VISIBLE: every key reads back, at the highest visible LSN, the model's value.
pub(crate) async fn check_visible(
    ep: &madsim::net::Endpoint,
    node: SocketAddr,
    tenant: TenantId,
    timeline: TimelineId,
    model: &Model,
) -> Result<(), String> {
    let mut lsn = model.visible_lsn();
    if lsn == Lsn::ZERO {
        return Ok(());
    }
    let keys: Vec<Key> = model.keys().copied().collect();
    for key in keys {
        let got = loop {
            match call(ep, node, Request::Read { tenant, timeline, key, lsn }).await {
                Ok(Response::Value { value, .. }) => break value,
                Ok(other) => return Err(format!("unexpected read answer {other:?}")),
                // The walredo child the simulator made crash, hang or answer
                // garbage: that read fails, the next one gets a new child.
                Err(CallError::Api(ApiError::Internal(e)))
                    if crate::sim_redo::is_injected_failure(&e) =>
                {
                    madsim::time::sleep(RETRY_PAUSE).await;
                }
                // A start that could not read the tenant's config-v1 (an injected
                // EIO, `disk.read.meta_eio`) left it Broken until a location_config
                // names its mode, as documented (docs/FAULT_MODEL.md); one comes (the
                // chaos client's, a relocation's, the control plane's).
                Err(CallError::Api(ApiError::Internal(e))) if config_unreadable(&e) => {
                    madsim::time::sleep(RETRY_PAUSE).await;
                }
                Err(CallError::Api(ApiError::Internal(e))) => {
                    return Err(format!("S-VISIBLE: read {key} at {lsn}: {e}"));
                }
                // GC (a seed's drawn horizons) removed the history at `lsn`, which
                // the node may do once it is that far behind: read everything at the
                // last ingested LSN instead, where all the node holds must still be
                // the model's (a lost record shows up there unless a later one of the
                // same key covers it). The refusal's text is core's `ReadError`.
                Err(CallError::Api(ApiError::BadRequest(e)))
                    if e.contains("below the gc cutoff") =>
                {
                    lsn = last_ingested(ep, node, tenant, timeline, lsn).await?;
                }
                Err(_) => {
                    // A restart may have taken the node back below an LSN this check
                    // raised itself to past a GC refusal: above the visible LSN, so
                    // it may be lost, and the node would wait for it for ever (its
                    // reads time out; single-node seed 639904964, corpus 020).
                    if lsn > model.visible_lsn() {
                        let last =
                            last_ingested(ep, node, tenant, timeline, model.visible_lsn()).await?;
                        lsn = lsn.min(last);
                    }
                    madsim::time::sleep(RETRY_PAUSE).await
                }
            }
        };
        let expected = model.value_at(key, lsn);
        if got != expected {
            return Err(format!(
                "S-VISIBLE: key {key} at visible {lsn}: read {}, acknowledged {}",
                short(got.as_deref()),
                short(expected.as_deref())
            ));
        }
    }
    Ok(())
}

/// Whether `e` is the node's answer for a tenant whose `config-v1` read failed
/// with the simulated disk's injected EIO (`disk.read.meta_eio`).
fn config_unreadable(e: &str) -> bool {
    e.contains("config-v1 is unreadable") && e.contains("(simulated EIO)")
}

/// A value for a violation's one line: its length, and its bytes when short, else
/// its first 16 bytes (values run to 8 KiB).
pub(crate) fn short(value: Option<&[u8]>) -> String {
    match value {
        None => "none".into(),
        Some(v) if v.len() <= 16 => format!("{v:?}"),
        Some(v) => format!("{} bytes starting {:?}", v.len(), &v[..16]),
    }
}
