"""The stream from a landing folder: silver equals the independent truth, exactly once."""

from __future__ import annotations

import itertools
import shutil
from collections import defaultdict

import pytest
from pyspark.sql import functions as F

from gridlake.ingest import WriteContext, write_batch
from gridlake.lake import open_lake
from shared_schemas.tables import (
    CHECKPOINT_INTERVAL_PROPERTY,
    batch_log,
    bronze_telemetry,
    micro_batch_tables,
    quarantine_telemetry,
    silver_readings,
)
from streaming.query import StreamOptions, run_stream
from streaming.sources import FileSource
from tests import oracle
from tests.streaming.conftest import BATCH_LINE


def _table(spark, lake, spec):
    return spark.read.format("delta").load(lake.path(spec))


def assert_silver_equals_truth(spark, lake, truth):
    rows = _table(spark, lake, silver_readings()).collect()
    got = {(r["device_id"], r["ts"]): r for r in rows}
    assert len(rows) == len(got), "duplicate keys in silver"
    assert set(got) == set(truth)
    for key, expected in truth.items():
        row = got[key]
        assert (row["seq"], row["event_id"]) == (expected["seq"], expected["_id"]), key
        for name in ("site_id", "device_type", "status"):
            assert row[name] == expected.get(name), (key, name)
        for name in ("power_w", "energy_import_wh", "energy_export_wh", "soc_pct",
                     "temperature_c"):
            assert oracle.close(row[name], None if expected.get(name) is None
                                else float(expected[name])), (key, name)
        record = expected["_record"]
        assert (row["source_file"], row["source_line"]) == (record.path, record.line)


@pytest.fixture(scope="module")
def streamed(spark, small_fleet, tmp_path_factory):
    lake = open_lake(str(tmp_path_factory.mktemp("lake")), create=True, spark=spark)
    source = FileSource(str(small_fleet / "stream"), max_files_per_trigger=2)
    lines = []
    run_stream(spark, lake, source, StreamOptions(available_now=True), report=lines.append)
    return lake, source, lines


def test_silver_equals_the_latest_seq_truth(spark, small_fleet, streamed):
    lake, _, _ = streamed
    truth, _ = oracle.silver_truth(oracle.read_records((small_fleet / "stream").glob("*.jsonl")))
    assert_silver_equals_truth(spark, lake, truth)


def test_bronze_holds_every_line_once_and_quarantine_every_bad_line(spark, small_fleet, streamed):
    lake, _, _ = streamed
    records = list(oracle.read_records((small_fleet / "stream").glob("*.jsonl")))
    _, invalid = oracle.silver_truth(records)
    bronze = _table(spark, lake, bronze_telemetry())
    assert bronze.count() == len(records)
    assert bronze.select("record_id").distinct().count() == len(records)
    quarantine = _table(spark, lake, quarantine_telemetry())
    got = {(r["source_file"], r["source_line"]) for r in quarantine.collect()}
    assert got == {(r.path, r.line) for r in invalid}
    assert quarantine.where(F.size("reasons") == 0).count() == 0
    raw = {(r["source_file"], r["source_line"]): bytes(r["payload"]) for r in bronze.collect()}
    assert all(raw[(r.path, r.line)] == r.payload for r in records)


def test_one_line_per_micro_batch_with_counts(spark, streamed):
    """Each batch's line gives the counts the upsert rule gives, in plain Python, for the files
    Spark put in that batch (read from bronze)."""
    lake, _, lines = streamed
    batches = [line for line in lines if line.startswith("batch ")]
    assert len(batches) == 2, lines  # 4 files, 2 per trigger
    files_of = defaultdict(set)
    for r in (_table(spark, lake, bronze_telemetry()).select("batch_id", "source_file")
              .distinct().collect()):
        files_of[r["batch_id"]].add(r["source_file"])
    stored: dict = {}
    for line in batches:
        found = BATCH_LINE.match(line.rstrip())
        assert found, line
        batch_id, read, upserted, dup_or_stale, bad = map(int, found.group(
            "batch", "read", "upserted", "stale", "quarantined"))
        records = list(oracle.read_records(files_of[batch_id]))
        winners, invalid = oracle.silver_truth(records)
        changed = {k: e for k, e in winners.items()
                   if k not in stored or (e["seq"], e["_id"]) > (stored[k]["seq"],
                                                                 stored[k]["_id"])}
        stored.update(changed)
        valid = len(records) - len(invalid)
        days = sorted({k[1].date() for k in winners})
        span = str(days[0]) if days[0] == days[-1] else f"{days[0]}..{days[-1]}"
        assert (read, bad, upserted, dup_or_stale, found.group(6)) == (
            len(records), len(invalid), len(changed), valid - len(changed), span), line
        assert float(found.group(7)) > 0


