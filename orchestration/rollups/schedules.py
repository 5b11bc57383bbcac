"""daily_rollups_after_midnight: at 00:30 UTC, materialize yesterday's rollup partition.

Written as a schedule returning `RunRequest(partition_key=yesterday)` rather than
`build_schedule_from_partitioned_job`, so the day is explicitly the one that just ended,
whatever the partitions' end offset; the run key (the day) makes a retried tick a no-op.
"""

import datetime as dt

from dagster import (
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

CRON = "30 0 * * *"


def yesterday(scheduled_time: dt.datetime) -> dt.date:
    """The UTC day before the tick's scheduled time."""
    return scheduled_time.astimezone(dt.UTC).date() - dt.timedelta(days=1)


def daily_rollups_schedule(job,
                           partitions_def: DailyPartitionsDefinition,
                           default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED
                           ) -> ScheduleDefinition:
    @schedule(name="daily_rollups_after_midnight", cron_schedule=CRON, execution_timezone="UTC",
              job=job, default_status=default_status,
              description="At 00:30 UTC, recompute yesterday's device and site rollups.")
    def daily_rollups_after_midnight(context: ScheduleEvaluationContext):
        day = yesterday(context.scheduled_execution_time).isoformat()
        if not partitions_def.has_partition_key(day):
            return SkipReason(f"{day} is not a rollup partition (they start "
                              f"{partitions_def.start.date().isoformat()})")
        return RunRequest(run_key=day, partition_key=day)

    return daily_rollups_after_midnight
