//! Failpoints: named places in the driver where one I/O can be made to fail, wait,
//! pause or stop the process, on request.
//!
//! The names are the driver's sites in [`crate::fault_sites::FAILPOINTS`] (the
//! same registry as the simulator's fault sites). A node has one [`Failpoints`]
//! only when its configuration turns testing on (`testing.failpoints = true`, see
//! docs/OPERATIONS.md); it is set at start-up from `STRATA_FAILPOINTS` and at run
//! time by `PUT /v1/failpoints`. Each setting ([`Action`]):
//!
//! | action | the I/O at the site |
//! |---|---|
//! | `off` | runs as usual (the setting is removed) |
//! | `error` | is not run; it completes with a transient failure naming the failpoint |
//! | `sleep(N)` | runs after N ms |
//! | `pause` | waits until the failpoint is set to something else, then does that |
//! | `exit` | the process exits at once with [`EXIT_CODE`] (as a kill would leave it) |
//!
//! Why not the `fail` crate: its registry is one process-wide global, its `sleep`
//! and `pause` block the calling thread, and it accepts any name. Here a registry
//! is a value (several nodes share one simulator process), `sleep` and `pause`
//! wait on the runtime's timer and a watch channel (so a paused I/O holds no worker
//! thread, and under madsim it waits in simulated time), and a name outside the
//! registry is refused, so a typo in a test cannot pass silently. It is about 150
//! lines, no dependency beyond tokio.

use crate::fault_sites::FAILPOINTS;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// The exit status of a process stopped by an `exit` failpoint.
pub const EXIT_CODE: i32 = 97;

/// What a failpoint does when an I/O reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Off,
    Error,
    Sleep { ms: u64 },
    Pause,
    Exit,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Off => write!(f, "off"),
            Action::Error => write!(f, "error"),
            Action::Sleep { ms } => write!(f, "sleep({ms})"),
            Action::Pause => write!(f, "pause"),
            Action::Exit => write!(f, "exit"),
        }
    }
}

impl std::str::FromStr for Action {
    type Err = FailpointError;

