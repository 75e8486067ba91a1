//! The scrubber's walk: lists remote storage page by page through
//! [`RemoteStorage`], reads the indexes core's [`plan_timeline`] asks for, and
//! hands every object to core's [`strata_core::scrub`] machines, which decide
//! everything (findings, purge verdicts). Used by `strata scrub`, the end-to-end
//! tests and the simulator, on any store.
//!
//! **Memory.** The walk holds one listing page ([`ScrubOptions::page_keys`] keys),
//! one purge batch ([`PURGE_BATCH_KEYS`]) and the report, which keeps at most
//! [`strata_core::scrub::MAX_HELD_FINDINGS`] findings: at most
//! [`held_keys_bound`]`(page_keys)` keys, whatever the bucket holds. It records
//! the most it held in [`ScrubOutcome::max_held_keys`] and asserts the bound.
//! Besides keys it holds the current timeline's index listing and read indexes,
//! and with `--deep` one layer's bytes at a time.
//!
//! **Purge.** With [`ScrubOptions::purge`], each tenant's generation is asked
//! from a [`GenerationOracle`] (the control plane) before its timelines are
//! walked, and used as the node's own generation to choose indexes. Orphans core
//! allows go into a batch; before a batch is deleted the oracle is asked again and
//! the timeline's indexes listed again, and core's
//! [`confirm_batch`](strata_core::scrub::purge::confirm_batch) decides (the rules and
//! the race argument are in [`strata_core::scrub::purge`]). Without
//! [`PurgeRequest::execute`] nothing is deleted (a dry run counts what would be).
//!
//! Errors of the store end the walk with the [`RemoteError`] (the scrubber's own
//! error, exit code 2); a finding is never an error.

#[cfg(all(test, not(madsim)))]
mod tests;

use crate::remote::{RemoteError, RemoteErrorKind, RemoteStorage};
use std::future::Future;
use strata_core::generation::Generation;
use strata_core::id::{TenantId, TimelineId};
use strata_core::index_part::{IndexPart, IndexVersion};
use strata_core::remote_path::{
    RemoteKey, index_key, index_prefix, tenant_deletion_mark_key, tenant_prefix,
};
use strata_core::scrub::purge::{Keep, PurgeRules, confirm_batch};
use strata_core::scrub::{
    Finding, KeyClass, LoadedIndex, ObjectVerdict, PURGE_BATCH_KEYS, PurgeSummary, Report,
    ScrubObject, TenantScrub, TimelineScrub, check_layer_bytes, classify_key, held_keys_bound,
    plan_timeline,
};
use strata_core::time::WallTime;

/// Keys per listing page the walk asks for by default (S3's own maximum).
pub const SCRUB_PAGE_KEYS: usize = 1000;

/// The control plane, as the purge asks it.
pub trait GenerationOracle: Sync {
    /// The tenant's latest generation now: `Ok(None)` for a tenant the control
    /// plane does not know, `Err(why)` when it cannot answer.
    fn latest_generation(
        &self,
        tenant: TenantId,
    ) -> impl Future<Output = Result<Option<Generation>, String>> + Send;
}

/// No control plane: every purge batch is kept (`NoControlPlane`).
pub struct NoOracle;

impl GenerationOracle for NoOracle {
    async fn latest_generation(&self, _tenant: TenantId) -> Result<Option<Generation>, String> {
        Err("no control plane configured".to_owned())
    }
}

#[derive(Clone, Copy, Debug)]
pub struct PurgeRequest {
    pub rules: PurgeRules,
    /// Delete (`--yes`); otherwise a dry run.
    pub execute: bool,
}

#[derive(Clone, Debug)]
pub struct ScrubOptions {
    /// Only this tenant.
    pub tenant: Option<TenantId>,
    /// Read every referenced layer and check its bytes.
    pub deep: bool,
    pub page_keys: usize,
    pub purge: Option<PurgeRequest>,
}

impl Default for ScrubOptions {
    fn default() -> Self {
        ScrubOptions { tenant: None, deep: false, page_keys: SCRUB_PAGE_KEYS, purge: None }
    }
}

/// What a walk returns.
#[derive(Clone, Debug)]
pub struct ScrubOutcome {
    pub report: Report,
    /// The most keys the walk held at once (see the module doc).
    pub max_held_keys: usize,
    /// Listing pages read (the timelines' index listings included).
    pub pages: u64,
}

