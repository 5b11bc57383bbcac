"""late_report_files: run the backfill job for the new late-report files in the landing folder.

The folder is the lake resource's `late_dir` (GRIDLAKE_LATE_DIR, default
`<lake>/_landing/late`; a local or mounted folder, so with an `s3a://` lake set it); file names
follow `batch.late_reports` (.jsonl, .jsonl.gz, .json; names starting with a dot are ignored, so
a writer can copy to `.name` and rename).

The files that settled since the last tick go into one run: an offline fleet that uploads 50
reports at once gets one Spark driver loading them in batches (`files_per_batch`), not 50
drivers racing each other's MERGEs. A file is known by the SHA-256 of its content, like the
backfill itself: the run key is that hash (for several files, the hash of their sorted hashes),
so Dagster launches a given set of contents once, and a file renamed or back again costs at
most a run that skips it (the backfill skips content it has loaded). The cursor remembers
(modification time, size, hash) per path so unchanged files are not hashed again, and a file
is picked up only once it has not changed for `settle_seconds`. Hashing (and, for `.gz`,
decompressing) stops for the tick after `hash_seconds` (one file at least), well inside
Dagster's limit on a sensor's evaluation: a large drop is taken over several ticks, each
saving its cursor, rather than timing out every tick on the same files. A run that failed is
not requested again (re-execute it from the UI). A file too large to load has no hash there
(null); the tick's message names it, and the other entries of the folder that are not late
reports.
"""

import errno
import hashlib
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
FILES_TAG = "gridlake/late_report_files"


def load_request(new: list[tuple[Path, str]]) -> RunRequest:
    """One run loading the new files, `(path, sha256)` each, keyed by their contents."""
    shas = sorted({sha for _, sha in new})
    key = (f"late-report-{shas[0]}" if len(shas) == 1 else
           "late-reports-" + hashlib.sha256(" ".join(shas).encode()).hexdigest())
    tags = {FILES_TAG: str(len(new))}
    if len(new) == 1:
        tags.update({SHA_TAG: new[0][1], FILE_TAG: new[0][0].name})
    return RunRequest(run_key=key, run_config=run_config_for([str(p) for p, _ in new]),
                      tags=tags)


def late_reports_sensor(job: JobDefinition, settle_seconds: int = 10, interval_seconds: int = 30,
                        default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
                        hash_seconds: float = 20.0) -> SensorDefinition:
    @sensor(name="late_report_files", job=job, minimum_interval_seconds=interval_seconds,
            default_status=default_status,
            description="Watches the late-report landing folder and runs late_report_backfill "
                        "for the files new since the last tick (known by their SHA-256).")
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
        now, started, hashed = time.time(), time.monotonic(), 0
        cursor: dict[str, list] = {}
        new: list[tuple[Path, str]] = []
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
            if hashed and time.monotonic() - started > hash_seconds:
                continue  # hashed enough for one tick (at least one file): the next tick goes on
            hashed += 1
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
            new.append((path, sha))
        new_cursor = json.dumps(cursor, sort_keys=True)
        if not new:
            too_large = sorted(p for p, (_, _, sha) in cursor.items() if sha is None)
            left = f"; {passed_over_sentence(other)}" if other else ""
            left += (f"; {len(too_large)} file(s) too large to load: {few(too_large)}"
                     if too_large else "")
            return SensorResult(skip_reason=f"no new late-report file in {folder}{left}",
                                cursor=new_cursor)
        return SensorResult(run_requests=[load_request(new)], cursor=new_cursor)

    return late_report_files
