"""Data quality: the expectation suites of `shared_schemas.expectations`, run two ways.

- With Great Expectations (`validate_frame`, `check_lake`): the suites become GE expectation
  suites validated against Spark DataFrames in an ephemeral GE context; every result is stored
  in `_gridlake/quality_results` and rendered as Data Docs under `_gridlake/data_docs/`. This is
  what `gridlake quality` and the Dagster asset checks run.
- As Spark Column predicates (`violation`, `gate_rows`, `without_dropped`): the same
  expectations compiled to one pass over rows about to be written, so a rollup run can leave
  out `drop` rows and refuse to publish days with a `fail` violation before its replaceWhere
  write, in one Spark job (a GE run costs tens of small Spark jobs).

Example:
    >>> report = check_lake(spark, lake, tables=["gold/daily_device_rollups"])  # doctest: +SKIP
    >>> print(report.table_text())                                              # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from gridlake.errors import BadArgumentError, GridlakeError
from shared_schemas import expectations as X
from shared_schemas.expectations import ExpectationDef, expectations_for
from shared_schemas.tables import core_tables, quality_results

log = logging.getLogger("gridlake.quality")

DATA_DOCS_DIR = "_gridlake/data_docs"
DOCS_SITE = "gridlake_lake"
MAX_EXAMPLES = 5
# What a person sees of one value in the pass/fail table.
CELL = 48


class QualityFailure(GridlakeError):
    """A `fail`-level expectation failed: the checked data must not be trusted or published."""


# -- pure: expectations as Spark predicates ----------------------------------------------------

def violation(e: ExpectationDef) -> Column | None:
    """A Column true where a row breaks `e` (GE's semantics: nulls pass all but not-null);
    None for expectations judged on the table as a whole (column types)."""
    a = e.args
    col = F.col(a["column"]) if "column" in a else None
    if e.kind == X.NOT_NULL:
        return col.isNull()
    if e.kind == X.BETWEEN:
        low = col < F.lit(a["min_value"]) if a.get("min_value") is not None else F.lit(False)
        high = col > F.lit(a["max_value"]) if a.get("max_value") is not None else F.lit(False)
        return col.isNotNull() & (low | high)
    if e.kind == X.IN_SET:
        return col.isNotNull() & ~col.isin(*a["value_set"])
    if e.kind == X.REGEX:
        return col.isNotNull() & ~col.rlike(a["regex"])
    if e.kind == X.LENGTHS:
        length = F.length(col)
        low = length < F.lit(a["min_value"]) if a.get("min_value") is not None else F.lit(False)
        high = length > F.lit(a["max_value"]) if a.get("max_value") is not None else F.lit(False)
        return col.isNotNull() & (low | high)
    if e.kind == X.PAIR_A_AT_LEAST_B:
        left, right = F.col(a["column_A"]), F.col(a["column_B"])
        holds = left >= right if a.get("or_equal") else left > right
        return left.isNotNull() & right.isNotNull() & ~holds
    if e.kind == X.UNIQUE_KEY:
        cols = [F.col(c) for c in a["column_list"]]
        any_present = F.lit(False)
        for c in cols:  # GE ignores rows whose key columns are all null
            any_present = any_present | c.isNotNull()
        return any_present & (F.count(F.lit(1)).over(Window.partitionBy(*cols)) > 1)
    if e.kind == X.NO_ROWS_WHERE:
        return F.expr(a["unexpected_rows_query"].removeprefix(X.ROWS_QUERY))
    if e.kind in X.TABLE_LEVEL:
        return None
    raise ValueError(f"expectation {e.name} has kind {e.kind!r}, which has no row predicate")


def type_mismatch(e: ExpectationDef, df: DataFrame) -> str | None:
    """For a column-type expectation: the column's actual type when it differs, else None."""
    column = e.args["column"]
    if column not in df.columns:
        return "missing"
    actual = type(df.schema[column].dataType).__name__
    return None if actual == e.args["type_"] else actual


def without_dropped(expectations: Sequence[ExpectationDef]) -> Callable[[DataFrame], DataFrame]:
    """Leave out the rows that break a `drop`-level row expectation."""
    drops = [p for e in expectations if e.severity == X.DROP and (p := violation(e)) is not None]

    def transform(df: DataFrame) -> DataFrame:
        if not drops:
            return df
        broken = F.lit(False)
        for p in drops:
            broken = broken | F.coalesce(p, F.lit(False))
        # Filter on a selected flag: a key-uniqueness flag is a window, not allowed in WHERE.
        return df.withColumn("_dropped", broken).where(~F.col("_dropped")).drop("_dropped")

    return transform


# -- outcomes ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One expectation's result on one table (and day, when the check was limited to one)."""

    expectation: ExpectationDef
    success: bool
    observed: str = ""
    unexpected_count: int | None = None
    examples: list = field(default_factory=list)
    # Rows that broke it: the index columns asked for (GE's unexpected_index_list) or, for
    # row queries, whole rows.
    rows: list[dict] = field(default_factory=list)
    days: list[dt.date] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.expectation.name

    @property
    def severity(self) -> str:
        return self.expectation.severity

    def examples_text(self) -> str:
        return json.dumps(self.examples, default=str, ensure_ascii=False) if self.examples else ""


def _short(text: str, width: int = CELL) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def outcomes_table(outcomes: Iterable[Outcome]) -> str:
    """A compact pass/fail table: result, severity, expectation, observed, examples."""
    header = ("result", "severity", "expectation", "observed", "unexpected examples")
    rows = [("ok" if o.success else "FAILED", o.severity, o.name, _short(o.observed),
             _short(o.examples_text())) for o in outcomes]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def failure_sentence(failed: Sequence[Outcome]) -> str:
    """One sentence naming each failed expectation and its offending values."""
    parts = [f"{o.name} ({o.observed}; e.g. {_short(o.examples_text(), 160) or 'no example'})"
             for o in failed]
    return (f"{len(failed)} fail-level expectation(s) failed: " + "; ".join(parts))


# -- the rollup gate: expectations as one Spark pass --------------------------------------------

@dataclass
class Gate:
    """What the expectations say about rows about to be written."""

    outcomes: list[Outcome]
    # Days with a `fail`-level violation: not to be published.
    fail_days: list[dt.date]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    def failed_at(self, severity: str) -> list[Outcome]:
        return [o for o in self.failed if o.severity == severity]


def gate_rows(rows: DataFrame, expectations: Sequence[ExpectationDef], day_column: str,
              key: Sequence[str] = ()) -> Gate:
    """Evaluate `expectations` on `rows` in one Spark job: which fail, on which days, e.g.?

    Parameters:
        rows: the rows a writer is about to publish.
        day_column: the partition column; a failure is attributed to the days of its rows
            (a column-type failure to every day of `rows`).
        key: columns shown as examples of offending rows (besides the checked columns).
    """
    outcomes: list[Outcome] = []
    row_level = [(e, violation(e)) for e in expectations]
    # Flags first (a key-uniqueness flag is a window, which cannot sit inside an aggregate).
    flagged = rows.select("*", *[F.coalesce(broken, F.lit(False)).alias(f"_gate{i}")
                                 for i, (_, broken) in enumerate(row_level)
                                 if broken is not None])
    aggs = [F.sort_array(F.collect_set(F.col(day_column))).alias("_days")]
    for i, (e, broken) in enumerate(row_level):
        if broken is None:
            continue
        flag = F.col(f"_gate{i}")
        shown = list(dict.fromkeys([*key, *_columns_of(e)]))
        aggs += [F.sum(flag.cast("long")).alias(f"_n{i}"),
                 F.sort_array(F.collect_set(F.when(flag, F.col(day_column)))).alias(f"_d{i}"),
                 F.slice(F.collect_list(F.when(flag, F.to_json(F.struct(*shown)))), 1,
                         MAX_EXAMPLES).alias(f"_x{i}")]
    summary = flagged.agg(*aggs).first()
    all_days = list(summary["_days"] or [])
    for i, (e, broken) in enumerate(row_level):
        if broken is None:
            actual = type_mismatch(e, rows)
            outcomes.append(Outcome(e, actual is None, observed=actual or e.args["type_"],
                                    days=[] if actual is None else all_days))
            continue
        count = summary[f"_n{i}"] or 0
        outcomes.append(Outcome(e, count == 0, observed=f"{count} unexpected",
                                unexpected_count=count,
                                examples=[json.loads(x) for x in summary[f"_x{i}"] or []],
                                days=list(summary[f"_d{i}"] or [])))
    fail_days = sorted({d for o in outcomes if not o.success and o.severity == X.FAIL
                        for d in o.days})
    return Gate(outcomes, fail_days)


def _columns_of(e: ExpectationDef) -> list[str]:
    a = e.args
    if "column" in a:
        return [a["column"]]
    if "column_A" in a:
        return [a["column_A"], a["column_B"]]
    return list(a.get("column_list", ())) or ([e.column] if e.column else [])


# -- Great Expectations -----------------------------------------------------------------------

def _quiet_gx() -> None:
    # GE sends usage analytics unless told not to; read when a context is created.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def gx_context(docs_dir: str | None = None):
    """An ephemeral GE context: no analytics, no progress bars, a Data Docs site at `docs_dir`
    (a local folder) when given."""
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if docs_dir is not None:
        context.add_data_docs_site(DOCS_SITE, {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": docs_dir},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return context


def gx_expectation(e: ExpectationDef):
    """The GE expectation object of `e` (its name and severity travel in `meta`)."""
    import great_expectations.expectations as gxe

    return getattr(gxe, e.kind)(**e.args, meta={"gridlake_name": e.name,
                                                "severity": e.severity,
                                                "description": e.description})


def _asset_name(table: str) -> str:
    return table.replace("/", ".")


def _observed(result: dict, exception: str | None) -> str:
    if exception:
        return f"error: {exception.strip().splitlines()[0][:200]}"
    if "observed_value" in result:
        return str(result["observed_value"])
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} unexpected of {result.get('element_count', '?')}"
    return ""


def _outcome_of(e: ExpectationDef, r) -> Outcome:
    result = dict(r.result or {})
    info = r.exception_info or {}
    exception = info.get("exception_message") if info.get("raised_exception") else None
    details = result.get("details") or {}
    if e.kind == X.NO_ROWS_WHERE:
        rows = [dict(row) for row in details.get("unexpected_rows") or []]
        shown = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
        examples = shown[:MAX_EXAMPLES]
        count = result.get("observed_value")
    else:
        rows = [dict(row) for row in result.get("unexpected_index_list") or []]
        examples = list(result.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]
        count = result.get("unexpected_count")
    return Outcome(e, bool(r.success) and not exception, observed=_observed(result, exception),
                   unexpected_count=count if isinstance(count, int) else None,
                   examples=examples, rows=rows)


def validate_frame(df: DataFrame, table: str, expectations: Sequence[ExpectationDef],
                   index_columns: Sequence[str] = (), context=None) -> list[Outcome]:
    """Validate a Spark DataFrame with GE against `expectations` (a table's suite).

    Parameters:
        table: the table's path (names the GE asset and suite).
        index_columns: columns GE reports for each unexpected row (`Outcome.rows`).
        context: a GE context from `gx_context` (default: a new ephemeral one). Results are
            kept in it, so its Data Docs site can render them.
    """
    import great_expectations as gx

    context = context or gx_context()
    name = _asset_name(table)
    try:
        source = context.data_sources.get("gridlake")
    except (KeyError, ValueError):
        source = context.data_sources.add_spark(name="gridlake")
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name=name)
    try:
        batch_definition = asset.get_batch_definition("whole")
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add_or_update(gx.ExpectationSuite(
        name=name, expectations=[gx_expectation(e) for e in expectations]))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))
    result_format: dict = {"result_format": "COMPLETE", "partial_unexpected_count": MAX_EXAMPLES}
    if index_columns:
        result_format["unexpected_index_column_names"] = list(index_columns)
    results = definition.run(batch_parameters={"dataframe": df}, result_format=result_format)
    by_name = {e.name: e for e in expectations}
    return [_outcome_of(by_name[r.expectation_config.meta["gridlake_name"]], r)
            for r in results.results]


