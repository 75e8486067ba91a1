//! The chaos client of the one-node scenario: a second client that fires
//! conflicting but harmless requests while the workload runs (see
//! [`chaos_client`]).

use super::*;

/// A timeline only the chaos client creates, over and over, and nothing is ever
/// ingested into: every create of it must answer 201 (or a retryable or not-found
/// error), never 409, whatever kills cut off earlier attempts (issue 15, item 5: a
/// retried create finds what an earlier attempt made, and that is what it makes).
pub const RECREATED_TIMELINE: TimelineId = TimelineId([0xCC; 16]);

/// The chaos client's requests as schedule steps (`crate::schedule`), by choice.
const STEP_NAMES: [&str; 8] = [
    "chaos.attach",
    "chaos.delete-timeline",
    "chaos.create-tenant",
    "chaos.list-tenants",
    "chaos.info",
    "chaos.ingest-bad-key",
    "chaos.read-bad-key",
    "chaos.recreate-timeline",
];

/// What the chaos client saw.
#[derive(Debug, Default)]
pub(super) struct ChaosOutcome {
    pub(super) answered: u64,
    /// Answered with 503.
    pub(super) busy: u64,
    /// Requests naming key `FFFFFFFFFFFFFFFF` answered 400.
    pub(super) bad_key_refused: u64,
    /// The first answer that broke a rule.
    pub(super) violation: Option<String>,
}

/// Concurrent with the workload: requests that conflict with what it does (attach
/// while it relocates, delete the timeline it is about to delete, create what
/// exists, read state) but cannot break its expectations. Every answer must be a
/// typed response or error; the node's `check_invariants` runs after each.
/// It also ingests and reads key `FFFFFFFFFFFFFFFF`, which no layer can hold (key
/// ranges are half-open): the only acceptable answers are 400 or a refusal that
/// comes before any key is looked at (503, 404, 500 for a broken tenant or
/// timeline, the node down); a success is a violation. Issue 15 item 1:
/// the node acknowledged that ingest and its next flush panicked. The ingest's LSN
/// lies below the workload's first (0x100), so even an accepted one could only be
/// skipped or flushed, never reorder the workload's LSNs.
/// And it creates [`RECREATED_TIMELINE`] over and over: a 409 is a violation.
pub(super) async fn chaos_client(stop: Arc<Mutex<bool>>) -> ChaosOutcome {
    let node: SocketAddr = PAGESERVER_ADDR.parse().expect("static address");
    let me: SocketAddr = format!("{CHAOS_IP}:0").parse().expect("static address");
    let Ok(ep) = madsim::net::Endpoint::bind(me).await else { return ChaosOutcome::default() };
    let tenant = WORKLOAD_TENANT;
    let mut out = ChaosOutcome::default();
    // Whether a create of RECREATED_TIMELINE was ever answered 201.
    let mut created = false;
    while !*stop.lock().expect("not poisoned") {
        let timeline = TimelineId::from_bytes([9; 16]);
        let choice = thread_rng().gen_range(0..8);
        let request = match choice {
            7 => Request::CreateTimeline { tenant, timeline: RECREATED_TIMELINE },
            0 => Request::LocationConfig {
                tenant,
                request: LocationRequest::new(RequestedMode::AttachedSingle, None),
            },
            1 => Request::DeleteTimeline { tenant, timeline: DELETED_TIMELINE },
            2 => Request::CreateTenant { tenant },
            3 => Request::ListTenants,
            4 => Request::TimelineInfo { tenant, timeline },
            5 => Request::Ingest {
                tenant,
                timeline,
                records: vec![IngestRecord {
                    key: Key::MAX,
                    lsn: Lsn(thread_rng().gen_range(1..0x100)),
                    record: Record::Image(vec![0]),
                }],
            },
            _ => Request::Read { tenant, timeline, key: Key::MAX, lsn: Lsn(0x100) },
        };
        let names_bad_key = choice == 5 || choice == 6;
        // A schedule may leave the request out; the pause after it stays.
        if !crate::schedule::step(STEP_NAMES[choice]) {
            madsim::time::sleep(Duration::from_millis(thread_rng().gen_range(20..200))).await;
            continue;
        }
        let what = format!("{request:?}");
        let answer = rpc::call(&ep, node, request, CALL_TIMEOUT).await;
        if names_bad_key {
            match &answer {
                Err(CallError::Api(ApiError::BadRequest(_))) => out.bad_key_refused += 1,
                // Refusals that come before the key is looked at: the node is
                // starting, busy or down; the tenant or timeline is absent or
                // broken (a failed step; a broken timeline).
                Err(CallError::Api(
                    ApiError::Unavailable { .. }
                    | ApiError::NotFound(_)
                    | ApiError::ShuttingDown
                    | ApiError::Internal(_),
                ))
                | Err(CallError::Transport(_)) => {}
                other => {
                    out.violation.get_or_insert(format!(
                        "key FFFFFFFFFFFFFFFF is not storable (key ranges are half-open) and must be refused with 400: {what} answered {other:?}"
                    ));
                }
            }
        }
        if choice == 7 {
            match &answer {
                Ok(Response::TimelineCreated(_)) => created = true,
                // The workload relocates the tenant through AttachedStale: a create
                // there is refused with 409 for the tenant's mode (core's
                // `node/create.rs`), which is not the item-5 conflict (seed 209).
                Err(CallError::Api(ApiError::Conflict(msg)))
                    if msg.contains("is attached stale here") => {}
                Err(CallError::Api(ApiError::Conflict(msg))) => {
                    let what = if created {
                        "a repeated create"
                    } else {
                        "a create retried after every earlier attempt went unanswered (a kill, a timeout)"
                    };
                    out.violation.get_or_insert(format!(
                        "{what} of empty timeline {RECREATED_TIMELINE} answered 409 (issue 15, item 5): {msg}"
                    ));
                }
                _ => {}
            }
        }
        match answer {
            Ok(_) => out.answered += 1,
            Err(CallError::Api(ApiError::Unavailable { .. })) => {
                out.answered += 1;
                out.busy += 1;
            }
            Err(CallError::Api(_)) => out.answered += 1,
            Err(_) => {} // the node is down or restarting
        }
        madsim::time::sleep(Duration::from_millis(thread_rng().gen_range(20..200))).await;
    }
    out
}
