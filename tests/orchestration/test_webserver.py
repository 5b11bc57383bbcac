"""The real `dagster-webserver` and `dagster-daemon` on a loopback port, over a prepared lake.

A backfill of a partition range is launched through Dagster's GraphQL API, the daemon runs it
(queued run coordinator, default run launcher: a run subprocess with its own Spark), and gold
must then equal the batch function's output for those days (`batch.rollups.recompute`, what
`gridlake rollup --from --to` runs). Then headless Chromium (Debian's
`chromium`) opens the asset graph, saves a screenshot and checks the page names the assets.
Last, a row written into gold behind gridlake's back makes the Great Expectations check,
launched through the webserver, fail; the asset's checks tab in Chromium shows it failed.

`DagsterGraphQLClient` (dagster-graphql 1.13) has no backfill method, so the backfill is
launched and watched with the `launchPartitionBackfill` mutation and `partitionBackfillOrError`
query over HTTP; the client checks the run it produced.

Chromium must be installed (`apt-get install -y chromium`). Without it the browser test fails,
unless GRIDLAKE_SKIP_BROWSER_TESTS gives a reason, which the skip then reports.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.orchestration.conftest import FLEET_DAYS, copy_lake, gold_rows

DEVICE_COLUMNS = ("device_id", "day", "site_id", "device_type", "samples", "energy_import_wh",
                  "energy_export_wh", "min_power_w", "max_power_w", "avg_power_w",
                  "min_soc_pct", "max_soc_pct", "silver_version")
SITE_COLUMNS = ("site_id", "local_day", "timezone", "local_day_hours", "devices", "samples",
                "energy_import_wh", "energy_export_wh", "silver_version")

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSETS = ("bronze_telemetry", "quarantine_telemetry", "silver_readings", "daily_device_rollups",
          "daily_site_rollups")
GROUPS = ("stream", "rollups")
SCREENSHOT_COPY = "GRIDLAKE_SAVE_SCREENSHOT"  # set to a path to keep the screenshot there

DAGSTER_YAML = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
run_launcher:
  module: dagster.core.launcher
  class: DefaultRunLauncher
telemetry:
  enabled: false
nux:
  enabled: false
"""

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status numPartitions
      runs { runId status tags { key value } }
      error { message }
    }
    ... on PythonError { message }
  }
}"""

WORKSPACE = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""

SENSOR_STATES = """
query($repo: RepositorySelector!) {
  sensorsOrError(repositorySelector: $repo) {
    ... on Sensors { results { name sensorState { status } } }
  }
}"""

OBSERVATIONS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { assetObservations(limit: 1) {
      metadataEntries { label ... on IntMetadataEntry { intValue } } } }
  }
}"""

DONE = {"COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "COMPLETED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DagsterUI:
    port: int
    lake: object
    logs: list[Path]
    processes: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(f"{self.url}/graphql",
                                 json={"query": query, "variables": variables or {}}, timeout=60)
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                         for p in self.logs)


def _wait(what: str, condition, timeout: float, ui: DagsterUI, processes) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes:
            if process.poll() is not None:
                pytest.fail(f"{name} exited ({process.returncode}) while waiting for {what}\n"
                            + ui.log_tail())
        try:
            value = condition()
        except requests.ConnectionError:
            value = None
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n" + ui.log_tail())


