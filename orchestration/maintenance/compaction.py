"""compact_lake: `gridlake compact` as a Dagster job, and an hourly schedule for it.

The stream leaves small files in every partition it touches; this job rewrites the recent
partitions into few large files without changing data (see `batch.compaction`). The schedule
starts stopped, like every gridlake schedule; turn it on in the UI (Automation) once the
stream runs.

Run config:
    ops:
      compact_recent_partitions:
        config:
          days: 7
"""

from dagster import (
    Config,
    DefaultScheduleStatus,
    JobDefinition,
    OpExecutionContext,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from orchestration.resources import LakeResource, SparkResource

JOB_NAME = "compact_lake"
CRON = "15 * * * *"


class CompactionConfig(Config):
    days: int = Field(default=7, ge=1, description="compact the partitions of the last N UTC days")


@op(name="compact_recent_partitions",
    description="OPTIMIZE the recent partitions of bronze, quarantine, silver and the decision "
                "log (no data change; conflicts with the stream are retried).")
def compact_recent_partitions(context: OpExecutionContext, config: CompactionConfig,
                              spark: SparkResource, lake: LakeResource) -> None:
    from batch.compaction import compact, recent

    session = spark.session()
    since = recent(config.days)
    tables = compact(session, lake.open(session), since)
    for table in tables:
        context.log.info(table.line())
    context.add_output_metadata({
        "since": since.isoformat(),
        "files_removed": sum(t.files_removed for t in tables),
        "files_added": sum(t.files_added for t in tables),
    })


def compact_lake_job() -> JobDefinition:
    @job(name=JOB_NAME, executor_def=in_process_executor,
         description="Compact the small files of recent partitions, like `gridlake compact`.")
    def compact_lake():
        compact_recent_partitions()

    return compact_lake


def compact_lake_schedule(compaction_job: JobDefinition,
                          default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED
                          ) -> ScheduleDefinition:
    return ScheduleDefinition(name="compact_lake_hourly", cron_schedule=CRON,
                              execution_timezone="UTC", job=compaction_job,
                              default_status=default_status,
                              description="Every hour at :15, compact the last 7 days' "
                                          "partitions.")
