//! Range checks that serde cannot express. Every problem is collected, each naming
//! its key and the allowed range.

use std::net::SocketAddr;

use crate::{Config, ConfigError};

fn range<T: PartialOrd + std::fmt::Display>(p: &mut Vec<String>, key: &str, v: T, lo: T, hi: T) {
    if v < lo || v > hi {
        p.push(format!("{key}: {v} is out of range [{lo}, {hi}]"));
    }
}

fn address(p: &mut Vec<String>, key: &str, v: &str) {
    let ok = v.parse::<SocketAddr>().is_ok()
        || v.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !ok {
        p.push(format!("{key}: {v:?} is not HOST:PORT"));
    }
}

/// Cluster mode: etcd endpoints as URLs, a name usable as a key prefix, and a
/// segment store every broker shares.
fn cluster(p: &mut Vec<String>, c: &Config) {
    let k = &c.cluster;
    for e in &k.etcd_endpoints {
        let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://"));
        if !rest
            .is_some_and(|r| r.rsplit_once(':').is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok()))
        {
            p.push(format!("cluster.etcd_endpoints: {e:?} is not http://HOST:PORT"));
        }
    }
    if k.name.is_empty()
        || k.name.len() > 64
        || !k.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
    {
        p.push(format!("cluster.name: {:?} must be 1 to 64 of [A-Za-z0-9._-]", k.name));
    }
    range(p, "cluster.lease_ttl_secs", k.lease_ttl_secs, 2, 300);
    range(p, "cluster.etcd_timeout_ms", k.etcd_timeout_ms, 100, 60_000);
    if !(1.0..=4.0).contains(&k.balance_factor) {
        p.push(format!("cluster.balance_factor: {} is out of range [1, 4]", k.balance_factor));
    }
    range(p, "cluster.weight", k.weight, 1, 100);
    range(p, "cluster.sweep_interval_secs", k.sweep_interval_secs, 1, 86_400);
    range(p, "cluster.sweep_grace_secs", k.sweep_grace_secs, 1, 7 * 86_400);
    range(p, "cluster.load_interval_secs", k.load_interval_secs, 1, 3600);
    range(p, "cluster.load_unit_bytes", k.load_unit_bytes, 1024, 1 << 40);
    if k.rack.len() > 255 {
        p.push("cluster.rack: longer than 255 bytes".into());
    }
    if k.enabled() && (c.storage.backend == "fs" || c.storage.backend == "memory") {
        p.push(format!(
            "storage.backend: cluster mode (cluster.etcd_endpoints set) needs a segment store every broker \
             shares, such as \"s3\"; {:?} is local to one broker",
            c.storage.backend
        ));
    }
}

