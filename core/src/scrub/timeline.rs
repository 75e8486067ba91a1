//! One timeline's scrub: which indexes to read ([`plan_timeline`]), then every
//! object of the timeline against them ([`TimelineScrub`]).

use super::purge::{self, Keep, PurgeRules};
use super::{Finding, KeyClass, Report, ScrubObject};
use crate::error::ParseError;
use crate::generation::Generation;
use crate::id::{TenantId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion, LayerMeta, select_index};
use crate::layer_name::LayerName;
use crate::remote_path::{index_key, layer_key, timeline_prefix};
use crate::time::WallTime;
use std::collections::{BTreeMap, BTreeSet};

/// Which of a timeline's listed indexes to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelinePlan {
    /// The index the node would load, by its own rule.
    pub chosen: Option<IndexVersion>,
    /// Every listed index at or below the chosen one (the chosen one included),
    /// sorted: an attachment of any of those generations may still read it (see
    /// [`super::purge`] rule 1).
    pub to_read: Vec<IndexVersion>,
    /// The newest generation any listed index carries (newer ones included).
    pub newest_listed: Option<Generation>,
}

/// Plans a timeline's index reads. `granted`: the tenant's generation the control
/// plane answered; `None` when it was not asked (then every listed index is at or
/// below "our" generation, and the newest is chosen).
pub fn plan_timeline(granted: Option<Generation>, listed: &[IndexVersion]) -> TimelinePlan {
    let own = granted.unwrap_or(Generation::MAX);
    let chosen = select_index(own, listed).chosen;
    let mut to_read: Vec<IndexVersion> =
        listed.iter().filter(|v| Some(**v) <= chosen).copied().collect();
    to_read.sort();
    to_read.dedup();
    TimelinePlan { chosen, to_read, newest_listed: listed.iter().map(|v| v.generation).max() }
}

/// An index the walk read, parsed (or not) by [`IndexPart::from_json_bytes`].
#[derive(Clone, Debug)]
pub struct LoadedIndex {
    pub version: IndexVersion,
    pub parsed: Result<IndexPart, ParseError>,
}

/// What the walk does next with an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectVerdict {
    /// Named by the chosen index with the right size: with `--deep`, read its
    /// bytes and hand them to [`super::check_layer_bytes`].
    Referenced { name: LayerName, meta: LayerMeta },
    /// An orphan: `Ok` when a purge may delete it (subject to the batch's
    /// confirmation), `Err` with the reason it is kept.
    Orphan(Result<(), Keep>),
    /// Nothing to do.
    Done,
}

/// One timeline's check. Holds the layers its chosen index names that were not
/// listed yet, and the (name, generation) pairs every read index references.
#[derive(Debug)]
pub struct TimelineScrub {
    tenant: TenantId,
    timeline: TimelineId,
    chosen: Option<IndexVersion>,
    /// Named by the chosen index and not listed yet: missing at the end.
    unseen: BTreeMap<LayerName, LayerMeta>,
    /// Everything any read index references; a purge never touches these.
    protected: BTreeSet<(LayerName, Generation)>,
    /// False when some index to read did not parse: references are not known, so
    /// nothing is purged.
    protection_complete: bool,
    tombstone: bool,
    tombstone_objects: u64,
    newest_listed: Option<Generation>,
    granted: Option<Generation>,
    purge: Option<PurgeRules>,
}

impl TimelineScrub {
    /// Records the index findings of `loaded` into `report`.
    pub fn new(
        tenant: TenantId,
        timeline: TimelineId,
        plan: &TimelinePlan,
        loaded: Vec<LoadedIndex>,
        granted: Option<Generation>,
        purge: Option<PurgeRules>,
        report: &mut Report,
    ) -> TimelineScrub {
        report.timelines += 1;
        let mut scrub = TimelineScrub {
            tenant,
            timeline,
            chosen: plan.chosen,
            unseen: BTreeMap::new(),
            protected: BTreeSet::new(),
            protection_complete: loaded.len() == plan.to_read.len(),
            tombstone: false,
            tombstone_objects: 0,
            newest_listed: plan.newest_listed,
            granted,
            purge,
        };
        for index in loaded {
            report.indexes_read += 1;
            let key = index_key(tenant, timeline, index.version);
            match index.parsed {
                Ok(part) => {
                    scrub
                        .protected
                        .extend(part.layer_metadata.iter().map(|(n, m)| (n.clone(), m.generation)));
                    if Some(index.version) == plan.chosen {
                        scrub.tombstone = part.deleted_at.is_some();
                        scrub.unseen = part.layer_metadata;
                    }
                }
                Err(ParseError::UnsupportedVersion { version, .. }) => {
                    scrub.protection_complete = false;
                    report.record(Finding::UnknownIndexVersion { key, version });
                }
                Err(e) => {
                    scrub.protection_complete = false;
                    report.record(Finding::UnreadableIndex { key, why: e.to_string() });
                }
            }
        }
        scrub
    }

    /// Whether a purge may delete from this timeline at all.
    pub fn protection_complete(&self) -> bool {
        self.protection_complete
    }

