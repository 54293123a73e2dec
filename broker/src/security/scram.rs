//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: the
//! stored credential (salt, iterations, StoredKey, ServerKey: never the password),
//! and the server side of the exchange. The primitives (PBKDF2, HMAC, SHA-2) come
//! from the RustCrypto crates; this file is the message flow and its checks.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The SCRAM mechanisms, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

/// Kafka's bounds on a credential's iterations.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The ScramMechanism code of DescribeUserScramCredentials and
    /// AlterUserScramCredentials.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("invariant: HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("invariant: HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Mechanism::Sha512 => {
                let mut out = vec![0; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// What the broker stores of a user's password for one mechanism.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: i32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential of a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted(mechanism: Mechanism, salt: Vec<u8>, salted_password: &[u8], iterations: i32) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// The credential of a password with a fresh random salt.
    pub fn from_password(mechanism: Mechanism, password: &str, iterations: i32) -> Self {
        let salt = random_bytes(24);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations as u32);
        ScramCredential::from_salted(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN
    /// checked against the SCRAM store). Costs one PBKDF2.
    pub fn matches_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations as u32);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        bool::from(mechanism.hash(&client_key).ct_eq(&self.stored_key))
    }
}

pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    getrandom::getrandom(&mut out).expect("invariant: the operating system provides random bytes");
    out
}

/// Why an exchange failed. The client is told only that authentication failed;
/// the reason is for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("SCRAM extensions (delegation tokens) are not supported")]
    Extension,
    #[error("the nonce does not continue the server's")]
    Nonce,
    #[error("invalid credentials")]
    Credentials,
}

/// The server half of one exchange, between the client's first and final messages.
#[derive(Debug)]
pub struct ServerFirst {
    mechanism: Mechanism,
    user: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// `None` for an unknown user: the exchange goes on with a made-up salt and
    /// fails at the proof, so the answers do not tell which users exist.
    credential: Option<ScramCredential>,
}

impl ServerFirst {
    /// Reads the client-first message and answers the server-first one.
    /// `lookup` gives the user's credential; `secret` makes the stand-in salt of an
    /// unknown user stable per broker.
    pub fn start(
        mechanism: Mechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        secret: &[u8],
    ) -> Result<(ServerFirst, Vec<u8>), ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = text.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(ScramError::Malformed("bad authorization identity"));
        }
        let mut user = None;
        let mut client_nonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match (i, attr.split_at_checked(2)) {
                (0, Some(("m=", _))) => return Err(ScramError::Malformed("mandatory extension")),
                (0, Some(("n=", name))) => user = Some(decode_saslname(name)?),
                (1, Some(("r=", nonce))) => client_nonce = Some(nonce),
                // Kafka's delegation tokens say `tokenauth=true`.
                (_, _) if attr.starts_with("tokenauth") => return Err(ScramError::Extension),
                (i, _) if i >= 2 => {}
                _ => return Err(ScramError::Malformed("expected n=user,r=nonce")),
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = client_nonce.filter(|n| printable(n)).ok_or(ScramError::Malformed("bad client nonce"))?;
        if let Some(a) = authzid.strip_prefix("a=") {
            if decode_saslname(a)? != user {
                return Err(ScramError::Credentials);
            }
        }
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (mechanism.hmac(secret, user.as_bytes())[..24].to_vec(), 4096),
        };
        let nonce = format!("{client_nonce}{}", B64.encode(random_bytes(24)));
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let out = server_first.clone().into_bytes();
        let exchange = ServerFirst {
            mechanism,
            user,
            gs2_header: format!("{flag},{authzid},"),
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
            credential,
        };
        Ok((exchange, out))
    }

    /// The user the client named.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Checks the client-final message's proof; answers the server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = parts.next().and_then(|c| c.strip_prefix("c=")).ok_or(ScramError::Malformed("no c="))?;
        let nonce = parts.next().and_then(|r| r.strip_prefix("r=")).ok_or(ScramError::Malformed("no r="))?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBinding);
        }
        if nonce != self.nonce {
            return Err(ScramError::Nonce);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let credential = self.credential.ok_or(ScramError::Credentials)?;
        let m = self.mechanism;
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::Credentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
            return Err(ScramError::Credentials);
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// `=2C` and `=3D` back to `,` and `=` (RFC 5802 saslname); any other `=` is an error.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

fn printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

mod b64 {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side, as RFC 5802 describes it, to drive the server.
    fn client_final(m: Mechanism, password: &str, client_first_bare: &str, server_first: &str) -> String {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = m.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn rfc7677_example_verifies() {
        // RFC 7677 section 3: user "user", password "pencil".
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let cred = ScramCredential::from_salted(m, salt, &salted, 4096);
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (exchange, _) = ServerFirst::start(m, client_first, |_| Some(cred.clone()), b"k").unwrap();
        // Replace the random server nonce with the RFC's to check its proof byte for byte.
        let exchange = ServerFirst {
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .into(),
            ..exchange
        };
        let final_msg = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let server_final = exchange.finish(final_msg).unwrap();
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn both_mechanisms_accept_the_password_and_refuse_another() {
        for m in Mechanism::ALL {
            let cred = ScramCredential::from_password(m, "secret", 4096);
            assert!(cred.matches_password(m, "secret"));
            assert!(!cred.matches_password(m, "Secret"));
            for (password, ok) in [("secret", true), ("wrong", false)] {
                let bare = "n=alice,r=abcdefgh";
                let (ex, first) =
                    ServerFirst::start(m, format!("n,,{bare}").as_bytes(), |_| Some(cred.clone()), b"k").unwrap();
                let fin = client_final(m, password, bare, std::str::from_utf8(&first).unwrap());
                assert_eq!(ex.finish(fin.as_bytes()).is_ok(), ok, "{m:?} {password}");
            }
        }
    }

    #[test]
    fn an_unknown_user_looks_like_a_known_one_until_the_proof() {
        let m = Mechanism::Sha512;
        let (ex, first) = ServerFirst::start(m, b"n,,n=nobody,r=abc", |_| None, b"k").unwrap();
        let (_, again) = ServerFirst::start(m, b"n,,n=nobody,r=abc", |_| None, b"k").unwrap();
        let salt = |f: &[u8]| std::str::from_utf8(f).unwrap().split(',').nth(1).unwrap().to_string();
        assert_eq!(salt(&first), salt(&again), "the stand-in salt is stable");
        let fin = client_final(m, "x", "n=nobody,r=abc", std::str::from_utf8(&first).unwrap());
        assert_eq!(ex.finish(fin.as_bytes()), Err(ScramError::Credentials));
    }

    #[test]
    fn malformed_messages_are_errors() {
        let m = Mechanism::Sha256;
        for bad in [&b""[..], b"n", b"n,,", b"n,,r=abc", b"n,,n=,r=abc", b"n,,n=a=zz,r=x", b"p=tls,,n=a,r=b", b"\xff,,"]
        {
            assert!(ServerFirst::start(m, bad, |_| None, b"k").is_err(), "{bad:?}");
        }
        assert!(ServerFirst::start(m, b"n,,n=a,r=b,tokenauth=true", |_| None, b"k").is_err());
        let (ex, _) = ServerFirst::start(m, b"n,,n=a=2Cb,r=abc", |_| None, b"k").unwrap();
        assert_eq!(ex.user(), "a,b");
        assert!(ex.finish(b"garbage").is_err());
    }
}
