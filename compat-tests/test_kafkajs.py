"""kafkajs: admin create and list, produce every codec with keys, repeated headers
and nulls; the records are read back byte for byte (by librdkafka), and again after
a restart; consumer groups (the scenario of groups.py)."""

import base64
import json
import pathlib
import subprocess

import pytest

import groups

from conftest import unique
from scenario import CODECS, assert_same, records
from test_confluent_kafka import as_tuples, consume

HERE = pathlib.Path(__file__).resolve().parent / "kafkajs"


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def kafkajs_produce(broker, topic, recs, codec):
    spec = {
        "bootstrap": broker.bootstrap,
        "topic": topic,
        "partitions": 1,
        "codec": codec,
        "records": [{"key": b64(k), "value": b64(v), "headers": [[n, b64(x)] for n, x in h]} for k, v, h in recs],
    }
    r = subprocess.run(["node", str(HERE / "produce.js")], input=json.dumps(spec).encode(), capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return json.loads(r.stdout)


@pytest.mark.parametrize("codec", CODECS)
def test_kafkajs_produces_every_codec_byte_for_byte(broker, codec):
    topic = unique(f"kjs-{codec}")
    expected = records(topic)
    out = kafkajs_produce(broker, topic, expected, codec)
    assert out["created"] is True
    assert out["offsets"] == list(range(len(expected)))
    assert_same(expected, as_tuples(consume(broker, topic, [0], len(expected))), codec)
    broker.restart()
    assert_same(expected, as_tuples(consume(broker, topic, [0], len(expected))), f"{codec} after restart")


def test_kafkajs_consumer_group(make_broker):
    broker = make_broker(env=groups.BROKER_ENV)
    broker.start()
    topic, group = unique("kgrp"), unique("g")
    groups.run_external(broker, lambda mode: groups.run_program(
        ["node", str(HERE / "groups.js"), broker.bootstrap, mode, topic, group], mode))


def test_kafkajs_transactions(broker):
    from test_transactions import committed_offset, read_all, values

    topic, source, group = unique("kjs-txn"), unique("kjs-src"), unique("g")
    groups.create_topic(broker, topic, partitions=1)
    groups.create_topic(broker, source, partitions=1)
    groups.produce(broker, source, 0, 10, partitions=1)
    r = subprocess.run(["node", str(HERE / "txn.js"), broker.bootstrap, topic, group, source], capture_output=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.decode().strip().endswith("OK"), r.stderr.decode(errors="replace")[-3000:]
    assert values(read_all(broker, topic, 1, "read_committed")) == [f"c{i}".encode() for i in range(5)]
    assert len(read_all(broker, topic, 1, "read_uncommitted")) == 10
    assert committed_offset(broker, group, source, 0) == 5


def test_kafkajs_admin_round_trips(broker):
    r = subprocess.run(["node", str(HERE / "admin.js"), broker.bootstrap, unique("kadm")], capture_output=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.decode().strip().endswith("OK"), r.stderr.decode(errors="replace")[-3000:]
