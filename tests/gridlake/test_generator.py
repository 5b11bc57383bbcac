"""`gridlake generate`: a deterministic fleet whose files follow the wire contract in DESIGN.md.

Expectations are computed here from the files alone, with a small checker written from the
DESIGN.md field table; nothing is read back from the generator's internals or its manifest.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import math
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridlake.cli import main

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
DAYS = 2
INTERVAL_MIN = 15
OPTIONS = {
    "--devices": 14, "--days": DAYS, "--interval-minutes": INTERVAL_MIN, "--seed": 11,
    "--stream-files": 3, "--duplicates": 0.05, "--corrections": 0.04, "--conflicts": 0.03,
    "--late-devices": 0.3, "--corrupt": 0.05,
}
# Late readings are ingested after the run; anything 5 minutes past that is "in the future".
INGESTED = START + dt.timedelta(days=DAYS + 1)

# --- an independent checker, from DESIGN.md's wire contract --------------------------------

ENVELOPE_REQUIRED = ("specversion", "id", "source", "type", "time")
ENVELOPE_KNOWN = {*ENVELOPE_REQUIRED, "datacontenttype", "traceparent", "data"}
ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
# name: (kind, required, extra check)
FIELDS = {
    "device_id": ("string", True, {"id": True}),
    "site_id": ("string", True, {"id": True}),
    "device_type": ("string", True, {"allowed": {"battery", "solar", "ev_charger", "meter"}}),
    "ts": ("timestamp", True, {}),
    "seq": ("long", True, {"min": 0}),
    "power_w": ("double", True, {"min": -1_000_000, "max": 1_000_000}),
    "energy_import_wh": ("double", True, {"min": 0, "max": 1_000_000}),
    "energy_export_wh": ("double", True, {"min": 0, "max": 1_000_000}),
    "soc_pct": ("double", False, {"min": 0, "max": 100}),
    "temperature_c": ("double", False, {"min": -60, "max": 120}),
    "status": ("string", False, {"max_length": 64}),
}


def _parse_ts(text: str) -> dt.datetime | None:
    if not RFC3339_RE.fullmatch(text):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None


def _has_kind(kind: str, value: object) -> bool:
    if isinstance(value, bool):
        return False
    if kind == "string":
        return isinstance(value, str)
    if kind == "long":
        return isinstance(value, int)
    if kind == "double":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str) and _parse_ts(value) is not None


def broken_rules(raw: bytes) -> list[str]:
    """Every rule of the wire contract a raw record breaks (empty = valid)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ["payload.utf8"]
    try:
        event = json.loads(text)
    except ValueError:
        return ["payload.json"]
    if not isinstance(event, dict):
        return ["payload.json"]
    broken = [f"envelope.{a}.missing" for a in ENVELOPE_REQUIRED if event.get(a) is None]
    if "specversion" in event and event["specversion"] != "1.0":
        broken.append("envelope.specversion.value")
    if "type" in event and event["type"] != "energy.telemetry.v1":
        broken.append("envelope.type.value")
    data = event.get("data")
    if not isinstance(data, dict):
        return [*broken, "data.object"]
    for name, (kind, required, rule) in FIELDS.items():
        value = data.get(name)
        if value is None:
            if required:
                broken.append(f"{name}.missing")
            continue
        if not _has_kind(kind, value):
            broken.append(f"{name}.type")
            continue
        if rule.get("id") and not ID_RE.fullmatch(value):
            broken.append(f"{name}.format")
        if "allowed" in rule and value not in rule["allowed"]:
            broken.append(f"{name}.allowed")
        if ("min" in rule and value < rule["min"]) or ("max" in rule and value > rule["max"]):
            broken.append(f"{name}.range")
        if "max_length" in rule and len(value) > rule["max_length"]:
            broken.append(f"{name}.length")
        if kind == "timestamp" and _parse_ts(value) > INGESTED + dt.timedelta(minutes=5):
            broken.append(f"{name}.future")
    return broken


# --- reading a generated folder ----------------------------------------------------------


def generate(out: Path, **changes: object) -> Path:
    options = {**OPTIONS, **changes}
    argv = ["generate", "--out", str(out)]
    for flag, value in options.items():
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    assert main(argv) == 0
    return out


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stream_lines(root: Path) -> list[bytes]:
    lines = []
    for path in sorted((root / "stream").glob("*.jsonl")):
        lines += path.read_bytes().split(b"\n")[:-1]
    return lines


