"""The Kafka broker bounced and the topic grown while `gridlake stream` runs, and the stream
killed at a commit boundary: nothing lost, nothing twice.

The stream runs as its own process with a 1-second trigger. A third of the fleet is produced
and read; the next third is produced and the broker stopped at once, before the stream has
read it, for a while (the stream waits on it), then started again; the topic grows from 2 to 4
partitions and the rest is produced (keys now hash over all four). The stream must read every
record exactly once, the new partitions from their first offset, and stop cleanly on SIGTERM.
`make chaos` keeps the broker down for 15 s; `make test` runs the same with a 4-second outage.
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest
from pyspark.sql import functions as F

from gridlake.lake import Lake
from streaming.kafka_uri import KafkaUri
from streaming.produce import produce
from tests import oracle
from tests.streaming.conftest import StreamProcess, check_exactly_once, check_logs

pytestmark = pytest.mark.kafka


def _partitions_holding_messages(bootstrap: str, topic: str) -> set[int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        return {p for p in metadata.topics[topic].partitions
                if consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] > 0}
    finally:
        consumer.close()


def bounce_and_grow(spark, kafka_broker, small_fleet, tmp_path, outage: float) -> None:
    files = sorted((small_fleet / "stream").glob("*.jsonl"))
    thirds = [files[:1], files[1:2], files[2:]]
    counts = [len(list(oracle.read_records(part))) for part in thirds]
    topic = f"chaos-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=2)
    uri = KafkaUri(kafka_broker.bootstrap, topic)
    lake_dir = tmp_path / "lake"
    stream = StreamProcess(f"kafka:{kafka_broker.bootstrap}/{topic}", lake_dir, "--trigger", "1")
    try:
        produce([str(p) for p in thirds[0]], uri, binary_fraction=0.3, seed=1)
        stream.wait_for(counts[0])

        produce([str(p) for p in thirds[1]], uri, binary_fraction=0.3, seed=2)
        kafka_broker.stop()  # with the second third unread: a backlog across the outage
        time.sleep(outage)  # triggers find no broker meanwhile
        assert stream.process.poll() is None, stream.tail()
        kafka_broker.start()
        stream.wait_for(counts[0] + counts[1])

        kafka_broker.add_partitions(topic, 4)
        produce([str(p) for p in thirds[2]], uri, binary_fraction=0.3, seed=3)
        stream.wait_for(sum(counts))
    finally:
        code = stream.stop()
    assert code == 0, stream.tail()

    lake = Lake(str(lake_dir.resolve()))
    check_exactly_once(spark, lake, files)
    holding = _partitions_holding_messages(kafka_broker.bootstrap, topic)
    assert holding & {2, 3}, "no key hashed to a new partition: the test proves nothing"
    partitions = {r[0] for r in spark.read.format("delta").load(lake.path("bronze/telemetry"))
                  .select("kafka_partition").distinct().collect()}
    assert partitions == holding
    offsets = (spark.read.format("delta").load(lake.path("bronze/telemetry"))
               .groupBy("kafka_partition").agg(F.min("kafka_offset").alias("first")).collect())
    assert {r["first"] for r in offsets} == {0}, "a partition was not read from its start"


@pytest.mark.slow
def test_broker_bounce_and_new_partitions_mid_stream_lose_and_repeat_nothing(
        spark, kafka_broker, small_fleet, tmp_path):
    bounce_and_grow(spark, kafka_broker, small_fleet, tmp_path, outage=15)


def test_a_short_broker_bounce_and_new_partitions_mid_stream_lose_and_repeat_nothing(
        spark, kafka_broker, small_fleet, tmp_path):
    bounce_and_grow(spark, kafka_broker, small_fleet, tmp_path, outage=4)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_bronze", "after_silver"])
def test_kill_9_of_a_kafka_stream_at_a_commit_boundary_then_restart(
        spark, kafka_broker, small_fleet, tmp_path, point):
    """kill -9 inside micro-batch 1 of a stream reading Kafka (bronze committed; or bronze,
    quarantine and silver), then the same command again: batch 1 is replayed from the offsets
    its checkpoint planned, and every record is in every table exactly once."""
    files = sorted((small_fleet / "stream").glob("*.jsonl"))
    topic = f"kill-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=2)
    produce([str(p) for p in files], KafkaUri(kafka_broker.bootstrap, topic),
            binary_fraction=0.3, seed=4)
    source, lake_dir = f"kafka:{kafka_broker.bootstrap}/{topic}", tmp_path / "lake"
    args = ("--available-now", "--max-offsets-per-trigger", "150")

    code, out = StreamProcess(source, lake_dir, *args, GRIDLAKE_CRASH_AT=f"{point}@1").finish()
    assert code == -signal.SIGKILL, (code, out)
    code, out = StreamProcess(source, lake_dir, *args).finish()
    assert code == 0, out
    [replay] = [line for line in out.splitlines() if line.startswith("batch 1:")]
    assert "replayed: already committed" in replay, out
    lake = Lake(str(lake_dir.resolve()))
    check_exactly_once(spark, lake, files)
    check_logs(spark, lake, files)
