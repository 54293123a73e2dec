//! SASL/OAUTHBEARER (RFC 7628, KIP-255 and KIP-768): the client sends a JWT, the
//! broker checks its signature against the configured public keys (RSA or EC, or
//! an HMAC secret), its expiry and not-before with a clock skew, its audience and
//! issuer where configured, and takes the principal from a claim (`sub` by
//! default). The session lasts no longer than the token (KIP-368). JWT decoding
//! and signatures are the `jsonwebtoken` crate's.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tributary_config::OAuthConfig;

/// A verified token: who it names and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: String,
    /// The scope the token names (`[security.scopes] jwt_claim`), if any.
    pub scope: Option<String>,
    /// Left of the token's life.
    pub lifetime: Duration,
}

/// The keys and rules tokens are checked against, fixed at start.
pub struct OAuth {
    rsa: Vec<DecodingKey>,
    ec: Vec<DecodingKey>,
    hmac: Option<DecodingKey>,
    config: OAuthConfig,
    scope_claim: String,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("rsa_keys", &self.rsa.len())
            .field("ec_keys", &self.ec.len())
            .field("hmac", &self.hmac.is_some())
            .finish_non_exhaustive()
    }
}

impl OAuth {
    /// Reads the public key files; an error names the file.
    pub fn load(config: &OAuthConfig, scope_claim: &str) -> Result<OAuth, String> {
        let mut rsa = Vec::new();
        let mut ec = Vec::new();
        for file in &config.public_key_files {
            let pem = std::fs::read(file).map_err(|e| format!("security.oauthbearer.public_key_files {file}: {e}"))?;
            if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                rsa.push(k);
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                ec.push(k);
            } else {
                return Err(format!("security.oauthbearer.public_key_files {file}: not an RSA or EC public key (PEM)"));
            }
        }
        let hmac = (!config.hmac_secret.is_empty()).then(|| DecodingKey::from_secret(config.hmac_secret.as_bytes()));
        Ok(OAuth { rsa, ec, hmac, config: config.clone(), scope_claim: scope_claim.to_string() })
    }

    /// Checks a client's OAUTHBEARER message; `Err` says why, for the log.
    pub fn verify(&self, message: &[u8]) -> Result<Verified, String> {
        let (authzid, token) = parse(message).ok_or("malformed OAUTHBEARER message")?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let keys: Vec<&DecodingKey> = match header.alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self.rsa.iter().collect(),
            Algorithm::ES256 | Algorithm::ES384 => self.ec.iter().collect(),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self.hmac.iter().collect(),
            other => return Err(format!("tokens signed with {other:?} are not accepted")),
        };
        if keys.is_empty() {
            return Err(format!("no key configured for tokens signed with {:?}", header.alg));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.clock_skew_ms / 1000;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if self.config.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&self.config.audience]);
        }
        if !self.config.issuer.is_empty() {
            validation.set_issuer(&[&self.config.issuer]);
        }
        let mut last = String::new();
        for key in keys {
            match jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(token, key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let principal = claims
                        .get(&self.config.principal_claim)
                        .and_then(|v| v.as_str())
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| format!("the token has no {:?} claim", self.config.principal_claim))?;
                    if authzid.is_some_and(|a| a != principal) {
                        return Err("the authorization id is not the token's principal".into());
                    }
                    let exp = claims.get("exp").and_then(|v| v.as_f64()).unwrap_or(0.0);
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
                    let lifetime = Duration::from_secs_f64((exp - now).max(0.0));
                    let scope = (!self.scope_claim.is_empty())
                        .then(|| claims.get(&self.scope_claim).and_then(|v| v.as_str()).map(str::to_string))
                        .flatten();
                    return Ok(Verified { principal: principal.to_string(), scope, lifetime });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("invalid token: {last}"))
    }
}

/// `n,[a=authzid],` then `\x01`-separated key=value pairs ending in `\x01\x01`,
/// one of them `auth=Bearer <token>`: the authorization id and the token.
fn parse(message: &[u8]) -> Option<(Option<&str>, &str)> {
    let text = std::str::from_utf8(message).ok()?;
    let (flag, rest) = text.split_once(',')?;
    if flag != "n" && flag != "y" {
        return None;
    }
    let (authzid, rest) = rest.split_once(',')?;
    let authzid = match authzid {
        "" => None,
        a => Some(a.strip_prefix("a=")?),
    };
    let body = rest.strip_prefix('\x01')?.strip_suffix("\x01\x01")?;
    let token = body.split('\x01').find_map(|kv| kv.strip_prefix("auth=Bearer "))?;
    (!token.is_empty()).then_some((authzid, token.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn config() -> OAuthConfig {
        OAuthConfig { hmac_secret: "s3cret".into(), audience: "kafka".into(), ..OAuthConfig::default() }
    }

    fn token(claims: serde_json::Value, secret: &str) -> Vec<u8> {
        let t = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap();
        format!("n,,\x01auth=Bearer {t}\x01\x01").into_bytes()
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_valid_token_names_its_principal_and_bounds_the_session() {
        let oauth = OAuth::load(&config(), "").unwrap();
        let v = oauth.verify(&token(serde_json::json!({"sub": "svc", "aud": "kafka", "exp": now() + 600}), "s3cret"));
        let v = v.unwrap();
        assert_eq!(v.principal, "svc");
        assert!(v.lifetime > Duration::from_secs(590) && v.lifetime <= Duration::from_secs(600));
    }

    #[test]
    fn forged_expired_and_misaddressed_tokens_are_refused() {
        let oauth = OAuth::load(&config(), "").unwrap();
        let exp = now() + 600;
        let bad = [
            token(serde_json::json!({"sub": "svc", "aud": "kafka", "exp": exp}), "forged"),
            token(serde_json::json!({"sub": "svc", "aud": "kafka", "exp": now() - 120}), "s3cret"),
            token(serde_json::json!({"sub": "svc", "aud": "other", "exp": exp}), "s3cret"),
            token(serde_json::json!({"aud": "kafka", "exp": exp}), "s3cret"),
            token(serde_json::json!({"sub": "svc", "aud": "kafka"}), "s3cret"),
            b"n,,\x01auth=Bearer not.a.jwt\x01\x01".to_vec(),
            b"garbage".to_vec(),
        ];
        for (i, m) in bad.iter().enumerate() {
            assert!(oauth.verify(m).is_err(), "case {i} accepted");
        }
    }

    #[test]
    fn messages_parse_as_rfc7628_says() {
        assert_eq!(parse(b"n,,\x01auth=Bearer abc\x01\x01"), Some((None, "abc")));
        assert_eq!(parse(b"n,a=me,\x01host=h\x01auth=Bearer abc\x01\x01"), Some((Some("me"), "abc")));
        assert_eq!(parse(b"n,,\x01auth=Basic abc\x01\x01"), None);
        assert_eq!(parse(b"n,,auth=Bearer abc"), None);
    }
}
