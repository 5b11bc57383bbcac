"""The batch half beside the stream: writers race stream batches on the same days.

The first test is `make test`'s version of `make chaos`'s four writers at once
(`tests/batch/test_jobs_at_once.py`): the stream's micro-batches, a late-report backfill (which
ends with its own rollup of the changed days), a reprocess of those days and a `forget` of one
device run as threads of one driver. The device sends nothing while they run, so the answer
does not depend on which writer commits first.
"""

from __future__ import annotations

import csv
import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

from pyspark.sql import functions as F

from batch.erasure import forget
from batch.late_reports import backfill
from batch.reprocess import reprocess
from batch.rollups import rollup_changed
from batch.sites import load_sites
from tests import oracle
from tests.batch import expected as X
from tests.batch.conftest import (
    check_forgotten_in_the_end,
    prepare_race,
    rows_by,
    stream_batches,
    table,
)
from tests.conftest import FLEET_ARGS


def test_stream_backfill_reprocess_and_forget_race_and_end_right(spark, lake, small_fleet,
                                                                 tmp_path):
    race = prepare_race(small_fleet, tmp_path)
    assert {p.suffix for p in race.late.iterdir()} == {".json", ".jsonl"}
    load_sites(spark, lake, small_fleet / "sites.csv")
    stream_batches(spark, lake, [sorted(race.first.iterdir())])
    rest = sorted(race.landing.iterdir())
    failures: list[BaseException] = []

    def run(name, action):
        started = time.monotonic()
        try:
            action()
        except BaseException as exc:  # reported below; a thread must not swallow it
            failures.append(exc)
        print(f"{name}: {time.monotonic() - started:.1f} s", flush=True)

    writers = [
        ("stream", lambda: stream_batches(spark, lake, [rest[:1], rest[1:]], first=1)),
        ("backfill", lambda: backfill(spark, lake, [race.late], files_per_batch=1,
                                      progress=False)),
        ("reprocess", lambda: reprocess(spark, lake, race.days[0], race.days[-1])),
        ("forget", lambda: forget(spark, lake, race.device)),
    ]
    threads = [threading.Thread(target=run, args=(name, writer)) for name, writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures

    rollup_changed(spark, lake)  # whatever the others wrote after the backfill's rollup
    check_forgotten_in_the_end(spark, lake, race)


def test_a_rollup_of_an_older_silver_version_leaves_the_days_a_newer_run_computed(
        spark, lake, tmp_path):
    from batch.rollups import recompute, silver_version
    from gridlake.cli import main

    fleet = tmp_path / "fleet"  # the shared fleet's settings over two days
    args = list(FLEET_ARGS)
    args[args.index("--days") + 1] = "2"
    assert main(["generate", "--out", str(fleet), *args]) == 0
    load_sites(spark, lake, fleet / "sites.csv")
    stream = sorted((fleet / "stream").glob("*.jsonl"))
    late = sorted((fleet / "late").iterdir())
    stream_batches(spark, lake, [stream])
    old = silver_version(spark, lake)
    backfill(spark, lake, [fleet / "late"], rollup=False, progress=False)
    new = silver_version(spark, lake)
    before, _ = oracle.silver_truth(oracle.read_records(stream), X.now())
    truth, _ = oracle.silver_truth(oracle.read_records([*stream, *late]), X.now())
    # A day the late reports changed (its rollups differ between the two versions) and the other.
    fresh = min(ts.date() for key, ts in truth if before.get((key, ts)) != truth[(key, ts)])
    (stale,) = {ts.date() for _, ts in truth} - {fresh}

    # A run of the newest silver version computes one day; a run pinned to the version before
    # the late reports (a slow run that started earlier) then finishes, over that day and the
    # next: it must write only the next one, in both gold tables.
    recompute(spark, lake, [fresh])
    older_run = recompute(spark, lake, [fresh, stale], version=old)
    assert older_run.skipped_newer == [fresh]
    device_versions = {r["day"]: r["silver_version"] for r in table(
        spark, lake, "gold/daily_device_rollups").select("day", "silver_version").collect()}
    assert device_versions == {fresh: new, stale: old}

    # Site days: those a UTC day reaches in any site's zone, and that have readings.
    zones = {r["site_id"]: r["timezone"]
             for r in csv.DictReader((fleet / "sites.csv").open(encoding="utf-8"))}

    def reached(day: dt.date) -> set[dt.date]:
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        return {t.astimezone(ZoneInfo(zone)).date() for zone in set(zones.values())
                for t in (start, start + dt.timedelta(days=1, microseconds=-1))}

    with_rows = {version: {d for _, d in X.site_rollups(readings, zones)}
                 for version, readings in ((old, before), (new, truth))}
    newer_days = reached(fresh) & with_rows[new]
    expected = {d: new if d in newer_days else old
                for d in (reached(fresh) | reached(stale))
                if d in newer_days or d in with_rows[old]}
    assert older_run.skipped_newer_local_days == sorted(newer_days)
    site_versions = {r["local_day"]: r["silver_version"] for r in table(
        spark, lake, "gold/daily_site_rollups").select("local_day", "silver_version").collect()}
    assert site_versions == expected
    # The newer day still holds the rollups of every reading, late reports included.
    gold = rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day")
    X.same({k: r for k, r in gold.items() if k[1] == fresh},
           {k: r for k, r in X.device_rollups(truth).items() if k[1] == fresh},
           "daily device rollups of the newer day")
    # A run of the same silver version is not "newer": it rewrites its days.
    again = recompute(spark, lake, [fresh], version=new)
    assert again.skipped_newer == [] and again.skipped_newer_local_days == []
    assert {r["run_id"] for r in table(spark, lake, "gold/daily_device_rollups")
            .where(F.col("day") == fresh).collect()} == {again.run_id}
