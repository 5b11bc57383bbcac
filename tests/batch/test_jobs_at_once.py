"""Four writers at once, each its own process and Spark: the stream, a late-report backfill
over the same days, a reprocess of those days and a `forget` of one device. Every job must
succeed (lost write races retried) and the tables must end equal to the independent answer.

The forgotten device sends nothing while the jobs run (its lines are left out of the files
they read), so the answer does not depend on which job commits first. `reprocess` decides
from a bronze snapshot: when `forget` erases the device after that read, what reprocess wrote
of it must be removed again (`batch.erasure.drop_erased`).

This is `make chaos`'s case; `make test` runs the same race as threads of one driver
(`tests/batch/test_concurrency.py`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gridlake.lake import Lake
from tests.batch.conftest import check_forgotten_in_the_end, prepare_race

REPO = Path(__file__).resolve().parents[2]


def _gridlake(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "GRIDLAKE_DRIVER_MEMORY": "1g"}
    return subprocess.Popen([sys.executable, "-m", "gridlake.cli", *map(str, argv)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _finish(name: str, process: subprocess.Popen, timeout: float = 1500) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"{name} exited {process.returncode}:\n{out[-4000:]}"
    return out


@pytest.mark.slow
def test_stream_backfill_reprocess_and_forget_at_once_end_right(spark, small_fleet, tmp_path):
    race = prepare_race(small_fleet, tmp_path)
    lake_dir = tmp_path / "lake"
    _finish("the first stream run", _gridlake("stream", "--source", f"files:{race.first}",
                                               "--lake", lake_dir, "--available-now"))
    _finish("sites", _gridlake("sites", "--lake", lake_dir, "load", small_fleet / "sites.csv"))
    jobs = {
        "stream": _gridlake("stream", "--source", f"files:{race.landing}", "--lake", lake_dir,
                            "--available-now", "--max-files-per-trigger", "1"),
        "backfill": _gridlake("backfill", "--lake", lake_dir, "--files-per-batch", "1",
                              race.late),
        "reprocess": _gridlake("reprocess", "--lake", lake_dir, "--from", race.days[0],
                               "--to", race.days[-1]),
        "forget": _gridlake("forget", "--lake", lake_dir, "--device", race.device),
    }
    for name, process in jobs.items():
        _finish(name, process)
    _finish("rollup", _gridlake("rollup", "--lake", lake_dir, "--changed"))

    check_forgotten_in_the_end(spark, Lake(str(lake_dir.resolve())), race)
