"""Every generated expectation fails on a table that breaks exactly it, and nothing fails on a
clean one: checked with Great Expectations and with the Spark predicates of the rollup gate.

One small real Delta table per suite, its rows grouped by `_case`: each case's rows break one
expectation (the `clean` case breaks none). GE validates each suite once
(a GE run on Spark costs tens of Spark jobs) and reports the `_case` of every unexpected row,
so each parametrized test reads which expectations its own case broke. Column types are
a property of a whole table, so those cases re-type one column of the clean rows instead.
"""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gridlake.quality import gate_rows, gx_context, type_mismatch, validate_frame, violation
from shared_schemas import expectations as X
from shared_schemas.expectations import all_expectations, expectations_for
from shared_schemas.tables import core_tables

CLEAN = "clean"
DAY = dt.date(2026, 11, 1)
SPECS = {s.path: s for s in core_tables() if s.path in X.SUITE_TABLES}
EXPECTATIONS = all_expectations()
ROW_LEVEL = [e for e in EXPECTATIONS if e.row_level]
TYPES = [e for e in EXPECTATIONS if not e.row_level]

# Values that satisfy every expectation of a table (columns no expectation reads get fillers).
GOOD = {
    "silver/readings": dict(
        site_id="S-1", device_type="battery", seq=3, power_w=-250.5, energy_import_wh=0.0,
        energy_export_wh=12.5, soc_pct=55.0, temperature_c=21.0, status="ok"),
    "quarantine/telemetry": dict(
        run_id="run-1", batch_id=0, contract_version=1,
        reasons=[{"code": "seq.range", "message": "'seq' must be at least 0."}],
        reason_codes=["seq.range"]),
    "gold/daily_device_rollups": dict(
        site_id="S-1", device_type="solar", samples=4, energy_import_wh=1.5,
        energy_export_wh=0.0, min_power_w=-10.0, max_power_w=30.0, avg_power_w=5.0,
        min_soc_pct=20.0, max_soc_pct=80.0),
    "gold/daily_site_rollups": dict(
        timezone="Europe/Berlin", local_day_hours=24.0, devices=2, samples=8,
        energy_import_wh=3.0, energy_export_wh=1.0, battery_energy_import_wh=1.0,
        battery_energy_export_wh=1.0, solar_energy_import_wh=2.0, solar_energy_export_wh=0.0,
        ev_charger_energy_import_wh=None, ev_charger_energy_export_wh=None,
        meter_energy_import_wh=0.0, meter_energy_export_wh=0.0),
}
FILLERS = {T.StringType: "x", T.LongType: 1, T.IntegerType: 1, T.DoubleType: 1.0,
           T.DateType: DAY, T.TimestampType: dt.datetime(2026, 11, 1, 12, 0),
           T.BinaryType: b"x"}
# A different type each column type can be cast to (for the column-type cases).
RETYPED = {"StringType": "binary", "LongType": "int", "IntegerType": "bigint",
           "DoubleType": "float", "DateType": "timestamp", "TimestampType": "date"}


def _good_row(table: str, case_no: int, j: int) -> dict:
    """A row passing every expectation, with a key no other case or row uses."""
    spec = SPECS[table]
    row = {f.name: FILLERS.get(type(f.dataType)) for f in spec.schema.fields}
    row.update(GOOD[table])
    n = case_no * 10 + j
    day = DAY + dt.timedelta(days=n)
    if table == "silver/readings":
        row.update(device_id=f"D{n:04d}", ts=dt.datetime(2026, 11, 1) + dt.timedelta(minutes=n),
                   event_date=day)
    elif table == "quarantine/telemetry":
        row.update(record_id=f"r{n:04d}", ingest_date=day)
    elif table == "gold/daily_device_rollups":
        row.update(device_id=f"D{n:04d}", day=day)
    else:
        row.update(site_id=f"S{n:04d}", local_day=day)
    return row


def _as(table: str, column: str, value):
    kind = type(SPECS[table].schema[column].dataType)
    return float(value) if kind is T.DoubleType and value is not None else value


def _broken_rows(e: X.ExpectationDef, case_no: int) -> list[dict]:
    """Rows of one case: the first breaks `e` and nothing else, the second is clean."""
    bad, good = _good_row(e.table, case_no, 0), _good_row(e.table, case_no, 1)
    a, column = e.args, e.column
    if e.kind == X.NOT_NULL:
        bad[column] = None
    elif e.kind == X.BETWEEN:
        # A minimum breaks low and a maximum high, so min <= avg <= max still holds.
        high = a["max_value"] is not None and not column.startswith("min_")
        bad[column] = _as(e.table, column, a["max_value"] + 1 if high else a["min_value"] - 1)
    elif e.kind == X.IN_SET:
        bad[column] = 99 if isinstance(bad[column], int) else "not_allowed"
    elif e.kind == X.REGEX:
        bad[column] = f"bad id {case_no}!"
    elif e.kind == X.LENGTHS:
        bad[column] = "x" * (a["max_value"] + 1)
    elif e.kind == X.PAIR_A_AT_LEAST_B:
        bad[a["column_A"]] = bad[a["column_B"]] - 1
    elif e.kind == X.UNIQUE_KEY:
        return [bad, dict(bad), good]
    elif e.name.endswith(".has_reason"):
        bad["reasons"] = []
    elif e.name.endswith(".known_codes"):
        bad["reason_codes"] = ["no.such.rule"]
    elif e.name.endswith(".within_min_power_w_max_power_w"):
        bad["avg_power_w"] = bad["max_power_w"] + 1.0
    else:
        pytest.fail(f"no way to break {e.name} ({e.kind}): add one to this test")
    return [bad, good]


