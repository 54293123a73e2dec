#!/usr/bin/env python3
"""Memory per idle partition: start a release broker, create N partitions
(topics of 1,000 partitions), and report the broker's resident memory per
partition: empty, after one small record in every partition, and after a restart
(the records then live only in the journal, not in the cache).

    .venv/bin/python bench/partitions.py [--partitions 100000]

Needs confluent-kafka (in .venv after scripts/test). Not part of the test suite."""

import argparse
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parent.parent
BROKER = ROOT / "target" / "release" / "tributary"
PER_TOPIC = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start(data_dir, port, http_port):
    proc = subprocess.Popen([str(BROKER), "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}",
                             "--http-listen", f"127.0.0.1:{http_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("broker not ready")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def settle(pid):
    time.sleep(2)
    return rss_bytes(pid)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=100_000)
    args = ap.parse_args()
    if not BROKER.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "tributary"], cwd=ROOT, check=True)
    topics = max(1, args.partitions // PER_TOPIC)
    n = topics * PER_TOPIC
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as base:
        data = pathlib.Path(base) / "data"
        port, http_port = free_port(), free_port()
        proc = start(data, port, http_port)
        bootstrap = f"127.0.0.1:{port}"
        baseline = settle(proc.pid)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        t0 = time.monotonic()
        for i in range(0, topics, 10):
            fs = admin.create_topics([NewTopic(f"idle-{j}", PER_TOPIC, 1) for j in range(i, min(i + 10, topics))],
                                     operation_timeout=60)
            for f in fs.values():
                f.result(timeout=120)
        created_s = time.monotonic() - t0
        empty = settle(proc.pid)
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                      "queue.buffering.max.messages": 2_000_000})
        for t in range(topics):
            for part in range(PER_TOPIC):
                p.produce(f"idle-{t}", value=b"reading=21.5C", partition=part)
                if part % 500 == 0:
                    p.poll(0)
        assert p.flush(300) == 0
        with_record = settle(proc.pid)
        stop(proc)
        proc = start(data, port, http_port)
        restarted = settle(proc.pid)
        stop(proc)
    per = lambda x: (x - baseline) / n  # noqa: E731
    print(f"\n## Memory per partition ({n:,} partitions in {topics} topics)\n")
    print("| state | broker RSS | per partition |\n|---|---|---|")
    print(f"| no topics | {baseline / 2**20:.1f} MiB | |")
    print(f"| {n:,} empty partitions (created in {created_s:.1f} s) | {empty / 2**20:.1f} MiB | {per(empty):.0f} B |")
    print(f"| one record in each, cached | {with_record / 2**20:.1f} MiB | {per(with_record):.0f} B |")
    print(f"| after restart (records in the journal only) | {restarted / 2**20:.1f} MiB | {per(restarted):.0f} B |")


if __name__ == "__main__":
    main()
