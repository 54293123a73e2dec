//! Client quotas, as Kafka has them: `producer_byte_rate` and `consumer_byte_rate`
//! per user and client-id (or their defaults), set with AlterClientQuotas, kept in
//! the metadata log, applied live.
//!
//! A request's bytes are recorded against the quota that applies to its client
//! (Kafka's precedence, most specific first); a client over its quota gets a
//! throttle time, `(rate - quota) / quota * measured window`, that lets its average
//! fall back to the quota. Rates are measured over `quotas.window_samples` samples
//! of `quotas.window_ms`, so a new client may burst about `window_samples - 1`
//! windows' worth before it is throttled. The handlers put the time in
//! `throttle_time_ms` and the connection is not read from until it has passed.
//!
//! Without authentication every client is the user `ANONYMOUS`, as in Kafka.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

/// The user of every unauthenticated client.
pub const ANONYMOUS: &str = "ANONYMOUS";
/// Bytes per second a client may produce.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes per second a client may fetch.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Quota keys Kafka has that Tributary does not enforce, with the reason given.
const UNENFORCED: &[(&str, &str)] = &[
    ("request_percentage", "request time quotas are not enforced by Tributary"),
    ("controller_mutation_rate", "controller mutation quotas are not enforced by Tributary"),
    ("connection_creation_rate", "connection rate quotas are not enforced by Tributary (see limits.max_connections)"),
];

/// One part of a quota entity: a name, or the default for every name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

/// What a quota applies to: a user, a client-id, or a client-id of a user; each
/// part named or the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QuotaEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
}

/// Which quota a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Produce,
    Fetch,
}

impl QuotaKind {
    fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
        }
    }
}

/// Checks a quota key and value for an entity; the error says what is wrong.
pub fn validate(entity: &QuotaEntity, key: &str, value: f64) -> Result<(), String> {
    if entity.user.is_none() && entity.client_id.is_none() {
        return Err("a quota entity needs a user or a client-id".into());
    }
    if let Some((_, why)) = UNENFORCED.iter().find(|(k, _)| *k == key) {
        return Err(format!("{key}: {why}"));
    }
    if key != PRODUCER_BYTE_RATE && key != CONSUMER_BYTE_RATE {
        return Err(format!("unknown quota key {key:?}: must be {PRODUCER_BYTE_RATE} or {CONSUMER_BYTE_RATE}"));
    }
    if !(value.is_finite() && value > 0.0 && value.fract() == 0.0) {
        return Err(format!("{key}: {value} is not a positive whole number of bytes per second"));
    }
    Ok(())
}

/// A rate over a sliding set of samples (Kafka's `Rate` over a `SampledStat`).
#[derive(Debug)]
struct Rate {
    /// (start of the sample in ms, bytes recorded in it), oldest first.
    samples: VecDeque<(i64, f64)>,
}

impl Rate {
    fn new() -> Self {
        Rate { samples: VecDeque::new() }
    }

    fn purge(&mut self, now: i64, window: i64, count: usize) {
        let horizon = now - window * count as i64;
        while self.samples.front().is_some_and(|&(start, _)| start <= horizon) {
            self.samples.pop_front();
        }
    }

    fn record(&mut self, now: i64, window: i64, count: usize, value: f64) {
        self.purge(now, window, count);
        match self.samples.back_mut() {
            Some((start, total)) if now < *start + window => *total += value,
            _ => {
                self.samples.push_back((now, value));
                while self.samples.len() > count {
                    self.samples.pop_front();
                }
            }
        }
    }

    /// (bytes per second, the window it is measured over in ms).
    fn measure(&mut self, now: i64, window: i64, count: usize) -> (f64, i64) {
        self.purge(now, window, count);
        let total: f64 = self.samples.iter().map(|s| s.1).sum();
        let oldest = self.samples.front().map_or(now, |s| s.0);
        let mut elapsed = now - oldest;
        // Measured over at least count - 1 whole windows, so that the first requests
        // of a client do not look like an infinite rate.
        let full = elapsed / window;
        let min_full = count as i64 - 1;
        if full < min_full {
            elapsed += (min_full - full) * window;
        }
        (total * 1000.0 / elapsed.max(1) as f64, elapsed)
    }
}

