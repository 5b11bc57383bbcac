"""Fixtures of the batch tests: a fresh lake, the CLI on the test session, table readers."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests import oracle


@pytest.fixture
def lake(spark, tmp_path):
    from gridlake.lake import open_lake

    return open_lake(str(tmp_path / "lake"), create=True, spark=spark)


def table(spark, lake, path: str, version: int | None = None):
    from batch.delta_io import read_at

    return read_at(spark, lake.path(path), version)


def rows_by(spark, lake, path: str, *key: str) -> dict[tuple, dict]:
    return {tuple(r[k] for k in key): r.asDict() for r in table(spark, lake, path).collect()}


def silver_winners(spark, lake) -> dict[tuple[str, dt.datetime], tuple[int, str]]:
    """(device_id, ts as naive UTC, like tests.oracle) → (seq, event id) of every silver row."""
    from pyspark.sql import functions as F

    rows = table(spark, lake, "silver/readings").select(
        "device_id", F.unix_micros("ts").alias("us"), "seq", "event_id").collect()
    epoch = dt.datetime(1970, 1, 1)
    return {(r["device_id"], epoch + dt.timedelta(microseconds=r["us"])): (r["seq"], r["event_id"])
            for r in rows}


def winners(truth: dict) -> dict[tuple[str, dt.datetime], tuple[int, str]]:
    """The same view of the oracle's truth."""
    return {key: (r["seq"], r["_id"]) for key, r in truth.items()}


def versions(spark, lake, path: str) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, lake.path(path)).history(1).first()["version"]


def stream_batches(spark, lake, groups, first: int = 0) -> None:
    """What the stream's foreachBatch does, one micro-batch per group of landing files,
    numbered from `first`."""
    from gridlake.ingest import WriteContext, record_batch, write_batch
    from streaming.sources import read_files

    for batch_id, files in enumerate(groups, start=first):
        raw = read_files(spark, [str(p) for p in files])
        ctx = WriteContext.now(run_id="stream-beside-batch", batch_id=batch_id, kind="stream",
                               source="files:test")
        record_batch(spark, lake, write_batch(spark, lake, raw, ctx), ctx)


@dataclass(frozen=True)
class Race:
    """The records of a race with a `forget`: the stream's first half (read before the race),
    then the second half and the late reports without `device`, whose days are `days`."""
    first: Path
    landing: Path
    late: Path
    device: str
    days: list[dt.date]
    zones: dict[str, str]


def prepare_race(fleet: Path, workdir: Path) -> Race:
    """Copy the fleet's first stream half to `first`, pick its first device, and write the
    rest of the stream (to `landing`) and the late reports (to `late`) without it."""
    from tests.batch import expected as X

    stream = sorted((fleet / "stream").glob("*.jsonl"))
    first = workdir / "first"
    first.mkdir()
    for path in stream[:len(stream) // 2]:
        (first / path.name).write_bytes(path.read_bytes())
    truth, _ = oracle.silver_truth(oracle.read_records(first.iterdir()), X.now())
    device = sorted({key[0] for key in truth})[0]
    landing = without_device(device, fleet / "stream", workdir / "landing")
    for path in first.iterdir():
        (landing / path.name).unlink()
    zones = {r["site_id"]: r["timezone"]
             for r in csv.DictReader((fleet / "sites.csv").open(encoding="utf-8"))}
    return Race(first, landing, without_device(device, fleet / "late", workdir / "late"),
                device, sorted({key[1].date() for key in truth}), zones)


def without_device(device: str, source: Path, target: Path) -> Path:
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


def check_forgotten_in_the_end(spark, lake, race: Race) -> None:
    """After writers raced over the race's records and a `forget` of its device: silver and
    both gold tables equal the independent answer without the device, no bronze or quarantine
    payload names it, and every other record read is in bronze once and every invalid one in
    quarantine once, by its folder, file and line."""
    from pyspark.sql import functions as F

    from tests.batch import expected as X

    device, zones = race.device, race.zones
    files = [path for folder in (race.first, race.landing, race.late)
             for path in sorted(folder.iterdir())]
    truth, invalid = oracle.silver_truth(oracle.read_records(files), X.now())
    truth = {key: value for key, value in truth.items() if key[0] != device}
    assert silver_winners(spark, lake) == winners(truth)
    X.same(rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day"),
           X.device_rollups(truth), "daily device rollups")
    X.same(rows_by(spark, lake, "gold/daily_site_rollups", "site_id", "local_day"),
           X.site_rollups(truth, zones), "daily site rollups")
    bronze = table(spark, lake, "bronze/telemetry")
    assert bronze.where(F.col("payload").cast("string").contains(device)).count() == 0
    quarantine = table(spark, lake, "quarantine/telemetry")
    assert quarantine.where(F.col("payload").cast("string").contains(device)).count() == 0
    kept = [r for r in oracle.read_records(files) if device.encode() not in r.payload]
    assert _coordinates(bronze) == Counter(_where(r) for r in kept)
    assert {r[0] for r in quarantine.select("status").distinct().collect()} <= {"quarantined"}
    assert _coordinates(quarantine) == Counter(
        _where(r) for r in invalid if device.encode() not in r.payload)


def _where(record: oracle.Record) -> tuple[str, int]:
    path = Path(record.path)
    return f"{path.parent.name}/{path.name}", record.line


def _coordinates(frame) -> Counter:
    """(folder/file, line) of every row; a .json file that is not an array is one record,
    line 1 in the oracle's numbering."""
    out: Counter = Counter()
    for r in frame.select("source_file", "source_line").collect():
        path = Path(unquote(urlparse(r["source_file"]).path))
        out[(f"{path.parent.name}/{path.name}", r["source_line"] or 1)] += 1
    return out
