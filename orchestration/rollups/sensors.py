"""silver_changes: recompute exactly the rollup partitions whose silver readings changed.

The cursor is the last silver Delta version looked at. Each tick reads silver's change data
feed from the next version to the current one and requests the rollup job for those UTC days.
The feed is read with delta-rs (`batch.lake_state.changed_days`, the same read
`gridlake rollup --changed` uses): sensors run in a code server the daemon replaces every
minute, where a Spark driver would mean a JVM a minute.

A Dagster run covers one contiguous partition range, so the changed days are grouped into
maximal runs of consecutive days and each becomes one run request (tags
`dagster/asset_partition_range_start`/`_end`, as a single-run backfill would produce). Late
reports usually touch consecutive days, giving one run for any number of days and files;
days far apart give one run per stretch rather than one run over the gap. Days outside the
partitions (before the start date, or today, which the after-midnight schedule covers) are
left out and logged.
"""

import datetime as dt
from collections.abc import Iterable

from dagster import (
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from orchestration.resources import LakeResource

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
SILVER_VERSIONS_TAG = "gridlake/silver_versions"


def consecutive_ranges(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted, distinct days → maximal (first, last) stretches of consecutive days.

    >>> consecutive_ranges([dt.date(2026, 11, 3), dt.date(2026, 11, 1), dt.date(2026, 11, 2)])
    [(datetime.date(2026, 11, 1), datetime.date(2026, 11, 3))]
    """
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if ranges and day == ranges[-1][1] + dt.timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def partition_range_request(first: dt.date, last: dt.date, run_key: str | None = None,
                            tags: dict[str, str] | None = None) -> RunRequest:
    """A run request for the partition range first..last (both included)."""
    return RunRequest(run_key=run_key, tags={**(tags or {}), RANGE_START_TAG: first.isoformat(),
                                             RANGE_END_TAG: last.isoformat()})


def silver_changes_sensor(job,
                          partitions_def: DailyPartitionsDefinition, interval_seconds: int = 60,
                          default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED
                          ) -> SensorDefinition:
    @sensor(name="silver_changes", job=job, minimum_interval_seconds=interval_seconds,
            default_status=default_status,
            description="Reads silver's change data feed since the last version it saw and "
                        "requests the rollups of exactly the days that changed.")
    def silver_changes(context: SensorEvaluationContext, lake: LakeResource):
        from batch.lake_state import changed_days, silver_version

        root = lake.lake_root()
        version = silver_version(root)
        if version is None:
            return SkipReason(f"no silver table at {root} yet")
        first = 0 if context.cursor is None else int(context.cursor) + 1
        if first > version:
            return SkipReason(f"silver is at version {version}: nothing new since the cursor")
        days = changed_days(root, first, version)
        keys = set(partitions_def.get_partition_keys())
        wanted = [d for d in days if d.isoformat() in keys]
        outside = sorted(set(days) - set(wanted))
        if outside:
            context.log.info(f"changed days that are not partitions (before the start date, or "
                             f"not over yet), left out: {', '.join(map(str, outside))}")
        span = f"{first}..{version}"
        requests = [partition_range_request(a, b, run_key=f"silver-v{span}:{a}..{b}",
                                            tags={SILVER_VERSIONS_TAG: span})
                    for a, b in consecutive_ranges(wanted)]
        if not requests:
            return SensorResult(skip_reason=f"silver versions {span} changed no rollup "
                                             "partition", cursor=str(version))
        return SensorResult(run_requests=requests, cursor=str(version))

    return silver_changes