/// A rate with the time it was last used, so idle ones can be dropped.
#[derive(Debug)]
struct Tracked {
    rate: Mutex<Rate>,
    used_ms: AtomicI64,
}

/// The broker's client quotas and the rates measured against them.
#[derive(Debug)]
pub struct Quotas {
    configs: RwLock<HashMap<QuotaEntity, BTreeMap<String, f64>>>,
    /// Whether any quota is set (the common case, none, costs one load per request).
    any: AtomicBool,
    /// Rates by kind and by the entity they are measured for (the quota's entity
    /// with its defaults replaced by the client's names).
    rates: DashMap<(QuotaKind, QuotaEntity), Arc<Tracked>>,
    window_ms: i64,
    samples: usize,
    pruned_ms: AtomicI64,
}

/// Idle rates are forgotten after this long (as Kafka's quota sensors expire).
const IDLE_MS: i64 = 3_600_000;

impl Quotas {
    pub fn new(config: &tributary_config::QuotaConfig, configured: Vec<(QuotaEntity, BTreeMap<String, f64>)>) -> Self {
        let configs: HashMap<_, _> = configured.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        Quotas {
            any: AtomicBool::new(!configs.is_empty()),
            configs: RwLock::new(configs),
            rates: DashMap::new(),
            window_ms: config.window_ms.max(1) as i64,
            samples: config.window_samples.max(2) as usize,
            pruned_ms: AtomicI64::new(0),
        }
    }

    /// Replaces an entity's quotas (already durable); empty removes the entity.
    pub fn set(&self, entity: QuotaEntity, values: BTreeMap<String, f64>) {
        let mut configs = self.configs.write();
        if values.is_empty() {
            configs.remove(&entity);
        } else {
            configs.insert(entity, values);
        }
        self.any.store(!configs.is_empty(), Ordering::Release);
        // Rates measured against a quota that changed start over.
        self.rates.clear();
    }

    /// Replaces every entity's quotas (cluster mode: what etcd holds).
    pub fn replace_all(&self, all: Vec<(QuotaEntity, BTreeMap<String, f64>)>) {
        let mut configs = self.configs.write();
        *configs = all.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        self.any.store(!configs.is_empty(), Ordering::Release);
        self.rates.clear();
    }

    /// An entity's quotas.
    pub fn get(&self, entity: &QuotaEntity) -> BTreeMap<String, f64> {
        self.configs.read().get(entity).cloned().unwrap_or_default()
    }

