use super::*;
use proptest::prelude::*;

/// A deliberately different implementation: byte by byte, no slicing tricks.
fn naive(base: Option<&[u8]>, deltas: &[Vec<DeltaOp>]) -> Result<Vec<u8>, RedoError> {
    let mut v: Vec<u8> = base.map(|b| b.to_vec()).unwrap_or_default();
    let too_large = |len: usize| RedoError::ValueTooLarge { len, max: MAX_VALUE_BYTES };
    if v.len() > MAX_VALUE_BYTES {
        return Err(too_large(v.len()));
    }
    for ops in deltas {
        for op in ops {
            match op {
                DeltaOp::WriteAt { offset, bytes } => {
                    let end = *offset as usize + bytes.len();
                    if end > MAX_VALUE_BYTES {
                        return Err(too_large(end));
                    }
                    for (i, b) in bytes.iter().enumerate() {
                        let at = *offset as usize + i;
                        while v.len() <= at {
                            v.push(0);
                        }
                        v[at] = *b;
                    }
                    // A zero-length write past the end still zero-fills up to offset.
                    while v.len() < end {
                        v.push(0);
                    }
                }
                DeltaOp::Append(bytes) => {
                    if v.len() + bytes.len() > MAX_VALUE_BYTES {
                        return Err(too_large(v.len() + bytes.len()));
                    }
                    for b in bytes {
                        v.push(*b);
                    }
                }
                DeltaOp::Truncate(n) => {
                    while v.len() > *n as usize {
                        v.pop();
                    }
                }
                DeltaOp::Clear => v = Vec::new(),
            }
        }
    }
    Ok(v)
}

fn op() -> impl Strategy<Value = DeltaOp> {
    prop_oneof![
        4 => (0u32..9000, prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(offset, bytes)| DeltaOp::WriteAt { offset, bytes }),
        4 => prop::collection::vec(any::<u8>(), 0..2000).prop_map(DeltaOp::Append),
        2 => (0u32..9000).prop_map(DeltaOp::Truncate),
        1 => Just(DeltaOp::Clear),
    ]
}

fn request() -> impl Strategy<Value = RedoRequest> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..9000)),
        prop::collection::vec(prop::collection::vec(op(), 0..6), 0..8),
    )
        .prop_map(|(base, deltas)| RedoRequest { base, deltas })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn apply_matches_naive_model(req in request()) {
        prop_assert_eq!(req.execute(), naive(req.base.as_deref(), &req.deltas));
        if let Ok(v) = req.execute() {
            prop_assert!(v.len() <= MAX_VALUE_BYTES);
        }
    }

    #[test]
    fn request_encoding_round_trips(req in request()) {
        prop_assert_eq!(RedoRequest::decode(&req.encode()), Ok(req));
    }

    #[test]
    fn record_encoding_round_trips(ops in prop::collection::vec(op(), 0..6), image in prop::collection::vec(any::<u8>(), 0..100)) {
        for rec in [Record::Delta(ops.clone()), Record::Image(image.clone())] {
            prop_assert_eq!(Record::decode(&rec.encode()), Ok(rec.clone()));
            let json = serde_json::to_string(&rec).unwrap();
            prop_assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), rec);
        }
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = RedoRequest::decode(&bytes);
        let _ = Record::decode(&bytes);
        let mut prefixed = b"SRDO\x01".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = RedoRequest::decode(&prefixed);
    }
}

#[test]
fn each_op_does_what_the_doc_says() {
    let w = |offset, b: &[u8]| DeltaOp::WriteAt { offset, bytes: b.to_vec() };
    assert_eq!(apply(Some(b"abc"), &[&[w(1, b"XY")]]), Ok(b"aXY".to_vec()));
    assert_eq!(apply(Some(b"abc"), &[&[w(5, b"Z")]]), Ok(b"abc\0\0Z".to_vec()));
    assert_eq!(apply(None, &[&[DeltaOp::Append(b"hi".to_vec())]]), Ok(b"hi".to_vec()));
    assert_eq!(apply(Some(b"abcdef"), &[&[DeltaOp::Truncate(2)]]), Ok(b"ab".to_vec()));
    assert_eq!(apply(Some(b"ab"), &[&[DeltaOp::Truncate(9)]]), Ok(b"ab".to_vec()));
    assert_eq!(
        apply(Some(b"ab"), &[&[DeltaOp::Clear], &[DeltaOp::Append(b"c".to_vec())]]),
        Ok(b"c".to_vec())
    );
    assert_eq!(
        apply(None, &[&[w(8190, b"abc")]]),
        Err(RedoError::ValueTooLarge { len: 8193, max: MAX_VALUE_BYTES })
    );
    assert!(apply(Some(&[0; MAX_VALUE_BYTES]), &[]).is_ok());
    assert!(apply(Some(&[0; MAX_VALUE_BYTES + 1]), &[]).is_err());
}

#[test]
fn json_shape_is_documented() {
    let rec = IngestRecord {
        key: Key(42),
        lsn: Lsn(0x10),
        record: Record::Delta(vec![
            DeltaOp::WriteAt { offset: 2, bytes: vec![0xff] },
            DeltaOp::Append(vec![0]),
            DeltaOp::Truncate(3),
            DeltaOp::Clear,
        ]),
    };
    let json = serde_json::to_string(&rec).unwrap();
    assert_eq!(
        json,
        r#"{"key":"000000000000002A","lsn":"0/10","record":{"delta":[{"write_at":{"offset":2,"bytes":"ff"}},{"append":"00"},{"truncate":3},"clear"]}}"#
    );
    let image: Record = serde_json::from_str(r#"{"image":"0a0b"}"#).unwrap();
    assert_eq!(image, Record::Image(vec![10, 11]));
    assert!(serde_json::from_str::<Record>(r#"{"image":"zz"}"#).is_err());
}

#[test]
fn validate_refuses_oversized_records() {
    assert!(Record::Image(vec![0; MAX_VALUE_BYTES + 1]).validate().is_err());
    assert!(Record::Image(vec![0; MAX_VALUE_BYTES]).validate().is_ok());
    let w = DeltaOp::WriteAt { offset: u32::MAX, bytes: vec![1] };
    assert!(Record::Delta(vec![w]).validate().is_err());
}

#[test]
fn decode_errors_name_the_problem() {
    let err = RedoRequest::decode(b"XXXX\x01\x00\0\0\0\0").unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    let err = RedoRequest::decode(b"SRDO\x07\x00\0\0\0\0").unwrap_err();
    assert!(matches!(err, ParseError::UnsupportedVersion { version: 7, .. }), "{err}");
    let err = RedoRequest::decode(b"SRDO\x01\x01\0\0\0\x09ab").unwrap_err();
    assert!(matches!(err, ParseError::Truncated { .. }), "{err}");
}
