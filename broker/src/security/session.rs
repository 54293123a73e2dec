//! One connection's authentication. On a SASL listener a client may send only
//! ApiVersions, SaslHandshake and SaslAuthenticate until it is authenticated; any
//! other request closes the connection, as Kafka does. A failed authentication is
//! answered with SASL_AUTHENTICATION_FAILED and then the connection is closed.
//! With `connections_max_reauth_ms` set, a session lasts that long: the client
//! re-authenticates on the same connection (KIP-368) as the same principal, or the
//! broker closes the connection at its next request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use std::time::Instant;
use tributary_config::SecurityProtocol;
use tributary_protocol::kafka_protocol::messages::ApiKey;

use super::scope::Scope;
use super::scram::{Mechanism, ScramError, ServerFirst};
use super::users::Users;
use super::{plain, Principal};

/// A SASL mechanism a listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
    OAuthBearer,
}

impl SaslMechanism {
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            "OAUTHBEARER" => Some(SaslMechanism::OAuthBearer),
            other => Mechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

/// The listener a connection came in on.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
}

#[derive(Debug)]
enum State {
    /// Waiting for SaslHandshake (first authentication, or re-authentication while
    /// `current` stays valid).
    Handshake,
    /// The mechanism is chosen; waiting for its first SaslAuthenticate.
    Chosen(SaslMechanism),
    /// SCRAM between the client's first and final messages.
    Scram(Box<ServerFirst>),
    /// Authenticated; nothing in progress.
    Done,
}

/// Why a request may not be served on this connection now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0:?} before SASL authentication")]
    NotAuthenticated(ApiKey),
    #[error("the SASL session expired (security.connections_max_reauth_ms) and the client did not re-authenticate")]
    Expired,
}

/// What a SaslAuthenticate step produced.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated: send these bytes; the session lasts `lifetime` (if bounded).
    Done { bytes: Vec<u8>, lifetime: Option<Duration> },
    /// Failed: answer SASL_AUTHENTICATION_FAILED with this message, then close.
    Failed(String),
}

/// What SaslAuthenticate checks against.
#[derive(Debug, Clone, Copy)]
pub struct Verifiers<'a> {
    pub users: &'a Users,
    pub scopes: &'a Arc<super::scope::Scopes>,
    pub oauth: Option<&'a super::oauth::OAuth>,
    /// Bounds a session's lifetime (0: unbounded).
    pub reauth_ms: u64,
    /// Keeps unknown users' stand-in salts stable.
    pub secret: &'a [u8],
}

#[derive(Debug)]
pub struct Session {
    pub listener: Arc<Listener>,
    /// This connection counted against its scope's connection limit.
    counted: Mutex<Option<super::scope::Counted>>,
    /// The client's address as ACLs name hosts.
    pub host: Arc<str>,
    state: Mutex<(State, Option<Authenticated>)>,
    closing: AtomicBool,
    /// The client software's name and version, as its ApiVersions v3+ said them
    /// (KIP-511; client telemetry matches on them).
    software: Mutex<Option<(Arc<str>, Arc<str>)>>,
}

#[derive(Debug, Clone)]
struct Authenticated {
    principal: Principal,
    /// The names it sees.
    scope: Scope,
    /// `User:name`, as ACLs name it, made once per authentication.
    acl_name: Arc<str>,
    expires: Option<Instant>,
}

impl Authenticated {
    fn new(principal: Principal, scope: Scope, expires: Option<Instant>) -> Authenticated {
        Authenticated { acl_name: principal.to_string().into(), principal, scope, expires }
    }
}

impl Session {
    /// A session on `listener`; without SASL the client is `principal` at once
    /// (ANONYMOUS, or the subject of its TLS certificate).
    pub fn new(listener: Arc<Listener>, principal: Principal, scope: Scope, host: std::net::IpAddr) -> Session {
        let current = (!listener.protocol.sasl()).then(|| Authenticated::new(principal, scope, None));
        let state = if current.is_some() { State::Done } else { State::Handshake };
        Session {
            listener,
            counted: Mutex::new(None),
            host: host.to_string().into(),
            state: Mutex::new((state, current)),
            closing: AtomicBool::new(false),
            software: Mutex::new(None),
        }
    }

