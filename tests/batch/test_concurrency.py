"""The batch half beside the stream: a backfill and rollups race stream batches on the same days."""

from __future__ import annotations

import csv
import datetime as dt
import threading
from zoneinfo import ZoneInfo

from pyspark.sql import functions as F

from batch.late_reports import backfill
from batch.rollups import rollup_changed
from batch.sites import load_sites
from gridlake.ingest import WriteContext, record_batch, write_batch
from streaming.sources import read_files
from tests import oracle
from tests.batch import expected as X
from tests.batch.conftest import rows_by, silver_winners, table, winners
from tests.conftest import FLEET_ARGS


def stream_batches(spark, lake, groups):
    """What the stream's foreachBatch does, one micro-batch per group of landing files."""
    for batch_id, files in enumerate(groups):
        raw = read_files(spark, [str(p) for p in files])
        ctx = WriteContext.now(run_id="stream-beside-batch", batch_id=batch_id, kind="stream",
                               source="files:test")
        record_batch(spark, lake, write_batch(spark, lake, raw, ctx), ctx)


def test_backfill_and_rollups_race_the_stream_and_both_end_right(spark, lake, small_fleet):
    zones = {r["site_id"]: r["timezone"]
             for r in csv.DictReader((small_fleet / "sites.csv").open(encoding="utf-8"))}
    load_sites(spark, lake, small_fleet / "sites.csv")
    stream = sorted((small_fleet / "stream").glob("*.jsonl"))
    late = sorted((small_fleet / "late").iterdir())
    assert {p.suffix for p in late} == {".json", ".jsonl"}
    failures: list[BaseException] = []

    def run(action):
        try:
            action()
        except BaseException as exc:  # reported below; a thread must not swallow it
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(lambda: stream_batches(
            spark, lake, [stream[:len(stream) // 2], stream[len(stream) // 2:]]),)),
        # backfill ends with its own rollup of the changed days, racing the stream too
        threading.Thread(target=run, args=(lambda: backfill(spark, lake, [small_fleet / "late"]),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures

    truth, _ = oracle.silver_truth(oracle.read_records([*stream, *late]), X.now())
    assert silver_winners(spark, lake) == winners(truth)
    rollup_changed(spark, lake)  # whatever the stream wrote after the racing rollup
    X.same(rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day"),
           X.device_rollups(truth), "daily device rollups")
    X.same(rows_by(spark, lake, "gold/daily_site_rollups", "site_id", "local_day"),
           X.site_rollups(truth, zones), "daily site rollups")


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
