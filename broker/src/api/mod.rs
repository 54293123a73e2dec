//! One module per API family; each `handle` reads like the Kafka protocol guide for
//! its API: decode (done by the codec) -> validate -> call storage or a coordinator
//! -> build the response. [`SUPPORTED`] is the one table of versions: it drives both
//! dispatch and the ApiVersions answer, and lists only versions the handlers are
//! tested at.

pub(crate) mod api_versions;
mod configs;
pub(crate) mod errors;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;
mod topics;
mod txn;

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;

use tributary_protocol::kafka_protocol::messages::ApiKey;
use tributary_protocol::message::{Request, Response};

use crate::broker::Broker;

/// API key -> (min version, max version) that Tributary serves.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::InitProducerId, 0, 5),
];

/// The versions of `key` that are served, if any.
pub(crate) fn supported(key: ApiKey) -> Option<RangeInclusive<i16>> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| min..=max)
}

/// What a handler needs besides its request.
#[derive(Debug)]
pub(crate) struct RequestCtx {
    pub(crate) broker: Arc<Broker>,
    pub(crate) version: i16,
    #[allow(dead_code)] // read by quotas and logs of later APIs
    pub(crate) client_id: String,
}

/// A handler's answer: ready now, ready later (appends waiting to be durable, long
/// polls), or none at all (acks=0).
pub(crate) enum Reply {
    Now(Response),
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
    Nothing,
}

/// Routes a decoded request to its handler.
pub(crate) async fn handle(ctx: &RequestCtx, request: Request) -> Reply {
    match request {
        Request::ApiVersions(r) => Reply::Now(api_versions::handle(ctx, r).into()),
        Request::Metadata(r) => Reply::Now(metadata::handle(ctx, r).await.into()),
        Request::Produce(r) => produce::handle(ctx, r).await,
        Request::Fetch(r) => fetch::handle(ctx, r),
        Request::ListOffsets(r) => Reply::Now(list_offsets::handle(ctx, r).await.into()),
        Request::CreateTopics(r) => Reply::Now(topics::create(ctx, r).await.into()),
        Request::DeleteTopics(r) => Reply::Now(topics::delete(ctx, r).await.into()),
        Request::DescribeConfigs(r) => Reply::Now(configs::describe(ctx, r).into()),
        Request::InitProducerId(r) => Reply::Now(txn::init_producer_id(ctx, r).await.into()),
    }
}
