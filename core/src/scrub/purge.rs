//! Which orphans a purge may delete.
//!
//! An orphan is deleted only if all of these hold:
//!
//! 1. **Unreferenced by every attachment that may read it.** The walk reads
//!    every index of the timeline at or below the chosen one
//!    ([`super::plan_timeline`]), of every generation and sequence; nothing any of
//!    them names is deleted. The control plane records only each tenant's latest
//!    generation, not which nodes still hold older ones (AttachedMulti during a
//!    migration, AttachedStale, a warm Secondary reading the origin's layers), and
//!    a new attachment may have loaded an index that its generation's writer has
//!    since superseded (the writer deletes superseded index keys only through the
//!    validated deletion queue, so a Stale writer cannot), so the purge protects
//!    every index there is, a superset of what any attachment reads. A node keeps
//!    about one index per generation, so this is cheap. If any of them does not
//!    parse, the timeline's references are unknown and nothing of it is deleted
//!    ([`Keep::IndexUnreadable`]).
//! 2. **Old.** Its age is known and at least `--older-than`, which is at least
//!    [`MIN_PURGE_AGE_MS`]: an upload in flight leaves a layer that no index
//!    names yet, and the next index upload names it.
//! 3. **Not newer than the indexes.** An object of a generation newer than every
//!    index (or than the grant) is a finding, never an orphan, never deleted.
//! 4. **Confirmed right before the delete** ([`confirm_batch`]): the control plane
//!    is asked again and grants no newer generation than the one the walk used,
//!    and the timeline's index listing is what the walk read. A new attachment or
//!    a new index upload since the walk refuses the whole batch.
//!
//! **Races and crashes.** A batch is deleted with one `DeleteObjects` call after
//! its confirmation. A crash at any point leaves some orphans deleted and some
//! not: every deleted one satisfied the rules, so the remaining state is as safe
//! as before; a rerun starts over. The window left open is an index upload that
//! lands after the confirmation and names an object the purge deletes: the index
//! names only layers uploaded before it, and rule 2 keeps every layer younger than
//! a day, so such an upload would have to name a layer it uploaded a day earlier,
//! which no upload queue does (its retries are bounded far below that).

use super::MIN_PURGE_AGE_MS;
use crate::generation::Generation;
use crate::index_part::IndexVersion;
use crate::layer_name::LayerName;
use crate::time::WallTime;
use std::collections::BTreeSet;

/// `--purge --older-than`: validated against [`MIN_PURGE_AGE_MS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeRules {
    older_than_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PurgeRuleError {
    #[error(
        "--older-than {given_ms} ms is below the minimum age of {MIN_PURGE_AGE_MS} ms (24 h): uploads in flight leave layers no index names yet"
    )]
    BelowMinimum { given_ms: u64 },
}

impl PurgeRules {
    pub fn new(older_than_ms: u64) -> Result<PurgeRules, PurgeRuleError> {
        if older_than_ms < MIN_PURGE_AGE_MS {
            return Err(PurgeRuleError::BelowMinimum { given_ms: older_than_ms });
        }
        Ok(PurgeRules { older_than_ms })
    }

    pub fn older_than_ms(&self) -> u64 {
        self.older_than_ms
    }
}

/// Why an orphan is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keep {
    /// No purge was asked for.
    NotPurging,
    /// An index of some generation names it.
    Referenced,
    /// Younger than `--older-than`.
    Young,
    /// The store did not say when it was written.
    AgeUnknown,
    /// An index of its timeline does not parse: its references are unknown.
    IndexUnreadable,
    /// The control plane did not answer, or does not know the tenant.
    NoControlPlane,
    /// The control plane grants a newer generation than the walk used.
    ControlPlaneMoved,
    /// The timeline's index listing changed since the walk read it.
    IndexesChanged,
}

impl Keep {
    pub fn label(self) -> &'static str {
        match self {
            Keep::NotPurging => "not purging",
            Keep::Referenced => "referenced by an older index",
            Keep::Young => "younger than --older-than",
            Keep::AgeUnknown => "age unknown",
            Keep::IndexUnreadable => "an index of its timeline does not parse",
            Keep::NoControlPlane => "the control plane did not confirm the tenant's generation",
            Keep::ControlPlaneMoved => {
                "the control plane granted a newer generation since the walk"
            }
            Keep::IndexesChanged => "its timeline's indexes changed since the walk",
        }
    }
}

/// Rules 1–2 for one orphan `(name, generation)` (rule 3 made it an orphan).
pub fn orphan_verdict(
    rules: &PurgeRules,
    protected: &BTreeSet<(LayerName, Generation)>,
    protection_complete: bool,
    (name, generation): (&LayerName, Generation),
    last_modified: Option<WallTime>,
    now: WallTime,
) -> Result<(), Keep> {
    if !protection_complete {
        return Err(Keep::IndexUnreadable);
    }
    if protected.contains(&(name.clone(), generation)) {
        return Err(Keep::Referenced);
    }
    let written = last_modified.ok_or(Keep::AgeUnknown)?;
    let age_ms = now.as_unix_millis().saturating_sub(written.as_unix_millis());
    if age_ms < rules.older_than_ms || written > now {
        return Err(Keep::Young);
    }
    Ok(())
}

/// Rule 4, right before a batch is deleted. `walked_with`: the generation the
/// control plane granted when the walk asked (`None`: it did not answer or does not
/// know the tenant); `asked_now`: its answer now. `indexes_then`/`indexes_now`: the
/// timeline's index listing when the walk read it, and now.
pub fn confirm_batch(
    walked_with: Option<Generation>,
    asked_now: Option<Generation>,
    indexes_then: &[IndexVersion],
    indexes_now: &[IndexVersion],
) -> Result<(), Keep> {
    let (Some(then), Some(now)) = (walked_with, asked_now) else {
        return Err(Keep::NoControlPlane);
    };
    if now != then {
        return Err(Keep::ControlPlaneMoved);
    }
    if indexes_then != indexes_now {
        return Err(Keep::IndexesChanged);
    }
    Ok(())
}
