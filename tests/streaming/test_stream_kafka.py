"""The stream through a real Kafka broker: structured and binary mode, same truth as files."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from pyspark.sql import functions as F

from gridlake.errors import DataLossError
from gridlake.lake import open_lake
from shared_schemas.tables import bronze_telemetry, quarantine_telemetry, silver_readings
from streaming.kafka_uri import KafkaUri
from streaming.produce import produce
from streaming.query import StreamOptions, run_stream
from streaming.sources import KafkaSource
from tests import oracle
from tests.streaming.conftest import BATCH_LINE, check_exactly_once

pytestmark = pytest.mark.kafka


def test_kafka_stream_equals_the_truth_and_keeps_coordinates(spark, kafka_broker, small_fleet,
                                                             tmp_path):
    topic = "telemetry-e2e"
    kafka_broker.create_topic(topic, partitions=2)
    files = sorted((small_fleet / "stream").glob("*.jsonl"))
    report = produce([str(p) for p in files], KafkaUri(kafka_broker.bootstrap, topic),
                     binary_fraction=0.3, seed=5)
    records = list(oracle.read_records(files))
    truth, invalid = oracle.silver_truth(records)

    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    source = KafkaSource(KafkaUri(kafka_broker.bootstrap, topic), max_offsets_per_trigger=200)
    lines = []
    run_stream(spark, lake, source, StreamOptions(available_now=True), report=lines.append)

    bronze = spark.read.format("delta").load(lake.path(bronze_telemetry()))
    assert bronze.count() == len(records)
    assert bronze.select("kafka_partition", "kafka_offset").distinct().count() == len(records)
    assert bronze.where(F.col("headers").isNotNull() & (F.size("headers") > 0)).count() > 0
    found = [BATCH_LINE.match(line.rstrip()) for line in lines if line.startswith("batch ")]
    assert all(found), lines
    reads = [int(m["read"]) for m in found]
    assert len(reads) >= 2 and max(reads) <= 200, reads  # at most max_offsets_per_trigger
    quarantine = spark.read.format("delta").load(lake.path(quarantine_telemetry()))
    assert quarantine.count() == len(invalid)
    rows = spark.read.format("delta").load(lake.path(silver_readings())).collect()
    assert {(r["device_id"], r["ts"]): (r["seq"], r["event_id"]) for r in rows} == {
        k: (v["seq"], v["_id"]) for k, v in truth.items()}
    assert all(r["kafka_topic"] == topic and r["kafka_offset"] is not None for r in rows)
    assert report is not None


def _delete_every_record(bootstrap: str, topic: str) -> None:
    """What retention does to old segments: every record now in `topic` is deleted."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"loss-{uuid.uuid4()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10)[1]) for p in partitions]
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the answers come
    for future in admin.delete_records(ends).values():
        future.result(timeout=30)


def test_records_deleted_before_the_stream_read_them_stop_it_until_accepted(
        spark, kafka_broker, small_fleet, tmp_path):
    files = sorted((small_fleet / "stream").glob("*.jsonl"))
    topic = f"loss-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=2)
    uri = KafkaUri(kafka_broker.bootstrap, topic)
    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    source = KafkaSource(uri)
    produce([str(files[0])], uri, seed=1)
    run_stream(spark, lake, source, StreamOptions(available_now=True), report=lambda _: None)
    produce([str(files[1])], uri, seed=2)
    _delete_every_record(kafka_broker.bootstrap, topic)  # the second file, never read
    produce([str(files[2])], uri, seed=3)

    with pytest.raises(DataLossError) as stopped:
        run_stream(spark, lake, source, StreamOptions(available_now=True), report=lambda _: None)
    message = str(stopped.value)
    assert f"topic {topic!r}" in message and "--accept-data-loss" in message, message
    assert len(message.splitlines()) == 1, message
    check_exactly_once(spark, lake, files[:1])  # nothing written past the loss

    run_stream(spark, lake, replace(source, accept_data_loss=True),
               StreamOptions(available_now=True), report=lambda _: None)
    check_exactly_once(spark, lake, [files[0], files[2]])
