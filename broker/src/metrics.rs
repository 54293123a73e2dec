//! Every Prometheus collector of the broker, in one registry, named by Prometheus
//! conventions (units in names, `_total` counters, histograms for latencies).

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The broker's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_errors: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub produce_bytes: IntCounterVec,
    pub produce_records: IntCounterVec,
    pub fetch_bytes: IntCounterVec,
    pub fetch_records: IntCounterVec,
    pub journal_bytes: IntCounter,
    pub journal_appends: IntCounter,
    pub journal_commits: IntCounter,
    pub fsync_seconds: Histogram,
    /// Cluster mode: journal objects.
    pub wal_put_seconds: Histogram,
    pub wal_bytes: IntCounter,
    pub wal_put_errors: IntCounter,
    pub partitions_recovered: IntCounter,
    pub partitions_handed_over: IntCounter,
    pub manifests_published: IntCounter,
    /// Cluster mode: objects the sweeper deleted, by kind.
    pub swept_objects: IntCounterVec,
    /// Cluster mode: objects the last sweep found no longer needed, still in their grace time.
    pub sweep_pending: IntGauge,
    /// Cluster mode, on the controller: each broker's placed load and its bound.
    pub broker_load: IntGaugeVec,
    pub broker_load_bound: IntGaugeVec,
    /// Auto-scaling, per scaled stream.
    pub scaling_events: IntCounterVec,
    pub stream_partitions: IntGaugeVec,
    pub stream_rate: GaugeVec,
    pub stream_last_scaled: IntGaugeVec,
    /// Per-partition produce rates over several windows.
    pub partition_rate: GaugeVec,
    pub partitions_led: IntGauge,
    pub recovery_seconds: Histogram,
    pub journal_write_seconds: Histogram,
    pub journal_queue_seconds: Histogram,
    pub request_stage_seconds: HistogramVec,
    pub fetch_stage_seconds: HistogramVec,
    pub cache_bytes: IntGauge,
    pub connections: IntGauge,
    pub connections_total: IntCounter,
    pub connection_errors: IntCounter,
    pub connections_refused: IntCounterVec,
    pub authentications: IntCounterVec,
    pub request_bytes_reading: IntGauge,
    pub connections_closed: IntCounterVec,
    pub offset_commits: IntCounter,
    pub rebalances: IntCounterVec,
    pub segment_upload_seconds: Histogram,
    pub journal_disk_bytes: IntGauge,
    pub journal_damaged_bytes: IntCounter,
    pub journal_damaged_regions: IntCounter,
    pub journal_missing_offsets: IntCounter,
    pub journal_write_errors: IntCounterVec,
    pub journal_writable: IntGauge,
    pub journal_recovery_bytes: IntGauge,
    pub throttled: IntCounterVec,
    pub throttle_seconds: CounterVec,
    pub scope_throttled: IntCounterVec,
}