@pytest.fixture(scope="module")
def dagster_ui(streamed_lake, tmp_path_factory):
    """dagster-webserver + dagster-daemon, started from the repository root with no arguments
    (pyproject.toml names the definitions), DAGSTER_HOME in a tmp folder."""
    tmp = tmp_path_factory.mktemp("dagster-ui")
    lake = copy_lake(streamed_lake, tmp / "lake")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    unset = ("DAGSTER_", "GRIDLAKE_LATE_DIR", "GRIDLAKE_PARTITIONS_START", "GRIDLAKE_SPARK_MASTER")
    env = {k: v for k, v in os.environ.items() if not k.startswith(unset)}
    env.update({"DAGSTER_HOME": str(home), "GRIDLAKE_LAKE": lake.root,
                "GRIDLAKE_DEPLOYMENT": "test", "SPARK_LOCAL_IP": "127.0.0.1",
                "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable})
    port = free_port()
    commands = {"webserver": [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)],
                "daemon": [str(BIN / "dagster-daemon"), "run"]}
    ui = DagsterUI(port, lake, [tmp / f"{name}.log" for name in commands])
    processes = []
    try:
        # One after the other: both would create the fresh instance's SQLite tables.
        for (name, argv), log in zip(commands.items(), ui.logs, strict=True):
            with log.open("wb") as out:
                processes.append((name, subprocess.Popen(
                    argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)))
            if name == "webserver":
                _wait("the webserver", lambda: requests.get(f"{ui.url}/server_info",
                                                            timeout=5).ok, 180, ui, processes)

        def loaded():
            entries = ui.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
            return entries and all(e["loadStatus"] == "LOADED" for e in entries) and entries

        entries = _wait("the code location", loaded, 180, ui, processes)
        assert [e["name"] for e in entries] == ["gridlake"]
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
        ui.processes = processes
        yield ui
    finally:
        for _, process in processes:  # each is its own process group: it and its children
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.mark.timeout(600)
def test_backfill_of_a_partition_range_through_graphql_equals_the_batch_output(
        dagster_ui, dagster_gold, spark):
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    first, last = FLEET_DAYS[0], FLEET_DAYS[-1]
    # daily_site_rollups is written by the same Spark job, so a backfill names both
    # (Dagster refuses half of a multi-asset that cannot be split).
    by_asset = [{"assetKey": {"path": [asset]}, "partitions": {"range": {"start": first,
                                                                         "end": last}}}
                for asset in ("daily_device_rollups", "daily_site_rollups")]
    launched = dagster_ui.graphql(LAUNCH_BACKFILL, {"params": {
        "partitionsByAssets": by_asset, "title": "test: rollups of the fleet's days"}})
    result = launched["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id = result["backfillId"]

    def finished():
        backfill = dagster_ui.graphql(BACKFILL_STATUS, {"id": backfill_id})[
            "partitionBackfillOrError"]
        return backfill if backfill.get("status") in DONE else None

    backfill = _wait(f"backfill {backfill_id}", finished, 480, dagster_ui, dagster_ui.processes)
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill, dagster_ui.log_tail())
    assert backfill["numPartitions"] == len(FLEET_DAYS)
    # The single-run backfill policy: the whole range is one run.
    [run] = backfill["runs"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (tags["dagster/asset_partition_range_start"],
            tags["dagster/asset_partition_range_end"]) == (first, last)
    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_ui.port)
    assert client.get_run_status(run["runId"]) == DagsterRunStatus.SUCCESS

    # Equal to `batch.rollups.recompute` of the same days on the same silver version (what
    # `gridlake rollup --from --to` runs), computed in-process and checked against the oracle.
    lake, expected = dagster_ui.lake, dagster_gold[0]
    assert gold_rows(spark, lake, "gold/daily_device_rollups", DEVICE_COLUMNS) == gold_rows(
        spark, expected, "gold/daily_device_rollups", DEVICE_COLUMNS)
    assert gold_rows(spark, lake, "gold/daily_site_rollups", SITE_COLUMNS) == gold_rows(
        spark, expected, "gold/daily_site_rollups", SITE_COLUMNS)
    assert {r[0] for r in gold_rows(spark, lake, "gold/daily_device_rollups", ("run_id",))} == {
        f"dagster-{run['runId']}"}


@pytest.mark.timeout(300)
def test_stream_progress_sensor_in_the_daemon_observes_the_stream_tables(dagster_ui, spark):
    repo = {"repositoryLocationName": "gridlake", "repositoryName": "__repository__"}
    sensors = dagster_ui.graphql(SENSOR_STATES, {"repo": repo})["sensorsOrError"]["results"]
    # Only the observer runs by default; the sensors that launch Spark runs wait to be turned on.
    assert {s["name"]: s["sensorState"]["status"] for s in sensors} == {
        "stream_progress": "RUNNING", "late_report_files": "STOPPED", "silver_changes": "STOPPED"}

    def observed():
        node = dagster_ui.graphql(OBSERVATIONS, {"path": ["silver_readings"]})["assetNodeOrError"]
        events = node.get("assetObservations") or []
        return events and {e["label"]: e.get("intValue") for e in events[0]["metadataEntries"]}

    metadata = _wait("an observation of silver_readings", observed, 240, dagster_ui,
                     dagster_ui.processes)
    silver = spark.read.format("delta").load(dagster_ui.lake.path("silver/readings"))
    assert metadata["dagster/row_count"] == silver.count()


def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    reason = os.environ.get("GRIDLAKE_SKIP_BROWSER_TESTS")
    if reason:
        pytest.skip(f"chromium is not installed; skipped on request: {reason}")
    pytest.fail("chromium is not installed (Debian: apt-get install -y chromium); to skip this "
                "test instead, set GRIDLAKE_SKIP_BROWSER_TESTS to the reason")


def _chromium(browser: str, profile: Path, url: str, *action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--window-size=1600,1000", "--virtual-time-budget=15000", *action, url],
        capture_output=True, timeout=180, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})


