//! Layer files (`LayerFile::parse`): no input panics the reader; whatever it accepts
//! can be looked up without a panic, and its records write back (with the writer,
//! `layer_file::encode`) to a file that reads to the same records.
//!
//! The first byte picks how the rest becomes a file, so the fuzzer gets past the
//! checksums and the exact lengths:
//! - 0: the bytes as they are (the name is taken from the header when it names one);
//! - 1: the bytes with every checksum the header's layout implies fixed up;
//! - 2: a valid file written from records drawn from the bytes (which must read back
//!   exactly), then corrupted at drawn positions, its checksums fixed or not.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use strata_core::layer_file::{self, HEADER_SIZE, INDEX_ENTRY_SIZE, LayerFile, file_crc32c};
use strata_core::layer_name::{KeyRange, LsnRange};
use strata_core::redo::{DeltaOp, Record};
use strata_core::{Key, LayerName, Lsn};

fn check(name: &LayerName, bytes: Vec<u8>) {
    let Ok(file) = LayerFile::parse(name, bytes, None) else { return };
    for e in file.index() {
        let _ = file.records(e.key, Lsn(0)..Lsn::MAX);
        let _ = file.records(e.key, e.lsn..e.lsn);
    }
    let Ok(records) = file.all_records() else { return };
    let again = layer_file::encode(name, records.iter().map(|(k, l, r)| (*k, *l, r)))
        .expect("what the reader accepts, the writer can write");
    let reread = LayerFile::parse(name, again.bytes, Some(again.crc32c))
        .expect("the writer's output reads back");
    assert_eq!(reread.all_records().expect("decodes"), records);
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

/// The name the header describes, or a fixed one.
fn name_from_header(b: &[u8]) -> LayerName {
    let fallback = LayerName::Image {
        keys: KeyRange::new(Key(0), Key(0x100)).expect("non-empty"),
        lsn: Lsn(0x10),
    };
    if b.len() < HEADER_SIZE {
        return fallback;
    }
    let Ok(keys) = KeyRange::new(Key(be_u64(b, 16)), Key(be_u64(b, 24))) else { return fallback };
    let (l0, l1) = (Lsn(be_u64(b, 32)), Lsn(be_u64(b, 40)));
    match b[10] {
        1 => LayerName::Image { keys, lsn: l0 },
        _ => LsnRange::new(l0, l1).map(|lsns| LayerName::Delta { keys, lsns }).unwrap_or(fallback),
    }
}

fn put_crc(b: &mut [u8], covered: std::ops::Range<usize>, at: usize) {
    let crc = file_crc32c(&b[covered]);
    b[at..at + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Recomputes every checksum where the header's layout puts one.
fn fix_checksums(b: &mut [u8]) {
    if b.len() < HEADER_SIZE + 4 {
        return;
    }
    put_crc(b, 0..60, 60);
    let (block_count, index_offset, entries) =
        (be_u32(b, 12), be_u64(b, 48) as usize, be_u32(b, 56) as usize);
    let mut at = HEADER_SIZE;
    for _ in 0..block_count {
        if at + 8 > b.len() {
            break;
        }
        let end = at + 4 + be_u32(b, at) as usize;
        if end + 4 > b.len() - 4 {
            break;
        }
        put_crc(b, at + 4..end, end);
        at = end + 4;
    }
    if let Some(index_end) =
        entries.checked_mul(INDEX_ENTRY_SIZE).and_then(|n| n.checked_add(index_offset))
        && index_end.saturating_add(4) <= b.len() - 4
    {
        put_crc(b, index_offset..index_end, index_end);
    }
    let body = b.len() - 4;
    put_crc(b, 0..body, body);
}

fn record(u: &mut Unstructured, image: bool) -> Result<Record> {
    let bytes = |u: &mut Unstructured| -> Result<Vec<u8>> {
        Ok(if u.arbitrary::<bool>()? {
            vec![u.arbitrary::<u8>()?; usize::from(u.arbitrary::<u16>()? % 4000)]
        } else {
            u.arbitrary::<Vec<u8>>()?
        })
    };
    if image || u.arbitrary::<bool>()? {
        return Ok(Record::Image(bytes(u)?));
    }
    let mut ops = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        ops.push(match u.int_in_range(0..=3)? {
            0 => DeltaOp::WriteAt { offset: u.arbitrary::<u16>()?.into(), bytes: bytes(u)? },
            1 => DeltaOp::Append(bytes(u)?),
            2 => DeltaOp::Truncate(u.arbitrary()?),
            _ => DeltaOp::Clear,
        });
    }
    Ok(Record::Delta(ops))
}

/// A valid file from drawn records, then drawn corruption.
fn built(u: &mut Unstructured) -> Result<()> {
    let k0 = u64::from(u.arbitrary::<u8>()?);
    let keys =
        KeyRange::new(Key(k0), Key(k0 + 1 + u64::from(u.arbitrary::<u8>()?))).expect("k0 < k1");
    let l0 = u64::from(u.arbitrary::<u8>()?);
    let image = u.arbitrary::<bool>()?;
    let name = if image {
        LayerName::Image { keys, lsn: Lsn(l0) }
    } else {
        let lsns =
            LsnRange::new(Lsn(l0), Lsn(l0 + 1 + u64::from(u.arbitrary::<u8>()?))).expect("l0 < l1");
        LayerName::Delta { keys, lsns }
    };
    let mut records = Vec::new();
    for _ in 0..u.int_in_range(0..=12)? {
        let key = Key(keys.start.0 + u64::from(u.arbitrary::<u8>()?) % (keys.end.0 - keys.start.0));
        let lsn = match &name {
            LayerName::Image { lsn, .. } => *lsn,
            LayerName::Delta { lsns, .. } => {
                Lsn(lsns.start.0 + u64::from(u.arbitrary::<u8>()?) % (lsns.end.0 - lsns.start.0))
            }
        };
        records.push((key, lsn, record(u, image)?));
    }
    records.sort_by_key(|(k, l, _)| (*k, *l));
    records.dedup_by_key(|(k, l, _)| (*k, *l));
    let enc = layer_file::encode(&name, records.iter().map(|(k, l, r)| (*k, *l, r)))
        .expect("sorted records inside the name's ranges encode");
    let file = LayerFile::parse(&name, enc.bytes.clone(), Some(enc.crc32c)).expect("reads back");
    assert_eq!(file.all_records().expect("decodes"), records);
    let mut bytes = enc.bytes;
    for _ in 0..u.int_in_range(0..=8)? {
        let at = usize::from(u.arbitrary::<u16>()?) % bytes.len();
        bytes[at] ^= u.arbitrary::<u8>()?.max(1);
    }
    if u.arbitrary::<bool>()? {
        let keep = bytes.len() - usize::from(u.arbitrary::<u16>()?) % bytes.len();
        bytes.truncate(keep);
    }
    if u.arbitrary::<bool>()? {
        fix_checksums(&mut bytes);
    }
    check(&name, bytes);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => check(&name_from_header(rest), rest.to_vec()),
        1 => {
            let mut bytes = rest.to_vec();
            fix_checksums(&mut bytes);
            check(&name_from_header(&bytes), bytes);
        }
        _ => {
            let _ = built(&mut Unstructured::new(rest));
        }
    }
});
