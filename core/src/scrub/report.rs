//! What a scrub found: [`Finding`]s and the [`Report`] that counts and keeps them.

use super::MAX_HELD_FINDINGS;
use crate::generation::Generation;
use crate::remote_path::RemoteKey;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One thing remote storage should not hold, or should hold and does not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The chosen index names `key`, and it is not there.
    MissingLayer { key: RemoteKey, index: RemoteKey },
    /// The chosen index names `key` with another size.
    WrongSize { key: RemoteKey, index: RemoteKey, expected_bytes: u64, actual_bytes: u64 },
    /// `--deep`: the bytes fail the index's CRC32C or do not parse as a layer.
    CorruptLayer { key: RemoteKey, why: String },
    /// A layer no index of the latest generation references.
    Orphan { key: RemoteKey, generation: Generation, age_ms: Option<u64>, size_bytes: u64 },
    /// An index whose format version this build does not read.
    UnknownIndexVersion { key: RemoteKey, version: u32 },
    /// An index (or a key that starts like one) that does not parse.
    UnreadableIndex { key: RemoteKey, why: String },
    /// A deleted timeline (its chosen index is a tombstone) or tenant (its deletion
    /// mark is there) that still holds `objects` objects besides its indexes/mark.
    TombstoneHoldsObjects { prefix: String, objects: u64 },
    /// An object of a generation newer than every index of its timeline
    /// (`newest_index` `None`: the timeline has no index), or newer than the
    /// generation the control plane granted (`granted`).
    NewerThanAnyIndex {
        key: RemoteKey,
        generation: Generation,
        newest_index: Option<Generation>,
        granted: Option<Generation>,
    },
    /// A key that names no layer, index or deletion mark.
    UnknownObject { key: RemoteKey },
}

/// The kind of a [`Finding`], for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    MissingLayer,
    WrongSize,
    CorruptLayer,
    Orphan,
    UnknownIndexVersion,
    UnreadableIndex,
    TombstoneHoldsObjects,
    NewerThanAnyIndex,
    UnknownObject,
}

impl FindingKind {
    pub fn label(self) -> &'static str {
        match self {
            FindingKind::MissingLayer => "missing_layer",
            FindingKind::WrongSize => "wrong_size",
            FindingKind::CorruptLayer => "corrupt_layer",
            FindingKind::Orphan => "orphan",
            FindingKind::UnknownIndexVersion => "unknown_index_version",
            FindingKind::UnreadableIndex => "unreadable_index",
            FindingKind::TombstoneHoldsObjects => "tombstone_holds_objects",
            FindingKind::NewerThanAnyIndex => "newer_than_any_index",
            FindingKind::UnknownObject => "unknown_object",
        }
    }

    /// Whether a checker run fails on it: everything but an orphan (garbage the
    /// design leaves for the scrubber, never a lost or wrong byte).
    pub fn is_problem(self) -> bool {
        self != FindingKind::Orphan
    }
}

impl Finding {
    pub fn kind(&self) -> FindingKind {
        match self {
            Finding::MissingLayer { .. } => FindingKind::MissingLayer,
            Finding::WrongSize { .. } => FindingKind::WrongSize,
            Finding::CorruptLayer { .. } => FindingKind::CorruptLayer,
            Finding::Orphan { .. } => FindingKind::Orphan,
            Finding::UnknownIndexVersion { .. } => FindingKind::UnknownIndexVersion,
            Finding::UnreadableIndex { .. } => FindingKind::UnreadableIndex,
            Finding::TombstoneHoldsObjects { .. } => FindingKind::TombstoneHoldsObjects,
            Finding::NewerThanAnyIndex { .. } => FindingKind::NewerThanAnyIndex,
            Finding::UnknownObject { .. } => FindingKind::UnknownObject,
        }
    }