/// Bounds of the latency histograms, in seconds: fine between 0.5 and 10 ms, where a
/// produce's stages and the disk's write + fdatasync fall, so that a p99 read from
/// them (interpolated within its bucket) is within a fraction of a millisecond of
/// the exact one, not anywhere between 2.5 and 5 ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone())).expect("invariant: metric names are unique");
            c
        }
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(&registry, IntCounterVec::new(Opts::new(name, help), labels).expect("invariant: valid metric"))
        };
        let counter =
            |name: &str, help: &str| reg(&registry, IntCounter::new(name, help).expect("invariant: valid metric"));
        let gauge =
            |name: &str, help: &str| reg(&registry, IntGauge::new(name, help).expect("invariant: valid metric"));
        Metrics {
            requests: counter_vec("tributary_requests_total", "Requests handled, by API.", &["api"]),
            request_errors: counter_vec(
                "tributary_request_errors_total",
                "Error codes returned in responses, by API and error.",
                &["api", "error"],
            ),
            request_seconds: reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "tributary_request_duration_seconds",
                        "Time from request read to response ready, by API.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["api"],
                )
                .expect("invariant: valid metric"),
            ),
            produce_bytes: counter_vec(
                "tributary_produce_bytes_total",
                "Record batch bytes appended, by topic.",
                &["topic"],
            ),
            produce_records: counter_vec("tributary_produce_records_total", "Records appended, by topic.", &["topic"]),
            fetch_bytes: counter_vec(
                "tributary_fetch_bytes_total",
                "Record batch bytes returned by Fetch, by topic.",
                &["topic"],
            ),
            fetch_records: counter_vec(
                "tributary_fetch_records_total",
                "Records returned by Fetch, by topic.",
                &["topic"],
            ),
            journal_bytes: counter("tributary_journal_bytes_total", "Bytes written to the journal."),
            journal_appends: counter(
                "tributary_journal_appends_total",
                "Appends (one partition's batches) made durable.",
            ),
            journal_commits: counter(
                "tributary_journal_commits_total",
                "Group commits (one write, one fsync) of the journal.",
            ),
            fsync_seconds: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new("tributary_journal_fsync_duration_seconds", "Time of one journal fsync.")
                        .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("invariant: valid metric"),
            ),
            wal_put_seconds: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tributary_wal_put_duration_seconds",
                        "Cluster mode: time of one journal-object upload to the object store.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("invariant: valid metric"),
            ),
            wal_bytes: counter("tributary_wal_bytes_total", "Cluster mode: bytes of journal objects uploaded."),
            wal_put_errors: counter(
                "tributary_wal_put_errors_total",
                "Cluster mode: failed journal-object uploads (each retried).",
            ),
            partitions_recovered: counter(
                "tributary_partitions_taken_over_total",
                "Cluster mode: partitions this broker took over and rebuilt from the object store.",
            ),
            partitions_handed_over: counter(
                "tributary_partitions_handed_over_total",
                "Cluster mode: partitions this broker handed on cleanly (a move, a shutdown).",
            ),
            manifests_published: counter(
                "tributary_partition_manifests_published_total",
                "Cluster mode: partition manifests written after seals and pointed at from etcd.",
            ),
            swept_objects: counter_vec(
                "tributary_swept_objects_total",
                "Cluster mode: objects the controller's sweeper deleted from the object store, by kind \
                 (journal, segment, manifest).",
                &["kind"],
            ),
            sweep_pending: gauge(
                "tributary_sweep_pending_objects",
                "Cluster mode: segment and manifest objects no partition names, waiting out the sweep grace time.",
            ),
            broker_load: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "tributary_cluster_broker_load",
                        "Cluster mode, on the controller: each broker's load as placed (1 per partition plus \
                         its measured produce rate in cluster.load_unit_bytes per second).",
                    ),
                    &["broker"],
                )
                .expect("invariant: valid metric"),
            ),
            broker_load_bound: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "tributary_cluster_broker_load_bound",
                        "Cluster mode, on the controller: each broker's bound, \
                         ceil(balance_factor x total load x weight / total weight).",
                    ),
                    &["broker"],
                )
                .expect("invariant: valid metric"),
            ),
            scaling_events: counter_vec(
                "tributary_stream_scaling_events_total",
                "Auto-scaling steps (partitions added because the stream sustained more than its target), by topic.",
                &["topic"],
            ),
            stream_partitions: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new("tributary_stream_partitions", "Partitions of each stream with a scaling policy."),
                    &["topic"],
                )
                .expect("invariant: valid metric"),
            ),
            stream_rate: reg(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "tributary_stream_rate_per_partition",
                        "Smoothed produce rate per partition of each stream with a scaling policy, in the \
                         policy's unit (bytes/s or records/s).",
                    ),
                    &["topic"],
                )
                .expect("invariant: valid metric"),
            ),
            stream_last_scaled: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "tributary_stream_last_scaling_timestamp_seconds",
                        "When each stream last grew through auto-scaling (seconds since the epoch).",
                    ),
                    &["topic"],
                )
                .expect("invariant: valid metric"),
            ),
            partition_rate: reg(
                &registry,
                GaugeVec::new(
                    Opts::new(
                        "tributary_partition_produce_rate",
                        "Produce rate of each partition something was produced to, in bytes/s or records/s \
                         (unit), averaged over each of topics.rate_windows_ms (window).",
                    ),
                    &["topic", "partition", "unit", "window"],
                )
                .expect("invariant: valid metric"),
            ),
            partitions_led: gauge(
                "tributary_cluster_partitions_led",
                "Cluster mode: partitions this broker has taken over and serves now.",
            ),
            recovery_seconds: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tributary_partition_takeover_duration_seconds",
                        "Cluster mode: from seeing an assignment to serving the partition.",
                    )
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                )
                .expect("invariant: valid metric"),
            ),
            journal_write_seconds: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tributary_journal_write_duration_seconds",
                        "Time of one group-commit write call (with O_DIRECT, until the device has the data).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("invariant: valid metric"),
            ),
            journal_queue_seconds: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tributary_journal_queue_duration_seconds",
                        "Time an append waited for the journal writer (from queued to its group commit's start).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("invariant: valid metric"),
            ),
            request_stage_seconds: reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "tributary_request_stage_duration_seconds",
                        "Time of one stage of a request, by API: wait_to_read (its connection muted by a quota \
                         before it was read), handle (decode, validation, queueing), in_flight_wait (the \
                         connection's in-flight limit), response_slot (Produce: durable, waiting for the answers \
                         before it on its connection), response_write (onto the socket).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["api", "stage"],
                )
                .expect("invariant: valid metric"),
            ),
            fetch_stage_seconds: reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "tributary_fetch_stage_duration_seconds",
                        "Time of a Fetch's stages: wait (long poll for data) and read (collecting the batches).",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["stage"],
                )
                .expect("invariant: valid metric"),
            ),
            cache_bytes: gauge("tributary_cache_bytes", "Bytes of recent batches held in memory."),
            connections: gauge("tributary_connections", "Open client connections."),
            connections_total: counter("tributary_connections_total", "Client connections accepted."),
            connection_errors: counter(
                "tributary_connection_errors_total",
                "Connections closed because of a protocol error or I/O failure.",
            ),
            connections_refused: counter_vec(
                "tributary_connections_refused_total",
                "Connections refused at accept, by limit (max_connections, reserved, max_connections_per_ip).",
                &["reason"],
            ),
            authentications: counter_vec(
                "tributary_authentications_total",
                "SASL and TLS authentications by listener and result (success, failure).",
                &["listener", "result"],
            ),
            request_bytes_reading: gauge(
                "tributary_request_bytes_reading",
                "Bytes received of requests not yet complete, over all connections.",
            ),
            connections_closed: counter_vec(
                "tributary_connections_timed_out_total",
                "Connections closed by the broker for a timeout, by kind (idle, request_read).",
                &["reason"],
            ),
            offset_commits: counter(
                "tributary_group_offset_commits_total",
                "Partition offsets committed to the group coordinator.",
            ),
            rebalances: counter_vec(
                "tributary_group_rebalances_total",
                "Generations (classic) or target assignments (consumer protocol) completed, by protocol.",
                &["protocol"],
            ),
            segment_upload_seconds: reg(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "tributary_segment_upload_duration_seconds",
                        "Time to write one sealed object (segment or pack) to the segment store.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("invariant: valid metric"),
            ),
            journal_disk_bytes: gauge("tributary_journal_disk_bytes", "Bytes of journal files on disk."),
            journal_damaged_bytes: counter(
                "tributary_journal_damaged_bytes_total",
                "Journal bytes found damaged at start (a bad entry with intact ones after it) and stepped over.",
            ),
            journal_damaged_regions: counter(
                "tributary_journal_damaged_regions_total",
                "Damaged regions of the journal found at start and stepped over.",
            ),
            journal_missing_offsets: counter(
                "tributary_journal_missing_offsets_total",
                "Offsets missing from partitions after start, lost with damaged journal entries.",
            ),
            journal_write_errors: counter_vec(
                "tributary_journal_write_errors_total",
                "Failed journal writes, fsyncs and file creations, by kind (no_space, io).",
                &["kind"],
            ),
            journal_recovery_bytes: gauge(
                "tributary_journal_recovery_scanned_bytes",
                "Journal bytes read at the last start (those after the journal checkpoint).",
            ),
            journal_writable: gauge(
                "tributary_journal_writable",
                "1 while the journal takes appends, 0 while a failed write (a full disk) is being retried.",
            ),
            throttled: counter_vec(
                "tributary_quota_throttled_responses_total",
                "Responses whose client was over its quota and told to wait, by quota (produce, fetch).",
                &["quota"],
            ),
            scope_throttled: counter_vec(
                "tributary_scope_throttled_responses_total",
                "Responses to a scope's principals over the scope's quota, by scope and quota (produce, fetch).",
                &["scope", "quota"],
            ),
            throttle_seconds: reg(
                &registry,
                CounterVec::new(
                    Opts::new(
                        "tributary_quota_throttle_seconds_total",
                        "Time clients were told to wait for being over their quota, by quota (produce, fetch).",
                    ),
                    &["quota"],
                )
                .expect("invariant: valid metric"),
            ),
            registry,
        }
    }

    /// Adds a collector that computes its values at scrape time.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::error!(error = %e, "cannot register collector");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
