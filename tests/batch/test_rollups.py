"""Rollup transforms on tiny frames, and the local days a UTC day reaches."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from batch.rollups import (
    daily_device_rollups,
    daily_site_rollups,
    day_range,
    local_days_overlapping,
    with_local_day,
)
from gridlake.errors import BadArgumentError

READINGS = T.StructType([
    T.StructField("device_id", T.StringType()), T.StructField("site_id", T.StringType()),
    T.StructField("device_type", T.StringType()), T.StructField("ts", T.TimestampType()),
    T.StructField("event_date", T.DateType()), T.StructField("power_w", T.DoubleType()),
    T.StructField("energy_import_wh", T.DoubleType()),
    T.StructField("energy_export_wh", T.DoubleType()), T.StructField("soc_pct", T.DoubleType()),
])


def at(text: str) -> dt.datetime:
    """A naive timestamp holding UTC wall time (the test session's time zone is UTC)."""
    return dt.datetime.fromisoformat(text)


def test_daily_device_rollups_sum_count_and_ignore_missing_soc(spark):
    day1, day2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    readings = spark.createDataFrame([
        ("D1", "S1", "battery", at("2026-11-01 10:00"), day1, -200.0, 0.0, 50.0, 40.0),
        ("D1", "S2", "battery", at("2026-11-01 11:00"), day1, 600.0, 150.0, 0.0, None),
        ("D1", "S2", "battery", at("2026-11-02 00:00"), day2, 100.0, 25.0, 0.0, 80.0),
        ("D2", "S1", "meter", at("2026-11-01 10:00"), day1, 10.0, 2.5, 0.0, None),
    ], READINGS)
    expected = spark.createDataFrame([
        ("D1", day1, "S2", "battery", 2, 150.0, 50.0, -200.0, 600.0, 200.0, 40.0, 40.0),
        ("D1", day2, "S2", "battery", 1, 25.0, 0.0, 100.0, 100.0, 100.0, 80.0, 80.0),
        ("D2", day1, "S1", "meter", 1, 2.5, 0.0, 10.0, 10.0, 10.0, None, None),
    ], "device_id string, day date, site_id string, device_type string, samples bigint, "
       "energy_import_wh double, energy_export_wh double, min_power_w double, "
       "max_power_w double, avg_power_w double, min_soc_pct double, max_soc_pct double")
    assertDataFrameEqual(readings.transform(daily_device_rollups()), expected,
                         checkRowOrder=False)


def test_site_rollups_follow_local_days_of_23_and_25_hours(spark):
    def hourly(site, zone, device_type, first, hours):
        start = at(first)
        return [("D-" + site, site, device_type, start + dt.timedelta(hours=i),
                 (start + dt.timedelta(hours=i)).date(), 100.0, 1.0, 0.0, None, zone)
                for i in range(hours)]

    # Berlin springs forward on 2026-03-29 (23 h); New York falls back on 2026-11-01 (25 h).
    rows = (hourly("S1", "Europe/Berlin", "solar", "2026-03-28 23:00", 23)
            + hourly("S2", "America/New_York", "meter", "2026-11-01 04:00", 25))
    readings = spark.createDataFrame(rows, T.StructType(
        READINGS.fields + [T.StructField("timezone", T.StringType())]))
    got = {(r["site_id"], r["local_day"]): r for r in
           readings.transform(with_local_day()).transform(daily_site_rollups()).collect()}
    assert set(got) == {("S1", dt.date(2026, 3, 29)), ("S2", dt.date(2026, 11, 1))}
    berlin, new_york = got[("S1", dt.date(2026, 3, 29))], got[("S2", dt.date(2026, 11, 1))]
    assert (berlin["samples"], berlin["local_day_hours"], berlin["solar_energy_import_wh"],
            berlin["meter_energy_import_wh"]) == (23, 23.0, 23.0, None)
    assert (new_york["samples"], new_york["local_day_hours"], new_york["energy_import_wh"]) == (
        25, 25.0, 25.0)


def test_a_utc_day_reaches_the_local_days_of_every_zone():
    day = dt.date(2026, 11, 1)
    assert local_days_overlapping([day], ["UTC"]) == [day]
    assert local_days_overlapping([day], ["America/New_York", "Europe/Berlin"]) == [
        dt.date(2026, 10, 31), day, dt.date(2026, 11, 2)]
    # Even at UTC+14 and UTC-11 a UTC day reaches two local days, never three.
    assert local_days_overlapping([day], ["Pacific/Kiritimati"]) == [day, dt.date(2026, 11, 2)]
    assert local_days_overlapping([day], ["Pacific/Pago_Pago"]) == [
        dt.date(2026, 10, 31), day]


def test_a_date_range_is_inclusive_and_an_empty_one_is_refused():
    assert day_range(dt.date(2026, 11, 1), dt.date(2026, 11, 3)) == [
        dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)]
    with pytest.raises(BadArgumentError) as refused:
        day_range(dt.date(2026, 11, 3), dt.date(2026, 11, 1))
    assert str(refused.value) == ("the date range 2026-11-03..2026-11-01 is empty: "
                                  "--from 2026-11-03 is after --to 2026-11-01")


def test_side_by_side_finishes_every_action_and_raises_the_first_error(spark, caplog):
    import time

    from batch.rollups import _side_by_side

    done: list[int] = []

    def slow_ok():
        # Still running when the other actions fail; it must end before the error is raised.
        time.sleep(0.5)
        done.append(spark.range(3).count())
        return done[-1]

    def fails(message):
        def action():
            raise ValueError(message)
        return action

    assert _side_by_side(spark, lambda: spark.range(5).count(), slow_ok) == [5, 3]
    done.clear()
    with pytest.raises(ValueError, match="first"):
        _side_by_side(spark, fails("first"), slow_ok, fails("second"))
    assert done == [3]
    assert "second" in caplog.text


def test_side_by_side_inside_a_guarded_write_runs_in_this_thread(spark):
    from batch.rollups import _side_by_side
    from gridlake.retry import guarded_write, holds_write_lock

    def write(n):
        return lambda: guarded_write(lambda: spark.range(n).count(), f"write {n}")

    # Threads would wait for the lock this thread holds: the actions must run here, in order.
    assert not holds_write_lock()
    assert guarded_write(lambda: (holds_write_lock(), _side_by_side(spark, write(2), write(4))),
                         "outer") == (True, [2, 4])
    assert not holds_write_lock()
