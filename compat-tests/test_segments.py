"""The segment store with real clients: data sealed into segments (local fs and a
real S3-compatible server, s3s-fs, started here) reads back from the start, by
offset and by time, across restarts; the journal shrinks; the broker killed at each
step of an upload or a journal trim loses and duplicates nothing and leaves no
orphan object; an S3 outage holds producers back with a retriable error once the
journal is full, and everything flows when it returns; retention, DeleteRecords and
compaction are seen by the clients."""

import json
import os
import pathlib
import signal
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from conftest import ROOT, free_port, unique, wait_until
from test_confluent_kafka import create

S3S_FS = os.environ.get("S3S_FS_BIN", str(ROOT / ".tools" / "bin" / "s3s-fs"))

BASE_CONFIG = """
[journal]
file_bytes = 1048576
max_bytes = {max_bytes}
[storage]
backend = "{backend}"
flush_interval_ms = 100
pack_threshold_bytes = 65536
retry_max_times = 1
retry_min_delay_ms = 20
retry_max_delay_ms = 100
"""


def broker_config(backend="fs", max_bytes=64 << 20, s3=None):
    text = BASE_CONFIG.format(backend=backend, max_bytes=max_bytes)
    if s3:
        text += "[storage.s3]\n" + "".join(f'{k} = "{v}"\n' for k, v in s3.items())
    return text


def files(d, suffix):
    d = pathlib.Path(d)
    return sorted(str(p) for p in d.rglob(f"*{suffix}") if p.is_file()) if d.exists() else []


def metric(broker, name, labels=""):
    total = 0.0
    found = False
    for line in broker.metrics().splitlines():
        if line.startswith(name + "{" + labels) or line.startswith(name + " ") and not labels:
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def produce_values(broker, topic, values, extra=None, timeout=60):
    conf = {"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5}
    conf.update(extra or {})
    p = Producer(conf)
    acked, errors = {}, []

    def cb(err, msg):
        if err:
            errors.append(err)
        else:
            acked[msg.value()] = (msg.partition(), msg.offset())

    for item in values:
        value, ts = item if isinstance(item, tuple) else (item, None)
        while True:
            try:
                p.produce(topic, value=value, partition=0, on_delivery=cb, **({"timestamp": ts} if ts else {}))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(timeout) == 0, "messages still in flight"
    assert not errors, errors[:3]
    return acked


def read_from_start(broker, topic, partition=0, timeout=60, start=OFFSET_BEGINNING):
    """Every (offset, key, value, timestamp) from `start` to the high watermark."""
    c = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": unique("g"),
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
    })
    c.assign([TopicPartition(topic, partition, start)])
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            break
        out.append((m.offset(), m.key(), m.value(), m.timestamp()[1]))
    else:
        raise AssertionError(f"no end of partition within {timeout}s ({len(out)} records)")
    c.close()
    return out


def watermarks(broker, topic, partition=0):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def offset_for_time(broker, topic, ts):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    try:
        return c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)[0].offset
    finally:
        c.close()


def alter(broker, topic, **configs):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), str(v), incremental_operation=AlterConfigOpType.SET)
        for k, v in configs.items()
    ])
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=30)


def values(n, size=1000, tag="v"):
    return [f"{tag}{i:06d}:".encode() + b"x" * size for i in range(n)]


def check_sealed_reads(broker, topic, sent, t0):
    got = read_from_start(broker, topic)
    assert [g[2] for g in got] == sent, "every record once, in order"
    assert [g[0] for g in got] == list(range(len(sent)))
    # By time: record i was produced with timestamp t0 + i.
    for i in (0, 1, 777, len(sent) - 1):
        assert offset_for_time(broker, topic, t0 + i) == i


def test_sealed_segments_on_fs_read_back_across_restarts(make_broker):
    b = make_broker(config_text=broker_config())
    b.start()
    topic = unique("sealed")
    create(b, topic, config={"segment.bytes": "262144"})
    t0 = int(time.time() * 1000) - 3_600_000
    sent = values(4000)
    produce_values(b, topic, [(v, t0 + i) for i, v in enumerate(sent)], extra={"batch.size": 65536})
    segs = lambda: files(b.data_dir / "segments", ".seg")  # noqa: E731
    wait_until(lambda: len(segs()) >= 12, timeout=30, what="4 MB sealed into 256 KiB segments")
    wait_until(lambda: len(files(b.data_dir / "journal", ".journal")) <= 2, timeout=30, what="journal trimmed")
    assert metric(b, "tributary_sealed_segments", f'topic="{topic}"') >= 12
    assert metric(b, "tributary_segment_uploads_total") >= 12
    check_sealed_reads(b, topic, sent, t0)
    assert metric(b, "tributary_block_cache_misses_total") > 0
    b.restart()
    check_sealed_reads(b, topic, sent, t0)
    assert watermarks(b, topic) == (0, 4000)


