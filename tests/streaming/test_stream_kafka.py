"""The stream through a real Kafka broker: structured and binary mode, same truth as files."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from gridlake.lake import open_lake
from shared_schemas.tables import bronze_telemetry, quarantine_telemetry, silver_readings
from streaming.kafka_uri import KafkaUri
from streaming.produce import produce
from streaming.query import StreamOptions, run_stream
from streaming.sources import KafkaSource
from tests import oracle

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
    assert sum(1 for line in lines if line.startswith("batch ")) >= 2
    quarantine = spark.read.format("delta").load(lake.path(quarantine_telemetry()))
    assert quarantine.count() == len(invalid)
    rows = spark.read.format("delta").load(lake.path(silver_readings())).collect()
    assert {(r["device_id"], r["ts"]): (r["seq"], r["event_id"]) for r in rows} == {
        k: (v["seq"], v["_id"]) for k, v in truth.items()}
    assert all(r["kafka_topic"] == topic and r["kafka_offset"] is not None for r in rows)
    assert report is not None
