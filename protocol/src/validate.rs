//! Record-level validation of a v2 batch before a broker accepts it, as Kafka's
//! log validator does: the codec is known, the payload decompresses (within a
//! bound, so a compression bomb costs bounded work), the record count and
//! `last_offset_delta` agree with each other and with the records, every record's
//! offset delta is its index, every record is well-formed (lengths that fit, exactly
//! consumed, sane key and header counts) and nothing trails the last record.
//!
//! Streaming: records are parsed as they are decompressed, through a small
//! buffer, and skipped field by field; an uncompressed batch is parsed in place.
//! Nothing is copied or kept, whatever the batch decompresses to.

use std::io::{self, Read};

use crate::batch::{BatchHeader, Compression, HEADER_LEN};

/// Why a batch's records are refused. `Corrupt` is Kafka's CORRUPT_MESSAGE (the
/// bytes do not decode); `Invalid` is INVALID_RECORD (they decode into records that
/// break a rule), with the index of the record at fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Corrupt(String),
    #[error("{message}")]
    Invalid { record: Option<usize>, message: String },
}

/// What a broker requires of the records beyond well-formedness.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// The most bytes the records may decompress to.
    pub max_uncompressed_bytes: u64,
    /// Every record needs a key (a compacted topic, KIP-467).
    pub require_keys: bool,
}

/// Checks the records of `batch` (whose header is `header`, already checked for
/// magic and CRC).
pub fn validate_records(header: &BatchHeader, batch: &[u8], rules: Rules) -> Result<(), RecordError> {
    let count = header.records_count;
    if count <= 0 {
        return Err(invalid(None, format!("invalid reported record count {count}")));
    }
    if header.last_offset_delta < 0 || i64::from(header.last_offset_delta) + 1 != i64::from(count) {
        return Err(invalid(
            None,
            format!(
                "inconsistent batch offset range and record count: last offset delta {} for {count} records",
                header.last_offset_delta
            ),
        ));
    }
    let body = &batch[HEADER_LEN..header.size];
    let limit = rules.max_uncompressed_bytes;
    match header.compression() {
        Compression::None => records(&mut SliceSource { data: body, at: 0 }, count, rules),
        Compression::Gzip => records(&mut Source::new(flate2::read::GzDecoder::new(body), limit), count, rules),
        Compression::Snappy => records(&mut Source::new(SnappyReader::new(body, limit), limit), count, rules),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(body).map_err(|e| corrupt_codec("lz4", &e))?;
            records(&mut Source::new(decoder, limit), count, rules)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(|e| corrupt_codec("zstd", &e))?;
            records(&mut Source::new(decoder, limit), count, rules)
        }
        Compression::Unknown(n) => Err(RecordError::Corrupt(format!("unknown compression codec {n}"))),
    }
}

/// The bytes `data` compressed with Kafka's `codec` decompress to, at most `limit`
/// of them (an error beyond: a compression bomb costs bounded work). Kafka's
/// framings: xerial snappy (or one raw block), the LZ4 frame format.
pub fn decompress(codec: Compression, data: &[u8], limit: u64) -> io::Result<Vec<u8>> {
    fn bounded(mut r: impl Read, limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.by_ref().take(limit.saturating_add(1)).read_to_end(&mut out)?;
        match out.len() as u64 > limit {
            true => Err(io::Error::other(format!("decompresses to more than {limit} bytes"))),
            false => Ok(out),
        }
    }
    match codec {
        Compression::None => bounded(data, limit),
        Compression::Gzip => bounded(flate2::read::GzDecoder::new(data), limit),
        Compression::Snappy => bounded(SnappyReader::new(data, limit), limit),
        Compression::Lz4 => bounded(lz4::Decoder::new(data)?, limit),
        Compression::Zstd => bounded(zstd::stream::read::Decoder::with_buffer(data)?, limit),
        Compression::Unknown(n) => Err(io::Error::other(format!("unknown compression codec {n}"))),
    }
}

fn invalid(record: Option<usize>, message: String) -> RecordError {
    RecordError::Invalid { record, message }
}

fn corrupt_codec(codec: &str, e: &io::Error) -> RecordError {
    RecordError::Corrupt(format!("the {codec} payload does not decompress: {e}"))
}

