//! A zero-copy view of Kafka v2 record batches ("magic 2"), the unit in which
//! Tributary stores events: byte for byte as the producer sent them, with only the
//! base offset (outside the CRC) and, for log-append-time topics, the max timestamp
//! and timestamp-type bit (inside it, so the CRC is recomputed) patched.
//!
//! Layout of the batch header (61 bytes, big-endian):
//! ```text
//! 0  base_offset i64        8  batch_length i32     12 partition_leader_epoch i32
//! 16 magic i8               17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16         23 last_offset_delta i32 27 base_timestamp i64
//! 35 max_timestamp i64      43 producer_id i64       51 producer_epoch i16
//! 53 base_sequence i32      57 records_count i32     61 records...
//! ```

use bytes::Bytes;

/// Size of the fixed header of a v2 record batch.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batch_length` counts: base offset and the length field itself.
pub const LOG_OVERHEAD: usize = 12;

const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Why bytes are not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0} bytes are too few for a record batch header")]
    TooShort(usize),
    #[error("batch length {declared} does not fit the {available} bytes available")]
    LengthMismatch { declared: i64, available: usize },
    #[error("unsupported record batch magic {0} (only v2 batches are accepted)")]
    UnsupportedMagic(i8),
    #[error("CRC mismatch: batch says {stored:#010x}, content has {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("invalid records count {count} for last offset delta {last_offset_delta}")]
    BadCount { count: i32, last_offset_delta: i32 },
    #[error("no record batch in the records field")]
    Empty,
}

/// Compression codec of a batch (attributes bits 0..2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    Unknown(u8),
}

impl Compression {
    /// The codec of Kafka's compression type id (batch attributes, PushTelemetry).
    pub fn from_id(id: i8) -> Compression {
        match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            n => Compression::Unknown(n as u8),
        }
    }
}

/// The header fields of one batch, read from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch in bytes, including base offset and length fields.
    pub size: usize,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Reads the header of the batch at the start of `b`. Checks only that the header
    /// is there and that the declared length fits in `b`.
    pub fn parse(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < HEADER_LEN {
            return Err(BatchError::TooShort(b.len()));
        }
        let batch_length = i32_at(b, BATCH_LENGTH) as i64;
        let size = batch_length + LOG_OVERHEAD as i64;
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i64 || size > b.len() as i64 {
            return Err(BatchError::LengthMismatch { declared: batch_length, available: b.len() });
        }
        Ok(BatchHeader {
            base_offset: i64_at(b, 0),
            size: size as usize,
            partition_leader_epoch: i32_at(b, LEADER_EPOCH),
            magic: b[MAGIC] as i8,
            crc: u32::from_be_bytes([b[CRC], b[CRC + 1], b[CRC + 2], b[CRC + 3]]),
            attributes: i16_at(b, ATTRIBUTES),
            last_offset_delta: i32_at(b, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(b, BASE_TIMESTAMP),
            max_timestamp: i64_at(b, MAX_TIMESTAMP),
            producer_id: i64_at(b, PRODUCER_ID),
            producer_epoch: i16_at(b, PRODUCER_EPOCH),
            base_sequence: i32_at(b, BASE_SEQUENCE),
            records_count: i32_at(b, RECORDS_COUNT),
        })
    }

    pub fn compression(&self) -> Compression {
        Compression::from_id((self.attributes & 0x7) as i8)
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    /// Sequence of the last record, wrapping at i32::MAX as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }

    /// Checks what a broker must check before accepting the batch: magic 2, a
    /// consistent record count, and the CRC-32C over everything after the CRC field.
    pub fn validate(&self, batch: &[u8]) -> Result<(), BatchError> {
        if self.magic != 2 {
            return Err(BatchError::UnsupportedMagic(self.magic));
        }
        if self.records_count < 0 || self.last_offset_delta < 0 {
            return Err(BatchError::BadCount { count: self.records_count, last_offset_delta: self.last_offset_delta });
        }
        let computed = crc32c::crc32c(&batch[ATTRIBUTES..self.size]);
        if computed != self.crc {
            return Err(BatchError::CrcMismatch { stored: self.crc, computed });
        }
        Ok(())
    }
}

/// Splits a records field into its batches (zero-copy slices of `records`), parsing
/// each header. Does not check CRCs: see [`BatchHeader::validate`].
pub fn split(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut at = 0;
    while at < records.len() {
        let header = BatchHeader::parse(&records[at..])?;
        out.push((header, records.slice(at..at + header.size)));
        at += header.size;
    }
    if out.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(out)
}

/// Writes the broker-assigned base offset (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as log-append-time with `timestamp` as its max timestamp and
/// recomputes the CRC, as a broker does for `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = i16_at(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
    let end = (i32_at(batch, BATCH_LENGTH) as usize + LOG_OVERHEAD).min(batch.len());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..end]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a valid uncompressed batch with `n` records of the given values.
    pub(crate) fn make_batch(base_ts: i64, values: &[&[u8]]) -> Vec<u8> {
        use kafka_protocol::records::*;
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: base_ts + i as i64,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::copy_from_slice(v)),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions { version: 2, compression: kafka_protocol::records::Compression::None },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn parses_and_validates_a_real_batch() {
        let b = make_batch(1000, &[b"a", b"bb", b"ccc"]);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.size, b.len());
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1002);
        assert_eq!(h.compression(), Compression::None);
        h.validate(&b).unwrap();
    }

    #[test]
    fn base_offset_patch_keeps_crc_valid_and_log_append_time_recomputes_it() {
        let mut b = make_batch(1000, &[b"a", b"b"]);
        set_base_offset(&mut b, 12345);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 12345);
        h.validate(&b).unwrap();
        set_log_append_time(&mut b, 99);
        let h = BatchHeader::parse(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
        h.validate(&b).unwrap();
    }

    #[test]
    fn flipped_payload_bit_is_a_crc_error() {
        let mut b = make_batch(1000, &[b"hello"]);
        let last = b.len() - 3;
        b[last] ^= 1;
        let h = BatchHeader::parse(&b).unwrap();
        assert!(matches!(h.validate(&b), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn split_finds_every_batch_and_rejects_trailing_garbage() {
        let mut all = make_batch(1, &[b"x"]);
        all.extend(make_batch(2, &[b"y", b"z"]));
        let bytes = Bytes::from(all.clone());
        let batches = split(&bytes).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].0.records_count, 2);
        all.extend([0, 0, 0]);
        assert!(split(&Bytes::from(all)).is_err());
        assert_eq!(split(&Bytes::new()), Err(BatchError::Empty));
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let bytes = Bytes::from(data);
            if let Ok(batches) = split(&bytes) {
                for (h, b) in batches {
                    let _ = h.validate(&b);
                }
            }
        }
    }
}
