"""A poison flood: a fifth of the records corrupt, among them multi-megabyte and binary lines.

The stream takes every record into bronze byte for byte, quarantines each bad one with its
reason (the payload kept whole), and silver still equals the independent truth.
"""

from __future__ import annotations

import json
import random

from pyspark.sql import functions as F

from gridlake.cli import main
from gridlake.lake import open_lake
from shared_schemas.tables import bronze_telemetry, quarantine_telemetry, silver_readings
from streaming.query import StreamOptions, run_stream
from streaming.sources import FileSource
from tests import oracle
from tests.streaming.conftest import check_exactly_once

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


def test_poison_flood_is_quarantined_whole_and_silver_still_equals_the_truth(spark, tmp_path):
    fleet = tmp_path / "fleet"
    assert main(["generate", "--out", str(fleet), "--devices", "6", "--days", "1",
                 "--interval-minutes", "15", "--stream-files", "2", "--late-devices", "0",
                 "--corrupt", "0.2", "--seed", "23"]) == 0
    files = sorted((fleet / "stream").glob("*.jsonl"))
    template = next(json.loads(line) for line in files[0].read_bytes().splitlines()
                    if line.startswith(b'{"specversion"') and b'"data":{' in line)
    poison = _poison_lines(template, random.Random(23))
    poison_file = fleet / "stream" / "zz-poison.jsonl"
    poison_file.write_bytes(b"\n".join(poison.values()) + b"\n")

    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    lines: list[str] = []
    run_stream(spark, lake, FileSource(str(fleet / "stream"), max_files_per_trigger=3),
               StreamOptions(available_now=True), report=lines.append)

    records = list(oracle.read_records([*files, poison_file]))
    _, invalid = oracle.silver_truth(records)
    assert len(invalid) >= 0.15 * len(records)  # the flood is real
    record_id = {f"file:{r.path}#{r.line}": r for r in records}

    check_exactly_once(spark, lake, [*files, poison_file])
    bronze = spark.read.format("delta").load(lake.path(bronze_telemetry()))
    quarantine = spark.read.format("delta").load(lake.path(quarantine_telemetry()))
    quarantined = {r["record_id"]: r for r in quarantine.collect()}
    assert set(quarantined) == {f"file:{r.path}#{r.line}" for r in invalid}
    assert all(r["reason_codes"] for r in quarantined.values())

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
