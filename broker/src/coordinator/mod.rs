//! Coordinators (DESIGN §6): the group coordinator (consumer groups of both
//! protocols and their committed offsets) and the transaction coordinator.

pub mod group;
pub mod txn;

/// Topics the broker keeps for itself: committed offsets and transaction state.
pub fn is_internal_topic(name: &str) -> bool {
    name == group::OFFSETS_TOPIC || name == txn::TXN_TOPIC
}

/// Cluster mode: whether this broker owns a partition of a coordinator's internal
/// topic now (so it coordinates the groups or transactional ids that hash there).
#[derive(Clone)]
pub struct Ownership(pub std::sync::Arc<dyn Fn(i32) -> bool + Send + Sync>);

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ownership")
    }
}