def late_lines(root: Path) -> dict[str, list[bytes]]:
    """Each late report's records as raw bytes (batch elements re-serialised)."""
    reports = {}
    for path in sorted((root / "late").iterdir()):
        body = path.read_bytes()
        if path.name.endswith(".json"):
            reports[path.name] = [json.dumps(e).encode() for e in json.loads(body)]
        else:
            if path.name.endswith(".gz"):
                body = gzip.decompress(body)
            reports[path.name] = body.split(b"\n")[:-1]
    return reports


def valid_events(lines: list[bytes]) -> list[dict]:
    return [json.loads(line) for line in lines if not broken_rules(line)]


def registry(root: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    with (root / "sites.csv").open() as f:
        sites = {r["site_id"]: r for r in csv.DictReader(f)}
    with (root / "devices.csv").open() as f:
        devices = {r["device_id"]: r for r in csv.DictReader(f)}
    return sites, devices


def grid() -> list[str]:
    steps = DAYS * 24 * 60 // INTERVAL_MIN
    return [(START + dt.timedelta(minutes=INTERVAL_MIN * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for k in range(steps)]


def originals(events: list[dict]) -> dict[tuple[str, str], dict]:
    """Per key, a record with the lowest seq: the first transmission of the reading."""
    first: dict[tuple[str, str], dict] = {}
    for e in events:
        key = (e["data"]["device_id"], e["data"]["ts"])
        if key not in first or e["data"]["seq"] < first[key]["data"]["seq"]:
            first[key] = e
    return first


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("fleet") / "out")


@pytest.fixture(scope="module")
def parsed(fleet):
    stream = stream_lines(fleet)
    late = late_lines(fleet)
    late_all = [line for lines in late.values() for line in lines]
    return {
        "stream": stream, "late": late,
        "stream_valid": valid_events(stream), "late_valid": valid_events(late_all),
        "all_lines": stream + late_all,
    }


# --- determinism ---------------------------------------------------------------------------


def test_same_options_and_seed_give_byte_identical_files(tmp_path):
    first = all_files(generate(tmp_path / "a", **{"--gzip-late": True}))
    second = all_files(generate(tmp_path / "b", **{"--gzip-late": True}))
    assert first == second
    assert any(name.endswith(".jsonl.gz") for name in first)


def test_another_seed_gives_other_files(tmp_path, fleet):
    other = all_files(generate(tmp_path / "c", **{"--seed": 12}))
    assert other["stream/part-0000.jsonl"] != all_files(fleet)["stream/part-0000.jsonl"]


def test_gzip_and_stream_split_change_packaging_not_content(tmp_path, fleet, parsed):
    out = generate(tmp_path / "d", **{"--gzip-late": True, "--stream-files": 5})
    assert {name.removesuffix(".gz"): lines for name, lines in late_lines(out).items()} == parsed["late"]
    assert len(list((out / "stream").glob("*.jsonl"))) == 5
    assert sorted(stream_lines(out)) == sorted(parsed["stream"])


# --- the wire contract -----------------------------------------------------------------------


def test_valid_events_have_the_design_wire_shape(fleet, parsed):
    sites, devices = registry(fleet)
    hours = INTERVAL_MIN / 60
    events = parsed["stream_valid"] + parsed["late_valid"]
    assert len(events) > 0.9 * len(parsed["all_lines"])
    for e in events:
        d = e["data"]
        assert set(e) >= ENVELOPE_KNOWN, e
        assert e["specversion"] == "1.0" and e["type"] == "energy.telemetry.v1"
        assert e["datacontenttype"] == "application/json"
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", e["id"])
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", e["traceparent"])
        assert e["source"] == f"/sites/{d['site_id']}/devices/{d['device_id']}"
        assert e["time"] == d["ts"]
        assert devices[d["device_id"]]["site_id"] == d["site_id"] and d["site_id"] in sites
        assert devices[d["device_id"]]["device_type"] == d["device_type"]
        assert (d["soc_pct"] is not None) == (d["device_type"] == "battery")
        assert d["energy_import_wh"] == pytest.approx(max(d["power_w"], 0) * hours, abs=1e-3)
        assert d["energy_export_wh"] == pytest.approx(max(-d["power_w"], 0) * hours, abs=1e-3)


def test_registry_mixes_time_zones_and_sites_hold_several_devices(fleet):
    sites, devices = registry(fleet)
    assert {"Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"} <= \
        {s["timezone"] for s in sites.values()}
    for s in sites.values():
        ZoneInfo(s["timezone"])
        assert -90 <= float(s["latitude"]) <= 90 and -180 <= float(s["longitude"]) <= 180
    per_site = Counter(d["site_id"] for d in devices.values())
    assert len(devices) == OPTIONS["--devices"] and max(per_site.values()) >= 3
    assert {d["device_type"] for d in devices.values()} == {"battery", "solar", "ev_charger", "meter"}


def test_every_invalid_line_breaks_exactly_one_rule(parsed):
    breaks = [broken_rules(line) for line in parsed["all_lines"]]
    assert all(len(b) <= 1 for b in breaks), [b for b in breaks if len(b) > 1][:5]
    corrupt = sum(1 for b in breaks if b)
    assert 0.035 < corrupt / len(breaks) < 0.065


def test_corrupt_lines_break_every_rule_of_the_contract_in_stream_and_late(parsed):
    seen = Counter(rule for line in parsed["all_lines"] for rule in broken_rules(line))
    expected = {"payload.utf8", "payload.json", "data.object", "envelope.specversion.value",
                "envelope.type.value", "device_id.format", "site_id.format",
                "device_type.allowed", "status.length", "ts.future"}
    expected |= {f"envelope.{a}.missing" for a in ENVELOPE_REQUIRED}
    expected |= {f"{name}.type" for name in FIELDS}
    expected |= {f"{name}.missing" for name, (_, required, _) in FIELDS.items() if required}
    expected |= {f"{name}.range" for name, (_, _, rule) in FIELDS.items() if "min" in rule}
    assert expected <= set(seen), expected - set(seen)
    late_corrupt = [line for name, lines in parsed["late"].items() if not name.endswith(".json")
                    for line in lines if broken_rules(line)]
    assert late_corrupt, "no corrupt line in the .jsonl late reports"


def test_corrupt_lines_include_the_named_shapes(parsed):
    invalid = [line for line in parsed["all_lines"] if broken_rules(line)]
    values = []
    for line in invalid:
        try:
            values.append(json.loads(line))
        except ValueError:
            continue
    assert any(isinstance(v, list) for v in values) and any(isinstance(v, int | float) for v in values)
    data = [v["data"] for v in values if isinstance(v, dict) and isinstance(v.get("data"), dict)]
    ids = [d.get("device_id") for d in data] + [d.get("site_id") for d in data]
    assert any(isinstance(i, str) and " " in i for i in ids)
    assert any(isinstance(i, str) and "/" in i for i in ids)
    assert any(isinstance(d.get("device_id"), int) for d in data)
    assert any("power_w" not in d for d in data) and any("power_w" in d and d["power_w"] is None for d in data)
    assert any(isinstance(d.get("seq"), float) for d in data)
    assert any(isinstance(d.get("power_w"), str) for d in data)
    powers = [d["power_w"] for d in data if isinstance(d.get("power_w"), int | float)]
    assert max(powers) > 1_000_000 and min(powers) < -1_000_000
    assert any(str(d.get("ts", "")).startswith("2099") for d in data)


def test_some_valid_events_carry_unknown_fields_and_extensions(parsed):
    events = parsed["stream_valid"] + parsed["late_valid"]
    assert any(set(e["data"]) - set(FIELDS) for e in events)
    assert any(set(e) - ENVELOPE_KNOWN for e in events)


# --- late reports --------------------------------------------------------------------------


def test_late_reports_hold_each_outage_and_nothing_is_missing(fleet, parsed):
    names = list(parsed["late"])
    assert any(n.endswith(".json") for n in names) and any(n.endswith(".jsonl") for n in names)
    for name in names:
        if name.endswith(".json"):
            batch = json.loads((fleet / "late" / name).read_bytes())
            assert isinstance(batch, list) and all(isinstance(e, dict) for e in batch)
    stream_keys = {(e["data"]["device_id"], e["data"]["ts"]) for e in parsed["stream_valid"]}
    late_keys: set[tuple[str, str]] = set()
    for lines in parsed["late"].values():
        events = valid_events(lines)
        assert len({e["data"]["device_id"] for e in events}) == 1, "one device per report"
        stamps = sorted(_parse_ts(e["data"]["ts"]) for e in events)
        assert stamps[-1] - stamps[0] >= dt.timedelta(hours=2) - dt.timedelta(minutes=INTERVAL_MIN)
        late_keys |= {(e["data"]["device_id"], e["data"]["ts"]) for e in events}
    assert late_keys and not late_keys & stream_keys
    _, devices = registry(fleet)
    assert stream_keys | late_keys == {(d, ts) for d in devices for ts in grid()}
    late_devices = {d for d, _ in late_keys}
    assert len(late_devices) == len(names)
    assert abs(len(names) - OPTIONS["--late-devices"] * len(devices)) <= 1


# --- anomalies ---------------------------------------------------------------------------------


def test_duplicates_corrections_and_conflicts_come_in_the_requested_proportions(parsed):
    events = parsed["stream_valid"] + parsed["late_valid"]
    readings = len({(e["data"]["device_id"], e["data"]["ts"]) for e in events})
    by_id: dict[str, list[dict]] = defaultdict(list)
    seqs_by_key: dict[tuple, set[int]] = defaultdict(set)
    ids_by_key_seq: dict[tuple, set[str]] = defaultdict(set)
    for e in events:
        key = (e["data"]["device_id"], e["data"]["ts"])
        by_id[e["id"]].append(e)
        seqs_by_key[key].add(e["data"]["seq"])
        ids_by_key_seq[(*key, e["data"]["seq"])].add(e["id"])
    duplicates = sum(len(v) - 1 for v in by_id.values())
    assert all(all(x == v[0] for x in v) for v in by_id.values()), "a duplicate differs"
    corrected = sum(1 for s in seqs_by_key.values() if len(s) > 1)
    conflicted = sum(1 for ids in ids_by_key_seq.values() if len(ids) > 1)

    def roughly(count: int, fraction: float) -> bool:
        return abs(count - fraction * readings) <= max(3, 0.15 * fraction * readings)

    assert roughly(duplicates, OPTIONS["--duplicates"]), duplicates
    assert roughly(corrected, OPTIONS["--corrections"]), corrected
    assert roughly(conflicted, OPTIONS["--conflicts"]), conflicted
    for key_seq, ids in ids_by_key_seq.items():
        if len(ids) > 1:
            versions = [by_id[i][0]["data"] for i in ids]
            assert any(v != versions[0] for v in versions[1:]), f"conflict {key_seq} has equal values"


def test_some_corrections_arrive_before_their_original(parsed):
    first_seen: dict[tuple, int] = {}
    overtaken = 0
    for e in parsed["stream_valid"]:
        key = (e["data"]["device_id"], e["data"]["ts"])
        if key in first_seen and e["data"]["seq"] < first_seen[key]:
            overtaken += 1
        first_seen.setdefault(key, e["data"]["seq"])
    assert overtaken > 0


def test_seq_grows_with_each_transmission_of_a_device(parsed):
    firsts = originals(parsed["stream_valid"] + parsed["late_valid"])
    per_device: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (device, ts), e in firsts.items():
        per_device[device].append((ts, e["data"]["seq"]))
    for device, rows in per_device.items():
        seqs = [seq for _, seq in sorted(rows)]
        assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), device


def test_stream_files_are_roughly_in_time_order(fleet):
    medians = []
    for path in sorted((fleet / "stream").glob("*.jsonl")):
        stamps = sorted(e["data"]["ts"] for e in valid_events(path.read_bytes().split(b"\n")[:-1]))
        medians.append(stamps[len(stamps) // 2])
    assert len(medians) == OPTIONS["--stream-files"] and medians == sorted(medians)


# --- realism -----------------------------------------------------------------------------------


def _local(fleet: Path, e: dict) -> dt.datetime:
    sites, _ = registry(fleet)
    return _parse_ts(e["data"]["ts"]).astimezone(ZoneInfo(sites[e["data"]["site_id"]]["timezone"]))


def test_solar_is_zero_at_local_night_and_producing_at_local_noon(fleet, parsed):
    night = noon = 0
    for e in parsed["stream_valid"] + parsed["late_valid"]:
        d = e["data"]
        if d["device_type"] != "solar":
            continue
        local = _local(fleet, e)
        if local.hour < 3:
            assert d["power_w"] == 0 and d["energy_export_wh"] == 0, d
            night += 1
        elif (local.hour, local.minute) in {(11, 30), (11, 45), (12, 0), (12, 15), (12, 30)}:
            assert d["power_w"] < 0 and d["energy_export_wh"] > 0, d
            noon += 1
    assert night > 0 and noon > 0


def test_battery_soc_stays_in_range_and_moves_with_power(parsed):
    firsts = originals(parsed["stream_valid"] + parsed["late_valid"])
    batteries = defaultdict(dict)
    for (device, ts), e in firsts.items():
        if e["data"]["device_type"] == "battery":
            batteries[device][ts] = e["data"]
    assert batteries
    stamps = grid()
    charging = discharging = 0
    for readings in batteries.values():
        for before, now in zip(stamps, stamps[1:], strict=False):
            prev, cur = readings[before], readings[now]
            assert 0 <= cur["soc_pct"] <= 100
            change = cur["soc_pct"] - prev["soc_pct"]
            if cur["power_w"] > 0:
                assert change > 0, (prev, cur)
                charging += 1
            elif cur["power_w"] < 0:
                assert change < 0, (prev, cur)
                discharging += 1
            else:
                assert change == 0, (prev, cur)
    assert charging and discharging


def test_ev_chargers_run_sessions_of_one_to_four_hours_at_seven_to_eleven_kw(fleet, parsed):
    firsts = originals(parsed["stream_valid"] + parsed["late_valid"])
    stamps = grid()
    runs, evening = [], 0
    for device in {d for d, _ in firsts if firsts[(d, stamps[0])]["data"]["device_type"] == "ev_charger"}:
        run = 0
        for k, ts in enumerate(stamps):
            d = firsts[(device, ts)]["data"]
            if d["power_w"] > 0:
                assert 7000 * 0.85 <= d["power_w"] <= 11000 * 1.15 and d["status"] == "charging"
                if run == 0 and _local(fleet, firsts[(device, ts)]).hour >= 16:
                    evening += 1
                run += 1
            else:
                assert d["power_w"] == 0 and d["status"] == "idle"
                if run and run != k:  # a session that began before the run is cut short
                    runs.append(run * INTERVAL_MIN)
                run = 0
    assert runs and all(60 - INTERVAL_MIN <= minutes <= 240 + INTERVAL_MIN for minutes in runs), runs
    assert evening >= len(runs) / 2


def test_meters_import_at_local_night_when_sun_and_battery_rest(fleet, parsed):
    night = [e["data"]["power_w"] for e in originals(parsed["stream_valid"]).values()
             if e["data"]["device_type"] == "meter" and _local(fleet, e).hour == 3]
    assert night and all(power > 0 for power in night)


# --- command line -------------------------------------------------------------------------------


def test_out_that_is_a_file_is_one_sentence_and_exit_1(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    result = subprocess.run([sys.executable, "-m", "gridlake.cli", "generate", "--out", str(target)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "is a file" in result.stderr


def test_out_with_foreign_files_is_refused_and_a_rerun_replaces_its_own(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["generate", "--out", str(foreign), "--devices", "2", "--days", "1"]) == 1
    assert capsys.readouterr().err.count("\n") == 1 and (foreign / "notes.txt").exists()
    out = generate(tmp_path / "again", **{"--stream-files": 4})
    generate(out, **{"--stream-files": 2})
    assert sorted(p.name for p in (out / "stream").iterdir()) == ["part-0000.jsonl", "part-0001.jsonl"]


@pytest.mark.parametrize("argv", [
    ["--duplicates", "1.5"], ["--corrupt", "-0.1"], ["--late-devices", "x"],
    ["--devices", "0"], ["--days", "-1"], ["--interval-minutes", "0"], ["--start", "2026-13-01"],
])
def test_bad_values_are_rejected_by_argparse_with_one_error_line(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--out", str(tmp_path / "x"), *argv])
    assert exit_info.value.code != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and argv[0] in errors[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv", [["--corrupt", "1"], ["--interval-minutes", "1441"]])
def test_values_the_generator_refuses_are_one_sentence(tmp_path, capsys, argv):
    assert main(["generate", "--out", str(tmp_path / "x"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and argv[0] in err
    assert not (tmp_path / "x").exists()
