"""Quality on a lake built from generated data: `gridlake quality` passes on it, fails naming
the expectation after a bad gold row is written behind gridlake's back, and the rollup gate
keeps fail-level rows out of gold (and leaves drop-level rows out)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tests.batch.conftest import table


@pytest.fixture(scope="module")
def clean_lake(spark, small_fleet, tmp_path_factory):
    """The small fleet streamed and rolled up: (lake, rollup result)."""
    from batch.rollups import rollup_changed
    from batch.sites import load_sites
    from gridlake.lake import open_lake
    from streaming.query import StreamOptions, run_stream
    from streaming.sources import FileSource

    lake = open_lake(str(tmp_path_factory.mktemp("quality") / "lake"), create=True, spark=spark)
    load_sites(spark, lake, small_fleet / "sites.csv")
    run_stream(spark, lake, FileSource(str(small_fleet / "stream")),
               StreamOptions(available_now=True), report=lambda _line: None)
    return lake, rollup_changed(spark, lake)


def _copy(lake, target: Path):
    from gridlake.lake import Lake

    shutil.copytree(lake.root, target)
    return Lake(str(target))


def test_quality_passes_on_a_generated_lake_and_stores_every_result(spark, clean_lake, cli):
    from shared_schemas.expectations import all_expectations

    lake, rollups = clean_lake
    # The rollup gate judged the rows it published and found nothing wrong.
    assert rollups.quality and all(not g.failed for g in rollups.quality.values())

    status, out, err = cli("quality", "--lake", lake.root)
    assert status == 0, err
    expected = {e.name for e in all_expectations()}
    results = table(spark, lake, "_gridlake/quality_results")
    rows = results.collect()
    assert {r["expectation"] for r in rows} == expected and len(rows) == len(expected)
    assert all(r["success"] for r in rows), [r for r in rows if not r["success"]]
    assert {r["table"] for r in rows} == {e.table for e in all_expectations()}
    assert all(r["table_version"] is not None for r in rows)
    assert f"{len(expected)}/{len(expected)} expectations passed" in out
    docs = Path(lake.root) / "_gridlake" / "data_docs" / "index.html"
    assert docs.is_file() and str(docs) in out
    assert "gold.daily_device_rollups" in docs.read_text(encoding="utf-8")


def test_quality_fails_naming_the_expectation_after_a_bad_gold_row(spark, clean_lake, cli,
                                                                    tmp_path):
    lake = _copy(clean_lake[0], tmp_path / "lake")
    gold = table(spark, lake, "gold/daily_device_rollups")
    day = gold.first()["day"]
    bad = (gold.limit(1).withColumn("device_id", F.lit("D-bad"))
           .withColumn("samples", F.lit(0).cast("long"))
           .withColumn("max_soc_pct", F.lit(140.5)))
    # Behind gridlake's back: a plain Delta append, no gate.
    bad.write.format("delta").mode("append").save(lake.path("gold/daily_device_rollups"))

    status, out, err = cli("quality", "--lake", lake.root, "--table", "daily_device_rollups",
                           "--day", day.isoformat())
    assert status == 1
    assert "gold.daily_device_rollups.samples.positive" in err
    assert "gold.daily_device_rollups.max_soc_pct.range" in err and "140.5" in err
    assert "FAILED" in out
    failed = (table(spark, lake, "_gridlake/quality_results").where(~F.col("success"))
              .select("expectation", "day", "unexpected_examples").collect())
    assert {r["expectation"] for r in failed} == {
        "gold.daily_device_rollups.samples.positive",
        "gold.daily_device_rollups.max_soc_pct.range"}
    assert {r["day"] for r in failed} == {day}

    # Hostile values are data: refused by name, nothing read or run.
    status, _, err = cli("quality", "--lake", lake.root, "--table", "gold' OR 1=1 --")
    assert status == 1 and "has no expectation suite" in err
    with pytest.raises(SystemExit):
        cli("quality", "--lake", lake.root, "--day", "2026-11-01' OR 1=1")


def _silver_row_behind_the_back(spark, lake, device_id: str, ts: dt.datetime, **values):
    silver = table(spark, lake, "silver/readings")
    row = (silver.limit(1).withColumn("device_id", F.lit(device_id))
           .withColumn("ts", F.lit(ts)).withColumn("event_date", F.lit(ts.date())))
    for column, value in values.items():
        row = row.withColumn(column, F.lit(value).cast(silver.schema[column].dataType))
    row.write.format("delta").mode("append").save(lake.path("silver/readings"))


def test_rollup_gate_withholds_a_failing_day_and_publishes_the_others(spark, clean_lake,
                                                                      tmp_path, monkeypatch):
    from batch.rollups import RollupQualityError, recompute
    from shared_schemas import expectations

    lake = _copy(clean_lake[0], tmp_path / "lake")
    gold_before = table(spark, lake, "gold/daily_device_rollups")
    day = gold_before.agg(F.max("day")).first()[0]
    next_day = day + dt.timedelta(days=1)
    before = sorted(tuple(r) for r in gold_before.where(F.col("day") == day)
                    .select("device_id", "samples").collect())
    noon = dt.datetime.combine(day, dt.time(12, 7))
    _silver_row_behind_the_back(spark, lake, "D-hot", noon, soc_pct=150.0)
    _silver_row_behind_the_back(spark, lake, "D-new", noon + dt.timedelta(days=1), soc_pct=50.0)

    with pytest.raises(RollupQualityError) as failure:
        recompute(spark, lake, [day, next_day])
    message = str(failure.value)
    assert "gold.daily_device_rollups.max_soc_pct.range" in message and "D-hot" in message
    assert f"gold/daily_device_rollups {day}" in message
    gold = table(spark, lake, "gold/daily_device_rollups")
    # The failing day was not published; the other one was.
    assert sorted(tuple(r) for r in gold.where(F.col("day") == day)
                  .select("device_id", "samples").collect()) == before
    assert [r["device_id"] for r in gold.where(F.col("day") == next_day).collect()] == ["D-new"]

    # At `drop`, the offending row is left out and the day is published without it.
    monkeypatch.setitem(expectations.SEVERITY_OVERRIDES,
                        "gold.daily_device_rollups.*_soc_pct.range", "drop")
    result = recompute(spark, lake, [day])
    assert sorted(o.name for o in result.quality["gold/daily_device_rollups"].failed) == [
        "gold.daily_device_rollups.max_soc_pct.range",
        "gold.daily_device_rollups.min_soc_pct.range"]
    published = table(spark, lake, "gold/daily_device_rollups").where(F.col("day") == day)
    assert sorted(r["device_id"] for r in published.collect()) == sorted(d for d, _ in before)


def test_a_site_missing_from_the_registry_is_named_by_the_rollup_gate(spark, clean_lake,
                                                                      tmp_path, caplog):
    """Site rollups take each site's timezone from reference/sites: a device of a site missing
    there is in no site rollup. The device gate says so (warn: the day is still published)."""
    from batch.rollups import recompute

    lake = _copy(clean_lake[0], tmp_path / "lake")
    day = table(spark, lake, "gold/daily_device_rollups").agg(F.max("day")).first()[0]
    noon = dt.datetime.combine(day, dt.time(12, 7))
    for minute in (0, 5):  # two readings of one device of an unregistered site: one device-day
        _silver_row_behind_the_back(spark, lake, "D-orphan", noon + dt.timedelta(minutes=minute),
                                    site_id="S-nowhere")

    with caplog.at_level("WARNING", logger="gridlake.quality"):
        result = recompute(spark, lake, [day])
    [missing] = result.quality["gold/daily_device_rollups"].failed
    assert (missing.name, missing.severity, missing.unexpected_count, missing.days) == (
        "gold.daily_device_rollups.site_id.registered", "warn", 1, [day])
    assert [(x["device_id"], x["site_id"]) for x in missing.examples] == [("D-orphan",
                                                                           "S-nowhere")]
    assert "site_id.registered" in caplog.text and "S-nowhere" in caplog.text
    gold = table(spark, lake, "gold/daily_device_rollups").where(F.col("day") == day)
    assert gold.where(F.col("device_id") == "D-orphan").count() == 1
    sites = table(spark, lake, "gold/daily_site_rollups")
    assert sites.where(F.col("site_id") == "S-nowhere").count() == 0
    stored = table(spark, lake, "_gridlake/quality_results").where(~F.col("success"))
    assert [r["expectation"] for r in stored.collect()] == [missing.name]
