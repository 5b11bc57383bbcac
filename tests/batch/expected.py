"""Test input for the batch half, and the rollups it should give, in plain Python.

Silver's expected content and the daily device rollups come from `tests.oracle` (an
independent reading of DESIGN.md); this module adds what the batch half puts on top: each
device-day's site and type, and the site rollups by local calendar day (zoneinfo, DST included).
Nothing here imports gridlake or shared_schemas.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from zoneinfo import ZoneInfo

from tests import oracle

DEVICE_TYPES = ("battery", "solar", "ev_charger", "meter")


# -- input -------------------------------------------------------------------------------------

def event(device: str, site: str, device_type: str, ts: str, seq: int, power: float,
          soc: float | None = None, event_id: str | None = None, hours: float = 1.0) -> dict:
    """A valid CloudEvent; energy follows power over an interval of `hours`."""
    return {
        "specversion": "1.0", "id": event_id or f"{device}-{ts}-{seq}",
        "source": f"/sites/{site}/devices/{device}", "type": "energy.telemetry.v1",
        "time": ts, "datacontenttype": "application/json",
        "data": {"device_id": device, "site_id": site, "device_type": device_type, "ts": ts,
                 "seq": seq, "power_w": power,
                 "energy_import_wh": round(max(power, 0.0) * hours, 3),
                 "energy_export_wh": round(max(-power, 0.0) * hours, 3),
                 "soc_pct": soc, "temperature_c": 20.5, "status": "ok"},
    }


def hourly(device: str, site: str, device_type: str, first: str, hours: int, seq0: int = 1,
           soc: bool = False) -> list[dict]:
    start = dt.datetime.fromisoformat(first)
    out = []
    for i in range(hours):
        ts = (start + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        power = round(1000 * math.sin(i / 3.0) + 37.25 * (i % 5), 2)
        out.append(event(device, site, device_type, ts, seq0 + i, power,
                         soc=round(50 + 40 * math.cos(i / 7.0), 2) if soc else None))
    return out


def dumps(ev: object) -> bytes:
    return json.dumps(ev, separators=(",", ":")).encode()


def now() -> dt.datetime:
    """The oracle's clock: naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# -- expected gold -----------------------------------------------------------------------------

def device_rollups(truth: dict) -> dict[tuple[str, dt.date], dict]:
    """The oracle's device rollups plus site_id and device_type of each day's latest reading."""
    out = oracle.daily_device_rollups(truth)
    latest: dict[tuple[str, dt.date], dict] = {}
    for (device, ts), reading in truth.items():
        key = (device, ts.date())
        if key not in latest or ts > latest[key]["ts"]:
            latest[key] = reading
    for key, row in out.items():
        row.update(site_id=latest[key]["site_id"], device_type=latest[key]["device_type"])
    return out


def day_hours(day: dt.date, zone: str) -> float:
    tz = ZoneInfo(zone)
    start = dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.UTC)
    return (end - start).total_seconds() / 3600


def site_rollups(truth: dict, zones: dict[str, str]) -> dict[tuple[str, dt.date], dict]:
    """Per site and local calendar day (the site's zone) of the readings' UTC `ts`."""
    groups: dict[tuple[str, dt.date], list[dict]] = defaultdict(list)
    for (_, ts), r in truth.items():
        if r["site_id"] in zones:
            local = ts.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(zones[r["site_id"]])).date()
            groups[(r["site_id"], local)].append(r)
    out = {}
    for (site, day), rows in groups.items():
        row = {"timezone": zones[site], "local_day_hours": day_hours(day, zones[site]),
               "devices": len({r["device_id"] for r in rows}), "samples": len(rows),
               "energy_import_wh": math.fsum(float(r["energy_import_wh"]) for r in rows),
               "energy_export_wh": math.fsum(float(r["energy_export_wh"]) for r in rows)}
        for t in DEVICE_TYPES:
            of_type = [r for r in rows if r["device_type"] == t]
            for side in ("import", "export"):
                row[f"{t}_energy_{side}_wh"] = (
                    math.fsum(float(r[f"energy_{side}_wh"]) for r in of_type)
                    if of_type else None)
        out[(site, day)] = row
    return out


def same(actual: dict, expected: dict, what: str) -> None:
    """Assert two {key: {column: value}} maps are equal (floats to 1e-9 relative)."""
    missing, extra = expected.keys() - actual.keys(), actual.keys() - expected.keys()
    assert not missing and not extra, \
        f"{what}: missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
    for key, row in expected.items():
        for column, want in row.items():
            got = actual[key][column]
            if isinstance(want, float):
                assert oracle.close(got, want), f"{what} {key} {column}: {got} != {want}"
            else:
                assert got == want, f"{what} {key} {column}: {got!r} != {want!r}"
