"""Every asset and check runs in-process against a real lake and drives the batch code."""

from __future__ import annotations

import csv
import datetime as dt

from dagster import (
    AssetKey,
    AssetSelection,
    build_schedule_context,
    build_sensor_context,
    materialize,
)
from pyspark.sql import functions as F

from tests.batch import expected as X
from tests.orchestration.conftest import FLEET_DAYS, gold_by_key, gold_rows, rollup_assets


def test_rollups_materialize_a_partition_range_in_one_run_equal_to_the_oracle(
        spark, dagster_gold, fleet, fleet_truth):
    lake, result = dagster_gold
    _, truth, _ = fleet_truth
    zones = {row["site_id"]: row["timezone"]
             for row in csv.DictReader((fleet / "sites.csv").read_text().splitlines())}
    X.same(gold_by_key(spark, lake, "gold/daily_device_rollups", "device_id", "day"),
           X.device_rollups(truth), "daily device rollups")
    X.same(gold_by_key(spark, lake, "gold/daily_site_rollups", "site_id", "local_day"),
           X.site_rollups(truth, zones), "daily site rollups")
    device = gold_rows(spark, lake, "gold/daily_device_rollups", ("day", "run_id"))
    assert {day.isoformat() for day, _ in device} == set(FLEET_DAYS)
    # One run computed every day: each gold row carries that Dagster run's id.
    assert {run_id for _, run_id in device} == {f"dagster-{result.run_id}"}

    materialized = result.get_asset_materialization_events()
    assert sorted((e.asset_key.to_user_string(), e.partition) for e in materialized) == sorted(
        (asset, day) for asset in ("daily_device_rollups", "daily_site_rollups")
        for day in FLEET_DAYS)
    device_event = next(e for e in materialized if e.asset_key == AssetKey("daily_device_rollups"))
    metadata = device_event.materialization.metadata
    assert (metadata["days"].value, metadata["rows_in_days"].value) == (
        f"{FLEET_DAYS[0]}..{FLEET_DAYS[-1]}", len(device))
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 9 and all(c.passed for c in checks), checks
    assert {c.check_name for c in checks if c.asset_key == AssetKey("daily_device_rollups")} >= {
        "quality_suite"}


def test_rollup_checks_fail_on_bad_rows_and_name_the_day(spark):
    from orchestration.rollups.checks import device_rollup_checks

    row = dict(device_id="D1", day=dt.date(2026, 11, 3), site_id="S1", device_type="battery",
               samples=4, energy_import_wh=1.0, energy_export_wh=0.0, min_power_w=-5.0,
               max_power_w=10.0, avg_power_w=2.5, min_soc_pct=10.0, max_soc_pct=90.0)
    rows = spark.createDataFrame(
        [row, {**row, "device_id": "D2", "samples": 0, "avg_power_w": 11.0},
         {**row, "device_id": "D3", "max_soc_pct": 100.5}, {**row, "day": dt.date(2026, 11, 4)},
         {**row, "day": dt.date(2026, 11, 4), "min_soc_pct": None, "max_soc_pct": None}],
        "device_id string, day date, site_id string, device_type string, samples long, "
        "energy_import_wh double, energy_export_wh double, min_power_w double, "
        "max_power_w double, avg_power_w double, min_soc_pct double, max_soc_pct double")
    outcomes = {c.name: c.evaluate(rows) for c in device_rollup_checks()}
    assert {name: o.metadata for name, o in outcomes.items()} == {
        "samples_positive": {"failing_rows": 1, "failing_days": "2026-11-03"},
        "power_min_avg_max_ordered": {"failing_rows": 1, "failing_days": "2026-11-03"},
        "soc_within_0_100": {"failing_rows": 1, "failing_days": "2026-11-03"},
        "keys_unique": {"duplicate_keys": 1, "failing_days": "2026-11-04"}}
    assert not any(o.passed for o in outcomes.values())
    good = rows.where((F.col("device_id") == "D1") & (F.col("day") == dt.date(2026, 11, 3)))
    assert all(c.evaluate(good).passed for c in device_rollup_checks())


