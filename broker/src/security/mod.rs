//! Who a connection is: listeners' security protocols, SASL authentication (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512, with KIP-368 re-authentication) and the users it
//! checks against.
//!
//! - [`session`]: one connection's authentication state, consulted before every
//!   request is decoded (only ApiVersions and the SASL requests pass until the
//!   client is authenticated).
//! - [`scram`], [`plain`]: the mechanisms' messages.
//! - [`users`]: the SCRAM credentials by user.

pub mod acl;
pub mod oauth;
pub mod plain;
pub mod scope;
pub mod scope_metrics;
pub mod scram;
pub mod session;
pub mod users;

use std::fmt;

use session::SaslMechanism;
use tributary_config::SecurityConfig;

/// What the SASL listeners offer, fixed at start.
pub struct Sasl {
    /// The mechanisms offered, in the configured order.
    pub mechanisms: Vec<SaslMechanism>,
    /// Keys the stand-in salts of unknown users (random per broker start).
    pub secret: Vec<u8>,
    /// How OAUTHBEARER tokens are checked, when offered.
    pub oauth: Option<oauth::OAuth>,
    /// Which scope each principal is in.
    pub scopes: std::sync::Arc<scope::Scopes>,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl").field("mechanisms", &self.mechanisms).finish_non_exhaustive()
    }
}

impl Sasl {
    /// What the configuration offers; an unreadable OAUTHBEARER key file is an error.
    pub fn new(config: &SecurityConfig) -> Result<Sasl, String> {
        let mechanisms: Vec<SaslMechanism> =
            config.sasl_mechanisms.iter().filter_map(|m| SaslMechanism::from_name(m)).collect();
        let oauth = match mechanisms.contains(&SaslMechanism::OAuthBearer) {
            true => Some(oauth::OAuth::load(&config.oauthbearer, &config.scopes.jwt_claim)?),
            false => None,
        };
        let scopes = std::sync::Arc::new(scope::Scopes::new(&config.scopes, &config.super_users));
        Ok(Sasl { mechanisms, secret: scram::random_bytes(32), oauth, scopes })
    }
}

/// An authenticated identity, as Kafka writes it: `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: &str) -> Principal {
        Principal { kind: "User".into(), name: name.into() }
    }

    /// Who a client is on a listener without authentication.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}
