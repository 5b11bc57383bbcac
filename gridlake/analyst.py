"""One import for notebooks: every lake table by name, through Spark SQL or through pandas.

`connect()` opens the lake named by `GRIDLAKE_LAKE` (else the demo lake; or the root given). Two ways in, with the
same answers:

- the light path, without a JVM: `lake.pandas(name)` reads a table with polars' Delta reader
  (deletion vectors applied) into pandas,
  at any version (`version=` for time travel); `lake.history(name)` lists its commits;
- Spark: `lake.spark` starts a SparkSession on first use and registers every table of the lake
  in its catalog under its name (`gold.daily_device_rollups`, `silver.readings`, ...), so
  `lake.sql("select ...")` and `lake.spark.table(name)` work; `lake.table(name, version=)`
  time-travels too.

Example:
    >>> from gridlake.analyst import connect
    >>> lake = connect()                                                  # doctest: +SKIP
    >>> lake.pandas("gold.daily_device_rollups").groupby("day").energy_import_wh.sum()
    >>> lake.sql("select day, sum(samples) from gold.daily_device_rollups group by day")
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field

from gridlake.errors import BadArgumentError
from shared_schemas.tables import TableSpec, core_tables


def table_specs() -> dict[str, TableSpec]:
    """Every table a lake can hold, by its catalog name (`layer.table`)."""
    return {spec.name: spec for spec in core_tables()}


def _spec(name: str) -> TableSpec:
    specs = table_specs()
    if name not in specs:
        raise BadArgumentError(f"there is no lake table named {name!r}; the tables are "
                               f"{', '.join(sorted(specs))}")
    return specs[name]


def existing_tables(root: str) -> dict[str, TableSpec]:
    """The tables the lake under `root` holds now, by catalog name (read by delta-rs)."""
    from batch.lake_state import delta_table

    return {name: spec for name, spec in sorted(table_specs().items())
            if delta_table(root, spec) is not None}


def register_tables(spark, root: str) -> list[str]:
    """Register every existing table under `root` in Spark's catalog by name; returns the names.

    Tables are external (their data stays in the lake); registering again points the names
    at this lake, whichever lake they named before.
    """
    from gridlake.lake import Lake

    lake, found = Lake(root), existing_tables(root)
    for name, spec in found.items():
        database, _, table = name.partition(".")
        spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")  # names from the specs only
        if spark.catalog.tableExists(name):
            spark.sql(f"DROP TABLE `{database}`.`{table}`")  # external: only the name goes
        spark.catalog.createTable(name, path=lake.path(spec), source="delta")
    return list(found)


_COMPARISONS = {
    "=": "eq", "==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge",
}


def _condition(schema, column: str, op: str, value):
    """One pyarrow-style filter `(column, op, value)` as a polars expression over a table of
    `schema`; the value is cast to the column's type (so `("event_date", "=", "2026-11-01")`
    works) and is never parsed as an expression."""
    import polars as pl

    if column not in schema:
        raise BadArgumentError(f"filter on {column!r}: the table has no such column")
    dtype = schema[column]
    if op in _COMPARISONS:
        typed = pl.lit(_temporal(column, dtype, value)).cast(dtype)
        return getattr(pl.col(column), _COMPARISONS[op])(typed)
    if op in ("in", "not in"):
        values = [_temporal(column, dtype, v) for v in value]
        member = pl.col(column).is_in(pl.Series(values).cast(dtype).implode())
        return member if op == "in" else ~member
    raise BadArgumentError(f"filter on {column!r}: unknown operator {op!r} "
                           f"(use one of {', '.join([*_COMPARISONS, 'in', 'not in'])})")


def _temporal(column: str, dtype, value):
    """An ISO text value for a date or timestamp column as a date or datetime (polars does not
    cast text to those); every other value as given."""
    import polars as pl

    if not isinstance(value, str) or not dtype.is_temporal():
        return value
    try:
        if dtype == pl.Date:
            return dt.date.fromisoformat(value)
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadArgumentError(
            f"filter on {column!r}: {value!r} is not an ISO date or time") from None
    # A time without a zone is read as UTC, the lake's time zone.
    instant = parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return instant if getattr(dtype, "time_zone", None) else instant.replace(tzinfo=None)


@dataclass
class AnalystLake:
    """A lake opened for analysis; see the module's docstring."""

    root: str
    _spark: object = field(default=None, repr=False)

    def _lake(self):
        from gridlake.lake import Lake

        return Lake(self.root)

    def tables(self) -> list[str]:
        """The names of the tables this lake holds now."""
        return list(existing_tables(self.root))

    def _missing(self, name: str) -> BadArgumentError:
        return BadArgumentError(f"the lake at {self.root} has no table {name} yet")

    def pandas(self, name: str, version: int | None = None, columns: list[str] | None = None,
               filters: list[tuple] | None = None):
        """A table (at `version`) as a pandas DataFrame, read by polars' Delta reader: no JVM.

        Parameters:
            name: catalog name, e.g. `gold.daily_device_rollups`.
            version: a Delta version to time-travel to (default: the latest).
            columns: only these columns.
            filters: pyarrow-style filters, all of which must hold, e.g.
                `[("device_id", "=", "D00001"), ("device_type", "in", ["solar"])]`; values are
                data, never SQL.
        """
        from batch.lake_state import scan

        frame = scan(self.root, _spec(name), version)
        if frame is None:
            raise self._missing(name)
        if filters:
            schema = frame.collect_schema()
            frame = frame.filter(*[_condition(schema, *f) for f in filters])
        if columns:
            frame = frame.select(columns)
        return frame.collect().to_arrow().to_pandas()

    def history(self, name: str):
        """A table's commits, newest first: version, timestamp, operation, parameters, metrics."""
        import pandas as pd

        from batch.lake_state import delta_table

        table = delta_table(self.root, _spec(name))
        if table is None:
            raise self._missing(name)
        commits = pd.DataFrame(table.history())
        if "timestamp" in commits:
            commits["timestamp"] = pd.to_datetime(commits["timestamp"], unit="ms", utc=True)
        return commits

    @property
    def spark(self):
        """A SparkSession with every table of the lake registered by name (started on first use)."""
        if self._spark is None:
            from gridlake.session import spark_session

            warehouse = tempfile.mkdtemp(prefix="gridlake-catalog-")
            self._spark = spark_session(app_name="gridlake-notebook", extra_conf={
                "spark.sql.warehouse.dir": warehouse, "spark.ui.showConsoleProgress": "false"})
            register_tables(self._spark, self.root)
        return self._spark

    def sql(self, query: str, **params):
        """Spark SQL over the lake's tables; values go in as named parameters (`:device`)."""
        return self.spark.sql(query, args=params or None)

    def trace(self, device_id: str, day=None, ts=None):
        """Where a gold number came from: `gridlake lineage --device --day [--ts]` as an object.

        Returns a `gridlake.lineage.DayLineage`: the gold row, the silver version it was
        computed from, and every reading behind it with its source coordinates and writer.
        """
        import datetime as dt

        from gridlake.lineage import parse_timestamp, trace_day

        day = dt.date.fromisoformat(day) if isinstance(day, str) else day
        ts = parse_timestamp(ts) if isinstance(ts, str) else ts
        return trace_day(self.spark, self._lake(), device_id, day, ts)

    def impact(self, source: str):
        """What a source range changed: `gridlake lineage --impact SOURCE` as an object.

        `source` is a late-report or landing file, or `kafka:TOPIC:PARTITION:FROM-TO`.
        """
        from gridlake.lineage import parse_source, source_impact

        return source_impact(self.spark, self._lake(), parse_source(source, self.spark))

    def quarantine(self, reason: str | None = None, examples: int = 3):
        """The open quarantine by reason code, most frequent first (`gridlake quarantine list`)."""
        from batch.quarantine import quarantine_groups

        return quarantine_groups(self.spark, self._lake(), reason=reason, examples=examples)

    def table(self, name: str, version: int | None = None):
        """A table as a Spark DataFrame (at `version`)."""
        path = self._lake().path(_spec(name))
        if version is None:
            return self.spark.table(name)
        from batch.delta_io import read_at

        return read_at(self.spark, path, version)


def default_root() -> str:
    """`GRIDLAKE_LAKE`; else the lake of `make demo` when there is one; else `lake/`."""
    import os

    from gridlake.lake import LAKE_VARIABLE, MARKER, default_lake_root
    from gridlake.session import REPO_ROOT

    demo = REPO_ROOT / "demo" / "lake"
    if LAKE_VARIABLE not in os.environ and (demo / MARKER).is_file():
        return str(demo)
    return default_lake_root()


def connect(root: str | None = None) -> AnalystLake:
    """Open the lake at `root` (default: `default_root()`) for analysis, without starting Spark.

    Example:
        >>> lake = connect("demo/lake")                                  # doctest: +SKIP
        >>> lake.tables()
        ['bronze.telemetry', 'gold.daily_device_rollups', ...]
    """
    from gridlake.lake import MARKER, Lake, read_text

    root = root or default_root()
    if "://" not in root:
        from pathlib import Path

        root = str(Path(root).resolve())
        if read_text(Lake(root).path(MARKER)) is None:
            raise BadArgumentError(f"{root} is not a gridlake lake (no {MARKER}); run "
                                   "`make demo` or point GRIDLAKE_LAKE at a lake")
    return AnalystLake(root)
