"""kcat (librdkafka CLI): produce keyed records with headers in every codec,
read them back with offsets, keys, values and headers, and again after a restart."""

import subprocess

import pytest

from conftest import unique
from scenario import CODECS


def kcat(broker, *args, stdin=None, timeout=30):
    r = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=stdin, capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def read_all(broker, topic):
    out = kcat(broker, "-C", "-t", topic, "-e", "-q", "-f", "%p|%o|%k|%s|%h\n")
    return out.decode().splitlines()


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_with_keys_and_headers(broker, codec):
    topic = unique(f"kcat-{codec}")
    lines = [f"key{i}:value-{i}-{'x' * i}" for i in range(50)]
    kcat(broker, "-P", "-t", topic, "-K", ":", "-z", codec, "-H", "trace=abc", "-H", "n=1",
         stdin=("\n".join(lines) + "\n").encode())
    expected = [f"0|{i}|key{i}|value-{i}-{'x' * i}|trace=abc,n=1" for i in range(50)]
    assert read_all(broker, topic) == expected
    broker.restart()
    assert read_all(broker, topic) == expected


def test_metadata_lists_the_broker_and_topics(broker):
    topic = unique("kcat-meta")
    kcat(broker, "-P", "-t", topic, stdin=b"one\n")
    listing = kcat(broker, "-L", "-t", topic).decode()
    assert f"broker 0 at {broker.bootstrap}" in listing
    assert f'topic "{topic}" with 1 partitions' in listing
