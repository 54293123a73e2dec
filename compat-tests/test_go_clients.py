"""The Go clients at pinned versions (compat-tests/go/go.mod: franz-go 1.22.3 with
kadm, IBM/sarama 1.61.1, segmentio/kafka-go 0.4.51), each through one program
(compat-tests/go): topics created and described, 1,000 keyed records produced and
read back once each by a consumer group committing by hand, its commits checked
(lag 0, committed offsets summing to the records); with franz-go and Sarama a
committed and an aborted transaction, a read_committed reader seeing only the
committed one."""

import os
import subprocess

import pytest

from conftest import ROOT, unique

GO = ROOT / "compat-tests" / "go"


@pytest.fixture(scope="session")
def go_clients(tmp_path_factory):
    """The program, built with the module and build caches in .tools."""
    out = tmp_path_factory.mktemp("go") / "go-clients"
    env = dict(os.environ, GOMODCACHE=str(ROOT / ".tools" / "gomod"), GOCACHE=str(ROOT / ".tools" / "gocache"),
               GOFLAGS="-modcacherw")
    r = subprocess.run(["go", "build", "-o", str(out), "."], cwd=GO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.mark.parametrize("client", ["franz", "sarama", "kafkago"])
def test_go_client(go_clients, broker, client):
    r = subprocess.run([str(go_clients), client, broker.bootstrap, unique(client)], capture_output=True, text=True,
                       timeout=180)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and r.stdout.strip().endswith(f"OK {client}"), out[-4000:]