@pytest.mark.parametrize("point", ["before-upload", "after-upload", "after-seal", "after-checkpoint"])
def test_broker_killed_during_upload_or_trim_loses_nothing_and_leaves_no_orphan(make_broker, point):
    text = broker_config()
    b = make_broker(config_text=text, env={"TRB_FAILPOINT": point})
    b.start()
    topic = unique("fail")
    create(b, topic, config={"segment.bytes": "131072"})
    sent = values(3000)
    acked = {}
    p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                  "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 200})

    def cb(err, msg):
        if not err:
            acked[msg.value()] = msg.offset()

    for v in sent:
        p.produce(topic, value=v, partition=0, on_delivery=cb)
        p.poll(0)
        if b.proc.poll() is not None:
            break
    wait_until(lambda: b.proc.poll() is not None, timeout=30, what=f"the broker to stop at failpoint {point}")
    assert b.proc.returncode == -signal.SIGABRT, b.log_tail()
    assert "failpoint reached" in b.log_path.read_text()
    b.proc = None
    b.env.pop("TRB_FAILPOINT")
    b.start()
    # The producer's unacknowledged records go through now; none twice.
    assert p.flush(60) == 0
    got = read_from_start(b, topic)
    values_read = [g[2] for g in got]
    assert len(values_read) == len(set(values_read)), "no duplicates"
    assert values_read == sent[: len(values_read)], "in order, no gaps"
    for v, offset in acked.items():
        assert got[offset][2] == v, "every acknowledged record at its offset"
    assert len(values_read) == len(sent)
    # No orphan: the interrupted object is deleted, every object left is in a manifest.
    wait_until(lambda: metric(b, "tributary_segment_garbage_objects") == 0, timeout=30, what="garbage deleted")
    b.restart()  # folds the metadata log into the snapshot
    snapshot = json.loads((b.data_dir / "meta" / "metadata.snapshot").read_text())
    assert not snapshot.get("garbage") and not snapshot.get("uploading"), snapshot.get("garbage")
    referenced = {
        s["key"] for t in snapshot["topics"].values() for part in t["partitions"] for s in part.get("segments", [])
    }
    root = b.data_dir / "segments"
    stored = {str(pathlib.Path(f).relative_to(root)) for f in files(root, "")}
    assert stored == referenced
    assert read_from_start(b, topic) == got


class S3Server:
    """s3s-fs: an S3-compatible server over a directory, by its own PID."""

    def __init__(self, root: pathlib.Path, log: pathlib.Path):
        self.root, self.log, self.port, self.proc = root, log, free_port(), None
        assert os.access(S3S_FS, os.X_OK), f"{S3S_FS} missing: scripts/test installs it (cargo install s3s-fs)"

    def start(self):
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [S3S_FS, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", "tributary-test",
             "--secret-key", "tributary-secret", str(self.root)],
            stdout=out, stderr=subprocess.STDOUT)
        out.close()

        def up():
            import socket
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(up, timeout=20, what="s3s-fs listening")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@pytest.fixture
def s3(tmp_path):
    root = tmp_path / "s3"
    (root / "tributary").mkdir(parents=True)  # the bucket
    server = S3Server(root, tmp_path / "s3s-fs.log")
    server.start()
    yield server
    server.kill()


