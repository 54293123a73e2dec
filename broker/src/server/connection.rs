//! One client connection. The reader half reads frames and dispatches each request
//! in arrival order; anything with a side effect on order (appends) is started in
//! that order. Responses may complete out of order (a long-polling fetch, an append
//! waiting for fsync) but are written strictly in request order by the writer half.
//! A protocol error closes this connection only, with one log line naming the peer.
//! A client throttled for being over a quota is not read from until its throttle
//! time has passed.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tributary_protocol::frame;

use super::dispatch;
use crate::broker::Broker;
use crate::quotas::Mute;

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

/// How much is read from the socket at least at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Reads one frame. `Ok(None)`: the client closed the connection (or reset it, or
/// went away mid-request, which is logged at debug level only).
async fn read_frame(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, tributary_protocol::CodecError> {
    let mut need = frame::LENGTH_PREFIX;
    let mut len = None;
    loop {
        if buf.len() >= need {
            match len {
                None => {
                    let prefix: [u8; 4] = buf[..4].try_into().expect("invariant: 4 bytes buffered");
                    let l = frame::request_length(prefix, max)?;
                    len = Some(l);
                    need = frame::LENGTH_PREFIX + l;
                    continue;
                }
                Some(l) => {
                    buf.advance(frame::LENGTH_PREFIX);
                    return Ok(Some(buf.split_to(l).freeze()));
                }
            }
        }
        buf.reserve((need - buf.len()).max(READ_CHUNK));
        match rd.read_buf(buf).await {
            Ok(0) => {
                if !buf.is_empty() {
                    tracing::debug!(buffered = buf.len(), "client went away mid-request");
                }
                return Ok(None);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "read failed");
                return Ok(None);
            }
        }
    }
}

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
        // One buffer per connection: frames are split off it without zeroing a fresh
        // allocation per request, and bytes read past a frame start the next one.
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mute = Arc::new(Mute::default());
        loop {
            let frame = tokio::select! {
                _ = shutdown.cancelled() => break,
                f = async {
                    // A throttled client's next request waits on the socket.
                    mute.wait().await;
                    read_frame(&mut rd, &mut buf, max).await
                } => f,
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => break, // closed by the client, or reset
                Err(e) => {
                    broker.metrics.connection_errors.inc();
                    tracing::warn!(error = %e, "closing connection");
                    break;
                }
            };
            match dispatch::dispatch(&broker, peer, &mute, frame).await {
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