    fn line(&self) -> String {
        match self {
            Finding::MissingLayer { key, index } => format!("{key}: missing (named by {index})"),
            Finding::WrongSize { key, expected_bytes, actual_bytes, .. } => {
                format!("{key}: {actual_bytes} bytes, the index says {expected_bytes}")
            }
            Finding::CorruptLayer { key, why } => format!("{key}: {why}"),
            Finding::Orphan { key, generation, age_ms, size_bytes } => {
                let age =
                    age_ms.map_or("age unknown".to_owned(), |ms| format!("{}s old", ms / 1000));
                format!("{key}: {generation}, {size_bytes} bytes, {age}")
            }
            Finding::UnknownIndexVersion { key, version } => format!("{key}: version {version}"),
            Finding::UnreadableIndex { key, why } => format!("{key}: {why}"),
            Finding::TombstoneHoldsObjects { prefix, objects } => {
                format!("{prefix}: deleted, still holds {objects} objects")
            }
            Finding::NewerThanAnyIndex { key, generation, newest_index, granted } => {
                let newest =
                    newest_index.map_or("no index".to_owned(), |g| format!("newest index {g}"));
                let granted = granted.map_or(String::new(), |g| format!(", granted {g}"));
                format!("{key}: {generation}, {newest}{granted}")
            }
            Finding::UnknownObject { key } => format!("{key}: not a layer, index or mark"),
        }
    }
}

/// Counted in a purge (dry run or not).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PurgeSummary {
    /// Whether objects were deleted (`--yes`) or only listed.
    pub executed: bool,
    /// Orphans every rule allowed: deleted when `executed`.
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// Orphans kept, by reason label.
    pub kept: BTreeMap<&'static str, u64>,
}

/// A scrub's counts and findings. The first [`MAX_HELD_FINDINGS`] findings are
/// kept; `findings_not_held` counts the rest (they are in `counts`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub tenants: u64,
    pub timelines: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Indexes read (the chosen one and every older one).
    pub indexes_read: u64,
    /// Referenced layers whose size was checked (and with `--deep` their bytes).
    pub layers_checked: u64,
    pub deep: bool,
    pub counts: BTreeMap<FindingKind, u64>,
    pub findings: Vec<Finding>,
    pub findings_not_held: u64,
    pub purge: Option<PurgeSummary>,
}

impl Report {
    pub fn record(&mut self, finding: Finding) {
        *self.counts.entry(finding.kind()).or_default() += 1;
        if self.findings.len() < MAX_HELD_FINDINGS {
            self.findings.push(finding);
        } else {
            self.findings_not_held += 1;
        }
    }

    pub fn count(&self, kind: FindingKind) -> u64 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    /// Findings that fail a checker run (everything but orphans).
    pub fn problems(&self) -> u64 {
        self.counts.iter().filter(|(k, _)| k.is_problem()).map(|(_, n)| n).sum()
    }

    pub fn orphans(&self) -> u64 {
        self.count(FindingKind::Orphan)
    }

    /// The process exit code: 0 clean (orphans allowed), 1 problems found.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.problems() > 0)
    }

    /// The human summary: totals, counts by kind, then the held findings by kind.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scrubbed {} tenants, {} timelines, {} objects ({} bytes); {} indexes read, {} layers checked{}",
            self.tenants,
            self.timelines,
            self.objects,
            self.bytes,
            self.indexes_read,
            self.layers_checked,
            if self.deep { " (deep)" } else { "" }
        );
        let verdict = if self.problems() == 0 { "clean" } else { "PROBLEMS FOUND" };
        let _ =
            writeln!(out, "{verdict}: {} problems, {} orphans", self.problems(), self.orphans());
        for (kind, n) in &self.counts {
            let _ = writeln!(out, "  {:<24} {n}", kind.label());
        }
        for finding in &self.findings {
            let _ = writeln!(out, "  [{}] {}", finding.kind().label(), finding.line());
        }
        if self.findings_not_held > 0 {
            let _ =
                writeln!(out, "  … and {} more findings (counted above)", self.findings_not_held);
        }
        if let Some(p) = &self.purge {
            let verb = if p.executed { "deleted" } else { "would delete (dry run; --yes deletes)" };
            let _ = writeln!(out, "purge: {verb} {} orphans, {} bytes", p.deleted, p.deleted_bytes);
            for (why, n) in &p.kept {
                let _ = writeln!(out, "  kept {n}: {why}");
            }
        }
        out
    }
}
