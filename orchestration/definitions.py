"""The one Dagster `Definitions` of gridlake, found by `dagster dev` from the repository root.

`pyproject.toml` names this module (`[tool.dagster] module_name`). Building the definitions
only declares things: no Spark session, no lake access. Settings and the deployment's
resources are read from the environment inside `build_defs`.

Every job runs in-process (one process, one Spark driver per run): a multi-process executor
would start a JVM for every step.

Example:
    $ make ui                   # webserver + daemon on 127.0.0.1:3000, against demo/lake
    >>> defs = build_defs("test")
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from orchestration.late_reports.jobs import late_report_backfill_job
from orchestration.late_reports.sensors import late_reports_sensor
from orchestration.maintenance.compaction import compact_lake_job, compact_lake_schedule
from orchestration.resources import resources_for_deployment
from orchestration.rollups.assets import daily_rollups_asset, daily_rollups_job, rollup_partitions
from orchestration.rollups.checks import gx_checks
from orchestration.rollups.schedules import daily_rollups_schedule
from orchestration.rollups.sensors import silver_changes_sensor
from orchestration.settings import Settings
from orchestration.stream.assets import stream_table_specs
from orchestration.stream.checks import stream_checks
from orchestration.stream.sensors import stream_progress_sensor


def build_defs(deployment: str | None = None, settings: Settings | None = None) -> Definitions:
    """Assets, checks, jobs, schedule and sensors, with the resources of `deployment`
    (default: GRIDLAKE_DEPLOYMENT, else `local`)."""
    settings = settings or Settings.from_env()
    partitions = rollup_partitions(settings.partitions_start)
    rollups_job = daily_rollups_job(partitions)
    backfill_job = late_report_backfill_job()
    compaction_job = compact_lake_job()
    return Definitions(
        assets=[*stream_table_specs(), daily_rollups_asset(partitions)],
        asset_checks=[*stream_checks(settings.freshness_minutes), *gx_checks()],
        jobs=[rollups_job, backfill_job, compaction_job],
        schedules=[daily_rollups_schedule(rollups_job, partitions),
                   compact_lake_schedule(compaction_job)],
        sensors=[
            stream_progress_sensor(settings.freshness_minutes),
            late_reports_sensor(backfill_job, settle_seconds=settings.late_settle_seconds),
            silver_changes_sensor(rollups_job, partitions),
        ],
        resources=resources_for_deployment(deployment),
        executor=in_process_executor,
    )


defs = build_defs()
