//! Shared strategies and fixed sample values.

use proptest::prelude::*;
use strata_core::deletion_list::{
    DELETION_LIST_VERSION, DeletionHeader, DeletionList, TenantDeletions,
};
use strata_core::index_part::{IndexPart, IndexVersion, LayerMeta};
use strata_core::layer_name::{KeyRange, LsnRange};
use strata_core::location_conf::{LocationConf, LocationMode, TOML_INT_MAX, TenantConfOverrides};
use strata_core::metadata::TimelineMetadata;
use strata_core::{Generation, Key, LayerName, Lsn, TenantId, TimelineId, WallTime};

pub const TENANT: TenantId = TenantId([
    0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88, 0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x00,
]);
pub const TIMELINE: TimelineId = TimelineId([
    0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
]);
pub const ANCESTOR: TimelineId = TimelineId([0x0a; 16]);

pub fn generation(n: u32) -> Generation {
    Generation::new(n).expect("test generations are >= 1")
}

pub fn delta(k0: u64, k1: u64, l0: u64, l1: u64) -> LayerName {
    LayerName::Delta {
        keys: KeyRange::new(Key(k0), Key(k1)).expect("valid key range"),
        lsns: LsnRange::new(Lsn(l0), Lsn(l1)).expect("valid lsn range"),
    }
}

pub fn image(k0: u64, k1: u64, lsn: u64) -> LayerName {
    LayerName::Image {
        keys: KeyRange::new(Key(k0), Key(k1)).expect("valid key range"),
        lsn: Lsn(lsn),
    }
}

pub fn sample_metadata() -> TimelineMetadata {
    TimelineMetadata {
        disk_consistent_lsn: Lsn(0x0000_0001_0200_0028),
        gc_cutoff_lsn: Lsn(0x0000_0000_0169_0000),
        initdb_lsn: Lsn(0x0000_0000_0149_6A10),
        ancestor: Some((ANCESTOR, Lsn(0x0000_0000_0149_6A10))),
    }
}

pub fn sample_index_part() -> IndexPart {
    let mut index = IndexPart::empty(sample_metadata());
    index.seq = 7;
    index.layer_metadata.insert(
        image(0, u64::MAX, 0x0149_6A10),
        LayerMeta { file_size: 8_192_000, generation: generation(2), crc32c: 0x1234_abcd },
    );
    index.layer_metadata.insert(
        delta(0, u64::MAX, 0x0149_6A10, 0x0000_0001_0200_0028),
        LayerMeta { file_size: 33_554_432, generation: generation(3), crc32c: 0xfeed_f00d },
    );
    index
}

pub fn sample_deletion_list() -> DeletionList {
    let mut list = DeletionList::new(42);
    let mut tenant = TenantDeletions { generation: generation(3), timelines: Default::default() };
    tenant.timelines.insert(
        TIMELINE,
        vec![
            delta(0, u64::MAX, 0x0149_6A10, 0x0200_0028).remote_file_name(generation(2)),
            image(0, u64::MAX, 0x0149_6A10).remote_file_name(generation(3)),
        ],
    );
    list.tenants.insert(TENANT, tenant);
    list
}

// ---- strategies ----

pub fn arb_generation() -> impl Strategy<Value = Generation> {
    (1..=u32::MAX).prop_map(generation)
}

pub fn arb_tenant() -> impl Strategy<Value = TenantId> {
    any::<[u8; 16]>().prop_map(TenantId)
}

pub fn arb_timeline() -> impl Strategy<Value = TimelineId> {
    any::<[u8; 16]>().prop_map(TimelineId)
}

/// Two different numbers, smaller first.
fn ordered_pair() -> impl Strategy<Value = (u64, u64)> {
    (any::<u64>(), any::<u64>())
        .prop_filter("start and end differ", |(a, b)| a != b)
        .prop_map(|(a, b)| (a.min(b), a.max(b)))
}

pub fn arb_layer_name() -> impl Strategy<Value = LayerName> {
    prop_oneof![
        (ordered_pair(), ordered_pair()).prop_map(|((k0, k1), (l0, l1))| delta(k0, k1, l0, l1)),
        (ordered_pair(), any::<u64>()).prop_map(|((k0, k1), lsn)| image(k0, k1, lsn)),
    ]
}

