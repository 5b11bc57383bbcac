"""kill -9 of the streaming process mid-batch, then restart: every record exactly once.

At a random moment after a committed batch, and at each named point between two commits of a
micro-batch (`gridlake.faults`): after bronze, after quarantine, after the silver MERGE, after
the decision log, and after the batch log but before Spark's checkpoint commit marker. The long
run (`make chaos`) mixes both: 20 kills, every other one at a named point. `make test` kills at
a random moment; `make test-long` right after the silver MERGE, and once more with silver
vacuumed under the replay (as `gridlake forget --now` does).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from batch.erasure import purge_and_vacuum
from gridlake.faults import POINTS
from gridlake.lake import Lake
from shared_schemas.tables import bronze_telemetry, silver_readings
from tests import oracle
from tests.streaming.conftest import (
    StreamProcess,
    check_exactly_once,
    check_logs,
    file_stream,
    fleet_landing,
)


def _kill_during_a_batch(stream: StreamProcess, rng: random.Random) -> None:
    """Wait for a committed micro-batch, then kill -9 the whole process group a moment later."""
    stream.wait_for_line("batch ")
    time.sleep(rng.uniform(0.0, 4.0))
    stream.signal(signal.SIGKILL)


def _die_at(landing: Path, lake_dir: Path, point: str, timeout: float = 300) -> None:
    """Run the stream armed to SIGKILL itself when the next batch (or replay) reaches `point`."""
    armed = file_stream(landing, lake_dir, "--trigger", "0.5", GRIDLAKE_CRASH_AT=point)
    code, out = armed.finish(timeout)
    assert code == -signal.SIGKILL, (point, code, out)


def run_kill_restart(spark, fleet: Path, workdir: Path, kills: int, seed: int,
                     points: tuple[str, ...] = ()) -> None:
    """`kills` kill -9s, then a clean restart. With `points`, every other kill is the stream
    dying at the next of those named commit boundaries (in turn) instead of at a random moment."""
    rng = random.Random(seed)
    print(f"kill/restart seed {seed}")
    landing, lake_dir = fleet_landing(fleet, workdir)
    for i in range(kills):
        if points and i % 2 == 0:
            _die_at(landing, lake_dir, points[(i // 2) % len(points)])
        else:
            _kill_during_a_batch(file_stream(landing, lake_dir, "--trigger", "0.5"), rng)
    code, out = file_stream(landing, lake_dir, "--available-now").finish()
    assert code == 0, out
    lake, files = Lake(str(lake_dir.resolve())), list(landing.glob("*.jsonl"))
    check_exactly_once(spark, lake, files)
    check_logs(spark, lake, files)


def test_kill_9_mid_batch_then_restart_keeps_every_record_exactly_once(
        spark, small_fleet, tmp_path):
    run_kill_restart(spark, small_fleet, tmp_path, kills=1, seed=int(time.time()))


@pytest.mark.slow
def test_twenty_kills_at_random_moments_and_every_boundary_keep_every_record_exactly_once(
        spark, tmp_path):
    from gridlake.cli import main

    fleet = tmp_path / "fleet"
    assert main(["generate", "--out", str(fleet), "--devices", "12", "--days", "2",
                 "--stream-files", "40", "--corrupt", "0.05", "--duplicates", "0.05",
                 "--corrections", "0.05", "--conflicts", "0.02"]) == 0
    seed = int(os.environ.get("GRIDLAKE_CHAOS_SEED", time.time()))
    run_kill_restart(spark, fleet, tmp_path / "run", kills=20, seed=seed, points=POINTS)


def crash_at_then_restart(spark, fleet: Path, workdir: Path, point: str) -> None:
    """Stream one file per batch and die by SIGKILL at `point` of batch 1; the restart must
    replay batch 1 over what it had committed and end with every record exactly once."""
    landing, lake_dir = fleet_landing(fleet, workdir)
    crashed = file_stream(landing, lake_dir, "--available-now", GRIDLAKE_CRASH_AT=f"{point}@1")
    code, out = crashed.finish()
    assert code == -signal.SIGKILL, (code, out)
    # Batch 1 died before its line was printed.
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("batch ")] == [
        "batch 0"], out
    code, out = file_stream(landing, lake_dir, "--available-now").finish()
    assert code == 0, out
    [replay] = [line for line in out.splitlines() if line.startswith("batch 1:")]
    assert "replayed: already committed" in replay, out
    lake, files = Lake(str(lake_dir.resolve())), list(landing.glob("*.jsonl"))
    check_exactly_once(spark, lake, files)
    check_logs(spark, lake, files)


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_each_commit_boundary_then_restart(spark, small_fleet, tmp_path, point):
    crash_at_then_restart(spark, small_fleet, tmp_path, point)


@pytest.mark.long
def test_kill_9_right_after_the_silver_merge_then_restart_replays_the_batch_exactly_once(
        spark, small_fleet, tmp_path):
    """make test-long's named commit boundary: silver committed, the decision and batch logs
    and the checkpoint not (make chaos runs every boundary)."""
    crash_at_then_restart(spark, small_fleet, tmp_path, "after_silver")


def crash_vacuum_restart(spark, fleet: Path, workdir: Path, point: str
                         ) -> tuple[Lake, list[Path], str]:
    """Die by SIGKILL at `point` of batch 1, purge and vacuum silver as `gridlake forget --now`
    does (the files batch 1's MERGE marked are rewritten, then a vacuum at zero retention),
    then the same command again: (lake, files, the restart's output)."""
    landing, lake_dir = fleet_landing(fleet, workdir)
    crashed = file_stream(landing, lake_dir, "--available-now", GRIDLAKE_CRASH_AT=f"{point}@1")
    code, out = crashed.finish()
    assert code == -signal.SIGKILL, (code, out)
    lake, files = Lake(str(lake_dir.resolve())), list(landing.glob("*.jsonl"))
    assert purge_and_vacuum(spark, silver_readings(), lake.path(silver_readings()), now=True,
                            purge=True) > 0
    code, out = file_stream(landing, lake_dir, "--available-now").finish()
    assert code == 0, out
    return lake, files, out


@pytest.mark.long
def test_a_replay_after_silver_was_vacuumed_leaves_out_its_decisions_and_goes_on(
        spark, small_fleet, tmp_path):
    """kill -9 right after batch 1's MERGE, then silver purged and vacuumed: silver as
    that MERGE read it is gone, so the restart cannot classify batch 1's records again. It
    used to fail on every restart; now it says so, logs every other batch's decisions, and
    every record is in every table exactly once."""
    lake, files, out = crash_vacuum_restart(spark, small_fleet, tmp_path, "after_silver")
    [replay] = [line for line in out.splitlines() if line.startswith("batch 1:")]
    assert "replayed: already committed" in replay, out
    [warning] = [line for line in out.splitlines() if "upsert decisions of" in line]
    assert warning.startswith("the upsert decisions of stream-"), warning
    assert "/1 are not logged: silver/readings v" in warning, warning
    check_exactly_once(spark, lake, files)

    bronze = spark.read.format("delta").load(lake.path(bronze_telemetry()))
    [batch_1_file] = {Path(r[0]).name for r in
                      bronze.where("batch_id = 1").select("source_file").distinct().collect()}
    records = list(oracle.read_records(files))
    _, invalid = oracle.silver_truth(records)
    expected = ({(Path(r.path).name, r.line) for r in records}
                - {(Path(r.path).name, r.line) for r in invalid})
    decided = spark.read.format("delta").load(lake.path("_gridlake/decisions")).collect()
    coordinates = [r["record_id"].removeprefix("file:").rsplit("#", 1) for r in decided]
    assert sorted((Path(f).name, int(n)) for f, n in coordinates) == sorted(
        c for c in expected if c[0] != batch_1_file)


@pytest.mark.long
def test_a_replay_after_its_decisions_were_logged_and_silver_vacuumed_counts_them(
        spark, small_fleet, tmp_path):
    """kill -9 after batch 1's decisions were logged (its batch-log entry not yet), then silver
    purged and vacuumed: the replay cannot classify batch 1 again, and need not. Its batch-log
    entry counts the conflicts its logged decisions hold, and nothing warns of a missing log."""
    lake, files, out = crash_vacuum_restart(spark, small_fleet, tmp_path, "after_write")
    assert "upsert decisions of" not in out, out
    check_exactly_once(spark, lake, files)
    check_logs(spark, lake, files)
