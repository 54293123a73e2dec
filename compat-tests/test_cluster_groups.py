"""Consumer groups of the Java client (kafka-clients 4.4.0) on a 3-broker cluster
(real etcd, s3s-fs and tributary processes), with the classic protocol and with
KIP-848's: the same scenario as on a single broker (three members, disjoint
assignments covering every partition, a member leaving, every record exactly once
with synchronous commits), then a rolling restart of every broker, which moves the
group's coordinator and its offsets partition, and the group resumes exactly where
it committed."""

import time

import pytest

import groups
from clusterkit import SEALING, running_cluster
from conftest import unique, wait_until
from test_cluster_failover import served
from test_java_client import java_build  # noqa: F401  (the compiled Java programs)

GROUPS = "[groups]\ninitial_rebalance_delay_ms = 0\nconsumer_heartbeat_interval_ms = 500\n"


@pytest.fixture
def cluster(tmp_path):
    yield from running_cluster(tmp_path / "cluster", extra_top=SEALING + GROUPS)


class RollingRestart:
    """What groups.run_external restarts: every broker in turn, each handing its
    partitions on (SIGTERM) and started again before the next one goes."""

    def __init__(self, cluster, topic):
        self.cluster, self.topic = cluster, topic

    def restart(self):
        for node in self.cluster.nodes:
            assert node.stop() == 0, "a clean shutdown"
            node.start()
        wait_until(lambda: served(self.cluster.bootstrap, self.topic, partitions=groups.PARTITIONS), timeout=60, interval=0.2,
                   what="every partition served after the rolling restart")


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_java_consumer_groups_on_a_cluster_resume_after_a_rolling_restart(java_build, cluster, protocol):  # noqa: F811
    topic, group = unique("cgrp"), unique("g")
    started = time.monotonic()
    groups.run_external(RollingRestart(cluster, topic), lambda mode: groups.run_program(
        ["java", "-cp", java_build, "Groups", cluster.bootstrap, mode, topic, group, protocol], mode))
    print(f"{protocol}: the Java group scenario and a rolling restart of {len(cluster.nodes)} brokers "
          f"in {time.monotonic() - started:.1f}s, every record once, resumed at the committed offsets")
