"""A new contract version with an optional field rolls out by changing shared_schemas alone."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from gridlake.errors import ContractError
from gridlake.lake import open_lake
from shared_schemas import V1
from shared_schemas.contract import Field
from shared_schemas.tables import bronze_telemetry, quarantine_telemetry, silver_readings
from streaming.query import StreamOptions, run_stream
from streaming.sources import FileSource
from tests.streaming.conftest import REPO

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


def _stream(landing, lake_dir, cwd) -> str:
    """`gridlake stream --available-now` in its own process, importing shared_schemas from
    `cwd` first (a deployment of a changed shared_schemas); its output."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "GRIDLAKE_DRIVER_MEMORY": "1g",
           "PYTHONPATH": os.pathsep.join([str(cwd), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "gridlake.cli", "stream", "--source", f"files:{landing}",
         "--lake", str(lake_dir), "--available-now"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_version_added_to_shared_schemas_alone_rolls_out(spark, tmp_path):
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    (landing / "a.jsonl").write_text(_events(5, 0, voltage_v=230.0))
    _stream(landing, lake_dir, REPO)
    assert "voltage_v" not in spark.read.format("delta").load(
        str(lake_dir / silver_readings().path)).columns

    # The rollout: shared_schemas, and nothing else, gains a version with an optional field.
    deployed = tmp_path / "deployed"
    shutil.copytree(REPO / "shared_schemas", deployed / "shared_schemas",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with (deployed / "shared_schemas" / "contract.py").open("a") as contract:
        contract.write('\nV2 = V1.with_fields(Field("voltage_v", "double", required=False, '
                       'minimum=0, maximum=1000))\nVERSIONS = (V1, V2)\nCURRENT = V2\n')
    (landing / "b.jsonl").write_text(_events(5, 5, voltage_v=231.5)
                                     + _events(1, 10, voltage_v=-4) + _events(1, 11))
    out = _stream(landing, lake_dir, deployed)
    assert "read 7, upserted 6" in out, out

    rows = spark.read.format("delta").load(str(lake_dir / silver_readings().path)).collect()
    assert {r["seq"]: (r["voltage_v"], r["contract_version"]) for r in rows} == {
        **{i: (None, 1) for i in range(5)}, **{i: (231.5, 2) for i in range(5, 10)},
        11: (None, 2)}
    quarantined = spark.read.format("delta").load(
        str(lake_dir / quarantine_telemetry().path)).collect()
    assert [list(r["reason_codes"]) for r in quarantined] == [["voltage_v.range"]]
