//! Producer ids and transactions. InitProducerId gives an idempotent producer a
//! producer id never used before, at epoch 0; a producer re-initialising after a
//! fatal sequence error (KIP-360, v3+) gets a fresh id too, which fences nothing it
//! must keep. Transactional ids are not served yet: their clients first ask
//! FindCoordinator for a transaction coordinator, which is not advertised.

use tributary_protocol::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::errors::{self, of, Error};
use super::RequestCtx;

pub(crate) async fn init_producer_id(ctx: &RequestCtx, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        return response.with_error_code(of(Error::InvalidRequest));
    }
    match ctx.broker.storage.allocate_producer_id().await {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => response.with_error_code(errors::code(&e)),
    }
}