/// Walks the store (or one tenant) and reports. `now` ages the objects;
/// `progress` is called after every page with the report so far.
pub async fn scrub<R: RemoteStorage, G: GenerationOracle>(
    remote: &R,
    options: &ScrubOptions,
    oracle: &G,
    now: WallTime,
    progress: &mut (dyn FnMut(&Report) + Send),
) -> Result<ScrubOutcome, RemoteError> {
    let mut walk = Walk {
        remote,
        options,
        oracle,
        now,
        report: Report { deep: options.deep, ..Report::default() },
        tenant: None,
        timeline: None,
        max_held_keys: 0,
        pages: 0,
    };
    if let Some(p) = &options.purge {
        walk.report.purge = Some(PurgeSummary { executed: p.execute, ..PurgeSummary::default() });
    }
    let prefix = options.tenant.map(tenant_prefix).unwrap_or_default();
    let mut after: Option<RemoteKey> = None;
    loop {
        let page = remote.list_page(&prefix, after.as_ref(), options.page_keys).await?;
        walk.pages += 1;
        walk.hold(page.objects.len());
        for entry in page.objects {
            let object = ScrubObject {
                key: entry.key,
                size_bytes: entry.size_bytes,
                last_modified: entry.last_modified,
            };
            walk.handle_object(object).await?;
        }
        progress(&walk.report);
        match page.next_start_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    walk.finish_tenant().await?;
    progress(&walk.report);
    Ok(ScrubOutcome { report: walk.report, max_held_keys: walk.max_held_keys, pages: walk.pages })
}

struct TenantWalk {
    id: TenantId,
    scrub: TenantScrub,
    /// The control plane's answer before the walk (purge only).
    granted: Option<Generation>,
}

struct TimelineWalk {
    id: TimelineId,
    scrub: TimelineScrub,
    /// The index listing the walk read.
    indexes: Vec<IndexVersion>,
    /// Orphans core allows, waiting for the batch's confirmation.
    batch: Vec<(RemoteKey, u64)>,
}

struct Walk<'a, R, G> {
    remote: &'a R,
    options: &'a ScrubOptions,
    oracle: &'a G,
    now: WallTime,
    report: Report,
    tenant: Option<TenantWalk>,
    timeline: Option<TimelineWalk>,
    max_held_keys: usize,
    pages: u64,
}

