"""kill -9 of the streaming process mid-batch, then restart: every record exactly once.

At a random moment after a committed batch, and at each named point between two commits of a
micro-batch (`gridlake.faults`): after bronze, after quarantine, after the silver MERGE, after
the decision log, and after the batch log but before Spark's checkpoint commit marker.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridlake.faults import POINTS
from gridlake.lake import Lake
from tests.streaming.conftest import check_exactly_once

REPO = Path(__file__).resolve().parents[2]


def _stream(landing: Path, lake: Path, *extra: str, **env_extra: str) -> subprocess.Popen:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "GRIDLAKE_DRIVER_MEMORY": "1g",
           **env_extra}
    return subprocess.Popen(
        [sys.executable, "-m", "gridlake.cli", "stream", "--source", f"files:{landing}",
         "--lake", str(lake), "--max-files-per-trigger", "1", *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True)


def _kill_during_a_batch(proc: subprocess.Popen, rng: random.Random, timeout: float = 240) -> str:
    """Wait for a committed micro-batch, then kill -9 the whole process group a moment later."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("batch "):
            time.sleep(rng.uniform(0.0, 4.0))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return line
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"the stream committed no batch in {timeout} s: {''.join(seen)}")


def _landing(fleet: Path, workdir: Path) -> tuple[Path, Path]:
    """A landing folder holding the fleet's stream files, and where the lake goes."""
    landing, lake_dir = workdir / "landing", workdir / "lake"
    landing.mkdir()
    for path in sorted((fleet / "stream").glob("*.jsonl")):
        shutil.copy(path, landing / path.name)
    return landing, lake_dir


def run_kill_restart(spark, fleet: Path, workdir: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    print(f"kill/restart seed {seed}")
    landing, lake_dir = _landing(fleet, workdir)
    for _ in range(kills):
        _kill_during_a_batch(_stream(landing, lake_dir, "--trigger", "0.5"), rng)
    final = _stream(landing, lake_dir, "--available-now")
    out, _ = final.communicate(timeout=600)
    assert final.returncode == 0, out
    check_exactly_once(spark, Lake(str(lake_dir.resolve())), list(landing.glob("*.jsonl")))


def test_kill_9_mid_batch_then_restart_keeps_every_record_exactly_once(
        spark, small_fleet, tmp_path):
    run_kill_restart(spark, small_fleet, tmp_path, kills=1, seed=int(time.time()))


@pytest.mark.slow
def test_many_random_kills_keep_every_record_exactly_once(spark, tmp_path):
    from gridlake.cli import main

    fleet = tmp_path / "fleet"
    assert main(["generate", "--out", str(fleet), "--devices", "12", "--days", "2",
                 "--stream-files", "24", "--corrupt", "0.05", "--duplicates", "0.05",
                 "--corrections", "0.05", "--conflicts", "0.02"]) == 0
    seed = int(os.environ.get("GRIDLAKE_CHAOS_SEED", time.time()))
    run_kill_restart(spark, fleet, tmp_path / "run", kills=20, seed=seed)


def crash_at_then_restart(spark, fleet: Path, workdir: Path, point: str) -> None:
    """Stream one file per batch and die by SIGKILL at `point` of batch 1; the restart must
    replay batch 1 over what it had committed and end with every record exactly once."""
    landing, lake_dir = _landing(fleet, workdir)
    crashed = _stream(landing, lake_dir, "--available-now", GRIDLAKE_CRASH_AT=f"{point}@1")
    out, _ = crashed.communicate(timeout=600)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, out)
    # Batch 1 died before its line was printed.
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("batch ")] == [
        "batch 0"], out
    restarted = _stream(landing, lake_dir, "--available-now")
    out, _ = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, out
    [replay] = [line for line in out.splitlines() if line.startswith("batch 1:")]
    assert "replayed: already committed" in replay, out
    check_exactly_once(spark, Lake(str(lake_dir.resolve())), list(landing.glob("*.jsonl")))


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_kill_9_at_each_commit_boundary_then_restart(spark, small_fleet, tmp_path, point):
    crash_at_then_restart(spark, small_fleet, tmp_path, point)
