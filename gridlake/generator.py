"""A deterministic synthetic energy-IoT fleet: CloudEvents telemetry with the mess real fleets make.

`generate_records` is the pure part: from `GenerateOptions` alone (the seed included) it yields
every output line in delivery order; the same options always give byte-identical output.
`write_fleet` is the small edge that writes those records under one folder:

    OUT/stream/part-NNNN.jsonl    live CloudEvents, one JSON object a line, split by delivery time
    OUT/late/<device>_<start>.jsonl[.gz] | .json
                                  one late report per device outage (the .json ones are
                                  CloudEvents batches: a JSON array of event objects)
    OUT/sites.csv, OUT/devices.csv  the site registry and the devices installed at each site
    OUT/manifest.json             options and counts, for people (not an answer key)

Conventions the data follows:

- **Time.** `--start` is UTC midnight. A reading's `ts` is the end of its interval, on the grid
  `start + k * interval` for `k = 0 .. days * 1440 // interval - 1`; the CloudEvents `time`
  attribute equals `ts`. Site behaviour (house load, EV sessions, battery schedule) follows the
  site's local clock (IANA zone, DST included); the sun follows its latitude and longitude.
- **Sign of power.** `power_w` is seen from the grid: positive = drawing power (a meter importing,
  a battery charging, an EV charging), negative = delivering it (solar producing, a battery
  discharging, a meter exporting). `energy_import_wh = power_w * interval_hours` when power is
  positive and `energy_export_wh = -power_w * interval_hours` when negative; the other side is 0.
- **Devices.** Solar follows the sun's elevation (exactly 0 while the sun is down), scaled by a
  per-day clear/partly-cloudy/overcast regime that never blacks out midday. A battery charges
  from solar surplus and discharges in the evening to cover the house; `soc_pct` integrates its
  power (the value at `ts` is after that interval), stays within 0..100 and is null on every
  other device type. EV chargers run sessions (mostly evenings) at 7-11 kW for 1-4 hours with
  status "charging", else 0 W and "idle". The meter measures the site's net exchange with the
  grid: house load (base, morning bump, evening peak, noise, appliance spikes) plus the EV and
  battery, minus solar.
- **seq** counts a device's transmissions: it grows by one for every message the device sends,
  in the order it sends them (buffered readings are sent when the device reconnects).

Anomalies (each a fraction of the fleet's valid readings, sampled exactly):

- duplicates: the byte-identical line delivered again later;
- corrections: the same `(device_id, ts)` re-sent later with a higher seq, a new id and changed
  values; a quarter of them overtake their original and arrive first;
- conflicts: the same key and seq with a different id and different values (a producer bug);
- late devices: a device is offline for hours to a day and a half; its readings for that
  window are absent from stream/ and sent as one late report when it reconnects (their
  duplicates, corrections and conflicts travel in the same report);
- corrupt lines (a fraction of all lines): one line for every way the contract in
  `shared_schemas` can reject a record, cycled, mixed into stream/ and the .jsonl late reports
  (a .json batch stays parseable, so it carries none). Each breaks exactly one rule.

A few valid events also carry an unknown `data` field and an extra CloudEvents extension.

Example:
    >>> from pathlib import Path
    >>> from gridlake.generator import GenerateOptions, write_fleet
    >>> summary = write_fleet(GenerateOptions(devices=4, days=1), Path("/tmp/fleet"))  # doctest: +SKIP
    >>> summary.counts["readings"]                                                     # doctest: +SKIP
    1152
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import heapq
import json
import math
import random
import re
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from gridlake.errors import BadArgumentError
from shared_schemas import rules as R
from shared_schemas.contract import CURRENT, ID_PATTERN, Field
from shared_schemas.rules import rules_for

UTC = dt.UTC
LAST_END = dt.date(9999, 1, 1)  # readings, late uploads and their timestamps stay in the calendar
GENERATOR = "gridlake generate"  # the manifest's mark: a folder this command may replace

# Where sites are: (IANA zone, latitude, longitude, annual mean °C, seasonal swing °C, warmest day of year).
PLACES = (
    ("Europe/Berlin", 52.52, 13.40, 10.0, 9.0, 200),
    ("America/New_York", 40.71, -74.01, 13.0, 12.0, 200),
    ("Australia/Sydney", -33.87, 151.21, 18.5, 5.0, 20),
    ("Asia/Kolkata", 22.57, 88.36, 27.0, 5.0, 140),
    ("UTC", 51.48, 0.0, 11.0, 6.0, 200),
)
# What a site has installed, with how often; the last site is cut short to fit --devices.
COMPOSITIONS = (
    (("meter", "solar", "battery"), 0.5),
    (("meter", "solar", "battery", "ev_charger"), 0.3),
    (("meter", "solar"), 0.1),
    (("meter", "ev_charger"), 0.1),
)
EARLY_CORRECTION_SHARE = 0.25  # corrections that overtake their original
BATTERY_DEADBAND_W = 100.0  # a battery idles rather than trickle below this
BATTERY_EFFICIENCY = 0.95
BATTERY_RESERVE_PCT = 10.0  # kept for backup; the evening discharge stops here
RARE_STATUSES = ("comm_retry", "firmware_update", "degraded")
EXTENSION_ATTRIBUTE = "partitionkey"  # CloudEvents partitioning extension
UNKNOWN_DATA_FIELD = "firmware_version"
PROGRESS_MIN_READINGS = 50_000


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate; every default is fixed so a seed alone decides the output."""

    devices: int = 20
    days: int = 2
    start: dt.date = dt.date(2026, 11, 1)  # UTC midnight
    interval_minutes: int = 5
    seed: int = 7
    stream_files: int = 4
    duplicates: float = 0.01
    corrections: float = 0.005
    conflicts: float = 0.002
    late_devices: float = 0.2
    corrupt: float = 0.01
    gzip_late: bool = False

    def check(self) -> None:
        """Raise `BadArgumentError` (one sentence) if an option is out of bounds."""
        for name in ("devices", "days", "stream_files"):
            if getattr(self, name) <= 0:
                raise BadArgumentError(f"--{name.replace('_', '-')} is {getattr(self, name)}; it must be greater than 0.")
        if not 1 <= self.interval_minutes <= 1440:
            raise BadArgumentError(
                f"--interval-minutes is {self.interval_minutes}; it must be between 1 and 1440.")
        for name in ("duplicates", "corrections", "conflicts", "late_devices", "corrupt"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise BadArgumentError(
                    f"--{name.replace('_', '-')} is {value}; it must be a fraction between 0 and 1.")
        if self.corrupt >= 1.0:
            raise BadArgumentError("--corrupt is 1; it must be below 1 or no valid line would remain.")
        if self.days > (LAST_END - self.start).days:
            raise BadArgumentError(
                f"--start {self.start} with --days {self.days} runs past {LAST_END}; "
                f"give an earlier start or fewer days.")


@dataclass(frozen=True)
class Site:
    site_id: str
    timezone: str
    latitude: float
    longitude: float
    mean_temp_c: float
    temp_swing_c: float
    warmest_day: int


@dataclass(frozen=True)
class Device:
    index: int
    device_id: str
    site_id: str
    device_type: str


@dataclass(frozen=True)
class Fleet:
    sites: tuple[Site, ...]
    devices: tuple[Device, ...]


@dataclass(frozen=True)
class StreamLine:
    """One line for stream file number `file_index`."""

    file_index: int
    line: bytes


@dataclass(frozen=True)
class LateReport:
    """One late report file: `name` under late/, its lines, and whether it is a JSON batch."""

    name: str
    lines: tuple[bytes, ...]
    batch: bool


@dataclass(frozen=True)
class Progress:
    readings: int


@dataclass(frozen=True)
class Summary:
    """What was generated: counts per category (for people, not an answer key)."""

    counts: dict[str, int] = field(default_factory=dict)
    corrupt_by_rule: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The fleet


def build_fleet(options: GenerateOptions, rng: random.Random) -> Fleet:
    """Sites rotate through PLACES (so every zone appears); devices are numbered across sites."""
    allowed = set(CURRENT.field("device_type").allowed or ())
    used = {t for composition, _ in COMPOSITIONS for t in composition}
    if used != allowed:
        raise ValueError(f"the generator simulates {sorted(used)}; the contract allows {sorted(allowed)}")
    compositions = [c for c, _ in COMPOSITIONS]
    weights = [w for _, w in COMPOSITIONS]
    sites: list[Site] = []
    devices: list[Device] = []
    while len(devices) < options.devices:
        zone, lat, lon, mean, swing, warmest = PLACES[len(sites) % len(PLACES)]
        site = Site(f"S{len(sites) + 1:03d}", zone, round(lat + rng.uniform(-0.3, 0.3), 4),
                    round(lon + rng.uniform(-0.3, 0.3), 4), mean, swing, warmest)
        sites.append(site)
        for device_type in rng.choices(compositions, weights)[0]:
            if len(devices) == options.devices:
                break
            devices.append(Device(len(devices), f"D{len(devices) + 1:05d}", site.site_id, device_type))
    pattern = re.compile(ID_PATTERN)
    for device in devices:
        if not (pattern.fullmatch(device.device_id) and pattern.fullmatch(device.site_id)):
            raise ValueError(f"generated ids {device.device_id}/{device.site_id} break {ID_PATTERN}")
    return Fleet(tuple(sites), tuple(devices))


# ---------------------------------------------------------------------------------------------
# Physics: one model per site, stepped through time


def _sun(when: dt.datetime) -> tuple[float, float]:
    """(declination in radians, equation of time in minutes) — NOAA's low-precision formulas."""
    day = when.timetuple().tm_yday
    g = 2 * math.pi / 365 * (day - 1 + (when.hour - 12) / 24)
    eq_time = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
                        - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g))
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    return decl, eq_time


