//! The segment store (tier 2): sealed, immutable segments in long-term storage
//! through OpenDAL — a directory in the data directory by default, S3 or any other
//! OpenDAL service by configuration. Writes are idempotent; reads are ranged.
//!
//! This crate holds the operator construction and the object naming today; the
//! flusher that fills it comes with the segment-store work.

use opendal::services::Fs;
use opendal::Operator;

/// Why the segment store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TieringError {
    #[error("segment store: {0}")]
    Store(#[from] opendal::Error),
}

/// Builds the default operator: a directory on the local file system.
pub fn local_operator(root: &std::path::Path) -> Result<Operator, TieringError> {
    let builder = Fs::default().root(&root.to_string_lossy());
    Ok(Operator::new(builder)?.finish())
}

/// The object key of a sealed segment: `<scope>/<stream>/<partition>/<base offset>-<uuid>.seg`.
pub fn segment_key(scope: &str, stream: &str, partition: i32, base_offset: i64, id: &str) -> String {
    format!("{scope}/{stream}/{partition}/{base_offset:020}-{id}.seg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_operator_writes_and_reads_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let op = local_operator(dir.path()).unwrap();
        let key = segment_key("default", "orders", 3, 42, "abc");
        assert_eq!(key, "default/orders/3/00000000000000000042-abc.seg");
        op.write(&key, b"0123456789".to_vec()).await.unwrap();
        let part = op.read_with(&key).range(2..5).await.unwrap();
        assert_eq!(part.to_vec(), b"234");
    }
}
