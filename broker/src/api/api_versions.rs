//! ApiVersions: what this broker serves, straight from [`super::SUPPORTED`].

use tributary_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use tributary_protocol::kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

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

pub(crate) fn handle(_ctx: &RequestCtx, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(api_keys())
}

/// The KIP-511 answer to an ApiVersions request at a version we do not know:
/// UNSUPPORTED_VERSION plus our versions, encoded at v0.
pub(crate) fn unsupported_version() -> tributary_protocol::message::Response {
    ApiVersionsResponse::default().with_error_code(of(Error::UnsupportedVersion)).with_api_keys(api_keys()).into()
}
