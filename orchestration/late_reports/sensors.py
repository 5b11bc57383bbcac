"""late_report_files: run the backfill job once for each new late-report file in the landing folder.

The folder is the lake resource's `late_dir` (GRIDLAKE_LATE_DIR, default
`<lake>/_landing/late`; a local or mounted folder, so with an `s3a://` lake set it); file names
follow `batch.late_reports` (.jsonl, .jsonl.gz, .json; names starting with a dot are ignored, so
a writer can copy to `.name` and rename).

A file is known by the SHA-256 of its content, like the backfill itself: the run key is the
hash, so Dagster launches at most one run per content, ever, even if a file is renamed or comes
back. The cursor remembers (modification time, size, hash) per path so unchanged files are not
hashed again, and a file is picked up only once it has not changed for `settle_seconds`. A file
too large to load has no hash there (null); the tick's message names it, and the other entries
of the folder that are not late reports.
"""

import errno
import json
import time
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from orchestration.late_reports.jobs import run_config_for
from orchestration.resources import LakeResource

SHA_TAG = "gridlake/late_report_sha256"
FILE_TAG = "gridlake/late_report"


def late_reports_sensor(job: JobDefinition, settle_seconds: int = 10, interval_seconds: int = 30,
                        default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED
                        ) -> SensorDefinition:
    @sensor(name="late_report_files", job=job, minimum_interval_seconds=interval_seconds,
            default_status=default_status,
            description="Watches the late-report landing folder and runs late_report_backfill "
                        "once for each new file (identified by its SHA-256).")
    def late_report_files(context: SensorEvaluationContext, lake: LakeResource):
        from batch.late_reports import find_report_files, inspect_file, passed_over_sentence
        from gridlake.landing import few

        late_dir = lake.late_reports_dir()
        if "://" in late_dir:
            return SkipReason(
                f"the late-report folder {late_dir} is not on a local or mounted "
                f"disk; with an object-store lake set GRIDLAKE_LATE_DIR to a local folder")
        folder = Path(late_dir)
        if not folder.is_dir():
            return SkipReason(f"no late-report folder at {folder}")
        seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        cursor: dict[str, list] = {}
        requests = []
        reports, other = find_report_files([folder])
        for path in reports:
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed since it was listed
                continue
            if now - stat.st_mtime < settle_seconds:
                continue  # maybe still being written; look again next tick
            known = seen.get(str(path))
            if known and known[:2] == [stat.st_mtime_ns, stat.st_size]:
                cursor[str(path)] = known
                continue
            try:
                sha = inspect_file(path).sha256
            except OSError as exc:
                if exc.errno == errno.EFBIG:  # never loadable as it is: kept, said once
                    context.log.warning(f"{path} is not loaded: {exc.strerror}")
                    cursor[str(path)] = [stat.st_mtime_ns, stat.st_size, None]
                else:
                    context.log.warning(f"cannot read {path} yet ({exc}); trying again next tick")
                continue
            cursor[str(path)] = [stat.st_mtime_ns, stat.st_size, sha]
            requests.append(RunRequest(run_key=f"late-report-{sha}",
                                       run_config=run_config_for([str(path)]),
                                       tags={SHA_TAG: sha, FILE_TAG: path.name}))
        new_cursor = json.dumps(cursor, sort_keys=True)
        if not requests:
            too_large = sorted(p for p, (_, _, sha) in cursor.items() if sha is None)
            left = f"; {passed_over_sentence(other)}" if other else ""
            left += (f"; {len(too_large)} file(s) too large to load: {few(too_large)}"
                     if too_large else "")
            return SensorResult(skip_reason=f"no new late-report file in {folder}{left}",
                                cursor=new_cursor)
        return SensorResult(run_requests=requests, cursor=new_cursor)

    return late_report_files
