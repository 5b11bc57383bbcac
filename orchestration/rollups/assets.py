"""daily_device_rollups and daily_site_rollups: one partitioned asset pair, one Spark job per run.

Both tables are written by one call of the batch half, `batch.rollups.recompute(days)` (the
same function `gridlake rollup` calls), so they are one multi-asset that cannot be split.
Partitions are UTC days. With a single-run backfill policy a backfill of 90 days is one run
that recomputes the 90 days in one Spark job, not 90 runs. Partition `D` of
`daily_site_rollups` means "the site-local days overlapping UTC day D were recomputed" (the
batch half recomputes every local day, in any site's zone, that overlaps a recomputed UTC day).

The rows the run wrote are checked in the same run (see `orchestration.rollups.checks`).
"""

import datetime as dt

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BackfillPolicy,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    TimeWindow,
    define_asset_job,
    multi_asset,
)

from orchestration.resources import LakeResource, SparkResource
from orchestration.rollups.checks import (
    DEVICE_ROLLUPS,
    SITE_ROLLUPS,
    TableCheck,
    checks_by_table,
    gold_tables,
)
from orchestration.settings import ROLLUPS_GROUP
from orchestration.stream.assets import SILVER

ROLLUPS_ASSET = "daily_rollups"
ROLLUPS_JOB = "daily_rollups_job"
# The rollup log's `mode` for runs Dagster started (the CLI writes `range` or `changed`).
DAGSTER_MODE = "dagster"


def rollup_partitions(start_date: str) -> DailyPartitionsDefinition:
    """UTC days from `start_date` up to yesterday (today's rollup is made after midnight)."""
    return DailyPartitionsDefinition(start_date=start_date, timezone="UTC")


def partition_days(window: TimeWindow) -> list[dt.date]:
    """The UTC dates of a partition time window (its end is exclusive)."""
    first, end = window.start.date(), window.end.date()
    return [first + dt.timedelta(days=i) for i in range((end - first).days)]


def _span(days: list[dt.date]) -> str:
    if not days:
        return "-"
    return f"{days[0]}" if days[0] == days[-1] else f"{days[0]}..{days[-1]}"


def column_in(column: str, days: list[dt.date]):
    from pyspark.sql import functions as F

    return F.col(column).isin(*days) if days else F.lit(False)


def quality_failure(error) -> Failure:
    """A rollup run's fail-level quality error (`RollupQualityError`) as the run's Failure: its
    sentence, and per gold table the days left unpublished, for the UI instead of a traceback.
    The other days of the range were written."""
    result = error.result
    assets = {spec.path: name for name, spec in gold_tables().items()}
    metadata = {f"{assets[table]}: not published": ", ".join(map(str, gate.fail_days)) or "-"
                for table, gate in result.quality.items()}
    metadata.update(gridlake_run_id=result.run_id, silver_version=str(result.silver_version))
    return Failure(description=str(error), metadata=metadata)


def _check_results(asset: str, checks: tuple[TableCheck, ...], rows) -> list[AssetCheckResult]:
    results = []
    for table_check in checks:
        outcome = table_check.evaluate(rows)
        severity = (AssetCheckSeverity.WARN if outcome.severity == "warn"
                    else AssetCheckSeverity.ERROR)
        results.append(AssetCheckResult(asset_key=asset, check_name=table_check.name,
                                        passed=outcome.passed, metadata=outcome.metadata,
                                        severity=severity))
    return results


def daily_rollups_asset(partitions_def: DailyPartitionsDefinition) -> AssetsDefinition:
    """The multi-asset writing both gold rollup tables for the run's partition range."""
    checks = checks_by_table()
    tables = gold_tables()
    descriptions = {
        DEVICE_ROLLUPS: "gold/daily_device_rollups: one row per device and UTC day.",
        SITE_ROLLUPS: "gold/daily_site_rollups: one row per site and local calendar day; "
                      "partition D recomputes the local days overlapping UTC day D.",
    }
    specs = [AssetSpec(name, deps=[SILVER], group_name=ROLLUPS_GROUP, kinds={"spark", "delta"},
                       description=descriptions[name],
                       metadata={"table_path": tables[name].path})
             for name in (DEVICE_ROLLUPS, SITE_ROLLUPS)]
    check_specs = [AssetCheckSpec(c.name, asset=name, description=c.description, blocking=True)
                   for name, table_checks in checks.items() for c in table_checks]

    @multi_asset(name=ROLLUPS_ASSET, specs=specs, check_specs=check_specs,
                 partitions_def=partitions_def, backfill_policy=BackfillPolicy.single_run(),
                 can_subset=False)
    def daily_rollups(context: AssetExecutionContext, spark: SparkResource,
                      lake: LakeResource):
        from batch.delta_io import read_at
        from batch.rollups import RollupQualityError, recompute
        from gridlake.lake import ensure_tables

        days = partition_days(context.partition_time_window)
        session = spark.session()
        the_lake = lake.open(session)
        ensure_tables(session, the_lake)
        try:
            result = recompute(session, the_lake, days, run_id=f"dagster-{context.run_id}",
                               mode=DAGSTER_MODE)
        except RollupQualityError as error:
            raise quality_failure(error) from error
        context.log.info(result.line())

        written_by_table = {
            DEVICE_ROLLUPS: (result.days, result.device_rollups_version, result.skipped_newer),
            SITE_ROLLUPS: (result.local_days, result.site_rollups_version,
                           result.skipped_newer_local_days)}
        for name, (written, version, left_alone) in written_by_table.items():
            spec = tables[name]
            rows = (read_at(session, the_lake.path(spec), version)
                    .where(column_in(spec.partition_by[0], written)).cache())
            try:
                metadata = {"days": _span(written), "day_count": len(written),
                            "rows_in_days": rows.count(),
                            "silver_version": result.silver_version,
                            "delta_version": version if version is not None else "unchanged",
                            "gridlake_run_id": result.run_id}
                if left_alone:
                    metadata["left_alone_newer"] = _span(left_alone)
                check_results = _check_results(name, checks[name], rows)
            finally:
                rows.unpersist()
            yield MaterializeResult(asset_key=name, metadata=metadata, check_results=check_results)

    return daily_rollups


def daily_rollups_job(partitions_def: DailyPartitionsDefinition):
    """The job the schedule and the change sensor launch: both rollup tables (and the checks
    inside their materialization; the whole-table GE suites run on their own)."""
    from orchestration.rollups.checks import gx_checks

    selection = (AssetSelection.assets(DEVICE_ROLLUPS, SITE_ROLLUPS)
                 - AssetSelection.checks(*gx_checks()))
    return define_asset_job(ROLLUPS_JOB, selection=selection,
                            partitions_def=partitions_def,
                            description="Recompute the daily device and site rollups of the "
                                        "run's partition range (one Spark job).")
