//! Integration tests of the broker crate, compiled into one binary.

mod storage;
mod wire;
