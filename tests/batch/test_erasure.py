"""forget: a device leaves no byte behind (with --now), others are untouched, rollups follow."""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import re
import zlib
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from batch.late_reports import backfill
from batch.sites import load_sites
from tests import oracle
from tests.batch import expected as X
from tests.batch.conftest import rows_by, table, versions

ROLLUP_VALUES = ("site_id", "device_type", "samples", "energy_import_wh", "energy_export_wh",
                 "min_power_w", "max_power_w", "avg_power_w", "min_soc_pct", "max_soc_pct")
TABLES = ("bronze/telemetry", "quarantine/telemetry", "silver/readings",
          "gold/daily_device_rollups", "gold/daily_site_rollups", "_gridlake/batches",
          "_gridlake/loaded_files", "_gridlake/rollups")


def records_of(records, device: str) -> list[oracle.Record]:
    """The generated records that belong to `device`: its readings, and broken records naming it."""
    token = re.compile(rb"(?<![A-Za-z0-9])" + re.escape(device.encode()) + rb"(?![A-Za-z0-9])")
    return [r for r in records if token.search(r.payload)]


def event_ids(records) -> set[str]:
    ids = set()
    for r in records:
        with contextlib.suppress(ValueError, TypeError, KeyError, UnicodeDecodeError):
            ids.add(json.loads(r.payload)["id"])
    return {i for i in ids if isinstance(i, str) and len(i) >= 8}


def byte_scan(root: str, needles: set[bytes]) -> list[str]:
    """Every file under the lake, except the audit table, that holds any needle."""
    hits = []
    for folder, _, names in os.walk(root):
        if f"{os.sep}_gridlake{os.sep}erasures" in folder + os.sep:
            continue
        for name in names:
            data = (Path(folder) / name).read_bytes()
            hits += [f"{folder}/{name}: {n!r}" for n in needles if n in data]
    return hits


def others(spark, lake, device: str):
    silver = sorted(tuple(r) for r in table(spark, lake, "silver/readings")
                    .where(F.col("device_id") != device)
                    .drop("written_at").collect())
    gold = {k: {c: r[c] for c in ROLLUP_VALUES}
            for k, r in rows_by(spark, lake, "gold/daily_device_rollups", "device_id",
                                "day").items() if k[0] != device}
    return silver, gold


@pytest.mark.long
def test_forget_erases_every_trace_and_leaves_others_alone(spark, lake, cli, small_fleet):
    backfill(spark, lake, [small_fleet / "stream", small_fleet / "late"])
    load_sites(spark, lake, small_fleet / "sites.csv")
    records = list(oracle.read_records([*(small_fleet / "stream").iterdir(),
                                        *(small_fleet / "late").iterdir()]))
    with open(small_fleet / "sites.csv", newline="") as f:
        zones = {row["site_id"]: row["timezone"] for row in csv.DictReader(f)}
    now = X.now()
    # D00001 sent a late .jsonl report (its id is in file names), D00005 a .json batch.
    gone, later = "D00001", "D00005"
    assert any(p.name.startswith(gone) for p in (small_fleet / "late").iterdir())

    # A hostile id is a value: it matches nothing and nothing is written. Nor do values that
    # only appear inside other values: a site id (in every source of its devices), a status,
    # a device type. No record has them as its device id, so nothing is redacted either.
    silver = table(spark, lake, "silver/readings")
    mentions = [silver.where(F.col("device_id") == gone).first()["site_id"],
                silver.where(F.col("status").isNotNull()).first()["status"],
                silver.first()["device_type"]]
    assert not set(mentions) & {r["device_id"] for r in silver.select("device_id").collect()}
    marks = {t: versions(spark, lake, t) for t in TABLES}
    for value in ("x' OR 1=1 --", *mentions):
        status, out, _ = cli("forget", "--lake", lake.root, "--device", value)
        assert status == 0 and "nothing erased" in out, (value, out)
    assert {t: versions(spark, lake, t) for t in TABLES} == marks

    # Default: erased now, old files kept for the retention period (time travel still works).
    silver_before = versions(spark, lake, "silver/readings")
    status, out, _ = cli("forget", "--lake", lake.root, "--device", later)
    assert status == 0 and "vacuum pending" in out
    certificate = json.loads(out[out.index("{"):])
    assert certificate["pending_vacuum_after"] and certificate["mode"] == "retention"
    assert table(spark, lake, "silver/readings").where(F.col("device_id") == later).count() == 0
    assert table(spark, lake, "silver/readings", version=silver_before).where(
        F.col("device_id") == later).count() > 0
    # The certificate's advice, `forget --now` once the device is gone from every table,
    # finishes the erasure: the old files go although no row is found this time.
    status, out, _ = cli("forget", "--lake", lake.root, "--device", later, "--now")
    certificate = json.loads(out[out.index("{"):])
    assert status == 0 and certificate["rows_removed"] == 0 and certificate["files_removed"] > 0
    assert certificate["verification"]["residual_files"] == []
    assert byte_scan(lake.root, {later.encode()}) == []
    # Finished: another --now of it finds nothing to do (and vacuums nothing again).
    status, out, _ = cli("forget", "--lake", lake.root, "--device", later, "--now")
    assert status == 0 and "nothing erased" in out

    silver_others, gold_others = others(spark, lake, gone)
    status, out, err = cli("forget", "--lake", lake.root, "--device", gone, "--now")
    assert status == 0 and "time travel" in err, err
    certificate = json.loads(out[out.index("{"):])
    for path in ("bronze/telemetry", "silver/readings", "gold/daily_device_rollups",
                 "quarantine/telemetry"):
        assert certificate["tables"][path]["rows_removed"] > 0, path
    assert certificate["tables"]["_gridlake/loaded_files"]["rows_redacted"] == 1
    assert certificate["verification"]["residual_files"] == []
    assert certificate["pending_vacuum_after"] is None and certificate["files_removed"] > 0

    # No byte of either device, nor of their events, anywhere in the lake.
    mine = records_of(records, gone) + records_of(records, later)
    needles = {gone.encode(), later.encode()} | {i.encode() for i in event_ids(mine)}
    assert len(needles) > 100
    assert byte_scan(lake.root, needles) == []

    # Others unchanged; rollups are those of the fleet without the two devices.
    assert others(spark, lake, gone) == (silver_others, gold_others)
    truth = oracle.silver_truth([r for r in records if r not in mine], now)[0]
    X.same(rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day"),
           X.device_rollups(truth), "daily device rollups")
    X.same(rows_by(spark, lake, "gold/daily_site_rollups", "site_id", "local_day"),
           X.site_rollups(truth, zones), "daily site rollups")

    audit = table(spark, lake, "_gridlake/erasures").collect()
    assert sorted(r["device_id"] for r in audit) == sorted(
        ["x' OR 1=1 --", *mentions, later, later, later, gone])
    assert all(r["rows_removed"] == 0 for r in audit if r["device_id"] not in (later, gone))


