//! Record batches the broker writes itself: internal records (committed offsets,
//! transaction state) and, later, control batches (transaction markers). Always
//! magic v2, uncompressed, records at offset deltas 0, 1, 2, ...

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::CodecError;

/// The batch-level fields of a batch to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub control: bool,
    /// Create time of every record, in milliseconds.
    pub timestamp: i64,
}

impl BatchSpec {
    /// A plain batch: no producer id, not transactional.
    pub fn plain(timestamp: i64) -> Self {
        BatchSpec {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            timestamp,
        }
    }
}

/// Encodes `records` (key, value) as one v2 batch at base offset 0.
pub fn build(spec: &BatchSpec, records: &[(Option<Bytes>, Option<Bytes>)]) -> Result<Bytes, CodecError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: spec.transactional,
            control: spec.control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: spec.producer_id,
            producer_epoch: spec.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence stays the
            // same; only the first record's sequence reaches the batch header.
            sequence: spec.base_sequence.wrapping_add(i as i32),
            timestamp: spec.timestamp,
            key: key.clone(),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .map_err(|e| CodecError::Encode { what: "record batch", version: 2, reason: e.to_string() })?;
    Ok(buf.freeze())
}

/// `batch` with only the records whose offset `keep` accepts (compaction): the same
/// codec, producer fields and timestamps, re-encoded only if something is dropped;
/// `None` when nothing is kept.
pub fn retain(batch: &Bytes, keep: impl Fn(i64) -> bool) -> Result<Option<Bytes>, CodecError> {
    let decode_error =
        |e: anyhow::Error| CodecError::Encode { what: "record batch", version: 2, reason: e.to_string() };
    let set = RecordBatchDecoder::decode(&mut batch.clone()).map_err(decode_error)?;
    let total = set.records.len();
    let kept: Vec<Record> = set.records.into_iter().filter(|r| keep(r.offset)).collect();
    if kept.len() == total {
        return Ok(Some(batch.clone()));
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &kept, &RecordEncodeOptions { version: 2, compression: set.compression })
        .map_err(|e| CodecError::Encode { what: "record batch", version: 2, reason: e.to_string() })?;
    Ok(Some(buf.freeze()))
}

/// `batch` with its records compressed by `codec` instead (a topic whose
/// `compression.type` names a codec, as Kafka's log validator recompresses): the
/// same records, offsets, timestamps and producer fields, a new CRC.
pub fn recompress(batch: &Bytes, codec: crate::batch::Compression) -> Result<Bytes, CodecError> {
    use crate::batch::Compression as C;
    let error = |reason: String| CodecError::Encode { what: "record batch", version: 2, reason };
    let compression = match codec {
        C::None => Compression::None,
        C::Gzip => Compression::Gzip,
        C::Snappy => Compression::Snappy,
        C::Lz4 => Compression::Lz4,
        C::Zstd => Compression::Zstd,
        C::Unknown(n) => return Err(error(format!("unknown codec {n}"))),
    };
    let set = RecordBatchDecoder::decode(&mut batch.clone()).map_err(|e| error(e.to_string()))?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &set.records, &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| error(e.to_string()))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchHeader;
    use crate::records;

    #[test]
    fn built_batches_parse_validate_and_read_back() {
        let recs = vec![
            (Some(Bytes::from_static(b"k0")), Some(Bytes::from_static(b"v0"))),
            (Some(Bytes::from_static(b"k1")), None),
        ];
        let b = build(&BatchSpec::plain(1234), &recs).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        h.validate(&b).unwrap();
        assert_eq!(h.records_count, 2);
        assert_eq!(h.producer_id, -1);
        assert!(!h.is_transactional() && !h.is_control());
        let back = records::read(&h, &b).unwrap();
        assert_eq!(back[0].value.as_deref(), Some(&b"v0"[..]));
        assert_eq!(back[1].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(back[1].value, None);
        assert_eq!(back[1].timestamp, 1234);
    }

    #[test]
    fn recompressed_batches_keep_records_producer_fields_and_timestamps() {
        use crate::batch::Compression as C;
        let spec = BatchSpec { producer_id: 9, producer_epoch: 1, base_sequence: 40, ..BatchSpec::plain(777) };
        let recs: Vec<_> =
            (0..50).map(|i| (Some(Bytes::from(format!("k{i}"))), Some(Bytes::from(vec![b'x'; 100])))).collect();
        let plain = build(&spec, &recs).unwrap();
        for codec in [C::Gzip, C::Snappy, C::Lz4, C::Zstd, C::None] {
            let b = recompress(&plain, codec).unwrap();
            let h = BatchHeader::parse(&b).unwrap();
            h.validate(&b).unwrap();
            assert_eq!(h.compression(), codec);
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.records_count), (9, 1, 40, 50));
            if codec != C::None {
                assert!(b.len() < plain.len() / 2, "{codec:?}: {} of {}", b.len(), plain.len());
            }
            let back = records::read(&h, &b).unwrap();
            assert_eq!(back.len(), 50);
            assert_eq!(back[49].key.as_deref(), Some(&b"k49"[..]));
            assert_eq!(back[49].timestamp, 777);
        }
        assert!(recompress(&plain, C::Unknown(7)).is_err());
    }

    #[test]
    fn transactional_and_control_flags_are_set() {
        let spec =
            BatchSpec { producer_id: 7, producer_epoch: 2, transactional: true, control: true, ..BatchSpec::plain(5) };
        let b = build(&spec, &[(Some(Bytes::from_static(&[0, 0, 0, 1])), None)]).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        h.validate(&b).unwrap();
        assert!(h.is_transactional() && h.is_control());
        assert_eq!((h.producer_id, h.producer_epoch), (7, 2));
    }

    #[test]
    fn retain_keeps_chosen_records_with_their_offsets_timestamps_and_codec() {
        let records: Vec<Record> = (0..4i64)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 100 + i,
                // As a client's batch decodes: base sequence + offset delta.
                sequence: -1 + i as i32,
                timestamp: 50 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: (i != 3).then(|| Bytes::from(vec![b'v'; 200])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions { version: 2, compression: Compression::Lz4 },
        )
        .unwrap();
        let b = buf.freeze();
        let kept = retain(&b, |o| o % 2 == 1).unwrap().unwrap();
        let h = BatchHeader::parse(&kept).unwrap();
        h.validate(&kept).unwrap();
        assert_eq!(h.base_offset, 101);
        assert_eq!(h.records_count, 2);
        assert_eq!(h.compression(), crate::batch::Compression::Lz4);
        let back = records::read(&h, &kept).unwrap();
        assert_eq!(back.iter().map(|r| (r.offset, r.timestamp)).collect::<Vec<_>>(), vec![(101, 51), (103, 53)]);
        assert_eq!(back[1].value, None, "a tombstone stays a tombstone");
        assert_eq!(retain(&b, |_| true).unwrap().unwrap(), b);
        assert_eq!(retain(&b, |_| false).unwrap(), None);
    }
}
