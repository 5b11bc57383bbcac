"""The decision log: every valid record a write handled, classified by the upsert rule."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from gridlake.ingest import WriteContext, write_batch
from gridlake.lake import open_lake, table_version
from shared_schemas.tables import decision_log
from streaming.sources import file_lines
from tests.batch import expected as X

DAY = "2026-11-02"


def _ts(hour: int) -> str:
    return f"{DAY}T{hour:02d}:00:00Z"


def _ev(hour: int, seq: int, event_id: str) -> bytes:
    return X.dumps(X.event("D1", "S1", "battery", _ts(hour), seq, 100.0 + seq,
                           event_id=event_id))


# Stored first (batch 0): hours 1-5 at seq 5, id "m".
FIRST = [_ev(h, 5, "m") for h in range(1, 6)]
# Then one batch (batch 1) with every case, in the order written (line n = index + 1).
SECOND = [
    _ev(1, 6, "n"),   # 1: higher seq than stored                   -> higher_seq
    _ev(2, 5, "m"),   # 2: same seq, same id as stored              -> duplicate
    _ev(3, 4, "x"),   # 3: lower seq than stored                    -> stale
    _ev(4, 5, "z"),   # 4: same seq, greater id than stored         -> producer_conflict_won
    _ev(5, 5, "a"),   # 5: same seq, smaller id than stored         -> producer_conflict_lost
    _ev(6, 1, "p"),   # 6: new key                                  -> inserted
    _ev(7, 2, "b"),   # 7: in-batch conflict, greater id first      -> producer_conflict_won
    _ev(7, 2, "a"),   # 8:                                          -> producer_conflict_lost
    _ev(8, 3, "a"),   # 9: in-batch conflict, smaller id first      -> producer_conflict_lost
    _ev(8, 3, "b"),   # 10:                                         -> producer_conflict_won
    _ev(9, 1, "d"),   # 11: in-batch duplicate delivery, first      -> inserted
    _ev(9, 1, "d"),   # 12: second delivery                         -> duplicate
    _ev(10, 7, "h"),  # 13: in-batch higher seq                     -> inserted
    _ev(10, 3, "l"),  # 14: in-batch lower seq                      -> stale
]
# Written with the log switched off (batch 2): a new key, and a correction of hour 6.
THIRD = [_ev(11, 1, "q"), _ev(6, 2, "p2")]
# line -> (decision, won, winner line's (seq, id))
EXPECTED = {
    1: ("higher_seq", True, (6, "n")),
    2: ("duplicate", False, (5, "m")),
    3: ("stale", False, (5, "m")),
    4: ("producer_conflict_won", True, (5, "z")),
    5: ("producer_conflict_lost", False, (5, "m")),
    6: ("inserted", True, (1, "p")),
    7: ("producer_conflict_won", True, (2, "b")),
    8: ("producer_conflict_lost", False, (2, "b")),
    9: ("producer_conflict_lost", False, (3, "b")),
    10: ("producer_conflict_won", True, (3, "b")),
    11: ("inserted", True, (1, "d")),
    12: ("duplicate", False, (1, "d")),
    13: ("inserted", True, (7, "h")),
    14: ("stale", False, (7, "h")),
}


CONFLICTS = sum(d.startswith("producer_conflict") for d, _, _ in EXPECTED.values())


def _raw(spark, path: str, lines: list[bytes]):
    content = (b"\n".join(lines) + b"\n").decode("latin-1")
    return spark.createDataFrame([(path, content)], "path string, content string").transform(
        file_lines())


@pytest.fixture(scope="module")
def decided(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("decisions")
    lake = open_lake(str(root / "lake"), create=True, spark=spark)
    versions, results = [], []
    for batch_id, (name, lines) in enumerate([("first.jsonl", FIRST), ("second.jsonl", SECOND)]):
        ctx = WriteContext.now(run_id="decisions-test", batch_id=batch_id, kind="backfill",
                               source=name)
        before = table_version(spark, lake.path("silver/readings"))
        results.append(write_batch(spark, lake, _raw(spark, f"/in/{name}", lines), ctx))
        versions.append((before, table_version(spark, lake.path("silver/readings"))))
    rows = spark.read.format("delta").load(lake.path("_gridlake/decisions")).collect()
    return lake, versions, rows, results


def test_every_record_of_a_crafted_batch_gets_the_rules_decision(decided):
    _, _, rows, results = decided
    second = {int(r["record_id"].rsplit("#", 1)[1]): r
              for r in rows if r["batch_id"] == 1}
    assert len([r for r in rows if r["batch_id"] == 1]) == len(SECOND)
    got = {line: (r["decision"], r["won"], (r["winner_seq"], r["winner_event_id"]))
           for line, r in second.items()}
    assert got == EXPECTED
    # The batch's count of producer conflicts (the batch log's `conflicts`), won and lost.
    assert [r.conflicts for r in results] == [0, CONFLICTS]


def test_the_first_write_inserts_and_every_row_names_its_write(decided):
    _, versions, rows, _ = decided
    first = [r for r in rows if r["batch_id"] == 0]
    assert sorted(r["decision"] for r in first) == ["inserted"] * len(FIRST)
    for r in rows:
        read, written = versions[r["batch_id"]]
        assert (r["run_id"], r["silver_version_read"], r["silver_version_written"]) == (
            "decisions-test", read, written)
        assert r["event_date"] == dt.date.fromisoformat(DAY)
        assert r["contract_version"] >= 1


def test_a_write_adds_one_log_file_per_event_date(decided):
    """A small batch's decisions are one file per date, not one per shuffle partition."""
    lake, *_ = decided
    spec = decision_log()
    per_commit = []
    for commit in sorted((Path(lake.path(spec)) / "_delta_log").glob("*.json")):
        adds = [json.loads(line)["add"] for line in commit.read_text().splitlines()
                if line.startswith('{"add"')]
        if adds:
            per_commit.append(Counter(tuple(a["partitionValues"][c] for c in spec.partition_by)
                                      for a in adds))
    assert len(per_commit) >= 2, per_commit
    assert all(set(files.values()) == {1} for files in per_commit), per_commit


