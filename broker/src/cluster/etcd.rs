//! The etcd client of cluster mode: every key under `/tributary/<cluster name>/`,
//! every request under a deadline, errors as [`ClusterError`].

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("etcd {op}: {message}")]
    Etcd { op: &'static str, message: String },
    #[error("etcd {op}: no answer within {timeout_ms} ms (cluster.etcd_timeout_ms)")]
    Timeout { op: &'static str, timeout_ms: u64 },
    #[error("etcd value at {key} is not what this broker wrote: {message}")]
    BadValue { key: String, message: String },
}

/// One key as read.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key below the cluster prefix.
    pub key: String,
    pub value: Vec<u8>,
    pub lease: i64,
    pub mod_revision: i64,
}

/// etcd, seen from one cluster.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Etcd {
    /// Connects lazily: the first request reaches etcd, so a broker can start while
    /// etcd is still coming up and waits for it there.
    pub async fn connect(endpoints: &[String], cluster: &str, timeout: Duration) -> Result<Etcd, ClusterError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| ClusterError::Etcd { op: "connect", message: e.to_string() })?;
        Ok(Etcd { client, prefix: format!("/tributary/{cluster}/"), timeout })
    }

    /// The full key of `key` below the cluster prefix.
    pub fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClusterError::Etcd { op, message: e.to_string() }),
            Err(_) => Err(ClusterError::Timeout { op, timeout_ms: self.timeout.as_millis() as u64 }),
        }
    }

    fn entry(&self, kv: &etcd_client::KeyValue) -> Entry {
        let key = String::from_utf8_lossy(kv.key());
        Entry {
            key: key.strip_prefix(&self.prefix).unwrap_or(&key).to_string(),
            value: kv.value().to_vec(),
            lease: kv.lease(),
            mod_revision: kv.mod_revision(),
        }
    }

    /// Every key starting with `prefix`, and the store revision they were read at.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<Entry>, i64), ClusterError> {
        let mut client = self.client.clone();
        let response = self.timed("get", client.get(self.full(prefix), Some(GetOptions::new().with_prefix()))).await?;
        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
        Ok((response.kvs().iter().map(|kv| self.entry(kv)).collect(), revision))
    }

    /// Every key starting with `prefix`, read `page` keys per request, all at the
    /// revision of the first (a consistent snapshot however many keys there are).
    pub async fn list_paged(&self, prefix: &str, page: i64) -> Result<Vec<Entry>, ClusterError> {
        let full = self.full(prefix);
        let mut end = full.clone().into_bytes();
        // The range end of a prefix: its last byte raised by one (prefixes here end
        // in '/', never 0xff).
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut client = self.client.clone();
        let mut from = full.into_bytes();
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(page);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let response = self.timed("get", client.get(from.clone(), Some(options))).await?;
            if revision == 0 {
                revision = response.header().map(|h| h.revision()).unwrap_or(0);
            }
            out.extend(response.kvs().iter().map(|kv| self.entry(kv)));
            match response.kvs().last() {
                Some(kv) if response.more() => {
                    from = kv.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// One key, if present.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, ClusterError> {
        let mut client = self.client.clone();
        let response = self.timed("get", client.get(self.full(key), None)).await?;
        Ok(response.kvs().first().map(|kv| self.entry(kv)))
    }

    /// Writes `key` only if it does not exist; `lease` 0 for none. Returns whether it
    /// was written, and the entry that is there otherwise.
    pub async fn create(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<Result<(), Entry>, ClusterError> {
        let full = self.full(key);
        let put = if lease == 0 { None } else { Some(PutOptions::new().with_lease(lease)) };
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), value, put)])
            .or_else([TxnOp::get(full, None)]);
        let mut client = self.client.clone();
        let response = self.timed("txn", client.txn(txn)).await?;
        if response.succeeded() {
            return Ok(Ok(()));
        }
        for op in response.op_responses() {
            if let etcd_client::TxnOpResponse::Get(get) = op {
                if let Some(kv) = get.kvs().first() {
                    return Ok(Err(self.entry(kv)));
                }
            }
        }
        // Deleted between the compare and the read: report it as free next time.
        Err(ClusterError::Etcd { op: "txn", message: format!("{key} vanished while it was read") })
    }

    /// One transaction, as built by the caller (keys already full).
    pub async fn txn(&self, op: &'static str, txn: Txn) -> Result<etcd_client::TxnResponse, ClusterError> {
        let mut client = self.client.clone();
        self.timed(op, client.txn(txn)).await
    }

    /// Watches every key starting with `prefix` from `revision` on.
    pub async fn watch(&self, prefix: &str, revision: i64) -> Result<WatchStream, ClusterError> {
        let mut client = self.client.clone();
        let options = WatchOptions::new().with_prefix().with_start_revision(revision);
        self.timed("watch", client.watch(self.full(prefix), Some(options))).await
    }

    /// A new lease of `ttl` seconds.
    pub async fn grant(&self, ttl: u64) -> Result<i64, ClusterError> {
        let mut client = self.client.clone();
        Ok(self.timed("lease grant", client.lease_grant(ttl as i64, None)).await?.id())
    }

    /// Renews `lease` once; returns the TTL left (0: the lease is gone).
    pub async fn keep_alive_once(&self, lease: i64) -> Result<i64, ClusterError> {
        let mut client = self.client.clone();
        let (mut keeper, mut stream) = self.timed("lease keep-alive", client.lease_keep_alive(lease)).await?;
        self.timed("lease keep-alive", keeper.keep_alive()).await?;
        match self.timed("lease keep-alive", stream.message()).await? {
            Some(response) => Ok(response.ttl()),
            None => Err(ClusterError::Etcd { op: "lease keep-alive", message: "stream closed".into() }),
        }
    }

    /// Revokes `lease`: every key it holds goes at once (a clean shutdown).
    pub async fn revoke(&self, lease: i64) -> Result<(), ClusterError> {
        let mut client = self.client.clone();
        self.timed("lease revoke", client.lease_revoke(lease)).await.map(|_| ())
    }
}