    /// Records the client software's name and version (ApiVersions v3+).
    pub fn set_software(&self, name: &str, version: &str) {
        *self.software.lock() = Some((name.into(), version.into()));
    }

    /// The client software's name and version, empty when it never said them.
    pub fn software(&self) -> (Arc<str>, Arc<str>) {
        self.software.lock().clone().unwrap_or_else(|| ("".into(), "".into()))
    }

    /// The principal requests are made as; ANONYMOUS before authentication.
    pub fn principal(&self) -> Principal {
        self.state.lock().1.as_ref().map(|a| a.principal.clone()).unwrap_or_else(Principal::anonymous)
    }

    /// Counts the connection against its scope's limit (non-SASL sessions, whose
    /// scope is known at once); `Err` says which limit it would pass.
    pub fn count_in(&self, scopes: &Arc<super::scope::Scopes>) -> Result<(), String> {
        let counted = scopes.connect(&self.scope())?;
        *self.counted.lock() = counted;
        Ok(())
    }

    /// The names the connection sees (before authentication: none of a scope's).
    pub fn scope(&self) -> Scope {
        match &self.state.lock().1 {
            Some(a) => a.scope.clone(),
            None => Scope::Default,
        }
    }

    /// The principal as ACLs name it (`User:alice`), without copying it.
    pub fn acl_name(&self) -> Arc<str> {
        match &self.state.lock().1 {
            Some(a) => a.acl_name.clone(),
            None => Arc::from("User:ANONYMOUS"),
        }
    }

