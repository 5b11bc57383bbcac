"""The same jobs on a real Spark standalone cluster: a master and two workers in their own JVMs.

The commands and a Dagster job run in child processes with nothing but
`GRIDLAKE_SPARK_MASTER=spark://...` (and small-job settings) in their environment. Spark's event
logs say which executor ran each task: every task must have run on an executor the cluster's
workers started, none in the driver, and the tables must equal the oracle's answer.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.gridlake.deployment import (
    BIN,
    SMALL_SPARK,
    base_env,
    check_tables,
    generate_fleet,
    gridlake,
    run,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two workers of one core and 1g each, from pyspark's own distribution (as `make cluster`)."""
    from gridlake.cluster import StandaloneCluster

    with StandaloneCluster(tmp_path_factory.mktemp("cluster"), workers=2, cores=1,
                           memory="1g") as running:
        yield running


def tasks_by_executor(events: Path) -> dict[str, Counter]:
    """App name → tasks finished per executor id, from Spark's (uncompressed) event logs:
    one folder per application (`eventlog_v2_<app id>/events_<n>_<app id>` when rolling, the
    default) or one file."""
    out: dict[str, Counter] = {}
    for log in sorted(events.iterdir()):
        parts = sorted(log.glob("events_*")) if log.is_dir() else [log]
        name, counts = None, Counter()
        for line in (line for part in parts
                     for line in part.read_text(encoding="utf-8").splitlines()):
            event = json.loads(line)
            if event["Event"] == "SparkListenerApplicationStart":
                name = event["App Name"]
            elif event["Event"] == "SparkListenerTaskEnd":
                counts[event["Task Info"]["Executor ID"]] += 1
        out[name] = counts
    return out


def executors_started(cluster, app_ids: list[str]) -> dict[int, set[str]]:
    """Worker index → the `app-id/executor-id` folders its work dir holds for these apps."""
    started: dict[int, set[str]] = {}
    for index in range(cluster.workers):
        work = cluster.worker_dir(index)
        started[index] = {f"{app.name}/{ex.name}" for app in work.iterdir()
                          if app.name in app_ids for ex in app.iterdir()}
    return started


def test_stream_backfill_rollup_and_dagster_run_on_the_cluster_and_equal_the_oracle(
        cluster, tmp_path):
    fleet = generate_fleet(tmp_path / "fleet")
    lake = tmp_path / "lake"
    events = tmp_path / "events"
    events.mkdir()
    env = base_env(GRIDLAKE_SPARK_MASTER=cluster.master_url, GRIDLAKE_SPARK_CONF=" ".join([
        *SMALL_SPARK, "spark.eventLog.enabled=true", f"spark.eventLog.dir=file:{events}",
        "spark.eventLog.compress=false",
        # Wait (up to 30 s) for both executors before the first task, so both get work.
        "spark.scheduler.minRegisteredResourcesRatio=1.0"]))
    late_jsonl, late_json = sorted((fleet / "late").iterdir(), key=lambda p: p.suffix != ".jsonl")

    gridlake("stream", "--source", f"files:{fleet / 'stream'}", "--lake", lake,
             "--available-now", env=env)
    gridlake("backfill", "--lake", lake, "--sites", fleet / "sites.csv", late_jsonl, env=env)
    # The Dagster job of the batch half, launched as a deployment launches it: the `local`
    # deployment's resources read GRIDLAKE_SPARK_MASTER and GRIDLAKE_LAKE.
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"ops": {"load_late_reports": {"config": {
        "paths": [str(late_json)], "recompute_rollups": True}}}}))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    run([str(BIN / "dagster"), "job", "execute", "-m", "orchestration.definitions",
         "-j", "late_report_backfill", "-c", str(config)],
        {**env, "GRIDLAKE_LAKE": str(lake), "GRIDLAKE_DEPLOYMENT": "local",
         "DAGSTER_HOME": str(dagster_home)}, cwd=Path(__file__).resolve().parents[2])
    out = gridlake("rollup", "--lake", lake, "--from", "2026-10-31", "--to", "2026-11-02",
                   env=env)
    assert "UTC day(s)" in out

    check_tables(str(lake), fleet)

    # Where the work ran: every job's tasks on the workers' executors, none in the driver.
    tasks = tasks_by_executor(events)
    assert set(tasks) == {"gridlake-stream", "gridlake-backfill", "gridlake-dagster",
                          "gridlake-rollup"}, tasks
    for app, counts in tasks.items():
        assert sum(counts.values()) > 0, f"{app} ran no task"
        assert "driver" not in counts, f"{app} ran {counts['driver']} task(s) in the driver"
    state = cluster.state()
    finished = {app["name"]: app["id"] for app in state["completedapps"]}
    assert set(tasks) <= set(finished), finished
    started = executors_started(cluster, list(finished.values()))
    assert all(started.values()), f"a worker started no executor: {started}"
    ran = {f"{finished[app]}/{executor}" for app, counts in tasks.items() for executor in counts}
    assert ran <= set().union(*started.values()), (ran, started)
    assert all(ran & on_worker for on_worker in started.values()), \
        f"tasks ran on executors of one worker only: {ran} vs {started}"
