//! The Kafka listener: accepts connections within the limits ([`limits`]) and runs
//! one task per connection until shutdown.

mod connection;
mod dispatch;
mod limits;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Accepts connections until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let slots = Arc::new(limits::ConnectionLimits::new(&broker.config.limits));
    let memory = Arc::new(tokio::sync::Semaphore::new(broker.config.limits.queued_max_request_bytes as usize));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                broker.metrics.connections_refused.with_label_values(&[refusal.label()]).inc();
                tracing::warn!(%peer, "connection refused: {}", refusal.reason());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        let memory = memory.clone();
        tokio::spawn(async move {
            broker.metrics.connections.inc();
            broker.metrics.connections_total.inc();
            connection::run(stream, peer, broker.clone(), memory, shutdown).await;
            broker.metrics.connections.dec();
            drop(slot);
        });
    }
}
