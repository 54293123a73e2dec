"""Hostile input and hostile conditions, each of which lost acknowledged data or
stopped the broker before: malformed record batches, a full disk, a flipped bit in
an old journal file, floods of sockets and half-sent requests, a second broker on
the same data directory. Each test asserts what a client sees and that every
acknowledged record is still there."""

import gzip
import os
import pathlib
import random
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request

import lz4.frame
import pytest
import snappy
import zstandard
from confluent_kafka import Consumer, Producer, TopicPartition

import rawkafka
from conftest import BINARY, unique, wait_until
from rawkafka import CORRUPT_MESSAGE, INVALID_RECORD, KAFKA_STORAGE_ERROR, batch, record, records_batch
from test_confluent_kafka import consume, create


def metric(broker, name, labels=""):
    """The value of one sample, or 0 when the broker has not exported it yet."""
    for line in broker.metrics().splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return 0.0


def ready_status(broker):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/health/ready", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def high_watermark(broker, topic, partition=0):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        c.close()


def bad_batches():
    """(name, batch, expected error, expected record index) for every kind of bad
    batch a hostile client was seen to get accepted."""
    good = [record(i, b"k%d" % i, b"v%d" % i) for i in range(3)]
    payload = b"".join(good)
    cases = []
    for codec, name in [(1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")]:
        rng = random.Random(codec)
        junk = bytes(rng.randrange(256) for _ in range(200))
        cases.append((f"{name} payload that does not decompress", batch(junk, 3, codec=codec), CORRUPT_MESSAGE, None))
    # The real codecs around records that are themselves fine still pass (below);
    # around a payload cut short they do not.
    cases.append(("gzip of truncated records", batch(gzip.compress(payload[:-4]), 3, codec=1), CORRUPT_MESSAGE, None))
    for codec in (5, 6, 7):
        cases.append((f"undefined codec {codec}", batch(payload, 3, codec=codec), CORRUPT_MESSAGE, None))
    bomb = gzip.compress(b"\x00" * (96 << 20), compresslevel=1)
    # Zeros: the first record's length is already wrong (a bomb of well-formed
    # records stops at the bound with INVALID_RECORD: test_conformance.py).
    cases.append(("gzip bomb", batch(bomb, 3, codec=1), CORRUPT_MESSAGE, None))
    overrun = bytearray(good[0])
    overrun[0] = 0x7E  # a record length far past the batch
    cases.append(("record length overruns the batch", batch(bytes(overrun) + good[1] + good[2], 3), CORRUPT_MESSAGE,
                  None))
    cases.append(("count above the records", batch(payload, 4), CORRUPT_MESSAGE, None))
    cases.append(("last offset delta far ahead", batch(payload, 3, last_offset_delta=2**31 - 2), INVALID_RECORD, None))
    cases.append(("negative last offset delta", batch(payload, 1, last_offset_delta=-1), INVALID_RECORD, None))
    dup = record(0, b"a", b"x") + record(0, b"b", b"y")
    cases.append(("duplicate offset deltas", batch(dup, 2), INVALID_RECORD, 1))
    neg = record(0, b"a", b"x") + record(-5, b"b", b"y")
    cases.append(("negative offset delta", batch(neg, 2), INVALID_RECORD, 1))
    cases.append(("trailing garbage", batch(payload + b"garbage", 3), CORRUPT_MESSAGE, None))
    huge_key = b"\x00" + rawkafka.zigzag(0) + rawkafka.zigzag(0) + rawkafka.zigzag(1 << 30) + b"k"
    cases.append(("absurd key length",
                  batch(rawkafka.zigzag(len(huge_key)) + huge_key, 1), CORRUPT_MESSAGE, None))
    cases.append(("absurd header count", batch(record(0, b"k", b"v", header_count=1_000_000), 1), CORRUPT_MESSAGE,
                  None))
    cases.append(("bytes inside a record past its fields", batch(record(0, b"k", b"v", extra=b"zz"), 1),
                  CORRUPT_MESSAGE, None))
    return cases


def test_bad_batches_are_refused_and_consumers_never_stick(broker):
    topic = unique("bad")
    create(broker, topic)
    conn = rawkafka.Conn(broker.port)
    assert conn.produce(topic, 0, records_batch([b"first", b"second"]))[:2] == (0, 0)
    for name, data, code, index in bad_batches():
        error, base, record_errors, message = conn.produce(topic, 0, data)
        assert error == code, f"{name}: error {error} ({message}), expected {code}"
        assert base == -1, name
        assert message, f"{name}: no error message"
        if index is None:
            assert record_errors == [], name
        else:
            assert [i for i, _ in record_errors] == [index], f"{name}: {record_errors}"
        assert high_watermark(broker, topic) == 2, f"{name} moved the partition"
    # Every codec still accepts good batches, and the offsets stay dense.
    payload = b"".join(record(i, b"k", b"c%d" % i) for i in range(3))
    compressed = [
        (1, gzip.compress(payload)),
        (2, snappy.compress(payload)),
        (3, lz4.frame.compress(payload)),
        (4, zstandard.ZstdCompressor().compress(payload)),
    ]
    expected = [b"first", b"second"]
    for n, (codec, body) in enumerate(compressed):
        error, base, _, message = conn.produce(topic, 0, batch(body, 3, codec=codec))
        assert (error, base) == (0, 2 + 3 * n), f"codec {codec}: {error} {message}"
        expected += [b"c0", b"c1", b"c2"]
    conn.close()
    got = consume(broker, topic, [0], len(expected))
    assert [m.value() for m in got] == expected
    assert [m.offset() for m in got] == list(range(len(expected)))


def test_keyless_records_on_a_compacted_topic_are_invalid_with_their_index(broker):
    topic = unique("compacted")
    create(broker, topic, config={"cleanup.policy": "compact"})
    conn = rawkafka.Conn(broker.port)
    data = batch(record(0, b"k", b"v") + record(1, None, b"keyless"), 2)
    error, _, record_errors, message = conn.produce(topic, 0, data)
    assert error == INVALID_RECORD
    assert [i for i, _ in record_errors] == [1]
    assert "without key" in message
    assert conn.produce(topic, 0, records_batch([b"keyed"]))[:2] == (0, 0)
    conn.close()


# ---------------------------------------------------------------- a full disk

def mount_tmpfs(path, size_mb):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {r.stderr.strip()}")


def fill(path):
    """Writes a file until the file system is full; returns its path."""
    filler = path / "filler"
    with open(filler, "ab") as f:
        chunk = b"\xff" * (1 << 16)
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    # Whatever a short buffered write left pending.
    try:
        os.truncate(filler, os.path.getsize(filler))
    except OSError:
        pass
    return filler


def produce_until_refused(conn, topic, acked, limit=4000):
    """Produces 32 KiB batches until one is refused; returns that error code."""
    for i in range(limit):
        value = (b"%08d" % len(acked)) * 4096
        error, base, _, _ = conn.produce(topic, 0, records_batch([value]))
        if error:
            return error
        acked[base] = value
    raise AssertionError(f"{limit} batches fitted on a disk that should be full")


def check_acked(broker, topic, acked):
    hw = high_watermark(broker, topic)
    got = consume(broker, topic, [0], hw, timeout=60)
    assert [m.offset() for m in got] == list(range(hw)), "offsets are dense"
    values = {m.offset(): m.value() for m in got}
    missing = [o for o, v in acked.items() if values.get(o) != v]
    assert not missing, f"{len(missing)} acknowledged records missing or changed, first {missing[:5]}"


def test_a_full_disk_refuses_writes_then_resumes_and_the_broker_starts_on_it(make_broker, tmp_path):
    mnt = tmp_path / "small"
    mount_tmpfs(mnt, 40)
    try:
        b = make_broker("full", config_text="[journal]\nfile_bytes = 1048576\nmax_bytes = 2147483648\n")
        b.data_dir = mnt / "data"
        b.start()
        topic = unique("full")
        create(b, topic)
        conn = rawkafka.Conn(b.port)
        acked = {}
        assert conn.produce(topic, 0, records_batch([b"fits"]))[:2] == (0, 0)
        acked[0] = b"fits"
        filler = fill(mnt)
        error = produce_until_refused(conn, topic, acked)
        assert error == KAFKA_STORAGE_ERROR, error
        # Readiness and metrics say the broker cannot take writes.
        wait_until(lambda: ready_status(b) == 503, timeout=10, what="readiness 503 on a full disk")
        assert metric(b, "tributary_journal_writable") == 0
        assert metric(b, "tributary_journal_full") == 1
        assert metric(b, "tributary_journal_write_errors_total", '{kind="no_space"}') >= 1
        # Space returns: writes resume by themselves.
        filler.unlink()

        def accepted():
            error, base, _, _ = conn.produce(topic, 0, records_batch([b"after"]))
            if error == 0:
                acked[base] = b"after"
            return error == 0

        wait_until(accepted, timeout=30, interval=0.2, what="writes to resume once space is back")
        wait_until(lambda: ready_status(b) == 200, timeout=10, what="readiness back")
        assert metric(b, "tributary_journal_writable") == 1
        check_acked(b, topic, acked)
        conn.close()

        # Full again, killed, started on the full disk: it starts, serves reads,
        # refuses writes retriably, and takes them once there is room.
        conn = rawkafka.Conn(b.port)
        filler = fill(mnt)
        produce_until_refused(conn, topic, acked)
        conn.close()
        b.kill()
        b.start(ready=False)
        assert ready_status(b) == 503
        check_acked(b, topic, acked)
        conn = rawkafka.Conn(b.port)
        assert conn.produce(topic, 0, records_batch([b"still full"]))[0] == KAFKA_STORAGE_ERROR
        filler.unlink()
        wait_until(accepted, timeout=30, interval=0.2, what="writes after a start on a full disk")
        conn.close()
        check_acked(b, topic, acked)
        assert b.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ------------------------------------------------------- damage at rest

def consume_to_end(broker, topic, partition, timeout=60):
    """Every record of a partition up to its high watermark."""
    hw = high_watermark(broker, topic, partition)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, 0)])
    got = []
    deadline = time.monotonic() + timeout
    while (not got or got[-1].offset() < hw - 1) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
    c.close()
    assert not got or got[-1].offset() == hw - 1, f"read to {got[-1].offset()} of {hw}"
    return got