    fn from_str(s: &str) -> Result<Action, FailpointError> {
        let bad = || FailpointError::BadAction(s.to_string());
        Ok(match s.trim() {
            "off" => Action::Off,
            "error" => Action::Error,
            "pause" => Action::Pause,
            "exit" => Action::Exit,
            other => {
                let ms = other.strip_prefix("sleep(").and_then(|r| r.strip_suffix(')'));
                Action::Sleep { ms: ms.and_then(|ms| ms.trim().parse().ok()).ok_or_else(bad)? }
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailpointError {
    #[error("unknown failpoint {0:?}; the failpoints are {list}", list = FAILPOINTS.join(", "))]
    UnknownName(String),
    #[error("failpoint action {0:?} is not one of off, error, sleep(MS), pause, exit")]
    BadAction(String),
    #[error("{0:?} is not NAME=ACTION")]
    NotNameAction(String),
}

/// An I/O a failpoint failed (`error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failpoint {site}: injected error")]
pub struct Injected {
    pub site: &'static str,
}

/// One node's failpoints: cheap to clone, shared by the driver and the HTTP API.
#[derive(Clone, Debug)]
pub struct Failpoints {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    actions: Mutex<BTreeMap<&'static str, Action>>,
    /// Bumped on every change, so a paused I/O looks again.
    changed: watch::Sender<u64>,
}

impl Default for Failpoints {
    fn default() -> Self {
        Failpoints {
            inner: Arc::new(Inner {
                actions: Mutex::new(BTreeMap::new()),
                changed: watch::channel(0).0,
            }),
        }
    }
}

impl Failpoints {
    /// Every failpoint off.
    pub fn new() -> Failpoints {
        Failpoints::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Action>> {
        self.inner.actions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registry's name for `name`, if it is a failpoint.
    pub fn site(name: &str) -> Result<&'static str, FailpointError> {
        FAILPOINTS
            .iter()
            .find(|s| **s == name.trim())
            .copied()
            .ok_or_else(|| FailpointError::UnknownName(name.to_string()))
    }

    /// Sets one failpoint (`off` removes it) and wakes whatever it paused.
    pub fn set(&self, name: &str, action: Action) -> Result<(), FailpointError> {
        let site = Failpoints::site(name)?;
        {
            let mut actions = self.lock();
            match action {
                Action::Off => actions.remove(site),
                other => actions.insert(site, other),
            };
        }
        tracing::info!(failpoint = site, %action, "failpoint set");
        self.inner.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Parses `NAME=ACTION;NAME=ACTION…` (what `STRATA_FAILPOINTS` holds) and sets
    /// each, all or none: one bad item sets nothing.
    pub fn parse_list(spec: &str) -> Result<Vec<(&'static str, Action)>, FailpointError> {
        spec.split(';')
            .filter(|item| !item.trim().is_empty())
            .map(|item| {
                let (name, action) = item
                    .split_once('=')
                    .ok_or_else(|| FailpointError::NotNameAction(item.to_string()))?;
                Ok((Failpoints::site(name)?, action.parse()?))
            })
            .collect()
    }

    /// The failpoints that are not off, by name.
    pub fn active(&self) -> BTreeMap<&'static str, Action> {
        self.lock().clone()
    }

    /// Called by the driver before an I/O at `site` (`what` names the I/O for the
    /// log): waits, pauses or exits as set; `Err` when the I/O must fail instead.
    pub async fn hit(&self, site: &'static str, what: &str) -> Result<(), Injected> {
        let mut paused = false;
        loop {
            // Subscribed before reading, so a change between the two is not missed.
            let mut changed = self.inner.changed.subscribe();
            let action = self.lock().get(site).copied().unwrap_or(Action::Off);
            match action {
                Action::Off => return Ok(()),
                Action::Error => {
                    tracing::info!(failpoint = site, what, "failpoint: failing the I/O");
                    return Err(Injected { site });
                }
                Action::Sleep { ms } => {
                    tracing::info!(failpoint = site, what, ms, "failpoint: sleeping");
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    return Ok(());
                }
                Action::Exit => {
                    tracing::info!(failpoint = site, what, "failpoint: exiting the process");
                    std::process::exit(EXIT_CODE);
                }
                Action::Pause => {
                    if !paused {
                        tracing::info!(failpoint = site, what, "failpoint: paused");
                        paused = true;
                    }
                    // The sender lives as long as `self`: this returns on a change.
                    let _ = changed.changed().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault_sites::{CP_VALIDATE, UPLOAD_INDEX};

    #[test]
    fn actions_round_trip_and_bad_ones_are_refused() {
        for text in ["off", "error", "sleep(250)", "pause", "exit"] {
            assert_eq!(text.parse::<Action>().unwrap().to_string(), text);
        }
        for bad in ["return", "sleep", "sleep(x)", "sleep(-1)", ""] {
            assert_eq!(bad.parse::<Action>(), Err(FailpointError::BadAction(bad.into())), "{bad}");
        }
    }

    #[test]
    fn a_list_is_parsed_whole_or_refused() {
        let list = Failpoints::parse_list("upload.index=pause; cp.validate=sleep(5);").unwrap();
        assert_eq!(
            list,
            vec![(UPLOAD_INDEX, Action::Pause), (CP_VALIDATE, Action::Sleep { ms: 5 })]
        );
        let err = Failpoints::parse_list("upload.index=pause;upload.idx=error").unwrap_err();
        assert_eq!(err, FailpointError::UnknownName("upload.idx".into()));
        assert!(err.to_string().contains("upload.index"), "the message lists the names: {err}");
        assert!(matches!(
            Failpoints::parse_list("upload.index"),
            Err(FailpointError::NotNameAction(_))
        ));
    }

    #[tokio::test]
    async fn a_paused_io_waits_until_switched_and_then_does_what_is_set() {
        let fp = Failpoints::new();
        assert_eq!(fp.hit(UPLOAD_INDEX, "x").await, Ok(()));
        fp.set(UPLOAD_INDEX, Action::Pause).unwrap();
        let waiter = tokio::spawn({
            let fp = fp.clone();
            async move { fp.hit(UPLOAD_INDEX, "x").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a paused I/O waits");
        fp.set(UPLOAD_INDEX, Action::Error).unwrap();
        assert_eq!(waiter.await.unwrap(), Err(Injected { site: UPLOAD_INDEX }));
        fp.set(UPLOAD_INDEX, Action::Off).unwrap();
        assert!(fp.active().is_empty());
        assert_eq!(fp.hit(UPLOAD_INDEX, "x").await, Ok(()));
    }
}
