//! Membership: this broker's key `brokers/<id>` under an etcd lease it keeps alive,
//! the node id taken from etcd when the configuration leaves it to etcd, and the
//! local deadline after which the broker takes itself for gone.
//!
//! Liveness is judged conservatively on the broker's own monotonic clock: a renewal
//! sent at `t` and answered with TTL `s` is good until `t + s`, and etcd cannot expire
//! the lease before that (it counts from when the renewal arrived, after `t`). Past
//! that deadline the broker is not live and serves no writes until it holds a lease
//! again.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::etcd::{ClusterError, Etcd};
use super::topology::BrokerInfo;

/// The lease this broker holds, as the other cluster tasks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// etcd's lease id; 0 while the broker holds none.
    pub id: i64,
    /// Until when the broker may act on it (its own clock, conservative).
    pub until: Option<Instant>,
}

impl Lease {
    pub const NONE: Lease = Lease { id: 0, until: None };

    pub fn live(&self, now: Instant) -> bool {
        self.id != 0 && self.until.is_some_and(|u| now < u)
    }
}

/// The key of broker `id`.
pub fn broker_key(id: i32) -> String {
    format!("brokers/{id:010}")
}

/// Resolves `node_id = -1`: the id this data directory was given before, or the
/// lowest id nobody has claimed in etcd (claimed for good, and remembered in the data
/// directory so a restart keeps it).
pub async fn resolve_node_id(etcd: &Etcd, configured: i32, data_dir: &Path) -> anyhow::Result<i32> {
    if configured >= 0 {
        return Ok(configured);
    }
    let file = data_dir.join("cluster-node-id");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let id = text.trim().parse::<i32>().map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        return Ok(id);
    }
    std::fs::create_dir_all(data_dir)?;
    let claim = uuid::Uuid::new_v4().to_string();
    for id in 0..i32::MAX {
        let key = format!("node-ids/{id:010}");
        match etcd.create(&key, claim.clone().into_bytes(), 0).await? {
            Ok(()) => {
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, format!("{id}\n"))?;
                std::fs::rename(&tmp, &file)?;
                tracing::info!(node_id = id, "node id assigned by etcd");
                return Ok(id);
            }
            Err(_) => continue,
        }
    }
    anyhow::bail!("no free node id in etcd")
}

/// Registers this broker and keeps its lease alive until `shutdown`, then revokes it
/// (so the brokers' keys and the controller key it holds go at once). Publishes the
/// lease it holds in `lease`.
pub async fn run(
    etcd: Etcd,
    info: BrokerInfo,
    ttl_secs: u64,
    lease: watch::Sender<Lease>,
    shutdown: CancellationToken,
) {
    let ttl = Duration::from_secs(ttl_secs);
    loop {
        let held = tokio::select! {
            _ = shutdown.cancelled() => return,
            held = register(&etcd, &info, ttl_secs) => held,
        };
        let mut until = held.1 + ttl;
        lease.send_replace(Lease { id: held.0, until: Some(until) });
        tracing::info!(node_id = info.id, lease = held.0, "registered in etcd");
        let mut next_renewal = Instant::now() + ttl / 3;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    lease.send_replace(Lease::NONE);
                    if let Err(e) = etcd.revoke(held.0).await {
                        tracing::warn!(error = %e, "could not revoke the etcd lease; it expires by itself");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(next_renewal) => {
                    let sent = Instant::now();
                    if sent >= until {
                        // Past the deadline this broker has acted as gone (refused
                        // what it had in flight; others may have taken its partitions
                        // over), even if etcd kept or restored the lease: a new one.
                        tracing::warn!(node_id = info.id, lease = held.0, "etcd lease deadline passed; registering again under a new lease");
                        lease.send_replace(Lease::NONE);
                        let _ = etcd.revoke(held.0).await;
                        break;
                    }
                    match etcd.keep_alive_once(held.0).await {
                        Ok(left) if left > 0 => {
                            until = sent + Duration::from_secs(left as u64);
                            lease.send_replace(Lease { id: held.0, until: Some(until) });
                            next_renewal = Instant::now() + ttl / 3;
                        }
                        Ok(_) => {
                            tracing::warn!(node_id = info.id, lease = held.0, "etcd lease expired; registering again");
                            lease.send_replace(Lease::NONE);
                            break;
                        }
                        // Past the deadline the lease may be gone (etcd answers "lease
                        // not found"): only a new one helps.
                        Err(e) if e.to_string().contains("not found") => {
                            tracing::warn!(node_id = info.id, lease = held.0, error = %e, "etcd lease lost; registering again");
                            lease.send_replace(Lease::NONE);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "etcd lease renewal failed; retrying");
                            next_renewal = Instant::now() + Duration::from_millis(250).min(ttl / 4);
                        }
                    }
                }
            }
        }
    }
}

/// Takes a lease and writes `brokers/<id>` under it. Waits while another process
/// holds the key (the previous incarnation until its lease expires, or a second
/// broker configured with the same id, which is logged). Returns the lease and when
/// it was granted.
async fn register(etcd: &Etcd, info: &BrokerInfo, ttl_secs: u64) -> (i64, Instant) {
    let value = serde_json::to_vec(info).expect("broker info serialises");
    let key = broker_key(info.id);
    let mut warned = false;
    loop {
        let attempt = async {
            let granted = Instant::now();
            let id = etcd.grant(ttl_secs).await?;
            match etcd.create(&key, value.clone(), id).await? {
                Ok(()) => Ok::<_, ClusterError>(Some((id, granted))),
                Err(holder) => {
                    if !warned {
                        let other: Option<BrokerInfo> = serde_json::from_slice(&holder.value).ok();
                        tracing::warn!(
                            node_id = info.id,
                            holder = other.map(|o| o.incarnation).unwrap_or_default(),
                            "node id is registered by another broker process; waiting for its lease to expire"
                        );
                        warned = true;
                    }
                    let _ = etcd.revoke(id).await;
                    Ok(None)
                }
            }
        };
        match attempt.await {
            Ok(Some(held)) => return held,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot register in etcd; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_live_only_before_its_deadline() {
        let now = Instant::now();
        assert!(!Lease::NONE.live(now));
        assert!(Lease { id: 5, until: Some(now + Duration::from_secs(1)) }.live(now));
        assert!(!Lease { id: 5, until: Some(now) }.live(now));
        assert!(!Lease { id: 0, until: Some(now + Duration::from_secs(1)) }.live(now));
    }

    #[test]
    fn broker_keys_sort_by_id() {
        assert!(broker_key(9) < broker_key(10));
    }
}
