"""The Great Expectations suite of a table as a Dagster asset check.

Each check validates the table's latest version with its whole suite (the same call as
`gridlake quality --table T`), stores every result in `_gridlake/quality_results`, rebuilds the
Data Docs site, and fails with ERROR severity when a fail-level expectation failed (WARN when
only warn/drop-level ones did), so with `blocking=True` a failure stops downstream assets of
the run.

Example:
    >>> great_expectations_check("daily_device_rollups", "gold/daily_device_rollups")  # doctest: +SKIP
"""

from __future__ import annotations

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from orchestration.resources import LakeResource, SparkResource

GX_CHECK = "great_expectations"
MAX_LISTED = 20


def suite_check_result(report) -> AssetCheckResult:
    """A `gridlake.quality.QualityReport` of one table as a check result."""
    from gridlake.quality import failure_sentence

    check = report.checks[0]
    failed = report.failed
    metadata: dict = {
        "table_version": check.version if check.version is not None else "none",
        "expectations": len(check.outcomes),
        "failed": len(failed),
        "failed_fail_level": len(report.failed_fail),
        "quality_run_id": report.run_id,
    }
    if failed:
        metadata["failures"] = MetadataValue.json(
            [{"expectation": o.name, "severity": o.severity, "observed": o.observed,
              "examples": o.examples_text()} for o in failed[:MAX_LISTED]])
    if report.docs_index:
        metadata["data_docs"] = MetadataValue.path(report.docs_index)
    return AssetCheckResult(
        passed=not failed, metadata=metadata,
        severity=AssetCheckSeverity.ERROR if report.failed_fail else AssetCheckSeverity.WARN,
        description=(failure_sentence(report.failed_fail) if report.failed_fail else
                     f"{len(failed)} warn/drop-level expectation(s) failed" if failed else
                     f"all {len(check.outcomes)} expectations passed"))


def great_expectations_check(asset: str, table: str) -> AssetChecksDefinition:
    """The GE suite of `table` (its path in the lake) as a blocking check of `asset`."""

    @asset_check(asset=asset, name=GX_CHECK, blocking=True,
                 description=f"Great Expectations suite of {table}, derived from shared_schemas "
                             "(types, not-null, ranges, value sets, keys, invariants); results "
                             "in _gridlake/quality_results, Data Docs in _gridlake/data_docs/.")
    def _check(spark: SparkResource, lake: LakeResource) -> AssetCheckResult:
        from gridlake.lake import ensure_tables
        from gridlake.quality import check_lake

        session = spark.session()
        the_lake = lake.open(session)
        ensure_tables(session, the_lake)
        return suite_check_result(check_lake(session, the_lake, tables=[table]))

    return _check