# -- the lake: `gridlake quality` ---------------------------------------------------------------

def suite_spec(table: str):
    """The TableSpec of a suite table, given as its path (`gold/daily_device_rollups`), its
    catalog name (`gold.daily_device_rollups`) or its last part (`daily_device_rollups`)."""
    specs = {s.path: s for s in core_tables() if s.path in X.SUITE_TABLES}
    for spec in specs.values():
        if table in (spec.path, spec.name, spec.path.rsplit("/", 1)[-1]):
            return spec
    raise BadArgumentError(
        f"--table {table!r} has no expectation suite; choose one of {', '.join(X.SUITE_TABLES)}")


@dataclass
class TableCheck:
    table: str
    version: int | None
    day: dt.date | None
    outcomes: list[Outcome]


@dataclass
class QualityReport:
    """Every table checked by one quality run."""

    run_id: str
    checked_at: dt.datetime
    checks: list[TableCheck]
    docs_index: str | None = None

    @property
    def outcomes(self) -> list[Outcome]:
        return [o for c in self.checks for o in c.outcomes]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def failed_fail(self) -> list[Outcome]:
        return [o for o in self.failed if o.severity == X.FAIL]

    def table_text(self) -> str:
        parts = []
        for c in self.checks:
            version = "empty" if c.version is None else f"v{c.version}"
            day = f", day {c.day}" if c.day else ""
            passed = sum(o.success for o in c.outcomes)
            parts.append(f"{c.table} ({version}{day}): {passed}/{len(c.outcomes)} passed\n"
                         + outcomes_table(c.outcomes))
        return "\n\n".join(parts)


