"""Lineage: a gold row back to exactly its source lines, a source file forward to its readings."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
from collections import defaultdict

import pytest

from batch.erasure import purge_and_vacuum
from batch.late_reports import backfill
from batch.rollups import rollup_changed, rollup_range
from gridlake.lake import open_lake
from gridlake.lineage import parse_source, source_impact, trace_day
from shared_schemas.tables import silver_readings
from streaming.query import StreamOptions, run_stream
from streaming.sources import FileSource
from tests import oracle


@pytest.fixture(scope="module")
def traced(spark, small_fleet, tmp_path_factory):
    """The small fleet streamed (two micro-batches) and rolled up; the oracle's view of it."""
    lake = open_lake(str(tmp_path_factory.mktemp("lineage") / "lake"), create=True, spark=spark)
    source = FileSource(str(small_fleet / "stream"), max_files_per_trigger=2)
    run_stream(spark, lake, source, StreamOptions(available_now=True), report=lambda _: None)
    records = list(oracle.read_records((small_fleet / "stream").glob("*.jsonl")))
    truth, invalid = oracle.silver_truth(records)
    days = sorted({ts.date() for _, ts in truth})
    rollup_range(spark, lake, days[0], days[-1])
    return lake, records, truth, invalid


def _by_day(truth) -> dict[tuple[str, dt.date], dict]:
    out: dict[tuple[str, dt.date], dict] = defaultdict(dict)
    for (device, ts), event in truth.items():
        out[(device, ts.date())][ts] = event
    return out


def _traceparent(record: oracle.Record) -> str | None:
    return json.loads(record.payload).get("traceparent")


def test_a_gold_row_leads_to_exactly_the_source_lines_generated_for_it(spark, traced):
    lake, _, truth, _ = traced
    by_day = _by_day(truth)
    rollups = oracle.daily_device_rollups(truth)
    for key in (min(by_day), max(by_day)):  # two device-days, two devices
        device, day = key
        lineage = trace_day(spark, lake, device, day)
        expected = by_day[key]
        assert lineage.gold["samples"] == rollups[key]["samples"] == len(expected)
        assert lineage.silver_version == lineage.gold["silver_version"]
        got = {(r.source_file, r.source_line) for r in lineage.readings}
        assert got == {(e["_record"].path, e["_record"].line) for e in expected.values()}
        for r in lineage.readings:
            event = expected[r.ts.replace(tzinfo=None)]
            assert (r.seq, r.event_id) == (event["seq"], event["_id"])
            assert r.traceparent == _traceparent(event["_record"])
            assert r.trace_id == r.traceparent.split("-")[1]
            assert r.in_bronze and r.payload_bytes == len(event["_record"].payload)
            assert r.batch_kind == "stream" and r.source_kind == "file"


def test_impact_of_one_file_lists_exactly_the_readings_it_produced(spark, traced):
    lake, records, truth, invalid = traced
    produced = defaultdict(set)
    for key, event in truth.items():
        produced[event["_record"].path].add(key)
    path = max(produced, key=lambda p: len(produced[p]))
    impact = source_impact(spark, lake, parse_source(path, spark))
    got = {(r["device_id"], r["ts"].replace(tzinfo=None)) for r in impact.readings}
    assert got == produced[path]
    assert impact.bronze_records == sum(r.path == path for r in records)
    assert impact.quarantined == sum(r.path == path for r in invalid)
    assert {(d["device_id"], d["day"]) for d in impact.days} == {
        (device, ts.date()) for device, ts in produced[path]}
    assert all(d["in_gold"] for d in impact.days)


def test_a_reading_shows_every_decision_made_for_its_key(spark, traced):
    lake, records, truth, _ = traced
    valid = defaultdict(list)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for record in records:
        event = oracle.event_of(record, now)
        if event is not None:
            valid[(event["device_id"], event["ts"])].append(record)
    key = max(valid, key=lambda k: (len(valid[k]), k))  # a key with a duplicate or correction
    assert len(valid[key]) > 1
    lineage = trace_day(spark, lake, key[0], ts=key[1])
    assert {d["record_id"] for d in lineage.decisions} == {
        f"file:{r.path}#{r.line}" for r in valid[key]}
    winner = truth[key]["_record"]
    assert [d["record_id"] for d in lineage.decisions if d["won"]][-1] == \
        f"file:{winner.path}#{winner.line}"
    assert [(r.source_file, r.source_line) for r in lineage.readings] == [
        (winner.path, winner.line)]


def test_json_output_is_valid_and_the_table_names_every_reading(traced, cli):
    lake, _, truth, _ = traced
    device, day = min(_by_day(truth))
    status, out, _ = cli("lineage", "--lake", lake.root, "--device", device, "--day", day,
                         "--json")
    assert status == 0
    doc = json.loads(out)
    assert doc["device_id"] == device and len(doc["readings"]) == doc["gold"]["samples"]
    status, out, _ = cli("lineage", "--lake", lake.root, "--device", device, "--day", day)
    assert status == 0
    assert sum(line.startswith(str(day)) for line in out.splitlines()) == len(doc["readings"])


@pytest.mark.parametrize("device", ["D1' OR '1'='1", "' OR 1=1 --", "../../etc/passwd", "%"])
def test_a_hostile_device_id_is_a_value_with_no_data(traced, cli, device):
    lake, _, truth, _ = traced
    _, day = min(_by_day(truth))
    status, out, err = cli("lineage", "--lake", lake.root, "--device", device, "--day", day)
    assert (status, out) == (1, "")
    assert "no data for device" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("source", ["nope.jsonl", "kafka:telemetry:0:1-3"])
