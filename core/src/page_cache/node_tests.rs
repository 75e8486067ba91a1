//! The page cache inside a node: an in-memory world that executes the node's I/O
//! when told (so reads can be made concurrent), with `check_invariants` after every
//! input. Also the page-cache benchmark (ignored; prints numbers).

use crate::id::{NodeId, OpId, TenantId, TimelineId};
use crate::key::Key;
use crate::lsn::Lsn;
use crate::node::api::{ApiError, Request, RequestId, Response};
use crate::node::io::Io;
use crate::node::{Node, NodeConfig, NodeEffect, NodePhase};
use crate::page_cache::{ContentKind, PageCacheConfig, RequestKind};
use crate::redo::{DeltaOp, IngestRecord, Record};
use crate::time::{Instant, WallTime};
use crate::timeline::Residence;
use camino::Utf8PathBuf;
use std::collections::{BTreeMap, VecDeque};

use crate::node::tests::World;

/// What the harness saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    DiskRead(Utf8PathBuf),
    RemoteGet,
    Redo,
    Other,
}

struct Harness {
    world: World,
    node: Node,
    now: Instant,
    next_req: u64,
    replies: BTreeMap<RequestId, Result<Response, ApiError>>,
    /// Io effects not yet executed (when `hold` is set).
    held: VecDeque<(OpId, Io)>,
    hold: bool,
    seen: Vec<Seen>,
    check: bool,
}

const T: TenantId = TenantId([1; 16]);
const TL: TimelineId = TimelineId([2; 16]);

fn config(capacity_bytes: u64) -> NodeConfig {
    let mut c = NodeConfig::new(NodeId(1));
    c.timeline.checkpoint_distance_bytes = 512;
    c.page_cache = PageCacheConfig { capacity_bytes };
    c
}

impl Harness {
    fn start(config: NodeConfig) -> Harness {
        let now = Instant(1_000);
        let node = Node::start(config, now, WallTime(0), Vec::new());
        let mut h = Harness {
            world: World::default(),
            node,
            now,
            next_req: 0,
            replies: BTreeMap::new(),
            held: VecDeque::new(),
            hold: false,
            seen: Vec::new(),
            check: true,
        };
        h.settle();
        assert_eq!(h.node.phase(), &NodePhase::Active);
        h
    }

    fn run_io(&mut self, op: OpId, io: Io) {
        self.seen.push(match &io {
            Io::DiskRead { path } => Seen::DiskRead(path.clone()),
            Io::RemoteGet { .. } | Io::RemoteGetFile { .. } => Seen::RemoteGet,
            Io::Redo { .. } => Seen::Redo,
            _ => Seen::Other,
        });
        let result = self.world.execute(io);
        self.node.handle_io(self.now, WallTime(self.now.0), op, result);
    }

    fn settle(&mut self) {
        for _ in 0..100_000 {
            if self.check {
                self.node.check_invariants();
            }
            match self.node.poll_effect() {
                Some(NodeEffect::Io { op, io }) if self.hold => self.held.push_back((op, io)),
                Some(NodeEffect::Io { op, io }) => self.run_io(op, io),
                Some(NodeEffect::Reply { req, result }) => {
                    self.replies.insert(req, result);
                }
                Some(NodeEffect::Stopped { .. }) => {}
                None => return,
            }
        }
        panic!("node did not settle");
    }

    fn release(&mut self) {
        self.hold = false;
        while let Some((op, io)) = self.held.pop_front() {
            self.run_io(op, io);
            self.settle();
        }
    }

    fn send(&mut self, request: Request) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.node.handle_request(self.now, WallTime(self.now.0), req, request);
        self.settle();
        req
    }

    fn call(&mut self, request: Request) -> Result<Response, ApiError> {
        let req = self.send(request);
        for _ in 0..1_000 {
            if let Some(r) = self.replies.remove(&req) {
                return r;
            }
            if !self.tick(60_000) {
                break;
            }
        }
        panic!("no reply to {req:?}");
    }

    fn tick(&mut self, max_ms: u64) -> bool {
        match self.node.poll_timeout() {
            Some(at) if at.millis_since(self.now) <= max_ms => {
                self.now = self.now.max(at);
                self.node.handle_timeout(self.now, WallTime(self.now.0));
                self.settle();
                true
            }
            _ => false,
        }
    }

    fn read(&mut self, key: u64, lsn: Lsn) -> Option<Vec<u8>> {
        match self.call(Request::Read { tenant: T, timeline: TL, key: Key(key), lsn }) {
            Ok(Response::Value { value, .. }) => value,
            other => panic!("read: {other:?}"),
        }
    }

    fn layer_reads(&self) -> usize {
        self.seen
            .iter()
            .filter(|s| matches!(s, Seen::DiskRead(p) if p.as_str().contains("__")))
            .count()
    }
}

