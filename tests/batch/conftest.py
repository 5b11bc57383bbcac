"""Fixtures of the batch tests: a fresh lake, the CLI on the test session, table readers."""

from __future__ import annotations

import datetime as dt

import pytest


@pytest.fixture
def lake(spark, tmp_path):
    from gridlake.lake import open_lake

    return open_lake(str(tmp_path / "lake"), create=True, spark=spark)


def table(spark, lake, path: str, version: int | None = None):
    from batch.delta_io import read_at

    return read_at(spark, lake.path(path), version)


def rows_by(spark, lake, path: str, *key: str) -> dict[tuple, dict]:
    return {tuple(r[k] for k in key): r.asDict() for r in table(spark, lake, path).collect()}


def silver_winners(spark, lake) -> dict[tuple[str, dt.datetime], tuple[int, str]]:
    """(device_id, ts as naive UTC, like tests.oracle) → (seq, event id) of every silver row."""
    from pyspark.sql import functions as F

    rows = table(spark, lake, "silver/readings").select(
        "device_id", F.unix_micros("ts").alias("us"), "seq", "event_id").collect()
    epoch = dt.datetime(1970, 1, 1)
    return {(r["device_id"], epoch + dt.timedelta(microseconds=r["us"])): (r["seq"], r["event_id"])
            for r in rows}


def winners(truth: dict) -> dict[tuple[str, dt.datetime], tuple[int, str]]:
    """The same view of the oracle's truth."""
    return {key: (r["seq"], r["_id"]) for key, r in truth.items()}


def versions(spark, lake, path: str) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, lake.path(path)).history(1).first()["version"]