def test_a_day_the_quality_gate_withholds_fails_the_run_with_a_sentence_not_a_traceback(
        spark, lake_copy, resources):
    lake = lake_copy()
    day = dt.date.fromisoformat(FLEET_DAYS[0])
    silver = spark.read.format("delta").load(lake.path("silver/readings"))
    # A reading no rule let through (state of charge 150%), written behind the stream's back:
    # its day's device rollup breaks a fail-level expectation and is not published.
    noon = dt.datetime.combine(day, dt.time(12, 7))
    (silver.limit(1).withColumn("device_id", F.lit("D-hot")).withColumn("ts", F.lit(noon))
     .withColumn("event_date", F.lit(day)).withColumn("soc_pct", F.lit(150.0))
     .write.format("delta").mode("append").save(lake.path("silver/readings")))
    result = materialize(rollup_assets(), resources=resources(lake), partition_key=day.isoformat(),
                         selection=["daily_device_rollups", "daily_site_rollups"],
                         raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("daily_rollups").user_failure_data
    assert "did not publish gold/daily_device_rollups" in failure.description
    assert "max_soc_pct.range" in failure.description and "D-hot" in failure.description
    assert failure.metadata["daily_device_rollups: not published"].value == day.isoformat()


def test_stream_tables_are_observed_with_version_rows_and_last_batch(
        spark, streamed_lake, resources):
    from orchestration.stream.sensors import stream_progress_sensor

    sensor = stream_progress_sensor(freshness_minutes=60)
    with build_sensor_context(resources=resources(streamed_lake)) as context:
        first = sensor(context)
    observations = {e.asset_key.to_user_string(): e for e in first.asset_events
                    if type(e).__name__ == "AssetObservation"}
    assert set(observations) == {"bronze_telemetry", "quarantine_telemetry", "silver_readings"}
    for name, path in (("bronze_telemetry", "bronze/telemetry"),
                       ("quarantine_telemetry", "quarantine/telemetry"),
                       ("silver_readings", "silver/readings")):
        meta = observations[name].metadata
        assert meta["dagster/row_count"].value == spark.read.format("delta").load(
            streamed_lake.path(path)).count()
        assert observations[name].tags["dagster/data_version"] == str(meta["delta_version"].value)
    newest = (spark.read.format("delta").load(streamed_lake.path("_gridlake/batches"))
              .agg(F.max("finished_at")).first()[0].replace(tzinfo=dt.UTC))
    assert observations["silver_readings"].metadata["last_stream_batch_time"].value == \
        newest.timestamp()
    fresh = [(e.check_name, e.passed) for e in first.asset_events
             if type(e).__name__ == "AssetCheckEvaluation"]
    assert fresh == [("silver_freshness", True)]

    with build_sensor_context(resources=resources(streamed_lake), cursor=first.cursor) as context:
        again = sensor(context)
    assert again.asset_events == [] and again.cursor == first.cursor
    assert again.skip_reason.skip_message == "no table changed since the last tick"


def test_stream_checks_pass_on_a_streamed_lake_with_the_oracles_counts(
        streamed_lake, resources, fleet_truth):
    from orchestration.stream.assets import stream_table_specs
    from orchestration.stream.checks import stream_checks

    run = materialize([*stream_table_specs(), *stream_checks(freshness_minutes=60)],
                      resources=resources(streamed_lake),
                      selection=AssetSelection.all_asset_checks())
    results = {e.check_name: e for e in run.get_asset_check_evaluations()}
    assert results["silver_freshness"].passed and results["reconciliation"].passed
    # The expected counts come from the plain-Python oracle reading the stream files.
    records, truth, invalid = fleet_truth
    counts = {k: v.value for k, v in results["reconciliation"].metadata.items()
              if k.endswith("_records")}
    assert counts == {"bronze_records": len(records), "in_silver_records": len(truth),
                      "duplicate_or_stale_records": len(records) - len(invalid) - len(truth),
                      "quarantined_records": len(invalid), "unaccounted_records": 0}


def test_reconciliation_names_bronze_records_that_were_lost(spark, lake_copy):
    from delta.tables import DeltaTable

    from batch.health import reconcile

    lake = lake_copy()
    quarantine = DeltaTable.forPath(spark, lake.path("quarantine/telemetry"))
    lost = sorted(r[0] for r in quarantine.toDF().select("record_id").limit(3).collect())
    quarantine.delete(F.col("record_id").isin(*lost))
    result = reconcile(spark, lake)
    assert not result.passed
    assert (result.counts["unaccounted"], result.unaccounted_sample) == (3, lost)


def test_freshness_fails_when_the_last_stream_batch_is_too_old():
    from batch.lake_state import LastBatch
    from orchestration.stream.checks import freshness_outcome

    last = LastBatch("stream-1", 7, "stream", dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
                     12, 4)
    ok, _ = freshness_outcome(last, dt.datetime(2026, 11, 20, 10, 14, tzinfo=dt.UTC), 15)
    late, meta = freshness_outcome(last, dt.datetime(2026, 11, 20, 10, 16, tzinfo=dt.UTC), 15)
    assert (ok, late, meta["lag_minutes"]) == (True, False, 16.0)
    assert freshness_outcome(None, dt.datetime.now(dt.UTC), 15)[0] is False


def test_schedule_requests_yesterdays_partition_after_midnight():
    from orchestration.definitions import build_defs

    repo = build_defs("test").get_repository_def()
    schedule = repo.get_schedule_def("daily_rollups_after_midnight")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 0 * * *", "UTC")
    at = dt.datetime(2026, 11, 21, 0, 30, tzinfo=dt.UTC)
    with build_schedule_context(scheduled_execution_time=at, repository_def=repo) as context:
        requests = list(schedule.evaluate_tick(context).run_requests)
    assert [(r.partition_key, r.run_key) for r in requests] == [("2026-11-20", "2026-11-20")]
    at_start = dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.UTC)  # yesterday precedes the start
    with build_schedule_context(scheduled_execution_time=at_start, repository_def=repo) as context:
        assert list(schedule.evaluate_tick(context).run_requests) == []
