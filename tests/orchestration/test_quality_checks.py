"""The Great Expectations suites as Dagster asset checks: a bad gold row written behind
gridlake's back shows as a failed, blocking ERROR check naming the expectation."""

from __future__ import annotations

from dagster import AssetCheckSeverity, AssetSelection, materialize
from pyspark.sql import functions as F

from tests.orchestration.conftest import copy_lake, rollup_assets


def test_great_expectations_check_fails_on_a_bad_gold_row(spark, dagster_gold, tmp_path,
                                                           resources):
    from orchestration.rollups.checks import gx_checks

    lake = copy_lake(dagster_gold[0], tmp_path / "lake")
    path = lake.path("gold/daily_device_rollups")
    gold = spark.read.format("delta").load(path)
    (gold.limit(1).withColumn("device_id", F.lit("D-bad")).withColumn("samples", F.lit(0).cast("long"))
     .write.format("delta").mode("append").save(path))

    device_check = next(c for c in gx_checks()
                        if {k.asset_key.to_user_string() for k in c.check_keys}
                        == {"daily_device_rollups"})
    result = materialize([*rollup_assets(), device_check], resources=resources(lake),
                         selection=AssetSelection.checks(device_check), raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed, evaluation.severity) == (
        "great_expectations", False, AssetCheckSeverity.ERROR)
    assert "gold.daily_device_rollups.samples.positive" in evaluation.description
    failures = evaluation.metadata["failures"].value
    assert [f["expectation"] for f in failures] == ["gold.daily_device_rollups.samples.positive"]
    assert failures[0]["examples"] == "[0]"
    results = spark.read.format("delta").load(lake.path("_gridlake/quality_results"))
    assert results.where(~F.col("success")).select("expectation").collect()[0][0] == (
        "gold.daily_device_rollups.samples.positive")
