//! The records of the internal `__consumer_offsets` topic, in Kafka's own schemas so
//! that tools that read that topic (lag monitors) understand them:
//!
//! ```text
//! key   v1: i16 version=1, string group, string topic, i32 partition
//! value v3: i16 version=3, i64 offset, i32 leader_epoch, string metadata, i64 commit_timestamp
//! ```
//! A null value is a tombstone: the offset was deleted (DeleteGroups, OffsetDelete,
//! expiry). Keys of other versions (group metadata, v2) are skipped when loading.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A committed offset as stored and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_timestamp: i64,
}

/// Which offset a record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetKey {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

fn put_str(buf: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&bytes[..len]);
}

fn get_str(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = buf.get_i16();
    if len < 0 {
        return Some(String::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

pub(crate) fn encode_key(key: &OffsetKey) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + key.group.len() + key.topic.len());
    buf.put_i16(1);
    put_str(&mut buf, &key.group);
    put_str(&mut buf, &key.topic);
    buf.put_i32(key.partition);
    buf.freeze()
}

pub(crate) fn encode_value(c: &Committed) -> Bytes {
    let mut buf = BytesMut::with_capacity(24 + c.metadata.len());
    buf.put_i16(3);
    buf.put_i64(c.offset);
    buf.put_i32(c.leader_epoch);
    put_str(&mut buf, &c.metadata);
    buf.put_i64(c.commit_timestamp);
    buf.freeze()
}

/// The offset key of a record, or `None` for other record kinds (or garbage).
pub(crate) fn decode_key(mut b: Bytes) -> Option<OffsetKey> {
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if !(0..=1).contains(&version) {
        return None;
    }
    let group = get_str(&mut b)?;
    let topic = get_str(&mut b)?;
    if b.remaining() < 4 {
        return None;
    }
    Some(OffsetKey { group, topic, partition: b.get_i32() })
}

/// A committed offset from a value of any version Kafka wrote (0 ..= 3).
pub(crate) fn decode_value(mut b: Bytes) -> Option<Committed> {
    if b.remaining() < 10 {
        return None;
    }
    let version = b.get_i16();
    let offset = b.get_i64();
    let leader_epoch = if version >= 3 {
        if b.remaining() < 4 {
            return None;
        }
        b.get_i32()
    } else {
        -1
    };
    let metadata = get_str(&mut b)?;
    let commit_timestamp = if b.remaining() >= 8 { b.get_i64() } else { -1 };
    Some(Committed { offset, leader_epoch, metadata, commit_timestamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let k = OffsetKey { group: "g".into(), topic: "orders".into(), partition: 7 };
        assert_eq!(decode_key(encode_key(&k)), Some(k));
        let v = Committed { offset: 42, leader_epoch: 3, metadata: "m".into(), commit_timestamp: 99 };
        assert_eq!(decode_value(encode_value(&v)), Some(v));
    }

    #[test]
    fn kafka_layout_of_a_value() {
        let v = Committed { offset: 1, leader_epoch: -1, metadata: String::new(), commit_timestamp: 2 };
        let bytes = encode_value(&v);
        assert_eq!(&bytes[..], &[0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn garbage_and_group_metadata_keys_are_skipped() {
        assert_eq!(decode_key(Bytes::from_static(&[0, 2, 0, 1, b'g'])), None);
        assert_eq!(decode_key(Bytes::from_static(&[0, 1, 0, 9])), None);
        assert_eq!(decode_value(Bytes::from_static(&[0, 3])), None);
    }
}
