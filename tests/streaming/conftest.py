"""Fixtures of the streaming tests: one real Kafka broker (KRaft) for the whole run; and the
exactly-once check against the oracle."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_schemas.tables import bronze_telemetry, quarantine_telemetry, silver_readings
from tests import oracle


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A running one-node Kafka broker on a free 127.0.0.1 port, its data in a tmp folder."""
    from streaming.kafka_broker import KafkaBroker

    with KafkaBroker(tmp_path_factory.mktemp("kafka"), num_partitions=2) as broker:
        yield broker


def check_exactly_once(spark, lake, files: list[Path]) -> None:
    """Bronze holds every record of `files` once, quarantine every invalid one once, and silver
    the oracle's latest-seq truth with no duplicate key."""
    records = list(oracle.read_records(files))
    truth, invalid = oracle.silver_truth(records)
    bronze = spark.read.format("delta").load(lake.path(bronze_telemetry()))
    assert bronze.count() == len(records)
    assert bronze.select("record_id").distinct().count() == len(records)
    quarantine = spark.read.format("delta").load(lake.path(quarantine_telemetry()))
    assert quarantine.count() == len(invalid)
    assert quarantine.select("record_id").distinct().count() == len(invalid)
    silver = spark.read.format("delta").load(lake.path(silver_readings()))
    rows = silver.select("device_id", "ts", "seq", "event_id").collect()
    assert len(rows) == len({(r[0], r[1]) for r in rows}), "duplicate keys in silver"
    assert {(r[0], r[1]): (r[2], r[3]) for r in rows} == {
        k: (v["seq"], v["_id"]) for k, v in truth.items()}