def batch_entry_in_the_middle(data):
    """The position of the first record-batch entry (kind 1) past the middle of a
    journal file: u32 length, u32 crc, u8 kind, u64 partition, payload."""
    at = 0
    while at + 17 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        if data[at + 8] == 1 and at >= len(data) // 2:
            return at
        at += 4 + length
    raise AssertionError("no batch entry past the middle of the file")


def test_a_flipped_bit_in_the_oldest_journal_file_loses_only_that_entry(make_broker):
    b = make_broker("damage", config_text="[journal]\nfile_bytes = 1048576\n")
    b.start()
    topic = unique("damage")
    create(b, topic, partitions=2)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5})
    acked = {}

    def cb(err, msg):
        assert err is None, err
        acked[(msg.partition(), msg.offset())] = msg.value()

    for i in range(6000):
        p.produce(topic, value=b"%06d" % i + b"x" * 1000, partition=i % 2, on_delivery=cb)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert len(acked) == 6000
    b.kill()
    files = sorted((b.data_dir / "journal").glob("*.journal"))
    assert len(files) >= 4, f"{len(files)} journal files"
    oldest = files[0]
    data = bytearray(oldest.read_bytes())
    data[batch_entry_in_the_middle(data) + 100] ^= 0x04
    oldest.write_bytes(bytes(data))

    b.start()
    assert sorted((b.data_dir / "journal").glob("*.journal")) == files, "no journal file removed"
    got = {}
    for part in (0, 1):
        for m in consume_to_end(b, topic, part):
            got[(m.partition(), m.offset())] = m.value()
    lost = sorted(k for k in acked if got.get(k) != acked[k])
    assert all(acked.get(k) == v for k, v in got.items()), "nothing but acknowledged records"
    # Exactly the records of the damaged entry (one batch of one partition: a
    # contiguous range), nothing from the later files.
    assert lost, "the flipped bit was in a batch"
    assert len({p for p, _ in lost}) == 1 and lost[-1][1] - lost[0][1] + 1 == len(lost), lost[:3]
    assert len(lost) < len(acked) // 4, f"{len(lost)} records lost"
    assert metric(b, "tributary_journal_damaged_regions_total") >= 1
    assert metric(b, "tributary_journal_missing_offsets_total") == len(lost)
    assert "damaged journal entries" in b.log_path.read_text()
    assert b.stop() == 0


