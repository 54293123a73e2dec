//! The segment store (tier 2): sealed, immutable segments in long-term storage
//! through OpenDAL — a directory in the data directory by default, S3 or any other
//! OpenDAL service by configuration. Writes are idempotent; reads are ranged.
//!
//! - [`operator`]: the OpenDAL operator from the `[storage]` section, with retries
//!   and backoff.
//! - [`segment`]: the sealed segment format (batches + footer with a sparse offset
//!   and time index), pure code.
//! - [`store`]: writes, ranged reads through a bounded block cache with read-ahead,
//!   deletes.
//!
//! The broker's flusher decides what to seal and records manifests; this crate
//! knows nothing of partitions beyond object names.

mod local;
pub mod segment;
pub use local::{aligned_buffer, open_direct, remove_gradually, ALIGN};
pub mod store;

use std::path::Path;
use std::time::Duration;

use opendal::layers::RetryLayer;
use opendal::services::{Fs, S3};
use opendal::Operator;
use tributary_config::StorageConfig;

/// Why the segment store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TieringError {
    #[error("segment store: {0}")]
    Store(#[from] opendal::Error),
    #[error("storage.backend: unknown backend {0:?}")]
    UnknownBackend(String),
    #[error("segment {0}: {1}")]
    Segment(String, segment::SegmentError),
    #[error("short read of {key} [{from}, {to}): {got} bytes")]
    ShortRead { key: String, from: u64, to: u64, got: usize },
}

/// The operator the `[storage]` section describes: `fs` under the data directory by
/// default, `s3`, or another OpenDAL service from `storage.options`; failed
/// operations retried with exponential backoff and jitter.
pub fn operator(config: &StorageConfig, data_dir: &Path) -> Result<Operator, TieringError> {
    let retry = RetryLayer::new()
        .with_max_times(config.retry_max_times as usize)
        .with_min_delay(Duration::from_millis(config.retry_min_delay_ms))
        .with_max_delay(Duration::from_millis(config.retry_max_delay_ms))
        .with_jitter();
    let op = match config.backend.as_str() {
        "fs" => {
            let root = local_root(config, data_dir).expect("the fs backend has a root");
            Operator::new(Fs::default().root(&root.to_string_lossy()))?.layer(retry).finish()
        }
        "s3" => {
            let s3 = &config.s3;
            let mut builder = S3::default().bucket(&s3.bucket).region(&s3.region).root(&s3.root);
            if !s3.endpoint.is_empty() {
                builder = builder.endpoint(&s3.endpoint);
            }
            if !s3.access_key_id.is_empty() {
                builder = builder.access_key_id(&s3.access_key_id).secret_access_key(&s3.secret_access_key);
            }
            if s3.virtual_host_style {
                builder = builder.enable_virtual_host_style();
            }
            Operator::new(builder)?.layer(retry).finish()
        }
        other if tributary_config::OTHER_SEGMENT_STORE_BACKENDS.contains(&other) => {
            let options = config.options.iter().map(|(k, v)| (k.clone(), v.clone()));
            Operator::via_iter(other, options)?.layer(retry)
        }
        other => return Err(TieringError::UnknownBackend(other.to_string())),
    };
    Ok(op)
}

/// The directory of an `fs` store (objects written there directly, see
/// [`store::SegmentStore::with_local_writes`]); `None` for any other backend.
pub fn local_root(config: &StorageConfig, data_dir: &Path) -> Option<std::path::PathBuf> {
    (config.backend == "fs").then(|| {
        if config.fs_root.is_empty() {
            data_dir.join("segments")
        } else {
            config.fs_root.clone().into()
        }
    })
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

/// The object key of a pack shared by small segments of several partitions.
pub fn pack_key(id: &str) -> String {
    format!("packs/{id}.pack")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_config_stores_segments_under_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let op = operator(&StorageConfig::default(), dir.path()).unwrap();
        op.write("a/b.seg", b"xyz".to_vec()).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("segments/a/b.seg")).unwrap(), b"xyz");
    }

    #[test]
    fn an_s3_config_builds_an_s3_operator() {
        let mut config = StorageConfig { backend: "s3".into(), ..StorageConfig::default() };
        config.s3.bucket = "segments".into();
        config.s3.endpoint = "http://127.0.0.1:9000".into();
        config.s3.access_key_id = "key".into();
        config.s3.secret_access_key = "secret".into();
        let op = operator(&config, Path::new("/unused")).unwrap();
        assert_eq!(op.info().scheme().to_string(), "s3");
        assert_eq!(op.info().name(), "segments");
        let bad = StorageConfig { backend: "tape".into(), ..StorageConfig::default() };
        assert!(matches!(operator(&bad, Path::new("/unused")), Err(TieringError::UnknownBackend(_))));
    }

    #[tokio::test]
    async fn another_service_takes_its_own_options() {
        let mut config = StorageConfig { backend: "memory".into(), ..StorageConfig::default() };
        config.options.insert("root".into(), "/tributary".into());
        let op = operator(&config, Path::new("/unused")).unwrap();
        assert_eq!(op.info().scheme().to_string(), "memory");
        assert_eq!(op.info().root(), "/tributary/");
        op.write("a/b.seg", b"xyz".to_vec()).await.unwrap();
        assert_eq!(op.read("a/b.seg").await.unwrap().to_vec(), b"xyz");
        // Options the service does not have are refused when it is built.
        let mut gcs = StorageConfig { backend: "gcs".into(), ..StorageConfig::default() };
        gcs.options.insert("bucket".into(), "segments".into());
        gcs.options.insert("root".into(), "/t".into());
        assert_eq!(operator(&gcs, Path::new("/unused")).unwrap().info().scheme().to_string(), "gcs");
    }

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
