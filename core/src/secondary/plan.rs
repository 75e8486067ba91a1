//! A warm secondary's completions, and what each refresh decides: which index,
//! which layers to keep, download and remove.

use super::{
    InFlight, Listed, Phase, SecondaryCompletion, SecondaryEffect, SecondaryError, Transfer,
    WarmSecondary,
};
use crate::generation::Generation;
use crate::id::{OpId, TimelineId};
use crate::index_part::{IndexPart, IndexVersion, LayerMeta, select_index};
use crate::io_error::{IoError, IoErrorKind};
use crate::layer_name::LayerName;
use crate::lsn::Lsn;
use crate::node::io::METADATA_FILE_NAME;
use crate::remote_path::{self, RemoteKey, TimelinesEntry};
use crate::time::Instant;
use std::collections::BTreeMap;

impl WarmSecondary {
    /// The completion of the effect `op`.
    pub fn handle_completion(
        &mut self,
        now: Instant,
        op: OpId,
        completion: SecondaryCompletion,
    ) -> Result<(), SecondaryError> {
        let Some(what) = self.in_flight.remove(&op) else {
            return Err(SecondaryError::UnknownOp(op));
        };
        let expected = match what {
            InFlight::ListTimelines | InFlight::ListLocal { .. } => "listing",
            InFlight::GetIndex { .. } | InFlight::Verify { .. } => "bytes",
            InFlight::Download { .. } | InFlight::Remove { .. } => "done",
        };
        let got = match completion {
            SecondaryCompletion::Listing(_) => "listing",
            SecondaryCompletion::Bytes(_) => "bytes",
            SecondaryCompletion::Done(_) => "done",
        };
        if expected != got {
            self.in_flight.insert(op, what);
            return Err(SecondaryError::WrongKind { op, expected, got });
        }
        let draining = self.phase == Phase::Draining;
        match (what, completion) {
            (InFlight::Download { timeline, name, meta }, SecondaryCompletion::Done(r)) => {
                self.on_downloaded(timeline, name, meta, r)
            }
            (InFlight::Remove { .. }, SecondaryCompletion::Done(r)) => {
                if r.is_ok() {
                    self.stats.removed_files += 1;
                }
            }
            (InFlight::Verify { timeline, name, meta }, SecondaryCompletion::Bytes(r)) => {
                self.on_verified(timeline, name, meta, r, draining)
            }
            // Stopped: reads are of no use any more.
            _ if draining => {}
            (InFlight::ListTimelines, SecondaryCompletion::Listing(r)) => {
                self.on_timelines_listed(r)
            }
            (InFlight::GetIndex { timeline }, SecondaryCompletion::Bytes(r)) => {
                self.on_index_read(timeline, r)
            }
            (InFlight::ListLocal { timeline }, SecondaryCompletion::Listing(r)) => {
                self.on_local_listed(timeline, r)
            }
            _ => unreachable!("kinds checked above"),
        }
        self.pump(now);
        Ok(())
    }

    /// The tenant's remote timelines: the newest index of each is read next.
    fn on_timelines_listed(&mut self, result: Result<Vec<Listed>, IoError>) {
        let entries = match result {
            Ok(entries) => entries,
            Err(IoError { kind: IoErrorKind::NotFound, .. }) => Vec::new(),
            Err(_) => {
                // Tried again at the next refresh.
                self.stats.failed_reads += 1;
                self.phase = Phase::Reading;
                return;
            }
        };
        let tenant = self.tenant;
        let mut versions: BTreeMap<TimelineId, Vec<IndexVersion>> = BTreeMap::new();
        let mut marked = false;
        for entry in &entries {
            let Ok(key) = RemoteKey::from_listing(&entry.name) else { continue };
            match remote_path::classify_timelines_entry(tenant, &key) {
                Some(TimelinesEntry::Timeline(tl)) => {
                    let list = versions.entry(tl).or_default();
                    if let Some(Ok(v)) = remote_path::parse_index_key(tenant, tl, &key) {
                        list.push(v);
                    }
                }
                Some(TimelinesEntry::DeletionMark) => marked = true,
                Some(TimelinesEntry::Unknown(_)) | None => {}
            }
        }
        self.phase = Phase::Reading;
        self.budget_used = 0;
        if marked {
            // Being deleted: nothing is followed (the files stay until it is detached).
            return;
        }
        // No ceiling: a secondary holds no generation and follows the newest.
        for (tl, listed) in &versions {
            if let Some(version) = select_index(Generation::MAX, listed).chosen {
                self.todo.push_back((*tl, version));
            }
        }
        // Timelines gone from remote storage are no longer followed.
        self.indexes.retain(|tl, _| versions.contains_key(tl));
        self.kept.retain(|(tl, _), _| versions.contains_key(tl));
    }

