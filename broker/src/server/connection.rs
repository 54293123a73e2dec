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
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tributary_protocol::frame;

use super::dispatch;
use crate::broker::Broker;
use crate::quotas::Mute;
use crate::security::session::Session;

/// What a request's turn in the response order produces.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// An encoded response frame, with its API's metrics label.
    Frame(Bytes, &'static str),
    /// No response is due (produce with acks=0).
    Nothing,
    /// The response could not be encoded: close rather than leave the client waiting.
    Close,
}

/// A response being prepared.
pub(crate) type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// How much is read from the socket at least at a time.
const READ_CHUNK: usize = 64 * 1024;
/// A connection's buffer past this size is given back after the frame that grew it.
const KEEP_BUFFER: usize = 4 * READ_CHUNK;
/// A frame's buffer holds at most this many times the bytes of it that arrived: once
/// a 32nd of a frame is there (a first chunk of a produce request of up to 2 MiB), the
/// buffer is made the frame's exact size, so the rest is read in place instead of
/// being copied at every doubling (each doubling copied what was there into fresh
/// memory the kernel had to zero: a tenth of the broker's CPU at 1 KiB records).
const GROW: usize = 32;

/// Why reading a frame ended without one.
enum ReadEnd {
    /// The client closed the connection, reset it, or went away mid-request.
    Closed,
    /// No request began within `connections.max.idle.ms`.
    Idle,
    /// A request began but did not complete within `request_read_timeout_ms`.
    Stalled,
    Codec(tributary_protocol::CodecError),
}

/// The bytes of an incomplete request, counted in the gauge until it is complete
/// or the connection goes.
struct Counted<'a> {
    gauge: &'a prometheus::IntGauge,
    bytes: i64,
}

impl Counted<'_> {
    fn set(&mut self, bytes: usize) {
        self.gauge.add(bytes as i64 - self.bytes);
        self.bytes = bytes as i64;
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

/// How a connection reads frames: its limits and the broker-wide memory budget of
/// requests being read.
struct FrameReader {
    reading: prometheus::IntGauge,
    max: usize,
    idle: Duration,
    read_timeout: Duration,
    memory: Arc<Semaphore>,
}

impl FrameReader {
    /// Reads one frame. The buffer grows with the bytes that arrive (to at most
    /// [`GROW`] times what is there), not with what the length prefix declares, and every byte of a
    /// frame beyond the first chunk is taken from the memory budget until the frame
    /// is complete, so a client that declares a large request and sends little costs
    /// little, and all of them together at most `queued_max_request_bytes`.
    async fn read<R: AsyncRead + Unpin>(&self, rd: &mut R, buf: &mut BytesMut) -> Result<Bytes, ReadEnd> {
        let mut need = frame::LENGTH_PREFIX;
        let mut len = None;
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut deadline = None;
        let mut counted = Counted { gauge: &self.reading, bytes: 0 };
        counted.set(buf.len());
        loop {
            if buf.len() >= need {
                match len {
                    None => {
                        let prefix: [u8; 4] = buf[..4].try_into().expect("invariant: 4 bytes buffered");
                        let l = frame::request_length(prefix, self.max).map_err(ReadEnd::Codec)?;
                        len = Some(l);
                        need = frame::LENGTH_PREFIX + l;
                        continue;
                    }
                    Some(l) => {
                        buf.advance(frame::LENGTH_PREFIX);
                        let frame = buf.split_to(l).freeze();
                        if buf.capacity() > KEEP_BUFFER {
                            // Give a large buffer back; keep what was read past the frame.
                            let mut fresh = BytesMut::with_capacity(READ_CHUNK.max(buf.len()));
                            fresh.extend_from_slice(buf);
                            *buf = fresh;
                        }
                        drop(held);
                        return Ok(frame);
                    }
                }
            }
            let target = need.min(READ_CHUNK.max(buf.len().saturating_mul(GROW)));
            let want = target - buf.len();
            if target > READ_CHUNK {
                // Budget for the bytes of this frame past the first chunk.
                let have = held.as_ref().map_or(0, |p| p.num_permits());
                let more = target.saturating_sub(READ_CHUNK).saturating_sub(have);
                if more > 0 {
                    let permit =
                        self.within(&mut deadline, self.memory.clone().acquire_many_owned(more as u32)).await?;
                    let permit = permit.map_err(|_| ReadEnd::Closed)?;
                    match held.as_mut() {
                        Some(h) => h.merge(permit),
                        None => held = Some(permit),
                    }
                }
            }
            // Grow only once the spare room runs low: a connection that sent a few
            // bytes keeps its first chunk instead of doubling it.
            if buf.capacity() - buf.len() < want.min(READ_CHUNK / 2) {
                buf.reserve(want);
            }
            let read = if buf.is_empty() {
                // Between requests: the idle timeout.
                match tokio::time::timeout(self.idle, rd.read_buf(buf)).await {
                    Ok(r) => r,
                    Err(_) => return Err(ReadEnd::Idle),
                }
            } else {
                self.within(&mut deadline, rd.read_buf(buf)).await?
            };
            match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        tracing::debug!(buffered = buf.len(), "client went away mid-request");
                    }
                    return Err(ReadEnd::Closed);
                }
                Ok(_) => {
                    counted.set(buf.len());
                    deadline.get_or_insert_with(|| Instant::now() + self.read_timeout);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "read failed");
                    return Err(ReadEnd::Closed);
                }
            }
        }
    }

    /// Runs `f` within the deadline of the request being read (set by its first bytes).
    async fn within<T>(&self, deadline: &mut Option<Instant>, f: impl Future<Output = T>) -> Result<T, ReadEnd> {
        let at = *deadline.get_or_insert_with(|| Instant::now() + self.read_timeout);
        tokio::time::timeout_at(at, f).await.map_err(|_| ReadEnd::Stalled)
    }
}

