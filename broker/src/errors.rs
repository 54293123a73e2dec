//! The one place where internal errors become Kafka error codes.

pub(crate) use tributary_protocol::kafka_protocol::ResponseError as Error;

use crate::broker::ChangeError;
use crate::cluster::CatalogError;
use crate::storage::StorageError;

/// The Kafka error code for a storage error.
pub(crate) fn code(e: &StorageError) -> i16 {
    match e {
        StorageError::UnknownPartition | StorageError::UnknownTopic(_) => Error::UnknownTopicOrPartition,
        StorageError::TopicExists(_) => Error::TopicAlreadyExists,
        StorageError::OffsetOutOfRange { .. } => Error::OffsetOutOfRange,
        StorageError::OutOfOrderSequence { .. } => Error::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => Error::InvalidProducerEpoch,
        StorageError::CoordinatorFenced { .. } => Error::TransactionCoordinatorFenced,
        // Retriable for producers and consumers alike: the journal drains once the
        // segment store takes uploads again.
        StorageError::JournalFailed(_)
        | StorageError::Io { .. }
        | StorageError::Corrupt { .. }
        | StorageError::SegmentStore(_)
        | StorageError::JournalFull { .. }
        | StorageError::DataDirLocked(_) => Error::KafkaStorageError,
        StorageError::ShuttingDown | StorageError::NotLeader => Error::NotLeaderOrFollower,
    }
    .code()
}

/// The Kafka error code for a failed topic change.
pub(crate) fn change_code(e: &ChangeError) -> i16 {
    match e {
        ChangeError::Storage(e) => code(e),
        ChangeError::Catalog(CatalogError::Exists(_)) => Error::TopicAlreadyExists.code(),
        ChangeError::Catalog(CatalogError::Unknown(_)) => Error::UnknownTopicOrPartition.code(),
        ChangeError::Catalog(CatalogError::Storage(_)) => Error::KafkaStorageError.code(),
        // etcd is unreachable or slow: the change may or may not have happened.
        ChangeError::Catalog(CatalogError::Etcd(_) | CatalogError::NotApplied(_)) => Error::RequestTimedOut.code(),
    }
}

/// The error a coordinator answers when writing its state failed: a partition of an
/// internal topic that is gone or a broker shutting down means "ask again".
pub(crate) fn coordinator(e: &StorageError) -> Error {
    match e {
        StorageError::ShuttingDown | StorageError::UnknownPartition | StorageError::UnknownTopic(_) => {
            Error::CoordinatorNotAvailable
        }
        StorageError::NotLeader => Error::NotCoordinator,
        _ => Error::KafkaStorageError,
    }
}

/// Shorthand for codes the handlers decide themselves (validation failures).
pub(crate) const fn of(e: Error) -> i16 {
    e.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_the_codes_clients_expect() {
        assert_eq!(code(&StorageError::UnknownPartition), 3);
        assert_eq!(code(&StorageError::OffsetOutOfRange { offset: 9, log_start_offset: 0, high_watermark: 5 }), 1);
        assert_eq!(code(&StorageError::TopicExists("t".into())), 36);
        assert_eq!(code(&StorageError::JournalFailed("disk".into())), 56);
    }
}
