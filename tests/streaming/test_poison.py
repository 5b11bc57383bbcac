"""A poison flood: a fifth of the records corrupt, among them multi-megabyte and binary lines.

The stream takes every record into bronze byte for byte, quarantines each bad one with its
reason (the payload kept whole), and silver still equals the independent truth. The long
version (`make chaos`) lands the flood at a steady rate into a running stream, which must keep
up with it.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from gridlake.cli import main
from gridlake.lake import open_lake
from gridlake.landing import MAX_FILE_BYTES
from shared_schemas.tables import bronze_telemetry, quarantine_telemetry, silver_readings
from streaming.query import StreamOptions, run_stream
from streaming.sources import FileSource
from tests import oracle
from tests.streaming.conftest import StreamProcess, check_exactly_once

MB = 1 << 20


def _poison_lines(template: dict, rng: random.Random) -> dict[str, bytes]:
    """Named hostile lines (no newline inside any of them)."""
    huge_status = {**template, "id": "poison-huge-status",
                   "data": {**template["data"], "status": "x" * (3 * MB)}}
    huge_extra = {**template, "id": "poison-huge-extra",
                  "data": {**template["data"], "ts": "2026-11-01T23:59:00Z",
                           "firmware_dump": "A" * (2 * MB)}}
    binary = bytes(b for b in rng.randbytes(64 * 1024) if b not in b"\r\n")
    return {
        "garbage": bytes(rng.choice(b"{}[]:,'\"abc123 OR 1=1 ../") for _ in range(4 * MB)),
        "binary": b"\x00\xff" + binary,
        "nul_json": b'{"specversion":"1.0","id":"\x00"' + b"\x00" * 1024,
        "huge_status": json.dumps(huge_status).encode(),
        "huge_extra": json.dumps(huge_extra).encode(),  # valid: unknown fields stay in bronze
    }


def _valid_event(path: Path) -> dict:
    """The first structured event with a data object in a generated file (a poison template)."""
    return next(json.loads(line) for line in path.read_bytes().splitlines()
                if line.startswith(b'{"specversion"') and b'"data":{' in line)


def _quarantined_exactly(spark, lake, invalid: list) -> dict[str, dict]:
    """Quarantine holds every record in `invalid` (the oracle's), each with its reasons, and no
    other; returns its rows by record id."""
    quarantine = spark.read.format("delta").load(lake.path(quarantine_telemetry()))
    rows = {r["record_id"]: r for r in quarantine.collect()}
    assert set(rows) == {f"file:{r.path}#{r.line}" for r in invalid}
    assert all(r["reason_codes"] for r in rows.values())
    return rows


def test_poison_flood_is_quarantined_whole_and_silver_still_equals_the_truth(spark, tmp_path):
    fleet = tmp_path / "fleet"
    assert main(["generate", "--out", str(fleet), "--devices", "6", "--days", "1",
                 "--interval-minutes", "15", "--stream-files", "2", "--late-devices", "0",
                 "--corrupt", "0.2", "--seed", "23"]) == 0
    files = sorted((fleet / "stream").glob("*.jsonl"))
    template = _valid_event(files[0])
    poison = _poison_lines(template, random.Random(23))
    poison_file = fleet / "stream" / "zz-poison.jsonl"
    poison_file.write_bytes(b"\n".join(poison.values()) + b"\n")

    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    lines: list[str] = []
    run_stream(spark, lake, FileSource(str(fleet / "stream"), max_files_per_trigger=3),
               StreamOptions(available_now=True), report=lines.append)

    records = list(oracle.read_records([*files, poison_file]))
    invalid = check_exactly_once(spark, lake, [*files, poison_file])
    assert len(invalid) >= 0.15 * len(records)  # the flood is real
    record_id = {f"file:{r.path}#{r.line}": r for r in records}

    quarantined = _quarantined_exactly(spark, lake, invalid)
    bronze = spark.read.format("delta").load(lake.path(bronze_telemetry()))

    # The hostile lines: kept byte for byte, each with the reason the contract gives it.
    by_payload = {record_id[rid].payload: row for rid, row in quarantined.items()}
    expected_codes = {"garbage": "payload.json", "binary": "payload.utf8",
                      "nul_json": "payload.json", "huge_status": "status.length"}
    for name, code in expected_codes.items():
        row = by_payload[poison[name]]
        assert bytes(row["payload"]) == poison[name], name
        assert code in row["reason_codes"], (name, row["reason_codes"])
    raw = {bytes(r["payload"]) for r in bronze.where(F.length("payload") > MB).collect()}
    assert raw == {poison[n] for n in ("garbage", "huge_status", "huge_extra")}
    silver = spark.read.format("delta").load(lake.path(silver_readings()))
    assert silver.where(F.col("event_id") == "poison-huge-extra").count() == 1


def _lines(text: bytes, path: Path) -> list[oracle.Record]:
    """The records a reader finds in decompressed `text` of `path` (blank lines skipped)."""
    return [oracle.Record(str(path), i, line)
            for i, line in enumerate(text.split(b"\n"), start=1) if line.strip()]


def test_damaged_gz_files_in_the_landing_folder_load_what_can_be_read_and_the_stream_goes_on(
        spark, tmp_path):
    """Hadoop's codec fails a batch (and so a stream, on every restart) on one damaged .gz;
    the stream reads every .gz with gridlake's own gunzip instead."""
    fleet = tmp_path / "fleet"
    assert main(["generate", "--out", str(fleet), "--devices", "6", "--days", "1",
                 "--interval-minutes", "15", "--stream-files", "4", "--late-devices", "0",
                 "--seed", "31"]) == 0
    landing = fleet / "stream"
    plain, to_cut, to_corrupt, to_pad = sorted(landing.glob("*.jsonl"))
    texts = {path: path.read_bytes() for path in (to_cut, to_corrupt, to_pad)}
    for path in texts:
        path.unlink()
    cut, corrupt, padded = (landing / f"{p.name}.gz" for p in (to_cut, to_corrupt, to_pad))

    packed = gzip.compress(texts[to_cut])
    cut.write_bytes(packed[: len(packed) * 2 // 3])
    half = texts[to_corrupt].index(b"\n", len(texts[to_corrupt]) // 2) + 1
    first, second = texts[to_corrupt][:half], bytearray(gzip.compress(texts[to_corrupt][half:]))
    second[len(second) // 2: len(second) // 2 + 16] = b"U" * 16
    corrupt.write_bytes(gzip.compress(first) + bytes(second))
    padded.write_bytes(b"".join(gzip.compress(part) + b"\0" * 512 for part in (
        texts[to_pad][:half], texts[to_pad][half:])))

    # Files the stream never reads, here or in subfolders (one named like a partition, which
    # Spark would read instead of the folder's own files): named once on stderr; hidden ones
    # (uploads in progress, markers) are not named.
    for name in ("batch.json", "readings.jsonl.bz2", ".upload.jsonl", "_SUCCESS", "_x.jsonl",
                 "day=2026-11-01/r.jsonl", "old/r.jsonl"):
        (landing / name).parent.mkdir(exist_ok=True)
        (landing / name).write_bytes(texts[to_cut])
    # A subfolder named like a record file matches the pattern: its record files are read,
    # at any depth, with no partition inferred (Spark failed on this layout beside others);
    # its other files are named.
    nested = landing / "x.jsonl" / "day=2026-11-01" / "b.jsonl"
    nested.parent.mkdir(parents=True)
    nested.write_bytes(texts[to_pad])
    (landing / "x.jsonl" / "notes.txt").write_text("not a record file")
    (landing / "x.jsonl" / "_y.jsonl").write_bytes(texts[to_cut])  # Spark passes it over
    # Larger than gridlake reads from one file (sparse: no disk used): left out and named.
    for name in ("huge.jsonl", "x.jsonl/big.jsonl"):
        with (landing / name).open("wb") as huge:
            huge.truncate(MAX_FILE_BYTES + 1)

    # Independently: what one-shot zlib gives back of the cut file; the corrupt file's first
    # member; every line of the padded and the plain file.
    records = [*_lines(zlib.decompressobj(wbits=31).decompress(cut.read_bytes()), cut),
               *_lines(first, corrupt), *_lines(texts[to_pad], padded),
               *oracle.read_records([plain, nested])]
    truth, invalid = oracle.silver_truth(records)

    # `gridlake stream` as deployed: run from elsewhere, with no PYSPARK_PYTHON or PYTHONPATH
    # (the .gz reader's Python workers must start and find what they run all the same).
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH")}
    run = subprocess.run(
        [sys.executable, "-m", "gridlake.cli", "stream", "--source", f"files:{landing}",
         "--lake", str(tmp_path / "lake"), "--available-now"],
        cwd=tmp_path, env={**env, "GRIDLAKE_DRIVER_MEMORY": "1g"}, capture_output=True,
        text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lake = open_lake(str(tmp_path / "lake"), spark=spark)
    warnings = [line.removeprefix("gridlake stream: ") for line in run.stderr.splitlines()
                if line.startswith("gridlake stream: ")]
    assert warnings.pop(0) == (
        f"7 file(s) or folder(s) in {landing} will not be read, because the stream reads only "
        "the .jsonl and .jsonl.gz files directly in it (or in a subfolder named like one): "
        "_x.jsonl, batch.json, day=2026-11-01/, "
        "old/, readings.jsonl.bz2 and 2 more (a CloudEvents batch array, .json, loads with "
        "gridlake backfill)")
    assert FileSource(str(landing)).unread_files() == (
        ["_x.jsonl", "batch.json", "day=2026-11-01/", "old/", "readings.jsonl.bz2",
         "x.jsonl/_y.jsonl", "x.jsonl/notes.txt"], {"huge.jsonl": MAX_FILE_BYTES + 1,
                                "x.jsonl/big.jsonl": MAX_FILE_BYTES + 1})
    for name in ("huge.jsonl", "x.jsonl/big.jsonl"):
        assert warnings.pop(0) == (
            f"{landing / name} will not be read: it is 536,870,913 bytes, more than the "
            "536,870,912 that gridlake reads from one file (Spark holds a file as one value): "
            "split it into new files")
    assert sorted(w.split(": ", 1)[1] for w in warnings) == sorted([
        f"{cut} is a damaged .gz: its compressed data ends early; the lines before the cut "
        "were loaded; the whole file is kept as one more record, without a line number",
        f"{corrupt} is a damaged .gz: its gzip member 2 is corrupt; the members before it "
        "were loaded; the whole file is kept as one more record, without a line number"])
    silver = spark.read.format("delta").load(lake.path(silver_readings()))
    assert {(r["device_id"], r["ts"]): (r["seq"], r["event_id"]) for r in silver.collect()} == {
        key: (v["seq"], v["_id"]) for key, v in truth.items()}
    bronze = spark.read.format("delta").load(lake.path(bronze_telemetry()))
    assert bronze.count() == len(records) + 2
    quarantine = spark.read.format("delta").load(lake.path(quarantine_telemetry()))
    kept = {r["record_id"]: bytes(r["payload"]) for r in quarantine.collect()}
    assert kept == {f"file:{r.path}#{r.line}": r.payload for r in invalid} | {
        f"file:{path}": path.read_bytes() for path in (cut, corrupt)}


@pytest.mark.slow
def test_steady_poison_flood_keeps_the_stream_up_and_every_bad_record_quarantined(
        spark, tmp_path):
    """A file lands every 2 s for 2 minutes into a running stream (1-second trigger); every
    tenth also carries the hostile lines. The stream keeps up: its backlog does not grow from
    the middle third of the flood to the last (a stream slower than the flood falls behind
    linearly: 1.5 times as far), and it drains within 60 s of the last file. It ends exactly
    once, each bad record in quarantine."""
    every, files_count, drain_within = 2.0, 60, 60.0
    fleet = tmp_path / "fleet"
    assert main(["generate", "--out", str(fleet), "--devices", "80", "--days", "1",
                 "--stream-files", str(files_count), "--late-devices", "0",
                 "--corrupt", "0.2", "--seed", "29"]) == 0
    files = sorted((fleet / "stream").glob("*.jsonl"))
    template = _valid_event(files[0])
    rng = random.Random(29)
    for path in files[::10]:
        poison = _poison_lines(template, rng)
        lines = path.read_bytes().splitlines()
        for payload in poison.values():
            lines.insert(rng.randrange(len(lines) + 1), payload)
        path.write_bytes(b"\n".join(lines) + b"\n")
    sizes = [len(list(oracle.read_records([path]))) for path in files]

    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    stream = StreamProcess(f"files:{landing}", lake_dir, "--trigger", "1")
    try:
        stream.wait_for_line("streaming ")
        landed, backlog = 0, []   # (seconds into the flood, records landed but not yet read)
        started = time.monotonic()
        for i, (path, size) in enumerate(zip(files, sizes, strict=True)):
            while (now := time.monotonic()) < started + i * every:
                backlog.append((now - started, landed - stream.read))
                time.sleep(0.25)
            os.replace(path, landing / path.name)   # atomic: the stream never sees half a file
            landed += size
        last_landing = time.monotonic()
        stream.wait_for(landed, timeout=drain_within + 120)
        drained_after = time.monotonic() - last_landing
        assert stream.stop() == 0, stream.tail()
    finally:
        stream.signal(signal.SIGKILL)

    flood = files_count * every
    middle = max(n for t, n in backlog if flood / 3 <= t < 2 * flood / 3)
    last = max(n for t, n in backlog if t >= 2 * flood / 3)
    print(f"flood of {sum(sizes)} records at {sum(sizes) / flood:.0f}/s: backlog at most "
          f"{middle} in the middle third, {last} in the last; drained {drained_after:.1f} s "
          "after the last file")
    assert last <= 1.25 * middle, stream.tail()
    assert drained_after <= drain_within, stream.tail()
    landed_files = sorted(landing.glob("*.jsonl"))
    lake = open_lake(str(lake_dir), spark=spark)
    _quarantined_exactly(spark, lake, check_exactly_once(spark, lake, landed_files))
