//! Framing: every request and response is a 4-byte big-endian length followed by that
//! many bytes. The limit (`socket.request.max.bytes`) is checked before any allocation.

use crate::CodecError;

/// Size of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// The smallest request a client can send: api key, api version, correlation id and a
/// null client id (2 + 2 + 4 + 2 bytes).
pub const MIN_REQUEST_LEN: usize = 10;

/// Reads the length prefix and checks it against `max` before anything is allocated.
pub fn request_length(prefix: [u8; 4], max: usize) -> Result<usize, CodecError> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 {
        return Err(CodecError::NegativeLength(len));
    }
    let len = len as usize;
    if len > max {
        return Err(CodecError::FrameTooLarge { len, max });
    }
    if len < MIN_REQUEST_LEN {
        return Err(CodecError::FrameTooShort { len });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_negative_oversized_and_short_lengths() {
        assert!(matches!(request_length((-1i32).to_be_bytes(), 100), Err(CodecError::NegativeLength(-1))));
        assert!(matches!(
            request_length(101i32.to_be_bytes(), 100),
            Err(CodecError::FrameTooLarge { len: 101, max: 100 })
        ));
        assert!(matches!(request_length(9i32.to_be_bytes(), 100), Err(CodecError::FrameTooShort { len: 9 })));
        assert_eq!(request_length(100i32.to_be_bytes(), 100).unwrap(), 100);
    }
}