def test_replaying_a_batch_logs_nothing_twice(spark, decided):
    lake, _, rows, _ = decided
    ctx = WriteContext.now(run_id="decisions-test", batch_id=1, kind="backfill",
                           source="second.jsonl")
    replayed = write_batch(spark, lake, _raw(spark, "/in/second.jsonl", SECOND), ctx)
    again = spark.read.format("delta").load(lake.path("_gridlake/decisions"))
    assert again.count() == len(rows)
    assert (replayed.replayed, replayed.conflicts) == (True, CONFLICTS)


def test_the_switch_turns_the_log_off(spark, decided, monkeypatch):
    lake, _, rows, _ = decided
    monkeypatch.setenv("GRIDLAKE_DECISION_LOG", "off")
    ctx = WriteContext.now(run_id="decisions-test", batch_id=2, kind="backfill", source="x")
    result = write_batch(spark, lake, _raw(spark, "/in/third.jsonl", THIRD), ctx)
    assert (result.upserted, result.conflicts) == (len(THIRD), 0)
    log = spark.read.format("delta").load(lake.path("_gridlake/decisions"))
    assert log.count() == len(rows)


def _rebuild_expectation() -> Counter:
    """Each record of all three files decided afresh against its key's winner, by the rule."""
    events = [json.loads(line) for line in FIRST + SECOND + THIRD]
    by_key = defaultdict(list)
    for e in events:
        by_key[e["data"]["ts"]].append((e["data"]["seq"], e["id"]))
    out = Counter()
    for ts, records in by_key.items():
        winner = max(records)
        rival = any(seq == winner[0] and i != winner[1] for seq, i in records)
        out[(ts, *winner, "producer_conflict_won" if rival else "inserted")] += 1
        for seq, i in sorted(records):
            if (seq, i) == winner:
                continue
            decision = ("stale" if seq < winner[0] else "duplicate" if i == winner[1]
                        else "producer_conflict_lost")
            out[(ts, seq, i, decision)] += 1
        out[(ts, *winner, "duplicate")] += records.count(winner) - 1
    return +out


def test_a_reprocess_logs_its_rebuild_from_bronze(spark, decided):
    from batch.reprocess import reprocess

    lake, _, _, _ = decided
    day = dt.date.fromisoformat(DAY)
    run_id = reprocess(spark, lake, day, day).run_id
    log = (spark.read.format("delta").load(lake.path("_gridlake/decisions"))
           .where(F.col("run_id") == run_id)
           .select(F.date_format("ts", "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("ts"), "seq",
                   "event_id", "decision").collect())
    expected = _rebuild_expectation()
    assert Counter(tuple(r) for r in log) == expected
    [logged] = (spark.read.format("delta").load(lake.path("_gridlake/batches"))
                .where(F.col("run_id") == run_id).collect())
    assert logged["conflicts"] == sum(n for (_, _, _, decision), n in expected.items()
                                      if decision.startswith("producer_conflict"))
