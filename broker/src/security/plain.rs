//! SASL/PLAIN (RFC 4616): `[authzid] NUL authcid NUL password`.

/// The user and password of a PLAIN message; `None` when it is malformed or asks
/// to act as another user.
pub fn parse(message: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.split('\0');
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || password.is_empty() {
        return None;
    }
    // As Kafka: an authorization id, if given, must be the user itself.
    if !authzid.is_empty() && authzid != user {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_authzid() {
        assert_eq!(parse(b"\0alice\0pw"), Some(("alice".into(), "pw".into())));
        assert_eq!(parse(b"alice\0alice\0pw"), Some(("alice".into(), "pw".into())));
        for bad in [&b"bob\0alice\0pw"[..], b"\0alice", b"\0\0pw", b"\0alice\0", b"\0a\0b\0c", b"\xff\0a\0b"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