    /// One listed object of this timeline (`class` is [`super::classify_key`] of
    /// its key), in listing order.
    pub fn handle_object(
        &mut self,
        object: &ScrubObject,
        class: &KeyClass,
        now: WallTime,
        report: &mut Report,
    ) -> ObjectVerdict {
        debug_assert_eq!(class.timeline(), Some(self.timeline), "{}", object.key);
        let key = object.key.clone();
        match class {
            KeyClass::Index { version, .. } => {
                if self.granted.is_some_and(|g| version.generation > g) {
                    report.record(self.newer(key, version.generation));
                }
                ObjectVerdict::Done
            }
            KeyClass::BadIndexKey { why, .. } => {
                report.record(Finding::UnreadableIndex { key, why: why.clone() });
                ObjectVerdict::Done
            }
            KeyClass::Layer { name, generation, .. } => {
                self.tombstone_objects += u64::from(self.tombstone);
                self.handle_layer(object, name, *generation, now, report)
            }
            _ => {
                self.tombstone_objects += u64::from(self.tombstone);
                report.record(Finding::UnknownObject { key });
                ObjectVerdict::Done
            }
        }
    }

    fn handle_layer(
        &mut self,
        object: &ScrubObject,
        name: &LayerName,
        generation: Generation,
        now: WallTime,
        report: &mut Report,
    ) -> ObjectVerdict {
        let key = object.key.clone();
        if let Some(meta) = self.unseen.get(name).filter(|m| m.generation == generation).copied() {
            self.unseen.remove(name);
            report.layers_checked += 1;
            if meta.file_size != object.size_bytes {
                let index = self.chosen_key();
                report.record(Finding::WrongSize {
                    key,
                    index,
                    expected_bytes: meta.file_size,
                    actual_bytes: object.size_bytes,
                });
                return ObjectVerdict::Done;
            }
            return ObjectVerdict::Referenced { name: name.clone(), meta };
        }
        let newer_than_indexes = self.newest_listed.is_none_or(|n| generation > n);
        if newer_than_indexes || self.granted.is_some_and(|g| generation > g) {
            report.record(self.newer(key, generation));
            return ObjectVerdict::Done;
        }
        let age_ms = object.last_modified.map(|t| now.as_unix_millis().saturating_sub(t.0));
        report.record(Finding::Orphan { key, generation, age_ms, size_bytes: object.size_bytes });
        ObjectVerdict::Orphan(match &self.purge {
            None => Err(Keep::NotPurging),
            Some(rules) => purge::orphan_verdict(
                rules,
                &self.protected,
                self.protection_complete,
                (name, generation),
                object.last_modified,
                now,
            ),
        })
    }

    fn newer(&self, key: crate::remote_path::RemoteKey, generation: Generation) -> Finding {
        Finding::NewerThanAnyIndex {
            key,
            generation,
            newest_index: self.newest_listed,
            granted: self.granted,
        }
    }

    fn chosen_key(&self) -> crate::remote_path::RemoteKey {
        let v = self.chosen.unwrap_or_else(|| unreachable!("only a chosen index names layers"));
        index_key(self.tenant, self.timeline, v)
    }

    /// After the timeline's last object: what its chosen index named and was not
    /// listed, and a tombstone that still holds objects.
    pub fn finish(self, report: &mut Report) {
        if !self.unseen.is_empty() {
            let index = self.chosen_key();
            for (name, meta) in &self.unseen {
                let key = layer_key(self.tenant, self.timeline, name, meta.generation);
                report.record(Finding::MissingLayer { key, index: index.clone() });
            }
        }
        if self.tombstone_objects > 0 {
            report.record(Finding::TombstoneHoldsObjects {
                prefix: timeline_prefix(self.tenant, self.timeline),
                objects: self.tombstone_objects,
            });
        }
    }
}

/// A tenant's own objects: its deletion mark, and anything under it that is no
/// timeline's. A deleted tenant (its mark is there) may keep its timelines'
/// indexes (each timeline's tombstone stays for good); any other object under it
/// is a finding.
#[derive(Debug)]
pub struct TenantScrub {
    tenant: TenantId,
    marked: bool,
    objects_besides_mark: u64,
}

impl TenantScrub {
    /// `marked`: the walk found the tenant's deletion mark (it lists the mark's key
    /// first, since the mark sorts among the timelines).
    pub fn new(tenant: TenantId, marked: bool, report: &mut Report) -> TenantScrub {
        report.tenants += 1;
        TenantScrub { tenant, marked, objects_besides_mark: 0 }
    }

    /// Every object under the tenant (timelines' included), in listing order.
    pub fn handle_object(&mut self, object: &ScrubObject, class: &KeyClass, report: &mut Report) {
        debug_assert_eq!(class.tenant(), Some(self.tenant), "{}", object.key);
        report.objects += 1;
        report.bytes += object.size_bytes;
        match class {
            // Indexes stay after a deletion (the tombstone for good), like the mark.
            KeyClass::TenantDeletionMark { .. } | KeyClass::Index { .. } => {}
            KeyClass::OtherInTenant { .. } => {
                self.objects_besides_mark += 1;
                report.record(Finding::UnknownObject { key: object.key.clone() });
            }
            _ => self.objects_besides_mark += 1,
        }
    }

    pub fn finish(self, report: &mut Report) {
        if self.marked && self.objects_besides_mark > 0 {
            report.record(Finding::TombstoneHoldsObjects {
                prefix: crate::remote_path::tenant_prefix(self.tenant),
                objects: self.objects_besides_mark,
            });
        }
    }
}