def test_replaying_a_committed_batch_changes_nothing(spark, small_fleet, streamed):
    lake, source, _ = streamed
    import json

    from gridlake.lake import read_text
    checkpoint = lake.default_checkpoint(source.slug)
    run_id = json.loads(read_text(f"{checkpoint}/gridlake.json"))["run_id"]
    tables = micro_batch_tables()
    versions = {s.path: _version(spark, lake, s) for s in tables}
    [logged] = (spark.read.format("delta").load(lake.path(batch_log()))
                .where((F.col("run_id") == run_id) & (F.col("batch_id") == 0)).collect())
    from streaming.sources import read_files
    ctx = WriteContext.now(run_id=run_id, batch_id=0, kind="stream", source=source.name)
    result = write_batch(spark, lake, read_files(spark, [str(small_fleet / "stream")]), ctx)
    # Nothing written again; the replay reports what the batch's committed MERGE did.
    assert versions == {s.path: _version(spark, lake, s) for s in tables}
    assert result.replayed and result.upserted == logged["upserted"] > 0


def test_tables_of_a_micro_batch_write_their_checkpoints_at_different_commits(spark, streamed):
    """Each micro-batch commits to all of them: were their Delta checkpoints on the same
    commit numbers, one batch in ten would pay for all of them at once."""
    from math import gcd

    from delta.tables import DeltaTable

    lake, _, _ = streamed
    tables = micro_batch_tables()
    properties = {spec.path: DeltaTable.forPath(spark, lake.path(spec)).detail().first()
                  ["properties"] for spec in tables}
    assert all(CHECKPOINT_INTERVAL_PROPERTY in p for p in properties.values()), properties
    intervals = {path: int(p[CHECKPOINT_INTERVAL_PROPERTY]) for path, p in properties.items()}
    # Pairwise coprime: two tables committing every batch checkpoint together only once every
    # a*b batches.
    for a, b in itertools.combinations(intervals.values(), 2):
        assert gcd(a, b) == 1 and a * b >= 100, intervals


def _version(spark, lake, spec):
    from delta.tables import DeltaTable
    return DeltaTable.forPath(spark, lake.path(spec)).history(1).first()["version"]


def test_new_files_in_any_order_converge_to_the_truth(spark, small_fleet, tmp_path):
    """Late files streamed first, then the live files: same truth as reading all at once."""
    landing = tmp_path / "landing"
    landing.mkdir()
    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    late = sorted((small_fleet / "late").glob("*.jsonl"))
    for path in late:
        shutil.copy(path, landing / f"0-{path.name}")
    source = FileSource(str(landing))
    run_stream(spark, lake, source, StreamOptions(available_now=True), report=lambda _: None)
    for path in sorted((small_fleet / "stream").glob("*.jsonl")):
        shutil.copy(path, landing / f"1-{path.name}")
    run_stream(spark, lake, source, StreamOptions(available_now=True), report=lambda _: None)
    records = list(oracle.read_records(landing.glob("*.jsonl")))
    truth, _ = oracle.silver_truth(records)
    rows = _table(spark, lake, silver_readings()).collect()
    assert {(r["device_id"], r["ts"]): (r["seq"], r["event_id"]) for r in rows} == {
        k: (v["seq"], v["_id"]) for k, v in truth.items()}