def _gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


class _SiteModel:
    """The state of one site (weather, battery charge, EV sessions) advanced one step at a time."""

    def __init__(self, site: Site, devices: list[Device], rng: random.Random,
                 first: dt.datetime, last: dt.datetime):
        self.site = site
        self.devices = devices
        self.rng = rng
        self.tz = ZoneInfo(site.timezone)
        self.lat = math.radians(site.latitude)
        types = {d.device_type for d in devices}
        self.load_base = rng.uniform(150, 450)
        self.load_morning = rng.uniform(400, 1200)
        self.load_evening = rng.uniform(1200, 2800)
        self.solar_wp = rng.uniform(3000, 9000) if "solar" in types else 0.0
        self.battery_wh = rng.choice((5000.0, 10000.0, 13500.0)) if "battery" in types else 0.0
        self.battery_max_w = 2500.0 if self.battery_wh <= 5000 else 5000.0
        self.soc = rng.uniform(30, 80)
        self.ev_rated_w = round(rng.uniform(7200, 11000), -2) if "ev_charger" in types else 0.0
        self.cloud = 1.0
        # Weather and EV sessions for every local day the run touches, decided up front.
        self.sky: dict[dt.date, tuple[float, float]] = {}
        self.day_temp: dict[dt.date, float] = {}
        self.sessions: list[tuple[float, float]] = []
        day = first.astimezone(self.tz).date() - dt.timedelta(days=1)
        while day <= last.astimezone(self.tz).date() + dt.timedelta(days=1):
            regime = rng.random()
            if regime < 0.45:
                self.sky[day] = (rng.uniform(0.9, 1.0), 0.03)  # clear
            elif regime < 0.8:
                self.sky[day] = (rng.uniform(0.45, 0.85), 0.45)  # partly cloudy
            else:
                self.sky[day] = (rng.uniform(0.12, 0.35), 0.2)  # overcast
            self.day_temp[day] = rng.gauss(0, 2)
            if self.ev_rated_w:
                if rng.random() < 0.6:
                    self._add_session(day, rng.uniform(17, 22), rng.uniform(1, 4))
                if rng.random() < 0.15:  # a daytime top-up, over before the evening one can start
                    self._add_session(day, rng.uniform(8, 12), rng.uniform(1, 4))
            day += dt.timedelta(days=1)
        self.sessions.sort()

    def _add_session(self, day: dt.date, start_hour: float, hours: float) -> None:
        local = dt.datetime.combine(day, dt.time(), self.tz) + dt.timedelta(hours=start_hour)
        start = local.timestamp()
        self.sessions.append((start, start + hours * 3600))

    def step(self, when: dt.datetime, epoch: float, sun: tuple[float, float],
             hours: float) -> list[tuple[float, float | None, float | None, str]]:
        """(power_w, soc_pct, temperature_c, status) for each device, over the interval ending now."""
        rng = self.rng
        local = when.astimezone(self.tz)
        hour = local.hour + local.minute / 60
        # Sun elevation from UTC minutes, longitude and the day's solar geometry.
        decl, eq_time = sun
        solar_minutes = when.hour * 60 + when.minute + eq_time + 4 * self.site.longitude
        hour_angle = math.radians(solar_minutes / 4 - 180)
        sin_elev = (math.sin(self.lat) * math.sin(decl)
                    + math.cos(self.lat) * math.cos(decl) * math.cos(hour_angle))
        clear, variability = self.sky[local.date()]
        self.cloud = 0.7 * self.cloud + 0.3 * rng.uniform(1 - variability, 1.0)
        sun_share = sin_elev ** 1.2 if sin_elev > 0 else 0.0
        solar = self.solar_wp * 0.85 * sun_share * clear * self.cloud
        solar = round(solar, 1) if solar >= 5 else 0.0  # inverters switch off below a few watts

        load = (self.load_base + self.load_morning * _gauss(hour, 7.5, 1.0)
                + self.load_evening * _gauss(hour, 19.0, 1.6)) * rng.uniform(0.85, 1.15)
        if rng.random() < 0.02:
            load += rng.uniform(1500, 2500)  # kettle, oven, washing machine
        load = round(load, 1)

        ev = 0.0
        if self.ev_rated_w and any(s <= epoch < e for s, e in self.sessions):
            ev = round(max(7000.0, self.ev_rated_w * rng.uniform(0.97, 1.0)), 1)

        battery = 0.0
        if self.battery_wh:
            surplus = solar - load - ev
            if surplus > 0:
                headroom = (100 - self.soc) / 100 * self.battery_wh / hours / BATTERY_EFFICIENCY
                battery = min(surplus, self.battery_max_w, headroom)
            elif (hour >= 16 or hour < 1) and load > solar:
                available = (max(0.0, self.soc - BATTERY_RESERVE_PCT) / 100 * self.battery_wh
                             * BATTERY_EFFICIENCY / hours)
                battery = -min(load - solar, self.battery_max_w, available)
            battery = round(battery, 1) if abs(battery) >= BATTERY_DEADBAND_W else 0.0
            if battery > 0:
                self.soc = min(100.0, self.soc + battery * hours * BATTERY_EFFICIENCY / self.battery_wh * 100)
            elif battery < 0:
                self.soc = max(0.0, self.soc + battery * hours / BATTERY_EFFICIENCY / self.battery_wh * 100)

        doy = when.timetuple().tm_yday
        ambient = (self.site.mean_temp_c
                   + self.site.temp_swing_c * math.cos(2 * math.pi * (doy - self.site.warmest_day) / 365)
                   + self.day_temp.get(local.date(), 0.0)
                   + 4 * math.sin(2 * math.pi * (hour - 9) / 24))
        out = []
        for device in self.devices:
            kind = device.device_type
            soc = None
            status = "ok"
            if kind == "solar":
                power = -solar
                temp = ambient + 25 * sun_share * clear + rng.gauss(0, 0.3)
            elif kind == "battery":
                power = battery
                soc = round(self.soc, 3)
                temp = 20 + 0.2 * (ambient - 20) + 6 * abs(battery) / self.battery_max_w + rng.gauss(0, 0.2)
            elif kind == "ev_charger":
                power = ev
                status = "charging" if ev else "idle"
                temp = ambient + 12 * ev / 11000 + rng.gauss(0, 0.3)
            else:
                power = round(load + ev + battery - solar, 1)
                temp = ambient + 3 + rng.gauss(0, 0.3)
            if status == "ok" and rng.random() < 0.003:
                status = rng.choice(RARE_STATUSES)
            out.append((power, soc, round(temp, 1), status))
        return out


