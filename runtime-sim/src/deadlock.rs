//! S-NO-DEADLOCK, checked by its id: every request a node's request layer takes
//! is answered, or dies with the node, within a bound once faults have healed.
//!
//! The request layer ([`crate::rpc::serve_rewriting`]) enters each request it
//! takes into a [`RequestWatch`] and leaves it when the node answers, or when a
//! kill drops the handler (a guard's drop: a killed node's requests are not
//! waiting, they are gone). Before the heal a request may wait as long as its
//! faults last (a latency spike, a store outage); a deadlock waits for ever, so it
//! is still waiting [`NO_DEADLOCK_BOUND`] after the heal. [`watch`] returns then,
//! naming the request and how long it waited, while the workload runs; once the
//! workload has ended, [`settle`] waits for the requests still held (a client that
//! gave up leaves its request waiting in the node all the same) to be answered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long after the heal a request may still be waiting. Far above anything a
/// healthy node takes once faults stop (a seed's L-UPLOAD bound is 120 s, and a
/// request normally waits milliseconds), far below the seed's own bound.
pub const NO_DEADLOCK_BOUND: Duration = Duration::from_secs(300);

/// How often [`watch`] looks.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// The requests the request layers of one run hold now (a clone per server:
/// they share one table).
#[derive(Clone, Debug, Default)]
pub struct RequestWatch {
    inner: Arc<Mutex<Waiting>>,
}

#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    /// By entry number (so in arrival order): when it arrived, on which node,
    /// and what it asked.
    requests: BTreeMap<u64, (madsim::time::Instant, String, String)>,
}

/// A request's place in the watch; dropping it (an answer, or a kill dropping
/// the handler) takes the request out.
#[derive(Debug)]
pub struct Entered {
    watch: RequestWatch,
    number: u64,
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.watch.lock().requests.remove(&self.number);
    }
}

impl RequestWatch {
    pub fn new() -> Self {
        RequestWatch::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request `node` took: waiting until the returned guard is dropped.
    pub fn enter(&self, node: &str, request: &impl std::fmt::Debug) -> Entered {
        let mut waiting = self.lock();
        let number = waiting.next;
        waiting.next += 1;
        let at = madsim::time::Instant::now();
        waiting.requests.insert(number, (at, node.to_string(), shown(request)));
        Entered { watch: self.clone(), number }
    }

    /// How many requests wait now.
    pub fn waiting(&self) -> usize {
        self.lock().requests.len()
    }

    /// The oldest waiting request, if it has waited longer than `bound` since
    /// `since` (or since it arrived, when later): the S-NO-DEADLOCK violation.
    pub fn stuck(&self, since: madsim::time::Instant, bound: Duration) -> Option<String> {
        let waiting = self.lock();
        let (_, (arrived, node, request)) = waiting.requests.first_key_value()?;
        let from = (*arrived).max(since);
        let waited = madsim::time::Instant::now().duration_since(from);
        (waited > bound).then(|| {
            format!(
                "S-NO-DEADLOCK: {node} has held a request for {} simulated s after the heal \
                 (bound {} s), unanswered: {request}",
                waited.as_secs(),
                bound.as_secs()
            )
        })
    }
}

/// How much of a request's `Debug` a violation shows.
const SHOWN_BYTES: usize = 200;

/// The start of `request`'s `Debug`: formatting stops at [`SHOWN_BYTES`], so that
/// an ingest's values are not all formatted for every request the node takes.
fn shown(request: &impl std::fmt::Debug) -> String {
    struct Capped(String);
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if self.0.len() + c.len_utf8() > SHOWN_BYTES {
                    self.0.push('…');
                    return Err(std::fmt::Error);
                }
                self.0.push(c);
            }
            Ok(())
        }
    }
    let mut out = Capped(String::new());
    let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{request:?}"));
    out.0
}

/// Returns the first S-NO-DEADLOCK violation seen after `healed` (it never returns
/// when there is none): run it beside the workload once faults heal.
pub async fn watch(requests: RequestWatch, healed: madsim::time::Instant) -> String {
    loop {
        madsim::time::sleep(WATCH_PERIOD).await;
        if let Some(violation) = requests.stuck(healed, NO_DEADLOCK_BOUND) {
            return violation;
        }
    }
}

/// Once the workload has ended: waits until no request is held, or one has been
/// held [`NO_DEADLOCK_BOUND`] after `healed` (the violation). Takes no simulated
/// time when nothing waits, as in a healthy run.
pub async fn settle(requests: &RequestWatch, healed: madsim::time::Instant) -> Result<(), String> {
    while requests.waiting() > 0 {
        if let Some(violation) = requests.stuck(healed, NO_DEADLOCK_BOUND) {
            return Err(violation);
        }
        madsim::time::sleep(WATCH_PERIOD).await;
    }
    Ok(())
}
