//! Request and response headers.
//!
//! [`peek`] reads the api key, api version and correlation id from the fixed first
//! eight bytes without decoding anything else, so that the broker can answer an
//! unknown API or an unsupported version (KIP-511) before the typed decoder, which
//! fails on unknown keys, ever sees the request.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::frame::MIN_REQUEST_LEN;
use crate::message::{Request, Response};
use crate::CodecError;

/// The first fields of every request header, whatever its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prelude {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads the fixed prefix of a request header. `frame` is the request without its
/// length prefix; frames shorter than [`MIN_REQUEST_LEN`] are rejected by framing.
pub fn peek(frame: &[u8]) -> Option<Prelude> {
    if frame.len() < MIN_REQUEST_LEN {
        return None;
    }
    Some(Prelude {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes the header and the typed body of a request whose key and version the
/// caller has already checked as supported.
pub fn decode_request(key: ApiKey, version: i16, mut frame: Bytes) -> Result<(RequestHeader, Request), CodecError> {
    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| CodecError::Decode {
        what: "request header",
        api_key: key as i16,
        version,
        reason: e.to_string(),
    })?;
    let body = Request::decode(key, version, &mut frame)?;
    Ok((header, body))
}

/// Encodes a complete response frame: length prefix, response header, body.
pub fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &Response,
) -> Result<Bytes, CodecError> {
    // Sized once: a fetch response of megabytes would otherwise grow by doubling,
    // copying and faulting in fresh pages at every step.
    let mut buf = BytesMut::with_capacity(response_frame_size(version, response)?);
    encode_response_into(&mut buf, key, version, correlation_id, response)?;
    Ok(buf.freeze())
}

/// The bytes a response frame takes at most (header: length, correlation id, and
/// at most a tagged-field count).
pub fn response_frame_size(version: i16, response: &Response) -> Result<usize, CodecError> {
    Ok(4 + 8 + response.encoded_size(version)?)
}

/// Appends a complete response frame to `buf` (a buffer the caller reuses).
pub fn encode_response_into(
    buf: &mut BytesMut,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &Response,
) -> Result<(), CodecError> {
    let start = buf.len();
    buf.put_i32(0);
    // ApiVersions answers always use header v0 so that a client that sent a version we
    // do not know can still read the answer (KIP-511).
    let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(buf, header_version)
        .map_err(|e| CodecError::Encode { what: "response header", version, reason: e.to_string() })?;
    response.encode(version, buf)?;
    let len = (buf.len() - start - 4) as i32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Encodes a complete request frame: length prefix, request header, body (what a
/// broker sends another broker).
#[cfg(feature = "client")]
pub fn encode_request(
    version: i16,
    correlation_id: i32,
    client_id: &str,
    request: &Request,
) -> Result<Bytes, CodecError> {
    let key = request.api_key();
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_string(client_id.to_string())))
        .encode(&mut buf, key.request_header_version(version))
        .map_err(|e| CodecError::Encode { what: "request header", version, reason: e.to_string() })?;
    request.encode(version, &mut buf)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a response frame (without its length prefix) to a request sent at
/// `version`: its correlation id and typed body.
#[cfg(feature = "client")]
pub fn decode_response(key: ApiKey, version: i16, mut frame: Bytes) -> Result<(i32, Response), CodecError> {
    let header_version = if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
    let header = ResponseHeader::decode(&mut frame, header_version).map_err(|e| CodecError::Decode {
        what: "response header",
        api_key: key as i16,
        version,
        reason: e.to_string(),
    })?;
    Ok((header.correlation_id, Response::decode(key, version, &mut frame)?))
}

/// Reads a response frame's correlation id (for tests and tools that act as clients).
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    let mut b = frame;
    (b.remaining() >= 4).then(|| b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;

    #[test]
    fn peek_reads_fixed_prefix() {
        let frame = [0u8, 18, 0, 3, 0, 0, 0, 7, 0xff, 0xff];
        assert_eq!(peek(&frame), Some(Prelude { api_key: 18, api_version: 3, correlation_id: 7 }));
        assert_eq!(peek(&frame[..9]), None);
    }

    #[test]
    fn api_versions_response_uses_header_v0_at_v3() {
        let resp = Response::ApiVersions(ApiVersionsResponse::default());
        let frame = encode_response(ApiKey::ApiVersions, 3, 42, &resp).unwrap();
        let len = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(response_correlation_id(&frame[4..]), Some(42));
        // header v0 has no tagged fields: the error code follows the correlation id
        assert_eq!(&frame[8..10], &[0, 0]);
    }

    #[test]
    fn a_hostile_array_count_is_refused_without_allocating_it() {
        // Found by fuzz/request_frame: a CreateTopics v4 whose configs array claims
        // 0x00ea6000.. entries; unpatched, decoding allocated 186 GB and aborted.
        let frame = Bytes::from_static(
            b"\x00\x13\x00\x04\x00\x00\x00\x03\x00\x07rdkafd-compact\x00\x00\x00\x01\xff\xff\x00\x00\x00\x00\
              \x00\x00\x00\x01\x00\x0ecleanup.policy\x00\x07compact\x00\x00\xea\x60\x00",
        );
        assert!(decode_request(ApiKey::CreateTopics, 4, frame).is_err());
        // And any count in any array position: every frame decodes or fails, promptly.
        let mut hostile = vec![0u8, 19, 0, 4, 0, 0, 0, 3, 0, 0];
        hostile.extend_from_slice(&0x7fff_fff0i32.to_be_bytes());
        assert!(decode_request(ApiKey::CreateTopics, 4, Bytes::from(hostile)).is_err());
    }
}