    /// Every entity with quotas, in a stable order.
    pub fn all(&self) -> Vec<(QuotaEntity, BTreeMap<String, f64>)> {
        let mut all: Vec<_> = self.configs.read().iter().map(|(e, v)| (e.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The quota of `kind` for a client, and the entity its rate is measured for,
    /// by Kafka's precedence: user+client-id, user+default client, user, default
    /// user+client-id, default user+default client, default user, client-id,
    /// default client.
    fn resolve(&self, kind: QuotaKind, user: &str, client_id: &str) -> Option<(f64, QuotaEntity)> {
        let configs = self.configs.read();
        let named = |n: &str| Some(EntityName::Named(n.to_string()));
        let candidates = [
            (named(user), named(client_id)),
            (named(user), Some(EntityName::Default)),
            (named(user), None),
            (Some(EntityName::Default), named(client_id)),
            (Some(EntityName::Default), Some(EntityName::Default)),
            (Some(EntityName::Default), None),
            (None, named(client_id)),
            (None, Some(EntityName::Default)),
        ];
        for (u, c) in candidates {
            let entity = QuotaEntity { user: u, client_id: c };
            if let Some(&limit) = configs.get(&entity).and_then(|v| v.get(kind.key())) {
                // Every candidate names this client or the default, so the rate is
                // the client's own for each part the quota has.
                let measured = QuotaEntity {
                    user: entity.user.as_ref().map(|_| EntityName::Named(user.into())),
                    client_id: entity.client_id.as_ref().map(|_| EntityName::Named(client_id.into())),
                };
                return Some((limit, measured));
            }
        }
        None
    }

    fn tracked(&self, kind: QuotaKind, entity: QuotaEntity, now: i64) -> Arc<Tracked> {
        let last = self.pruned_ms.load(Ordering::Relaxed);
        if now - last > 60_000
            && self.pruned_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.rates.retain(|_, t| now - t.used_ms.load(Ordering::Relaxed) < IDLE_MS);
        }
        let t = self
            .rates
            .entry((kind, entity))
            .or_insert_with(|| Arc::new(Tracked { rate: Mutex::new(Rate::new()), used_ms: AtomicI64::new(now) }))
            .clone();
        t.used_ms.store(now, Ordering::Relaxed);
        t
    }

    /// Records `bytes` for a client; returns how long it must wait, in ms (0 when
    /// within its quota or without one).
    pub fn record(&self, kind: QuotaKind, user: &str, client_id: &str, bytes: u64, now: i64) -> u64 {
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        let Some((limit, entity)) = self.resolve(kind, user, client_id) else {
            return 0;
        };
        let tracked = self.tracked(kind, entity, now);
        let mut rate = tracked.rate.lock();
        rate.record(now, self.window_ms, self.samples, bytes as f64);
        let (observed, window) = rate.measure(now, self.window_ms, self.samples);
        if observed <= limit {
            return 0;
        }
        let throttle = (observed - limit) / limit * window as f64;
        throttle.round().clamp(0.0, (self.window_ms * self.samples as i64) as f64) as u64
    }

    /// The most bytes one response may carry for a client and still be within its
    /// quota (its rate over the shortest window a rate is measured over), so that a
    /// fetch is cut to what the quota allows rather than refused again and again.
    pub fn max_in_window(&self, kind: QuotaKind, user: &str, client_id: &str) -> Option<u64> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let (limit, _) = self.resolve(kind, user, client_id)?;
        Some((limit * (self.samples as f64 - 1.0) * self.window_ms as f64 / 1000.0) as u64)
    }

    /// Takes back bytes recorded for a request that was answered without them (a
    /// throttled fetch returns no data, as in Kafka).
    pub fn unrecord(&self, kind: QuotaKind, user: &str, client_id: &str, bytes: u64, now: i64) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        if let Some((_, entity)) = self.resolve(kind, user, client_id) {
            let tracked = self.tracked(kind, entity, now);
            tracked.rate.lock().record(now, self.window_ms, self.samples, -(bytes as f64));
        }
    }
}

/// When a connection may be read from again: a throttled client's next requests
/// wait on the socket until its throttle time has passed (KIP-219).
#[derive(Debug, Default)]
pub struct Mute {
    until: Mutex<Option<tokio::time::Instant>>,
}

impl Mute {
    /// Keeps the connection unread for at least `ms` from now.
    pub fn extend(&self, ms: u64) {
        let t = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        let mut until = self.until.lock();
        if until.is_none_or(|u| u < t) {
            *until = Some(t);
        }
    }

