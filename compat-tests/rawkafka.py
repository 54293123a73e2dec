"""Hand-built Kafka requests and record batches, for the tests that must send what
no client library would: malformed batches, half requests. Produce v8 is used for
its record_errors (the last non-flexible version, so the encoding stays small)."""

import socket
import struct
import time

from kafka.record.util import calc_crc32c

CORRUPT_MESSAGE = 2
KAFKA_STORAGE_ERROR = 56
INVALID_RECORD = 87


def zigzag(v):
    z = (v << 1) ^ (v >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z == 0:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def field(b):
    return zigzag(-1) if b is None else zigzag(len(b)) + b


def record(offset_delta, key, value, headers=(), header_count=None, ts_delta=0, extra=b""):
    """One v2 record; `header_count` and `extra` let a test lie about the shape."""
    body = b"\x00" + zigzag(ts_delta) + zigzag(offset_delta) + field(key) + field(value)
    body += zigzag(len(headers) if header_count is None else header_count)
    for hk, hv in headers:
        body += field(hk) + field(hv)
    body += extra
    return zigzag(len(body)) + body


def batch(payload, count, last_offset_delta=None, codec=0, timestamp=None):
    """A v2 batch around `payload` (the records, compressed or not) with a correct
    CRC, so that only what the test broke is wrong."""
    if last_offset_delta is None:
        last_offset_delta = count - 1
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    after_crc = struct.pack(">hiqqqhii", codec, last_offset_delta, ts, ts, -1, -1, -1, count) + payload
    crc = calc_crc32c(memoryview(after_crc))
    length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", 0, length, 0, 2, crc) + after_crc


def records_batch(values, keyed=True):
    payload = b"".join(record(i, b"k%d" % i if keyed else None, v) for i, v in enumerate(values))
    return batch(payload, len(values))


def s16(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Conn:
    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.corr = 0

    def close(self):
        self.sock.close()

    def request(self, api_key, version, body):
        self.corr += 1
        header = struct.pack(">hhi", api_key, version, self.corr) + s16("rawkafka")
        frame = header + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        head = self._exact(4)
        (n,) = struct.unpack(">i", head)
        resp = self._exact(n)
        (corr,) = struct.unpack(">i", resp[:4])
        assert corr == self.corr, (corr, self.corr)
        return resp[4:]

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def produce(self, topic, partition, records, acks=-1, timeout_ms=10000):
        """Produce v8 of one batch; returns (error_code, base_offset, record_errors,
        error_message)."""
        body = struct.pack(">h", -1) + struct.pack(">hi", acks, timeout_ms)
        body += struct.pack(">i", 1) + s16(topic) + struct.pack(">i", 1)
        body += struct.pack(">ii", partition, len(records)) + records
        r = Reader(self.request(0, 8, body))
        assert r.i32() == 1
        r.string()
        assert r.i32() == 1
        r.i32()  # partition
        error = r.i16()
        base = r.i64()
        r.i64()  # log append time
        r.i64()  # log start offset
        record_errors = [(r.i32(), r.string()) for _ in range(r.i32())]
        message = r.string()
        return error, base, record_errors, message

    def offset_for_leader_epoch(self, topic, partition, leader_epoch, current_leader_epoch=-1):
        """OffsetForLeaderEpoch v2 for one partition; returns (error_code,
        leader_epoch, end_offset)."""
        body = struct.pack(">i", 1) + s16(topic) + struct.pack(">iiii", 1, partition, current_leader_epoch,
                                                               leader_epoch)
        r = Reader(self.request(23, 2, body))
        r.i32()  # throttle
        assert r.i32() == 1
        r.string()
        assert r.i32() == 1
        error = r.i16()
        r.i32()  # partition
        return error, r.i32(), r.i64()

    def alter_client_quotas(self, client_id, key, value):
        """AlterClientQuotas v0 of one client-id quota (value None removes it);
        returns (error_code, error_message)."""
        entity = struct.pack(">i", 1) + s16("client-id") + s16(client_id)
        op = s16(key) + struct.pack(">d?", value or 0.0, value is None)
        body = struct.pack(">i", 1) + entity + struct.pack(">i", 1) + op + b"\x00"
        r = Reader(self.request(49, 0, body))
        r.i32()  # throttle
        assert r.i32() == 1
        return r.i16(), r.string()

    def describe_client_quotas(self):
        """DescribeClientQuotas v0 of every entity; returns {((type, name), ...):
        {key: value}}."""
        r = Reader(self.request(48, 0, struct.pack(">i", 0) + b"\x00"))
        r.i32()  # throttle
        error, message = r.i16(), r.string()
        assert error == 0, (error, message)
        out = {}
        for _ in range(max(r.i32(), 0)):
            entity = tuple((r.string(), r.string()) for _ in range(r.i32()))
            out[entity] = {r.string(): r.f64() for _ in range(r.i32())}
        return out


class Reader:
    def __init__(self, b):
        self.b = b
        self.at = 0

    def _take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.at)[0]
        self.at += struct.calcsize(fmt)
        return v

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def i64(self):
        return self._take(">q")

    def f64(self):
        return self._take(">d")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.b[self.at:self.at + n].decode()
        self.at += n
        return s