def _result_row(run_id: str, checked_at: dt.datetime, table: str, version: int | None,
                day: dt.date | None, o: Outcome) -> dict:
    return {"run_id": run_id, "checked_at": checked_at, "table": table,
            "table_version": version, "day": day, "expectation": o.name,
            "expectation_type": o.expectation.kind, "severity": o.severity,
            "success": o.success, "observed_value": o.observed,
            "unexpected_count": o.unexpected_count, "unexpected_examples": o.examples_text()}


def result_rows(report: QualityReport) -> list[dict]:
    """The report as rows of `_gridlake/quality_results`."""
    return [_result_row(report.run_id, report.checked_at, c.table, c.version, c.day, o)
            for c in report.checks for o in c.outcomes]


def gate_result_rows(gate: Gate, run_id: str, table: str, checked_at: dt.datetime
                     ) -> list[dict]:
    """The gate's failures as rows of `_gridlake/quality_results`, one per failing day (rows
    not yet written have no table version)."""
    return [_result_row(run_id, checked_at, table, None, day, o)
            for o in gate.failed for day in (o.days or [None])]


def write_results(spark, lake, rows: list[dict]) -> None:
    from gridlake.retry import guarded_write

    if not rows:
        return
    spec = quality_results()
    frame = spark.createDataFrame(rows, spec.schema)
    guarded_write(lambda: frame.write.format("delta").mode("append").save(lake.path(spec)),
                  "quality results")


