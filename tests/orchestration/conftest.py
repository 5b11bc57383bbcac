"""Fixtures of the orchestration tests: a streamed lake to copy, resources on the test session."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import FLEET_ARGS

FLEET_DAYS = ("2026-11-01", "2026-11-02")


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    """A small two-day fleet (the shared fleet's settings, one more day): stream/, late/."""
    from gridlake.cli import main

    out = tmp_path_factory.mktemp("orchestration-fleet")
    args = list(FLEET_ARGS)
    args[args.index("--days") + 1] = str(len(FLEET_DAYS))
    assert main(["generate", "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="session")
def streamed_lake(spark, fleet, tmp_path_factory):
    """A lake holding the fleet's stream (late reports not loaded) and its site registry.

    Read-only: tests that write copy it with `lake_copy`.
    """
    from batch.sites import load_sites
    from gridlake.lake import open_lake
    from streaming.query import StreamOptions, run_stream
    from streaming.sources import FileSource

    lake = open_lake(str(tmp_path_factory.mktemp("streamed") / "lake"), create=True, spark=spark)
    load_sites(spark, lake, fleet / "sites.csv")
    run_stream(spark, lake, FileSource(str(fleet / "stream")), StreamOptions(available_now=True),
               report=lambda _line: None)
    return lake


def copy_lake(lake, target):
    from gridlake.lake import Lake

    shutil.copytree(lake.root, target)
    return Lake(str(target))


ROLLUP_RANGE_TAGS = {"dagster/asset_partition_range_start": FLEET_DAYS[0],
                     "dagster/asset_partition_range_end": FLEET_DAYS[-1]}


def rollup_assets(partitions_start: str = "2026-11-01") -> list:
    """The stream tables and the rollup multi-asset, as `materialize` wants them."""
    from orchestration.rollups.assets import daily_rollups_asset, rollup_partitions
    from orchestration.stream.assets import stream_table_specs

    return [*stream_table_specs(), daily_rollups_asset(rollup_partitions(partitions_start))]


def in_process_resources(lake, late_dir: str | None = None) -> dict:
    """Resources for in-process runs and sensor contexts: the suite's Spark session."""
    from orchestration.resources import LakeResource, SparkResource

    return {"spark": SparkResource(master="local[2]", testing=True),
            "lake": LakeResource(root=lake.root, late_dir=late_dir)}


@pytest.fixture(scope="session")
def dagster_gold(spark, streamed_lake, tmp_path_factory):
    """A copy of the streamed lake whose rollups of all the fleet's days were materialized
    in-process by Dagster in one run over the range: (lake, the run's result).

    This is the batch function's output (`batch.rollups.recompute`, as `gridlake rollup --from
    --to` calls it) driven by Dagster; the webserver's backfill must give the same gold.
    """
    from dagster import materialize

    lake = copy_lake(streamed_lake, tmp_path_factory.mktemp("dagster-gold") / "lake")
    result = materialize(rollup_assets(), resources=in_process_resources(lake),
                         selection=["daily_device_rollups", "daily_site_rollups"],
                         tags=ROLLUP_RANGE_TAGS)
    assert result.success
    return lake, result


@pytest.fixture(scope="session")
def fleet_truth(fleet):
    """The plain-Python oracle's reading of the fleet's stream files: (records, silver truth,
    invalid records)."""
    from tests import oracle

    records = list(oracle.read_records(sorted((fleet / "stream").iterdir())))
    truth, invalid = oracle.silver_truth(records)
    return records, truth, invalid


def gold_by_key(spark, lake, path: str, *key: str) -> dict[tuple, dict]:
    return {tuple(r[k] for k in key): r.asDict()
            for r in spark.read.format("delta").load(lake.path(path)).collect()}


def gold_rows(spark, lake, path: str, columns) -> list[tuple]:
    """A gold table's rows (the given columns), sorted: comparable across lakes."""
    table = spark.read.format("delta").load(lake.path(path))
    return sorted(tuple(r) for r in table.select(*columns).collect())


@pytest.fixture
def lake_copy(streamed_lake, tmp_path):
    """A private copy of the streamed lake (Delta tables are plain folders)."""

    def copy(name: str = "lake"):
        return copy_lake(streamed_lake, tmp_path / name)

    return copy


@pytest.fixture
def resources(spark):
    """`in_process_resources`, after the suite's Spark session has started."""
    return in_process_resources