/// Listeners with unique names and valid addresses; SASL and TLS settings present
/// where a listener's protocol needs them.
fn security(p: &mut Vec<String>, c: &Config) {
    let s = &c.security;
    let mut names = std::collections::BTreeSet::from(["default"]);
    for (i, l) in c.listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        if l.name.is_empty() || !l.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
            p.push(format!("{key}.name: {:?} must be 1 or more of [A-Za-z0-9_-]", l.name));
        } else if !names.insert(l.name.as_str()) {
            p.push(format!("{key}.name: {:?} is used twice (\"default\" is the listener of `listen`)", l.name));
        }
        address(p, &format!("{key}.listen"), &l.listen);
        if !l.advertised.is_empty() {
            address(p, &format!("{key}.advertised"), &l.advertised);
        }
    }
    let protocols: Vec<_> = std::iter::once(s.protocol).chain(c.listeners.iter().map(|l| l.protocol)).collect();
    for m in &s.sasl_mechanisms {
        if !crate::SASL_MECHANISMS.contains(&m.as_str()) {
            p.push(format!("security.sasl_mechanisms: {m:?} is not one of {:?}", crate::SASL_MECHANISMS));
        }
    }
    if protocols.iter().any(|p| p.sasl()) && s.sasl_mechanisms.is_empty() {
        p.push("security.sasl_mechanisms: a SASL listener needs at least one mechanism".into());
    }
    range(p, "security.connections_max_reauth_ms", s.connections_max_reauth_ms, 0, i64::MAX as u64);
    range(p, "security.bootstrap_iterations", s.bootstrap_iterations, 4096, 16384);
    for u in &s.super_users {
        if !u.split_once(':').is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty()) {
            p.push(format!("security.super_users: {u:?} is not a principal such as \"User:admin\""));
        }
    }
    for user in s.bootstrap_users.keys() {
        if user.is_empty() {
            p.push("security.bootstrap_users: a user name must not be empty".into());
        }
    }
    let sc = &s.scopes;
    for (principal, scope) in &sc.principals {
        if !crate::security::valid_scope(scope) {
            p.push(format!(
                "security.scopes.principals.{principal:?}: scope {scope:?} must be 1 to 64 of [A-Za-z0-9._-]"
            ));
        }
    }
    range(p, "security.scopes.usage_interval_ms", sc.usage_interval_ms, 100, 3_600_000);
    let anonymous = "User:ANONYMOUS".to_string();
    if sc.enabled && c.cluster.enabled() && !sc.operators.contains(&anonymous) && !s.super_users.contains(&anonymous) {
        p.push(
            "security.scopes: in cluster mode brokers call each other as User:ANONYMOUS on the `default` listener, \
             which must see every scope: add \"User:ANONYMOUS\" to security.scopes.operators"
                .into(),
        );
    }
    if sc.user_separator.chars().count() > 1 {
        p.push(format!("security.scopes.user_separator: {:?} must be one character or empty", sc.user_separator));
    }
    let o = &s.oauthbearer;
    if s.sasl_mechanisms.iter().any(|m| m == "OAUTHBEARER") && o.public_key_files.is_empty() && o.hmac_secret.is_empty()
    {
        p.push("security.oauthbearer: OAUTHBEARER needs public_key_files or hmac_secret to check tokens".into());
    }
    if o.principal_claim.is_empty() {
        p.push("security.oauthbearer.principal_claim: must not be empty".into());
    }
    range(p, "security.oauthbearer.clock_skew_ms", o.clock_skew_ms, 0, 3_600_000);
    let t = &s.tls;
    if protocols.iter().any(|p| p.tls()) {
        if t.cert_file.is_empty() || t.key_file.is_empty() {
            p.push("security.tls: an SSL or SASL_SSL listener needs cert_file and key_file".into());
        }
        if t.client_auth != crate::ClientAuth::None && t.ca_file.is_empty() {
            p.push("security.tls.ca_file: client_auth other than \"none\" needs the authorities to check".into());
        }
    }
    range(p, "security.tls.reload_interval_ms", t.reload_interval_ms, 100, 86_400_000);
    if c.cluster.enabled() && s.protocol != crate::SecurityProtocol::Plaintext {
        p.push(
            "security.protocol: in cluster mode brokers reach each other on the listener of `listen`, which must be \
             PLAINTEXT (bind it to a private address); serve clients SSL or SASL on a [[listeners]] entry"
                .into(),
        );
    }
}

