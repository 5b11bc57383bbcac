"""Compaction: four micro-batches leave several files per partition; `compact` leaves one,
changes no row, writes nothing to the change feed, and keeps to the partitions asked for."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from pyspark.sql import functions as F

from batch.compaction import compact, compacted_tables, files_per_partition
from gridlake.lake import open_lake
from streaming.query import StreamOptions, run_stream
from streaming.sources import FileSource
from tests.batch.conftest import table


def files_read(spark, lake, spec) -> dict[str, int]:
    """Data files per partition as a full read of the table sees them (each row's file)."""
    (column,) = spec.partition_by
    paths = (table(spark, lake, spec.path).select(F.col("_metadata.file_path").alias("p"))
             .distinct().collect())
    return dict(Counter(r["p"].split(f"{column}=")[1].split("/")[0] for r in paths))


def rows(spark, lake, spec) -> list:
    return sorted(tuple(str(v) for v in r) for r in table(spark, lake, spec.path).collect())


@pytest.fixture(scope="module")
def two_day_fleet(tmp_path_factory):
    from gridlake.cli import main

    out = tmp_path_factory.mktemp("two-day-fleet")
    assert main(["generate", "--out", str(out), "--devices", "4", "--days", "2",
                 "--interval-minutes", "60", "--stream-files", "4", "--late-devices", "0",
                 "--seed", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def streamed_in_batches(spark, two_day_fleet, tmp_path_factory):
    """One lake for the module: the partition test runs first and compacts only the later
    partitions, leaving the earlier ones crowded for the next test."""
    lake = open_lake(str(tmp_path_factory.mktemp("compaction") / "lake"), create=True,
                     spark=spark)
    source = FileSource(str(two_day_fleet / "stream"), max_files_per_trigger=1)
    lines = []
    run_stream(spark, lake, source, StreamOptions(available_now=True), report=lines.append)
    assert sum(line.startswith("batch ") for line in lines) == 4
    return lake


@pytest.mark.long
def test_the_dagster_job_compacts_only_the_partitions_of_the_last_days(spark,
                                                                       streamed_in_batches):
    from orchestration.maintenance.compaction import compact_lake_job
    from tests.orchestration.conftest import in_process_resources

    lake = streamed_in_batches
    specs = compacted_tables()
    before = {spec.path: files_read(spark, lake, spec) for spec in specs}
    dates = sorted({p for counts in before.values() for p in counts})
    crowded_early = [since for since in dates[1:] if any(
        n > 1 for counts in before.values() for p, n in counts.items() if p < since)]
    assert crowded_early, "no crowded partition before a later one: no test"
    since = crowded_early[-1]
    days = (dt.datetime.now(dt.UTC).date() - dt.date.fromisoformat(since)).days + 1

    result = compact_lake_job().execute_in_process(
        run_config={"ops": {"compact_recent_partitions": {"config": {"days": days}}}},
        resources=in_process_resources(lake))

    assert result.success
    for spec in specs:
        after = files_read(spark, lake, spec)
        assert {p: n for p, n in after.items() if p < since} == {
            p: n for p, n in before[spec.path].items() if p < since}, spec.path
        assert {p: n for p, n in after.items() if p >= since} == {
            p: 1 for p in before[spec.path] if p >= since}, spec.path
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["since"].value == since
    assert metadata["files_removed"].value == sum(
        n for counts in before.values() for p, n in counts.items() if p >= since and n > 1)
    with pytest.raises(TypeError):
        compact(spark, lake, since="2026-01-01' OR 1=1")


@pytest.mark.long
def test_compaction_leaves_one_file_per_partition_and_changes_no_data(spark, streamed_in_batches):
    from delta.tables import DeltaTable

    lake = streamed_in_batches
    specs = compacted_tables()
    before = {s.path: files_read(spark, lake, s) for s in specs}
    assert before == {s.path: files_per_partition(spark, lake, s) for s in specs}
    assert max(max(c.values()) for c in before.values()) > 1, "nothing to compact: no test"
    contents = {s.path: rows(spark, lake, s) for s in specs}
    last_before = {s.path: DeltaTable.forPath(spark, lake.path(s.path)).history(1).first()
                   for s in specs}

    results = {r.path: r for r in compact(spark, lake)}

    for spec in specs:
        counts, result = before[spec.path], results[spec.path]
        crowded = {p: n for p, n in counts.items() if n > 1}
        assert (result.files_removed, result.files_added, result.partitions) == (
            sum(crowded.values()), len(crowded), len(crowded)), spec.path
        assert set(files_read(spark, lake, spec).values()) == {1}, spec.path
        assert rows(spark, lake, spec) == contents[spec.path], spec.path
        last = DeltaTable.forPath(spark, lake.path(spec.path)).history(1).first()
        if crowded:  # one OPTIMIZE commit, which changes no data
            assert (last["operation"], last["version"]) == (
                "OPTIMIZE", last_before[spec.path]["version"] + 1), spec.path
            assert result.version == last["version"]
        else:  # nothing to do: no commit at all
            assert last["version"] == last_before[spec.path]["version"], spec.path
    silver = lake.path("silver/readings")
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", last_before["silver/readings"]["version"] + 1)
               .option("endingVersion", DeltaTable.forPath(spark, silver).history(1)
                       .first()["version"]).load(silver)
               if results["silver/readings"].files_removed else None)
    assert changes is None or changes.count() == 0

    again = compact(spark, lake)
    assert [r.files_removed for r in again] == [0] * len(specs)
    assert all(r.line().endswith("nothing to compact") for r in again)


def test_compact_command_refuses_bad_dates_with_one_sentence(tmp_path, capsys):
    from gridlake.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["compact", "--lake", str(tmp_path), "--since", "2026-01-01' OR 1=1"])
    assert exit_.value.code == 2
    assert "is not a date; expected YYYY-MM-DD" in capsys.readouterr().err