    /// Whether a request with this key may be served now.
    pub fn admit(&self, key: ApiKey, now: Instant) -> Result<(), Refusal> {
        let s = self.state.lock();
        let sasl_step = matches!(key, ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        match &s.1 {
            None if sasl_step => Ok(()),
            None => Err(Refusal::NotAuthenticated(key)),
            Some(a) => match a.expires {
                Some(at) if now >= at && !sasl_step => Err(Refusal::Expired),
                _ => Ok(()),
            },
        }
    }

    /// Whether the connection is to be closed once the answer in hand is sent.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn close_after_reply(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// SaslHandshake: chooses the mechanism. `Err` is the Kafka error code to
    /// answer; the connection then closes.
    pub fn handshake(&self, mechanism: &str, enabled: &[SaslMechanism]) -> Result<(), i16> {
        let mut s = self.state.lock();
        let ready = match s.0 {
            State::Handshake => true,
            // Re-authentication (KIP-368) of an authenticated SASL session.
            State::Done => self.listener.protocol.sasl(),
            _ => false,
        };
        if !ready {
            drop(s);
            self.close_after_reply();
            return Err(ILLEGAL_SASL_STATE);
        }
        match SaslMechanism::from_name(mechanism).filter(|m| enabled.contains(m)) {
            Some(m) => {
                s.0 = State::Chosen(m);
                Ok(())
            }
            None => {
                drop(s);
                self.close_after_reply();
                Err(UNSUPPORTED_SASL_MECHANISM)
            }
        }
    }

    /// SaslAuthenticate: one step of the chosen mechanism at `now`.
    pub fn authenticate(&self, bytes: &[u8], v: &Verifiers<'_>, now: Instant) -> Result<Step, i16> {
        let (users, secret) = (v.users, v.secret);
        let mut s = self.state.lock();
        let state = std::mem::replace(&mut s.0, State::Done);
        let user = match state {
            State::Chosen(SaslMechanism::Plain) => match plain::parse(bytes) {
                Some((user, password)) if users.check_password(&user, &password) => user,
                _ => return Ok(self.fail(&mut s, "Authentication failed: Invalid username or password")),
            },
            State::Chosen(SaslMechanism::OAuthBearer) => {
                let verified = match v.oauth {
                    Some(oauth) => oauth.verify(bytes),
                    None => Err("OAUTHBEARER is not configured".into()),
                };
                return Ok(match verified {
                    Ok(t) => {
                        let principal = Principal::user(&t.principal);
                        let scope = v.scopes.scope_of(&principal, t.scope.as_deref());
                        self.done(&mut s, v, principal, scope, Vec::new(), Some(t.lifetime), now)
                    }
                    Err(reason) => {
                        tracing::info!(%reason, "OAUTHBEARER token refused");
                        self.fail(&mut s, "Authentication failed: Invalid token")
                    }
                });
            }
            State::Chosen(SaslMechanism::Scram(m)) => {
                return match ServerFirst::start(m, bytes, |u| users.credential(u, m), secret) {
                    Ok((exchange, out)) => {
                        s.0 = State::Scram(Box::new(exchange));
                        Ok(Step::Continue(out))
                    }
                    Err(e) => Ok(self.fail(&mut s, &scram_failure(m, &e))),
                };
            }
            State::Scram(exchange) => {
                let m = exchange.mechanism();
                let user = exchange.user().to_string();
                match exchange.finish(bytes) {
                    Ok(out) => {
                        let principal = Principal::user(&user);
                        let scope = v.scopes.scope_of(&principal, None);
                        return Ok(self.done(&mut s, v, principal, scope, out, None, now));
                    }
                    Err(e) => return Ok(self.fail(&mut s, &scram_failure(m, &e))),
                }
            }
            State::Handshake | State::Done => {
                s.0 = State::Handshake;
                drop(s);
                self.close_after_reply();
                return Err(ILLEGAL_SASL_STATE);
            }
        };
        let principal = Principal::user(&user);
        let scope = v.scopes.scope_of(&principal, None);
        Ok(self.done(&mut s, v, principal, scope, Vec::new(), None, now))
    }

    #[allow(clippy::too_many_arguments)]
    fn done(
        &self,
        s: &mut (State, Option<Authenticated>),
        v: &Verifiers<'_>,
        principal: Principal,
        scope: Scope,
        bytes: Vec<u8>,
        token_lifetime: Option<Duration>,
        now: Instant,
    ) -> Step {
        let reauth_ms = v.reauth_ms;
        if let Some(before) = &s.1 {
            if before.principal != principal {
                // KIP-368: re-authentication may not change who the connection is.
                return self.fail(s, "Cannot change principals during re-authentication");
            }
        }
        if s.1.is_none() {
            // A first authentication takes a place within its scope's connections.
            match v.scopes.connect(&scope) {
                Ok(counted) => *self.counted.lock() = counted,
                Err(why) => return self.fail(s, &format!("Authentication failed: {why}")),
            }
        }
        // KIP-368: no longer than the setting, nor than the token it rests on.
        let configured = (reauth_ms > 0).then(|| Duration::from_millis(reauth_ms));
        let lifetime = match (configured, token_lifetime) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        s.0 = State::Done;
        s.1 = Some(Authenticated::new(principal, scope, lifetime.map(|l| now + l)));
        Step::Done { bytes, lifetime }
    }

    fn fail(&self, s: &mut (State, Option<Authenticated>), message: &str) -> Step {
        s.0 = State::Handshake;
        self.close_after_reply();
        Step::Failed(message.to_string())
    }
}

fn scram_failure(m: Mechanism, e: &ScramError) -> String {
    match e {
        ScramError::Credentials => format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            m.name()
        ),
        other => format!("Authentication failed: {other}"),
    }
}

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::ScramCredential;

    fn sasl_session() -> Session {
        Session::new(
            Arc::new(Listener { name: "default".into(), protocol: SecurityProtocol::SaslPlaintext }),
            Principal::anonymous(),
            Scope::All,
            std::net::Ipv4Addr::LOCALHOST.into(),
        )
    }

    fn v(users: &Users, reauth_ms: u64) -> Verifiers<'_> {
        static SCOPES: std::sync::OnceLock<Arc<crate::security::scope::Scopes>> = std::sync::OnceLock::new();
        let scopes = SCOPES.get_or_init(|| Arc::new(crate::security::scope::Scopes::new(&Default::default(), &[])));
        Verifiers { users, scopes, oauth: None, reauth_ms, secret: b"k" }
    }

    fn users() -> Users {
        let users = Users::default();
        let mut c = super::super::users::Credentials::new();
        c.insert(Mechanism::Sha256, ScramCredential::from_password(Mechanism::Sha256, "pw", 4096));
        users.set("alice", c);
        users
    }

    #[test]
    fn only_sasl_requests_pass_before_authentication() {
        let s = sasl_session();
        assert!(s.admit(ApiKey::ApiVersions, Instant::now()).is_ok());
        assert!(s.admit(ApiKey::SaslHandshake, Instant::now()).is_ok());
        assert_eq!(s.admit(ApiKey::Metadata, Instant::now()), Err(Refusal::NotAuthenticated(ApiKey::Metadata)));
        let plain = Session::new(
            Arc::new(Listener { name: "p".into(), protocol: SecurityProtocol::Plaintext }),
            Principal::anonymous(),
            Scope::All,
            std::net::Ipv4Addr::LOCALHOST.into(),
        );
        assert!(plain.admit(ApiKey::Produce, Instant::now()).is_ok());
    }

    #[test]
    fn plain_authenticates_and_a_wrong_password_closes() {
        let s = sasl_session();
        let users = users();
        s.handshake("PLAIN", &[SaslMechanism::Plain]).unwrap();
        let step = s.authenticate(b"\0alice\0pw", &v(&users, 0), Instant::now()).unwrap();
        assert!(matches!(step, Step::Done { lifetime: None, .. }));
        assert_eq!(s.principal(), Principal::user("alice"));
        assert!(s.admit(ApiKey::Produce, Instant::now()).is_ok());
        assert!(!s.closing());

        let s = sasl_session();
        s.handshake("PLAIN", &[SaslMechanism::Plain]).unwrap();
        assert!(matches!(s.authenticate(b"\0alice\0no", &v(&users, 0), Instant::now()).unwrap(), Step::Failed(_)));
        assert!(s.closing());
        assert!(s.admit(ApiKey::Produce, Instant::now()).is_err());
    }

    #[test]
    fn an_unoffered_mechanism_or_a_step_out_of_order_closes() {
        let s = sasl_session();
        assert_eq!(s.handshake("PLAIN", &[SaslMechanism::Scram(Mechanism::Sha512)]), Err(33));
        assert!(s.closing());
        let s = sasl_session();
        assert_eq!(s.authenticate(b"x", &v(&users(), 0), Instant::now()).unwrap_err(), 34);
        assert!(s.closing());
    }

    #[test]
    fn a_session_expires_unless_renewed_as_the_same_principal() {
        let s = sasl_session();
        let users = users();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(1500);
        s.handshake("PLAIN", &[SaslMechanism::Plain]).unwrap();
        let step = s.authenticate(b"\0alice\0pw", &v(&users, 1000), t0).unwrap();
        assert!(matches!(step, Step::Done { lifetime: Some(l), .. } if l == Duration::from_secs(1)));
        assert!(s.admit(ApiKey::Fetch, t0).is_ok());
        assert_eq!(s.admit(ApiKey::Fetch, later), Err(Refusal::Expired));
        // Re-authentication renews it.
        s.handshake("PLAIN", &[SaslMechanism::Plain]).unwrap();
        s.authenticate(b"\0alice\0pw", &v(&users, 1000), later).unwrap();
        assert!(s.admit(ApiKey::Fetch, later).is_ok());
        // As another user, it fails and closes.
        let mut c = super::super::users::Credentials::new();
        c.insert(Mechanism::Sha256, ScramCredential::from_password(Mechanism::Sha256, "pw2", 4096));
        users.set("bob", c);
        s.handshake("PLAIN", &[SaslMechanism::Plain]).unwrap();
        assert!(matches!(s.authenticate(b"\0bob\0pw2", &v(&users, 1000), later).unwrap(), Step::Failed(_)));
        assert!(s.closing());
    }
}
