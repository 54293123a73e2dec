//! Producer ids in blocks from etcd: `producer-ids` holds the next free id, and a
//! broker takes `[next, next + BLOCK)` with a transaction that compares the key's
//! revision, so no two brokers ever hand out the same id (Kafka's
//! AllocateProducerIds, with etcd in the controller's place).

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::etcd::Etcd;
use crate::storage::{ProducerIdBlock, ProducerIdSource};

const KEY: &str = "producer-ids";
const BLOCK: i64 = 1000;

#[derive(Debug)]
pub struct EtcdProducerIds {
    pub etcd: Etcd,
}

impl EtcdProducerIds {
    async fn take(&self) -> Result<(i64, i64), String> {
        let full = self.etcd.full(KEY);
        loop {
            let current = self.etcd.get(KEY).await.map_err(|e| e.to_string())?;
            let (next, compare) = match &current {
                Some(e) => {
                    let next = String::from_utf8_lossy(&e.value)
                        .trim()
                        .parse::<i64>()
                        .map_err(|err| format!("etcd {KEY} is not a number: {err}"))?;
                    (next, Compare::mod_revision(full.clone(), CompareOp::Equal, e.mod_revision))
                }
                None => (0, Compare::create_revision(full.clone(), CompareOp::Equal, 0)),
            };
            let end = next + BLOCK;
            let txn = Txn::new().when([compare]).and_then([TxnOp::put(full.clone(), end.to_string(), None)]);
            if self.etcd.txn("reserve producer ids", txn).await.map_err(|e| e.to_string())?.succeeded() {
                tracing::debug!(start = next, end, "producer id block reserved in etcd");
                return Ok((next, end));
            }
        }
    }
}

impl ProducerIdSource for EtcdProducerIds {
    fn reserve(&self) -> ProducerIdBlock<'_> {
        Box::pin(self.take())
    }
}
