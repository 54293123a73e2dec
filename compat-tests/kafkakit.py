"""Apache Kafka 4.4 itself (KRaft, broker and controller in one process) from the
jars of compat-tests/kafka, on free loopback ports: for the tests that ask Kafka and
Tributary the same question, and for bench/run.py's side-by-side figures. Standard
library only, so the benchmark can use it outside the test environment."""

import pathlib
import socket
import struct
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def maven_classpath(name):
    """The JVM programs of compat-tests/<name> (a Maven project), built into its
    target/ with the artifacts cached in .tools/m2; the classpath to run them with."""
    project = ROOT / "compat-tests" / name
    r = subprocess.run(["mvn", "-q", "-B", f"-Dmaven.repo.local={ROOT / '.tools' / 'm2'}", "-f",
                        str(project / "pom.xml"), "package"], capture_output=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError((r.stdout + r.stderr).decode(errors="replace")[-4000:])
    listed = (project / "target" / "classpath.txt").read_text().strip()
    return f"{project / 'target' / 'classes'}:{listed}"


def answers_api_versions(port):
    """Whether a Kafka broker answers an ApiVersions v0 request on `port`."""
    request = struct.pack(">hhih", 18, 0, 1, 4) + b"kkit"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
            body = s.recv(size, socket.MSG_WAITALL)
            return len(body) >= 6 and struct.unpack(">ih", body[:6]) == (1, 0)
    except (OSError, struct.error):
        return False


class ApacheKafka:
    """One Kafka 4.4 process; `extra` are more server.properties lines (say
    log.flush.interval.messages=1 for an fsync per append, Tributary's durability)."""

    def __init__(self, workdir: pathlib.Path, classpath: str, extra=(), heap="768m"):
        self.workdir, self.classpath, self.extra, self.heap = workdir, classpath, list(extra), heap
        self.port, self.controller_port = free_port(), free_port()
        self.proc = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=120):
        props = self.workdir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.workdir / 'logs'}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            *self.extra,
            "",
        ]))
        java = ["java", f"-Xmx{self.heap}", "-cp", self.classpath]
        ids = subprocess.run(java + ["kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True,
                             timeout=120).stdout.strip().splitlines()
        r = subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", ids[-1], "-c", str(props),
                                   "--standalone"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(r.stdout + r.stderr)
        log = open(self.workdir / "kafka.log", "ab")
        self.proc = subprocess.Popen(java + ["kafka.Kafka", str(props)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Apache Kafka exited with {self.proc.returncode}")
            if answers_api_versions(self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Apache Kafka did not answer within {timeout}s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
