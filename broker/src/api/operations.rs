//! Authorized operations, answered where a client asks for them
//! (`include_*_authorized_operations` in Metadata, DescribeCluster, DescribeGroups,
//! ConsumerGroupDescribe, DescribeTopicPartitions): a bit field of Kafka's ACL
//! operation codes, those of the resource type the client may do. With no
//! authorizer configured Kafka grants every operation the type supports, and so
//! does this broker. Not asked for, the field is `i32::MIN`.

use super::RequestCtx;
use crate::security::acl::ResourceType;

/// The client's operations on the resource when asked, else Kafka's "not asked".
pub(crate) fn if_asked(ctx: &RequestCtx, asked: bool, rt: ResourceType, name: &str) -> i32 {
    if asked {
        ctx.authorized_operations(rt, name)
    } else {
        i32::MIN
    }
}

#[cfg(test)]
mod tests {
    use crate::security::acl::{Acls, Authorizer, ResourceType};

    #[test]
    fn bit_fields_without_an_authorizer_match_kafkas() {
        // As Kafka's brokers answer without an authorizer (AclEntry.supportedOperations).
        let open = Authorizer::new(false, &[], false, Default::default());
        let ops = |rt| open.operations("User:ANONYMOUS", "h", rt, "x");
        assert_eq!(ops(ResourceType::Group), 0b1_0100_1000);
        assert_eq!(ops(ResourceType::Topic), 0b1101_1111_1000);
        assert_eq!(ops(ResourceType::Cluster), 0b1_1111_1010_0000);
        let closed = Authorizer::new(true, &[], false, std::sync::Arc::new(Acls::default()));
        assert_eq!(closed.operations("User:ANONYMOUS", "h", ResourceType::Topic, "x"), 0);
    }
}
