"""Every validation rule, broken alone by one record, is reported with exactly its code."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from pyspark.sql import types as T

from shared_schemas import CURRENT
from shared_schemas.rules import rules_for
from shared_schemas.spark import parse_and_validate

INGEST_TIME = dt.datetime(2026, 11, 20, 12, 0, 0)

VALID = {
    "specversion": "1.0", "id": "evt-1", "source": "/sites/S001/devices/D00042",
    "type": "energy.telemetry.v1", "time": "2026-11-20T10:15:00Z",
    "datacontenttype": "application/json", "traceparent": "00-abc-def-01",
    "data": {"device_id": "D00042", "site_id": "S001", "device_type": "battery",
             "ts": "2026-11-20T10:15:00Z", "seq": 1834, "power_w": -2150.5,
             "energy_import_wh": 0.0, "energy_export_wh": 35.8, "soc_pct": 71.5,
             "temperature_c": 24.1, "status": "ok"},
}


def _with(path: str, value=..., drop: bool = False) -> bytes:
    event = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    target = event
    for p in parents:
        target = target[p]
    if drop:
        del target[leaf]
    else:
        target[leaf] = value
    return json.dumps(event).encode()


# One record per rule code, each breaking that rule and nothing else.
BREAKERS: dict[str, bytes] = {
    "payload.utf8": b'{"id": "\xff\xfe"}',
    "payload.json": b'{"specversion": "1.0", "id": ',
    "envelope.specversion.missing": _with("specversion", drop=True),
    "envelope.specversion.value": _with("specversion", "0.3"),
    "envelope.id.missing": _with("id", drop=True),
    "envelope.source.missing": _with("source", drop=True),
    "envelope.type.missing": _with("type", drop=True),
    "envelope.type.value": _with("type", "energy.telemetry.v0"),
    "envelope.time.missing": _with("time", drop=True),
    "data.object": _with("data", [1, 2, 3]),
    "device_id.missing": _with("data.device_id", drop=True),
    "device_id.type": _with("data.device_id", 42),
    "device_id.format": _with("data.device_id", "D 42/../x"),
    "site_id.missing": _with("data.site_id", None),
    "site_id.type": _with("data.site_id", ["S001"]),
    "site_id.format": _with("data.site_id", "S001' OR 1=1 --"),
    "device_type.missing": _with("data.device_type", drop=True),
    "device_type.type": _with("data.device_type", True),
    "device_type.allowed": _with("data.device_type", "toaster"),
    "ts.missing": _with("data.ts", drop=True),
    "ts.type": _with("data.ts", "20/11/2026 10:15"),
    "ts.future": _with("data.ts", "2026-11-20T12:05:01Z"),
    "seq.missing": _with("data.seq", drop=True),
    "seq.type": _with("data.seq", 18.5),
    "seq.range": _with("data.seq", -1),
    "power_w.missing": _with("data.power_w", drop=True),
    "power_w.type": _with("data.power_w", "2150"),
    "power_w.range": _with("data.power_w", 1_000_000.5),
    "energy_import_wh.missing": _with("data.energy_import_wh", None),
    "energy_import_wh.type": _with("data.energy_import_wh", {"wh": 1}),
    "energy_import_wh.range": _with("data.energy_import_wh", -0.1),
    "energy_export_wh.missing": _with("data.energy_export_wh", drop=True),
    "energy_export_wh.type": _with("data.energy_export_wh", "lots"),
    "energy_export_wh.range": _with("data.energy_export_wh", 1_000_001),
    "soc_pct.type": _with("data.soc_pct", "71%"),
    "soc_pct.range": _with("data.soc_pct", 100.5),
    "temperature_c.type": _with("data.temperature_c", "warm"),
    "temperature_c.range": _with("data.temperature_c", -60.1),
    "status.type": _with("data.status", 7),
    "status.length": _with("data.status", "x" * 65),
}

# Records that must pass: boundaries, nulls for optional fields, extras, binary edge values.
ACCEPTED: dict[str, bytes] = {
    "valid": json.dumps(VALID).encode(),
    "optional nulls": json.dumps({**VALID, "data": {**VALID["data"], "soc_pct": None,
                                                    "temperature_c": None, "status": None}}).encode(),
    "optional absent": json.dumps({**VALID, "data": {k: v for k, v in VALID["data"].items()
                                                     if k not in ("soc_pct", "status")}}).encode(),
    "boundaries": json.dumps({**VALID, "data": {
        **VALID["data"], "seq": 0, "power_w": -1_000_000, "energy_import_wh": 1_000_000,
        "soc_pct": 100, "temperature_c": 120, "status": "y" * 64,
        "ts": "2026-11-20T12:05:00Z"}}).encode(),
    "offset timestamp": _with("data.ts", "2026-11-20T11:15:00+01:00"),
    "unknown extras": json.dumps({**VALID, "ext_site_zone": "north",
                                  "data": {**VALID["data"], "voltage_v": 231.2}}).encode(),
    "integers for doubles": _with("data.power_w", 2150),
}

SCHEMA = T.StructType([
    T.StructField("name", T.StringType()),
    T.StructField("payload", T.BinaryType()),
    T.StructField("headers", T.ArrayType(T.StructType([
        T.StructField("key", T.StringType()), T.StructField("value", T.BinaryType())]))),
    T.StructField("ingest_time", T.TimestampType()),
])


@pytest.fixture(scope="module")
def outcomes(spark):
    rows = [(name, payload, None, INGEST_TIME)
            for name, payload in {**BREAKERS, **ACCEPTED}.items()]
    validated = spark.createDataFrame(rows, SCHEMA).transform(parse_and_validate(CURRENT))
    return {r["name"]: r for r in validated.collect()}


def test_every_rule_has_a_breaking_record():
    assert set(BREAKERS) == {rule.code for rule in rules_for(CURRENT)}


@pytest.mark.parametrize("code", sorted(BREAKERS))
def test_record_breaking_one_rule_reports_exactly_that_rule(outcomes, code):
    reasons = outcomes[code]["reasons"]
    assert [r["code"] for r in reasons] == [code]
    rule = next(r for r in rules_for(CURRENT) if r.code == code)
    assert reasons[0]["message"] == rule.sentence


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_valid_records_pass_with_typed_values(outcomes, name):
    row = outcomes[name]
    assert row["reasons"] == []
    assert row["device_id"] == "D00042"
    assert isinstance(row["seq"], int)
    assert isinstance(row["power_w"], float)


def test_typed_values_match_the_payload(outcomes):
    row = outcomes["valid"]
    assert row["ts"] == dt.datetime(2026, 11, 20, 10, 15)
    assert (row["seq"], row["power_w"], row["soc_pct"]) == (1834, -2150.5, 71.5)
    assert (row["event_id"], row["traceparent"]) == ("evt-1", "00-abc-def-01")
    assert outcomes["offset timestamp"]["ts"] == dt.datetime(2026, 11, 20, 10, 15)


def test_several_broken_rules_are_all_reported(spark):
    event = copy.deepcopy(VALID)
    event["data"].update(seq=-3, device_type="kettle", soc_pct=140)
    del event["id"]
    rows = [("multi", json.dumps(event).encode(), None, INGEST_TIME)]
    reasons = (spark.createDataFrame(rows, SCHEMA).transform(parse_and_validate(CURRENT))
               .first()["reasons"])
    assert {r["code"] for r in reasons} == {
        "envelope.id.missing", "device_type.allowed", "seq.range", "soc_pct.range"}


def test_binary_mode_headers_are_an_event(spark):
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"bin-1"), ("ce_source", b"/s/1"),
               ("ce_type", b"energy.telemetry.v1"), ("ce_time", b"2026-11-20T10:15:00Z"),
               ("ce_traceparent", b"00-aa-bb-01")]
    good = ("binary", json.dumps(VALID["data"]).encode(), headers, INGEST_TIME)
    bad_type = ("binary bad", json.dumps(VALID["data"]).encode(),
                [h if h[0] != "ce_type" else ("ce_type", b"other") for h in headers], INGEST_TIME)
    rows = {r["name"]: r for r in spark.createDataFrame([good, bad_type], SCHEMA)
            .transform(parse_and_validate(CURRENT)).collect()}
    assert rows["binary"]["reasons"] == []
    assert (rows["binary"]["event_id"], rows["binary"]["traceparent"]) == ("bin-1", "00-aa-bb-01")
    assert [r["code"] for r in rows["binary bad"]["reasons"]] == ["envelope.type.value"]


@pytest.mark.parametrize("value", [42, 4.5, True, {"a": 1}, ["x", 1]])
def test_an_attribute_of_another_json_type_does_not_hide_the_event(spark, value):
    # The envelope is read in one cast: an attribute that is not a string is read as its JSON
    # text, and the rest of the event (the data fields) is still validated and typed.
    rows = [("odd", _with("traceparent", value), None, INGEST_TIME),
            ("odd data", _with("data.status", value), None, INGEST_TIME)]
    out = {r["name"]: r for r in spark.createDataFrame(rows, SCHEMA)
           .transform(parse_and_validate(CURRENT)).collect()}
    assert out["odd"]["reasons"] == []
    assert json.loads(out["odd"]["traceparent"]) == value
    assert (out["odd"]["event_id"], out["odd"]["seq"]) == ("evt-1", 1834)
    assert [r["code"] for r in out["odd data"]["reasons"]] == ["status.type"]
    assert (out["odd data"]["device_id"], out["odd data"]["power_w"]) == ("D00042", -2150.5)
