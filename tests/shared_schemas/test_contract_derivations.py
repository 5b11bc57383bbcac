"""The JSON Schema, the Spark schema and the table definitions all follow the one contract."""

from __future__ import annotations

import dataclasses
import json

from pyspark.sql import types as T

from shared_schemas import CURRENT, V1
from shared_schemas.compat import check_compatible, contract_from_dict, contract_to_dict
from shared_schemas.contract import Field
from shared_schemas.json_schema import exported_path, json_schema
from shared_schemas.spark import data_struct
from shared_schemas.tables import gold_daily_device_rollups, silver_readings

# DESIGN.md's table, written out independently of shared_schemas.
DESIGN_FIELDS = {
    "device_id": ("string", True), "site_id": ("string", True),
    "device_type": ("string", True), "ts": ("timestamp", True), "seq": ("long", True),
    "power_w": ("double", True), "energy_import_wh": ("double", True),
    "energy_export_wh": ("double", True), "soc_pct": ("double", False),
    "temperature_c": ("double", False), "status": ("string", False),
}
SPARK = {"string": T.StringType(), "timestamp": T.TimestampType(), "long": T.LongType(),
         "double": T.DoubleType()}


def test_contract_matches_the_design_table():
    assert {f.name: (f.kind, f.required) for f in CURRENT.fields} == DESIGN_FIELDS
    assert CURRENT.key == ("device_id", "ts")


def test_exported_json_schema_is_in_sync_with_the_contract():
    exported = json.loads(exported_path(CURRENT).read_text())
    assert exported == json_schema(CURRENT), "run `gridlake schema --export` to refresh it"


def test_json_schema_encodes_each_field_rule():
    props = json_schema(CURRENT)["properties"]["data"]["properties"]
    assert props["seq"] == {"type": "integer", "minimum": 0,
                            "description": CURRENT.field("seq").description}
    assert props["soc_pct"]["type"] == ["number", "null"]
    assert props["device_type"]["enum"] == ["battery", "solar", "ev_charger", "meter"]
    assert props["status"]["maxLength"] == 64
    assert props["ts"]["format"] == "date-time"
    required = json_schema(CURRENT)["properties"]["data"]["required"]
    assert set(required) == {n for n, (_, req) in DESIGN_FIELDS.items() if req}


def test_spark_schema_has_every_field_with_its_type():
    struct = data_struct(CURRENT)
    assert [(f.name, f.dataType) for f in struct.fields] == [
        (name, SPARK[kind]) for name, (kind, _) in DESIGN_FIELDS.items()]


def test_silver_and_gold_carry_the_design_columns():
    silver = silver_readings().column_names
    assert set(DESIGN_FIELDS) <= set(silver)
    assert {"event_id", "traceparent", "record_id", "source_file", "source_line",
            "kafka_topic", "kafka_partition", "kafka_offset", "batch_id", "run_id"} <= set(silver)
    gold = gold_daily_device_rollups().column_names
    assert {"device_id", "day", "samples", "energy_import_wh", "energy_export_wh",
            "min_power_w", "max_power_w", "avg_power_w", "min_soc_pct", "max_soc_pct"} <= set(gold)


def test_contract_round_trips_through_json():
    assert contract_from_dict(json.loads(json.dumps(contract_to_dict(V1)))) == V1


def test_compatibility_accepts_an_added_optional_field():
    v2 = V1.with_fields(Field("voltage_v", "double", required=False, minimum=0))
    assert v2.version == 2
    assert check_compatible(V1, v2) == []


def test_compatibility_rejects_removed_fields_changed_types_and_new_required_fields():
    removed = dataclasses.replace(V1, version=2, fields=V1.fields[:-1])
    retyped = dataclasses.replace(V1, version=2, fields=tuple(
        dataclasses.replace(f, kind="double") if f.name == "seq" else f for f in V1.fields))
    required = V1.with_fields(Field("voltage_v", "double"))
    tightened = dataclasses.replace(V1, version=2, fields=tuple(
        dataclasses.replace(f, required=True) if f.name == "soc_pct" else f for f in V1.fields))
    assert check_compatible(V1, removed) == ["field 'status' was removed"]
    assert check_compatible(V1, retyped) == ["field 'seq' changed type from long to double"]
    assert check_compatible(V1, required) == [
        "new field 'voltage_v' is required; new fields must be optional"]
    assert check_compatible(V1, tightened) == ["field 'soc_pct' became required"]