# ---------------------------------------------------------------------------------------------
# Events


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _compact_encoder() -> Callable[[object], str]:
    """`json.dumps(obj, separators=(",", ":"))` without building an encoder for every line."""
    return json.JSONEncoder(separators=(",", ":")).encode


def _envelope_value(name: str) -> str:
    for attr in CURRENT.envelope:
        if attr.name == name and attr.equals is not None:
            return attr.equals
    raise KeyError(f"the contract fixes no value for the CloudEvents attribute {name!r}")


class _EventMaker:
    """Builds CloudEvents whose ids and trace ids come from the run's random stream."""

    def __init__(self, rng: random.Random, hours: float):
        self.rng = rng
        self.hours = hours
        self.specversion = _envelope_value("specversion")
        self.type = CURRENT.event_type
        self.temperature = CURRENT.field("temperature_c")
        self.encode = _compact_encoder()
        # The data object is built in one literal below (fast); it must be the contract's fields.
        written = tuple(self.data(Device(0, "D1", "S1", "meter"), "", 0, 0.0, None, None, None))
        if written != CURRENT.field_names:
            raise ValueError(f"the generator writes data fields {written}; the contract has {CURRENT.field_names}")

    def line(self, *args, **kwargs) -> bytes:
        """`make` serialised as one compact JSON line."""
        return self.encode(self.make(*args, **kwargs)).encode()

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def data(self, device: Device, ts: str, seq: int, power: float, soc: float | None,
             temp: float | None, status: str | None) -> dict:
        """The `data` object, in the contract's field order; energy follows power (see above)."""
        return {
            "device_id": device.device_id, "site_id": device.site_id,
            "device_type": device.device_type, "ts": ts, "seq": seq,
            "power_w": float(power) + 0.0,  # + 0.0 turns -0.0 into 0.0
            "energy_import_wh": round(power * self.hours, 3) if power > 0 else 0.0,
            "energy_export_wh": round(-power * self.hours, 3) if power < 0 else 0.0,
            "soc_pct": soc, "temperature_c": temp, "status": status,
        }

    def make(self, device: Device, ts: str, seq: int, power: float, soc: float | None,
             temp: float | None, status: str | None, extended: bool = False) -> dict:
        rng = self.rng
        data = self.data(device, ts, seq, power, soc, temp, status)
        if extended:
            data[UNKNOWN_DATA_FIELD] = f"{rng.randint(2, 4)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}"
        event = {
            "specversion": self.specversion, "id": self.new_id(),
            "source": f"/sites/{device.site_id}/devices/{device.device_id}",
            "type": self.type, "time": ts, "datacontenttype": "application/json",
            "traceparent": f"00-{rng.getrandbits(128) | 1:032x}-{rng.getrandbits(64) | 1:016x}-01",
        }
        if extended:
            event[EXTENSION_ATTRIBUTE] = device.device_id
        event["data"] = data
        return event

    def changed(self, values: tuple) -> tuple:
        """The same reading with different values (a correction or a conflicting version)."""
        rng = self.rng
        power, soc, temp, status = values
        factor = 1 + rng.choice((-1, 1)) * rng.uniform(0.03, 0.15)
        if temp is not None:
            temp = round(temp + rng.choice((-1, 1)) * rng.uniform(0.3, 2.0), 1)
            temp = min(max(temp, self.temperature.minimum), self.temperature.maximum)
        return round(power * factor, 1), soc, temp, status