/// Checks every range; returns all problems at once.
pub(crate) fn check(c: &Config) -> Result<(), ConfigError> {
    let mut p = Vec::new();
    address(&mut p, "listen", &c.listen);
    address(&mut p, "http_listen", &c.http_listen);
    if !c.advertised_listener.is_empty() {
        address(&mut p, "advertised_listener", &c.advertised_listener);
    }
    if c.data_dir.as_os_str().is_empty() {
        p.push("data_dir: must not be empty".into());
    }
    range(&mut p, "node_id", c.node_id, if c.cluster.enabled() { -1 } else { 0 }, i32::MAX);
    cluster(&mut p, c);
    security(&mut p, c);
    range(&mut p, "journal.fsync_interval_ms", c.journal.fsync_interval_ms, 1, 60_000);
    range(&mut p, "journal.file_bytes", c.journal.file_bytes, 1 << 20, 1 << 34);
    range(&mut p, "journal.group_commit_bytes", c.journal.group_commit_bytes, 1 << 16, 1 << 30);
    range(&mut p, "journal.queue_depth", c.journal.queue_depth, 1, 1 << 20);
    range(&mut p, "journal.max_bytes", c.journal.max_bytes, c.journal.file_bytes.saturating_mul(2), 1 << 44);
    range(&mut p, "journal.checkpoint_bytes", c.journal.checkpoint_bytes, 1 << 20, 1 << 40);
    range(&mut p, "topics.num_partitions", c.topics.num_partitions, 1, 100_000);
    range(&mut p, "topics.message_max_bytes", c.topics.message_max_bytes, 64, i32::MAX);
    range(&mut p, "topics.retention_ms", c.topics.retention_ms, -1, i64::MAX);
    range(&mut p, "topics.retention_bytes", c.topics.retention_bytes, -1, i64::MAX);
    range(&mut p, "topics.segment_bytes", c.topics.segment_bytes, 1 << 14, 1 << 34);
    range(&mut p, "topics.segment_ms", c.topics.segment_ms, 1, i64::MAX);
    if !["fixed", "bytes", "records"].contains(&c.topics.scaling_policy.as_str()) {
        p.push(format!("topics.scaling_policy: {:?} must be fixed, bytes or records", c.topics.scaling_policy));
    }
    range(&mut p, "topics.scaling_target", c.topics.scaling_target, 1, i64::MAX);
    if !(c.topics.scaling_factor > 1.0 && c.topics.scaling_factor <= 16.0) {
        p.push(format!("topics.scaling_factor: {} is out of range (1, 16]", c.topics.scaling_factor));
    }
    range(&mut p, "topics.scaling_max_partitions", c.topics.scaling_max_partitions, 1, 100_000);
    range(&mut p, "topics.scaling_window_ms", c.topics.scaling_window_ms, 100, i64::MAX);
    range(&mut p, "topics.scaling_cooldown_ms", c.topics.scaling_cooldown_ms, 0, i64::MAX);
    range(&mut p, "transactions.max_timeout_ms", c.transactions.max_timeout_ms, 1, i32::MAX);
    range(&mut p, "transactions.version", c.transactions.version, 1, 2);
    range(&mut p, "transactions.id_expiration_ms", c.transactions.id_expiration_ms, 1, i32::MAX as i64);
    range(
        &mut p,
        "transactions.remove_expired_interval_ms",
        c.transactions.remove_expired_interval_ms,
        10,
        u32::MAX as u64,
    );
    range(
        &mut p,
        "transactions.producer_id_expiration_ms",
        c.transactions.producer_id_expiration_ms,
        1,
        i32::MAX as i64,
    );
    range(
        &mut p,
        "transactions.producer_id_expiration_check_interval_ms",
        c.transactions.producer_id_expiration_check_interval_ms,
        10,
        u32::MAX as u64,
    );
    range(
        &mut p,
        "transactions.abort_timed_out_interval_ms",
        c.transactions.abort_timed_out_interval_ms,
        10,
        3_600_000,
    );
    if c.topics.rate_windows_ms.is_empty()
        || c.topics.rate_windows_ms.len() > 8
        || c.topics.rate_windows_ms.iter().any(|w| !(1000..=86_400_000).contains(w))
    {
        p.push(format!(
            "topics.rate_windows_ms: {:?} must be 1 to 8 windows of 1000 ..= 86400000 ms",
            c.topics.rate_windows_ms
        ));
    }
    range(&mut p, "topics.rate_sample_ms", c.topics.rate_sample_ms, 100, 600_000);
    range(&mut p, "topics.scaling_sample_ms", c.topics.scaling_sample_ms, 10, 600_000);
    range(&mut p, "limits.socket_request_max_bytes", c.limits.socket_request_max_bytes, 1 << 10, i32::MAX as u64);
    range(&mut p, "limits.max_in_flight_per_connection", c.limits.max_in_flight_per_connection, 1, 1024);
    range(&mut p, "limits.max_connections", c.limits.max_connections, 1, 1_000_000);
    let l = &c.limits;
    range(&mut p, "limits.max_connections_per_ip", l.max_connections_per_ip, 1, 1_000_000);
    if l.max_connections >= 1 {
        range(&mut p, "limits.reserved_connections", l.reserved_connections, 0, l.max_connections - 1);
    }
    range(&mut p, "limits.connections_max_idle_ms", l.connections_max_idle_ms, 1_000, 1 << 40);
    range(&mut p, "limits.request_read_timeout_ms", l.request_read_timeout_ms, 100, 3_600_000);
    range(&mut p, "limits.max_request_partition_size_limit", l.max_request_partition_size_limit, 1, 1_000_000);
    // Past the largest frame, so that every frame can be read (checked only once
    // that limit is itself valid, so one mistake gives one message).
    let largest_frame = if l.socket_request_max_bytes <= i32::MAX as u64 { l.socket_request_max_bytes } else { 0 };
    range(&mut p, "limits.queued_max_request_bytes", l.queued_max_request_bytes, largest_frame, 1 << 40);
    for (addr, limit) in &l.max_connections_per_ip_overrides {
        if addr.parse::<std::net::IpAddr>().is_err() {
            p.push(format!("limits.max_connections_per_ip_overrides: {addr:?} is not an IP address"));
        }
        range(&mut p, &format!("limits.max_connections_per_ip_overrides.{addr}"), *limit, 0, 1_000_000);
    }
    range(&mut p, "storage.upload_part_bytes", c.storage.upload_part_bytes, 5 << 20, 1 << 30);
    range(&mut p, "storage.upload_concurrency", c.storage.upload_concurrency, 1, 64);
    range(&mut p, "cache.partition_bytes", c.cache.partition_bytes, 0, 1 << 34);
    range(&mut p, "cache.total_bytes", c.cache.total_bytes, 0, 1 << 40);
    let g = &c.groups;
    range(&mut p, "groups.initial_rebalance_delay_ms", g.initial_rebalance_delay_ms, 0, 300_000);
    range(&mut p, "groups.min_session_timeout_ms", g.min_session_timeout_ms, 1, 3_600_000);
    range(&mut p, "groups.max_session_timeout_ms", g.max_session_timeout_ms, g.min_session_timeout_ms, 3_600_000);
    range(&mut p, "groups.max_size", g.max_size, 1, 1_000_000);
    range(&mut p, "groups.consumer_heartbeat_interval_ms", g.consumer_heartbeat_interval_ms, 100, 600_000);
    range(
        &mut p,
        "groups.consumer_session_timeout_ms",
        g.consumer_session_timeout_ms,
        g.consumer_heartbeat_interval_ms.saturating_add(1),
        3_600_000,
    );
    range(&mut p, "groups.offsets_retention_minutes", g.offsets_retention_minutes, 1, 1 << 40);
    range(&mut p, "groups.offsets_partitions", g.offsets_partitions, 1, 1000);
    range(&mut p, "groups.offset_metadata_max_bytes", g.offset_metadata_max_bytes, 0, 1 << 20);
    if g.consumer_assignors.is_empty() {
        p.push("groups.consumer_assignors: must name at least one of \"uniform\", \"range\"".into());
    }
    for a in &g.consumer_assignors {
        if a != "uniform" && a != "range" {
            p.push(format!("groups.consumer_assignors: {a:?} is not one of \"uniform\", \"range\""));
        }
    }
    let st = &c.storage;
    range(&mut p, "storage.flush_interval_ms", st.flush_interval_ms, 10, 600_000);
    range(&mut p, "storage.pack_threshold_bytes", st.pack_threshold_bytes, 0, 1 << 34);
    range(&mut p, "storage.pack_bytes", st.pack_bytes, 1 << 16, 1 << 34);
    range(&mut p, "storage.block_cache_bytes", st.block_cache_bytes, 0, 1 << 40);
    range(&mut p, "storage.block_bytes", st.block_bytes, 4096, 1 << 26);
    range(&mut p, "storage.read_ahead_blocks", st.read_ahead_blocks, 0, 1024);
    let others = crate::OTHER_SEGMENT_STORE_BACKENDS;
    if st.backend != "fs" && st.backend != "s3" && !others.contains(&st.backend.as_str()) {
        p.push(format!("storage.backend: {:?} is not one of \"fs\", \"s3\", {}", st.backend, others.join(", ")));
    }
    if (st.backend == "fs" || st.backend == "s3") && !st.options.is_empty() {
        p.push(format!(
            "storage.options: only for a backend other than \"fs\" and \"s3\" (those are set in their own keys); \
             backend is {:?}",
            st.backend
        ));
    }
    if st.backend == "s3" && st.s3.bucket.is_empty() {
        p.push("storage.s3.bucket: must be set when storage.backend = \"s3\"".into());
    }
    range(&mut p, "storage.retry_max_times", st.retry_max_times, 0, 100);
    range(&mut p, "storage.retry_min_delay_ms", st.retry_min_delay_ms, 1, 60_000);
    range(&mut p, "storage.retry_max_delay_ms", st.retry_max_delay_ms, st.retry_min_delay_ms, 600_000);
    range(&mut p, "quotas.window_ms", c.quotas.window_ms, 10, 3_600_000);
    range(&mut p, "quotas.window_samples", c.quotas.window_samples, 2, 1000);
    range(&mut p, "telemetry.max_bytes", c.telemetry.max_bytes, 1, i32::MAX);
    if c.topics.message_max_bytes as u64 > c.limits.socket_request_max_bytes {
        p.push(format!(
            "topics.message_max_bytes: {} exceeds limits.socket_request_max_bytes ({})",
            c.topics.message_max_bytes, c.limits.socket_request_max_bytes
        ));
    }
    if p.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems: p })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row: a mutation of the defaults and the key its error must name.
    #[test]
    fn every_range_error_names_its_key() {
        type Mutation = fn(&mut Config);
        let rows: &[(Mutation, &str)] = &[
            (|c| c.listen = "nowhere".into(), "listen"),
            (|c| c.http_listen = ":x".into(), "http_listen"),
            (|c| c.advertised_listener = "host".into(), "advertised_listener"),
            (|c| c.data_dir = "".into(), "data_dir"),
            (|c| c.node_id = -1, "node_id"),
            (|c| c.journal.fsync_interval_ms = 0, "journal.fsync_interval_ms"),
            (|c| c.journal.file_bytes = 10, "journal.file_bytes"),
            (|c| c.journal.group_commit_bytes = 1, "journal.group_commit_bytes"),
            (|c| c.journal.queue_depth = 0, "journal.queue_depth"),
            (|c| c.journal.max_bytes = c.journal.file_bytes, "journal.max_bytes"),
            (|c| c.storage.flush_interval_ms = 1, "storage.flush_interval_ms"),
            (|c| c.storage.pack_bytes = 10, "storage.pack_bytes"),
            (|c| c.storage.block_bytes = 10, "storage.block_bytes"),
            (|c| c.storage.read_ahead_blocks = 5000, "storage.read_ahead_blocks"),
            (|c| c.topics.num_partitions = 0, "topics.num_partitions"),
            (|c| c.topics.scaling_policy = "sometimes".into(), "topics.scaling_policy"),
            (|c| c.topics.scaling_factor = 1.0, "topics.scaling_factor"),
            (|c| c.topics.scaling_window_ms = 0, "topics.scaling_window_ms"),
            (|c| c.topics.rate_windows_ms = vec![], "topics.rate_windows_ms"),
            (|c| c.topics.rate_windows_ms = vec![10], "topics.rate_windows_ms"),
            (|c| c.transactions.max_timeout_ms = 0, "transactions.max_timeout_ms"),
            (|c| c.transactions.id_expiration_ms = 0, "transactions.id_expiration_ms"),
            (
                |c| c.transactions.producer_id_expiration_check_interval_ms = 1,
                "transactions.producer_id_expiration_check_interval_ms",
            ),
            (|c| c.topics.message_max_bytes = 1, "topics.message_max_bytes"),
            (|c| c.topics.retention_ms = -2, "topics.retention_ms"),
            (|c| c.topics.retention_bytes = -2, "topics.retention_bytes"),
            (|c| c.topics.segment_bytes = 1, "topics.segment_bytes"),
            (|c| c.topics.segment_ms = 0, "topics.segment_ms"),
            (|c| c.limits.socket_request_max_bytes = 3_000_000_000, "limits.socket_request_max_bytes"),
            (|c| c.limits.max_in_flight_per_connection = 0, "limits.max_in_flight_per_connection"),
            (|c| c.limits.max_connections = 0, "limits.max_connections"),
            (|c| c.cache.partition_bytes = u64::MAX, "cache.partition_bytes"),
            (|c| c.cache.total_bytes = u64::MAX, "cache.total_bytes"),
            (|c| c.groups.initial_rebalance_delay_ms = 400_000, "groups.initial_rebalance_delay_ms"),
            (|c| c.groups.min_session_timeout_ms = 0, "groups.min_session_timeout_ms"),
            (|c| c.groups.max_session_timeout_ms = 10, "groups.max_session_timeout_ms"),
            (|c| c.groups.max_size = 0, "groups.max_size"),
            (|c| c.groups.consumer_heartbeat_interval_ms = 1, "groups.consumer_heartbeat_interval_ms"),
            (|c| c.groups.consumer_session_timeout_ms = 10, "groups.consumer_session_timeout_ms"),
            (|c| c.groups.offsets_retention_minutes = 0, "groups.offsets_retention_minutes"),
            (|c| c.groups.offsets_partitions = 0, "groups.offsets_partitions"),
            (|c| c.groups.offset_metadata_max_bytes = u32::MAX, "groups.offset_metadata_max_bytes"),
            (|c| c.groups.consumer_assignors = vec!["sticky".into()], "groups.consumer_assignors"),
            (|c| c.storage.backend = "tape".into(), "storage.backend"),
            (|c| c.storage.backend = "s3".into(), "storage.s3.bucket"),
            (|c| _ = c.storage.options.insert("root".into(), "/x".into()), "storage.options"),
            (|c| c.storage.retry_max_times = 1000, "storage.retry_max_times"),
            (|c| c.storage.retry_min_delay_ms = 0, "storage.retry_min_delay_ms"),
            (|c| c.storage.retry_max_delay_ms = 1, "storage.retry_max_delay_ms"),
            (|c| c.quotas.window_ms = 0, "quotas.window_ms"),
            (|c| c.quotas.window_samples = 1, "quotas.window_samples"),
            (
                |c| {
                    c.cluster.etcd_endpoints = vec!["127.0.0.1:2379".into()];
                    c.storage.backend = "s3".into();
                    c.storage.s3.bucket = "b".into();
                },
                "cluster.etcd_endpoints",
            ),
            (|c| c.cluster.name = "a/b".into(), "cluster.name"),
            (|c| c.cluster.lease_ttl_secs = 1, "cluster.lease_ttl_secs"),
            (|c| c.cluster.etcd_timeout_ms = 0, "cluster.etcd_timeout_ms"),
            (|c| c.cluster.balance_factor = 0.9, "cluster.balance_factor"),
            (|c| c.cluster.balance_factor = f64::NAN, "cluster.balance_factor"),
            (|c| c.cluster.weight = 0, "cluster.weight"),
            (|c| c.cluster.sweep_interval_secs = 0, "cluster.sweep_interval_secs"),
            (|c| c.cluster.sweep_grace_secs = 0, "cluster.sweep_grace_secs"),
            (|c| c.cluster.load_interval_secs = 0, "cluster.load_interval_secs"),
            (|c| c.cluster.load_unit_bytes = 10, "cluster.load_unit_bytes"),
            (|c| c.cluster.rack = "r".repeat(300), "cluster.rack"),
            (
                |c| {
                    c.cluster.etcd_endpoints = vec!["http://127.0.0.1:2379".into()];
                    c.storage.backend = "s3".into();
                    c.storage.s3.bucket = "b".into();
                    c.node_id = -2;
                },
                "node_id",
            ),
        ];
        for (mutate, key) in rows {
            let mut c = Config::default();
            mutate(&mut c);
            let err = check(&c).expect_err(key);
            assert_eq!(err.problems.len(), 1, "{key}: {err}");
            assert!(err.problems[0].starts_with(key), "{key}: {err}");
        }
    }

    #[test]
    fn cluster_mode_refuses_a_segment_store_of_its_own() {
        let mut c = Config::default();
        c.cluster.etcd_endpoints = vec!["http://127.0.0.1:2379".into()];
        let err = check(&c).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].starts_with("storage.backend: cluster mode"), "{err}");
        assert!(err.problems[0].contains("\"fs\""), "{err}");
        c.storage.backend = "s3".into();
        c.storage.s3.bucket = "b".into();
        c.node_id = -1;
        check(&c).unwrap();
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut c = Config { node_id: -5, ..Config::default() };
        c.topics.num_partitions = -1;
        assert_eq!(check(&c).unwrap_err().problems.len(), 2);
    }
}
