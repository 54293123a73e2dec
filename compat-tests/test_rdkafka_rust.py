"""The rdkafka crate (Rust, librdkafka 2.x): admin create, every codec with keys,
repeated headers and nulls byte for byte, 100 partitions, a 1 MB record, restart.
scripts/test builds the binary; this runs it against a broker."""

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent
BINARY = ROOT / "rust" / "target" / "debug" / "rdkafka-compat"


def run(broker, mode, tag):
    assert BINARY.exists(), f"{BINARY} is missing: build it with cargo build --manifest-path compat-tests/rust/Cargo.toml"
    r = subprocess.run([str(BINARY), broker.bootstrap, mode, tag], capture_output=True, timeout=240)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-4000:]
    assert r.stdout.decode().strip().endswith(f"OK {mode}")


def test_rdkafka_crate_round_trips_and_survives_restart(broker):
    run(broker, "produce", "rs")
    broker.restart()
    run(broker, "verify", "rs")
