//! From a request frame to a pending response: peek at the key and version, answer
//! what is not supported the way Kafka specifies (KIP-511 for ApiVersions) or refuse
//! it, decode, hand the typed request to its handler, and encode the answer at the
//! request's version.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tributary_protocol::header;
use tributary_protocol::kafka_protocol::messages::ApiKey;
use tributary_protocol::message::Response;

use super::connection::{Outcome, Pending};
use crate::api::{self, Reply, RequestCtx};
use crate::broker::Broker;
use crate::buffers::BufferPool;
use crate::security::session::Session;

/// Dispatches one request; the answer to come, with its API's metrics label. `Err`
/// means: close the connection, for the reason given.
pub(super) async fn dispatch(
    broker: &Arc<Broker>,
    peer: SocketAddr,
    mute: &Arc<crate::quotas::Mute>,
    session: &Arc<Session>,
    frame: Bytes,
) -> Result<(Pending, &'static str), String> {
    let prelude = header::peek(&frame).ok_or("request shorter than a request header")?;
    let (version, correlation_id) = (prelude.api_version, prelude.correlation_id);
    let key = ApiKey::try_from(prelude.api_key).map_err(|_| format!("unknown api key {}", prelude.api_key))?;
    // Before SASL authentication only ApiVersions and the SASL requests pass.
    session.admit(key, Instant::now()).map_err(|refusal| refusal.to_string())?;
    let range = api::supported(key).ok_or_else(|| format!("{key:?} is not supported"))?;
    if !range.contains(&version) {
        if key == ApiKey::ApiVersions {
            // KIP-511: a client newer than us gets our versions at v0 and retries.
            let resp = api::api_versions::unsupported_version();
            return Ok((ready(encode(&broker.responses, key, 0, correlation_id, &resp)), api_label(key)));
        }
        return Err(format!("{key:?} v{version} is not supported (supported: v{}..=v{})", range.start(), range.end()));
    }
    let (request_header, mut request) =
        header::decode_request(key, version, frame).map_err(|e| format!("malformed request: {e}"))?;
    // A scoped client's names, into its scope and (below) back out.
    let scope = broker.security.scopes.enabled().then(|| session.scope());
    if let Some(scope) = &scope {
        api::scoped::into_scope(&mut request, scope);
    }
    let api_name = api_label(key);
    broker.metrics.requests.with_label_values(&[api_name]).inc();
    tracing::trace!(api = %api_name, version, correlation_id, "request");
    let started = Instant::now();
    let ctx = RequestCtx {
        broker: broker.clone(),
        version,
        client_id: request_header.client_id.map(|s| s.to_string()).unwrap_or_default(),
        peer,
        mute: mute.clone(),
        session: session.clone(),
    };
    let reply = api::handle(&ctx, request).await;
    let metrics = broker.metrics.clone();
    let responses = broker.responses.clone();
    metrics.request_stage_seconds.with_label_values(&[api_name, "handle"]).observe(started.elapsed().as_secs_f64());
    let finish = move |response: Option<Response>| {
        metrics.request_seconds.with_label_values(&[api_name]).observe(started.elapsed().as_secs_f64());
        match response {
            Some(mut r) => {
                if let Some(scope) = &scope {
                    api::scoped::out_of_scope(&mut r, scope);
                }
                r.for_each_error(|code| metrics.request_errors.with_label_values(&[api_name, error_name(code)]).inc());
                encode(&responses, key, version, correlation_id, &r)
            }
            None => Outcome::Nothing,
        }
    };
    let pending = match reply {
        Reply::Now(response) => ready(finish(Some(response))),
        Reply::Later(future) => Box::pin(async move { finish(Some(future.await)) }),
        Reply::Nothing => ready(finish(None)),
    };
    Ok((pending, api_name))
}

/// A response frame of at least this many bytes (a fetch answer) is encoded into a
/// buffer of the broker's response pool, given back once it is written.
const POOLED_RESPONSE: usize = crate::buffers::SMALLEST;

fn encode(responses: &Arc<BufferPool>, key: ApiKey, version: i16, correlation_id: i32, response: &Response) -> Outcome {
    let frame = header::response_frame_size(version, response).and_then(|size| {
        let pooled = size >= POOLED_RESPONSE;
        let mut buf = if pooled { responses.take(size) } else { BytesMut::with_capacity(size) };
        buf.clear();
        header::encode_response_into(&mut buf, key, version, correlation_id, response)?;
        Ok(if pooled { responses.share(buf) } else { buf.freeze() })
    });
    match frame {
        Ok(frame) => Outcome::Frame(frame, api_label(key)),
        Err(e) => {
            tracing::error!(api = ?key, version, error = %e, "cannot encode response; closing connection");
            Outcome::Close
        }
    }
}

/// The metrics' `api` label of a key (`Produce`), made once per key.
pub(super) fn api_label(key: ApiKey) -> &'static str {
    static NAMES: std::sync::OnceLock<dashmap::DashMap<i16, &'static str>> = std::sync::OnceLock::new();
    *NAMES
        .get_or_init(Default::default)
        .entry(key as i16)
        .or_insert_with(|| Box::leak(format!("{key:?}").into_boxed_str()))
}

/// The Kafka name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), the metrics'
/// `error` label; a code the codec does not know keeps its number. Names are made
/// once per code (the set of codes is small and fixed).
fn error_name(code: i16) -> &'static str {
    use tributary_protocol::kafka_protocol::ResponseError;
    static NAMES: std::sync::OnceLock<dashmap::DashMap<i16, &'static str>> = std::sync::OnceLock::new();
    *NAMES.get_or_init(Default::default).entry(code).or_insert_with(|| {
        let name = match ResponseError::try_from_code(code) {
            Some(ResponseError::Unknown(_)) | None => code.to_string(),
            Some(e) => screaming_snake(&e.to_string()),
        };
        Box::leak(name.into_boxed_str())
    })
}

/// `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn ready(outcome: Outcome) -> Pending {
    Box::pin(std::future::ready(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_labels_are_the_kafka_names() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "9999");
    }
}
