"""What the cluster tests share: a cluster of real parts (etcd, s3s-fs, tributary
processes from scripts/cluster.py, each stopped by its own PID) as a fixture body,
and the Admin-client views of it."""

import base64
import json
import sys
import urllib.request

from confluent_kafka.admin import AdminClient

from conftest import ROOT, wait_until

sys.path.insert(0, str(ROOT / "scripts"))
from cluster import LocalCluster  # noqa: E402

LEASE_TTL = 2
# Segments seal after a second, so takeovers start from partition manifests.
SEALING = "[topics]\nauto_create = false\nsegment_ms = 1000\n"


def running_cluster(directory, brokers=3, extra_top=SEALING, tail=25, extra_cluster=None):
    """A fixture body: `brokers` brokers that all list each other, yielded; stopped
    afterwards with the tail of each broker's log printed."""
    c = LocalCluster(directory, lease_ttl=LEASE_TTL, extra_top=extra_top, extra_cluster=extra_cluster)
    try:
        c.up(brokers)
        expected = {n.id: n.address for n in c.nodes}
        # Ready means registered; the others' registrations reach each view soon after.
        wait_until(lambda: all(brokers_of(n) == expected for n in c.nodes), timeout=20,
                   what=f"every broker to list all {brokers}")
        yield c
    finally:
        # Another cluster may reuse these ports: its clients must be new ones.
        _admins.clear()
        logs = {n.id: n.log_tail(tail) for n in c.nodes}
        c.down()
        for node_id, log in logs.items():
            print(f"--- broker {node_id}\n{log}")


_admins = {}


def admin_of(node):
    """One Admin client per broker address, kept alive: a client destroyed while a
    request of it is pending fails that request (_DESTROY)."""
    if node.address not in _admins:
        _admins[node.address] = AdminClient({"bootstrap.servers": node.address, "socket.timeout.ms": 5000})
    return _admins[node.address]


def brokers_of(node):
    md = admin_of(node).list_topics(timeout=10)
    return {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}


def _topic(node, topic):
    try:
        md = admin_of(node).list_topics(topic, timeout=5)
    except Exception:  # noqa: BLE001 - a broker going away answers nothing
        return None
    t = md.topics.get(topic)
    return None if t is None or t.error is not None else t


def knows(node, topic):
    """Whether `node` answers Metadata for `topic`."""
    return _topic(node, topic) is not None


def leaders(node, topic):
    """{partition: leader} as `node` answers Metadata (empty while it does not know
    the topic or cannot answer)."""
    t = _topic(node, topic)
    return {} if t is None else {p.id: p.leader for p in t.partitions.values() if p.error is None}


def histories(cluster):
    """{key: history} of every partition, read from etcd's JSON gateway."""
    prefix = f"/tributary/{cluster.name}/history/".encode()
    body = json.dumps({"key": base64.b64encode(prefix).decode(),
                       "range_end": base64.b64encode(prefix[:-1] + b"0").decode()}).encode()
    req = urllib.request.Request(f"{cluster.etcd_endpoint}/v3/kv/range", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        kvs = json.load(r).get("kvs", [])
    return {base64.b64decode(kv["key"]).decode()[len(prefix):]: json.loads(base64.b64decode(kv["value"]))
            for kv in kvs}
