"""The dev/test Kafka broker, `gridlake produce` and Spark's Kafka source, against a real broker."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gridlake.cli import main
from gridlake.errors import SetupError
from streaming.kafka_broker import BrokerError, KafkaBroker
from streaming.kafka_uri import KafkaUri
from streaming.produce import produce

# Starting Spark and the broker counts against the first test that needs them.
pytestmark = pytest.mark.timeout(240)


def _event(device_id: str, seq: int, minute: int) -> dict:
    ts = f"2026-11-20T10:{minute:02d}:00Z"
    return {
        "specversion": "1.0", "id": f"evt-{device_id}-{seq}",
        "source": f"/sites/S001/devices/{device_id}", "type": "energy.telemetry.v1",
        "time": ts, "datacontenttype": "application/json",
        "traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01",
        "data": {"device_id": device_id, "site_id": "S001", "device_type": "battery",
                 "ts": ts, "seq": seq, "power_w": -2150.5, "energy_import_wh": 0.0,
                 "energy_export_wh": 35.8, "soc_pct": None, "temperature_c": 24.1,
                 "status": "ok"},
    }


# (raw line, expected key) for every record; written by hand so expectations do not come from
# the code under test.
EVENTS = [_event(device, seq, minute) for minute, (device, seq) in
          enumerate([("D001", 1), ("D002", 1), ("D001", 2), ("D003", 7), ("D002", 2),
                     ("D004", 1), ("D001", 3), ("D003", 8)])]
PLAIN_LINES = [(json.dumps(e).encode(), e["data"]["device_id"].encode()) for e in EVENTS[:5]]
CORRUPT_LINES = [
    (b'{"data": {"device_id": "D009"}, "note": "caf\xe9 \xff"}', None),  # Latin-1: not UTF-8
    (b'{"specversion": "1.0", "id": "trunc', None),                     # not JSON
    (b'{"specversion": "1.0", "data": {"device_id": "D005"}}', b"D005"),  # JSON, envelope short
]
GZIP_LINES = [(json.dumps(e, separators=(",", ":")).encode(), e["data"]["device_id"].encode())
              for e in EVENTS[5:]]
ALL_LINES = PLAIN_LINES + CORRUPT_LINES + GZIP_LINES
EVENTS_BY_ID = {e["id"]: e for e in EVENTS}
RAW_BY_ID = {json.loads(line)["id"]: line for line, _ in PLAIN_LINES + GZIP_LINES}


def _write_fleet(folder: Path) -> Path:
    """Two record files as `gridlake generate` writes them, plus a blank line and a CRLF."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [line for line, _ in PLAIN_LINES + CORRUPT_LINES]
    body = b"\n".join(lines[:3]) + b"\r\n" + b"\n".join(lines[3:]) + b"\n\n"
    (folder / "part-0000.jsonl").write_bytes(body)
    with gzip.open(folder / "part-0001.jsonl.gz", "wb") as stream:
        stream.write(b"".join(line + b"\n" for line, _ in GZIP_LINES))
    (folder / "README.txt").write_text("not a record file")
    return folder


