"""Reprocess: a rule change moves records between silver and quarantine, and rollups follow."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from pyspark.sql import functions as F

from batch.late_reports import backfill
from batch.reprocess import reprocess
from batch.sites import load_sites
from shared_schemas import CURRENT
from tests import oracle
from tests.batch import expected as X
from tests.batch.conftest import (
    rows_by,
    silver_winners,
    stream_batches,
    table,
    versions,
    winners,
)

A, B = dt.date(2026, 11, 10), dt.date(2026, 11, 11)
ZONES = {"S1": "Europe/Berlin"}


def with_power_max(maximum: float):
    fields = tuple(dataclasses.replace(f, maximum=maximum) if f.name == "power_w" else f
                   for f in CURRENT.fields)
    return dataclasses.replace(CURRENT, fields=fields)


def expected_truth(records, power_max):
    """The oracle's truth once readings on A..B above `power_max` count as invalid too."""

    def breaks(record) -> bool:
        try:
            data = json.loads(record.payload)["data"]
        except (ValueError, TypeError, KeyError):
            return False
        return data["ts"][:10] in (str(A), str(B)) and data["power_w"] > power_max

    return oracle.silver_truth([r for r in records if not breaks(r)], X.now())[0]


def quarantine_by_line(spark, lake):
    out: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
    for r in table(spark, lake, "quarantine/telemetry").collect():
        out.setdefault(r["source_line"], []).append((r["status"], tuple(sorted(r["reason_codes"]))))
    return {line: sorted(entries) for line, entries in out.items()}


def check(spark, lake, truth, zones: dict[str, str] | None = None):
    """Silver and the device rollups equal the truth; the site rollups too when `zones` (the
    registry loaded into the lake) is given."""
    assert silver_winners(spark, lake) == winners(truth)
    X.same(rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day"),
           X.device_rollups(truth), "daily device rollups")
    if zones is not None:
        X.same(rows_by(spark, lake, "gold/daily_site_rollups", "site_id", "local_day"),
               X.site_rollups(truth, zones), "daily site rollups")


def test_reprocess_after_a_rule_change_moves_records_and_rollups_follow(
        spark, lake, cli, tmp_path, capsys):
    records = [
        X.event("D1", "S1", "meter", "2026-11-10T00:00:00Z", 1, 500.0),
        X.event("D1", "S1", "meter", "2026-11-10T06:00:00Z", 2, 1500.0),           # line 2
        X.event("D1", "S1", "meter", "2026-11-10T12:00:00Z", 3, 800.0),
        X.event("D1", "S1", "meter", "2026-11-10T18:00:00Z", 4, 2e6, hours=0.25),  # line 4
        X.event("D1", "S1", "meter", "2026-11-11T06:00:00Z", 5, 1500.0, soc=150),  # line 5
        X.event("D2", "S1", "solar", "2026-11-10T12:00:00Z", 1, 100.0),
        X.event("D2", "S1", "solar", "2026-11-11T12:00:00Z", 2, 2000.0),           # line 7
        X.event("D1", "S1", "meter", "2026-11-12T06:00:00Z", 6, 5000.0),
    ]
    report = tmp_path / "r.jsonl"
    report.write_bytes(b"\n".join([*map(X.dumps, records), b"{not json"]) + b"\n")
    lines = list(oracle.read_records([report]))
    registry = tmp_path / "sites.csv"
    registry.write_text("site_id,timezone\n" + "".join(f"{s},{z}\n" for s, z in ZONES.items()))
    load_sites(spark, lake, registry)
    capsys.readouterr()
    backfill(spark, lake, [report], progress=True)
    # The progress bar (shown on a terminal by default) goes over the report's bytes to the end.
    bar = capsys.readouterr().err
    assert "backfill:   0%" in bar and "backfill: 100%" in bar, bar
    check(spark, lake, expected_truth(lines, 1e6), ZONES)
    before = versions(spark, lake, "silver/readings")

    strict = reprocess(spark, lake, A, B, contract=with_power_max(1000))
    check(spark, lake, expected_truth(lines, 1000), ZONES)
    assert ("D2", B) not in rows_by(spark, lake, "gold/daily_device_rollups", "device_id", "day")
    assert (strict.records, strict.valid, strict.quarantine_added,
            strict.quarantine_superseded) == (7, 3, 3, 1)
    assert any(line.startswith("versions written: silver/readings v") for line in strict.lines())
    # Each table's version is the run's own commit (nothing else writes here meanwhile).
    for path in ("silver/readings", "quarantine/telemetry", "_gridlake/decisions",
                 "_gridlake/batches", "gold/daily_device_rollups", "gold/daily_site_rollups"):
        assert strict.versions[path] == versions(spark, lake, path), path
    old = table(spark, lake, "silver/readings", version=before)
    assert old.where(F.col("power_w") == 1500).count() == 1  # time travel: the old silver

    # The rule is reverted: reprocessing with the current contract moves the records back.
    status, out, _ = cli("reprocess", "--lake", lake.root, "--from", A, "--to", B)
    assert status == 0 and "2 marked reprocessed, 1 superseded" in out
    assert "versions written: silver/readings v" in out
    check(spark, lake, expected_truth(lines, 1e6), ZONES)
    power, soc = "power_w.range", "soc_pct.range"
    assert quarantine_by_line(spark, lake) == {
        2: [("reprocessed", (power,))],
        4: [("quarantined", (power,))],
        5: [("quarantined", (soc,)), ("superseded", (power, soc)), ("superseded", (soc,))],
        7: [("reprocessed", (power,))],
        9: [("quarantined", ("payload.json",))],
    }


