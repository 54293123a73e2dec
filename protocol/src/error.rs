//! Errors of the codec. The `kafka-protocol` crate reports `anyhow` errors; they are
//! wrapped here with the context a reader needs (which API, which version).

/// Why a frame, a header, a message or a record batch could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is too short for a request header")]
    FrameTooShort { len: usize },
    #[error("invalid frame length {0}")]
    NegativeLength(i32),
    #[error("cannot decode {what} (api key {api_key}, version {version}): {reason}")]
    Decode { what: &'static str, api_key: i16, version: i16, reason: String },
    #[error("cannot encode {what} (version {version}): {reason}")]
    Encode { what: &'static str, version: i16, reason: String },
    #[error("record batch: {0}")]
    Batch(#[from] crate::batch::BatchError),
}
