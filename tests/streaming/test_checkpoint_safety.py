"""A lost or damaged checkpoint never duplicates records: refuse, then recover exactly."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from gridlake.errors import CheckpointError
from gridlake.lake import Lake, open_lake
from streaming.query import StreamOptions, run_stream
from streaming.sources import FileSource
from tests.streaming.conftest import check_exactly_once, check_logs, file_stream, fleet_landing

pytestmark = pytest.mark.chaos  # make chaos's "lost checkpoint" case; short enough for make test


@pytest.fixture()
def streamed_once(spark, small_fleet, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    files = sorted((small_fleet / "stream").glob("*.jsonl"))
    for path in files[:2]:
        shutil.copy(path, landing / path.name)
    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    source = FileSource(str(landing))
    run_stream(spark, lake, source, StreamOptions(available_now=True), report=lambda _: None)
    return lake, source, landing, files


def _lose_metadata(checkpoint: str) -> None:
    os.remove(f"{checkpoint}/metadata")


@pytest.mark.parametrize(("damage", "refusal"), [(shutil.rmtree, "--recover"),
                                                 (_lose_metadata, "lost its metadata file")],
                         ids=["folder-lost", "metadata-lost"])
def test_a_lost_checkpoint_is_refused_then_recovered_as_documented(
        spark, streamed_once, tmp_path, damage, refusal):
    lake, source, landing, files = streamed_once
    checkpoint = lake.default_checkpoint(source.slug)
    old_run = json.loads(Path(checkpoint, "gridlake.json").read_text())["run_id"]
    damage(checkpoint)
    with pytest.raises(CheckpointError, match=refusal):
        run_stream(spark, lake, source, StreamOptions(available_now=True), report=lambda _: None)
    for path in files[2:]:  # new data arrived while the stream was down
        shutil.copy(path, landing / path.name)
    # docs/operations.md, "Lost checkpoint": move the damaged folder aside, start with --recover.
    if os.path.exists(checkpoint):
        shutil.move(checkpoint, tmp_path / "damaged-checkpoint")
    run_stream(spark, lake, source, StreamOptions(available_now=True, recover=True),
               report=lambda _: None)
    new_run = json.loads(Path(checkpoint, "gridlake.json").read_text())["run_id"]
    assert new_run != old_run, "a fresh checkpoint must get a fresh run id"
    check_exactly_once(spark, lake, list(landing.glob("*.jsonl")))


def test_checkpoint_of_another_source_is_refused(spark, streamed_once, tmp_path):
    lake, source, _, _ = streamed_once
    other = tmp_path / "other"
    other.mkdir()
    options = StreamOptions(available_now=True, checkpoint=lake.default_checkpoint(source.slug))
    with pytest.raises(CheckpointError, match="belongs to source"):
        run_stream(spark, lake, FileSource(str(other)), options, report=lambda _: None)


@pytest.mark.slow  # make chaos; make test keeps the single-fault cases above
def test_a_batch_killed_after_its_bronze_append_is_finished_by_the_recovery(
        spark, small_fleet, tmp_path):
    """Two faults: kill -9 after bronze's append of the first micro-batch (nothing else of it
    committed, nothing in the batch log), then the checkpoint folder lost. The lake still knows
    the source was streamed, so a plain start is refused; `--recover` finishes the interrupted
    batch from bronze (its quarantine and silver) before reading on, so the records it holds
    are neither skipped nor written twice."""
    landing, lake_dir = fleet_landing(small_fleet, tmp_path)
    crashed = file_stream(landing, lake_dir, "--available-now", GRIDLAKE_CRASH_AT="after_bronze@0")
    code, out = crashed.finish()
    assert code == -signal.SIGKILL, (code, out)
    lake = Lake(str(lake_dir.resolve()))
    shutil.rmtree(lake.default_checkpoint(FileSource(str(landing)).slug))

    code, out = file_stream(landing, lake_dir, "--available-now").finish()
    assert code != 0 and "--recover" in out, out
    code, out = file_stream(landing, lake_dir, "--available-now", "--recover").finish()
    assert code == 0, out
    assert any(line.startswith("recovered batch 0 of stream-") for line in out.splitlines()), out
    files = list(landing.glob("*.jsonl"))
    check_exactly_once(spark, lake, files)
    check_logs(spark, lake, files)
