//! TLS of the SSL and SASL_SSL listeners (rustls): the broker's certificate and key,
//! and, with `client_auth`, the authorities client certificates must chain to. The
//! files are read again whenever one of them changes, so a renewed certificate is
//! served to new connections without a restart; a bad file is logged and the
//! previous certificates stay.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tributary_config::{ClientAuth, TlsConfig};

use crate::security::Principal;

/// The current TLS configuration, replaced when its files change.
#[derive(Debug)]
pub struct Tls {
    config: TlsConfig,
    pub rules: PrincipalRules,
    current: RwLock<(Arc<ServerConfig>, Vec<Option<SystemTime>>)>,
}

impl Tls {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(config: &TlsConfig) -> Result<Tls, String> {
        let server = build(config)?;
        let stamps = stamps(config);
        let rules = PrincipalRules::parse(&config.principal_mapping_rules)?;
        Ok(Tls { config: config.clone(), rules, current: RwLock::new((Arc::new(server), stamps)) })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().0.clone())
    }

    /// Re-reads the files when any changed, every `reload_interval_ms`.
    pub async fn reload_while(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_millis(self.config.reload_interval_ms);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = stamps(&self.config);
            if now == self.current.read().1 {
                continue;
            }
            match build(&self.config) {
                Ok(server) => {
                    *self.current.write() = (Arc::new(server), now);
                    tracing::info!("TLS certificates reloaded");
                }
                Err(e) => {
                    // Keep serving the previous certificates; try again at the next change.
                    self.current.write().1 = now;
                    tracing::warn!(error = %e, "TLS certificates not reloaded; the previous ones stay in use");
                }
            }
        }
    }
}

fn stamps(c: &TlsConfig) -> Vec<Option<SystemTime>> {
    [&c.cert_file, &c.key_file, &c.ca_file]
        .iter()
        .map(|f| std::fs::metadata(f.as_str()).and_then(|m| m.modified()).ok())
        .collect()
}

fn build(c: &TlsConfig) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert_file)
        .and_then(|i| i.collect())
        .map_err(|e| format!("security.tls.cert_file {}: {e}", c.cert_file))?;
    if certs.is_empty() {
        return Err(format!("security.tls.cert_file {}: no certificate in it", c.cert_file));
    }
    let key =
        PrivateKeyDer::from_pem_file(&c.key_file).map_err(|e| format!("security.tls.key_file {}: {e}", c.key_file))?;
    // ring rather than aws-lc-rs keeps the build free of cmake and a C toolchain's
    // quirks; it lacks only the post-quantum key exchange, which Kafka clients'
    // TLS stacks (JSSE, OpenSSL 3) do not offer by default either.
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match c.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let mut roots = RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(&c.ca_file)
                .map_err(|e| format!("security.tls.ca_file {}: {e}", c.ca_file))?
            {
                let ca = ca.map_err(|e| format!("security.tls.ca_file {}: {e}", c.ca_file))?;
                roots.add(ca).map_err(|e| format!("security.tls.ca_file {}: {e}", c.ca_file))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("security.tls.ca_file: {e}"))?)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| format!("security.tls: certificate and key: {e}"))
}

/// Kafka's `ssl.principal.mapping.rules`: each a pattern over the whole subject DN
/// with its replacement and case, or DEFAULT (the DN itself).
#[derive(Debug)]
pub struct PrincipalRules(Vec<Rule>);

#[derive(Debug)]
enum Rule {
    Default,
    Map { pattern: regex::Regex, replacement: String, case: Option<char> },
}

impl PrincipalRules {
    pub fn parse(rules: &[String]) -> Result<PrincipalRules, String> {
        let bad = |r: &str, why: &str| format!("security.tls.principal_mapping_rules: {r:?}: {why}");
        let mut out = Vec::new();
        for r in rules {
            let r = r.trim();
            if r == "DEFAULT" {
                out.push(Rule::Default);
                continue;
            }
            let body = r.strip_prefix("RULE:").ok_or_else(|| bad(r, "not RULE:pattern/replacement/[LU] or DEFAULT"))?;
            let (rest, case) = match body.rsplit_once('/') {
                Some((rest, "")) => (rest, None),
                Some((rest, "L")) => (rest, Some('L')),
                Some((rest, "U")) => (rest, Some('U')),
                _ => return Err(bad(r, "must end with /, /L or /U")),
            };
            let (pattern, replacement) = rest.rsplit_once('/').ok_or_else(|| bad(r, "no replacement"))?;
            let pattern = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| bad(r, &e.to_string()))?;
            out.push(Rule::Map { pattern, replacement: replacement.to_string(), case });
        }
        Ok(PrincipalRules(out))
    }

    /// The principal name of a subject DN, or `None` when no rule maps it.
    pub fn map(&self, dn: &str) -> Option<String> {
        for rule in &self.0 {
            match rule {
                Rule::Default => return Some(dn.to_string()),
                Rule::Map { pattern, replacement, case } => {
                    if let Some(c) = pattern.captures(dn) {
                        let mut name = String::new();
                        c.expand(replacement, &mut name);
                        return Some(match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        });
                    }
                }
            }
        }
        None
    }
}

/// The principal of a verified client certificate: `User:` and its subject's
/// distinguished name as Kafka writes it (`CN=alice,OU=eng,O=acme`), through the
/// mapping rules.
pub fn principal(cert: &CertificateDer<'_>, rules: &PrincipalRules) -> Option<Principal> {
    subject(cert).and_then(|dn| rules.map(&dn)).map(|name| Principal::user(&name))
}

/// The subject DN in RFC 2253 order, as Java's X500Principal prints it.
fn subject(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    // RFC 2253 order (most specific first), as Java's X500Principal prints it.
    let mut parts = Vec::new();
    for rdn in parsed.subject().iter_rdn() {
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            let name = x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                .map(str::to_string)
                .unwrap_or_else(|_| oid.to_id_string());
            let value = attr.as_str().ok()?;
            parts.push(format!("{name}={}", escape_dn(value)));
        }
    }
    parts.reverse();
    Some(parts.join(","))
}

fn escape_dn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_rules_work_as_kafkas() {
        let rules = PrincipalRules::parse(&[
            "RULE:^CN=([^,]+),OU=eng,O=acme$/$1@acme/L".to_string(),
            "RULE:^CN=(.*?),O=(.*)$/$2-$1/U".to_string(),
            "DEFAULT".to_string(),
        ])
        .unwrap();
        assert_eq!(rules.map("CN=Alice,OU=eng,O=acme").as_deref(), Some("alice@acme"));
        assert_eq!(rules.map("CN=bob,O=beta").as_deref(), Some("BETA-BOB"));
        assert_eq!(rules.map("C=SE").as_deref(), Some("C=SE"));
        let strict = PrincipalRules::parse(&["RULE:^CN=(.*)$/$1/".to_string()]).unwrap();
        assert_eq!(strict.map("O=x"), None, "no rule: refused");
        for bad in ["RULE:x", "RULE:(/a/", "NOPE", "RULE:a/b/Q"] {
            assert!(PrincipalRules::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
