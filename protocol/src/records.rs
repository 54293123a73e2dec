//! The records inside a v2 batch, for the few broker paths that must look inside a
//! batch (finding the first record at or after a timestamp; reading control records).
//! Compressed batches are decompressed with the codecs of the `kafka-protocol` crate.

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::batch::{BatchHeader, Compression, HEADER_LEN};

/// Why the records of a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("truncated record")]
    Truncated,
    #[error("invalid varint")]
    BadVarint,
    #[error("cannot decompress {codec:?} batch: {reason}")]
    Decompress { codec: Compression, reason: String },
}

/// One record's position and payload fields (slices of the decompressed body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

fn varint(buf: &mut Bytes) -> Result<i64, RecordsError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err(RecordsError::Truncated);
        }
        let byte = buf.get_u8();
        value |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(RecordsError::BadVarint)
}

fn bytes_field(buf: &mut Bytes) -> Result<Option<Bytes>, RecordsError> {
    let len = varint(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(RecordsError::Truncated);
    }
    Ok(Some(buf.split_to(len)))
}

fn decompress(codec: Compression, body: Bytes) -> Result<Bytes, RecordsError> {
    fn run<D: Decompressor<Bytes>>(mut body: Bytes) -> anyhow::Result<Bytes> {
        D::decompress(&mut body, |b| Ok(b.copy_to_bytes(b.remaining())))
    }
    let out = match codec {
        Compression::None => Ok(body),
        Compression::Gzip => run::<Gzip>(body),
        Compression::Snappy => run::<Snappy>(body),
        Compression::Lz4 => run::<Lz4>(body),
        Compression::Zstd => run::<Zstd>(body),
        Compression::Unknown(n) => Err(anyhow::anyhow!("unknown codec {n}")),
    };
    out.map_err(|e| RecordsError::Decompress { codec, reason: e.to_string() })
}

/// Reads every record of `batch` (whose header is `header`).
pub fn read(header: &BatchHeader, batch: &Bytes) -> Result<Vec<RecordView>, RecordsError> {
    let mut body = decompress(header.compression(), batch.slice(HEADER_LEN..header.size))?;
    let mut out = Vec::with_capacity(header.records_count.max(0) as usize);
    for _ in 0..header.records_count {
        let len = varint(&mut body)?;
        if len < 0 || body.remaining() < len as usize {
            return Err(RecordsError::Truncated);
        }
        let mut rec = body.split_to(len as usize);
        if !rec.has_remaining() {
            return Err(RecordsError::Truncated);
        }
        rec.advance(1); // attributes, unused in v2
        let timestamp_delta = varint(&mut rec)?;
        let offset_delta = varint(&mut rec)?;
        let key = bytes_field(&mut rec)?;
        let value = bytes_field(&mut rec)?;
        let timestamp =
            if header.is_log_append_time() { header.max_timestamp } else { header.base_timestamp + timestamp_delta };
        out.push(RecordView { offset: header.base_offset + offset_delta, timestamp, key, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{set_base_offset, tests::make_batch};

    #[test]
    fn reads_offsets_timestamps_keys_and_values() {
        let mut b = make_batch(500, &[b"v0", b"v1", b"v2"]);
        set_base_offset(&mut b, 10);
        let b = Bytes::from(b);
        let h = BatchHeader::parse(&b).unwrap();
        let recs = read(&h, &b).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].offset, 12);
        assert_eq!(recs[2].timestamp, 502);
        assert_eq!(recs[1].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(recs[1].value.as_deref(), Some(&b"v1"[..]));
    }

    #[test]
    fn reads_compressed_batches() {
        use kafka_protocol::records::*;
        for compression in [
            kafka_protocol::records::Compression::Gzip,
            kafka_protocol::records::Compression::Snappy,
            kafka_protocol::records::Compression::Lz4,
            kafka_protocol::records::Compression::Zstd,
        ] {
            let records: Vec<Record> = (0..5)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: i as i32,
                    timestamp: 100 + i,
                    key: None,
                    value: Some(Bytes::from(vec![b'x'; 100])),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
            let b = buf.freeze();
            let h = BatchHeader::parse(&b).unwrap();
            h.validate(&b).unwrap();
            let recs = read(&h, &b).unwrap();
            assert_eq!(recs.len(), 5, "{compression:?}");
            assert_eq!(recs[4].timestamp, 104);
            assert_eq!(recs[4].key, None);
        }
    }
}
