"""batch.delta_io: which commit a run or a transaction wrote, the replaceWhere predicate."""

from __future__ import annotations

import datetime as dt

import pytest

from batch.delta_io import dates_predicate, written_by
from gridlake.lake import transaction_commit


@pytest.mark.parametrize(("actions", "expected"), [
    ([{"commitInfo": {"operation": "WRITE", "userMetadata": "rollup-1"}}], True),
    ([{"commitInfo": {"operation": "MERGE"}}, {"txn": {"appId": "rollup-1", "version": 0}},
      {"add": {"path": "x"}}], True),
    ([{"commitInfo": {"operation": "WRITE", "userMetadata": "rollup-2"}},
      {"txn": {"appId": "stream-7", "version": 3}}], False),
    ([{"commitInfo": {"operation": "WRITE"}}, {"add": {"path": "rollup-1"}}], False),
    ([], False),
])
def test_a_commit_is_the_runs_by_its_user_metadata_or_transaction_id(actions, expected):
    assert written_by(actions, "rollup-1") is expected


def test_dates_predicate_renders_dates_only():
    days = [dt.date(2026, 11, 2), dt.date(2026, 11, 1), dt.date(2026, 11, 2)]
    assert dates_predicate("day", days) == "`day` IN (DATE'2026-11-01', DATE'2026-11-02')"
    for bad in ([], ["2026-11-01' OR 1=1 --"], [dt.datetime(2026, 11, 1)]):
        with pytest.raises(ValueError):
            dates_predicate("day", bad)
    with pytest.raises(ValueError):
        dates_predicate("day` OR 1=1 --", days)


def test_transaction_commit_finds_the_commit_of_an_idempotent_write(spark, tmp_path):
    from delta.tables import DeltaTable

    path = str(tmp_path / "t")
    rows = spark.createDataFrame([(1, "a"), (2, "b")], "k int, v string")
    for app_id, txn in (("run-a", 0), ("run-b", 0), ("run-a", 1)):
        (rows.write.format("delta").mode("append").option("txnAppId", app_id)
         .option("txnVersion", txn).save(path))
    target = DeltaTable.forPath(spark, path)
    spark.conf.set("spark.databricks.delta.write.txnAppId", "run-b")
    spark.conf.set("spark.databricks.delta.write.txnVersion", "1")
    try:
        (target.alias("t").merge(spark.createDataFrame([(1, "z"), (3, "c")], "k int, v string")
                                 .alias("s"), "t.k = s.k AND t.v = 'a'")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")

    assert transaction_commit(spark, path, "run-a", 0)[0] == 0
    assert transaction_commit(spark, path, "run-a", 1)[0] == 2
    version, info = transaction_commit(spark, path, "run-b", 1)
    assert (version, info["operation"], info["readVersion"]) == (3, "MERGE", 2)
    assert (info["operationMetrics"]["numTargetRowsUpdated"],
            info["operationMetrics"]["numTargetRowsInserted"]) == ("3", "1")  # (1, 'a') x 3
    assert transaction_commit(spark, path, "run-b", 2) is None
    assert transaction_commit(spark, path, "run-c", 0) is None
