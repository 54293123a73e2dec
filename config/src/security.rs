//! Listeners and their security: the security protocol of each listener (Kafka's
//! PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), TLS certificates, the SASL mechanisms
//! offered, users created at first start, and the authorizer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A listener's security protocol, as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityProtocol {
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// TLS on the connection.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// SASL authentication before any other request.
    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// A listener besides `listen` (Kafka's `listeners` entries): its own address,
/// advertised address and security protocol. Clients that connect through it are
/// given every broker's address on the listener of the same name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique among the listeners; `default` is the one of `listen`.
    pub name: String,
    /// HOST:PORT to bind.
    pub listen: String,
    /// HOST:PORT given to clients in Metadata; empty means `listen`.
    #[serde(default)]
    pub advertised: String,
    pub protocol: SecurityProtocol,
}

/// Security: the protocol of the `listen` listener, TLS, SASL and the authorizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Security protocol of the `listen` listener.
    pub protocol: SecurityProtocol,
    /// SASL mechanisms offered on SASL listeners: any of SCRAM-SHA-512,
    /// SCRAM-SHA-256 and PLAIN (checked against the users' SCRAM credentials).
    pub sasl_mechanisms: Vec<String>,
    /// KIP-368: an authenticated SASL session lasts at most this long; the client
    /// re-authenticates on the same connection before then, or the broker closes it.
    /// 0: sessions do not expire.
    pub connections_max_reauth_ms: u64,
    /// Users created at start when they have no credential yet, name -> password:
    /// their SCRAM-SHA-256 and SCRAM-SHA-512 credentials are stored (salted, as
    /// Kafka stores them), the password never is. Change it once started.
    pub bootstrap_users: BTreeMap<String, String>,
    /// PBKDF2 iterations of the bootstrap users' credentials.
    pub bootstrap_iterations: u32,
    /// ACLs are checked on every request (Kafka's StandardAuthorizer semantics).
    pub authorizer: bool,
    /// Principals allowed everything, ACLs or not (`User:admin`).
    pub super_users: Vec<String>,
    /// With the authorizer on: whether a resource no ACL names is open to everyone
    /// (Kafka's `allow.everyone.if.no.acl.found`).
    pub allow_everyone_if_no_acl_found: bool,
    pub tls: TlsConfig,
    pub oauthbearer: OAuthConfig,
    pub scopes: ScopesConfig,
}

/// Scopes (tenants): each principal belongs to one and sees only its streams,
/// groups and transactional ids, under their plain names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScopesConfig {
    pub enabled: bool,
    /// A user named `alice@acme` is in scope `acme` (empty: no scope from the name).
    pub user_separator: String,
    /// Principals given a scope by name (`"User:bob" = "acme"`); wins over the name.
    pub principals: std::collections::BTreeMap<String, String>,
    /// OAUTHBEARER: the token claim naming the scope; wins over everything.
    pub jwt_claim: String,
    /// mTLS: the subject attribute naming the scope (`O`, `OU`, ...).
    pub tls_field: String,
    /// Principals that see every scope (super users do too).
    pub operators: Vec<String>,
    /// Partitions one scope may hold in all (0: no limit); over it, creating or
    /// growing a topic answers POLICY_VIOLATION.
    pub max_partitions: u32,
    /// Bytes one scope may store (0: no limit); over it, produce answers
    /// POLICY_VIOLATION until retention or deletes bring it back under.
    pub max_stored_bytes: u64,
    /// Connections one scope's principals may hold at once (0: no limit); one more
    /// fails its authentication.
    pub max_connections: u32,
    /// How often each scope's stored bytes are summed (ms).
    pub usage_interval_ms: u64,
}

impl Default for ScopesConfig {
    fn default() -> Self {
        ScopesConfig {
            enabled: false,
            user_separator: "@".into(),
            principals: Default::default(),
            jwt_claim: String::new(),
            tls_field: String::new(),
            operators: Vec::new(),
            max_partitions: 0,
            max_stored_bytes: 0,
            max_connections: 0,
            usage_interval_ms: 5000,
        }
    }
}

/// SASL/OAUTHBEARER: how the JWTs clients present are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// PEM public keys (RSA or EC) that may sign tokens (RS*, PS*, ES256, ES384).
    pub public_key_files: Vec<String>,
    /// A shared secret for HS256/384/512 tokens; empty refuses them.
    pub hmac_secret: String,
    /// The `aud` a token must carry; empty: not checked.
    pub audience: String,
    /// The `iss` a token must carry; empty: not checked.
    pub issuer: String,
    /// The claim that names the principal (`User:<value>`).
    pub principal_claim: String,
    /// Tolerated clock difference for `exp` and `nbf` (ms).
    pub clock_skew_ms: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            public_key_files: Vec::new(),
            hmac_secret: String::new(),
            audience: String::new(),
            issuer: String::new(),
            principal_claim: "sub".into(),
            clock_skew_ms: 30_000,
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanisms: vec!["SCRAM-SHA-512".into(), "SCRAM-SHA-256".into(), "PLAIN".into()],
            connections_max_reauth_ms: 0,
            bootstrap_users: BTreeMap::new(),
            bootstrap_iterations: 8192,
            authorizer: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            tls: TlsConfig::default(),
            oauthbearer: OAuthConfig::default(),
            scopes: ScopesConfig::default(),
        }
    }
}

/// When a TLS listener asks clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// TLS of the SSL and SASL_SSL listeners. The files are read again when they
/// change, so certificates are renewed without a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the broker, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM certificates of the authorities client certificates must chain to.
    pub ca_file: String,
    pub client_auth: ClientAuth,
    /// How often the files are checked for a change.
    pub reload_interval_ms: u64,
    /// Kafka's `ssl.principal.mapping.rules`: `RULE:pattern/replacement/[LU]` (the
    /// pattern matching the whole subject DN) or `DEFAULT` (the DN itself), tried
    /// in order; a certificate no rule maps is refused.
    pub principal_mapping_rules: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: String::new(),
            key_file: String::new(),
            ca_file: String::new(),
            client_auth: ClientAuth::None,
            reload_interval_ms: 10_000,
            principal_mapping_rules: vec!["DEFAULT".into()],
        }
    }
}

/// The SASL mechanisms Tributary implements.
pub const SASL_MECHANISMS: &[&str] = &["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"];

/// A scope name: 1 to 64 of `[A-Za-z0-9._-]` (so `<scope>/<name>` is unambiguous).
pub fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 64
        && scope.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
