"""Four writers at once, each its own process and Spark: the stream, a late-report backfill
over the same days, a reprocess of those days and a `forget` of one device. Every job must
succeed (lost write races retried) and the tables must end equal to the independent answer.

The forgotten device sends nothing while the jobs run (its lines are left out of the files
they read), so the answer does not depend on which job commits first. `reprocess` decides
from a bronze snapshot: when `forget` erases the device after that read, what reprocess wrote
of it must be removed again (`batch.erasure.drop_erased`).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from pyspark.sql import functions as F

from gridlake.lake import Lake
from tests import oracle
from tests.batch import expected as X
from tests.batch.conftest import rows_by, silver_winners, winners

REPO = Path(__file__).resolve().parents[2]


def _gridlake(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "GRIDLAKE_DRIVER_MEMORY": "1g"}
    return subprocess.Popen([sys.executable, "-m", "gridlake.cli", *map(str, argv)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _finish(name: str, process: subprocess.Popen, timeout: float = 1500) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"{name} exited {process.returncode}:\n{out[-4000:]}"
    return out


def _without(device: str, source: Path, target: Path) -> Path:
    """A copy of `source`'s record files without the device's records."""
    target.mkdir(parents=True, exist_ok=True)
    name = device.encode()
    for path in sorted(source.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".json":  # one batch: a JSON array of events
            try:
                items = json.loads(data)
            except ValueError:
                items = None
            if isinstance(items, list):
                data = json.dumps([i for i in items if device not in json.dumps(i)]).encode()
            elif name in data:
                continue
        else:
            data = b"\n".join(line for line in data.split(b"\n") if name not in line)
        (target / path.name).write_bytes(data)
    return target


@pytest.mark.slow
def test_stream_backfill_reprocess_and_forget_at_once_end_right(spark, small_fleet, tmp_path):
    stream = sorted((small_fleet / "stream").glob("*.jsonl"))
    zones = {r["site_id"]: r["timezone"]
             for r in csv.DictReader((small_fleet / "sites.csv").open(encoding="utf-8"))}
    lake_dir = tmp_path / "lake"
    first, rest = tmp_path / "first", tmp_path / "landing"
    first.mkdir()
    for path in stream[:len(stream) // 2]:
        (first / path.name).write_bytes(path.read_bytes())
    _finish("the first stream run", _gridlake("stream", "--source", f"files:{first}",
                                               "--lake", lake_dir, "--available-now"))
    _finish("sites", _gridlake("sites", "--lake", lake_dir, "load", small_fleet / "sites.csv"))
    records = list(oracle.read_records(first.iterdir()))
    truth, _ = oracle.silver_truth(records, X.now())
    device = sorted({key[0] for key in truth})[0]
    days = sorted({key[1].date() for key in truth})

    # The second half of the stream and the late reports, without the device.
    landing = _without(device, small_fleet / "stream", rest)
    for path in stream[:len(stream) // 2]:
        (landing / path.name).unlink()
    late = _without(device, small_fleet / "late", tmp_path / "late")

    jobs = {
        "stream": _gridlake("stream", "--source", f"files:{landing}", "--lake", lake_dir,
                            "--available-now", "--max-files-per-trigger", "1"),
        "backfill": _gridlake("backfill", "--lake", lake_dir, "--files-per-batch", "1", late),
        "reprocess": _gridlake("reprocess", "--lake", lake_dir, "--from", days[0],
                               "--to", days[-1]),
        "forget": _gridlake("forget", "--lake", lake_dir, "--device", device),
    }
    for name, process in jobs.items():
        _finish(name, process)
    _finish("rollup", _gridlake("rollup", "--lake", lake_dir, "--changed"))

    everything = oracle.read_records([*first.iterdir(), *landing.iterdir(), *late.iterdir()])
    truth, invalid = oracle.silver_truth(everything, X.now())
    truth = {key: value for key, value in truth.items() if key[0] != device}
    lake = Lake(str(lake_dir.resolve()))
    assert silver_winners(spark, lake) == winners(truth)
    X.same(rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day"),
           X.device_rollups(truth), "daily device rollups")
    X.same(rows_by(spark, lake, "gold/daily_site_rollups", "site_id", "local_day"),
           X.site_rollups(truth, zones), "daily site rollups")
    bronze = spark.read.format("delta").load(lake.path("bronze/telemetry"))
    assert bronze.where(F.col("payload").cast("string").contains(device)).count() == 0
    quarantine = spark.read.format("delta").load(lake.path("quarantine/telemetry"))
    assert quarantine.where(F.col("payload").cast("string").contains(device)).count() == 0
    # Every record read is in bronze once, and every invalid one in quarantine once, by its
    # folder, file and line (the device's records erased).
    kept = [r for r in oracle.read_records([*first.iterdir(), *landing.iterdir(),
                                            *late.iterdir()])
            if device.encode() not in r.payload]
    assert _coordinates(bronze) == Counter(_where(r) for r in kept)
    assert {r[0] for r in quarantine.select("status").distinct().collect()} <= {"quarantined"}
    assert _coordinates(quarantine) == Counter(
        _where(r) for r in invalid if device.encode() not in r.payload)


def _where(record: oracle.Record) -> tuple[str, int]:
    path = Path(record.path)
    return f"{path.parent.name}/{path.name}", record.line


def _coordinates(table) -> Counter:
    """(folder/file, line) of every row; a .json file that is not an array is one record,
    line 1 in the oracle's numbering."""
    out: Counter = Counter()
    for r in table.select("source_file", "source_line").collect():
        path = Path(unquote(urlparse(r["source_file"]).path))
        out[(f"{path.parent.name}/{path.name}", r["source_line"] or 1)] += 1
    return out
