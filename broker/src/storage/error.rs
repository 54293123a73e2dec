//! Errors of the storage engine, with the context a reader needs. The mapping to
//! Kafka error codes lives in one place on the wire side (`errors`).

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unknown topic or partition")]
    UnknownPartition,
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("offset {offset} is out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, high_watermark: i64 },
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id}: epoch {got} is older than the current epoch {current}")]
    InvalidProducerEpoch { producer_id: i64, current: i16, got: i16 },
    #[error("producer {producer_id}: marker from coordinator epoch {got}, older than {current}")]
    CoordinatorFenced { producer_id: i64, current: i32, got: i32 },
    #[error("journal failed, no appends accepted: {0}")]
    JournalFailed(String),
    #[error("broker is shutting down")]
    ShuttingDown,
    #[error("this broker does not lead the partition (any more)")]
    NotLeader,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt data at journal position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("{0}")]
    DataDirLocked(String),
    #[error("segment store: {0}")]
    SegmentStore(String),
    #[error(
        "journal holds {bytes} bytes, over journal.max_bytes ({limit}), and the segment store is not taking uploads"
    )]
    JournalFull { bytes: u64, limit: u64 },
}

impl StorageError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
        let context = context.into();
        move |source| StorageError::Io { context, source }
    }
}
