"""`gridlake demo`, the command behind `make demo`, run as a person runs it: its own process,
twice into the same folder. What it prints and the lake it leaves are checked against the
oracle's answer for the fleet it generated.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests import oracle
from tests.batch import expected as X
from tests.gridlake.deployment import base_env, check_tables, gridlake
from tests.streaming.conftest import BATCH_LINE

pytestmark = pytest.mark.long

ANY_BATCH_LINE = re.compile(r"^batch \d+:", re.MULTILINE)
# A row of the energy table Spark's show() prints: |day|device_type|import|export|readings|
ENERGY_ROW = re.compile(r"^\|(\d{4}-\d{2}-\d{2})\s*\|(\w+)\s*\|([\d.]+)\s*\|([\d.]+)\s*\|(\d+)\s*\|$",
                        re.MULTILINE)


def _records(folder: Path) -> list[oracle.Record]:
    return list(oracle.read_records(sorted(folder.iterdir())))


def _fleet_energy(truth: dict) -> dict[tuple[str, str], tuple[float, float, int]]:
    """kWh imported and exported and readings per UTC day and device type, from the oracle."""
    out: dict[tuple[str, str], list] = defaultdict(lambda: [0.0, 0.0, 0])
    for (_, day), row in X.device_rollups(truth).items():
        total = out[(day.isoformat(), row["device_type"])]
        total[0] += row["energy_import_wh"] / 1000
        total[1] += row["energy_export_wh"] / 1000
        total[2] += row["samples"]
    return {key: tuple(value) for key, value in out.items()}


def _printed_energy(stdout: str) -> dict[tuple[str, str], tuple[float, float, int]]:
    return {(day, device_type): (float(imported), float(exported), int(readings))
            for day, device_type, imported, exported, readings in ENERGY_ROW.findall(stdout)}


def _check_energy_table(stdout: str, truth: dict) -> None:
    printed, expected = _printed_energy(stdout), _fleet_energy(truth)
    assert printed.keys() == expected.keys(), stdout[-3000:]
    for key, (imported, exported, readings) in expected.items():
        shown = printed[key]
        # Printed to 0.1 kWh: within half a step of the exact sum, whatever the rounding mode.
        assert math.isclose(shown[0], imported, abs_tol=0.05 + 1e-9), (key, shown, imported)
        assert math.isclose(shown[1], exported, abs_tol=0.05 + 1e-9), (key, shown, exported)
        assert shown[2] == readings, (key, shown, readings)


def test_demo_streams_backfills_and_prints_the_fleets_energy_and_a_rerun_changes_nothing(
        tmp_path):
    # The demo's own Spark settings, as `make demo` runs it (about 100 s on 2 cores).
    env = base_env()
    first = gridlake("demo", "--dir", tmp_path, "--devices", "6", "--days", "2", env=env)
    fleet, lake = tmp_path / "fleet", tmp_path / "lake"

    stream, late = _records(fleet / "stream"), _records(fleet / "late")
    assert late, "the demo fleet should have a late report to load"
    now = X.now()
    stream_invalid = oracle.silver_truth(stream, now)[1]
    truth = oracle.silver_truth([*stream, *late], now)[0]

    # One line per micro-batch; together they read every streamed record once and
    # quarantined every invalid one.
    found = list(BATCH_LINE.finditer(first))
    assert len(found) == len(ANY_BATCH_LINE.findall(first)) >= 2, first[-3000:]
    assert not any(m["replayed"] for m in found), first[-3000:]
    assert [int(m["batch"]) for m in found] == list(range(len(found)))
    assert sum(int(m["read"]) for m in found) == len(stream)
    assert sum(int(m["quarantined"]) for m in found) == len(stream_invalid)
    assert f"records: {len(late)} read" in first
    check_tables(str(lake), fleet)
    _check_energy_table(first, truth)

    # Again into the same folder: the same fleet, nothing streamed or loaded twice.
    again = gridlake("demo", "--dir", tmp_path, "--devices", "6", "--days", "2", env=env)
    assert not ANY_BATCH_LINE.search(again), again[-3000:]
    reports = len(list((fleet / "late").iterdir()))
    assert f"0 loaded, {reports} already loaded" in again, again[-3000:]
    check_tables(str(lake), fleet)
    _check_energy_table(again, truth)
