//! The Kafka listener: accepts connections (up to `limits.max_connections`) and runs
//! one task per connection until shutdown.

mod connection;
mod dispatch;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Accepts connections until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(broker.config.limits.max_connections));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: limits.max_connections reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            broker.metrics.connections.inc();
            broker.metrics.connections_total.inc();
            connection::run(stream, peer, broker.clone(), shutdown).await;
            broker.metrics.connections.dec();
            drop(slot);
        });
    }
}