/// Waits until `applied` (the etcd revision a follower applied) reaches `revision`;
/// false when it did not within `limit`.
pub async fn caught_up(applied: &tokio::sync::watch::Receiver<i64>, revision: i64, limit: Duration) -> bool {
    let mut applied = applied.clone();
    tokio::time::timeout(limit, async { applied.wait_for(|&r| r >= revision).await.is_ok() }).await.unwrap_or(false)
}

/// What [`follow`] keeps current from one prefix of etcd.
pub trait Follower: Send {
    /// What the prefix is called in the logs.
    const WHAT: &'static str;
    /// Applies every entry under the prefix (keys below the cluster prefix); false
    /// when something failed and the prefix must be read again.
    fn listed(&mut self, entries: Vec<Entry>) -> impl std::future::Future<Output = bool> + Send;
    /// Applies one change of `key` (below the cluster prefix): its new value, or
    /// `None` when it was deleted; false to read the prefix again.
    fn changed(&mut self, key: &str, value: Option<&[u8]>) -> impl std::future::Future<Output = bool> + Send;
}

/// Keeps `f` equal to what etcd holds under `prefix` until `shutdown`: reads the
/// prefix whole, then applies each change from the watch; after a failure, or when
/// the watch breaks, reads it whole again. Publishes the revision applied.
pub async fn follow<F: Follower>(
    etcd: &Etcd,
    prefix: &str,
    mut f: F,
    applied: tokio::sync::watch::Sender<i64>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let retry = Duration::from_millis(500);
    loop {
        let listed = tokio::select! {
            _ = shutdown.cancelled() => return,
            listed = etcd.list(prefix) => listed,
        };
        let (entries, revision) = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the {}; retrying", F::WHAT);
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        if !f.listed(entries).await {
            tokio::time::sleep(retry).await;
            continue;
        }
        applied.send_replace(revision);
        let Ok(mut stream) = etcd.watch(prefix, revision + 1).await else {
            tokio::time::sleep(retry).await;
            continue;
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = stream.message() => m,
            };
            let Ok(Some(message)) = message else { break };
            if message.canceled() {
                break;
            }
            let mut ok = true;
            let mut last = 0;
            for event in message.events() {
                let Some(kv) = event.kv() else { continue };
                last = last.max(kv.mod_revision());
                let key = String::from_utf8_lossy(kv.key());
                let Some(key) = key.strip_prefix(&etcd.prefix) else { continue };
                let value = match event.event_type() {
                    etcd_client::EventType::Put => Some(kv.value()),
                    etcd_client::EventType::Delete => None,
                };
                ok &= f.changed(key, value).await;
            }
            if !ok {
                // Read the prefix again: the next round repairs what failed.
                break;
            }
            let header = message.header().map(|h| h.revision()).unwrap_or(last);
            applied.send_replace(header.max(last));
        }
    }
}