/// Keys 0..7; every fifth record an image, the rest appends: deep delta chains.
fn records(from: u64, n: u64) -> Vec<IngestRecord> {
    (0..n)
        .map(|i| {
            let lsn = Lsn(from + i * 8);
            let record = if i % 5 == 0 {
                Record::Image(vec![i as u8; 40])
            } else {
                Record::Delta(vec![DeltaOp::Append(vec![i as u8; 3])])
            };
            IngestRecord { key: Key(i % 7), lsn, record }
        })
        .collect()
}

/// A node with one timeline holding `n` records flushed to layer files; returns the
/// last LSN and the expected values (read with the cache cold, before anything).
fn loaded(config: NodeConfig, n: u64) -> (Harness, Lsn) {
    let mut h = Harness::start(config);
    h.call(Request::CreateTenant { tenant: T }).unwrap();
    h.call(Request::CreateTimeline { tenant: T, timeline: TL }).unwrap();
    let batch = records(16, n);
    let last = batch.last().unwrap().lsn;
    h.call(Request::Ingest { tenant: T, timeline: TL, records: batch }).unwrap();
    // Freeze and flush what is still in memory, so reads go to layer files.
    for _ in 0..100 {
        if !h.tick(120_000) {
            break;
        }
        let tl = &h.node.tenants[&T].timelines[&TL].timeline;
        if tl.in_memory_bytes() == 0 && tl.disk_consistent_lsn() == last {
            break;
        }
    }
    assert_eq!(h.node.tenants[&T].timelines[&TL].timeline.in_memory_bytes(), 0);
    (h, last)
}

/// The model: the value of `key` at `lsn` from the records alone.
fn model(n: u64, key: u64, lsn: Lsn) -> Option<Vec<u8>> {
    let mut value: Option<Vec<u8>> = None;
    for r in records(16, n) {
        if r.key != Key(key) || r.lsn > lsn {
            continue;
        }
        match r.record {
            Record::Image(v) => value = Some(v),
            Record::Delta(ops) => {
                let v = value.get_or_insert_with(Vec::new);
                for op in ops {
                    if let DeltaOp::Append(b) = op {
                        v.extend_from_slice(&b);
                    }
                }
            }
        }
    }
    value
}

#[test]
fn repeated_reads_are_answered_from_the_cache_without_io() {
    let (mut h, last) = loaded(config(64 * 1024 * 1024), 200);
    // Between image LSNs, so reads need redo.
    let lsns = [Lsn(16 + 8 * 123), last];
    let before_reads = h.layer_reads();
    for lsn in lsns {
        for k in 0..7 {
            assert_eq!(h.read(k, lsn), model(200, k, lsn), "key {k} at {lsn}");
        }
    }
    let cold = h.layer_reads() - before_reads;
    let redos = h.seen.iter().filter(|s| **s == Seen::Redo).count();
    assert!(cold > 0, "cold reads read no layer file");
    assert!(redos > 0, "no read needed redo");
    for lsn in lsns {
        for k in 0..7 {
            assert_eq!(h.read(k, lsn), model(200, k, lsn), "key {k} at {lsn}");
        }
    }
    assert_eq!(h.layer_reads() - before_reads, cold, "a warm read went to disk");
    assert_eq!(h.seen.iter().filter(|s| **s == Seen::Redo).count(), redos, "a warm redo ran");
    let s = h.node.page_cache_stats();
    assert!(s.get(RequestKind::Get, ContentKind::LayerFile).hits >= cold as u64);
    assert!(s.get(RequestKind::Get, ContentKind::Value).hits >= 1);
    assert!(s.bytes > 0 && s.entries > 0);
}

/// S16: a cache smaller than one layer file still lets every read finish, each
/// with the bytes its own miss read.
#[test]
fn reads_make_progress_with_a_cache_smaller_than_one_entry() {
    let (mut h, last) = loaded(config(16), 200);
    for lsn in [Lsn(16 + 8 * 50), Lsn(16 + 8 * 120), last] {
        for k in 0..7 {
            assert_eq!(h.read(k, lsn), model(200, k, lsn), "key {k} at {lsn}");
        }
    }
    let s = h.node.page_cache_stats();
    assert_eq!((s.bytes, s.entries), (0, 0));
    assert_eq!(s.get(RequestKind::Get, ContentKind::LayerFile).hits, 0);
    assert!(s.get(RequestKind::Get, ContentKind::LayerFile).misses > 0);
}

/// Concurrent reads needing the same layer file share one disk read.
#[test]
fn concurrent_misses_for_one_layer_share_one_read() {
    let (mut h, last) = loaded(config(64 * 1024 * 1024), 200);
    let before = h.layer_reads();
    h.hold = true;
    // The same key at the same LSN, three times: the same layers, in the same order.
    let reqs: Vec<RequestId> = (0..3)
        .map(|_| h.send(Request::Read { tenant: T, timeline: TL, key: Key(3), lsn: last }))
        .collect();
    let held_reads = h.held.iter().filter(|(_, io)| matches!(io, Io::DiskRead { .. })).count();
    assert_eq!(held_reads, 1, "three waiting reads issued {held_reads} disk reads");
    assert!(h.node.page_cache_stats().coalesced >= 2);
    h.release();
    for req in reqs {
        match h.replies.remove(&req) {
            Some(Ok(Response::Value { value, .. })) => assert_eq!(value, model(200, 3, last)),
            other => panic!("{other:?}"),
        }
    }
    // Each layer was read from disk once for all three.
    let layers_needed = h.layer_reads() - before;
    h.read(3, last);
    assert_eq!(h.layer_reads() - before, layers_needed);
}

