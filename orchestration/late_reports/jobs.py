"""late_report_backfill: load late-report files through the batch path (`gridlake backfill`).

The op calls `batch.late_reports.backfill`, the function the CLI calls. By default it loads
only: the `silver_changes` sensor then sees the days the files changed in silver's change feed
and requests exactly those rollup partitions, one run for many files. Set
`recompute_rollups: true` to recompute the event dates this run loaded in the same run (the
rollup log records them under the job's name; `gridlake backfill` instead runs
`rollup --changed`, whose cursor only the command line moves).

Run config:
    ops:
      load_late_reports:
        config:
          paths: [/data/landing/late/D00042_20261101T1030Z.jsonl]
"""

from dagster import Config, Failure, JobDefinition, OpExecutionContext, in_process_executor, job, op
from pydantic import Field

from orchestration.resources import LakeResource, SparkResource

JOB_NAME = "late_report_backfill"
OP_NAME = "load_late_reports"


class LateReportsConfig(Config):
    paths: list[str] = Field(description="late-report files (.jsonl, .jsonl.gz, .json), or "
                                         "folders of them (not recursive)")
    sites: str | None = Field(default=None,
                              description="load this site registry (sites.csv) first")
    files_per_batch: int = Field(default=32, ge=1,
                                 description="new files written together as one batch")
    recompute_rollups: bool = Field(
        default=False, description="recompute the changed days' rollups in this run (default: "
                                   "leave them to the silver_changes sensor)")


def run_config_for(paths: list[str]) -> dict:
    """The run config loading `paths`."""
    return {"ops": {OP_NAME: {"config": {"paths": list(paths)}}}}


@op(name=OP_NAME, description="Load late-report files through the write path; a file already "
                              "loaded (same content) is skipped.")
def load_late_reports(context: OpExecutionContext, config: LateReportsConfig,
                      spark: SparkResource, lake: LakeResource) -> None:
    from pathlib import Path

    from batch.late_reports import backfill, find_report_files, passed_over_sentence
    from batch.rollups import recompute
    from batch.sites import load_sites

    find_report_files(config.paths)  # a bad path fails here, before Spark starts
    session = spark.session()
    the_lake = lake.open(session, create=True)
    if config.sites:
        count = load_sites(session, the_lake, Path(config.sites))
        context.log.info(f"sites: {count} loaded from {config.sites}")
    result = backfill(session, the_lake, config.paths, files_per_batch=config.files_per_batch,
                      rollup=False, progress=False)
    loaded_days = sorted({d for b in result.batches for d in b.event_dates})
    if config.recompute_rollups:
        result.rollup_skipped = False  # no valid reading loaded: no day to recompute
        if loaded_days:
            result.rollup = recompute(session, the_lake, loaded_days,
                                      run_id=f"dagster-{context.run_id}", mode=JOB_NAME)
    for line in result.lines():
        context.log.info(line)
    for problem in result.damaged:
        context.log.warning(problem)
    if result.passed_over:
        context.log.warning(passed_over_sentence(result.passed_over))
    context.add_output_metadata({
        "files_found": result.files_found, "files_loaded": result.files_loaded,
        "files_skipped": len(result.skipped), "files_damaged": len(result.damaged),
        "records_read": result.total("records_read"),
        "upserted": result.total("upserted"),
        "duplicates_or_stale": result.total("duplicates_or_stale"),
        "quarantined": result.total("quarantined"),
        "silver_version": max((b.silver_version for b in result.batches
                               if b.silver_version is not None), default=-1),
    })
    if result.unreadable:
        raise Failure(description=f"could not read {len(result.unreadable)} file(s): "
                                  + "; ".join(result.unreadable))


def late_report_backfill_job() -> JobDefinition:
    @job(name=JOB_NAME, executor_def=in_process_executor,
         description="Load late-report files (paths in run config) like `gridlake backfill`.")
    def late_report_backfill():
        load_late_reports()

    return late_report_backfill
