//! The lifecycle of one attached tenant: a closed transition table.
//!
//! ```text
//!   Loading ──Loaded──┐                  (start-up: from local config + remote index)
//!                     ├──► Activating ──Activated──► Active
//!   Attaching ─Loaded─┘                  (location_config: from remote storage)
//!
//!   Loading | Attaching | Activating | Active ──Stop──► Stopping   (the slot goes once stopped)
//!   Loading | Attaching | Activating | Active | Stopping ──Fail──► Broken{reason}
//!   Broken ──Stop──► Stopping
//! ```
//!
//! Any other (state, event) pair is an [`IllegalTransition`], returned, never a panic:
//! the node logs it and its `check_invariants` fails in tests. `Stop` on `Stopping` is
//! a no-op (stopping twice is harmless). `Fail` on `Stopping` (a machine panicked
//! during the stop's flush) ends the stop in `Broken`: the stop failed, and what the
//! tenant acknowledged above its visible LSN was lost, so the operation that asked
//! for the stop (a detach, a mode change) must not go on as if it had flushed. A tenant is reported `Active` only after every
//! timeline it loaded has its machines running, and a timeline is only ever reported
//! active after its first index is durable (S-ACTIVE-UPLOADED, enforced per timeline).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TenantState {
    /// Start-up: loading from the local config and the remote index.
    Loading,
    /// Attached by location_config: reading its remote storage.
    Attaching,
    /// Indexes read; timelines' machines being started and reconciled.
    Activating,
    Active,
    /// Flushing and stopping its machines; the slot is removed afterwards.
    Stopping,
    /// Loading failed, or (tokio binary) a handler of one of its machines panicked
    /// and its machines were dropped (`node/isolation.rs`); the tenant serves
    /// nothing until it is reconfigured (a new generation) or the node restarts.
    Broken {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantEvent {
    /// Every index of the tenant was read (or it has none).
    Loaded,
    /// Every timeline's machines run.
    Activated,
    Stop,
    Fail(String),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tenant state {from:?} has no transition for {event:?}")]
pub struct IllegalTransition {
    pub from: TenantState,
    pub event: TenantEvent,
}

impl TenantState {
    /// The state after `event`, from the table in the module doc.
    pub fn on(&self, event: &TenantEvent) -> Result<TenantState, IllegalTransition> {
        use TenantEvent as E;
        use TenantState as S;
        let next = match (self, event) {
            (S::Loading | S::Attaching, E::Loaded) => S::Activating,
            (S::Activating, E::Activated) => S::Active,
            (S::Loading | S::Attaching | S::Activating | S::Active | S::Broken { .. }, E::Stop)
            | (S::Stopping, E::Stop) => S::Stopping,
            (
                S::Loading | S::Attaching | S::Activating | S::Active | S::Stopping,
                E::Fail(reason),
            ) => S::Broken { reason: reason.clone() },
            (
                S::Loading
                | S::Attaching
                | S::Activating
                | S::Active
                | S::Stopping
                | S::Broken { .. },
                _,
            ) => return Err(IllegalTransition { from: self.clone(), event: event.clone() }),
        };
        Ok(next)
    }

    /// A short label for APIs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TenantState::Loading => "Loading",
            TenantState::Attaching => "Attaching",
            TenantState::Activating => "Activating",
            TenantState::Active => "Active",
            TenantState::Stopping => "Stopping",
            TenantState::Broken { .. } => "Broken",
        }
    }

    /// Every state, for tests and metrics.
    pub const LABELS: [&'static str; 6] =
        ["Loading", "Attaching", "Activating", "Active", "Stopping", "Broken"];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_states() -> Vec<TenantState> {
        vec![
            TenantState::Loading,
            TenantState::Attaching,
            TenantState::Activating,
            TenantState::Active,
            TenantState::Stopping,
            TenantState::Broken { reason: "x".into() },
        ]
    }

    fn all_events() -> Vec<TenantEvent> {
        vec![
            TenantEvent::Loaded,
            TenantEvent::Activated,
            TenantEvent::Stop,
            TenantEvent::Fail("e".into()),
        ]
    }

    /// The whole table, as (state, event) → next label or "illegal"; any change to the
    /// table shows up here.
    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        let mut rows = Vec::new();
        for s in all_states() {
            for e in all_events() {
                let next = match s.on(&e) {
                    Ok(n) => n.label().to_string(),
                    Err(_) => "illegal".to_string(),
                };
                rows.push(format!(
                    "{:<10} {:<9} -> {next}",
                    s.label(),
                    format!("{e:?}").split('(').next().unwrap_or("")
                ));
            }
        }
        insta::assert_snapshot!(rows.join("\n"));
    }

    #[test]
    fn loading_and_attaching_both_reach_active_through_activating() {
        for start in [TenantState::Loading, TenantState::Attaching] {
            let s = start.on(&TenantEvent::Loaded).unwrap();
            assert_eq!(s, TenantState::Activating);
            assert_eq!(s.on(&TenantEvent::Activated).unwrap(), TenantState::Active);
            // Never straight to Active.
            assert!(start.on(&TenantEvent::Activated).is_err());
        }
    }

    #[test]
    fn broken_only_stops_and_stopping_only_ends_or_fails() {
        let broken = TenantState::Active.on(&TenantEvent::Fail("disk".into())).unwrap();
        assert_eq!(broken, TenantState::Broken { reason: "disk".into() });
        assert!(broken.on(&TenantEvent::Loaded).is_err());
        assert!(broken.on(&TenantEvent::Activated).is_err());
        assert_eq!(broken.on(&TenantEvent::Stop).unwrap(), TenantState::Stopping);
        for e in all_events() {
            let r = TenantState::Stopping.on(&e);
            let failed = matches!(r, Ok(TenantState::Broken { .. }));
            assert!(r.is_err() || r == Ok(TenantState::Stopping) || failed, "{e:?}");
            assert_eq!(failed, matches!(e, TenantEvent::Fail(_)), "{e:?}");
        }
    }
}
