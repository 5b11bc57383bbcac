"""Reads that meet vacuumed data: telling them apart, and what silver's commits still say."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from batch.lake_state import days_in_commits
from gridlake.lake import is_data_gone
from gridlake.lineage import same_numbers

# Messages as Spark, Delta and delta-rs gave them for files and versions that were gone.
GONE = [
    "org.apache.spark.SparkException: [FAILED_READ_FILE.FILE_NOT_EXIST] Encountered error while "
    "reading file file:/l/silver/readings/event_date=2026-11-01/part-0.snappy.parquet. File does "
    "not exist. It is possible the underlying files have been updated.",
    "java.io.FileNotFoundException: File file:/l/silver/readings/part-0.parquet does not exist",
    "Invalid: C Data interface error: External error: Parquet error: Failed to fetch metadata for "
    "file _change_data/cdc-0.snappy.parquet: Object Store error: Object at location "
    "/l/silver/readings/_change_data/cdc-0.snappy.parquet not found: No such file or directory",
    "Invalid table version: 3",
]
NOT_GONE = [
    "[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added to partition",
    "java.io.IOException: Permission denied",
    "Object at location /l/x is forbidden",
    "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column `event_date` cannot be resolved",
]


@pytest.mark.parametrize("message", GONE)
def test_reads_of_vacuumed_files_and_cleaned_up_versions_are_told_apart(message):
    assert is_data_gone(RuntimeError(message))


@pytest.mark.parametrize("message", NOT_GONE)
def test_other_errors_are_not_taken_for_gone_data(message):
    assert not is_data_gone(RuntimeError(message))


def _commit(log, version: int, *actions: dict) -> None:
    lines = [{"commitInfo": {"operation": "TEST"}}, *actions]
    (log / f"{version:020d}.json").write_text("\n".join(map(json.dumps, lines)) + "\n")


def _file(kind: str, day: str | None, data_change: bool = True) -> dict:
    action = {"path": f"event_date={day}/part-{kind}.parquet", "dataChange": data_change}
    if day is not None:
        action["partitionValues"] = {"event_date": day}
    return {kind: action}


def test_the_days_silver_changed_are_read_from_its_commit_files(tmp_path):
    log = tmp_path / "silver" / "readings" / "_delta_log"
    log.mkdir(parents=True)
    _commit(log, 0)                                                    # the table made
    _commit(log, 1, _file("add", "2026-11-01"))                        # an append
    _commit(log, 2, _file("remove", "2026-11-02"), _file("add", "2026-11-02"))  # a MERGE
    _commit(log, 3, _file("remove", "2026-11-03", False),
            _file("add", "2026-11-03", False))                         # compaction: no change
    _commit(log, 4, _file("remove", "2026-11-04"))                     # a day emptied
    root = str(tmp_path)
    day = dt.date.fromisoformat
    assert days_in_commits(root, 0, 4) == [day("2026-11-01"), day("2026-11-02"), day("2026-11-04")]
    assert days_in_commits(root, 2, 3) == [day("2026-11-02")]
    assert days_in_commits(root, 3, 3) == []
    assert days_in_commits(root, 4, 5) is None                         # version 5 is not there
    (log / f"{1:020d}.json").unlink()                                  # cleaned up
    assert days_in_commits(root, 0, 2) is None
    _commit(log, 5, _file("remove", None))                             # no partition named
    assert days_in_commits(root, 5, 5) is None


def test_a_day_rolled_up_again_matches_gold_to_rounding_only():
    gold = {"site_id": "S1", "samples": 3, "energy_import_wh": 0.6, "min_soc_pct": None,
            "avg_power_w": 0.0}
    same = {"site_id": "S1", "samples": 3, "energy_import_wh": 0.1 + 0.2 + 0.3,
            "min_soc_pct": None, "avg_power_w": -2e-13}
    assert same_numbers(same, gold)
    for name, other in (("samples", 4), ("site_id", "S2"), ("energy_import_wh", 0.6001),
                        ("min_soc_pct", 0.0), ("avg_power_w", 1e-6)):
        assert not same_numbers({**same, name: other}, gold), name
