#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/<target>/) from real client traffic: a
broker runs behind a recording proxy while confluent-kafka (librdkafka) and
kafka-python produce with every codec, consume in groups, commit, run a
transaction and administer topics. Every request frame the clients sent becomes a
`request_frame` seed; the journal's batches become `record_batch` seeds, its files
(in block-aligned pieces) `journal_file` seeds, the metadata log, snapshot and
checkpoint `metadata` seeds, and the sealed segments' footers `segment_footer` seeds.

    .venv/bin/python fuzz/seed.py      # after scripts/test built the broker

The corpora are checked in; rerun this when the protocol surface grows."""

import hashlib
import pathlib
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "compat-tests"))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from conftest import Broker, free_port, wait_until  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"
MAX_SEED = 64 * 1024


def save(target, data):
    if not data or len(data) > MAX_SEED:
        return
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


class RecordingProxy:
    """Forwards 127.0.0.1:port to the broker and saves every request frame."""

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.stopped = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self.pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, False), daemon=True).start()

    def pump(self, src, dst, record):
        buf = b""
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                dst.sendall(chunk)
                if record:
                    buf += chunk
                    while len(buf) >= 4:
                        (n,) = struct.unpack(">i", buf[:4])
                        if len(buf) < 4 + n:
                            break
                        save("request_frame", buf[4:4 + n])
                        buf = buf[4 + n:]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.stopped = True
        self.listener.close()


def traffic(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic("seed-plain", 3), NewTopic("seed-compact", 1, config={"cleanup.policy": "compact"})]
    for f in admin.create_topics(topics).values():
        f.result(30)
    for f in admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "seed-plain")]).values():
        f.result(30)
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5,
                      "enable.idempotence": True})
        for i in range(200):
            p.produce("seed-plain", key=b"k%d" % (i % 7), value=(b"%s-%d " % (codec.encode(), i)) * 5,
                      headers=[("h", b"v")] if i % 3 == 0 else None)
            p.produce("seed-compact", key=b"key%d" % (i % 5), value=b"v%d" % i)
        assert p.flush(30) == 0
    t = Producer({"bootstrap.servers": bootstrap, "transactional.id": "seed-txn"})
    t.init_transactions(30)
    t.begin_transaction()
    t.produce("seed-plain", b"in a transaction")
    t.commit_transaction(30)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-group", "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed"})
    c.subscribe(["seed-plain"])
    got = 0
    deadline = time.monotonic() + 30
    while got < 500 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    c.commit(asynchronous=False)
    c.close()
    kp = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    for i in range(50):
        kp.send("seed-plain", key=b"kp", value=b"kafka-python %d" % i)
    kp.flush(30)
    kp.close()
    kc = KafkaConsumer("seed-plain", bootstrap_servers=bootstrap, group_id="seed-kp", auto_offset_reset="earliest",
                       consumer_timeout_ms=3000)
    for _ in kc:
        pass
    kc.close()
    for f in admin.delete_topics(["seed-compact"]).values():
        f.result(30)


def harvest(data_dir):
    journal = data_dir / "journal"
    for f in sorted(journal.glob("*.journal")):
        data = f.read_bytes()
        at = 0
        while at + 17 <= len(data):
            (n,) = struct.unpack_from(">I", data, at)
            if n < 13 or at + 4 + n > len(data):
                break
            if data[at + 8] == 1:
                save("record_batch", data[at + 17:at + 4 + n])
            at += 4 + n
        for piece in range(0, len(data), MAX_SEED):
            save("journal_file", data[piece:piece + MAX_SEED])
    for name in ["meta/metadata.log", "meta/metadata.snapshot", "journal/checkpoint.json"]:
        p = data_dir / name
        if p.exists():
            save("metadata", p.read_bytes()[:MAX_SEED])
    for seg in (data_dir / "segments").rglob("*"):
        if seg.is_file():
            data = seg.read_bytes()
            # The last footer: its length is the u32 before the 8-byte magic.
            if len(data) >= 12 and data.endswith(b"TRBSEG\x00\x01"):
                (n,) = struct.unpack_from(">I", data, len(data) - 12)
                save("segment_footer", data[len(data) - n:])


def main():
    work = pathlib.Path(tempfile.mkdtemp())
    broker = Broker(work)
    # Clients bootstrap through the proxy and Metadata sends them back to it (the
    # advertised address), so every request passes the recorder.
    proxy = RecordingProxy(broker.port)
    broker.config_path = work / "tributary.toml"
    broker.config_path.write_text(f'advertised_listener = "127.0.0.1:{proxy.port}"\n'
                                  "[topics]\nsegment_ms = 500\n[storage]\nflush_interval_ms = 100\n")
    broker.start()
    try:
        traffic(f"127.0.0.1:{proxy.port}")
        wait_until(lambda: any((broker.data_dir / "segments").rglob("*.seg")), timeout=30, what="a sealed segment")
    finally:
        proxy.stop()
        broker.stop()
    harvest(broker.data_dir)
    shutil.rmtree(work, ignore_errors=True)
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
