"""The two sensors over real lakes and folders: exactly the right files and partitions, once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil

from dagster import SkipReason, build_sensor_context, materialize, validate_run_config

from batch import lake_state
from gridlake.landing import MAX_FILE_BYTES
from orchestration.late_reports.jobs import late_report_backfill_job, run_config_for
from orchestration.late_reports.sensors import late_reports_sensor
from orchestration.resources import LakeResource
from orchestration.rollups.assets import daily_rollups_asset, daily_rollups_job, rollup_partitions
from orchestration.rollups.sensors import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    consecutive_ranges,
    silver_changes_sensor,
)
from orchestration.stream.assets import stream_table_specs
from tests import oracle
from tests.batch.expected import dumps, event

NAIVE_NOW = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the oracle's clock: naive UTC


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _evaluate(sensor, resources, cursor=None):
    with build_sensor_context(resources=resources, cursor=cursor) as context:
        return sensor(context)


def _requests(result) -> list:
    return [] if isinstance(result, SkipReason) else list(result.run_requests or [])


def test_landing_sensor_runs_the_backfill_job_once_for_the_new_files(fleet, tmp_path):
    job = late_report_backfill_job()
    late = tmp_path / "late"
    shutil.copytree(fleet / "late", late)
    resources = {"lake": LakeResource(root=str(tmp_path / "lake"), late_dir=str(late))}
    sensor = late_reports_sensor(job, settle_seconds=0)

    # Every settled file in one run (one Spark driver), keyed by the files' contents.
    first = _evaluate(sensor, resources)
    files = sorted(late.iterdir())
    assert len(files) >= 2
    [request] = _requests(first)
    assert sorted(request.run_config["ops"]["load_late_reports"]["config"]["paths"]) == [
        str(f) for f in files]
    assert request.tags["gridlake/late_report_files"] == str(len(files))
    # The key is the contents, not the names: the same files renamed elsewhere give the same
    # key (a run Dagster will not launch twice); one file more gives another.
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, renamed / f"R{i:03d}_{f.name}")
    elsewhere = {"lake": LakeResource(root=str(tmp_path / "lake"), late_dir=str(renamed))}
    assert [r.run_key for r in _requests(_evaluate(sensor, elsewhere))] == [request.run_key]
    (renamed / "D09999_20261103T0000Z.jsonl").write_bytes(
        dumps(event("D09999", "S001", "meter", "2026-11-03T00:15:00Z", 1, 5.0)) + b"\n")
    [more] = _requests(_evaluate(sensor, elsewhere))
    assert more.run_key != request.run_key
    assert validate_run_config(job, request.run_config)

    again = _evaluate(sensor, resources, first.cursor)
    assert _requests(again) == [] and again.cursor == first.cursor

    # A new report is requested alone; hidden files (copies in progress) and other names are not.
    new = late / "D00042_20261103T0000Z.jsonl"
    new.write_bytes(dumps(event("D00042", "S001", "meter", "2026-11-03T00:15:00Z", 1, 5.0)) + b"\n")
    (late / ".D00043_20261103T0000Z.jsonl").write_bytes(b"{}\n")
    (late / "notes.txt").write_text("not a report")
    third = _evaluate(sensor, resources, again.cursor)
    assert [r.run_key for r in _requests(third)] == [f"late-report-{_sha(new)}"]

    # Changed content is a new report; a file still being written waits until it settles.
    files[0].write_bytes(files[0].read_bytes() + b"\n")
    os.utime(files[0], (1_700_000_000, 1_700_000_000))
    fresh = late / "D00044_20261104T0000Z.jsonl"
    fresh.write_bytes(dumps(event("D00044", "S001", "meter", "2026-11-04T00:15:00Z", 1, 5.0)))
    settling = late_reports_sensor(job, settle_seconds=3600)
    fourth = _evaluate(settling, resources, third.cursor)
    assert [r.run_key for r in _requests(fourth)] == [f"late-report-{_sha(files[0])}"]
    assert str(fresh) not in json.loads(fourth.cursor)
    # Too large to load (sparse: no disk used): never requested, named in the tick's message.
    huge = late / "huge.jsonl"
    with huge.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    os.utime(huge, (1_700_000_000, 1_700_000_000))
    quiet = _evaluate(settling, resources, fourth.cursor)
    assert _requests(quiet) == []
    # The tick names what is not loaded (not the hidden copy), so nothing is left silently.
    assert quiet.skip_reason.skip_message == (
        f"no new late-report file in {late}; 1 file(s) or folder(s) in the folders given are "
        f"not late reports (the .jsonl, .jsonl.gz, .json files directly in them) and are not "
        f"loaded: "
        f"{late / 'notes.txt'}; 1 file(s) too large to load: {huge}")
    assert _requests(_evaluate(settling, resources, quiet.cursor)) == []


def test_a_large_drop_is_hashed_over_several_ticks_each_saving_its_cursor(fleet, tmp_path):
    late = tmp_path / "late"
    shutil.copytree(fleet / "late", late)
    files = sorted(str(f) for f in late.iterdir())
    resources = {"lake": LakeResource(root=str(tmp_path / "lake"), late_dir=str(late))}
    # No time to hash a second file in a tick: one file a tick, none twice, none left out.
    sensor = late_reports_sensor(late_report_backfill_job(), settle_seconds=0, hash_seconds=0)
    cursor, requested = None, []
    for _ in files:
        result = _evaluate(sensor, resources, cursor)
        [request] = _requests(result)
        requested += request.run_config["ops"]["load_late_reports"]["config"]["paths"]
        cursor = result.cursor
    assert sorted(requested) == files
    assert _requests(_evaluate(sensor, resources, cursor)) == []


def test_landing_sensor_of_an_object_store_lake_asks_for_a_local_late_folder():
    sensor = late_reports_sensor(late_report_backfill_job(), settle_seconds=0)
    result = _evaluate(sensor, {"lake": LakeResource(root="s3a://bucket/lake")})
    assert isinstance(result, SkipReason)
    assert "set GRIDLAKE_LATE_DIR to a local folder" in result.skip_message


def test_consecutive_days_become_one_range_each():
    days = [dt.date(2026, 11, d) for d in (9, 5, 6, 1, 2, 3, 6)]
    assert consecutive_ranges(days) == [
        (dt.date(2026, 11, 1), dt.date(2026, 11, 3)), (dt.date(2026, 11, 5), dt.date(2026, 11, 6)),
        (dt.date(2026, 11, 9), dt.date(2026, 11, 9))]
    assert consecutive_ranges([]) == []


def _late_reports(folder, fleet) -> list:
    """Readings of 2026-11-05, -06 and -09; a duplicate of a streamed line (no change); one
    from before the partitions start and one from today (neither is a partition)."""
    folder.mkdir()
    streamed = next(line for line in (fleet / "stream" / "part-0000.jsonl").read_bytes()
                    .splitlines() if oracle.event_of(oracle.Record("", 1, line),
                                                     NAIVE_NOW) is not None)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    ts = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    reports = {
        "a.jsonl": [dumps(event("D00001", "S001", "meter", f"2026-11-0{d}T12:00:00Z", 1, 9.5))
                    for d in (5, 6)],
        "b.jsonl": [dumps(event("D00002", "S001", "meter", "2026-11-09T08:00:00Z", 1, 3.0)),
                    streamed],
        "c.jsonl": [dumps(event("D00003", "S001", "meter", "2026-10-30T08:00:00Z", 1, 3.0)),
                    dumps(event("D00003", "S001", "meter", ts, 1, 3.0))],
    }
    for name, lines in reports.items():
        (folder / name).write_bytes(b"\n".join(lines) + b"\n")
    return sorted(folder.iterdir())


def test_change_sensor_requests_exactly_the_changed_day_partitions_once(
        spark, lake_copy, resources, fleet, fleet_truth, tmp_path):
    partitions = rollup_partitions("2026-11-01")
    job = daily_rollups_job(partitions)
    sensor = silver_changes_sensor(job, partitions)
    lake = lake_copy()
    res = resources(lake)

    # First tick: every day the stream wrote (from the oracle), as one range.
    _, truth, _ = fleet_truth
    days = sorted({ts.date() for _, ts in truth})
    first = _evaluate(sensor, res)
    assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in _requests(first)] == [
        (days[0].isoformat(), days[-1].isoformat())]
    assert _requests(_evaluate(sensor, res, first.cursor)) == []

    # Late reports loaded by the Dagster job (in-process): only the days whose readings changed.
    files = _late_reports(tmp_path / "late", fleet)
    loaded = late_report_backfill_job().execute_in_process(
        run_config=run_config_for([str(f) for f in files]), resources=res)
    assert loaded.success
    shas = {r["sha256"] for r in spark.read.format("delta")
            .load(lake.path("_gridlake/loaded_files")).collect()}
    assert shas == {_sha(f) for f in files}
    assert spark.read.format("delta").load(lake.path("gold/daily_device_rollups")).count() == 0

    # The change feed read (delta-rs, shared by the sensor and `rollup --changed`) gives the
    # days the oracle says changed: every day at first, then the days whose winning reading
    # the late files added or replaced.
    stream_files = sorted((fleet / "stream").iterdir())
    after, _ = oracle.silver_truth(oracle.read_records([*stream_files, *files]))
    replaced = sorted({key[1].date() for key, r in after.items() if key not in truth
                       or (r["seq"], r["_id"]) != (truth[key]["seq"], truth[key]["_id"])})
    assert dt.date(2026, 11, 9) in replaced
    version = lake_state.silver_version(lake.root)
    for span, expected in (((0, version), sorted({ts.date() for _, ts in after})),
                           ((int(first.cursor) + 1, version), replaced)):
        assert lake_state.changed_days(lake.root, *span) == expected

    second = _evaluate(sensor, res, first.cursor)
    requested = [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in _requests(second)]
    assert requested == [("2026-11-05", "2026-11-06"), ("2026-11-09", "2026-11-09")]
    assert len({r.run_key for r in _requests(second)}) == 2
    assert int(second.cursor) > int(first.cursor)
    third = _evaluate(sensor, res, second.cursor)
    assert _requests(third) == []

    # One requested partition, materialized in-process: gold gets exactly that day's reading.
    run = materialize([*stream_table_specs(), daily_rollups_asset(partitions)], resources=res,
                      partition_key="2026-11-09",
                      selection=["daily_device_rollups", "daily_site_rollups"])
    assert run.success
    gold = spark.read.format("delta").load(lake.path("gold/daily_device_rollups")).collect()
    assert [(r["device_id"], r["day"].isoformat(), r["samples"], r["max_power_w"])
            for r in gold] == [("D00002", "2026-11-09", 1, 3.0)]
