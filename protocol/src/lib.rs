//! The Kafka wire codec of Tributary. Pure: bytes in, typed values or an error out;
//! no tokio, no I/O, no globals.
//!
//! # Layout
//! - [`frame`]: the 4-byte length prefix and the request size limit.
//! - [`header`]: peeking at api key / version / correlation id before decoding, so that
//!   an unknown key or version can be answered (KIP-511) instead of failing the decode;
//!   decoding the request header and encoding response headers.
//! - [`message`]: the typed requests and responses Tributary understands, generated from
//!   one list of API keys (the `kafka-protocol` crate supplies the message structs).
//! - [`batch`]: a zero-copy view of a v2 record batch: header fields, CRC-32C check,
//!   base-offset and timestamp patching.
//! - [`records`]: iteration over the records inside a batch (decompressing if needed),
//!   for the few places that must look inside (timestamp lookups).
//! - [`validate`]: record-level validation of a batch before it is accepted
//!   (codec, bounded streaming decompression, counts, offset deltas, record shape).
//! - [`build`]: encoding the batches the broker writes itself (internal records,
//!   control batches).
//! - [`error`]: the codec's error type.
//! - [`response_errors`]: every error code a response carries, for counting.
//!
//! A request flows: frame -> [`header::peek`] -> [`header::decode_request`] ->
//! [`message::Request`]; a response flows: [`message::Response`] ->
//! [`header::encode_response`] -> frame.

pub mod batch;
pub mod build;
pub mod error;
pub mod frame;
pub mod header;
pub mod message;
pub mod records;
pub mod response_errors;
pub mod validate;

pub use error::CodecError;
/// The message structs, re-exported so that the whole workspace uses one version.
pub use kafka_protocol;
