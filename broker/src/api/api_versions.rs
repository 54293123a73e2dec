//! ApiVersions: what this broker serves, straight from [`super::SUPPORTED`].

use tributary_protocol::kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use tributary_protocol::kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::{RequestCtx, SUPPORTED};
use crate::errors::{of, Error};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect()
}

/// The features (v3+): `transaction.version` is supported up to 2 and finalized at
/// `transactions.version`. The epoch of the finalized features is fixed: they change
/// only with the configuration, at a restart, when clients reconnect anyway.
///
/// From v5 a client that knows the cluster names the cluster and the node it means
/// to reach; where this broker is another (an address reused by another cluster, or
/// by another broker of this one), the answer is REBOOTSTRAP_REQUIRED, as Kafka's,
/// and the client starts over from its bootstrap servers.
pub(crate) fn handle(ctx: &RequestCtx, request: ApiVersionsRequest) -> ApiVersionsResponse {
    if ctx.version >= 3 {
        ctx.session.set_software(&request.client_software_name, &request.client_software_version);
    }
    if let Some(cluster_id) = request.cluster_id.as_deref().filter(|_| ctx.version >= 5) {
        let view = ctx.broker.topology();
        if cluster_id != view.cluster_id.to_string() || request.node_id != ctx.broker.node.id {
            return ApiVersionsResponse::default().with_error_code(of(Error::RebootstrapRequired));
        }
    }
    let level = ctx.broker.config.transactions.version;
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys())
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version(0)
            .with_max_version(2)])
        .with_finalized_features_epoch(1)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version_level(level)
            .with_max_version_level(level)])
}

const TRANSACTION_VERSION: &str = "transaction.version";

/// The KIP-511 answer to an ApiVersions request at a version we do not know:
/// UNSUPPORTED_VERSION plus our versions, encoded at v0.
pub(crate) fn unsupported_version() -> tributary_protocol::message::Response {
    ApiVersionsResponse::default().with_error_code(of(Error::UnsupportedVersion)).with_api_keys(api_keys()).into()
}