/// Serves one connection (plain TCP or TLS, split in halves) until the client
/// goes, a protocol error, its session says to close, or shutdown.
pub(super) async fn run<R, W>(
    mut rd: R,
    wr: W,
    peer: SocketAddr,
    session: Arc<Session>,
    broker: Arc<Broker>,
    memory: Arc<Semaphore>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let span = tracing::info_span!("connection", %peer, listener = %session.listener.name);
    async move {
        let (tx, mut rx) = mpsc::channel::<Pending>(broker.config.limits.max_in_flight_per_connection);
        let stages = broker.metrics.request_stage_seconds.clone();
        let writer = tokio::spawn(async move {
            let mut wr = BufWriter::new(wr);
            while let Some(pending) = rx.recv().await {
                match pending.await {
                    Outcome::Frame(frame, api) => {
                        let started = std::time::Instant::now();
                        if wr.write_all(&frame).await.is_err() {
                            return;
                        }
                        if rx.is_empty() && wr.flush().await.is_err() {
                            return;
                        }
                        let took = started.elapsed().as_secs_f64();
                        stages.with_label_values(&[api, "response_write"]).observe(took);
                        continue;
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
        let limits = &broker.config.limits;
        let reader = FrameReader {
            reading: broker.metrics.request_bytes_reading.clone(),
            max: limits.socket_request_max_bytes as usize,
            idle: Duration::from_millis(limits.connections_max_idle_ms),
            read_timeout: Duration::from_millis(limits.request_read_timeout_ms),
            memory,
        };
        // One buffer per connection: frames are split off it without zeroing a fresh
        // allocation per request, and bytes read past a frame start the next one.
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mute = Arc::new(Mute::default());
        loop {
            let mut muted = None;
            let frame = tokio::select! {
                _ = shutdown.cancelled() => break,
                f = async {
                    // A throttled client's next request waits on the socket.
                    let waiting = std::time::Instant::now();
                    mute.wait().await;
                    let waited = waiting.elapsed();
                    if waited > Duration::from_millis(1) {
                        muted = Some(waited);
                    }
                    reader.read(&mut rd, &mut buf).await
                } => f,
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(ReadEnd::Closed) => break,
                Err(ReadEnd::Idle) => {
                    broker.metrics.connections_closed.with_label_values(&["idle"]).inc();
                    tracing::debug!("closing idle connection (limits.connections_max_idle_ms)");
                    break;
                }
                Err(ReadEnd::Stalled) => {
                    broker.metrics.connections_closed.with_label_values(&["request_read"]).inc();
                    tracing::warn!("closing connection: a request stopped half-way (limits.request_read_timeout_ms)");
                    break;
                }
                Err(ReadEnd::Codec(e)) => {
                    broker.metrics.connection_errors.inc();
                    tracing::warn!(error = %e, "closing connection");
                    break;
                }
            };
            match dispatch::dispatch(&broker, peer, &mute, &session, frame).await {
                Ok((pending, api)) => {
                    let stages = &broker.metrics.request_stage_seconds;
                    if let Some(waited) = muted {
                        stages.with_label_values(&[api, "wait_to_read"]).observe(waited.as_secs_f64());
                    }
                    // The in-flight limit: the channel is full while the oldest answers wait.
                    let full = tx.capacity() == 0;
                    let waiting = std::time::Instant::now();
                    if tx.send(pending).await.is_err() {
                        break;
                    }
                    if full {
                        stages.with_label_values(&[api, "in_flight_wait"]).observe(waiting.elapsed().as_secs_f64());
                    }
                    if session.closing() {
                        // A failed authentication: its answer goes out, then the close.
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