/// Every record in turn, then the end of the payload.
fn records<S: RecordSource>(src: &mut S, count: i32, rules: Rules) -> Result<(), RecordError> {
    for i in 0..count as usize {
        record(src, i, rules)?;
    }
    if src.more()? {
        return Err(RecordError::Corrupt(format!("bytes after the last of the batch's {count} records")));
    }
    Ok(())
}

/// One record: length, attributes, timestamp delta, offset delta, key, value,
/// headers, each checked to fit the record's length, which must be used exactly.
fn record<S: RecordSource>(src: &mut S, index: usize, rules: Rules) -> Result<(), RecordError> {
    let at = |what: &str| format!("record {index}: {what}");
    let len = src.varint().map_err(|e| e.about(&at("length")))?;
    if len <= 0 {
        return Err(RecordError::Corrupt(at(&format!("invalid length {len}"))));
    }
    let start = src.pos();
    let end = start + len as u64;
    src.byte().map_err(|e| e.about(&at("attributes")))?;
    src.varlong().map_err(|e| e.about(&at("timestamp delta")))?;
    let offset_delta = src.varint().map_err(|e| e.about(&at("offset delta")))?;
    if offset_delta != index as i64 {
        return Err(invalid(Some(index), at(&format!("offset delta {offset_delta}, expected {index}"))));
    }
    let key = src.varint().map_err(|e| e.about(&at("key length")))?;
    if key < -1 {
        return Err(RecordError::Corrupt(at(&format!("invalid key length {key}"))));
    }
    if key == -1 && rules.require_keys {
        return Err(invalid(Some(index), "compacted topic cannot accept message without key".into()));
    }
    src.skip(key.max(0) as u64, end).map_err(|e| e.about(&at("key")))?;
    let value = src.varint().map_err(|e| e.about(&at("value length")))?;
    if value < -1 {
        return Err(RecordError::Corrupt(at(&format!("invalid value length {value}"))));
    }
    src.skip(value.max(0) as u64, end).map_err(|e| e.about(&at("value")))?;
    let headers = src.varint().map_err(|e| e.about(&at("header count")))?;
    // A header takes at least two bytes (its two lengths).
    if headers < 0 || headers as u64 > end.saturating_sub(src.pos()) / 2 {
        return Err(RecordError::Corrupt(at(&format!("invalid header count {headers}"))));
    }
    for h in 0..headers {
        let key = src.varint().map_err(|e| e.about(&at(&format!("header {h} key length"))))?;
        if key < 0 {
            return Err(RecordError::Corrupt(at(&format!("header {h} has invalid key length {key}"))));
        }
        src.skip(key as u64, end).map_err(|e| e.about(&at(&format!("header {h} key"))))?;
        let value = src.varint().map_err(|e| e.about(&at(&format!("header {h} value length"))))?;
        if value < -1 {
            return Err(RecordError::Corrupt(at(&format!("header {h} has invalid value length {value}"))));
        }
        src.skip(value.max(0) as u64, end).map_err(|e| e.about(&at(&format!("header {h} value"))))?;
    }
    if src.pos() != end {
        return Err(RecordError::Corrupt(at(&format!(
            "declared {len} bytes, its fields take {}",
            src.pos().saturating_sub(start)
        ))));
    }
    Ok(())
}

/// Why reading a field failed.
enum ReadError {
    /// The payload ended (or the record did) before the field did.
    Short,
    BadVarint,
    /// The codec failed.
    Stream(String),
    /// The payload decompressed past the bound: INVALID_RECORD, as Kafka answers a
    /// batch over `max.decompressed.message.bytes`.
    TooLarge(String),
}

impl ReadError {
    fn about(self, what: &str) -> RecordError {
        match self {
            ReadError::Short => RecordError::Corrupt(format!("{what} runs past the end of its record or batch")),
            ReadError::BadVarint => RecordError::Corrupt(format!("{what} is not a valid varint")),
            ReadError::Stream(reason) => RecordError::Corrupt(reason),
            ReadError::TooLarge(message) => RecordError::Invalid { record: None, message },
        }
    }
}

impl From<ReadError> for RecordError {
    fn from(e: ReadError) -> Self {
        e.about("the batch's records")
    }
}

/// Where records are read from: the batch itself, or a decompressing stream.
trait RecordSource {
    /// Bytes consumed so far.
    fn pos(&self) -> u64;
    fn byte(&mut self) -> Result<u8, ReadError>;
    /// Skips `n` bytes, which must end at or before `end`.
    fn skip(&mut self, n: u64, end: u64) -> Result<(), ReadError>;
    /// Whether any byte is left.
    fn more(&mut self) -> Result<bool, ReadError>;

