//! The Kafka listeners: `listen` (named `default`) and those of `[[listeners]]`,
//! each with its security protocol. Connections are accepted within the limits
//! ([`limits`], shared by all listeners), TLS is negotiated where the listener asks
//! for it ([`tls`]), and one task per connection runs until shutdown.

mod connection;
mod dispatch;
mod limits;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tributary_config::{Config, SecurityProtocol};

use crate::broker::Broker;
use crate::security::session::{Listener, Session};
use crate::security::Principal;

/// A bound listener with what its connections need.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    pub info: Arc<Listener>,
    tls: Option<Arc<tls::Tls>>,
}

/// Binds every listener of the configuration; the TLS files are read now, so a
/// bad certificate refuses the start with a message naming the file.
pub async fn bind(config: &Config) -> anyhow::Result<Vec<Bound>> {
    let tls = match std::iter::once(config.security.protocol)
        .chain(config.listeners.iter().map(|l| l.protocol))
        .any(|p| p.tls())
    {
        true => Some(Arc::new(tls::Tls::load(&config.security.tls).map_err(anyhow::Error::msg)?)),
        false => None,
    };
    let mut all = vec![("default".to_string(), config.listen.clone(), config.security.protocol)];
    all.extend(config.listeners.iter().map(|l| (l.name.clone(), l.listen.clone(), l.protocol)));
    let mut bound = Vec::new();
    for (name, address, protocol) in all {
        let listener =
            TcpListener::bind(&address).await.with_context(|| format!("cannot bind listener {name} ({address})"))?;
        let tls = protocol.tls().then(|| tls.clone()).flatten();
        bound.push(Bound { listener, info: Arc::new(Listener { name, protocol }), tls });
    }
    Ok(bound)
}

/// Serves one PLAINTEXT listener named `default` (tests and tools).
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let info = Arc::new(Listener { name: "default".into(), protocol: SecurityProtocol::Plaintext });
    serve_all(vec![Bound { listener, info, tls: None }], broker, shutdown).await
}

/// Accepts connections on every listener until `shutdown` is cancelled.
pub async fn serve_all(bound: Vec<Bound>, broker: Arc<Broker>, shutdown: CancellationToken) {
    let slots = Arc::new(limits::ConnectionLimits::new(&broker.config.limits));
    let memory = Arc::new(tokio::sync::Semaphore::new(broker.config.limits.queued_max_request_bytes as usize));
    let mut tasks = Vec::new();
    let mut reloading = false;
    for b in bound {
        if let (Some(tls), false) = (&b.tls, reloading) {
            tasks.push(tokio::spawn(tls.clone().reload_while(shutdown.clone())));
            reloading = true;
        }
        let shared =
            Shared { broker: broker.clone(), slots: slots.clone(), memory: memory.clone(), shutdown: shutdown.clone() };
        tasks.push(tokio::spawn(accept(b, shared)));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[derive(Clone)]
struct Shared {
    broker: Arc<Broker>,
    slots: Arc<limits::ConnectionLimits>,
    memory: Arc<tokio::sync::Semaphore>,
    shutdown: CancellationToken,
}

async fn accept(b: Bound, shared: Shared) {
    let broker = &shared.broker;
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = b.listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match shared.slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                broker.metrics.connections_refused.with_label_values(&[refusal.label()]).inc();
                tracing::warn!(%peer, "connection refused: {}", refusal.reason());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let info = b.info.clone();
        let tls = b.tls.clone();
        tokio::spawn(async move {
            let broker = shared.broker.clone();
            broker.metrics.connections.inc();
            broker.metrics.connections_total.inc();
            run(stream, peer, info, tls, &shared).await;
            broker.metrics.connections.dec();
            drop(slot);
        });
    }
}

/// One connection: TLS first where the listener has it, then requests.
async fn run(stream: TcpStream, peer: SocketAddr, info: Arc<Listener>, tls: Option<Arc<tls::Tls>>, shared: &Shared) {
    let broker = shared.broker.clone();
    let Some(tls) = tls else {
        let principal = Principal::anonymous();
        let scope = broker.security.scopes.scope_of(&principal, None);
        let session = Arc::new(Session::new(info, principal, scope, peer.ip()));
        if let Err(why) = session.count_in(&broker.security.scopes) {
            tracing::info!(%peer, %why, "connection refused: its scope is at its connection limit");
            return;
        }
        let (rd, wr) = stream.into_split();
        connection::run(rd, wr, peer, session, broker, shared.memory.clone(), shared.shutdown.clone()).await;
        return;
    };
    let limit = Duration::from_millis(broker.config.limits.request_read_timeout_ms);
    let stream = match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            broker.metrics.authentications.with_label_values(&[&info.name, "failure"]).inc();
            tracing::info!(%peer, listener = %info.name, error = %e, "TLS handshake failed; closing");
            return;
        }
        Err(_) => {
            broker.metrics.authentications.with_label_values(&[&info.name, "failure"]).inc();
            tracing::info!(%peer, listener = %info.name, "TLS handshake not completed in time; closing");
            return;
        }
    };
    // mTLS: the certificate's subject is the principal (through the mapping rules),
    // unless SASL names one.
    let principal = match stream.get_ref().1.peer_certificates().and_then(|certs| certs.first()) {
        None => Principal::anonymous(),
        Some(cert) => match tls::principal(cert, &tls.rules) {
            Some(p) => p,
            None => {
                broker.metrics.authentications.with_label_values(&[&info.name, "failure"]).inc();
                tracing::info!(%peer, listener = %info.name, "no principal mapping rule applies to the client certificate; closing");
                return;
            }
        },
    };
    if info.protocol == SecurityProtocol::Ssl {
        broker.metrics.authentications.with_label_values(&[&info.name, "success"]).inc();
    }
    let scope = broker.security.scopes.scope_of(&principal, None);
    let session = Arc::new(Session::new(info, principal, scope, peer.ip()));
    if !session.listener.protocol.sasl() {
        if let Err(why) = session.count_in(&broker.security.scopes) {
            broker.metrics.authentications.with_label_values(&[&session.listener.name, "failure"]).inc();
            tracing::info!(%peer, %why, "connection refused: its scope is at its connection limit");
            return;
        }
    }
    let (rd, wr) = tokio::io::split(stream);
    connection::run(rd, wr, peer, session, broker, shared.memory.clone(), shared.shutdown.clone()).await;
}
