#!/usr/bin/env python3
"""What a cluster keeps in etcd: start etcd, s3s-fs and release brokers on free
loopback ports, create `--partitions` partitions (topics of `--per-topic`), wait
until every partition is placed and taken over, then report the live keys and
bytes under each prefix and etcd's database size (as it is, then compacted and
defragmented), and the bytes per partition.

    .venv/bin/python bench/etcd_size.py [--partitions 100000] [--brokers 3]

Not part of the test suite."""

import argparse
import base64
import json
import os
import pathlib
import sys
import tempfile
import time
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from cluster import LocalCluster  # noqa: E402


def etcd(endpoint, path, body):
    req = urllib.request.Request(f"{endpoint}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def b64(b):
    return base64.b64encode(b).decode()


def live_keys(endpoint, prefix):
    """Every (key, value size) under `prefix`, paged."""
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    start, out = prefix, []
    while True:
        r = etcd(endpoint, "/v3/kv/range", {"key": b64(start), "range_end": b64(end), "limit": 5000})
        kvs = r.get("kvs", [])
        for kv in kvs:
            out.append((base64.b64decode(kv["key"]), len(base64.b64decode(kv.get("value", "")))))
        if not r.get("more"):
            return out
        start = out[-1][0] + b"\x00"


def led(nodes):
    total = 0
    for n in nodes:
        with urllib.request.urlopen(f"http://127.0.0.1:{n.http_port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("tributary_cluster_partitions_led "):
                    total += int(float(line.split()[1]))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=100_000)
    ap.add_argument("--per-topic", type=int, default=100)
    ap.add_argument("--brokers", type=int, default=3)
    args = ap.parse_args()
    binary = ROOT / "target" / "release" / "tributary"
    if not binary.exists():
        sys.exit("build the broker first: cargo build --release --bin tributary")
    os.environ["TRIBUTARY_BIN"] = str(binary)
    base = pathlib.Path(tempfile.mkdtemp(dir=ROOT / "target", prefix="bench-etcd-"))
    c = LocalCluster(base, lease_ttl=10, name="size", extra_top="[topics]\nauto_create = false\n")
    try:
        c.up(args.brokers)
        # The internal topics' partitions first: until their count holds still.
        internal, steady = -1, 0
        while steady < 20:
            now = led(c.nodes)
            steady = steady + 1 if now == internal and now > 0 else 0
            internal = now
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        topics = [f"t{i:05d}" for i in range(args.partitions // args.per_topic)]
        started = time.monotonic()
        for i in range(0, len(topics), 50):
            futures = admin.create_topics([NewTopic(t, args.per_topic, 1) for t in topics[i:i + 50]],
                                          operation_timeout=60, request_timeout=120)
            for f in futures.values():
                f.result(timeout=180)
        created = time.monotonic() - started
        total = internal + len(topics) * args.per_topic
        deadline = time.monotonic() + 1800
        while led(c.nodes) < total:
            if time.monotonic() > deadline:
                sys.exit(f"only {led(c.nodes)} of {total} partitions taken over after 30 minutes")
            time.sleep(1)
        placed = time.monotonic() - started
        prefix = b"/tributary/size/"
        keys = live_keys(c.etcd_endpoint, prefix)
        by = {}
        for k, v in keys:
            part = k[len(prefix):].split(b"/")[0].decode()
            n, kb, vb = by.get(part, (0, 0, 0))
            by[part] = (n + 1, kb + len(k), vb + v)
        status = etcd(c.etcd_endpoint, "/v3/maintenance/status", {})
        revision = int(status["header"]["revision"])
        etcd(c.etcd_endpoint, "/v3/kv/compaction", {"revision": revision, "physical": True})
        etcd(c.etcd_endpoint, "/v3/maintenance/defragment", {})
        compacted = etcd(c.etcd_endpoint, "/v3/maintenance/status", {})
    finally:
        c.down()

    user = len(topics) * args.per_topic
    print(f"\n## etcd at {user:,} partitions ({len(topics):,} topics of {args.per_topic}, {args.brokers} brokers, "
          f"plus {internal} internal)\n")
    print(f"created in {created:.1f} s; every partition placed and taken over {placed:.1f} s after the first create\n")
    print("| prefix | keys | key bytes | value bytes |\n|---|---|---|---|")
    for part, (n, kb, vb) in sorted(by.items()):
        print(f"| {part} | {n:,} | {kb:,} | {vb:,} |")
    live = sum(kb + vb for _, kb, vb in by.values())
    print(f"\nlive keys and values: {live:,} bytes, {live / user:.0f} bytes per partition")
    print(f"etcd database: {int(status['dbSize']):,} bytes ({int(status.get('dbSizeInUse', 0)):,} in use) "
          f"at revision {revision:,}; compacted and defragmented: {int(compacted['dbSize']):,} bytes "
          f"({int(compacted['dbSize']) / user:.0f} per partition)")


if __name__ == "__main__":
    main()
