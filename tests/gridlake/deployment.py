"""Helpers of the deployment tests: the real commands in child processes, configured only by
environment variables, and their tables read back as the Dagster sensors read them (delta-rs
and polars, no Spark) and checked against the oracle.

Each command runs as a person or a service manager would run it: its own process, its own
Spark driver, nothing shared with the test process but the files (or the object store).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from batch.lake_state import scan
from shared_schemas.tables import (
    TableSpec,
    bronze_telemetry,
    gold_daily_device_rollups,
    gold_daily_site_rollups,
    quarantine_telemetry,
    silver_readings,
)
from tests import oracle
from tests.batch import expected as X

BIN = Path(sys.executable).parent
# Three devices, one day, two of them with a late report (a .jsonl and a .json batch).
FLEET_ARGS = ["--devices", "3", "--days", "1", "--interval-minutes", "15", "--seed", "11",
              "--stream-files", "2", "--duplicates", "0.04", "--corrections", "0.04",
              "--conflicts", "0.02", "--late-devices", "0.67", "--corrupt", "0.05"]
# Small jobs on a shared 2-core machine: few partitions, no UI, a small driver.
SMALL_SPARK = ["spark.sql.shuffle.partitions=2", "spark.default.parallelism=2",
               "spark.databricks.delta.snapshotPartitions=2", "spark.ui.enabled=false",
               "spark.driver.memory=1g"]
COMMAND_TIMEOUT = 900


def generate_fleet(out: Path) -> Path:
    from gridlake.cli import main

    assert main(["generate", "--out", str(out), *FLEET_ARGS]) == 0
    late = sorted((out / "late").iterdir())
    assert len(late) == 2, late
    return out


def run(command: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    """Run a command to completion; its output is in the failure message if it fails."""
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
        f"\n--- stderr\n{result.stderr[-8000:]}")
    return result.stdout


def gridlake(*args: str, env: dict[str, str]) -> str:
    return run([str(BIN / "gridlake"), *map(str, args)], env)


def base_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRIDLAKE_", "AWS_"))}
    env.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               GRIDLAKE_SPARK_LOG_LEVEL="ERROR", **settings)
    return env


# -- reading the tables back (no Spark in the test process) -------------------------------------

def rows(root: str, spec: TableSpec) -> list[dict]:
    """Every row of the table, read as the Dagster sensors read the lake (a folder or `s3a://`),
    with the rows deletion vectors removed left out."""
    table = scan(root, spec)
    assert table is not None, f"no Delta table {spec.path} under {root}"
    return table.collect().to_dicts()


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def _count(root: str, spec: TableSpec) -> int:
    table = scan(root, spec)
    assert table is not None, f"no Delta table {spec.path} under {root}"
    return table.select(pl.len()).collect().item()


def check_tables(root: str, fleet: Path) -> None:
    """Silver and both gold tables of the lake at `root` equal the oracle's answer for every
    file of the fleet; bronze holds every record once, quarantine every invalid one."""
    files = [*sorted((fleet / "stream").iterdir()), *sorted((fleet / "late").iterdir())]
    records = list(oracle.read_records(files))
    truth, invalid = oracle.silver_truth(records, X.now())
    assert _count(root, bronze_telemetry()) == len(records)
    assert _count(root, quarantine_telemetry()) == len(invalid)
    zones = {r["site_id"]: r["timezone"]
             for r in csv.DictReader((fleet / "sites.csv").open(encoding="utf-8"))}

    silver = {(r["device_id"], _naive_utc(r["ts"])): (r["seq"], r["event_id"])
              for r in rows(root, silver_readings())}
    assert silver == {key: (r["seq"], r["_id"]) for key, r in truth.items()}
    devices = {(r["device_id"], r["day"]): r for r in rows(root, gold_daily_device_rollups())}
    X.same(devices, X.device_rollups(truth), "daily device rollups")
    sites = {(r["site_id"], r["local_day"]): r for r in rows(root, gold_daily_site_rollups())}
    X.same(sites, X.site_rollups(truth, zones), "daily site rollups")