impl<R: RemoteStorage, G: GenerationOracle> Walk<'_, R, G> {
    /// Records that `page` listed keys are held now, besides the batch and findings.
    fn hold(&mut self, page: usize) {
        let batch = self.timeline.as_ref().map_or(0, |t| t.batch.len());
        let held = page + batch + self.report.findings.len();
        self.max_held_keys = self.max_held_keys.max(held);
        debug_assert!(held <= held_keys_bound(self.options.page_keys), "held {held} keys");
    }

    async fn handle_object(&mut self, object: ScrubObject) -> Result<(), RemoteError> {
        let class = classify_key(&object.key);
        if class.tenant() != self.tenant.as_ref().map(|t| t.id) {
            self.finish_tenant().await?;
            if let Some(tenant) = class.tenant() {
                self.start_tenant(tenant).await?;
            }
        }
        if class.timeline() != self.timeline.as_ref().map(|t| t.id) {
            self.finish_timeline().await?;
            if let (Some(tenant), Some(timeline)) = (class.tenant(), class.timeline()) {
                self.start_timeline(tenant, timeline).await?;
            }
        }
        let Some(tenant) = self.tenant.as_mut() else {
            self.report.objects += 1;
            self.report.bytes += object.size_bytes;
            self.report.record(Finding::UnknownObject { key: object.key });
            return Ok(());
        };
        tenant.scrub.handle_object(&object, &class, &mut self.report);
        let Some(timeline) = self.timeline.as_mut() else { return Ok(()) };
        match timeline.scrub.handle_object(&object, &class, self.now, &mut self.report) {
            ObjectVerdict::Referenced { name, meta } if self.options.deep => {
                match self.remote.get(&object.key).await {
                    Ok(bytes) => {
                        if let Err(why) = check_layer_bytes(&name, &meta, bytes) {
                            self.report.record(Finding::CorruptLayer { key: object.key, why });
                        }
                    }
                    // Deleted since the listing: a node's GC or compaction dropped it
                    // from a newer index than the walk read (swarm seed 1570). No
                    // bytes are left to check; a reference that outlives it is
                    // found by the next walk as a missing layer.
                    Err(e) if e.kind == RemoteErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            ObjectVerdict::Orphan(Ok(())) => {
                timeline.batch.push((object.key, object.size_bytes));
                if timeline.batch.len() >= PURGE_BATCH_KEYS {
                    self.flush_batch().await?;
                }
            }
            ObjectVerdict::Orphan(Err(keep)) => self.kept(keep, 1),
            ObjectVerdict::Referenced { .. } | ObjectVerdict::Done => {}
        }
        Ok(())
    }

    fn kept(&mut self, keep: Keep, n: u64) {
        if let Some(p) = self.report.purge.as_mut() {
            *p.kept.entry(keep.label()).or_default() += n;
        }
    }

    async fn start_tenant(&mut self, id: TenantId) -> Result<(), RemoteError> {
        let mark = tenant_deletion_mark_key(id);
        let marked = !self.remote.list_page(mark.as_str(), None, 1).await?.objects.is_empty();
        self.pages += 1;
        let granted = match self.options.purge {
            Some(_) => self.oracle.latest_generation(id).await.ok().flatten(),
            None => None,
        };
        let scrub = TenantScrub::new(id, marked, &mut self.report);
        self.tenant = Some(TenantWalk { id, scrub, granted });
        Ok(())
    }

    async fn finish_tenant(&mut self) -> Result<(), RemoteError> {
        self.finish_timeline().await?;
        if let Some(tenant) = self.tenant.take() {
            tenant.scrub.finish(&mut self.report);
        }
        Ok(())
    }

    async fn start_timeline(
        &mut self,
        tenant: TenantId,
        id: TimelineId,
    ) -> Result<(), RemoteError> {
        let granted = self.tenant.as_ref().and_then(|t| t.granted);
        let indexes = self.list_indexes(tenant, id).await?;
        let plan = plan_timeline(granted, &indexes);
        let mut loaded = Vec::with_capacity(plan.to_read.len());
        for version in &plan.to_read {
            match self.remote.get(&index_key(tenant, id, *version)).await {
                Ok(bytes) => loaded.push(LoadedIndex {
                    version: *version,
                    parsed: IndexPart::from_json_bytes(&bytes),
                }),
                // Deleted since the listing: its references are unknown, so
                // core keeps the whole timeline out of a purge.
                Err(e) if e.kind == RemoteErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let rules = self.options.purge.map(|p| p.rules);
        let scrub = TimelineScrub::new(tenant, id, &plan, loaded, granted, rules, &mut self.report);
        self.timeline = Some(TimelineWalk { id, scrub, indexes, batch: Vec::new() });
        Ok(())
    }

    /// Every index version of a timeline, page by page.
    async fn list_indexes(
        &mut self,
        tenant: TenantId,
        id: TimelineId,
    ) -> Result<Vec<IndexVersion>, RemoteError> {
        let prefix = index_prefix(tenant, id);
        let mut versions = Vec::new();
        let mut after = None;
        loop {
            let page =
                self.remote.list_page(&prefix, after.as_ref(), self.options.page_keys).await?;
            self.pages += 1;
            for entry in &page.objects {
                if let KeyClass::Index { version, .. } = classify_key(&entry.key) {
                    versions.push(version);
                }
            }
            match page.next_start_after {
                Some(next) => after = Some(next),
                None => return Ok(versions),
            }
        }
    }

    async fn finish_timeline(&mut self) -> Result<(), RemoteError> {
        self.flush_batch().await?;
        if let Some(timeline) = self.timeline.take() {
            timeline.scrub.finish(&mut self.report);
        }
        Ok(())
    }

    /// Confirms the current batch with the control plane and the index listing,
    /// then deletes it (or counts it, in a dry run).
    async fn flush_batch(&mut self) -> Result<(), RemoteError> {
        let (Some(tenant), Some(timeline)) = (self.tenant.as_ref(), self.timeline.as_mut()) else {
            return Ok(());
        };
        if timeline.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut timeline.batch);
        let (tenant_id, timeline_id, walked_with) = (tenant.id, timeline.id, tenant.granted);
        let indexes_then = timeline.indexes.clone();
        let asked_now = match walked_with {
            Some(_) => self.oracle.latest_generation(tenant_id).await.ok().flatten(),
            None => None,
        };
        let indexes_now = self.list_indexes(tenant_id, timeline_id).await?;
        if let Err(keep) = confirm_batch(walked_with, asked_now, &indexes_then, &indexes_now) {
            self.kept(keep, batch.len() as u64);
            return Ok(());
        }
        let execute = self.options.purge.is_some_and(|p| p.execute);
        if execute {
            let keys: Vec<RemoteKey> = batch.iter().map(|(k, _)| k.clone()).collect();
            self.remote.delete_objects(&keys).await?;
        }
        if let Some(p) = self.report.purge.as_mut() {
            p.deleted += batch.len() as u64;
            p.deleted_bytes += batch.iter().map(|(_, size)| size).sum::<u64>();
        }
        Ok(())
    }
}
