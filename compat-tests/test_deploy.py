"""Deployment files: the Kubernetes manifests validate against the Kubernetes
schemas (kubernetes-validate, pinned); the compose files pass `docker compose
config` where a Docker client with compose exists, and otherwise a structural check
of what compose requires (every service runnable, every port, volume, dependency
and mounted file resolvable); the Dockerfile builds where a Docker engine runs
(skipped with the reason where none does); the Grafana dashboard only queries
metrics the broker exports."""

import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

import groups
from conftest import unique

DOCKER = pathlib.Path(__file__).resolve().parent.parent / "docker"
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.flink.yml", "docker-compose.cluster.yml"]


@pytest.mark.parametrize("manifest", ["tributary.yaml", "tributary-cluster.yaml", "flink.yaml"])
def test_kubernetes_manifests_validate_against_the_schemas(manifest):
    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all((DOCKER / "k8s" / manifest).read_text()) if d]
    assert docs
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
        if doc["kind"] in ("Deployment", "StatefulSet"):
            assert doc["apiVersion"] == "apps/v1"
    kinds = {d["kind"] for d in docs}
    if manifest in ("tributary.yaml", "tributary-cluster.yaml"):
        assert kinds == {"ConfigMap", "Service", "StatefulSet"}
        sts = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "tributary")
        container = sts["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert sts["spec"]["volumeClaimTemplates"], "data on a persistent volume"
        services = [d for d in docs if d["kind"] == "Service"]
        assert any(s["spec"].get("clusterIP") == "None" for s in services), "a headless Service"
        # The config the ConfigMap carries is one the broker accepts.
        toml = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["tributary.toml"]
        import tomllib
        parsed = tomllib.loads(toml)
        env = {e["name"]: e.get("value", "from-a-secret") for e in container.get("env", [])}
        env["TRIBUTARY_ADVERTISED_LISTENER"] = "tributary-0.tributary-headless:9092"
        env.pop("POD_NAME", None)
        assert_broker_accepts(toml, env)
        if manifest == "tributary-cluster.yaml":
            assert sts["spec"]["replicas"] >= 3, "several brokers"
            assert parsed["cluster"]["etcd_endpoints"] and parsed["storage"]["backend"] == "s3"
            assert parsed["node_id"] == -1, "node ids from etcd, so the StatefulSet can scale"
            etcd = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "tributary-etcd"]
            assert etcd, "etcd runs beside the brokers"
    else:
        assert {"ConfigMap", "Service", "Deployment"} <= kinds


def assert_broker_accepts(toml_text, env):
    """The broker's own configuration check accepts this file and environment."""
    import os
    import tempfile

    from conftest import BINARY

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(toml_text)
    try:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
        r = subprocess.run([BINARY, "--config", f.name, "--check-config"], env={**clean, **env},
                           capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(f.name)
    assert r.returncode == 0, f"the broker refuses this configuration: {r.stderr}"


def test_the_cluster_compose_file_runs_brokers_that_find_each_other_through_etcd():
    doc = yaml.safe_load((DOCKER / "docker-compose.cluster.yml").read_text())
    services = doc["services"]
    assert {"etcd", "s3", "broker"} <= set(services)
    broker = services["broker"]
    assert "ports" not in broker, "--scale broker=N needs no fixed host ports"
    assert "volumes" not in broker, "the local disk is a cache: no volume shared by the replicas"
    env = dict(broker["environment"])
    assert env["TRIBUTARY_NODE_ID"] == "-1"
    assert env["TRIBUTARY_CLUSTER_ETCD_ENDPOINTS"].startswith("http://etcd:")
    env["TRIBUTARY_ADVERTISED_LISTENER"] = "172.18.0.5:9092"  # what the entrypoint sets
    assert_broker_accepts("", env)


def compose_available():
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_are_valid(name):
    path = DOCKER / name
    if compose_available():
        r = subprocess.run(["docker", "compose", "-f", str(path), "config", "-q"], capture_output=True)
        assert r.returncode == 0, r.stderr.decode()
        return
    doc = yaml.safe_load(path.read_text())
    assert set(doc) <= {"services", "volumes", "networks", "configs", "secrets", "name"}, set(doc)
    services = doc["services"]
    declared_volumes = set(doc.get("volumes") or {})
    for sname, svc in services.items():
        assert "image" in svc or "build" in svc, f"{sname}: neither image nor build"
        if "build" in svc:
            context = (path.parent / svc["build"]["context"]).resolve()
            assert (context / svc["build"]["dockerfile"]).is_file(), f"{sname}: Dockerfile not found"
        for port in svc.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", str(port)), f"{sname}: port {port!r} is not HOST:CONTAINER"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).exists(), f"{sname}: mounted {source} does not exist"
            else:
                assert source in declared_volumes, f"{sname}: volume {source} is not declared"
        deps = svc.get("depends_on", [])
        for dep in (deps if isinstance(deps, list) else deps.keys()):
            assert dep in services, f"{sname}: depends on unknown service {dep}"
        if "healthcheck" in svc:
            assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
        if "environment" in svc and isinstance(svc["environment"], dict):
            assert all(isinstance(v, str) for v in svc["environment"].values()), f"{sname}: quote env values"


def test_dockerfile_builds_where_a_docker_engine_runs():
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine on this machine: the image build is not exercised here")
    r = subprocess.run(["docker", "build", "-f", str(DOCKER / "Dockerfile"), "-t", "tributary:test", str(DOCKER.parent)],
                       capture_output=True, timeout=1800)
    assert r.returncode == 0, r.stderr.decode()[-3000:]


def test_the_dashboard_only_queries_exported_metrics(broker):
    topic, group = unique("dash"), unique("g")
    groups.create_topic(broker, topic, partitions=1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, value=b"x", partition=0)
    p.flush(30)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    for _ in range(100):
        m = c.poll(0.2)
        if m is not None and not m.error():
            c.commit(m, asynchronous=False)
            break
    # An out-of-range fetch, so that the error counters have a series.
    bad = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "auto.offset.reset": "error"})
    bad.assign([TopicPartition(topic, 0, 1000)])
    for _ in range(20):
        m = bad.poll(0.2)
        if m is not None and m.error():
            break
    bad.close()
    exported = {f.name for f in text_string_to_metric_families(broker.metrics())}
    c.close()
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "tributary.json").read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in set(re.findall(r"tributary_[a-z_]+", target["expr"])):
                base = re.sub(r"_(bucket|sum|count|total)$", "", name)
                assert base in exported, f"panel {panel['title']!r} queries {name}, which /metrics does not export"
