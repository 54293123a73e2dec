"""Bad input over raw sockets: each gets the Kafka-specified answer or a close of
that one connection; the broker keeps serving a connection opened before, and new
clients, throughout."""

import socket
import struct

from confluent_kafka import Producer

from conftest import unique
from test_confluent_kafka import consume


def api_versions_v0(correlation_id):
    header = struct.pack(">hhih", 18, 0, correlation_id, 4) + b"test"
    return struct.pack(">i", len(header)) + header


def recv_frame(sock):
    head = recv_exact(sock, 4)
    (length,) = struct.unpack(">i", head)
    return recv_exact(sock, length)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def connect(broker):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    return s


def assert_closed(sock):
    sock.settimeout(10)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    assert data == b"", f"expected the broker to close the connection, got {data!r}"


def assert_healthy(sock, correlation_id):
    sock.sendall(api_versions_v0(correlation_id))
    frame = recv_frame(sock)
    corr, error = struct.unpack(">ih", frame[:6])
    assert (corr, error) == (correlation_id, 0)


def send_and_expect_close(broker, payload):
    s = connect(broker)
    s.sendall(payload)
    assert_closed(s)
    s.close()


def test_bad_inputs_close_only_their_connection(broker):
    keeper = connect(broker)
    assert_healthy(keeper, 1)
    header = lambda key, version: struct.pack(">hhih", key, version, 7, -1)  # noqa: E731
    cases = {
        "length over socket.request.max.bytes": struct.pack(">i", 0x7FFFFFF0) + b"\x00" * 16,
        "negative length": struct.pack(">i", -5),
        "frame too short for a header": struct.pack(">i", 3) + b"abc",
        "unknown api key": struct.pack(">i", 8 + 2) + header(9999, 0),
        "unsupported version of a known api": struct.pack(">i", 10) + header(3, 99),
        "api not served": struct.pack(">i", 10) + header(12, 0),  # Heartbeat
        "garbage": struct.pack(">i", 64) + bytes(range(64)),
        "truncated produce body": struct.pack(">i", 14) + header(0, 9) + b"\x00\x01\x00\x00",
    }
    for i, (name, payload) in enumerate(cases.items()):
        try:
            send_and_expect_close(broker, payload)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from e
        assert_healthy(keeper, 100 + i)

    # a client that disconnects mid-request
    s = connect(broker)
    s.sendall(struct.pack(">i", 1000) + b"\x00\x12\x00\x00")
    s.close()
    assert_healthy(keeper, 200)

    metrics = broker.metrics()
    errors = [l for l in metrics.splitlines() if l.startswith("tributary_connection_errors_total")]
    assert errors and float(errors[0].split()[-1]) >= len(cases)

    # new clients still produce and consume
    topic = unique("after-abuse")
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    p.produce(topic, value=b"still-alive")
    assert p.flush(30) == 0
    assert [m.value() for m in consume(broker, topic, [0], 1)] == [b"still-alive"]
    keeper.close()


def test_api_versions_at_an_unknown_version_answers_v0_with_unsupported_version(broker):
    s = connect(broker)
    header = struct.pack(">hhih", 18, 99, 42, -1)
    s.sendall(struct.pack(">i", len(header)) + header)
    frame = recv_frame(s)
    corr, error, count = struct.unpack(">ihi", frame[:10])
    assert (corr, error) == (42, 35)
    apis = {struct.unpack(">hhh", frame[10 + 6 * i: 16 + 6 * i])[0]: struct.unpack(">hhh", frame[10 + 6 * i: 16 + 6 * i])[1:]
            for i in range(count)}
    assert apis[18] == (0, 5)
    assert 0 in apis and 1 in apis and 3 in apis
    # the connection stays usable: the client retries at a version we know
    assert_healthy(s, 43)
    s.close()
