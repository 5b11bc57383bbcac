"""The batch half beside the stream: a backfill and rollups race stream batches on the same days."""

from __future__ import annotations

import csv
import threading

from pyspark.sql import functions as F

from batch.late_reports import backfill
from batch.rollups import rollup_changed
from batch.sites import load_sites
from gridlake.ingest import WriteContext, record_batch, write_batch
from streaming.sources import file_lines
from tests import oracle
from tests.batch import expected as X
from tests.batch.conftest import rows_by, silver_winners, winners


def stream_batches(spark, lake, groups):
    """What the stream's foreachBatch does, one micro-batch per group of landing files."""
    for batch_id, files in enumerate(groups):
        raw = (spark.read.format("text").option("wholetext", "true")
               .load([str(p) for p in files])
               .select(F.col("_metadata.file_path").alias("path"), F.col("value").alias("content"))
               .transform(file_lines()))
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