    /// Returns once the connection may be read again.
    pub async fn wait(&self) {
        let until = *self.until.lock();
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(window_ms: u64, samples: u32) -> Quotas {
        Quotas::new(&tributary_config::QuotaConfig { window_ms, window_samples: samples }, Vec::new())
    }

    fn client(name: &str) -> QuotaEntity {
        QuotaEntity { user: None, client_id: Some(EntityName::Named(name.into())) }
    }

    fn rate(key: &str, v: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([(key.to_string(), v)])
    }

    #[test]
    fn no_quota_no_throttle() {
        let q = quotas(1000, 11);
        assert_eq!(q.record(QuotaKind::Produce, ANONYMOUS, "c", 1 << 30, 0), 0);
    }

    #[test]
    fn a_client_over_its_rate_waits_until_its_average_is_back_at_the_quota() {
        let q = quotas(1000, 11);
        q.set(client("slow"), rate(PRODUCER_BYTE_RATE, 1000.0));
        // 20 000 bytes at once: measured over the minimum of 10 windows, 2000 B/s,
        // twice the quota: wait (2000 - 1000) / 1000 * 10 s = 10 s.
        assert_eq!(q.record(QuotaKind::Produce, ANONYMOUS, "slow", 20_000, 0), 10_000);
        // Others are not affected; nor is the same client's fetching.
        assert_eq!(q.record(QuotaKind::Produce, ANONYMOUS, "fast", 20_000, 0), 0);
        assert_eq!(q.record(QuotaKind::Fetch, ANONYMOUS, "slow", 20_000, 0), 0);
        // Within the quota: no wait.
        let q = quotas(1000, 11);
        q.set(client("slow"), rate(PRODUCER_BYTE_RATE, 1000.0));
        assert_eq!(q.record(QuotaKind::Produce, ANONYMOUS, "slow", 5_000, 0), 0);
    }

    #[test]
    fn the_throttle_is_bounded_by_the_whole_window() {
        let q = quotas(1000, 11);
        q.set(client("slow"), rate(PRODUCER_BYTE_RATE, 1.0));
        assert_eq!(q.record(QuotaKind::Produce, ANONYMOUS, "slow", 1 << 30, 0), 11_000);
    }

    #[test]
    fn old_samples_stop_counting() {
        let q = quotas(1000, 3);
        q.set(client("c"), rate(CONSUMER_BYTE_RATE, 1000.0));
        assert!(q.record(QuotaKind::Fetch, ANONYMOUS, "c", 10_000, 0) > 0);
        // Three windows later the burst has aged out.
        assert_eq!(q.record(QuotaKind::Fetch, ANONYMOUS, "c", 100, 3_500), 0);
    }

    #[test]
    fn a_response_of_the_window_allowance_is_not_throttled() {
        let q = quotas(1000, 11);
        q.set(client("c"), rate(CONSUMER_BYTE_RATE, 1000.0));
        let max = q.max_in_window(QuotaKind::Fetch, ANONYMOUS, "c").unwrap();
        assert_eq!(max, 10_000);
        assert_eq!(q.record(QuotaKind::Fetch, ANONYMOUS, "c", max, 0), 0);
        assert!(q.max_in_window(QuotaKind::Fetch, ANONYMOUS, "other").is_none());
    }

    #[test]
    fn unrecorded_bytes_do_not_count() {
        let q = quotas(1000, 11);
        q.set(client("c"), rate(CONSUMER_BYTE_RATE, 1000.0));
        let t = q.record(QuotaKind::Fetch, ANONYMOUS, "c", 20_000, 0);
        assert!(t > 0);
        q.unrecord(QuotaKind::Fetch, ANONYMOUS, "c", 20_000, 0);
        assert_eq!(q.record(QuotaKind::Fetch, ANONYMOUS, "c", 5_000, 0), 0);
    }

    #[test]
    fn the_most_specific_quota_wins_and_defaults_are_per_client() {
        let q = quotas(1000, 11);
        let default_client = QuotaEntity { user: None, client_id: Some(EntityName::Default) };
        q.set(default_client, rate(PRODUCER_BYTE_RATE, 1000.0));
        q.set(client("vip"), rate(PRODUCER_BYTE_RATE, 1e9));
        let anon = QuotaEntity { user: Some(EntityName::Named(ANONYMOUS.into())), client_id: None };
        assert_eq!(q.resolve(QuotaKind::Produce, ANONYMOUS, "vip").unwrap().0, 1e9);
        let (limit, measured) = q.resolve(QuotaKind::Produce, ANONYMOUS, "a").unwrap();
        assert_eq!((limit, measured), (1000.0, client("a")), "a default client quota is each client's own");
        // A user quota is more specific than any client-id-only quota and shared by
        // the user's clients.
        q.set(anon.clone(), rate(PRODUCER_BYTE_RATE, 5000.0));
        assert_eq!(q.resolve(QuotaKind::Produce, ANONYMOUS, "vip").unwrap(), (5000.0, anon.clone()));
        assert_eq!(q.resolve(QuotaKind::Produce, ANONYMOUS, "b").unwrap(), (5000.0, anon));
        assert!(q.resolve(QuotaKind::Fetch, ANONYMOUS, "b").is_none());
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let e = client("c");
        assert!(validate(&e, PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(validate(&e, "request_percentage", 50.0).unwrap_err().contains("not enforced"));
        assert!(validate(&e, "bogus", 1.0).unwrap_err().contains("unknown quota key"));
        assert!(validate(&e, CONSUMER_BYTE_RATE, -1.0).unwrap_err().contains("positive"));
        assert!(validate(&e, CONSUMER_BYTE_RATE, 1.5).unwrap_err().contains("whole"));
        assert!(validate(&QuotaEntity::default(), CONSUMER_BYTE_RATE, 1.0).is_err());
    }
}