def test_the_impact_of_a_source_bronze_never_read_is_refused(traced, cli, source):
    lake, records, _, _ = traced
    assert not any(r.path.endswith("nope.jsonl") for r in records)  # files only, no Kafka
    status, out, err = cli("lineage", "--lake", lake.root, "--impact", source)
    assert (status, out) == (1, "")
    assert "bronze holds no record read from" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["--impact", "kafka:telemetry:0:9-3"],
    ["--impact", "kafka:telemetry:zero:1-3"],
    ["--device", "D1"],
    ["--device", "D1", "--ts", "yesterday"],
])
def test_bad_arguments_exit_1_with_one_sentence(traced, cli, argv):
    lake, _, _, _ = traced
    status, out, err = cli("lineage", "--lake", lake.root, *argv)
    assert (status, out) == (1, "")
    assert err.startswith("gridlake lineage: ") and len(err.strip().splitlines()) == 1


def _correction(record: oracle.Record, n: int, power_w: float | None = None) -> bytes:
    """`record` sent again with a higher seq (and another power value when given)."""
    event = json.loads(record.payload)
    event["id"] = f"correction-{n}"
    event["data"]["seq"] += 1
    if power_w is not None:
        event["data"]["power_w"] = power_w
    return json.dumps(event).encode()


@pytest.mark.long
def test_a_gold_row_is_traced_after_the_silver_version_it_came_from_was_vacuumed(
        spark, small_fleet, tmp_path, caplog):
    """Compaction, an erasure's purge or a MERGE rewrites silver's files and VACUUM removes the
    old ones: the version a gold row names can no longer be read. Lineage then reads the latest
    readings and says whether they still give the gold row's numbers; `rollup --changed`,
    whose change data went with the vacuum, finds the changed day from silver's commits."""
    lake = open_lake(str(tmp_path / "lake"), create=True, spark=spark)
    backfill(spark, lake, [small_fleet / "stream"], progress=False)  # silver and gold
    records = list(oracle.read_records((small_fleet / "stream").glob("*.jsonl")))
    truth, _ = oracle.silver_truth(records)
    by_day = _by_day(truth)
    (device, day), (other, _) = min(by_day), max(by_day)
    gold_version = trace_day(spark, lake, device, day).gold["silver_version"]
    before = oracle.daily_device_rollups(truth)[(device, day)]

    def load_and_vacuum(name: str, lines: list[bytes]) -> list[oracle.Record]:
        report = tmp_path / name
        report.write_bytes(b"".join(line + b"\n" for line in lines))
        backfill(spark, lake, [report], rollup=False, progress=False)
        path = lake.path(silver_readings())
        assert purge_and_vacuum(spark, silver_readings(), path, now=True, purge=True) > 0
        return list(oracle.read_records([report]))

    def traced_now(added: list[oracle.Record]):
        lineage = trace_day(spark, lake, device, day)
        now, _ = oracle.silver_truth(records + added)
        expected = _by_day(now)[(device, day)]
        assert lineage.silver_version_gone == gold_version
        assert lineage.silver_version == lineage.silver_latest_version > gold_version
        assert {(r.source_file, r.source_line) for r in lineage.readings} == {
            (e["_record"].path, e["_record"].line) for e in expected.values()}
        after = oracle.daily_device_rollups(now)[(device, day)]
        return lineage, all(oracle.close(after[k], before[k]) for k in before)

    # Another device's reading of the same day corrected: this device's numbers still hold.
    other_day = [e["_record"] for (d, ts), e in truth.items() if d == other and ts.date() == day]
    added = load_and_vacuum("other.jsonl", [_correction(other_day[0], 1)])
    lineage, same = traced_now(added)
    assert same and lineage.gold_matches_readings is True

    # This device's reading corrected to another power: the gold row no longer holds.
    mine = by_day[(device, day)][min(by_day[(device, day)])]["_record"]
    added += load_and_vacuum("mine.jsonl", [_correction(mine, 2, power_w=1234.5)])
    lineage, same = traced_now(added)
    assert not same and lineage.gold_matches_readings is False
    # The command says so, and the vacuumed files are found before any read meets them: no
    # failed Spark task prints its error on stderr.
    run = subprocess.run([sys.executable, "-m", "gridlake.cli", "lineage", "--lake", lake.root,
                          "--device", device, "--day", day.isoformat()],
                         capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert f"v{gold_version}, which the gold row was computed from, can no longer" in run.stdout
    assert not [line for line in run.stderr.splitlines()
                if " ERROR " in line or "Exception" in line], run.stderr

    # The changed rollups: silver's change data since their cursor was vacuumed with the rest,
    # so the day comes from silver's commits; gold is then computed from the latest readings.
    with caplog.at_level(logging.WARNING, logger="gridlake.lake_state"):
        assert rollup_changed(spark, lake).days == [day]
    assert "change data for v" in caplog.text and "partly vacuumed" in caplog.text
    lineage = trace_day(spark, lake, device, day)
    assert lineage.silver_version_gone is None and lineage.gold_matches_readings is None
    now, _ = oracle.silver_truth(records + added)
    expected = oracle.daily_device_rollups(now)[(device, day)]
    assert all(oracle.close(lineage.gold[k], v) for k, v in expected.items())