# ---------------------------------------------------------------------------------------------
# Corruption: one way to break each rule of the contract


@dataclass(frozen=True)
class _Corruption:
    code: str  # the rule code (shared_schemas.rules) the line breaks
    mutate: Callable[[dict, random.Random], bytes]


def _set_data(name: str, value: object) -> Callable[[dict, random.Random], bytes]:
    def mutate(event: dict, rng: random.Random) -> bytes:
        event["data"][name] = value
        return _dumps(event)
    return mutate


def _drop_data(name: str) -> Callable[[dict, random.Random], bytes]:
    def mutate(event: dict, rng: random.Random) -> bytes:
        del event["data"][name]
        return _dumps(event)
    return mutate


def _set_envelope(name: str, value: object) -> Callable[[dict, random.Random], bytes]:
    def mutate(event: dict, rng: random.Random) -> bytes:
        event[name] = value
        return _dumps(event)
    return mutate


def _drop_envelope(name: str) -> Callable[[dict, random.Random], bytes]:
    def mutate(event: dict, rng: random.Random) -> bytes:
        del event[name]
        return _dumps(event)
    return mutate


def _not_utf8(event: dict, rng: random.Random) -> bytes:
    event["data"]["status"] = "Störung"  # firmware that speaks Latin-1
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("latin-1")