# ---------------------------------------------------- floods of connections

def api_versions_ok(sock):
    header = struct.pack(">hhih", 18, 0, 7, 4) + b"test"
    sock.sendall(struct.pack(">i", len(header)) + header)
    conn = rawkafka.Conn.__new__(rawkafka.Conn)
    conn.sock = sock
    try:
        (n,) = struct.unpack(">i", conn._exact(4))
        conn._exact(n)
        return True
    except ConnectionError:
        return False


def closed_by_broker(sock, timeout=15):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_one_address_cannot_take_every_connection(make_broker):
    b = make_broker("flood", config_text="[limits]\nmax_connections = 100\nmax_connections_per_ip = 40\n"
                                         "reserved_connections = 5\n")
    b.start()
    held = [socket.create_connection(("127.0.0.1", b.port), timeout=10) for _ in range(40)]
    for s in held:
        assert api_versions_ok(s)
    extra = socket.create_connection(("127.0.0.1", b.port), timeout=10)
    assert closed_by_broker(extra), "the 41st connection from one address is refused"
    extra.close()
    assert metric(b, "tributary_connections_refused_total", '{reason="max_connections_per_ip"}') >= 1
    for s in held[:10]:
        s.close()
    # Once some close, the address may connect again (the count is given back).
    again = wait_until(lambda: try_connect(b), timeout=10, what="a connection after others closed")
    again.close()
    for s in held[10:]:
        s.close()
    assert b.stop() == 0


