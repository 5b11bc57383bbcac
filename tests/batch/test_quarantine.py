"""Quarantine list and replay: a rule fix moves exactly the records the oracle says, once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from batch.late_reports import backfill
from batch.quarantine import payload_preview, quarantine_groups, replay
from tests import oracle
from tests.batch import expected as X
from tests.batch.conftest import rows_by, silver_winners, table, versions, winners
from tests.batch.test_reprocess import with_power_max

POWER_MAX = 1500.0  # the "bug": a too strict power limit, fixed by going back to CURRENT


def power_of(payload: bytes) -> float | None:
    try:
        value = json.loads(payload)["data"]["power_w"]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def fleet_records(fleet: Path) -> list[oracle.Record]:
    return list(oracle.read_records([*(fleet / "stream").iterdir(), *(fleet / "late").iterdir()]))


def where(rows) -> set[tuple[str, int | None]]:
    return {(Path(r["source_file"]).name, r["source_line"]) for r in rows}


def test_replay_after_a_rule_fix_moves_exactly_the_right_records_and_is_idempotent(
        spark, lake, cli, small_fleet):
    records = fleet_records(small_fleet)
    now = X.now()
    valid = {(Path(r.path).name, r.line): r for r in records if oracle.event_of(r, now)}
    invalid = {(Path(r.path).name, r.line) for r in records if not oracle.event_of(r, now)}
    too_strong = {k for k, r in valid.items() if power_of(r.payload) > POWER_MAX}
    assert too_strong and invalid

    backfill(spark, lake, [small_fleet / "stream", small_fleet / "late"],
             contract=with_power_max(POWER_MAX))
    quarantine = table(spark, lake, "quarantine/telemetry").collect()
    assert where(quarantine) == invalid | too_strong

    # list: groups and counts as plain Python counts the entries, examples printable.
    expected_counts = Counter(c for r in quarantine for c in set(r["reason_codes"]))
    groups = quarantine_groups(spark, lake)
    assert {g.code: g.count for g in groups} == expected_counts
    assert groups[0].count == max(expected_counts.values())
    power = next(g for g in groups if g.code == "power_w.range")
    in_group = {r["record_id"] for r in quarantine if "power_w.range" in r["reason_codes"]}
    assert len(power.examples) == 3 and {e.record_id for e in power.examples} <= in_group
    status, out, _ = cli("quarantine", "--lake", lake.root, "list", "--reason", "payload.json")
    assert status == 0 and out.startswith(f"payload.json: {expected_counts['payload.json']} ")
    assert all(line.isascii() for line in out.splitlines())
    assert payload_preview(b"\x1b[2J\xff\"ok\"\n") == '\\u001b[2J\\\\xff\\"ok\\"\\n'
    status, out, _ = cli("quarantine", "--lake", lake.root, "list", "--since", "2999-01-01")
    assert status == 0 and out.startswith("no quarantined record")

    # The fix: replay with the current rules.
    silver_before = versions(spark, lake, "silver/readings")
    status, out, _ = cli("quarantine", "--lake", lake.root, "replay", "--reason", "power_w.range")
    assert status == 0, out
    assert f"{len(too_strong)} now pass" in out and "rollups:" in out
    assert versions(spark, lake, "silver/readings") > silver_before
    truth = oracle.silver_truth(records, now)[0]
    assert silver_winners(spark, lake) == winners(truth)
    X.same(rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day"),
           X.device_rollups(truth), "daily device rollups")
    after = table(spark, lake, "quarantine/telemetry").collect()
    assert len(after) == len(quarantine)  # marked, never deleted, never appended again
    assert where(r for r in after if r["status"] == "replayed") == too_strong
    assert where(r for r in after if r["status"] == "quarantined") == invalid
    for r in after:
        if r["status"] == "quarantined" and "power_w.range" in r["reason_codes"]:
            assert abs(power_of(bytes(r["payload"]))) > 1e6  # new reasons replaced the old
    replayed = [r for r in after if r["status"] == "replayed"]
    assert all(r["replay_run_id"] and r["replayed_at"] for r in replayed)

    # Idempotent: nothing passes any more, nothing changes, nothing is written.
    marks = {t: versions(spark, lake, t) for t in
             ("silver/readings", "quarantine/telemetry", "gold/daily_device_rollups")}
    again = replay(spark, lake)
    assert (again.selected, again.passed, again.reasons_updated) == (len(invalid), 0, 0)
    assert {t: versions(spark, lake, t) for t in marks} == marks
    status, out, _ = cli("quarantine", "--lake", lake.root, "replay",
                         "--ids", "../../etc", "x' OR 1=1 --")
    assert status == 0 and "no open quarantine entry matches" in out
    status, out, _ = cli("quarantine", "--lake", lake.root, "list", "--reason", "x' OR 1=1 --")
    assert status == 0 and "no quarantined record" in out and "not a rule code" in out
    assert {t: versions(spark, lake, t) for t in marks} == marks
