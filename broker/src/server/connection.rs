//! One client connection. The reader half reads frames and dispatches each request
//! in arrival order; anything with a side effect on order (appends) is started in
//! that order. Responses may complete out of order (a long-polling fetch, an append
//! waiting for fsync) but are written strictly in request order by the writer half.
//! A protocol error closes this connection only, with one log line naming the peer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tributary_protocol::frame;

use super::dispatch;
use crate::broker::Broker;

/// What a request's turn in the response order produces.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// An encoded response frame.
    Frame(Bytes),
    /// No response is due (produce with acks=0).
    Nothing,
    /// The response could not be encoded: close rather than leave the client waiting.
    Close,
}

/// A response being prepared.
pub(crate) type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pub(super) async fn run(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>, shutdown: CancellationToken) {
    let span = tracing::info_span!("connection", %peer);
    async move {
        let (mut rd, wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Pending>(broker.config.limits.max_in_flight_per_connection);
        let writer = tokio::spawn(async move {
            let mut wr = BufWriter::new(wr);
            while let Some(pending) = rx.recv().await {
                match pending.await {
                    Outcome::Frame(frame) => {
                        if wr.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                    Outcome::Nothing => {}
                    Outcome::Close => {
                        let _ = wr.flush().await;
                        return;
                    }
                }
                if rx.is_empty() && wr.flush().await.is_err() {
                    return;
                }
            }
            let _ = wr.flush().await;
        });
        let max = broker.config.limits.socket_request_max_bytes as usize;
        loop {
            let mut prefix = [0u8; 4];
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = rd.read_exact(&mut prefix) => r,
            };
            if read.is_err() {
                break; // closed by the client, or reset
            }
            let len = match frame::request_length(prefix, max) {
                Ok(len) => len,
                Err(e) => {
                    broker.metrics.connection_errors.inc();
                    tracing::warn!(error = %e, "closing connection");
                    break;
                }
            };
            let mut body = vec![0u8; len];
            if let Err(e) = rd.read_exact(&mut body).await {
                tracing::debug!(error = %e, "client went away mid-request");
                break;
            }
            match dispatch::dispatch(&broker, Bytes::from(body)).await {
                Ok(pending) => {
                    if tx.send(pending).await.is_err() {
                        break;
                    }
                }
                Err(reason) => {
                    broker.metrics.connection_errors.inc();
                    tracing::warn!(%reason, "closing connection");
                    break;
                }
            }
        }
        drop(tx);
        let _ = writer.await;
    }
    .instrument(span)
    .await
}