@pytest.mark.long  # an erasure end to end, with its vacuums: with the other erasure runs
def test_a_forget_landing_while_reprocess_runs_leaves_no_trace_of_the_device(
        spark, lake, tmp_path, monkeypatch):
    """`forget` erases D1 after reprocess read bronze and before it wrote anything: the
    rebuild, the decision log and the new quarantine entries would put D1 back."""
    import batch.reprocess
    from batch.erasure import forget

    records = [
        X.event("D1", "S1", "meter", "2026-11-10T00:00:00Z", 1, 500.0),
        X.event("D1", "S1", "meter", "2026-11-10T06:00:00Z", 2, 1500.0),
        X.event("D1", "S1", "meter", "2026-11-11T06:00:00Z", 3, 800.0),
        X.event("D2", "S1", "solar", "2026-11-10T12:00:00Z", 1, 100.0),
        X.event("D2", "S1", "solar", "2026-11-11T12:00:00Z", 2, 2000.0),
        X.event("D2", "S1", "solar", "2026-11-12T12:00:00Z", 3, 300.0),
    ]
    report = tmp_path / "r.jsonl"
    report.write_bytes(b"\n".join(map(X.dumps, records)) + b"\n")
    backfill(spark, lake, [report])
    erased_in_range = sum(1 for r in records if r["data"]["device_id"] == "D1"
                          and r["data"]["ts"][:10] in (str(A), str(B)))

    rebuild = batch.reprocess.replace_dates
    erasures = []

    def erase_then_rebuild(*args, **kwargs):
        if not erasures:
            erasures.append(forget(spark, lake, "D1"))
        return rebuild(*args, **kwargs)

    monkeypatch.setattr(batch.reprocess, "replace_dates", erase_then_rebuild)
    result = reprocess(spark, lake, A, B, contract=with_power_max(1000))

    assert erasures and erasures[0].rows_removed > 0
    kept = [r for r in oracle.read_records([report]) if b'"D1"' not in r.payload]
    check(spark, lake, expected_truth(kept, 1000))
    for path in ("bronze/telemetry", "quarantine/telemetry"):
        rows = table(spark, lake, path)
        assert rows.where(F.col("payload").cast("string").contains("D1")).count() == 0, path
    for path in ("silver/readings", "_gridlake/decisions", "gold/daily_device_rollups"):
        assert table(spark, lake, path).where(F.col("device_id") == "D1").count() == 0, path
    # D2's reading above the stricter limit went to quarantine, as the rule says.
    assert [r["source_line"] for r in table(spark, lake, "quarantine/telemetry").collect()] == [5]
    assert result.erased_meanwhile == erased_in_range


def test_a_batch_still_being_written_quarantines_its_own_records(spark, lake, tmp_path):
    """Its bronze is committed and its quarantine append not yet, as when a stream is in the
    middle of a micro-batch: reprocess leaves its records to it, and when the batch goes on
    each bad record is in quarantine once."""
    from batch.late_reports import inspect_file, read_reports, source_names
    from gridlake.ingest import WriteContext, _append, record_batch, to_bronze, write_batch

    report = tmp_path / "in-flight.jsonl"
    report.write_bytes(X.dumps(X.event("D1", "S1", "meter", "2026-11-10T06:00:00Z", 1, 500.0))
                       + b"\n"
                       + X.dumps(X.event("D1", "S1", "meter", "2026-11-10T07:00:00Z", 2, 2e6))
                       + b"\n")
    files = [inspect_file(report)]
    raw = read_reports(spark, files, source_names(spark, files))
    ctx = WriteContext.now("stream-in-flight", 0, "stream", str(report))
    _append(raw.transform(to_bronze(ctx)), lake.path("bronze/telemetry"), ctx, "bronze")

    reprocess(spark, lake, A, A)
    assert table(spark, lake, "quarantine/telemetry").count() == 0

    result = write_batch(spark, lake, raw, ctx)  # the writer goes on: a replay of its batch
    record_batch(spark, lake, result, ctx)
    assert result.replayed and result.quarantined == 1
    assert [(r["source_line"], r["status"]) for r in
            table(spark, lake, "quarantine/telemetry").collect()] == [(2, "quarantined")]
    # Once the batch is logged, a reprocess treats its records as its own again.
    reprocess(spark, lake, A, A)
    assert table(spark, lake, "quarantine/telemetry").count() == 1


