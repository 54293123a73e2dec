//! Authorized operations, answered where a client asks for them
//! (`include_*_authorized_operations` in Metadata, DescribeCluster, DescribeGroups,
//! ConsumerGroupDescribe): a bit field of Kafka's ACL operation codes. With no
//! authorizer configured, as here, Kafka grants every operation the resource type
//! supports, and so does this broker. Not asked for, the field is `i32::MIN`.

/// Kafka's ACL operation codes.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

const fn field(ops: &[u8]) -> i32 {
    let mut out = 0;
    let mut i = 0;
    while i < ops.len() {
        out |= 1 << ops[i];
        i += 1;
    }
    out
}

/// Every operation a topic supports.
pub(crate) const TOPIC: i32 = field(&[READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS]);
/// Every operation a group supports.
pub(crate) const GROUP: i32 = field(&[READ, DESCRIBE, DELETE]);
/// Every operation the cluster supports.
pub(crate) const CLUSTER: i32 =
    field(&[CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE]);

/// `ops` when asked for, else Kafka's "not asked" value.
pub(crate) fn if_asked(asked: bool, ops: i32) -> i32 {
    if asked {
        ops
    } else {
        i32::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_match_kafkas() {
        // As Kafka's brokers answer without an authorizer (AclEntry.supportedOperations).
        assert_eq!(GROUP, 0b1_0100_1000);
        assert_eq!(TOPIC, 0b1101_1111_1000);
        assert_eq!(CLUSTER, 0b1_1111_1010_0000);
        assert_eq!(if_asked(false, TOPIC), i32::MIN);
    }
}