def _truncated(event: dict, rng: random.Random) -> bytes:
    line = _dumps(event)
    return line[: rng.randint(len(line) // 4, len(line) - 2)]


def _wrong_type(f: Field) -> list[object]:
    if f.kind == "string":
        return [42]
    if f.kind == "long":
        return [1834.5, "1834"]
    if f.kind == "double":
        return ["71.5"]
    return [1795000000, "20/11/2026 10:15:00"]  # timestamp: epoch number, not-RFC-3339 text


def _off_pattern(f: Field) -> list[str]:
    pattern = re.compile(f.pattern or "")
    candidates = ["D 00042", "sites/S001", "X" * 200, ""]
    bad = [c for c in candidates if not pattern.fullmatch(c)]
    if not bad:
        raise ValueError(f"no generated value breaks the pattern of {f.name!r}")
    return bad


def _out_of_range(f: Field) -> list[object]:
    values: list[object] = []
    if f.minimum is not None:
        low = f.minimum - max(1.0, abs(f.minimum) * 0.25)
        values.append(int(f.minimum) - 1 if f.kind == "long" else float(low))
    if f.maximum is not None:
        high = f.maximum + max(1.0, abs(f.maximum) * 0.25)
        values.append(int(high) if f.kind == "long" else float(high))
    return values


def _not_allowed(f: Field) -> list[str]:
    return [next(v for v in ("heat_pump", "unknown", "x-unknown") if v not in (f.allowed or ()))]


def _future(event: dict, rng: random.Random) -> bytes:
    event["data"]["ts"] = "2099" + event["data"]["ts"][4:]
    return _dumps(event)


def _corruptions() -> tuple[_Corruption, ...]:
    """Every way gridlake's generator breaks a record, derived from the contract's rules.

    Fails if the contract grows a kind of rule the generator cannot break yet.
    """
    fields = {f.name: f for f in CURRENT.fields}
    out: list[_Corruption] = []
    for rule in rules_for(CURRENT):
        f = fields.get(rule.field or "")
        mutators: list[Callable[[dict, random.Random], bytes]]
        if f is None and rule.field is not None and rule.check.startswith("field"):
            raise ValueError(f"rule {rule.code!r} names a field the contract does not have")
        if rule.check == R.PAYLOAD_UTF8:
            mutators = [_not_utf8]
        elif rule.check == R.PAYLOAD_JSON:
            mutators = [_truncated, lambda e, r: b'["D00042",1834]', lambda e, r: b"1834",
                        lambda e, r: b'"ok"']
        elif rule.check == R.ENVELOPE_MISSING:
            mutators = [_drop_envelope(rule.field)]
        elif rule.check == R.ENVELOPE_EQUALS:
            wrong = {"specversion": "0.3"}.get(rule.field, "energy.telemetry.unknown.v9")
            mutators = [_set_envelope(rule.field, wrong)]
        elif rule.check == R.DATA_OBJECT:
            mutators = [_drop_envelope("data"), _set_envelope("data", "power_w=1200"),
                        _set_envelope("data", [1, 2, 3]), _set_envelope("data", None)]
        elif rule.check == R.FIELD_MISSING:
            mutators = [_drop_data(f.name), _set_data(f.name, None)]
        elif rule.check == R.FIELD_TYPE:
            mutators = [_set_data(f.name, v) for v in _wrong_type(f)]
        elif rule.check == R.FIELD_PATTERN:
            mutators = [_set_data(f.name, v) for v in _off_pattern(f)]
        elif rule.check == R.FIELD_ALLOWED:
            mutators = [_set_data(f.name, v) for v in _not_allowed(f)]
        elif rule.check == R.FIELD_RANGE:
            mutators = [_set_data(f.name, v) for v in _out_of_range(f)]
        elif rule.check == R.FIELD_LENGTH:
            text = "inverter fault E042: DC isolation below threshold, see manual section 7.3.1"
            mutators = [_set_data(f.name, (text * 4)[: f.max_length + 16])]
        elif rule.check == R.FIELD_FUTURE:
            mutators = [_future]
        else:
            raise ValueError(f"the generator cannot yet break rule {rule.code!r} ({rule.check})")
        out.extend(_Corruption(rule.code, m) for m in mutators)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The run: a sweep through time, device by device, in the order devices send


@dataclass
class _DeviceState:
    seq: int
    pending: list = field(default_factory=list)  # heap of scheduled corrections
    buffer: list = field(default_factory=list)  # readings held while offline


@dataclass(frozen=True)
class _Outage:
    first: int  # first step offline
    back: int  # first step online again (the report is sent then)
    batch: bool


def _sample(rng: random.Random, population: int, fraction: float) -> set[int]:
    return set(rng.sample(range(population), round(fraction * population)))


def generate_records(
        options: GenerateOptions) -> Iterator[Fleet | StreamLine | LateReport | Progress | Summary]:
    """The fleet, then every output record in delivery order, then a `Summary`.

    Example:
        >>> records = list(generate_records(GenerateOptions(devices=3, days=1)))  # doctest: +SKIP
    """
    options.check()
    rng = random.Random(options.seed)
    fleet = build_fleet(options, rng)
    yield fleet
    interval = options.interval_minutes * 60
    hours = interval / 3600
    steps = options.days * 1440 // options.interval_minutes
    start = int(dt.datetime.combine(options.start, dt.time(), UTC).timestamp())
    end = start + steps * interval
    times = [start + k * interval for k in range(steps)]
    moments = [dt.datetime.fromtimestamp(t, UTC) for t in times]
    stamps = [_iso(t) for t in times]
    devices = fleet.devices
    readings = len(devices) * steps

    # Anomalies, chosen up front by reading number (device index * steps + step).
    duplicated = _sample(rng, readings, options.duplicates)
    corrected = _sample(rng, readings, options.corrections)
    conflicted = _sample(rng, readings, options.conflicts)
    extended = _sample(rng, readings, min(25, max(1, readings // 2000)) / readings)
    outages: dict[int, _Outage] = {}
    if steps >= 4:
        late = sorted(rng.sample(range(len(devices)), round(options.late_devices * len(devices))))
        for i, d in enumerate(late):
            span = round(rng.uniform(2 * 3600, 36 * 3600) / interval)
            span = min(max(span, 1), max(1, int(0.75 * (steps - 2))))
            first = rng.randint(1, steps - 1 - span)
            batch = i % 3 == 1 if len(late) > 1 else True
            outages[d] = _Outage(first, first + span, batch)

    # Corrupt lines: a share of all lines, split between stream/ and the .jsonl late reports
    # in proportion to their valid lines (a reading's anomalies travel with it).
    valid_lines = readings + len(duplicated) + len(corrected) + len(conflicted)
    late_jsonl: Counter[int] = Counter()
    for d, o in outages.items():
        if not o.batch:
            late_jsonl[d] += o.back - o.first
    for r in (*duplicated, *corrected, *conflicted):
        o = outages.get(r // steps)
        if o and not o.batch and o.first <= r % steps < o.back:
            late_jsonl[r // steps] += 1
    corrupt = round(options.corrupt / (1 - options.corrupt) * valid_lines)
    late_corrupt = round(corrupt * sum(late_jsonl.values()) / valid_lines)
    kinds = _corruptions()
    plan = [kinds[i % len(kinds)] for i in range(corrupt - late_corrupt)]
    rng.shuffle(plan)
    late_plan: dict[int, list[_Corruption]] = {}
    if late_corrupt:
        owners = sorted(late_jsonl)
        for i, d in enumerate(rng.choices(owners, [late_jsonl[d] for d in owners], k=late_corrupt)):
            late_plan.setdefault(d, []).append(kinds[(i + len(plan)) % len(kinds)])

    maker = _EventMaker(rng, hours)
    counts: Counter[str] = Counter(readings=readings, devices=len(devices), sites=len(fleet.sites),
                                   duplicates=len(duplicated), corrections=len(corrected),
                                   corrections_before_original=0, conflicts=len(conflicted),
                                   extended_events=len(extended), outages=len(outages),
                                   late_files=0, late_batch_files=0, late_lines=0, stream_lines=0)
    by_rule: Counter[str] = Counter()

    def corrupt_line(kind: _Corruption, device: Device, step: int) -> bytes:
        power = {"solar": -1500.0, "battery": 800.0, "ev_charger": 7400.0}.get(device.device_type, 450.0)
        soc = 55.0 if device.device_type == "battery" else None
        event = maker.make(device, stamps[step], rng.randrange(0, 50_000), power, soc, 21.5, "ok")
        by_rule[kind.code] += 1
        return kind.mutate(event, rng)

    pending_lines: list[tuple[int, int, bytes]] = []  # heap: (delivery, tiebreak, line)
    order = 0

    def deliver(when: int, line: bytes) -> None:
        nonlocal order
        order += 1
        heapq.heappush(pending_lines, (when, order, line))

    for kind in plan:
        when = rng.randrange(start, end)
        deliver(when, corrupt_line(kind, rng.choice(devices), (when - start) // interval))
    counts["corrupt_lines"] = len(plan) + late_corrupt

    states = [_DeviceState(seq=rng.randrange(0, 50_000)) for _ in devices]
    members: dict[str, list[Device]] = {}
    for device in devices:
        members.setdefault(device.site_id, []).append(device)
    models = [_SiteModel(site, members[site.site_id], rng, moments[0], moments[-1]) for site in fleet.sites]

    def send_corrections(device: Device, state: _DeviceState, before: int, now: int) -> None:
        while state.pending and state.pending[0][0] < before:
            send, _, step, values = heapq.heappop(state.pending)
            state.seq += 1
            deliver(max(send, now), maker.line(device, stamps[step], state.seq, *maker.changed(values)))

    def late_report(device: Device, state: _DeviceState, outage: _Outage) -> LateReport:
        placed: list[tuple[float, int, bytes]] = []
        size = len(state.buffer)
        corrections = []
        for i, (step, values) in enumerate(state.buffer):
            r = device.index * steps + step
            state.seq += 1
            line = maker.line(device, stamps[step], state.seq, *values, extended=r in extended)
            placed.append((i, len(placed), line))
            if r in duplicated:
                placed.append((i + rng.uniform(0.5, min(40, size)), len(placed), line))
            if r in conflicted:
                conflict = maker.line(device, stamps[step], state.seq, *maker.changed(values))
                placed.append((i + rng.choice((-1, 1)) * rng.uniform(0.1, 3), len(placed), conflict))
            if r in corrected:
                corrections.append((i, step, values))
        for i, step, values in corrections:  # the device re-sends its fixes after the buffer
            state.seq += 1
            line = maker.line(device, stamps[step], state.seq, *maker.changed(values))
            early = rng.random() < EARLY_CORRECTION_SHARE
            counts["corrections_before_original"] += early
            placed.append((i - rng.uniform(0.5, 10) if early else i + rng.uniform(0.5, 50), len(placed), line))
        if not outage.batch:
            for kind in late_plan.get(device.index, []):
                step = rng.randrange(outage.first, outage.back)
                placed.append((rng.uniform(-0.5, size), len(placed), corrupt_line(kind, device, step)))
        state.buffer.clear()
        placed.sort()
        lines = tuple(line for _, _, line in placed)
        suffix = ".json" if outage.batch else ".jsonl"
        name = f"{device.device_id}_{moments[outage.first]:%Y%m%dT%H%MZ}{suffix}"
        counts["late_files"] += 1
        counts["late_batch_files"] += outage.batch
        counts["late_lines"] += len(lines)
        return LateReport(name, lines, outage.batch)

    def file_index(when: int) -> int:
        return min(options.stream_files - 1, (when - start) * options.stream_files // (end - start))

    for k in range(steps):
        t, now = times[k], moments[k]
        t_next = t + interval
        sun = _sun(now)
        for model in models:
            for device, values in zip(model.devices, model.step(now, t, sun, hours), strict=True):
                state = states[device.index]
                r = device.index * steps + k
                outage = outages.get(device.index)
                if outage and outage.first <= k < outage.back:
                    state.buffer.append((k, values))
                    continue
                if outage and k == outage.back:
                    yield late_report(device, state, outage)
                state.seq += 1
                line = maker.line(device, stamps[k], state.seq, *values, extended=r in extended)
                delivery = t + rng.randrange(0, 31)
                if r in corrected:
                    early = rng.random() < EARLY_CORRECTION_SHARE
                    send = t + (rng.randrange(60, 301) if early else rng.randrange(300, 6 * 3600 + 1))
                    if outage and times[outage.first] <= send < times[outage.back]:
                        send = times[outage.back]  # offline: the fix goes out on reconnect
                    heapq.heappush(state.pending, (send, r, k, values))
                    if early:
                        delivery = send + rng.randrange(10, 601)
                        counts["corrections_before_original"] += 1
                deliver(delivery, line)
                if r in duplicated:
                    deliver(delivery + rng.randrange(30, 4 * 3600), line)
                if r in conflicted:
                    conflict = maker.line(device, stamps[k], state.seq, *maker.changed(values))
                    first = rng.random() < 0.3
                    deliver(t + rng.randrange(0, delivery - t + 1) if first else delivery + rng.randrange(1, 901),
                            conflict)
                send_corrections(device, state, t_next, t)
        while pending_lines and pending_lines[0][0] < t_next:
            when, _, line = heapq.heappop(pending_lines)
            counts["stream_lines"] += 1
            yield StreamLine(file_index(when), line)
        yield Progress(len(devices))

    for device in devices:  # corrections still scheduled after the last reading
        send_corrections(device, states[device.index], math.inf, end)
    while pending_lines:
        when, _, line = heapq.heappop(pending_lines)
        counts["stream_lines"] += 1
        yield StreamLine(file_index(when), line)
    counts["stream_files"] = options.stream_files
    yield Summary(dict(sorted(counts.items())), dict(sorted(by_rule.items())))


# ---------------------------------------------------------------------------------------------
# The edge: files


def _prepare(out: Path) -> None:
    """Make `out` ready: new, empty, or an earlier run's output (finished or interrupted).

    The manifest is written first, marked incomplete, and replaced when the run ends: a folder
    with a manifest is ours to replace, and one whose manifest says incomplete is never a fleet.
    """
    if out.exists() and not out.is_dir():
        raise BadArgumentError(f"--out {out} is a file; give a new or empty folder.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "manifest.json").is_file():
            raise BadArgumentError(
                f"--out {out} is a folder with files that `gridlake generate` did not write; give a new or empty folder.")
        for sub in ("stream", "late"):  # an earlier run: replace what it wrote
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
    (out / "stream").mkdir(parents=True, exist_ok=True)
    (out / "late").mkdir(exist_ok=True)
    _write_manifest(out, {"generator": GENERATOR, "complete": False})


def _write_manifest(out: Path, manifest: dict) -> None:
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_registry(out: Path, fleet: Fleet) -> None:
    _write_csv(out / "sites.csv", ["site_id", "timezone", "latitude", "longitude"],
               [[s.site_id, s.timezone, s.latitude, s.longitude] for s in fleet.sites])
    _write_csv(out / "devices.csv", ["device_id", "site_id", "device_type"],
               [[d.device_id, d.site_id, d.device_type] for d in fleet.devices])


def _write_late(folder: Path, report: LateReport, gzip_late: bool) -> None:
    if report.batch:  # a CloudEvents JSON batch: one event object per line inside the array
        (folder / report.name).write_bytes(b"[\n" + b",\n".join(report.lines) + b"\n]\n")
        return
    body = b"".join(line + b"\n" for line in report.lines)
    if not gzip_late:
        (folder / report.name).write_bytes(body)
        return
    with (folder / f"{report.name}.gz").open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:  # no name/time: reproducible
        f.write(body)


class _StreamFiles:
    """stream/part-NNNN.jsonl written one after another (lines arrive in file order)."""

    def __init__(self, folder: Path, count: int):
        self.folder = folder
        self.count = count
        self.index = -1
        self.file = None

    def _open_next(self) -> None:
        if self.file:
            self.file.close()
        self.index += 1
        self.file = (self.folder / f"part-{self.index:04d}.jsonl").open("wb")

    def write(self, index: int, line: bytes) -> None:
        while self.index < index:
            self._open_next()
        self.file.write(line + b"\n")

    def __enter__(self) -> _StreamFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:  # every file exists, even one no line fell into
            while self.index < self.count - 1:
                self._open_next()
        if self.file:
            self.file.close()


def write_fleet(options: GenerateOptions, out: Path, progress: bool | None = None) -> Summary:
    """Generate a fleet into the folder `out` (created; an earlier generator output is replaced).

    Example:
        >>> write_fleet(GenerateOptions(devices=50, days=7, seed=1), Path("fleet"))  # doctest: +SKIP

    Args:
        options: what to generate (checked first; a bad value raises `BadArgumentError`).
        out: a new, empty, or previously generated folder.
        progress: show a progress bar on stderr; by default only on a terminal for large runs.
    """
    from tqdm import tqdm

    options.check()
    _prepare(out)
    total = options.devices * (options.days * 1440 // options.interval_minutes)
    if progress is None:
        progress = sys.stderr.isatty() and total >= PROGRESS_MIN_READINGS
    summary = Summary()
    with _StreamFiles(out / "stream", options.stream_files) as streams, \
            tqdm(total=total, unit="reading", disable=not progress, file=sys.stderr) as bar:
        for record in generate_records(options):
            if isinstance(record, StreamLine):
                streams.write(record.file_index, record.line)
            elif isinstance(record, LateReport):
                _write_late(out / "late", record, options.gzip_late)
            elif isinstance(record, Progress):
                bar.update(record.readings)
            elif isinstance(record, Fleet):
                _write_registry(out, record)
            else:
                summary = record
    manifest = {
        "generator": GENERATOR,
        "complete": True,
        "contract_version": CURRENT.version,
        "options": {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(options).items()},
        "start_utc": f"{options.start.isoformat()}T00:00:00Z",
        "counts": summary.counts,
        "corrupt_by_rule": summary.corrupt_by_rule,
    }
    _write_manifest(out, manifest)
    return summary