@pytest.fixture(scope="module")
def case_tables(spark, tmp_path_factory):
    """table → its Delta table of every case, read back."""
    root = tmp_path_factory.mktemp("quality-cases")
    tables = {}
    for table, spec in SPECS.items():
        cases = [e for e in ROW_LEVEL if e.table == table]
        rows = [{**r, "_case": CLEAN} for j in range(2) for r in [_good_row(table, 0, j)]]
        for i, e in enumerate(cases, start=1):
            rows += [{**r, "_case": e.name} for r in _broken_rows(e, i)]
        schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in spec.schema]
                              + [T.StructField("_case", T.StringType(), False)])
        path = str(root / table.replace("/", "_"))
        # One file: GE runs tens of Spark jobs over it, each job a task per file.
        spark.createDataFrame(rows, schema).coalesce(1).write.format("delta").save(path)
        tables[table] = spark.read.format("delta").load(path)
    return tables


@pytest.fixture(scope="module")
def suite_runs(case_tables):
    """table → (GE's failing cases per expectation, the gate's failing cases per expectation)."""
    context = gx_context()
    runs = {}
    for table, frame in case_tables.items():
        suite = expectations_for(table)
        outcomes = validate_frame(frame, table, suite, index_columns=("_case",),
                                  context=context)
        ge = {o.name: {r["_case"] for r in o.rows} for o in outcomes}
        assert all(o.success for o in outcomes if not o.expectation.row_level), outcomes
        gate = gate_rows(frame, suite, "_case")
        runs[table] = (ge, {o.name: set(o.days) for o in gate.outcomes})
    return runs


@pytest.mark.parametrize("expectation", ROW_LEVEL, ids=lambda e: e.name)
def test_each_expectation_fails_exactly_on_the_table_that_breaks_it(suite_runs, expectation):
    ge, gate = suite_runs[expectation.table]
    assert {name for name, cases in ge.items() if expectation.name in cases} == {
        expectation.name}
    assert {name for name, cases in gate.items() if expectation.name in cases} == {
        expectation.name}
    # The clean case breaks nothing, in GE's judgement or the gate's.
    assert not [name for name, cases in ge.items() if CLEAN in cases]
    assert not [name for name, cases in gate.items() if CLEAN in cases]


@pytest.fixture(scope="module")
def type_context():
    return gx_context()


@pytest.mark.parametrize("expectation", TYPES, ids=lambda e: e.name)
def test_each_column_type_expectation_fails_on_a_retyped_column(case_tables, type_context,
                                                                 expectation):
    clean = case_tables[expectation.table].where(F.col("_case") == CLEAN)
    column = expectation.args["column"]
    retyped = clean.withColumn(column, F.col(column).cast(RETYPED[expectation.args["type_"]]))
    suite = [e for e in expectations_for(expectation.table) if not e.row_level]
    for frame, failing in ((retyped, {expectation.name}), (clean, set())):
        outcomes = validate_frame(frame, expectation.table, suite, context=type_context)
        assert {o.name for o in outcomes if not o.success} == failing
        assert {e.name for e in suite if type_mismatch(e, frame)} == failing


def test_every_row_expectation_compiles_to_a_spark_predicate():
    assert all(violation(e) is not None for e in ROW_LEVEL)
    assert {e.table for e in EXPECTATIONS} == set(X.SUITE_TABLES)


def test_expectations_are_derived_from_the_contract_and_table_specs():
    from shared_schemas.contract import CURRENT

    silver = {e.name: e for e in expectations_for("silver/readings")}
    for f in CURRENT.fields:
        assert f"silver.readings.{f.name}.type" in silver
        assert (f"silver.readings.{f.name}.not_null" in silver) == f.required
        assert (f"silver.readings.{f.name}.range" in silver) == (
            f.minimum is not None or f.maximum is not None)
    assert silver["silver.readings.key_unique"].args == {"column_list": list(CURRENT.key)}
    gold = {e.name: e for e in expectations_for("gold/daily_device_rollups")}
    assert gold["gold.daily_device_rollups.max_soc_pct.range"].args["max_value"] == 100
    assert gold["gold.daily_device_rollups.key_unique"].args == {
        "column_list": ["device_id", "day"]}


def test_severity_overrides_by_name_or_glob_in_one_place():
    overrides = {"gold.daily_device_rollups.*": "warn",
                 "gold.daily_device_rollups.samples.positive": "drop"}
    gold = {e.name: e.severity for e in expectations_for("gold/daily_device_rollups",
                                                         overrides=overrides)}
    assert gold["gold.daily_device_rollups.samples.positive"] == "drop"
    assert set(gold.values()) == {"warn", "drop"}
    assert {e.severity for e in expectations_for("gold/daily_device_rollups",
                                                 overrides={})} == {"fail"}
    with pytest.raises(ValueError, match="severity overrides"):
        expectations_for("silver/readings", overrides={"silver.*": "explode"})


def test_an_average_rounded_past_the_maximum_still_passes(spark):
    # Three readings of 0.1 W: the floating-point average (as Spark's avg computes it) lies an
    # ulp above the maximum, which must not withhold the day.
    table = "gold/daily_device_rollups"
    avg = (0.1 + 0.1 + 0.1) / 3
    assert avg > 0.1
    row = {**_good_row(table, 0, 0), "min_power_w": 0.1, "max_power_w": 0.1, "avg_power_w": avg}
    frame = spark.createDataFrame([row], SPECS[table].schema)
    [within] = [e for e in expectations_for(table) if ".within_" in e.name]
    assert not gate_rows(frame, [within], "day").failed
    assert [o.success for o in validate_frame(frame, table, [within])] == [True]
    broken = frame.withColumn("avg_power_w", F.lit(0.1 + 1e-6))
    assert [o.name for o in gate_rows(broken, [within], "day").failed] == [within.name]
