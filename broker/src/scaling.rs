//! Auto-scaling streams (DESIGN §7): a stream whose partitions sustain more than its
//! target rate grows, exactly as CreatePartitions would grow it, so every Kafka
//! client sees the new partitions at its next metadata refresh and groups rebalance
//! onto them. Partitions are never removed (clients cannot see partitions merge).
//!
//! Each stream with a policy other than `fixed` (`tributary.scaling.*` topic
//! configs) is sampled every `topics.scaling_sample_ms`: the bytes and records its
//! partitions took from clients (one relaxed counter per stream, so a sample costs a
//! walk over the topics, not over their partitions), smoothed over a fifth of the stream's
//! window. When the smoothed rate per partition has stayed above the target (by a
//! tenth, so a stream that settled at its target is not grown again) for the
//! whole window, and the cooldown since the last step is over, the stream grows to
//! the count that brings each partition back under that threshold, at most
//! x`tributary.scaling.factor` and up to `tributary.scaling.max.partitions`. A step
//! is one durable metadata change (the metadata log, or etcd in cluster mode): a
//! crash leaves the old count or the new one, never a half state. Steps of one
//! stream never overlap: this task makes them one at a time and waits for each.
//!
//! Per-key order: a keyed producer maps keys with `hash(key) % partitions`, so a
//! key's records keep their order within each side of a growth, not across it. The
//! partition count and the time of every step are in the log and in `/metrics`.
//!
//! Cluster mode: each broker measures only the partitions it leads and publishes
//! every scaled stream's rate over them with its measured loads
//! ([`crate::cluster::loads`]); the controller sums them and decides, and the step
//! is the same etcd transaction CreatePartitions makes. A new controller starts its
//! windows (and cooldowns) afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::storage::topic_config::{Scaling, ScalingPolicy};

/// How far above its target a stream's rate must stay to count as over it.
pub const OVER: f64 = 1.1;

/// What the scaler remembers of one stream between samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamState {
    /// The counter (bytes or records, after the policy) and the time of the last sample.
    last: Option<(u64, i64)>,
    /// The smoothed rate per partition, per second.
    pub rate: f64,
    /// Since when the smoothed rate has been above the target, with the counter then.
    over_since: Option<i64>,
    over_from: u64,
    /// When the stream last grew (ms; 0: not since this broker started).
    last_step_ms: i64,
    /// The partition count the state was measured at.
    partitions: i32,
    /// A stream at its maximum has its reason logged once.
    told_at_max: bool,
}

/// What one sample decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Stay,
    Grow(i32),
    /// Over the target for the window, but already at the maximum.
    AtMax,
}

/// Takes one sample of a stream (`total`: its bytes or records ever, `now` in ms)
/// and decides. Pure, so the windows and the hysteresis are unit-tested.
pub fn sample(s: &Scaling, partitions: i32, total: u64, now: i64, st: &mut StreamState) -> Decision {
    if s.policy == ScalingPolicy::Fixed || partitions <= 0 {
        *st = StreamState::default();
        return Decision::Stay;
    }
    if st.partitions != partitions {
        // Grown (here or by an operator): measure the new shape from now.
        *st = StreamState { partitions, last_step_ms: st.last_step_ms, ..StreamState::default() };
    }
    let Some((before, at)) = st.last.replace((total, now)) else {
        return Decision::Stay;
    };
    let dt = (now - at).max(1) as f64 / 1000.0;
    let per_partition = total.saturating_sub(before) as f64 / dt / partitions as f64;
    // Smoothed over a fifth of the window: a burst shorter than that barely counts,
    // a step in the rate shows within it.
    let tau = (s.window_ms as f64 / 5000.0).max(0.001);
    let alpha = 1.0 - (-dt / tau).exp();
    st.rate += alpha * (per_partition - st.rate);
    // Over means over by a tenth: a stream that settled at its target after a step
    // (or hovers around it) is not grown again.
    if st.rate <= s.target as f64 * OVER {
        st.over_since = None;
        st.told_at_max = false;
        return Decision::Stay;
    }
    if st.over_since.is_none() {
        st.over_from = before;
    }
    let since = *st.over_since.get_or_insert(at);
    if now - since < s.window_ms || (st.last_step_ms > 0 && now - st.last_step_ms < s.cooldown_ms) {
        return Decision::Stay;
    }
    if partitions >= s.max_partitions {
        return Decision::AtMax;
    }
    // Enough partitions that none would count as over at the rate sustained over the
    // whole window (not the smoothed rate of the moment, which a burst after a stall
    // inflates); measured rates carry noise: a stream at exactly 3x its target needs
    // 3, not 4.
    let sustained = total.saturating_sub(st.over_from) as f64 / ((now - since).max(1) as f64 / 1000.0);
    let needed = (sustained.min(st.rate * partitions as f64) / (s.target as f64 * OVER)).ceil() as i64;
    let by_factor = ((partitions as f64 * s.factor).floor() as i64).max(partitions as i64 + 1);
    let grown = needed.min(by_factor).min(s.max_partitions as i64).max(partitions as i64 + 1) as i32;
    st.last_step_ms = now;
    Decision::Grow(grown)
}