    fn on_index_read(&mut self, timeline: TimelineId, result: Result<Vec<u8>, IoError>) {
        let parsed = result.ok().and_then(|bytes| IndexPart::from_json_bytes(&bytes).ok());
        let Some(index) = parsed else {
            // Unreadable or vanished (a newer one replaced it): the next refresh.
            self.stats.failed_reads += 1;
            self.todo.pop_front();
            return;
        };
        // A tombstoned timeline keeps nothing.
        let layers = match index.deleted_at {
            Some(_) => BTreeMap::new(),
            None => index.layer_metadata,
        };
        self.reading = Some((timeline, layers));
        let op = self.ops.next_id();
        self.in_flight.insert(op, InFlight::ListLocal { timeline });
        self.effects.push_back(SecondaryEffect::ListLocal { op, timeline });
    }

    fn on_local_listed(&mut self, timeline: TimelineId, result: Result<Vec<Listed>, IoError>) {
        self.todo.pop_front();
        let Some((tl, layers)) = self.reading.take() else { return };
        debug_assert_eq!(tl, timeline);
        let entries = match result {
            Ok(entries) => entries,
            Err(IoError { kind: IoErrorKind::NotFound, .. }) => Vec::new(),
            Err(_) => {
                self.stats.failed_reads += 1;
                return;
            }
        };
        self.plan_timeline(timeline, layers, &entries);
    }

    /// Reconciles one timeline's local directory with its newest index: keep what
    /// matches, queue downloads newest first within the byte bound, queue the
    /// removal of what the index does not list.
    fn plan_timeline(
        &mut self,
        timeline: TimelineId,
        layers: BTreeMap<LayerName, LayerMeta>,
        entries: &[Listed],
    ) {
        let local: BTreeMap<&str, u64> =
            entries.iter().filter(|e| !e.is_dir).map(|e| (e.name.as_str(), e.size_bytes)).collect();
        let before: BTreeMap<LayerName, LayerMeta> = self
            .kept
            .iter()
            .filter(|((tl, _), _)| *tl == timeline)
            .map(|((_, name), meta)| (name.clone(), *meta))
            .collect();
        self.kept.retain(|(tl, _), _| *tl != timeline);
        let mut wanted: Vec<(&LayerName, &LayerMeta)> = Vec::new();
        for (name, meta) in &layers {
            let here = local.get(name.to_string().as_str()) == Some(&meta.file_size);
            // Same name, another object than the one downloaded: downloaded again.
            if here && before.get(name) == Some(meta) {
                // Downloaded or checked by this machine: kept.
                self.budget_used += meta.file_size;
                self.kept.insert((timeline, name.clone()), *meta);
            } else if here && !before.contains_key(name) && self.adopt {
                // Unknown bytes under the right name and size: read back first.
                self.budget_used += meta.file_size;
                let (name, meta) = (name.clone(), *meta);
                self.queue.push_back(Transfer::Verify { timeline, name, meta });
            } else {
                wanted.push((name, meta));
            }
        }
        wanted.sort_by_key(|(name, _)| std::cmp::Reverse(end_lsn(name)));
        for (name, meta) in wanted {
            if self.budget_used + meta.file_size > self.config.tenant_bytes_max {
                self.stats.skipped_over_budget += 1;
                continue;
            }
            self.budget_used += meta.file_size;
            let (name, meta) = (name.clone(), *meta);
            self.queue.push_back(Transfer::Download { timeline, name, meta });
        }
        for e in entries.iter().filter(|e| !e.is_dir && e.name != METADATA_FILE_NAME) {
            let listed = e.name.parse::<LayerName>().is_ok_and(|n| layers.contains_key(&n));
            if !listed {
                // Not in the index, a crash's temporary file, or anything else.
                self.queue.push_front(Transfer::Remove { timeline, file: e.name.clone() });
            }
        }
        self.indexes.insert(timeline, layers);
    }

