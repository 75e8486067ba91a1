//! Start-up: rebuild the queue from `deletion/` and the re-attach answer.

use super::list::{IoState, List, Stage};
use super::*;

/// A queue holding nothing, with the sequence numbers given.
pub(super) fn empty(
    config: DeletionQueueConfig,
    header_durable: u64,
    next_seq: u64,
) -> DeletionQueue {
    DeletionQueue {
        config,
        lists: BTreeMap::new(),
        next_seq,
        lsn_waiting: Vec::new(),
        validation: None,
        validation_retry: None,
        lsn_pushed: 0,
        exec_queue: VecDeque::new(),
        batches: BTreeMap::new(),
        next_batch: 0,
        header_durable,
        header_write: IoState::Idle,
        header_failures: 0,
        flushes: Vec::new(),
        next_flush: 0,
        ops: BTreeMap::new(),
        op_ids: OpIds::default(),
        effects: VecDeque::new(),
        stats: DeletionQueueStats::default(),
    }
}

pub(super) fn recover(
    config: DeletionQueueConfig,
    header: Option<DeletionHeader>,
    mut lists: Vec<DeletionList>,
    attached: &BTreeMap<TenantId, ReAttachedTenant>,
    now: Instant,
) -> DeletionQueue {
    let header_durable = header.map_or(0, |h| h.validated_sequence);
    lists.sort_by_key(|l| l.sequence);
    lists.dedup_by_key(|l| l.sequence);
    let next_seq = lists.last().map_or(0, |l| l.sequence).max(header_durable) + 1;
    let mut queue = empty(config, header_durable, next_seq);
    // Recovered lists count as accepted now: their validation delay runs from here.
    let start = now;
    for mut content in lists {
        let seq = content.sequence;
        if content.validated || seq <= header_durable {
            // Validated before the crash: validation then was after the push. Only a
            // tenant that may delete now (`attached`: loading AttachedSingle) keeps
            // its keys; a node deletes nothing for a tenant it holds in any other
            // mode, or no longer holds (S-SINGLE-WRITER): those objects leak.
            content.validated = true;
            let before = content.len();
            content.tenants.retain(|tenant, _| attached.contains_key(tenant));
            let dropped = (before - content.len()) as u64;
            queue.stats.keys_dropped_at_recovery_total += dropped;
            let mut list = List::recovered(content, Stage::Sealed, start);
            if dropped > 0 {
                list.version += 1;
            }
            queue.lists.insert(seq, list);
            queue.start_executing(seq);
            continue;
        }
        let mut changed = false;
        let mut dropped_keys = 0u64;
        content.tenants.retain(|tenant, deletions| {
            let keep = match attached.get(tenant) {
                Some(a) if a.generation == deletions.generation => true,
                Some(a)
                    if a.previous_was_own
                        && a.generation.previous() == Some(deletions.generation) =>
                {
                    // This node held both generations back to back: nobody else
                    // can have deleted or referenced anything in between.
                    deletions.generation = a.generation;
                    changed = true;
                    true
                }
                _ => false,
            };
            if !keep {
                dropped_keys += deletions.timelines.values().map(|n| n.len() as u64).sum::<u64>();
                changed = true;
            }
            keep
        });
        queue.stats.keys_dropped_at_recovery_total += dropped_keys;
        let mut list = List::recovered(content, Stage::Sealed, start);
        if changed {
            list.version += 1;
        }
        let empty = list.content.is_empty();
        queue.lists.insert(seq, list);
        if empty {
            queue.lists.get_mut(&seq).expect("just inserted").stage =
                Stage::Removing { remove: IoState::Idle, failures: 0 };
        }
    }
    queue.pump();
    queue
}
