//! The records of the internal `__consumer_offsets` topic, in Kafka's own schemas so
//! that tools that read that topic (lag monitors) understand them:
//!
//! ```text
//! key   v1: i16 version=1, string group, string topic, i32 partition
//! value v3: i16 version=3, i64 offset, i32 leader_epoch, string metadata, i64 commit_timestamp
//! ```
//! A null value is a tombstone: the offset was deleted (DeleteGroups, OffsetDelete,
//! expiry).
//!
//! A classic group's metadata is a record of its own, in Kafka's schemas too:
//!
//! ```text
//! key   v2: i16 version=2, string group
//! value v3: i16 version=3, string protocol_type, i32 generation, nullable string
//!           protocol, nullable string leader, i64 current_state_timestamp,
//!           [member_id, nullable group_instance_id, client_id, client_host,
//!            i32 rebalance_timeout, i32 session_timeout, bytes subscription,
//!            bytes assignment]
//! ```
//! written when the group's generation or protocol type changes, so a group that
//! emptied keeps its protocol type and generation across a restart (as Kafka's
//! does); a null value is the group's tombstone (DeleteGroups, expiry).

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

/// A classic group's metadata as its record states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupMeta {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) timestamp: i64,
    pub(crate) members: Vec<MemberMeta>,
}

/// One member in a group metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberMeta {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) subscription: Bytes,
    pub(crate) assignment: Bytes,
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

pub(crate) fn encode_group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(2);
    put_str(&mut buf, group);
    buf.freeze()
}

pub(crate) fn encode_group_value(m: &GroupMeta) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(3);
    put_str(&mut buf, &m.protocol_type);
    buf.put_i32(m.generation);
    put_nullable_str(&mut buf, m.protocol.as_deref());
    put_nullable_str(&mut buf, m.leader.as_deref());
    buf.put_i64(m.timestamp);
    buf.put_i32(m.members.len() as i32);
    for member in &m.members {
        put_str(&mut buf, &member.member_id);
        put_nullable_str(&mut buf, member.instance_id.as_deref());
        put_str(&mut buf, &member.client_id);
        put_str(&mut buf, &member.client_host);
        buf.put_i32(member.rebalance_timeout_ms);
        buf.put_i32(member.session_timeout_ms);
        put_bytes(&mut buf, &member.subscription);
        put_bytes(&mut buf, &member.assignment);
    }
    buf.freeze()
}

/// The group of a group metadata key (v2), or `None` for other keys.
pub(crate) fn decode_group_key(mut b: Bytes) -> Option<String> {
    if b.remaining() < 2 || b.get_i16() != 2 {
        return None;
    }
    get_str(&mut b)
}

/// The protocol type and generation of a group metadata value (any version Kafka
/// wrote: they lead every one).
pub(crate) fn decode_group_value(mut b: Bytes) -> Option<(String, i32)> {
    if b.remaining() < 2 || !(0..=4).contains(&b.get_i16()) {
        return None;
    }
    let protocol_type = get_str(&mut b)?;
    if b.remaining() < 4 {
        return None;
    }
    Some((protocol_type, b.get_i32()))
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
    fn group_metadata_records_round_trip_in_kafkas_layout() {
        assert_eq!(decode_group_key(encode_group_key("g1")).as_deref(), Some("g1"));
        assert_eq!(&encode_group_key("g")[..], &[0, 2, 0, 1, b'g']);
        let m = GroupMeta {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            timestamp: 5,
            members: vec![MemberMeta {
                member_id: "m-1".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"as"),
            }],
        };
        let v = encode_group_value(&m);
        assert_eq!(decode_group_value(v.clone()), Some(("consumer".into(), 7)));
        // version, "consumer", generation 7, "range"
        assert_eq!(
            &v[..20],
            &[0, 3, 0, 8, b'c', b'o', b'n', b's', b'u', b'm', b'e', b'r', 0, 0, 0, 7, 0, 5, b'r', b'a']
        );
        let empty = GroupMeta { protocol: None, leader: None, members: vec![], ..m };
        assert_eq!(decode_group_value(encode_group_value(&empty)), Some(("consumer".into(), 7)));
        assert_eq!(decode_key(encode_group_key("g")), None, "not an offset key");
        assert_eq!(
            decode_group_key(encode_key(&OffsetKey { group: "g".into(), topic: "t".into(), partition: 0 })),
            None
        );
    }

    #[test]
    fn garbage_and_group_metadata_keys_are_skipped() {
        assert_eq!(decode_key(Bytes::from_static(&[0, 2, 0, 1, b'g'])), None);
        assert_eq!(decode_key(Bytes::from_static(&[0, 1, 0, 9])), None);
        assert_eq!(decode_value(Bytes::from_static(&[0, 3])), None);
    }
}
