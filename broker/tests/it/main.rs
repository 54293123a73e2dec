//! Integration tests of the broker crate, compiled into one binary.

mod segments;
mod storage;
mod wire;
