//! Coordinators (DESIGN §6): the group coordinator (consumer groups of both
//! protocols and their committed offsets). The transaction coordinator joins it.

pub mod group;