def try_connect(b):
    s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    try:
        if api_versions_ok(s):
            return s
    except OSError:
        pass
    s.close()
    return None


def test_idle_and_half_sent_requests_are_closed(make_broker):
    b = make_broker("idle", config_text="[limits]\nconnections_max_idle_ms = 1000\nrequest_read_timeout_ms = 1000\n")
    b.start()
    idle = socket.create_connection(("127.0.0.1", b.port), timeout=10)
    assert api_versions_ok(idle)
    half = socket.create_connection(("127.0.0.1", b.port), timeout=10)
    half.sendall(struct.pack(">i", 1000) + b"\x00" * 10)
    assert closed_by_broker(idle), "an idle connection is closed"
    assert closed_by_broker(half), "a request that stopped half-way is closed"
    assert metric(b, "tributary_connections_timed_out_total", '{reason="idle"}') >= 1
    assert metric(b, "tributary_connections_timed_out_total", '{reason="request_read"}') >= 1
    assert b.stop() == 0


def rss_bytes(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_declared_but_unsent_frames_cost_no_memory(broker):
    before = rss_bytes(broker.proc.pid)
    socks = []
    for _ in range(400):
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        s.sendall(struct.pack(">i", 100 << 20) + b"\x01" * 1024)
        socks.append(s)
    wait_until(lambda: metric(broker, "tributary_request_bytes_reading") >= 400 * 1028, timeout=30,
               what="the broker to read every connection's first bytes")
    conn = rawkafka.Conn(broker.port)
    conn.request(18, 0, b"")
    grown = rss_bytes(broker.proc.pid) - before
    print(f"400 connections declaring 100 MiB each: RSS +{grown >> 20} MiB")
    assert grown < 64 << 20, f"400 connections declaring 100 MiB each grew RSS by {grown >> 20} MiB"
    for s in socks:
        s.close()
    conn.close()
    wait_until(lambda: metric(broker, "tributary_request_bytes_reading") == 0, timeout=30,
               what="the memory of the closed connections' requests to be given back")
    topic = unique("after")
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, b"ok")
    assert p.flush(30) == 0


# --------------------------------------------------------- ordinary mistakes

def test_a_second_broker_on_the_same_data_directory_is_refused(broker):
    r = subprocess.run(
        [BINARY, "--data-dir", str(broker.data_dir), "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, env=broker.env,
    )
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "in use by another broker" in out, out
    assert str(broker.data_dir) in out, out
    assert str(broker.proc.pid) in out, out


# ------------------------------------------------------ sealing large segments

def peak_rss_bytes(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_sealing_a_large_segment_takes_bounded_memory(make_broker):
    """A 160 MiB segment is streamed to the store in 8 MiB parts: the broker's peak
    memory grows by far less than the segment (it held the whole segment, twice,
    before)."""
    b = make_broker("seal", config_text=(
        "[topics]\nsegment_bytes = 167772160\n"
        "[cache]\npartition_bytes = 1048576\ntotal_bytes = 4194304\n"
        "[storage]\nflush_interval_ms = 200\n"))
    b.start()
    topic = unique("big")
    create(b, topic)
    conn = rawkafka.Conn(b.port)
    value = b"s" * 1_000_000
    # The first request settles the produce path's own buffers.
    assert conn.produce(topic, 0, records_batch([value]))[0] == 0
    before = peak_rss_bytes(b.proc.pid)
    for i in range(1, 170):
        error, base, _, message = conn.produce(topic, 0, records_batch([value]))
        assert (error, base) == (0, i), message
    conn.close()
    sealed = f'{{topic="{topic}"}}'
    wait_until(lambda: metric(b, "tributary_sealed_bytes", sealed) >= 160 << 20, timeout=120, interval=0.5,
               what="the segment to be sealed")
    grown = peak_rss_bytes(b.proc.pid) - before
    assert grown < 96 << 20, f"sealing a 160 MiB segment raised peak RSS by {grown >> 20} MiB"
    got = consume_to_end(b, topic, 0)
    assert len(got) == 170 and all(m.value() == value for m in got)
    assert b.stop() == 0