def test_s3_store_outage_holds_producers_then_recovers(make_broker, s3):
    cfg = broker_config(backend="s3", max_bytes=4 << 20, s3={
        "endpoint": f"http://127.0.0.1:{s3.port}", "bucket": "tributary", "region": "us-east-1",
        "access_key_id": "tributary-test", "secret_access_key": "tributary-secret",
    })
    b = make_broker(config_text=cfg)
    b.start()
    topic = unique("s3")
    create(b, topic, config={"segment.bytes": "131072"})
    t0 = int(time.time() * 1000) - 60_000
    first = values(2000)
    produce_values(b, topic, [(v, t0 + i) for i, v in enumerate(first)], extra={"batch.size": 65536})
    objects = lambda: files(s3.root / "tributary", ".seg")  # noqa: E731
    wait_until(lambda: len(objects()) >= 10, timeout=30, what="segments in S3")
    assert files(b.data_dir / "segments", ".seg") == [], "nothing on the local fs backend"

    # The store goes away: producers go on until the journal bound, then wait on a
    # retriable error; nothing hangs and nothing is lost.
    s3.kill()
    # More than the journal bound plus what a producer has in flight (5 requests).
    more = values(16000, tag="w")
    acked = {}
    p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5,
                  "message.timeout.ms": 120000})

    def cb(err, msg):
        assert err is None, err
        acked[msg.value()] = msg.offset()

    for i, v in enumerate(more):
        p.produce(topic, value=v, partition=0, timestamp=t0 + 2000 + i, on_delivery=cb)
        p.poll(0)
    wait_until(lambda: (p.poll(0.1), metric(b, "tributary_journal_full") == 1)[1], timeout=60,
               what="the journal to fill while the store is down")
    wait_until(lambda: (p.poll(0.1), metric(b, "tributary_segment_upload_errors_total") > 0)[1], timeout=60,
               what="an upload to fail while the store is down")
    held = len(acked)
    assert held < len(more), "producers are held back at the journal bound"
    assert metric(b, "tributary_journal_full") == 1
    s3.start()
    assert p.flush(90) == 0, "everything is delivered once the store is back"
    wait_until(lambda: metric(b, "tributary_journal_full") == 0, timeout=30, what="journal drained")
    sent = first + more
    check_sealed_reads(b, topic, sent, t0)
    b.restart()
    check_sealed_reads(b, topic, sent, t0)


def test_retention_delete_records_and_the_log_start_clients_see(make_broker):
    b = make_broker(config_text=broker_config())
    b.start()
    topic = unique("ret")
    create(b, topic, config={"segment.bytes": "65536"})
    now = int(time.time() * 1000)
    old = [(v, now - 7_200_000 + i) for i, v in enumerate(values(300, tag="old"))]
    new = [(v, now + i) for i, v in enumerate(values(300, tag="new"))]
    small_batches = {"batch.size": 16384}
    produce_values(b, topic, old, extra=small_batches)
    produce_values(b, topic, new, extra=small_batches)
    assert watermarks(b, topic) == (0, 600)
    # A smaller retention deletes the old data (whole segments), seen as the log start.
    alter(b, topic, retention_ms=3_600_000, segment_ms=100)
    wait_until(lambda: watermarks(b, topic)[0] > 0, timeout=30, what="retention to move the log start")
    low = watermarks(b, topic)[0]
    assert 250 <= low <= 300, low
    got = read_from_start(b, topic)
    assert got[0][0] == low and all(v.startswith(b"new") for _, _, v, _ in got[300 - low:])
    assert [g[2] for g in got if g[2].startswith(b"new")] == [v for v, _ in new]
    # DeleteRecords on sealed data.
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    futures = admin.delete_records([TopicPartition(topic, 0, 450)])
    assert futures[TopicPartition(topic, 0, 450)].result(timeout=30).low_watermark == 450
    assert watermarks(b, topic)[0] == 450
    assert read_from_start(b, topic)[0][0] == 450
    # Retention by size.
    alter(b, topic, retention_bytes=70_000)
    wait_until(lambda: watermarks(b, topic)[0] >= 500, timeout=30, what="retention.bytes")
    b.restart()
    low = watermarks(b, topic)[0]
    assert low >= 500 and read_from_start(b, topic)[0][0] == low


def test_compaction_keeps_latest_values_and_expires_tombstones(make_broker):
    b = make_broker(config_text=broker_config())
    b.start()
    topic = unique("compact")
    create(b, topic, config={"cleanup.policy": "compact", "segment.bytes": "16384", "segment.ms": "100",
                             "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "86400000"})
    p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    latest = {}
    for round_ in range(40):
        for k in range(20):
            key = f"key-{k}".encode()
            value = None if (k == 7 and round_ == 39) else f"{k}@{round_}:".encode() + b"y" * 200
            p.produce(topic, key=key, value=value, partition=0)
            latest[key] = value
    assert p.flush(30) == 0

    def compacted():
        got = read_from_start(b, topic)
        return got if len(got) == len(latest) else None

    got = wait_until(compacted, timeout=60, what="compaction to one record per key")
    assert {k: v for _, k, v, _ in got} == latest, "the latest value of every key; the fresh tombstone too"
    assert watermarks(b, topic)[1] == 800, "offsets are not reused"
    alter(b, topic, delete_retention_ms=0)
    wait_until(lambda: len(read_from_start(b, topic)) == len(latest) - 1, timeout=60, what="tombstone expiry")
    b.restart()
    got = read_from_start(b, topic)
    assert len(got) == 19 and all(k != b"key-7" for _, k, _, _ in got)