def test_a_range_with_no_data_is_refused_in_one_sentence_and_writes_nothing(
        spark, lake, cli, tmp_path):
    """`rollup --from/--to` and `reprocess` over days the lake holds nothing of (a mistyped
    year, say) exit 1 naming what the lake does hold, and commit nothing. A rollup two days
    past streamed data (no rollup yet) still runs, and must: with sites east and west of UTC,
    it computes an eastern site-local day that holds the data's last reading; one from the
    calendar's first day to its last recomputes only the days within that reach."""
    paths = ("bronze/telemetry", "quarantine/telemetry", "silver/readings", "_gridlake/batches",
             "gold/daily_device_rollups", "gold/daily_site_rollups")

    def refused(command: str, start: dt.date, end: dt.date) -> str:
        before = {path: versions(spark, lake, path) for path in paths}
        status, out, err = cli(command, "--lake", lake.root, "--from", start, "--to", end)
        assert (status, out, err.count("\n")) == (1, "", 1), (command, start, out, err)
        assert {path: versions(spark, lake, path) for path in paths} == before, command
        return err

    day = dt.date(2026, 11, 10)
    assert "silver holds no readings yet" in refused("rollup", day, day)
    zones = {"S1": "Asia/Tokyo", "S2": "America/Los_Angeles"}
    registry = tmp_path / "sites.csv"
    registry.write_text("site_id,timezone\n" + "".join(f"{s},{z}\n" for s, z in zones.items()))
    load_sites(spark, lake, registry)
    records = [X.event("D1", "S1", "meter", ts, seq, 500.0)
               for seq, ts in enumerate(("2026-11-10T12:00:00Z", "2026-11-11T18:00:00Z"), 1)]
    report = tmp_path / "r.jsonl"
    report.write_bytes(b"".join(X.dumps(r) + b"\n" for r in records))
    stream_batches(spark, lake, [[report]])  # as the stream writes: no rollup
    instants = sorted(dt.datetime.fromisoformat(r["data"]["ts"]) for r in records)
    first, last = instants[0].date(), instants[-1].date()
    tokyo_day = instants[-1].astimezone(ZoneInfo(zones["S1"])).date()
    assert tokyo_day == last + dt.timedelta(days=1)

    reach = last + dt.timedelta(days=2)
    beyond = reach + dt.timedelta(days=1)
    err = refused("rollup", beyond, beyond + dt.timedelta(days=7))
    assert err == (f"gridlake rollup: nothing to roll up from {beyond} to "
                   f"{beyond + dt.timedelta(days=7)}: silver holds no reading of those days or "
                   f"the two either side, and gold no rollup of them; silver's event dates run "
                   f"from {first} to {last}\n")
    for start in (last + dt.timedelta(days=1), beyond):
        assert refused("reprocess", start, start) == (
            f"gridlake reprocess: bronze holds no record with an event date from {start} to "
            f"{start}: nothing to reprocess\n")

    status, out, _ = cli("rollup", "--lake", lake.root, "--from", reach, "--to", reach)
    assert status == 0 and f"UTC day(s) ({reach})" in out, out
    sites = rows_by(spark, lake, "gold/daily_site_rollups", "site_id", "local_day")
    assert [(key, row["samples"]) for key, row in sites.items()] == [(("S1", tokyo_day), 1)]

    # The widest range the calendar allows is cut to the days within reach of held data.
    calendar = (dt.date.min, dt.date.max)
    status, out, _ = cli("rollup", "--lake", lake.root, "--from", calendar[0], "--to", calendar[1])
    days = (reach - (first - dt.timedelta(days=2))).days + 1
    assert status == 0 and f"{days} UTC day(s) ({first - dt.timedelta(days=2)}..{reach})" in out, out