pub fn arb_metadata() -> impl Strategy<Value = TimelineMetadata> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of((any::<[u8; 16]>(), any::<u64>())),
    )
        .prop_map(|(d, g, i, anc)| TimelineMetadata {
            disk_consistent_lsn: Lsn(d),
            gc_cutoff_lsn: Lsn(g),
            initdb_lsn: Lsn(i),
            ancestor: anc.map(|(id, lsn)| (TimelineId(id), Lsn(lsn))),
        })
}

pub fn arb_layer_meta() -> impl Strategy<Value = LayerMeta> {
    (any::<u64>(), arb_generation(), any::<u32>())
        .prop_map(|(file_size, generation, crc32c)| LayerMeta { file_size, generation, crc32c })
}

pub fn arb_index_part() -> impl Strategy<Value = IndexPart> {
    (
        any::<u64>(),
        proptest::collection::btree_map(arb_layer_name(), arb_layer_meta(), 0..6),
        arb_metadata(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(seq, layers, metadata, deleted_at)| IndexPart {
            seq,
            // A tombstone references no layers.
            layer_metadata: if deleted_at.is_some() { Default::default() } else { layers },
            disk_consistent_lsn: metadata.disk_consistent_lsn,
            metadata,
            deleted_at: deleted_at.map(WallTime),
        })
}

pub fn arb_index_version() -> impl Strategy<Value = IndexVersion> {
    (arb_generation(), any::<u64>()).prop_map(|(generation, seq)| IndexVersion { generation, seq })
}

pub fn arb_location_mode() -> impl Strategy<Value = LocationMode> {
    prop_oneof![
        arb_generation().prop_map(|generation| LocationMode::AttachedSingle { generation }),
        arb_generation().prop_map(|generation| LocationMode::AttachedMulti { generation }),
        arb_generation().prop_map(|generation| LocationMode::AttachedStale { generation }),
        any::<bool>().prop_map(|warm| LocationMode::Secondary { warm }),
    ]
}

pub fn arb_tenant_conf() -> impl Strategy<Value = TenantConfOverrides> {
    use proptest::option::of;
    // TOML integers stop at i64::MAX; above it the writer saturates (tested apart).
    let int = || of(0..=TOML_INT_MAX);
    (int(), int(), of(any::<u32>()), int(), int()).prop_map(|(a, b, c, d, e)| TenantConfOverrides {
        checkpoint_distance_bytes: a,
        checkpoint_timeout_ms: b,
        compaction_threshold_layers: c,
        gc_horizon_bytes: d,
        pitr_interval_ms: e,
    })
}

pub fn arb_location_conf() -> impl Strategy<Value = LocationConf> {
    (arb_location_mode(), arb_tenant_conf())
        .prop_map(|(mode, tenant_conf)| LocationConf { mode, tenant_conf })
}

pub fn arb_deletion_list() -> impl Strategy<Value = DeletionList> {
    let timelines = proptest::collection::btree_map(
        arb_timeline(),
        proptest::collection::vec(
            "[^/]{1,40}".prop_filter("one plain component", |s| s != "." && s != ".."),
            0..4,
        ),
        0..3,
    );
    let tenants = proptest::collection::btree_map(
        arb_tenant(),
        (arb_generation(), timelines)
            .prop_map(|(generation, timelines)| TenantDeletions { generation, timelines }),
        0..3,
    );
    (any::<u64>(), tenants, any::<bool>()).prop_map(|(sequence, tenants, validated)| DeletionList {
        version: DELETION_LIST_VERSION,
        sequence,
        tenants,
        validated,
    })
}

pub fn arb_deletion_header() -> impl Strategy<Value = DeletionHeader> {
    any::<u64>().prop_map(DeletionHeader::new)
}

/// A hex dump, 16 bytes a line, with offsets: readable in a snapshot diff.
pub fn hex_dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}\n", i * 16, hex.join(" "))
        })
        .collect()
}