    /// A local file read back: kept if its bytes are what the index records;
    /// otherwise downloaded again (its bytes were counted in the budget already).
    fn on_verified(
        &mut self,
        timeline: TimelineId,
        name: LayerName,
        meta: LayerMeta,
        result: Result<Vec<u8>, IoError>,
        draining: bool,
    ) {
        let good = result.as_ref().is_ok_and(|b| {
            b.len() as u64 == meta.file_size && crate::layer_file::file_crc32c(b) == meta.crc32c
        });
        if good {
            self.stats.verified_layers += 1;
            if self.indexes.get(&timeline).and_then(|l| l.get(&name)) == Some(&meta) {
                self.kept.insert((timeline, name), meta);
            }
        } else {
            self.stats.mismatched_layers += u64::from(result.is_ok());
            if !draining {
                self.queue.push_back(Transfer::Download { timeline, name, meta });
            }
        }
    }

    fn on_downloaded(
        &mut self,
        timeline: TimelineId,
        name: LayerName,
        meta: LayerMeta,
        result: Result<(), IoError>,
    ) {
        match result {
            Ok(()) => {
                self.stats.downloaded_layers += 1;
                self.stats.downloaded_bytes += meta.file_size;
                if self.indexes.get(&timeline).and_then(|l| l.get(&name)) == Some(&meta) {
                    self.kept.insert((timeline, name), meta);
                }
            }
            // Refused by the check, gone, or failed: tried again at the next refresh.
            // What its name holds is unknown (a failed fsync leaves the renamed file
            // untrusted): removed, even while draining, so no attach adopts it.
            Err(_) => {
                self.stats.failed_downloads += 1;
                self.queue.push_front(Transfer::Remove { timeline, file: name.to_string() });
            }
        }
    }

    /// Starts what the phase allows, then settles into `Idle` when done.
    pub(super) fn pump(&mut self, now: Instant) {
        if self.phase == Phase::Reading && self.in_flight.is_empty() {
            match self.todo.front() {
                Some(&(timeline, version)) => {
                    let op = self.ops.next_id();
                    self.in_flight.insert(op, InFlight::GetIndex { timeline });
                    self.effects.push_back(SecondaryEffect::GetIndex { op, timeline, version });
                    return;
                }
                None => self.phase = Phase::Transferring,
            }
        }
        // Draining starts only the removals of failed downloads.
        let draining_removal = |m: &Self| {
            m.phase == Phase::Draining && matches!(m.queue.front(), Some(Transfer::Remove { .. }))
        };
        while (self.phase == Phase::Transferring || draining_removal(self))
            && self.in_flight.len() < self.config.download_concurrency.max(1)
        {
            let Some(transfer) = self.queue.pop_front() else { break };
            let op = self.ops.next_id();
            let (what, effect) = match transfer {
                Transfer::Download { timeline, name, meta } => (
                    InFlight::Download { timeline, name: name.clone(), meta },
                    SecondaryEffect::Download { op, timeline, name, meta },
                ),
                Transfer::Verify { timeline, name, meta } => (
                    InFlight::Verify { timeline, name: name.clone(), meta },
                    SecondaryEffect::ReadLocal { op, timeline, name },
                ),
                Transfer::Remove { timeline, file } => (
                    InFlight::Remove { timeline },
                    SecondaryEffect::RemoveLocal { op, timeline, file },
                ),
            };
            self.in_flight.insert(op, what);
            self.effects.push_back(effect);
        }
        self.settle(now);
    }
}

/// The LSN a layer reaches: newer layers are downloaded first.
fn end_lsn(name: &LayerName) -> Lsn {
    match name {
        LayerName::Delta { lsns, .. } => lsns.end,
        LayerName::Image { lsn, .. } => *lsn,
    }
}
