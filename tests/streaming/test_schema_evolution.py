"""A new contract version with an optional field rolls out by changing shared_schemas alone."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from gridlake.errors import ContractError
from gridlake.lake import open_lake
from shared_schemas import V1
from shared_schemas.contract import Field
from shared_schemas.tables import bronze_telemetry, silver_readings
from streaming.query import StreamOptions, run_stream
from streaming.sources import FileSource

EVENT = {
    "specversion": "1.0", "id": "e-0", "source": "/sites/S1/devices/D1",
    "type": "energy.telemetry.v1", "time": "2026-11-02T00:05:00Z",
    "data": {"device_id": "D1", "site_id": "S1", "device_type": "meter",
             "ts": "2026-11-02T00:05:00Z", "seq": 1, "power_w": 500.0,
             "energy_import_wh": 41.7, "energy_export_wh": 0.0},
}


def _events(n: int, start: int, **extra) -> str:
    lines = []
    for i in range(start, start + n):
        event = copy.deepcopy(EVENT)
        event["id"] = f"e-{i}"
        event["data"].update(seq=i, ts=f"2026-11-02T{i // 12:02d}:{i % 12 * 5:02d}:00Z", **extra)
        lines.append(json.dumps(event))
    return "\n".join(lines) + "\n"


def test_added_optional_field_reaches_silver_without_a_rebuild(spark, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    lake_dir = str(tmp_path / "lake")
    (landing / "a.jsonl").write_text(_events(5, 0, voltage_v=230.0))
    lake = open_lake(lake_dir, create=True, spark=spark)
    run_stream(spark, lake, FileSource(str(landing)), StreamOptions(available_now=True),
               report=lambda _: None)
    silver = spark.read.format("delta").load(lake.path(silver_readings()))
    assert "voltage_v" not in silver.columns  # v1 does not know it; bronze keeps it
    bronze = spark.read.format("delta").load(lake.path(bronze_telemetry()))
    assert all(b"voltage_v" in bytes(r["payload"]) for r in bronze.collect())

    v2 = V1.with_fields(Field("voltage_v", "double", required=False, minimum=0, maximum=1000))
    (landing / "b.jsonl").write_text(_events(5, 5, voltage_v=231.5) + _events(1, 10, voltage_v=-4))
    lake = open_lake(lake_dir, create=True, spark=spark, contract=v2)
    run_stream(spark, lake, FileSource(str(landing)), StreamOptions(available_now=True),
               contract=v2, report=lambda _: None)
    rows = spark.read.format("delta").load(lake.path(silver_readings())).collect()
    voltages = {r["seq"]: r["voltage_v"] for r in rows}
    assert voltages == {**{i: None for i in range(5)}, **{i: 231.5 for i in range(5, 10)}}
    assert {r["contract_version"] for r in rows if r["seq"] >= 5} == {2}


def test_incompatible_contract_is_refused_at_start_up(spark, tmp_path):
    lake_dir = str(tmp_path / "lake")
    open_lake(lake_dir, create=True, spark=spark)
    retyped = dataclasses.replace(V1, version=2, fields=tuple(
        dataclasses.replace(f, kind="string") if f.name == "power_w" else f for f in V1.fields))
    with pytest.raises(ContractError, match="field 'power_w' changed type from double to string"):
        open_lake(lake_dir, create=True, spark=spark, contract=retyped)
