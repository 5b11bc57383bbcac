"""An independent, plain-Python reading of DESIGN.md, used by tests as the expected answer.

It shares no code with gridlake: it re-reads the input files, re-validates each record from
the contract table in DESIGN.md, applies the upsert rule, and rolls up days, all with the
standard library. If gridlake and this module disagree, one of them misreads the design.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
DEVICE_TYPES = {"battery", "solar", "ev_charger", "meter"}


@dataclass(frozen=True)
class Record:
    path: str
    line: int
    payload: bytes


def read_records(paths: Iterable[Path]) -> Iterator[Record]:
    """Every record in .jsonl, .jsonl.gz and .json (batch array) files, like a reader sees it."""
    for path in sorted(Path(p) for p in paths):
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        if path.suffix == ".json":
            try:
                items = json.loads(raw)
            except ValueError:
                items = None
            if isinstance(items, list):
                for i, item in enumerate(items, start=1):
                    yield Record(str(path), i, json.dumps(item).encode())
            else:
                yield Record(str(path), 1, raw)
            continue
        for i, line in enumerate(raw.split(b"\n"), start=1):
            if line.strip():
                yield Record(str(path), i, line)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63


def _is_num(v) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)
            and not (isinstance(v, float) and math.isnan(v)))


def parse_ts(text: str) -> dt.datetime:
    """RFC 3339 text → naive UTC datetime."""
    value = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def event_of(record: Record, ingest_time: dt.datetime) -> dict | None:
    """The event if the record is valid per DESIGN.md, else None."""
    try:
        text = record.payload.decode("utf-8")
        event = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(event, dict):
        return None
    for attr in ("id", "source", "type", "time", "specversion"):
        if event.get(attr) is None:
            return None
    if event["specversion"] != "1.0" or event["type"] != "energy.telemetry.v1":
        return None
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    for name in ("device_id", "site_id"):
        if not isinstance(data.get(name), str) or not ID.match(data[name]):
            return None
    if data.get("device_type") not in DEVICE_TYPES:
        return None
    ts = data.get("ts")
    if not isinstance(ts, str) or not RFC3339.match(ts):
        return None
    try:
        ts_value = parse_ts(ts)
    except ValueError:
        return None
    if ts_value > ingest_time + dt.timedelta(minutes=5):
        return None
    if not _is_int(data.get("seq")) or data["seq"] < 0:
        return None
    if not _is_num(data.get("power_w")) or abs(data["power_w"]) > 1_000_000:
        return None
    for name in ("energy_import_wh", "energy_export_wh"):
        if not _is_num(data.get(name)) or not 0 <= data[name] <= 1_000_000:
            return None
    for name, low, high in (("soc_pct", 0, 100), ("temperature_c", -60, 120)):
        value = data.get(name)
        if value is not None and (not _is_num(value) or not low <= value <= high):
            return None
    status = data.get("status")
    if status is not None and (not isinstance(status, str) or len(status) > 64):
        return None
    return {**data, "ts": ts_value, "_id": event["id"], "_record": record}


def _wins(new: dict, old: dict) -> bool:
    return (new["seq"], new["_id"]) > (old["seq"], old["_id"])


def silver_truth(records: Iterable[Record], ingest_time: dt.datetime | None = None
                 ) -> tuple[dict[tuple[str, dt.datetime], dict], list[Record]]:
    """(latest valid reading per key, the invalid records)."""
    ingest_time = ingest_time or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    truth: dict[tuple[str, dt.datetime], dict] = {}
    invalid = []
    for record in records:
        event = event_of(record, ingest_time)
        if event is None:
            invalid.append(record)
            continue
        key = (event["device_id"], event["ts"])
        if key not in truth or _wins(event, truth[key]):
            truth[key] = event
    return truth, invalid


def daily_device_rollups(truth: dict) -> dict[tuple[str, dt.date], dict]:
    days: dict[tuple[str, dt.date], list[dict]] = defaultdict(list)
    for (device, ts), reading in truth.items():
        days[(device, ts.date())].append(reading)
    out = {}
    for key, readings in days.items():
        powers = [float(r["power_w"]) for r in readings]
        socs = [float(r["soc_pct"]) for r in readings if r.get("soc_pct") is not None]
        out[key] = {
            "samples": len(readings),
            "energy_import_wh": math.fsum(float(r["energy_import_wh"]) for r in readings),
            "energy_export_wh": math.fsum(float(r["energy_export_wh"]) for r in readings),
            "min_power_w": min(powers), "max_power_w": max(powers),
            "avg_power_w": math.fsum(powers) / len(powers),
            "min_soc_pct": min(socs) if socs else None,
            "max_soc_pct": max(socs) if socs else None,
        }
    return out


def close(a, b, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
