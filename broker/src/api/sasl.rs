//! SaslHandshake and SaslAuthenticate: the client names a mechanism the listener
//! offers, then exchanges that mechanism's messages, each carried in a
//! SaslAuthenticate request. The connection's [`Session`](crate::security::session)
//! keeps the state; a failure is answered and then the connection is closed.

use std::time::Instant;

use bytes::Bytes;
use tributary_protocol::kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::RequestCtx;
use crate::errors::{of, Error};
use crate::security::session::{Step, Verifiers};

pub(super) fn handshake(ctx: &RequestCtx, request: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let security = &ctx.broker.security;
    let mechanisms = security.mechanisms.iter().map(|m| StrBytes::from_static_str(m.name())).collect();
    let error_code = match ctx.session.handshake(request.mechanism.as_str(), &security.mechanisms) {
        Ok(()) => 0,
        Err(code) => {
            tracing::info!(mechanism = %request.mechanism.as_str(), code, "SASL handshake refused; closing");
            code
        }
    };
    SaslHandshakeResponse::default().with_error_code(error_code).with_mechanisms(mechanisms)
}

pub(super) fn authenticate(ctx: &RequestCtx, request: SaslAuthenticateRequest) -> SaslAuthenticateResponse {
    let broker = &ctx.broker;
    let security = &broker.security;
    let verifiers = Verifiers {
        users: &broker.users,
        scopes: &security.scopes,
        oauth: security.oauth.as_ref(),
        reauth_ms: broker.config.security.connections_max_reauth_ms,
        secret: &security.secret,
    };
    let step = ctx.session.authenticate(&request.auth_bytes, &verifiers, Instant::now());
    let listener = ctx.session.listener.name.as_str();
    let response = SaslAuthenticateResponse::default().with_error_message(None);
    match step {
        Ok(Step::Continue(bytes)) => response.with_auth_bytes(Bytes::from(bytes)),
        Ok(Step::Done { bytes, lifetime }) => {
            broker.metrics.authentications.with_label_values(&[listener, "success"]).inc();
            tracing::debug!(principal = %ctx.session.principal(), "authenticated");
            response
                .with_auth_bytes(Bytes::from(bytes))
                .with_session_lifetime_ms(lifetime.map_or(0, |l| l.as_millis() as i64))
        }
        Ok(Step::Failed(message)) => {
            broker.metrics.authentications.with_label_values(&[listener, "failure"]).inc();
            tracing::info!(peer = %ctx.peer, %message, "SASL authentication failed; closing");
            response.with_error_code(of(Error::SaslAuthenticationFailed)).with_error_message(Some(message.into()))
        }
        Err(code) => {
            broker.metrics.authentications.with_label_values(&[listener, "failure"]).inc();
            tracing::info!(peer = %ctx.peer, code, "SaslAuthenticate out of turn; closing");
            response.with_error_code(code).with_error_message(Some(StrBytes::from_static_str(
                "SaslAuthenticate before SaslHandshake chose a mechanism",
            )))
        }
    }
}
