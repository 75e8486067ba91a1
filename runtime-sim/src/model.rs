//! The workload's model of what it sent and what the node acknowledged: every
//! record in LSN order, and the visible LSNs the node published. Pure, so it is
//! tested in both builds.
//!
//! S-VISIBLE, as the workload checks it: for every key, the value read at the
//! highest visible LSN the node ever published equals the model's value at that
//! LSN, after any sequence of crashes and restarts.

use std::collections::BTreeMap;
use strata_core::redo::{DeltaOp, IngestRecord, MAX_VALUE_BYTES, Record, apply};
use strata_core::{Key, Lsn};

#[derive(Debug, Default)]
pub struct Model {
    /// Every record generated, in LSN order (sent or not yet).
    records: Vec<IngestRecord>,
    /// Per key, indexes into `records`.
    by_key: BTreeMap<Key, Vec<usize>>,
    /// Highest LSN the node acknowledged as ingested.
    acked: Lsn,
    /// Highest visible `remote_consistent_lsn` the node published.
    visible: Lsn,
}

impl Model {
    /// Appends a record; its LSN must be above every earlier one.
    pub fn push(&mut self, record: IngestRecord) {
        assert!(
            self.records.last().is_none_or(|r| r.lsn < record.lsn),
            "workload bug: LSNs must increase"
        );
        self.by_key.entry(record.key).or_default().push(self.records.len());
        self.records.push(record);
    }

    pub fn last_lsn(&self) -> Lsn {
        self.records.last().map_or(Lsn::ZERO, |r| r.lsn)
    }

    pub fn acked(&mut self, lsn: Lsn) {
        self.acked = self.acked.max(lsn);
    }

    pub fn acked_lsn(&self) -> Lsn {
        self.acked
    }

    /// Records a published visible LSN. A visible LSN above what was acknowledged
    /// would mean the node published something it never confirmed.
    pub fn published_visible(&mut self, lsn: Lsn) -> Result<(), String> {
        if lsn > self.last_lsn() {
            return Err(format!(
                "S-PROJECTED: visible {lsn} is above anything sent ({})",
                self.last_lsn()
            ));
        }
        self.visible = self.visible.max(lsn);
        Ok(())
    }

    pub fn visible_lsn(&self) -> Lsn {
        self.visible
    }

    /// The records after `lsn`, to re-send after a restart.
    pub fn records_after(&self, lsn: Lsn) -> &[IngestRecord] {
        let start = self.records.partition_point(|r| r.lsn <= lsn);
        &self.records[start..]
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.by_key.keys()
    }

    /// Whether `record`, on top of every record so far, makes a value redo refuses
    /// (one past `MAX_VALUE_BYTES`).
    pub fn redo_refuses(&self, record: &IngestRecord) -> bool {
        let base = self.value_at(record.key, self.last_lsn());
        match &record.record {
            Record::Image(bytes) => bytes.len() > MAX_VALUE_BYTES,
            Record::Delta(ops) => apply(base.as_deref(), &[ops.as_slice()]).is_err(),
        }
    }

    /// The value of `key` as of `lsn`: `None` if no record of it is at or below.
    pub fn value_at(&self, key: Key, lsn: Lsn) -> Option<Vec<u8>> {
        let idx = self.by_key.get(&key)?;
        let upto: Vec<&IngestRecord> =
            idx.iter().map(|i| &self.records[*i]).filter(|r| r.lsn <= lsn).collect();
        if upto.is_empty() {
            return None;
        }
        let image_at = upto.iter().rposition(|r| matches!(r.record, Record::Image(_)));
        let (base, rest) = match image_at {
            Some(i) => match &upto[i].record {
                Record::Image(bytes) => (Some(bytes.as_slice()), &upto[i + 1..]),
                Record::Delta(_) => unreachable!("rposition found an image"),
            },
            None => (None, &upto[..]),
        };
        let deltas: Vec<&[DeltaOp]> = rest
            .iter()
            .filter_map(|r| match &r.record {
                Record::Delta(ops) => Some(ops.as_slice()),
                Record::Image(_) => None,
            })
            .collect();
        apply(base, &deltas).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: u64, lsn: u64, record: Record) -> IngestRecord {
        IngestRecord { key: Key(key), lsn: Lsn(lsn), record }
    }

    #[test]
    fn values_follow_images_and_deltas() {
        let mut m = Model::default();
        m.push(rec(1, 10, Record::Image(b"ab".to_vec())));
        m.push(rec(2, 20, Record::Delta(vec![DeltaOp::Append(b"x".to_vec())])));
        m.push(rec(1, 30, Record::Delta(vec![DeltaOp::Append(b"c".to_vec())])));
        m.push(rec(1, 40, Record::Image(b"z".to_vec())));
        assert_eq!(m.value_at(Key(1), Lsn(9)), None);
        assert_eq!(m.value_at(Key(1), Lsn(10)).unwrap(), b"ab");
        assert_eq!(m.value_at(Key(1), Lsn(35)).unwrap(), b"abc");
        assert_eq!(m.value_at(Key(1), Lsn(40)).unwrap(), b"z");
        assert_eq!(m.value_at(Key(2), Lsn(40)).unwrap(), b"x");
        assert_eq!(m.records_after(Lsn(20)).len(), 2);
        assert!(m.published_visible(Lsn(41)).is_err());
        assert!(m.published_visible(Lsn(30)).is_ok());
        assert_eq!(m.visible_lsn(), Lsn(30));
    }
}
