"""Checks of the stream's tables: is the stream alive (silver freshness), is anything lost
(reconciliation of bronze against silver and quarantine).

Both run as asset checks from the UI or a job; `silver_freshness` is also reported by the
`stream_progress` sensor (cheap: one read of the batch log, no Spark), so the UI shows the
stream's health without launching a run. Reconciliation reads every bronze record with Spark,
so it runs in a run.
"""

import datetime as dt

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    Config,
    MetadataValue,
    asset_check,
)
from pydantic import Field

from orchestration.resources import LakeResource, SparkResource
from orchestration.stream.assets import BRONZE, QUARANTINE, SILVER

FRESHNESS = "silver_freshness"
RECONCILIATION = "reconciliation"
FRESHNESS_KEY = AssetCheckKey(AssetKey(SILVER), FRESHNESS)


def freshness_outcome(last_batch, now: dt.datetime, max_lag_minutes: int
                      ) -> tuple[bool, dict]:
    """Is the stream's last micro-batch (a `batch.lake_state.LastBatch`, or None) recent
    enough?"""
    metadata: dict = {"max_lag_minutes": max_lag_minutes}
    if last_batch is None:
        return False, {**metadata, "last_stream_batch": "none: the stream has not written yet"}
    lag = (now - last_batch.finished_at).total_seconds() / 60.0
    return lag <= max_lag_minutes, {
        **metadata,
        "last_stream_batch_time": MetadataValue.timestamp(last_batch.finished_at),
        "lag_minutes": round(lag, 2),
        "last_stream_batch": f"{last_batch.run_id} batch {last_batch.batch_id}",
    }


def freshness_description(passed: bool, max_lag_minutes: int) -> str:
    return (f"the stream wrote a batch within the last {max_lag_minutes} minutes" if passed
            else f"no stream batch in the last {max_lag_minutes} minutes: is `gridlake stream` "
                 "running?")


def freshness_evaluation(last_batch, max_lag_minutes: int, now: dt.datetime | None = None
                         ) -> AssetCheckEvaluation:
    """The freshness check of the stream's last batch (a `batch.lake_state.LastBatch` or
    None), as an event a sensor can report (no run needed)."""
    passed, metadata = freshness_outcome(last_batch, now or dt.datetime.now(dt.UTC),
                                         max_lag_minutes)
    return AssetCheckEvaluation(asset_key=FRESHNESS_KEY.asset_key, check_name=FRESHNESS,
                                passed=passed, metadata=metadata,
                                severity=AssetCheckSeverity.ERROR,
                                description=freshness_description(passed, max_lag_minutes))


class FreshnessConfig(Config):
    max_lag_minutes: int | None = Field(
        default=None, description="stale when the last stream batch is older than this; "
                                  "empty: GRIDLAKE_FRESHNESS_MINUTES (default 15)")


def stream_checks(freshness_minutes: int) -> list[AssetChecksDefinition]:
    """The checks on the stream's tables, with the deployment's freshness threshold."""

    @asset_check(asset=SILVER, name=FRESHNESS,
                 description="The stream is alive: its last micro-batch (in _gridlake/batches) "
                             f"is at most N minutes old (default {freshness_minutes}).")
    def silver_freshness(config: FreshnessConfig, lake: LakeResource) -> AssetCheckResult:
        from batch.lake_state import last_batches

        minutes = config.max_lag_minutes or freshness_minutes
        event = freshness_evaluation(last_batches(lake.lake_root(), "stream")[0], minutes)
        return AssetCheckResult(passed=event.passed, metadata=event.metadata,
                                severity=event.severity, description=event.description)

    @asset_check(asset=BRONZE, name=RECONCILIATION, additional_deps=[SILVER, QUARANTINE],
                 description="Nothing lost: every bronze record is in silver (or is a "
                             "duplicate/stale version of a silver key) or in quarantine.")
    def reconciliation(spark: SparkResource, lake: LakeResource) -> AssetCheckResult:
        from batch.health import reconcile

        session = spark.session()
        result = reconcile(session, lake.open(session))
        metadata: dict = {f"{name}_records": count for name, count in result.counts.items()}
        metadata.update({f"{table}_version": v if v is not None else "none"
                         for table, v in result.versions.items()})
        if result.unaccounted_sample:
            metadata["unaccounted_sample"] = MetadataValue.json(result.unaccounted_sample)
        return AssetCheckResult(
            passed=result.passed, metadata=metadata, severity=AssetCheckSeverity.ERROR,
            description=(f"all {result.counts['bronze']} bronze records accounted for"
                         if result.passed else
                         f"{result.counts['unaccounted']} bronze record(s) neither in silver "
                         "nor in quarantine"))

    from orchestration.quality import great_expectations_check

    return [silver_freshness, reconciliation,
            great_expectations_check(SILVER, "silver/readings"),
            great_expectations_check(QUARANTINE, "quarantine/telemetry")]
