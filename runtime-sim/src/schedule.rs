//! A run's explicit schedule (issue 18 item 5): which fault-site decisions fired,
//! which kills (and control-plane store outages) the nemesis made, and which
//! workload steps the clients took, each named by kind, name and ordinal.
//!
//! - [`Kind::Fault`]: `name` is the site, `ordinal` counts the calls of
//!   `Faults::fire` at that site before the heal (fired or not; 0 first);
//! - [`Kind::Kill`]: `name` is the victim's lane (`node-1`, `control-plane`),
//!   `ordinal` counts the kills the nemesis decided on for that victim;
//! - [`Kind::Outage`]: a control-plane store outage the nemesis set up with a kill;
//! - [`Kind::Step`]: a workload step (`client.batch`: one batch's ingest;
//!   `client.relocate`, `client.delete`, `client.too-large`, `client.migrate`,
//!   `chaos.<request>`), `ordinal` counting that step's decisions.
//!
//! A run records ([`Recorder::record`]): every decision goes as the random stream
//! says, and those that happened are kept, in order. A run follows a schedule
//! ([`Recorder::follow`]): each decision is asked of the stream exactly as before
//! (the draw is still made, so a dropped fault does not shift later draws), and
//! it happens if and only if the schedule names it. A recorded schedule replayed
//! unchanged therefore runs exactly as the recording did; a smaller one stays
//! close to it. Without a recorder (the swarm) nothing is counted.
//!
//! One run per thread (madsim runs a seed on the calling thread), so the run's
//! recorder lives in a thread-local set by [`begin`], as `crate::sim_trace` does.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a scheduled decision is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Fault,
    Kill,
    Outage,
    Step,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fault => "fault",
            Kind::Kill => "kill",
            Kind::Outage => "outage",
            Kind::Step => "step",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        [Kind::Fault, Kind::Kill, Kind::Outage, Kind::Step].into_iter().find(|k| k.as_str() == text)
    }
}

/// One decision that happened: `kind name ordinal` in a schedule file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Event {
    pub kind: Kind,
    pub name: String,
    pub ordinal: u64,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.kind.as_str(), self.name, self.ordinal)
    }
}

impl std::str::FromStr for Event {
    type Err = String;

    /// `kind name ordinal`, e.g. `fault disk.slow_io 12`.
    fn from_str(line: &str) -> Result<Event, String> {
        let bad =
            || format!("{line:?}: expected `kind name ordinal`, e.g. `fault disk.slow_io 12`");
        let mut words = line.split_whitespace();
        let kind = words.next().and_then(Kind::parse).ok_or_else(bad)?;
        let name = words.next().ok_or_else(bad)?.to_string();
        let ordinal = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        if words.next().is_some() {
            return Err(bad());
        }
        Ok(Event { kind, name, ordinal })
    }
}

#[derive(Default)]
struct State {
    /// `Some`: follow these; `None`: record what the stream decides.
    follow: Option<HashSet<Event>>,
    /// Decisions asked so far, per kind and name.
    asked: HashMap<(Kind, String), u64>,
    /// Decisions that happened, in order.
    happened: Vec<Event>,
}

/// One run's schedule: recording it, or following one. Cloneable; the caller
/// keeps a clone to read [`Recorder::events`] after the run (even one that
/// panicked).
#[derive(Clone, Default)]
pub struct Recorder {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let mode = if state.follow.is_some() { "follow" } else { "record" };
        write!(f, "Recorder {{ {mode}, {} events so far }}", state.happened.len())
    }
}

impl Recorder {
    /// Records the decisions the random stream makes.
    pub fn record() -> Recorder {
        Recorder::default()
    }

    /// Follows `events`: a decision happens if and only if it is one of them.
    pub fn follow(events: &[Event]) -> Recorder {
        let state = State { follow: Some(events.iter().cloned().collect()), ..State::default() };
        Recorder { state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The decisions that happened, in order: recording, the schedule drawn;
    /// following, the events of the schedule the run reached (replaying them alone
    /// runs the same way).
    pub fn events(&self) -> Vec<Event> {
        self.lock().happened.clone()
    }

    fn decide(&self, kind: Kind, name: &str, drawn: bool) -> bool {
        let mut state = self.lock();
        let asked = state.asked.entry((kind, name.to_string())).or_insert(0);
        let ordinal = *asked;
        *asked += 1;
        let event = Event { kind, name: name.to_string(), ordinal };
        let happens = match &state.follow {
            None => drawn,
            Some(events) => events.contains(&event),
        };
        if happens {
            state.happened.push(event);
        }
        happens
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// The run's recorder, until dropped.
#[must_use = "the schedule ends when this is dropped"]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// Starts a run with `recorder` (none: every decision is the stream's, uncounted).
pub fn begin(recorder: Option<&Recorder>) -> Guard {
    CURRENT.with(|c| *c.borrow_mut() = recorder.cloned());
    Guard(())
}

/// Whether a decision happens: `drawn` is what the random stream decided (its draw
/// already made); a run that follows a schedule overrides it.
pub fn decide(kind: Kind, name: &str, drawn: bool) -> bool {
    CURRENT.with(|c| match &*c.borrow() {
        None => drawn,
        Some(recorder) => recorder.decide(kind, name, drawn),
    })
}

/// Whether the workload takes step `name` (always, unless a schedule leaves it out).
pub fn step(name: &str) -> bool {
    decide(Kind::Step, name, true)
}

/// Whether the run follows a schedule (then a skipped decision is worth a trace line).
pub fn following() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|r| r.lock().follow.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_and_parse_back() {
        let e = Event { kind: Kind::Fault, name: "disk.slow_io".into(), ordinal: 12 };
        assert_eq!(e.to_string(), "fault disk.slow_io 12");
        assert_eq!("fault disk.slow_io 12".parse::<Event>(), Ok(e));
        assert!("fault disk.slow_io".parse::<Event>().is_err());
        assert!("boom x 1".parse::<Event>().is_err());
        assert!("kill node-1 0 extra".parse::<Event>().is_err());
    }

    #[test]
    fn a_recording_keeps_what_happened_and_a_follower_only_what_it_names() {
        let r = Recorder::record();
        {
            let _g = begin(Some(&r));
            assert!(decide(Kind::Fault, "a", true));
            assert!(!decide(Kind::Fault, "a", false));
            assert!(decide(Kind::Fault, "a", true));
            assert!(step("client.batch"));
        }
        let recorded = r.events();
        assert_eq!(
            recorded.iter().map(Event::to_string).collect::<Vec<_>>(),
            ["fault a 0", "fault a 2", "step client.batch 0"]
        );
        let f = Recorder::follow(&recorded[1..]);
        {
            let _g = begin(Some(&f));
            assert!(following());
            assert!(!decide(Kind::Fault, "a", true));
            assert!(!decide(Kind::Fault, "a", true));
            assert!(decide(Kind::Fault, "a", false));
            assert!(step("client.batch"));
            assert!(!step("client.batch"));
        }
        assert_eq!(f.events(), recorded[1..].to_vec());
        assert!(!following());
        assert!(decide(Kind::Fault, "a", true));
    }
}