def docs_dir(lake) -> str | None:
    """The lake's Data Docs folder (local lakes only: GE writes the site with plain files)."""
    root = lake.path(DATA_DOCS_DIR)
    return None if "://" in root else root


def check_table(spark, lake, table: str, day: dt.date | None = None, context=None
                ) -> TableCheck:
    """Validate one table of the lake (its latest version; one day when given) with GE."""
    from batch.delta_io import read_at
    from gridlake.lake import table_version

    spec = suite_spec(table)
    path = lake.path(spec)
    version = table_version(spark, path)
    if version is None:
        frame = spark.createDataFrame([], spec.schema)
    else:
        frame = read_at(spark, path, version)
    if day is not None:
        # The day is a bound value in a Column expression, never pasted into SQL.
        frame = frame.where(F.col(spec.partition_by[0]) == F.lit(day))
    outcomes = validate_frame(frame, spec.path, expectations_for(spec.path),
                              index_columns=spec.key, context=context)
    return TableCheck(spec.path, version, day, outcomes)


def check_lake(spark, lake, tables: Sequence[str] | None = None, day: dt.date | None = None,
               run_id: str | None = None, store: bool = True, docs: bool = True
               ) -> QualityReport:
    """Run the suites of `tables` (default: all) on the lake, store every result, build docs.

    Parameters:
        tables: table paths or names (see `suite_spec`); a hostile value is refused by name.
        day: limit each table to one value of its partition column (event/ingest/UTC/local day).
        store: append every result to `_gridlake/quality_results`.
        docs: build the GE Data Docs site under `_gridlake/data_docs/` (local lakes).
    """
    specs = [suite_spec(t) for t in (tables or X.SUITE_TABLES)]
    run_id = run_id or f"quality-{uuid.uuid4().hex[:12]}"
    checked_at = dt.datetime.now(dt.UTC)
    site = docs_dir(lake) if docs else None
    context = gx_context(site)
    checks = [check_table(spark, lake, s.path, day, context) for s in specs]
    report = QualityReport(run_id, checked_at, checks)
    if store:
        write_results(spark, lake, result_rows(report))
    if site is not None:
        context.build_data_docs(site_names=[DOCS_SITE])
        report.docs_index = f"{site}/index.html"
    return report


def raise_on_fail(report: QualityReport) -> None:
    """Raise QualityFailure naming the fail-level expectations that failed, if any."""
    if report.failed_fail:
        raise QualityFailure(failure_sentence(report.failed_fail))
