"""The silver MERGE reads only the event dates of its batch (the literal list in its
condition), and silver's change data feed records what it changed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from gridlake.ingest import WriteContext, write_batch
from gridlake.lake import open_lake
from shared_schemas.tables import silver_readings
from streaming.sources import file_lines
from tests.batch import expected as X

DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")


def _raw(spark, name: str, events: list[dict]):
    content = "".join(X.dumps(e).decode() + "\n" for e in events)
    return spark.createDataFrame([(f"/in/{name}", content)], "path string, content string"
                                 ).transform(file_lines())


def _reading(day: str, hour: int, seq: int, power: float) -> dict:
    return X.event("D1", "S1", "battery", f"{day}T{hour:02d}:00:00Z", seq, power)


def test_a_batch_of_one_day_merges_into_that_day_alone(spark, tmp_path):
    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    path = lake.path(silver_readings())
    write_batch(spark, lake, _raw(spark, "first.jsonl", [
        _reading(day, hour, 1, 100.0) for day in DAYS for hour in (1, 2)]),
        WriteContext.now("merge-test", 0, "backfill", "first.jsonl"))
    stored = spark.read.format("delta").load(path).select("event_date").distinct().collect()
    assert {r[0] for r in stored} == {dt.date.fromisoformat(d) for d in DAYS}

    # A correction of 01:00 and a new reading at 03:00, both on the second day.
    write_batch(spark, lake, _raw(spark, "second.jsonl", [
        _reading(DAYS[1], 1, 2, 150.0), _reading(DAYS[1], 3, 1, 100.0)]),
        WriteContext.now("merge-test", 1, "backfill", "second.jsonl"))
    [merge] = DeltaTable.forPath(spark, path).history(1).collect()
    assert merge["operation"] == "MERGE"
    predicate = merge["operationParameters"]["predicate"]
    assert DAYS[1] in predicate and DAYS[0] not in predicate and DAYS[2] not in predicate, (
        predicate)
    metrics = merge["operationMetrics"]
    assert (int(metrics["numTargetRowsUpdated"]), int(metrics["numTargetRowsInserted"])) == (1, 1)
    # Every file the commit added, removed or marked is in the second day's partition.
    commit = Path(path, "_delta_log", f"{merge['version']:020d}.json").read_text()
    actions = [json.loads(line) for line in commit.splitlines()]
    touched = [a[k]["partitionValues"]["event_date"] for a in actions for k in ("add", "remove")
               if k in a]
    assert touched and set(touched) == {DAYS[1]}, touched

    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", merge["version"]).load(path)
               .select("_change_type", F.hour("ts").alias("hour"), "seq").collect())
    assert sorted(tuple(r) for r in changes) == [
        ("insert", 3, 1), ("update_postimage", 1, 2), ("update_preimage", 1, 1)]