def test_hostile_paths_and_ids_are_values_refused_with_one_sentence(cli, tmp_path):
    hostile = tmp_path / "x' OR 1=1 --" / ".." / ".." / "etc"
    status, _, err = cli("forget", "--lake", hostile, "--device", "D00001")
    assert status == 1 and "is not a gridlake lake" in err and len(err.strip().splitlines()) == 1
    status, _, err = cli("forget", "--lake", tmp_path, "--device", " ")
    assert status == 1 and "device id is empty" in err
    status, _, err = cli("quarantine", "--lake", hostile, "list")
    assert status == 1 and "is not a gridlake lake" in err
    assert not (tmp_path / "x' OR 1=1 --").exists()


@pytest.mark.long
def test_a_damaged_gzip_file_goes_with_the_device_whose_lines_it_holds(spark, lake, cli, tmp_path):
    # A landing file of two devices cut short: the lines before the cut load as records (the
    # first device's are all valid and go to silver), and the file as received (compressed,
    # so no token search sees an id in it) is one more record, in bronze and in quarantine.
    landing = tmp_path / "landing"
    landing.mkdir()
    lines = [X.dumps(X.event(device, "S001", "meter", f"2026-11-03T{h:02d}:00:00Z", 1, 5.0))
             for device in ("D00077", "D00078") for h in range(24)]
    packed = gzip.compress(b"\n".join(lines) + b"\n")
    (landing / "batch-0007.jsonl.gz").write_bytes(packed[:len(packed) * 4 // 5])
    # A device known only from a record too broken to parse is not erased, but counted.
    (landing / "batch-0008.jsonl").write_bytes(b'{"data": {"device_id": "D00099", "power_w"\n')
    backfill(spark, lake, [landing])

    def holding(device: str) -> dict[str, int]:
        """Rows of bronze and quarantine whose payload, gunzipped as far as it goes, names it."""
        found = {}
        for path in ("bronze/telemetry", "quarantine/telemetry"):
            found[path] = 0
            for row in table(spark, lake, path).select("payload").collect():
                payload = bytes(row["payload"])
                with contextlib.suppress(zlib.error):
                    payload += zlib.decompressobj(wbits=31).decompress(payload)
                found[path] += device.encode() in payload
        return found

    assert table(spark, lake, "quarantine/telemetry").where(
        F.col("source_line").isNull()).count() == 1  # the damaged file as received
    assert holding("D00077")["quarantine/telemetry"] == 1  # that record, and no line of D00077
    status, out, _ = cli("forget", "--lake", lake.root, "--device", "D00077", "--now")
    assert status == 0, out
    assert holding("D00077") == {"bronze/telemetry": 0, "quarantine/telemetry": 0}
    silver = table(spark, lake, "silver/readings")
    assert {r["device_id"] for r in silver.collect()} == {"D00078"}

    status, out, _ = cli("forget", "--lake", lake.root, "--device", "D00099")
    certificate = json.loads(out[out.index("{"):])
    assert status == 0 and "nothing erased" in out and certificate["unparsed_mentions"] == 1
    assert holding("D00099")["bronze/telemetry"] == 1
