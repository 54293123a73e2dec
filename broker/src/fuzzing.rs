//! Entry points for the fuzz targets (`fuzz/`): every decoder the broker applies to
//! bytes it did not produce itself in this process — request frames and record
//! batches from clients; journal files, metadata logs, snapshots and checkpoints
//! from disk; segment footers from the store — each checked against the
//! invariants its callers rely on. Each returns for any input; a panic is a bug.

use bytes::Bytes;
use tributary_protocol::batch::{self, BatchHeader};
use tributary_protocol::kafka_protocol::messages::ApiKey;
use tributary_protocol::validate::{self, Rules};
use tributary_protocol::{header, records};

use crate::storage::journal::entry;

/// A request frame (after its length prefix) as dispatch takes it: the prelude, the
/// version check against the served versions, then the typed decoder.
pub fn request_frame(data: &[u8]) {
    let Some(prelude) = header::peek(data) else {
        return;
    };
    let Ok(key) = ApiKey::try_from(prelude.api_key) else {
        return;
    };
    let Some(range) = crate::api::supported(key) else {
        return;
    };
    if range.contains(&prelude.api_version) {
        let _ = header::decode_request(key, prelude.api_version, Bytes::copy_from_slice(data));
    }
}

/// A produce request's records field, as the produce path checks it.
pub fn record_batch(data: &[u8]) {
    let records = Bytes::copy_from_slice(data);
    let Ok(batches) = batch::split(&records) else {
        return;
    };
    for (h, b) in batches {
        assert_eq!(h.size, b.len(), "split returns whole batches");
        if h.validate(&b).is_err() {
            continue;
        }
        for require_keys in [false, true] {
            let rules = Rules { max_uncompressed_bytes: 1 << 22, require_keys };
            if validate::validate_records(&h, &b, rules).is_ok() && !require_keys {
                // What passed validation must read back record by record.
                let read = records::read(&h, &b).expect("a validated batch reads back");
                assert_eq!(read.len(), h.records_count as usize);
            }
        }
        let _ = BatchHeader::parse(&b).map(|h| h.last_sequence());
    }
}

/// A journal file as recovery scans it.
pub fn journal_file(data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    let (strict, valid) = entry::scan(&data);
    let resynced = entry::scan_resync(&data);
    // The strict scan is a prefix of the resynchronising one.
    assert!(strict.len() <= resynced.entries.len());
    for (a, b) in strict.iter().zip(&resynced.entries) {
        assert_eq!(a, b);
    }
    if valid == data.len() {
        assert!(resynced.damaged.is_empty() && resynced.intact_end == valid, "an intact file has no damage");
    }
    // Entries and damaged ranges never overlap and go forward.
    let mut at = 0;
    let mut spans: Vec<(usize, usize)> =
        resynced.entries.iter().map(|e| (e.at, e.at + entry::HEADER_LEN + e.payload.len())).collect();
    spans.extend(resynced.damaged.iter().map(|r| (r.start, r.end)));
    spans.sort_unstable();
    for (start, end) in spans {
        assert!(start >= at && end > start && end <= data.len(), "overlapping or empty span");
        at = end;
    }
}

/// A metadata log replayed onto an empty state, and a snapshot.
pub fn metadata(data: &[u8]) {
    let mut state = crate::storage::metadata_log::MetaState::default();
    if let Ok(valid) = crate::storage::metadata_log::replay(&mut state, &Bytes::copy_from_slice(data)) {
        assert!(valid <= data.len());
    }
    let _ = crate::storage::metadata_log::decode_snapshot(data);
    let _ = crate::storage::checkpoint::Checkpoint::decode(data);
}

/// A segment footer as the store's readers parse it, and the lookups on it.
pub fn segment_footer(data: &[u8]) {
    if let Ok(footer) = tributary_tiering::segment::Footer::parse(data) {
        for probe in [i64::MIN, -1, 0, footer.base_offset, footer.last_offset, i64::MAX] {
            let p = footer.position_for_offset(probe);
            assert!(footer.entries.is_empty() || footer.entries.iter().any(|e| e.position == p) || p == 0);
            let _ = footer.position_for_timestamp(probe);
        }
    }
}
