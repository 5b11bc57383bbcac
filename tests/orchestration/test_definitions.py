"""The Definitions load, are found from pyproject.toml, and pick resources per deployment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, BackfillPolicy, Definitions

REPO = Path(__file__).resolve().parents[2]
ASSETS = {"bronze_telemetry", "quarantine_telemetry", "silver_readings", "daily_device_rollups",
          "daily_site_rollups"}


def test_definitions_load_with_every_asset_check_job_schedule_and_sensor():
    from orchestration.definitions import defs

    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    assert {k.to_user_string() for k in graph.materializable_asset_keys} == {
        "daily_device_rollups", "daily_site_rollups"}
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == {
        ("silver_readings", "silver_freshness"), ("bronze_telemetry", "reconciliation"),
        *(("daily_device_rollups", n) for n in ("samples_positive", "power_min_avg_max_ordered",
                                                "soc_within_0_100", "keys_unique",
                                                "quality_suite", "great_expectations")),
        *(("daily_site_rollups", n) for n in ("samples_positive", "local_day_hours_23_to_25",
                                              "keys_unique", "quality_suite",
                                              "great_expectations")),
        ("silver_readings", "great_expectations"), ("quarantine_telemetry", "great_expectations")}
    gx = [spec for key, check in repo.asset_checks_defs_by_key.items()
          for spec in check.check_specs if key.name == spec.name == "great_expectations"]
    assert len(gx) == 4 and all(spec.blocking for spec in gx)
    assert {s.name for s in repo.sensor_defs} == {"stream_progress", "late_report_files",
                                                  "silver_changes"}
    assert sorted(s.name for s in repo.schedule_defs) == ["compact_lake_hourly",
                                                          "daily_rollups_after_midnight"]
    assert all(s.default_status.value == "STOPPED" for s in repo.schedule_defs)
    assert {"daily_rollups_job", "late_report_backfill", "compact_lake"} <= {
        j.name for j in repo.get_all_jobs()}
    assert repo.get_job("compact_lake").executor_def.name == "in_process"
    assert {g: sorted(k.to_user_string() for k in keys) for g, keys in _groups(graph).items()} == {
        "stream": ["bronze_telemetry", "quarantine_telemetry", "silver_readings"],
        "rollups": ["daily_device_rollups", "daily_site_rollups"]}
    device = graph.get(AssetKey("daily_device_rollups"))
    assert device.backfill_policy == BackfillPolicy.single_run()
    partitions = device.partitions_def
    assert (partitions.start.date().isoformat(), partitions.timezone) == ("2026-11-01", "UTC")
    assert graph.get(AssetKey("silver_readings")).parent_keys == {AssetKey("bronze_telemetry")}
    assert AssetKey("silver_readings") in device.parent_keys
    assert repo.get_job("daily_rollups_job").executor_def.name == "in_process"


def _groups(graph) -> dict[str, set]:
    groups: dict[str, set] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key)
    return groups


def test_partition_start_and_thresholds_come_from_the_environment(monkeypatch):
    from gridlake.errors import BadArgumentError
    from orchestration.definitions import build_defs
    from orchestration.settings import Settings

    monkeypatch.setenv("GRIDLAKE_PARTITIONS_START", "2026-10-01")
    defs = build_defs("test")
    device = defs.get_repository_def().asset_graph.get(AssetKey("daily_device_rollups"))
    assert device.partitions_def.start.date().isoformat() == "2026-10-01"
    with pytest.raises(BadArgumentError, match="GRIDLAKE_FRESHNESS_MINUTES is 'soon'"):
        Settings.from_env({"GRIDLAKE_FRESHNESS_MINUTES": "soon"})


def test_resources_are_chosen_per_deployment_from_the_environment(monkeypatch, tmp_path):
    from gridlake.errors import BadArgumentError
    from orchestration.resources import (
        LakeResource,
        SparkResource,
        resources_by_deployment_name,
        resources_for_deployment,
    )

    monkeypatch.setenv("GRIDLAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.delenv("GRIDLAKE_LATE_DIR", raising=False)
    assert set(resources_by_deployment_name()) == {"local", "test"}
    monkeypatch.setenv("GRIDLAKE_DEPLOYMENT", "test")
    test = resources_for_deployment()
    assert isinstance(test["spark"], SparkResource) and test["spark"].master == "local[2]"
    lake = LakeResource(root=str(tmp_path / "lake"))
    assert lake.late_reports_dir() == f"{tmp_path}/lake/_landing/late"
    monkeypatch.setenv("GRIDLAKE_DEPLOYMENT", "staging")
    with pytest.raises(BadArgumentError, match="'staging'; known deployments are"):
        resources_for_deployment()


def test_spark_resource_reuses_the_running_session(spark):
    from orchestration.resources import SparkResource

    assert SparkResource(master="local[2]", testing=True).session() is spark


def test_dagster_finds_the_definitions_from_pyproject_without_arguments(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions",
                           "validate"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful for code location gridlake" in done.stdout + done.stderr