def _read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list:
    """Every message of `topic`, from the beginning of each partition."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING)
                      for p in metadata.topics[topic].partitions]
        total = 0
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            total += high - low
        consumer.assign(partitions)
        messages = []
        deadline = time.monotonic() + timeout
        while len(messages) < total and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
        assert len(messages) == total, f"read {len(messages)} of {total} messages"
        return messages
    finally:
        consumer.close()


def _topic() -> str:
    return f"telemetry-{uuid.uuid4().hex[:8]}"


def _check_messages(messages) -> int:
    """Every line is in the topic exactly once, raw or in binary mode; returns how many binary."""
    expected = sorted((line, key) for line, key in ALL_LINES)
    seen, binary = [], 0
    for message in messages:
        headers = dict(message.headers() or [])
        if "ce_specversion" in headers:
            binary += 1
            event = EVENTS_BY_ID[headers["ce_id"].decode()]
            assert headers == {
                "ce_specversion": b"1.0", "ce_id": event["id"].encode(),
                "ce_source": event["source"].encode(), "ce_type": b"energy.telemetry.v1",
                "ce_time": event["time"].encode(), "ce_traceparent": event["traceparent"].encode(),
                "content-type": b"application/json",
            }
            assert json.loads(message.value()) == event["data"]
            seen.append((RAW_BY_ID[event["id"]], message.key()))
        else:
            assert message.headers() is None
            seen.append((message.value(), message.key()))
    assert sorted(seen) == expected
    return binary


# -- without a broker -------------------------------------------------------------------------
def test_start_without_jars_says_run_make_jars(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDLAKE_KAFKA_JARS", str(tmp_path / "empty"))
    with pytest.raises(SetupError, match="run `make jars`"):
        KafkaBroker(tmp_path / "kafka").start()


def test_start_without_java_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SetupError, match="java was not found"):
        KafkaBroker(tmp_path / "kafka").start()


# -- with the session's broker ----------------------------------------------------------------
@pytest.mark.kafka
def test_broker_answers_metadata_on_its_bootstrap_address(kafka_broker):
    from confluent_kafka.admin import AdminClient

    host, port = kafka_broker.bootstrap.split(":")
    assert host == "127.0.0.1" and int(port) == kafka_broker.port
    metadata = AdminClient({"bootstrap.servers": kafka_broker.bootstrap}).list_topics(timeout=10)
    assert [b.host for b in metadata.brokers.values()] == ["127.0.0.1"]


@pytest.mark.kafka
def test_produce_publishes_every_line_raw_keyed_or_in_binary_mode(kafka_broker, tmp_path,
                                                                  capsys):
    fleet = _write_fleet(tmp_path / "stream")
    topic = _topic()

    status = main(["produce", "--from", str(fleet), "--to", f"kafka:{kafka_broker.bootstrap}/{topic}",
                   "--binary-mode", "0.5", "--seed", "3"])

    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith(f"published 11 records from 2 files to kafka:{kafka_broker.bootstrap}/{topic}")
    assert "2 without a key" in out and "1 blank lines skipped" in out
    binary = _check_messages(_read_topic(kafka_broker.bootstrap, topic))
    eligible = len(EVENTS)
    assert 0 < binary < eligible, "seed 3 should send some events each way"
    assert f"({binary} in CloudEvents binary mode" in out


@pytest.mark.kafka
def test_every_event_goes_binary_at_fraction_one_and_corrupt_lines_stay_raw(kafka_broker,
                                                                            tmp_path):
    fleet = _write_fleet(tmp_path / "stream")
    topic = _topic()

    report = produce([fleet], KafkaUri(kafka_broker.bootstrap, topic), binary_fraction=1.0)

    assert (report.records, report.binary, report.delivered) == (11, 8, 11)
    assert _check_messages(_read_topic(kafka_broker.bootstrap, topic)) == 8


@pytest.mark.kafka
def test_a_restarted_broker_keeps_the_topics_messages(kafka_broker, tmp_path):
    fleet = _write_fleet(tmp_path / "stream")
    topic = _topic()
    kafka_broker.create_topic(topic, partitions=3)
    produce([fleet], KafkaUri(kafka_broker.bootstrap, topic))
    bootstrap = kafka_broker.bootstrap

    kafka_broker.stop()
    assert not kafka_broker.running
    kafka_broker.start()

    assert kafka_broker.bootstrap == bootstrap
    assert kafka_broker.partitions(topic) == 3
    assert _check_messages(_read_topic(bootstrap, topic)) == 0


@pytest.mark.kafka
def test_add_partitions_grows_a_topic_and_refuses_to_shrink_it(kafka_broker):
    topic = _topic()
    kafka_broker.create_topic(topic, partitions=1)

    kafka_broker.add_partitions(topic, 4)

    assert kafka_broker.partitions(topic) == 4
    with pytest.raises(BrokerError, match="growing topic"):
        kafka_broker.add_partitions(topic, 2)


@pytest.mark.kafka
def test_spark_kafka_batch_source_reads_what_produce_wrote(kafka_broker, spark, tmp_path):
    fleet = _write_fleet(tmp_path / "stream")
    topic = _topic()
    report = produce([fleet], KafkaUri(kafka_broker.bootstrap, topic), binary_fraction=0.5, seed=3)

    rows = (spark.read.format("kafka")
            .option("kafka.bootstrap.servers", kafka_broker.bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .option("includeHeaders", "true")
            .load()
            .select("key", "value", "headers")
            .collect())

    assert len(rows) == len(ALL_LINES) == report.records
    with_headers = [r for r in rows if r.headers]
    assert len(with_headers) == report.binary
    for row in with_headers:
        names = {h.key: bytes(h.value) for h in row.headers}
        assert names["ce_type"] == b"energy.telemetry.v1"
        assert json.loads(bytes(row.value)) == EVENTS_BY_ID[names["ce_id"].decode()]["data"]
    raw = {(bytes(r.value), None if r.key is None else bytes(r.key)) for r in rows if not r.headers}
    assert (CORRUPT_LINES[0][0], None) in raw  # the non-UTF-8 bytes, untouched


@pytest.mark.kafka
def test_kafka_dev_serves_until_sigterm_then_stops_cleanly(tmp_path):
    from confluent_kafka.admin import AdminClient

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "gridlake.cli", "kafka-dev", "--dir", str(tmp_path / "k")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=Path(__file__).parents[2])
    try:
        first = process.stdout.readline()
        assert first.startswith("Kafka broker ready at 127.0.0.1:"), first
        bootstrap = first.split()[4]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert admin.list_topics(timeout=10).brokers
        del admin  # a client left behind would log refused connections once the broker stops

        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    assert process.returncode == 0
    assert rest.rstrip().endswith("Kafka broker stopped.")
    assert (tmp_path / "k" / "data" / "meta.properties").exists()
