"""SIGTERM, as a service manager sends it, stops a running stream cleanly: exit 0 once the
micro-batch in flight is committed, and a restart loads the rest with nothing twice."""

from __future__ import annotations

import shutil

from gridlake.lake import Lake
from tests import oracle
from tests.streaming.conftest import StreamProcess, check_exactly_once


def test_sigterm_stops_a_running_stream_cleanly_and_a_restart_goes_on(
        spark, small_fleet, tmp_path):
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    files = sorted((small_fleet / "stream").glob("*.jsonl"))[:3]
    for path in files:
        shutil.copy(path, landing / path.name)
    stream = StreamProcess(f"files:{landing}", lake_dir, "--trigger", "1",
                           "--max-files-per-trigger", "1")
    try:
        stream.wait_for_line("batch 0:")
    finally:
        code = stream.stop()
    assert code == 0, stream.tail()
    records = sum(1 for _ in oracle.read_records(files))
    assert 0 < stream.read < records, f"the stop left nothing for the restart:\n{stream.tail()}"

    restart = StreamProcess(f"files:{landing}", lake_dir, "--available-now")
    code, out = restart.finish()
    assert code == 0, out
    check_exactly_once(spark, Lake(str(lake_dir.resolve())), files)
