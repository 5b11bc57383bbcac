"""Lineage: a gold row back to exactly its source lines, a source file forward to its readings."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import pytest

from batch.rollups import rollup_range
from gridlake.lake import open_lake
from gridlake.lineage import parse_source, source_impact, trace_day
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
