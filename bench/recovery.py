#!/usr/bin/env python3
"""Restart time after SIGKILL against what the journal holds, with journal
checkpoints (the default `journal.checkpoint_bytes`) and without them (a bound so
large no checkpoint is taken), side by side in one run.

For each journal size: start a release broker with nothing sealed (large
`segment.bytes`, `segment.ms`), fill the journal with 1 KiB records on 8 partitions
through bench/loadgen, wait for a checkpoint round, SIGKILL, and time the start to
`/health/ready`. Prints one table.

    python3 bench/recovery.py [--gib 1 4]

Builds the broker and bench/loadgen in release mode. Not part of the test suite."""

import argparse
import pathlib
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from run import BROKER, build, free_port, run_json, start_broker  # noqa: E402

CONFIG = """[journal]
max_bytes = 1099511627776
checkpoint_bytes = {checkpoint}
[topics]
segment_bytes = 17179869184
segment_ms = 604800000
[storage]
flush_interval_ms = 500
"""


def one(gib, checkpoint):
    work = pathlib.Path(tempfile.mkdtemp(prefix="trb-recovery-"))
    data = work / "data"
    config = work / "tributary.toml"
    config.write_text(CONFIG.format(checkpoint=checkpoint))
    port, http = free_port(), free_port()
    env = {"TRIBUTARY_CONFIG": str(config)}
    proc = start_broker(data, port, http, env)
    target = gib << 30
    written = 0
    while written < target:
        r = run_json(["produce", "--bootstrap", f"127.0.0.1:{port}", "--topic", "fill", "--partitions", 8,
                      "--size", 1024, "--seconds", 10], timeout=300)
        written += r["delivered"] * 1024
    journal = sum(f.stat().st_size for f in (data / "journal").glob("*.journal"))
    time.sleep(1.5)  # one flusher round past the last write, for the checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    proc = start_broker(data, port, http, env)
    ready = time.monotonic() - started
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    shutil.rmtree(work, ignore_errors=True)
    return journal, ready


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    build()
    assert BROKER.exists()
    rows = []
    for gib in args.gib:
        for label, checkpoint in [("checkpoints (256 MiB)", 268435456), ("no checkpoints", 1099511627776)]:
            journal, ready = one(gib, checkpoint)
            rows.append((f"{journal / (1 << 30):.1f} GiB", label, f"{ready:.2f} s"))
    print(f"{'journal':>10}  {'':<22}  {'ready after SIGKILL':>20}")
    for r in rows:
        print(f"{r[0]:>10}  {r[1]:<22}  {r[2]:>20}")


if __name__ == "__main__":
    main()
