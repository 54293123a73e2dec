#!/usr/bin/env python3
"""Topic creation rate against the number of topics: creates one-partition topics
in CreateTopics requests of 500 with the Admin client, up to --topics, and prints
the rate over each tenth of the run (flat is the goal: creating the millionth
stream costs what the first did), then the time to restart and be ready.

    .venv/bin/python bench/topics.py [--topics 100000]

Builds the broker in release mode. Not part of the test suite."""

import argparse
import pathlib
import shutil
import signal
import sys
import tempfile
import time

from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from run import ROOT, free_port, start_broker  # noqa: E402
import subprocess  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topics", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bin", "tributary"], cwd=ROOT, check=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="trb-topics-"))
    port, http = free_port(), free_port()
    proc = start_broker(work / "data", port, http, {})
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    step = max(args.topics // 10, args.batch)
    made = 0
    mark = time.monotonic()
    print(f"{'topics':>10}  {'topics/s over the last tenth':>30}")
    while made < args.topics:
        n = min(args.batch, args.topics - made)
        futures = admin.create_topics([NewTopic(f"t{made + i:08d}", 1) for i in range(n)], request_timeout=120)
        for f in futures.values():
            f.result(120)
        made += n
        if made % step == 0 or made == args.topics:
            now = time.monotonic()
            print(f"{made:>10}  {step / (now - mark):>30.0f}")
            mark = now
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    started = time.monotonic()
    proc = start_broker(work / "data", port, http, {})
    print(f"restart to ready with {made} topics: {time.monotonic() - started:.2f} s")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
