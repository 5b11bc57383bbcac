"""A Delta write that loses a real write race is retried, logged, and applied exactly once."""

from __future__ import annotations

import logging
import threading
import time

from pyspark.sql import functions as F
from pyspark.sql import types as T

from gridlake.retry import guarded_write, is_write_conflict


def test_a_merge_that_loses_a_write_race_is_retried_and_logged(spark, tmp_path, caplog):
    from delta.tables import DeltaTable

    path, gate, done = str(tmp_path / "table"), tmp_path / "merge-is-reading", tmp_path / "won"
    spark.createDataFrame([(k, 0) for k in range(10)], "k int, v int").write.format(
        "delta").save(path)

    @F.udf(T.IntegerType())
    def slow_once(v):  # holds the first attempt open, after its read, until the rival commits
        if not gate.exists():
            gate.touch()
            deadline = time.monotonic() + 60
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return v

    attempts, errors = [], []

    def merge():
        attempts.append(time.monotonic())
        updates = spark.createDataFrame([(3, 30), (42, 420)], "k int, v int").select(
            "k", slow_once("v").alias("v"))
        (DeltaTable.forPath(spark, path).alias("t")
         .merge(updates.alias("s"), "t.k = s.k")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())

    def run():
        try:
            guarded_write(merge, "test MERGE")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    caplog.set_level(logging.WARNING, logger="gridlake.retry")
    writer = threading.Thread(target=run)
    writer.start()
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # Another writer (not this process's lock: as another process would) rewrites the file
    # the MERGE has read, and commits first.
    spark.createDataFrame([(k, 1) for k in range(10)], "k int, v int").write.format(
        "delta").mode("overwrite").save(path)
    done.touch()
    writer.join(120)

    assert not writer.is_alive() and not errors, errors
    assert len(attempts) == 2
    [record] = [r for r in caplog.records if r.name == "gridlake.retry"]
    assert "test MERGE lost a write race (attempt 1/8" in record.getMessage()
    assert is_write_conflict(Exception(record.getMessage()))
    rows = {r["k"]: r["v"] for r in spark.read.format("delta").load(path).collect()}
    assert rows == {**{k: 1 for k in range(10)}, 3: 30, 42: 420}
