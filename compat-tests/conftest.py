"""Shared fixtures: a real tributary process on free loopback ports, with its own
data directory, stopped by its own PID. Every wait polls with a deadline."""

import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

from kafkakit import ApacheKafka, maven_classpath

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = os.environ.get("TRIBUTARY_BIN", str(ROOT / "target" / "debug" / "tributary"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(predicate, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Broker:
    """One tributary process. start/stop/kill/restart keep the same ports and data."""

    def __init__(self, workdir: pathlib.Path, env=None, config_text=None):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.http_port = free_port()
        self.env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"), **(env or {}))
        # Names the binary to test; the broker would take it for a config key.
        self.env.pop("TRIBUTARY_BIN", None)
        self.config_path = None
        if config_text is not None:
            self.config_path = workdir / "tributary.toml"
            self.config_path.write_text(config_text)
        self.proc = None
        self.log_path = workdir / "broker.log"
        # Whether it has been up once: from then on its ports are its own.
        self.started = False

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=60, ready=True):
        """Starts the process and waits for /health/ready, or with ready=False only
        for the Kafka port and /health/live (readiness may rightly be 503)."""
        for attempt in range(3):
            try:
                self._start(timeout, ready)
                self.started = True
                return
            except AssertionError:
                if self.started or attempt == 2 or "Address already in use" not in self.log_tail(5):
                    raise
                # A port is free only when it is picked: another process took one
                # before the broker bound it. Its first start takes others.
                self.port, self.http_port = free_port(), free_port()

    def _start(self, timeout, ready):
        args = [
            BINARY,
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--http-listen", f"127.0.0.1:{self.http_port}",
        ]
        if self.config_path:
            args += ["--config", str(self.config_path)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if not ready:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                path = "ready" if ready else "live"
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health/{path}", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(up, timeout=timeout, what="broker readiness" if ready else "broker listening")

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("broker did not stop within 30s of SIGTERM")
        code = self.proc.returncode if self.proc else 0
        self.proc = None
        return code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    yield b
    if b.proc:
        assert b.stop() == 0, f"broker did not exit cleanly:\n{b.log_tail()}"


@pytest.fixture
def make_broker(tmp_path):
    """Factory for tests that need their own config or environment."""
    made = []

    def make(name="b", **kwargs):
        d = tmp_path / name
        d.mkdir()
        b = Broker(d, **kwargs)
        made.append(b)
        return b

    yield make
    for b in made:
        if b.proc:
            b.kill()


@pytest.fixture(scope="session")
def flink_classpath():
    """Flink jobs (Flink's MiniCluster, the real Kafka connector): compat-tests/flink."""
    return maven_classpath("flink")


@pytest.fixture(scope="session")
def streams_classpath():
    """Kafka Streams applications (kafka-streams 4.4.0): compat-tests/streams."""
    return maven_classpath("streams")


@pytest.fixture(scope="session")
def kafka_classpath():
    """Apache Kafka 4.4 (broker and tools): compat-tests/kafka."""
    return maven_classpath("kafka")


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory, kafka_classpath):
    k = ApacheKafka(tmp_path_factory.mktemp("apache-kafka"), kafka_classpath)
    k.start()
    yield k
    k.stop()
