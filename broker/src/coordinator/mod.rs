//! Coordinators (DESIGN §6): the group coordinator (consumer groups of both
//! protocols and their committed offsets) and the transaction coordinator.

pub mod group;
pub mod txn;