/// Samples every scaled stream until `shutdown`, growing those that need it. In
/// cluster mode only the controller decides, from the streams' rates every broker
/// publishes with its measured loads (summed, and integrated into a counter here so
/// the same decision applies).
pub async fn run(broker: Arc<Broker>, shutdown: CancellationToken) {
    let every = Duration::from_millis(broker.config.topics.scaling_sample_ms);
    let mut states: HashMap<uuid::Uuid, (Arc<str>, StreamState)> = HashMap::new();
    // Cluster mode: per stream, (bytes, records) integrated from the published rates.
    let mut integrated: HashMap<uuid::Uuid, (f64, f64)> = HashMap::new();
    let mut last_ms = crate::clock::now_ms();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = crate::clock::now_ms();
        let dt = (now - last_ms).max(0) as f64 / 1000.0;
        last_ms = now;
        let rates = match &broker.cluster {
            None => None,
            Some(c) if !c.is_controller() => {
                states.clear();
                integrated.clear();
                continue;
            }
            Some(c) => match crate::cluster::loads::stream_rates(&c.etcd).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the streams' rates; trying again");
                    continue;
                }
            },
        };
        let mut alive = HashMap::new();
        for topic in broker.storage.topics() {
            let s = topic.config().scaling;
            if s.policy == ScalingPolicy::Fixed || crate::coordinator::is_internal_topic(&topic.name) {
                continue;
            }
            let (bytes, records) = match &rates {
                None => topic.produced.get(),
                Some(rates) => {
                    let (b, r) = rates.get(topic.name.as_ref()).copied().unwrap_or_default();
                    let sum = integrated.entry(topic.id).or_default();
                    sum.0 += b * dt;
                    sum.1 += r * dt;
                    (sum.0 as u64, sum.1 as u64)
                }
            };
            let total = if s.policy == ScalingPolicy::Bytes { bytes } else { records };
            let partitions = topic.partitions.len() as i32;
            let mut st = states.remove(&topic.id).map(|(_, st)| st).unwrap_or_default();
            let decision = sample(&s, partitions, total, now, &mut st);
            broker.metrics.stream_rate.with_label_values(&[&topic.name]).set(st.rate);
            broker.metrics.stream_partitions.with_label_values(&[&topic.name]).set(partitions as i64);
            match decision {
                Decision::Stay => {}
                Decision::AtMax => {
                    if !st.told_at_max {
                        st.told_at_max = true;
                        tracing::info!(topic = %topic.name, partitions, rate = st.rate, target = s.target,
                            "stream over its scaling target but at tributary.scaling.max.partitions: left as it is");
                    }
                }
                Decision::Grow(to) => {
                    // Crash tests: a step decided, nothing written yet.
                    crate::storage::flusher::failpoint("scaling-step");
                    match broker.add_partitions(&topic.name, to).await {
                        Ok(_) => {
                            broker.metrics.scaling_events.with_label_values(&[&topic.name]).inc();
                            broker.metrics.stream_partitions.with_label_values(&[&topic.name]).set(to as i64);
                            broker.metrics.stream_last_scaled.with_label_values(&[&topic.name]).set(now / 1000);
                            tracing::info!(topic = %topic.name, from = partitions, to, rate = st.rate,
                                target = s.target, "stream scaled: partitions added");
                        }
                        Err(e) => {
                            tracing::warn!(topic = %topic.name, from = partitions, to, error = %e,
                                "stream scaling step failed; trying again after the cooldown");
                        }
                    }
                }
            }
            alive.insert(topic.id, (topic.name.clone(), st));
        }
        // Streams deleted (or no longer scaled) drop their state and their series.
        for (id, (name, _)) in &states {
            integrated.remove(id);
            let _ = broker.metrics.stream_rate.remove_label_values(&[name]);
            let _ = broker.metrics.stream_partitions.remove_label_values(&[name]);
            let _ = broker.metrics.stream_last_scaled.remove_label_values(&[name]);
        }
        states = alive;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(target: i64, window_ms: i64, cooldown_ms: i64, max: i32) -> Scaling {
        Scaling { policy: ScalingPolicy::Bytes, target, factor: 2.0, max_partitions: max, window_ms, cooldown_ms }
    }

    /// Feeds `rate(t)` bytes/s in total for `secs` seconds, sampled every 100 ms;
    /// returns the steps taken (time, new count), growing the stream as told.
    fn drive(s: &Scaling, start: i32, secs: i64, rate: impl Fn(i64) -> f64) -> Vec<(i64, i32)> {
        let mut st = StreamState::default();
        let (mut total, mut n, mut steps) = (0f64, start, Vec::new());
        for step in 0..=secs * 10 {
            let now = 1_000_000 + step * 100;
            total += rate(now) / 10.0;
            if let Decision::Grow(to) = sample(s, n, total as u64, now, &mut st) {
                steps.push((now - 1_000_000, to));
                n = to;
            }
        }
        steps
    }

    #[test]
    fn three_times_the_target_grows_by_the_factor_within_window_and_cooldown_up_to_the_max() {
        // 1 partition at 3,000 B/s against a target of 1,000: needs 3, the factor
        // allows 2 per step; after the cooldown 2 -> 3 (1,500 each); then 1,000 each:
        // no further step.
        let s = bytes(1000, 2000, 3000, 10);
        let steps = drive(&s, 1, 30, |_| 3000.0);
        assert_eq!(steps.iter().map(|s| s.1).collect::<Vec<_>>(), vec![2, 3], "{steps:?}");
        assert!(steps[0].0 >= 2000 && steps[0].0 <= 4000, "first step after the window: {steps:?}");
        assert!(steps[1].0 - steps[0].0 >= 3000, "the cooldown holds: {steps:?}");
        // Capped by the maximum.
        let capped = drive(&bytes(1000, 2000, 0, 2), 1, 30, |_| 9000.0);
        assert_eq!(capped.iter().map(|s| s.1).collect::<Vec<_>>(), vec![2], "{capped:?}");
    }

    #[test]
    fn at_the_target_or_with_fixed_nothing_happens_and_an_oscillating_rate_does_not_flap() {
        let s = bytes(1000, 2000, 0, 100);
        assert!(drive(&s, 1, 60, |_| 1000.0).is_empty());
        assert!(drive(&s, 1, 60, |_| 900.0).is_empty());
        // +-30 % around the target, period 1 s (shorter than the window): never grows.
        let wobble = |t: i64| 1000.0 * (1.0 + 0.3 * ((t as f64) / 1000.0 * std::f64::consts::TAU).sin());
        assert!(drive(&s, 1, 60, wobble).is_empty());
        let fixed = Scaling { policy: ScalingPolicy::Fixed, ..s };
        assert!(drive(&fixed, 1, 60, |_| 1e9).is_empty());
    }

    #[test]
    fn a_short_burst_does_not_grow_a_stream() {
        let s = bytes(1000, 5000, 0, 100);
        // Ten times the target for one second, idle otherwise.
        let burst = |t: i64| if (1_003_000..1_004_000).contains(&t) { 10_000.0 } else { 0.0 };
        assert!(drive(&s, 1, 30, burst).is_empty());
    }

    #[test]
    fn a_catch_up_burst_at_the_end_of_the_window_does_not_overshoot() {
        // 2 partitions at 3x the target in total: 3 are needed. A slowdown before
        // the window ends, then the producer catching up: the smoothed rate of the
        // moment says 4; the rate sustained over the window says 3.
        let s = bytes(1000, 2000, 60_000, 10);
        let rate = |t: i64| match t - 1_000_000 {
            1400..1900 => 2000.0,
            1900..2400 => 4000.0,
            _ => 3000.0,
        };
        let steps = drive(&s, 2, 10, rate);
        assert_eq!(steps.first().map(|s| s.1), Some(3), "{steps:?}");
    }

    #[test]
    fn a_stream_at_its_maximum_is_left_alone() {
        let s = bytes(1000, 1000, 0, 4);
        let mut st = StreamState::default();
        let mut last = Decision::Stay;
        for step in 0..100i64 {
            last = sample(&s, 4, step as u64 * 10_000, 1_000_000 + step * 100, &mut st);
        }
        assert_eq!(last, Decision::AtMax);
    }
}
