//! Wall-clock time for timestamps written into batches (log-append time). Timeouts
//! of coordinators take their time through a clock they are given, so tests can
//! drive them without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