    /// A zigzag varint of at most 5 bytes (an i32, as Kafka reads these fields).
    fn varint(&mut self) -> Result<i64, ReadError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.byte()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 4 && b > 0x0f {
                    return Err(ReadError::BadVarint);
                }
                return Ok(i64::from((value >> 1) as i32 ^ -((value & 1) as i32)));
            }
        }
        Err(ReadError::BadVarint)
    }

    /// A zigzag varlong of at most 10 bytes (an i64).
    fn varlong(&mut self) -> Result<i64, ReadError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 9 && b > 0x01 {
                    return Err(ReadError::BadVarint);
                }
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(ReadError::BadVarint)
    }
}

/// An uncompressed batch's records, parsed in place (values are skipped, never
/// copied).
struct SliceSource<'a> {
    data: &'a [u8],
    at: usize,
}

impl RecordSource for SliceSource<'_> {
    fn pos(&self) -> u64 {
        self.at as u64
    }

    fn byte(&mut self) -> Result<u8, ReadError> {
        let b = *self.data.get(self.at).ok_or(ReadError::Short)?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: u64, end: u64) -> Result<(), ReadError> {
        let to = self.at as u64 + n;
        if to > end || to > self.data.len() as u64 {
            return Err(ReadError::Short);
        }
        self.at = to as usize;
        Ok(())
    }

    fn more(&mut self) -> Result<bool, ReadError> {
        Ok(self.at < self.data.len())
    }
}

/// The decompressed records as a stream of bytes, with the count read so far.
struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    at: usize,
    filled: usize,
    /// Bytes consumed so far.
    pos: u64,
    limit: u64,
}

impl<R: Read> Source<R> {
    fn new(inner: R, limit: u64) -> Self {
        Source { inner, buf: vec![0u8; 16 * 1024].into_boxed_slice(), at: 0, filled: 0, pos: 0, limit }
    }

    /// Refills the buffer; false at the end of the payload.
    fn fill(&mut self) -> Result<bool, ReadError> {
        if self.at < self.filled {
            return Ok(true);
        }
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.at = 0;
                    self.filled = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Stream(format!("the payload does not decompress: {e}"))),
            }
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), ReadError> {
        self.at += n;
        self.pos += n as u64;
        if self.pos > self.limit {
            return Err(ReadError::TooLarge(format!(
                "the records decompress to more than {} bytes (this topic's max.decompressed.message.bytes, or \
                 64 times its max.message.bytes, whichever is less)",
                self.limit
            )));
        }
        Ok(())
    }
}

impl<R: Read> RecordSource for Source<R> {
    fn pos(&self) -> u64 {
        self.pos
    }

    fn byte(&mut self) -> Result<u8, ReadError> {
        if !self.fill()? {
            return Err(ReadError::Short);
        }
        let b = self.buf[self.at];
        self.advance(1)?;
        Ok(b)
    }

    fn skip(&mut self, n: u64, end: u64) -> Result<(), ReadError> {
        if self.pos + n > end {
            return Err(ReadError::Short);
        }
        let mut left = n;
        while left > 0 {
            if !self.fill()? {
                return Err(ReadError::Short);
            }
            let take = ((self.filled - self.at) as u64).min(left) as usize;
            self.advance(take)?;
            left -= take as u64;
        }
        Ok(())
    }

    fn more(&mut self) -> Result<bool, ReadError> {
        self.fill()
    }
}