/// An evicted layer's bytes leave the cache; after the download the read goes to
/// the new local file, not to what was cached before.
#[test]
fn an_evicted_then_downloaded_layer_is_read_fresh() {
    let mut c = config(64 * 1024 * 1024);
    c.timeline.eviction_idle_ms = 10_000;
    let (mut h, last) = loaded(c, 200);
    // Let the uploads finish, so layers become evictable.
    for _ in 0..20 {
        h.tick(1_000);
    }
    let expected = model(200, 2, last);
    assert_eq!(h.read(2, last), expected);
    let cached: Vec<_> = h.node.tenants[&T].timelines[&TL]
        .timeline
        .layers()
        .filter(|l| {
            h.node.page_cache().contains_layer(&super::LayerKey {
                tenant: T,
                timeline: TL,
                name: l.name.clone(),
            })
        })
        .map(|l| l.name)
        .collect();
    assert!(!cached.is_empty(), "nothing cached after a read");
    // Idle: every layer is evicted, and so is its cached copy.
    h.now = h.now.plus_millis(20_000);
    h.node.handle_timeout(h.now, WallTime(h.now.0));
    h.settle();
    let timeline = &h.node.tenants[&T].timelines[&TL].timeline;
    for name in &cached {
        assert!(
            timeline.layer(name).unwrap().residence != Residence::Resident,
            "{name} not evicted"
        );
        let key = super::LayerKey { tenant: T, timeline: TL, name: name.clone() };
        assert!(!h.node.page_cache().contains_layer(&key), "{name} evicted but still cached");
    }
    let before = h.seen.len();
    assert_eq!(h.read(2, last), expected);
    let after: Vec<_> = h.seen[before..].to_vec();
    let first_get = after.iter().position(|s| *s == Seen::RemoteGet).expect("no download");
    assert!(
        after[first_get..]
            .iter()
            .any(|s| matches!(s, Seen::DiskRead(p) if p.as_str().contains("__"))),
        "the re-downloaded layer was not read from its new file: {after:?}"
    );
}

/// Gets per second with the page cache on (64 MiB) and off (capacity 0) on a
/// repeated read workload, through the node and this in-memory world (so a miss
/// costs a map lookup and a copy, or a redo: on a real disk and a walredo process
/// the difference is larger). Prints numbers; asserts only that both runs return
/// the same values.
///
/// Run: `cargo test -p strata-core --lib --release page_cache::node_tests::bench -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: prints numbers"]
#[expect(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
#[expect(clippy::disallowed_types, reason = "a benchmark measures wall time")]
fn bench_gets_with_and_without_the_page_cache() {
    const RECORDS: u64 = 2_000;
    const ROUNDS: usize = 20;
    let lsns: Vec<Lsn> = (1..=8).map(|i| Lsn(16 + 8 * (RECORDS * i / 8 - 3))).collect();
    let mut results = Vec::new();
    let runs = [("cache off (0 bytes)", 0), ("cache on (64 MiB)", 64 * 1024 * 1024)];
    for (label, capacity) in runs {
        let (mut h, _) = loaded(config(capacity), RECORDS);
        h.check = false;
        let mut values = Vec::new();
        // One untimed round warms the cache (and the allocator).
        for lsn in &lsns {
            for k in 0..7 {
                h.read(k, *lsn);
            }
        }
        let seen_before = h.seen.len();
        let start = std::time::Instant::now();
        for _ in 0..ROUNDS {
            for lsn in &lsns {
                for k in 0..7 {
                    values.push(h.read(k, *lsn));
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let gets = values.len() as f64;
        let io = &h.seen[seen_before..];
        let disk_reads = io.iter().filter(|s| matches!(s, Seen::DiskRead(_))).count() as f64;
        let redos = io.iter().filter(|s| **s == Seen::Redo).count() as f64;
        let s = h.node.page_cache_stats();
        let ratio = |c: ContentKind| {
            let hm = s.get(RequestKind::Get, c);
            hm.hits as f64 / (hm.hits + hm.misses).max(1) as f64
        };
        println!(
            "page cache {label:<20} {:>8.0} gets/s  per get: {:.2} disk reads, {:.2} redos  hit ratio: layer files {:.3}, values {:.3}  ({} bytes in {} entries)",
            gets / secs,
            disk_reads / gets,
            redos / gets,
            ratio(ContentKind::LayerFile),
            ratio(ContentKind::Value),
            s.bytes,
            s.entries
        );
        results.push((gets / secs, values));
    }
    assert_eq!(results[0].1, results[1].1, "the cache changed an answer");
    println!("page cache speed-up (on / off): {:.2}x", results[1].0 / results[0].0);
}
