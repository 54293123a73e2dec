#!/usr/bin/env python3
"""Catch-up reads from the segment store beside tail reads from the journal, for the
local fs store and an S3-compatible server (s3s-fs), in one run.

    python3 bench/segments.py [--seconds 5] [--partitions 4] [--no-build]

For each store: starts the broker (release build) on free loopback ports with a
fresh data directory, with segments too large to seal and a journal bound above what
is produced, produces 1 KiB records for --seconds with bench/loadgen, and consumes
the topic from the start while every byte is still in the journal (journal read,
what tailing consumers are served from). Then restarts the broker with `segment.ms`
at 100 ms so the flusher seals everything, waits until no byte is left only in the
journal, restarts it once more (cold block cache) and consumes from the start
again: every byte now comes from sealed segments (catch-up read). The sealing phase
also gives the flusher's cost: sealed MB/s and the broker's CPU seconds per sealed
GB from its /proc entry (from ready to nothing left unsealed: recovery's replay is
before ready, so the CPU is the flusher's). --binary compares another build (an
older one for a before/after). Servers are stopped by their PIDs. Not part of the
test suite. s3s-fs is taken from .tools/bin (scripts/test installs it)."""

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import BROKER, LOADGEN_DIR, build, free_port, run_json  # noqa: E402

S3S_FS = ROOT / ".tools" / "bin" / "s3s-fs"


BINARY = [BROKER]


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(data_dir, port, http_port, config_path, env_extra):
    env = dict(os.environ, RUST_LOG="info", **env_extra)
    log = open(data_dir.parent / "broker.log", "ab")
    proc = subprocess.Popen([str(BINARY[0]), "--config", str(config_path), "--data-dir", str(data_dir),
                             "--listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http_port}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"broker exited during start; see {data_dir.parent / 'broker.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("broker not ready within 120s")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def metric_sum(http_port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def s3_server(root, port):
    (root / "bench").mkdir(parents=True, exist_ok=True)
    log = open(root.parent / "s3s-fs.log", "ab")
    proc = subprocess.Popen([str(S3S_FS), "--host", "127.0.0.1", "--port", str(port), "--access-key", "bench-key",
                             "--secret-key", "bench-secret", str(root)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("s3s-fs did not start")


def one_store(store, args, base):
    work = base / store
    data_dir = work / "data"
    data_dir.mkdir(parents=True)
    config = work / "tributary.toml"
    text = "[storage]\nflush_interval_ms = 200\n"
    s3 = None
    if store == "s3":
        s3_port = free_port()
        s3 = s3_server(work / "s3", s3_port)
        text = ("[storage]\nbackend = \"s3\"\nflush_interval_ms = 200\n[storage.s3]\n"
                f"endpoint = \"http://127.0.0.1:{s3_port}\"\nbucket = \"bench\"\n"
                "access_key_id = \"bench-key\"\nsecret_access_key = \"bench-secret\"\n")
    config.write_text(text)
    port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{port}"
    topic = "catchup"
    try:
        # Nothing is sealed while producing: every byte stays in the journal.
        journal_only = {"TRIBUTARY_TOPICS_SEGMENT_BYTES": str(1 << 34), "TRIBUTARY_JOURNAL_MAX_BYTES": str(1 << 38)}
        proc = start(data_dir, port, http_port, config, journal_only)
        produced = run_json(["produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions", args.partitions,
                             "--size", 1024, "--seconds", args.seconds])
        count = produced["delivered"]
        time.sleep(2)
        tail = run_json(["consume", "--bootstrap", bootstrap, "--topic", topic, "--partitions", args.partitions,
                         "--expect", count])
        stop(proc)
        # Seal everything, then read it back with a cold block cache.
        proc = start(data_dir, port, http_port, config, {"TRIBUTARY_TOPICS_SEGMENT_MS": "100",
                                                          "TRIBUTARY_JOURNAL_MAX_BYTES": str(1 << 38)})
        began, cpu_began = time.monotonic(), cpu_seconds(proc.pid)
        deadline = began + 600
        while metric_sum(http_port, "tributary_flush_lag_bytes") > 0:
            if time.monotonic() > deadline:
                sys.exit("data not sealed within 600 s")
            time.sleep(0.1)
        seal_seconds, seal_cpu = time.monotonic() - began, cpu_seconds(proc.pid) - cpu_began
        sealed = metric_sum(http_port, "tributary_sealed_bytes")
        stop(proc)
        proc = start(data_dir, port, http_port, config, {})
        catchup = run_json(["consume", "--bootstrap", bootstrap, "--topic", topic, "--partitions", args.partitions,
                            "--expect", count])
        hits = metric_sum(http_port, "tributary_block_cache_hits_total")
        misses = metric_sum(http_port, "tributary_block_cache_misses_total")
        stop(proc)
    finally:
        if s3 is not None:
            s3.send_signal(signal.SIGKILL)
            s3.wait()
    return {"store": store, "records": count, "sealed_bytes": sealed, "tail": tail, "catchup": catchup,
            "seal_mb_per_sec": sealed / 1e6 / seal_seconds, "seal_cpu_s_per_gb": seal_cpu / (sealed / 1e9),
            "block_hits": hits, "block_misses": misses}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the produce run per store")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--stores", default="fs,s3")
    ap.add_argument("--binary", help="the broker to run (default: the release build)")
    args = ap.parse_args()
    if args.binary:
        BINARY[0] = pathlib.Path(args.binary).resolve()
    if not args.no_build:
        build()
    if "s3" in args.stores and not S3S_FS.exists():
        subprocess.run(["cargo", "install", "s3s-fs", "--version", "0.14.1", "--locked", "--features", "binary",
                        "--root", str(ROOT / ".tools")], check=True)
    assert LOADGEN_DIR.exists()
    results = []
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as base:
        for store in args.stores.split(","):
            results.append(one_store(store, args, pathlib.Path(base)))
            print(f"  {store} done", file=sys.stderr)
    print(f"\n## Catch-up from sealed segments vs journal reads ({args.partitions} partitions, 1 KiB records)\n")
    print("| store | records | sealed MB | sealing MB/s | sealing CPU s per GB | journal read MB/s | "
          "catch-up MB/s (sealed) | block hits / misses |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['store']} | {r['records']:,} | {r['sealed_bytes'] / 1e6:.0f} | {r['seal_mb_per_sec']:.0f} | "
              f"{r['seal_cpu_s_per_gb']:.2f} | {r['tail']['mb_per_sec']:.1f} | "
              f"{r['catchup']['mb_per_sec']:.1f} | {r['block_hits']:.0f} / {r['block_misses']:.0f} |")
    out = ROOT / "target" / "bench-segments.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nRaw results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
