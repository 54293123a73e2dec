//! The HTTP listener: `/metrics` (Prometheus text format), `/health/live` (the
//! process answers) and `/health/ready` (recovery done, Kafka listener accepting,
//! and the journal taking writes: 503 while a full disk or an I/O error refuses
//! them, so an operator and an orchestrator see it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::storage::Storage;

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    /// The storage engine, once open.
    pub storage: Arc<OnceLock<Weak<Storage>>>,
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: HttpState, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .with_state(state);
    let result = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP listener failed");
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}

async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "recovering\n");
    }
    match state.storage.get().and_then(Weak::upgrade) {
        Some(s) if !s.writable() => (StatusCode::SERVICE_UNAVAILABLE, "journal not writable (disk full or failing)\n"),
        _ => (StatusCode::OK, "ready\n"),
    }
}
