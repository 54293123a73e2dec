"""A Tributary cluster on one machine: etcd, an S3-compatible server (s3s-fs) and N
brokers on free loopback ports, with all their data under one directory.

    scripts/cluster up DIR N [--lease-ttl SECS]   start, wait until every broker is ready
    scripts/cluster down DIR                      stop everything `up` started, by PID

`up` prints one line per broker, `broker ID HOST:PORT PID`, then
`bootstrap HOST:PORT,...`. What it started is recorded in DIR/cluster.json, which
`down` reads. The binaries: TRIBUTARY_BIN (else the newer of target/release/tributary
and target/debug/tributary), ETCD_BIN (else `etcd` on the PATH), S3S_FS_BIN (else
.tools/bin/s3s-fs, which scripts/test installs).

The tests import this module (LocalCluster) to start, kill, pause and restart brokers
one by one. Standard library only.
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
S3_BUCKET = "tributary"
S3_KEY, S3_SECRET = "tributary-local", "tributary-local-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def tributary_bin():
    if os.environ.get("TRIBUTARY_BIN"):
        return os.environ["TRIBUTARY_BIN"]
    built = [p for p in (ROOT / "target" / b / "tributary" for b in ("release", "debug")) if p.exists()]
    # The newest build: the one just made.
    return str(max(built, key=lambda p: p.stat().st_mtime)) if built else "tributary"


def etcd_bin():
    return os.environ.get("ETCD_BIN") or shutil.which("etcd") or "etcd"


def s3s_bin():
    return os.environ.get("S3S_FS_BIN") or str(ROOT / ".tools" / "bin" / "s3s-fs")


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie child of this process counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pid(pid, timeout=30.0):
    """SIGTERM, then SIGKILL after `timeout`; waits until the process is gone."""
    if not alive(pid):
        return
    signal_stop(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        _reap(pid)
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            _reap(pid)
            time.sleep(0.05)
    _reap(pid)


def signal_stop(pid):
    """Asks a process to stop (SIGTERM, after SIGCONT in case it is paused)."""
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)


def kill(proc):
    """SIGKILLs a child process started here and reaps it; returns None."""
    if proc is not None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return None


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Node:
    """One tributary broker of the cluster."""

    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.id = node_id
        self.dir = cluster.dir / f"broker-{node_id}"
        self.port = free_port()
        self.http_port = free_port()
        self.proc = None
        self.pid = None
        # Whether it has been ready once: from then on its ports are its own.
        self.started = False

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self):
        return self.dir / "broker.log"

    def config_text(self):
        c = self.cluster
        extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in c.extra_cluster.items())
        return (
            f"node_id = {self.id}\n"
            f"listen = \"{self.address}\"\n"
            f"http_listen = \"127.0.0.1:{self.http_port}\"\n"
            f"data_dir = \"{self.dir / 'data'}\"\n"
            f"{c.extra_top(self) if callable(c.extra_top) else c.extra_top}"
            "[storage]\nbackend = \"s3\"\n"
            "[storage.s3]\n"
            f"endpoint = \"http://127.0.0.1:{c.s3_port}\"\nbucket = \"{S3_BUCKET}\"\nregion = \"us-east-1\"\n"
            f"access_key_id = \"{S3_KEY}\"\nsecret_access_key = \"{S3_SECRET}\"\n"
            "[cluster]\n"
            f"etcd_endpoints = [\"http://127.0.0.1:{c.etcd_port}\"]\n"
            f"name = \"{c.name}\"\nlease_ttl_secs = {c.lease_ttl}\n"
            f"{extra}"
        )

    def start(self, wait=True, timeout=60):
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "tributary.toml").write_text(self.config_text())
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        env.pop("TRIBUTARY_BIN", None)  # the broker would take it for a config key
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [tributary_bin(), "--config", str(self.dir / "tributary.toml")],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.pid = self.proc.pid
        if wait:
            self.wait_ready(timeout)

    def ready(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"broker {self.id} exited with {self.proc.returncode}:\n{self.log_tail()}")
        return http_ok(f"http://127.0.0.1:{self.http_port}/health/ready")

    def wait_ready(self, timeout=60):
        for attempt in range(3):
            try:
                wait_until(self.ready, timeout, f"broker {self.id} ready")
                self.started = True
                return
            except RuntimeError:
                if self.started or attempt == 2 or "Address already in use" not in self.log_tail(5):
                    raise
                # A port is free only when it is picked: another process took one
                # before the broker bound it. Its first start takes others (it has
                # registered nowhere yet).
                self.port, self.http_port = free_port(), free_port()
                self.start(wait=False)

    def stop(self, timeout=30.0):
        """SIGTERM: a clean shutdown. Returns the exit code."""
        if self.pid is None:
            return 0
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.pid, signal.SIGCONT)
                self.proc.terminate()
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = "killed after timeout"
        else:
            stop_pid(self.pid, timeout)
            code = 0
        self.proc = self.pid = None
        return code

    def kill(self):
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            if self.proc is not None:
                self.proc.wait()
        self.proc = self.pid = None

    def pause(self):
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.pid, signal.SIGCONT)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class LocalCluster:
    """etcd, s3s-fs and brokers under `directory`, each stopped by its own PID."""

    def __init__(self, directory, lease_ttl=10, name="local", extra_cluster=None, extra_top=""):
        self.dir = pathlib.Path(directory).resolve()
        self.lease_ttl = lease_ttl
        self.name = name
        self.extra_cluster = extra_cluster or {}
        self.extra_top = extra_top
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.s3_port = free_port()
        self.etcd = self.s3 = None
        self.nodes = []

    @property
    def etcd_endpoint(self):
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def bootstrap(self):
        return ",".join(n.address for n in self.nodes if n.pid is not None)

    def start_etcd(self):
        d = self.dir / "etcd"
        log = open(self.dir / "etcd.log", "ab")
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = subprocess.Popen(
            [etcd_bin(), "--name", "etcd0", "--data-dir", str(d),
             "--listen-client-urls", self.etcd_endpoint, "--advertise-client-urls", self.etcd_endpoint,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new",
             "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until(lambda: http_ok(f"{self.etcd_endpoint}/health"), 30, "etcd healthy")

    def stop_etcd(self):
        self.etcd = kill(self.etcd)

    def start_s3(self):
        root = self.dir / "s3"
        (root / S3_BUCKET).mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "s3s-fs.log", "ab")
        self.s3 = subprocess.Popen(
            [s3s_bin(), "--host", "127.0.0.1", "--port", str(self.s3_port),
             "--access-key", S3_KEY, "--secret-key", S3_SECRET, str(root)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until(lambda: listening(self.s3_port), 20, "s3s-fs listening")

    def stop_s3(self):
        self.s3 = kill(self.s3)

    def add(self, wait=True):
        node = Node(self, len(self.nodes))
        self.nodes.append(node)
        node.start(wait=wait)
        return node

    def up(self, n):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start_etcd()
        self.start_s3()
        for _ in range(n):
            self.add(wait=False)
        for node in self.nodes:
            node.wait_ready()
        self.save()

    def save(self):
        state = {
            "etcd": {"pid": self.etcd.pid, "port": self.etcd_port},
            "s3": {"pid": self.s3.pid, "port": self.s3_port},
            "brokers": [{"id": n.id, "address": n.address, "pid": n.pid, "http_port": n.http_port}
                        for n in self.nodes if n.pid is not None],
        }
        (self.dir / "cluster.json").write_text(json.dumps(state, indent=2))

    def down(self):
        """Stops everything, each part even when another fails to stop."""
        errors = []
        # Every broker at once: a broker stopping alone hands its partitions to the
        # others first, which a whole cluster going down need not wait for.
        for n in self.nodes:
            signal_stop(n.pid)
        for stop in [n.stop for n in self.nodes] + [self.stop_s3, self.stop_etcd]:
            try:
                stop()
            except Exception as e:  # noqa: BLE001 - report after stopping the rest
                errors.append(e)
        if errors:
            raise errors[0]


def down(directory):
    state_file = pathlib.Path(directory) / "cluster.json"
    state = json.loads(state_file.read_text())
    for b in state["brokers"]:
        signal_stop(b["pid"])
    for b in state["brokers"]:
        stop_pid(b["pid"])
    for part in ("s3", "etcd"):
        stop_pid(state[part]["pid"], timeout=10)
    state_file.unlink()


def main(argv):
    usage = "usage: scripts/cluster up DIR N [--lease-ttl SECS] | scripts/cluster down DIR"
    if len(argv) >= 3 and argv[0] == "up":
        ttl = 10
        if "--lease-ttl" in argv:
            ttl = int(argv[argv.index("--lease-ttl") + 1])
        cluster = LocalCluster(argv[1], lease_ttl=ttl)
        try:
            cluster.up(int(argv[2]))
        except BaseException:
            cluster.down()
            raise
        for node in cluster.nodes:
            print(f"broker {node.id} {node.address} {node.pid}")
        print(f"bootstrap {cluster.bootstrap}")
        return 0
    if len(argv) == 2 and argv[0] == "down":
        down(argv[1])
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