@pytest.mark.timeout(600)
def test_asset_graph_in_headless_chromium_names_every_asset(dagster_ui, tmp_path):
    browser = chromium()
    expanded = "%2C".join(f"global%40global%3A{group}" for group in GROUPS)
    url = f"{dagster_ui.url}/asset-groups?expanded={expanded}"

    for attempt in range(2):  # a loaded machine can need a second, fresh page load
        dom = _chromium(browser, tmp_path / f"profile-dom-{attempt}", url, "--dump-dom")
        page = dom.stdout.decode(errors="replace")
        if all(asset in page for asset in ASSETS):
            break
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    missing = [asset for asset in (*ASSETS, *GROUPS) if asset not in page]
    assert missing == [], f"the asset graph page does not name {missing}"

    screenshot = tmp_path / "dagster-asset-graph.png"
    shot = _chromium(browser, tmp_path / "profile-shot", url, f"--screenshot={screenshot}")
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get(SCREENSHOT_COPY):
        target = Path(os.environ[SCREENSHOT_COPY])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)


LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

ASSET_JOBS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode { jobNames } }
}"""

CHECK_EXECUTIONS = """
query($path: [String!]!, $check: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, limit: 1) {
    runId status
    evaluation { success severity description
                 metadataEntries { label ... on JsonMetadataEntry { jsonString } } }
  }
}"""


def _visible_text(dom: str) -> str:
    """The page's text as a reader sees it: tags dropped, white space collapsed."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


@pytest.mark.timeout(900)
def test_a_bad_gold_row_shows_in_the_ui_as_a_failed_great_expectations_check(
        dagster_ui, dagster_gold, spark, tmp_path):
    """A row written into gold behind gridlake's back (plain Delta, samples = 0): the check
    launched through the webserver fails with ERROR severity naming the expectation and the
    value, and the asset's checks page in Chromium shows it failed."""
    import json

    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from orchestration.quality import GX_CHECK

    asset, expectation = "daily_device_rollups", "gold.daily_device_rollups.samples.positive"
    path = dagster_ui.lake.path("gold/daily_device_rollups")
    good = spark.read.format("delta").load(dagster_gold[0].path("gold/daily_device_rollups"))
    (good.limit(1).withColumn("device_id", F.lit("D-behind-the-back"))
     .withColumn("samples", F.lit(0).cast("long"))
     .write.format("delta").mode("append").save(path))
    rows = spark.read.format("delta").load(path).count()  # the bad one among them
    try:
        [job] = [j for j in dagster_ui.graphql(ASSET_JOBS, {"path": [asset]})[
            "assetNodeOrError"]["jobNames"] if j.startswith("__ASSET_JOB")]
        launched = dagster_ui.graphql(LAUNCH_RUN, {"params": {"selector": {
            "repositoryLocationName": "gridlake", "repositoryName": "__repository__",
            "jobName": job, "assetSelection": [],
            "assetCheckSelection": [{"assetKey": {"path": [asset]}, "name": GX_CHECK}]}}})[
            "launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        def evaluated():
            [execution] = dagster_ui.graphql(CHECK_EXECUTIONS, {"path": [asset],
                                                                "check": GX_CHECK})[
                "assetCheckExecutions"] or [None]
            return (execution if execution and execution["runId"] == run_id
                    and execution["status"] not in ("IN_PROGRESS",) else None)

        execution = _wait(f"the {GX_CHECK} check of run {run_id}", evaluated, 600, dagster_ui,
                          dagster_ui.processes)
        assert execution["status"] == "FAILED", (execution, dagster_ui.log_tail())
        evaluation = execution["evaluation"]
        assert (evaluation["success"], evaluation["severity"]) == (False, "ERROR")
        assert expectation in evaluation["description"]
        [failures] = [json.loads(m["jsonString"]) for m in evaluation["metadataEntries"]
                      if m["label"] == "failures"]
        assert [(f["expectation"], f["examples"]) for f in failures] == [(expectation, "[0]")]

        # What an operator sees: the asset's checks tab lists the check as failed and, for the
        # selected (first, failed) check, the latest execution's sentence with the value.
        browser = chromium()
        url = f"{dagster_ui.url}/assets/{asset}?view=checks"
        listed = f"{GX_CHECK} {GX_CHECK} Failed"
        sentence = f"failed: {expectation} (1 unexpected of {rows}; e.g. [0])"
        for attempt in range(4):  # a loaded machine can need more fresh page loads
            page = _visible_text(_chromium(browser, tmp_path / f"profile-{attempt}", url,
                                           "--dump-dom").stdout.decode(errors="replace"))
            if listed in page and sentence in page:
                break
        assert listed in page, page[:3000]
        assert sentence in page, page[:3000]
    finally:  # leave the module's lake as the other tests found it
        DeltaTable.forPath(spark, path).delete(F.col("device_id") == "D-behind-the-back")
