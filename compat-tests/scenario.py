"""The data every client test produces and checks: keys, null keys, null values,
binary values, repeated and empty headers; deterministic so that a second reader
(after a restart, or another client) can check it byte for byte."""

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def records(tag, n=40):
    out = []
    for i in range(n):
        key = None if i % 7 == 3 else f"{tag}-key-{i}".encode()
        # Python clients refuse a record with neither key nor value.
        value = None if i % 5 == 4 and key is not None else (f"{tag}-value-{i}-" * (i % 13 + 1)).encode() + bytes([i % 256, 0, 255])
        headers = [("h1", f"v{i}".encode()), ("h1", b"dup"), ("empty", b"")] if i % 3 == 0 else []
        out.append((key, value, headers))
    return out


def normalize_headers(headers):
    """Clients return headers as None, [] or a list of (str, bytes)."""
    return [(k, bytes(v) if v is not None else b"") for k, v in (headers or [])]


def assert_same(expected, got, context=""):
    """expected: [(key, value, headers)], got: [(key, value, headers)] in offset order."""
    assert len(got) == len(expected), f"{context}: expected {len(expected)} records, got {len(got)}"
    for i, ((ek, ev, eh), (gk, gv, gh)) in enumerate(zip(expected, got)):
        assert gk == ek, f"{context} record {i}: key {gk!r} != {ek!r}"
        assert gv == ev, f"{context} record {i}: value differs ({len(gv or b'')} vs {len(ev or b'')} bytes)"
        assert normalize_headers(gh) == normalize_headers(eh), f"{context} record {i}: headers {gh!r} != {eh!r}"
