//! GetTelemetrySubscriptions and PushTelemetry (KIP-714): the wire side of
//! [`crate::telemetry`]. Any authenticated client may call them, as on Kafka.

use tributary_protocol::kafka_protocol::messages::{
    GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse, PushTelemetryRequest, PushTelemetryResponse,
};
use tributary_protocol::kafka_protocol::protocol::StrBytes;

use super::RequestCtx;
use crate::telemetry::{Client, Push, ACCEPTED_COMPRESSION};

fn client(ctx: &RequestCtx) -> Client {
    let (name, version) = ctx.session.software();
    Client {
        client_id: ctx.client_id.clone(),
        software_name: name.to_string(),
        software_version: version.to_string(),
        address: ctx.peer.ip().to_string(),
        port: ctx.peer.port(),
    }
}

pub(crate) fn subscriptions(
    ctx: &RequestCtx,
    request: GetTelemetrySubscriptionsRequest,
) -> GetTelemetrySubscriptionsResponse {
    let telemetry = &ctx.broker.telemetry;
    let response = GetTelemetrySubscriptionsResponse::default();
    match telemetry.subscriptions_for(request.client_instance_id, &client(ctx)) {
        Ok(s) => response
            .with_client_instance_id(s.instance_id)
            .with_subscription_id(s.subscription_id)
            .with_accepted_compression_types(ACCEPTED_COMPRESSION.to_vec())
            .with_push_interval_ms(s.interval_ms)
            .with_telemetry_max_bytes(telemetry.max_bytes())
            .with_delta_temporality(false)
            .with_requested_metrics(s.metrics.into_iter().map(StrBytes::from_string).collect()),
        Err((code, message)) => {
            tracing::debug!(client = %ctx.client_id, %message, "GetTelemetrySubscriptions refused");
            response.with_error_code(code)
        }
    }
}

pub(crate) fn push(ctx: &RequestCtx, request: PushTelemetryRequest) -> PushTelemetryResponse {
    let push = Push {
        instance_id: request.client_instance_id,
        subscription_id: request.subscription_id,
        terminating: request.terminating,
        compression: request.compression_type,
        metrics: &request.metrics,
    };
    match ctx.broker.telemetry.push(push, &client(ctx)) {
        Ok(()) => PushTelemetryResponse::default(),
        Err((code, message)) => {
            tracing::debug!(client = %ctx.client_id, %message, "PushTelemetry refused");
            PushTelemetryResponse::default().with_error_code(code)
        }
    }
}
