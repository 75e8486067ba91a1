//! Throughput of the whole machine with an instant control plane and instant I/O,
//! next to the same keys pushed through a plain `Vec`, and the size of a deletion
//! list on disk per key. Run with:
//!
//! ```text
//! cargo test -p strata-core --release --lib deletion_queue::tests::bench -- --ignored --nocapture
//! ```

use super::*;

const KEYS: u32 = 200_000;
const KEYS_PER_PUSH: u32 = 50;

#[test]
#[ignore = "a measurement, not a check; run with --ignored --nocapture"]
#[allow(clippy::disallowed_types, clippy::disallowed_methods)] // a wall clock to measure
fn deletions_per_second() {
    let keys: Vec<RemoteKey> = (0..KEYS).map(|n| key(T1, n)).collect();

    let started = std::time::Instant::now();
    let mut plain: Vec<RemoteKey> = Vec::new();
    for chunk in keys.chunks(KEYS_PER_PUSH as usize) {
        plain.extend(chunk.iter().cloned());
    }
    let mut deleted = 0usize;
    for batch in plain.chunks(MAX_KEYS_PER_DELETE) {
        deleted += std::hint::black_box(batch).len();
    }
    let plain_secs = started.elapsed().as_secs_f64();
    assert_eq!(deleted, KEYS as usize);

    let config = DeletionQueueConfig::default();
    let mut h = Harness::new(config);
    let mut list_bytes = 0usize;
    let started = std::time::Instant::now();
    for chunk in keys.chunks(KEYS_PER_PUSH as usize) {
        h.q.handle_push(h.now, T1, TL, g(1), chunk.to_vec());
        drain(&mut h, &mut list_bytes);
    }
    h.q.handle_flush(h.now);
    drain(&mut h, &mut list_bytes);
    let machine_secs = started.elapsed().as_secs_f64();
    // Every list is written once (no cancels, nothing stale), so the lists hold
    // exactly the keys pushed.
    let list_keys = KEYS as usize;
    assert_eq!(h.deleted.len(), KEYS as usize);

    let rate = |secs: f64| f64::from(KEYS) / secs.max(1e-9);
    println!(
        "deletion queue: {KEYS} keys, pushes of {KEYS_PER_PUSH}, instant control plane and I/O"
    );
    println!("  machine:   {:>12.0} deletions/s ({machine_secs:.3} s)", rate(machine_secs));
    println!("  plain Vec: {:>12.0} deletions/s ({plain_secs:.3} s)", rate(plain_secs));
    println!(
        "  list on disk: {:.1} bytes/key ({list_bytes} bytes for {list_keys} keys)",
        list_bytes as f64 / list_keys as f64
    );
}

/// Carries out every effect at once, without the per-input invariant checks the
/// unit tests run (they would dominate the measurement).
fn drain(h: &mut Harness, list_bytes: &mut usize) {
    while let Some(effect) = h.q.poll_effect() {
        let now = h.now;
        match effect {
            DeletionEffect::WriteList { op, bytes, .. } => {
                *list_bytes += bytes.len();
                h.q.handle_completion(now, op, Ok(())).unwrap();
            }
            DeletionEffect::WriteHeader { op, .. } | DeletionEffect::RemoveList { op, .. } => {
                h.q.handle_completion(now, op, Ok(())).unwrap();
            }
            DeletionEffect::DeleteObjects { op, keys } => {
                h.deleted.extend(keys);
                h.q.handle_completion(now, op, Ok(())).unwrap();
            }
            DeletionEffect::Validate { op, tenants } => {
                let results = tenants.iter().map(|(t, _)| (*t, true)).collect();
                h.q.handle_validation(now, op, results).unwrap();
            }
            DeletionEffect::Report(_)
            | DeletionEffect::LsnValidated(_)
            | DeletionEffect::FlushDone { .. } => {}
        }
    }
}