/// Kafka's snappy: xerial framing (a magic header, then blocks each preceded by its
/// compressed length) or, without the header, one raw snappy block. Each block is
/// decompressed whole (a block's uncompressed length is in its own header and
/// checked against the bound first).
struct SnappyReader<'a> {
    input: &'a [u8],
    block: Vec<u8>,
    at: usize,
    limit: u64,
    framed: Option<bool>,
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8], limit: u64) -> Self {
        SnappyReader { input, block: Vec::new(), at: 0, limit, framed: None }
    }

    fn next_block(&mut self) -> io::Result<bool> {
        let framed = *self.framed.get_or_insert_with(|| self.input.starts_with(XERIAL_MAGIC));
        if framed && self.input.starts_with(XERIAL_MAGIC) && self.input.len() >= XERIAL_HEADER_LEN {
            self.input = &self.input[XERIAL_HEADER_LEN..];
        }
        if self.input.is_empty() {
            return Ok(false);
        }
        let raw = if framed {
            if self.input.len() < 4 {
                return Err(io::Error::other("truncated snappy block length"));
            }
            let len = u32::from_be_bytes(self.input[..4].try_into().expect("invariant: 4 bytes")) as usize;
            let rest = &self.input[4..];
            if rest.len() < len {
                return Err(io::Error::other("snappy block runs past the batch"));
            }
            self.input = &rest[len..];
            &rest[..len]
        } else {
            std::mem::take(&mut self.input)
        };
        let n = snap::raw::decompress_len(raw).map_err(io::Error::other)?;
        if n as u64 > self.limit {
            return Err(io::Error::other(format!("snappy block decompresses to {n} bytes, over the bound")));
        }
        self.block.resize(n, 0);
        snap::raw::Decoder::new().decompress(raw, &mut self.block).map_err(io::Error::other)?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression as Codec, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const RULES: Rules = Rules { max_uncompressed_bytes: 1 << 20, require_keys: false };

    fn encoded(codec: Codec, n: i64, value: usize, keyed: bool) -> Bytes {
        let records: Vec<Record> = (0..n)
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
                key: keyed.then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'x'; value])),
                headers: [(kafka_protocol::protocol::StrBytes::from_static_str("h"), Some(Bytes::from_static(b"v")))]
                    .into_iter()
                    .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: codec })
            .unwrap();
        buf.freeze()
    }

    fn check(b: &[u8], rules: Rules) -> Result<(), RecordError> {
        let h = BatchHeader::parse(b).unwrap();
        validate_records(&h, b, rules)
    }

    /// Rewrites the records region and fixes the length and CRC, as a hostile
    /// client would.
    fn with_body(b: &[u8], body: &[u8], count: i32, last_delta: i32) -> Vec<u8> {
        let mut out = b[..HEADER_LEN].to_vec();
        out.extend_from_slice(body);
        let len = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&len.to_be_bytes());
        out[23..27].copy_from_slice(&last_delta.to_be_bytes());
        out[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn every_codec_passes_well_formed_batches() {
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let b = encoded(codec, 50, 300, true);
            check(&b, RULES).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        }
    }

    #[test]
    fn a_payload_that_does_not_decompress_is_corrupt() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let b = encoded(codec, 20, 100, true);
            let body = &b[HEADER_LEN..];
            let mut garbled = body.to_vec();
            for x in garbled.iter_mut().skip(body.len() / 3).take(16) {
                *x ^= 0x5a;
            }
            let bad = with_body(&b, &garbled, 20, 19);
            assert!(matches!(check(&bad, RULES), Err(RecordError::Corrupt(_))), "{codec:?}");
        }
    }

    #[test]
    fn unknown_codecs_are_corrupt() {
        let b = encoded(Codec::None, 3, 10, true);
        for codec in 5..=7 {
            let mut bad = b.to_vec();
            bad[22] = (bad[22] & !7) | codec;
            let crc = crc32c::crc32c(&bad[21..]);
            bad[17..21].copy_from_slice(&crc.to_be_bytes());
            assert!(matches!(check(&bad, RULES), Err(RecordError::Corrupt(_))), "codec {codec}");
        }
    }

    #[test]
    fn a_compression_bomb_stops_at_the_bound() {
        let b = encoded(Codec::Gzip, 4, 1 << 20, true);
        assert!(b.len() < 64 * 1024);
        let rules = Rules { max_uncompressed_bytes: 2 << 20, require_keys: false };
        let err = check(&b, rules).unwrap_err();
        assert!(err.to_string().contains("decompress to more than"), "{err}");
    }

    #[test]
    fn count_and_last_offset_delta_must_agree_with_the_records() {
        let b = encoded(Codec::None, 5, 10, true);
        let body = &b[HEADER_LEN..];
        // A count that claims more records than there are.
        assert!(check(&with_body(&b, body, 6, 5), RULES).is_err());
        // Fewer: the rest is trailing bytes.
        assert!(check(&with_body(&b, body, 4, 3), RULES).is_err());
        // A last offset delta that moves the partition far ahead.
        let err = check(&with_body(&b, body, 5, i32::MAX - 1), RULES).unwrap_err();
        assert!(matches!(err, RecordError::Invalid { record: None, .. }), "{err}");
        assert!(check(&with_body(&b, body, 5, -1), RULES).is_err());
        assert!(check(&with_body(&b, body, 0, -1), RULES).is_err());
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let b = encoded(Codec::None, 2, 10, true);
        let mut body = b[HEADER_LEN..].to_vec();
        body.extend_from_slice(b"junk");
        assert!(matches!(check(&with_body(&b, &body, 2, 1), RULES), Err(RecordError::Corrupt(_))));
    }

    /// A record written by hand: length, attributes, deltas, key, value, headers.
    fn raw_record(offset_delta: i64, key: Option<&[u8]>, value: &[u8], headers: i64, extra: &[u8]) -> Vec<u8> {
        fn zigzag(out: &mut Vec<u8>, v: i64) {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            loop {
                let b = (z & 0x7f) as u8;
                z >>= 7;
                if z == 0 {
                    out.push(b);
                    break;
                }
                out.push(b | 0x80);
            }
        }
        let mut r = vec![0u8];
        zigzag(&mut r, 0);
        zigzag(&mut r, offset_delta);
        match key {
            Some(k) => {
                zigzag(&mut r, k.len() as i64);
                r.extend_from_slice(k);
            }
            None => zigzag(&mut r, -1),
        }
        zigzag(&mut r, value.len() as i64);
        r.extend_from_slice(value);
        zigzag(&mut r, headers);
        r.extend_from_slice(extra);
        let mut out = Vec::new();
        zigzag(&mut out, r.len() as i64);
        out.extend(r);
        out
    }

    #[test]
    fn malformed_records_are_refused_with_the_record_at_fault() {
        let b = encoded(Codec::None, 1, 10, true);
        let good = raw_record(0, Some(b"k"), b"v", 0, &[]);
        check(&with_body(&b, &good, 1, 0), RULES).unwrap();
        // Negative and duplicate offset deltas.
        let dup = [raw_record(0, Some(b"k"), b"v", 0, &[]), raw_record(0, Some(b"k"), b"v", 0, &[])].concat();
        let err = check(&with_body(&b, &dup, 2, 1), RULES).unwrap_err();
        assert_eq!(err, invalid(Some(1), "record 1: offset delta 0, expected 1".into()));
        assert!(check(&with_body(&b, &raw_record(-3, Some(b"k"), b"v", 0, &[]), 1, 0), RULES).is_err());
        // A record whose length overruns the batch.
        let mut long = good.clone();
        long[0] = 0x7e;
        assert!(matches!(check(&with_body(&b, &long, 1, 0), RULES), Err(RecordError::Corrupt(_))));
        // Absurd header count.
        let many = raw_record(0, Some(b"k"), b"v", 1_000_000, &[]);
        assert!(check(&with_body(&b, &many, 1, 0), RULES).unwrap_err().to_string().contains("header count"));
        // Bytes inside a record past its last field.
        let padded = raw_record(0, Some(b"k"), b"v", 0, b"xx");
        assert!(check(&with_body(&b, &padded, 1, 0), RULES).unwrap_err().to_string().contains("declared"));
        // Keyless records on a compacted topic.
        let keyless = raw_record(0, None, b"v", 0, &[]);
        check(&with_body(&b, &keyless, 1, 0), RULES).unwrap();
        let compacted = Rules { require_keys: true, ..RULES };
        assert!(matches!(
            check(&with_body(&b, &keyless, 1, 0), compacted),
            Err(RecordError::Invalid { record: Some(0), .. })
        ));
    }

    proptest::proptest! {
        /// Whatever the bytes, validation answers (never panics), and a batch whose
        /// records region is cut short is never accepted.
        #[test]
        fn arbitrary_records_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                                         count in 1i32..8, codec in 0u8..8) {
            let b = encoded(Codec::None, 1, 1, true);
            let mut bad = with_body(&b, &body, count, count - 1);
            bad[22] = (bad[22] & !7) | codec;
            let crc = crc32c::crc32c(&bad[21..]);
            bad[17..21].copy_from_slice(&crc.to_be_bytes());
            let _ = check(&bad, RULES);
        }

        #[test]
        fn a_truncated_good_batch_is_refused(cut in 1usize..200) {
            let b = encoded(Codec::None, 5, 30, true);
            let body = &b[HEADER_LEN..];
            let cut = cut.min(body.len());
            let bad = with_body(&b, &body[..body.len() - cut], 5, 4);
            proptest::prop_assert!(check(&bad, RULES).is_err());
        }
    }
}
