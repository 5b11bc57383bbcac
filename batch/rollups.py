"""Daily rollups: per device and UTC day, and per site and local calendar day.

Gold is a function of one silver version. A run pins the current silver version, recomputes
the days it was given from silver *as of that version*, and replaces exactly those days in
gold (Delta `replaceWhere` on the partition column), so a day whose readings all went away
loses its gold rows too. Each gold row records the silver version and the run.

Which days: `rollup_range` takes a UTC date range; `rollup_changed` reads silver's change data
feed since the last `changed` run (the cursor, kept in `_gridlake/rollups`) and recomputes
only the UTC days whose readings changed. Site rollups follow: every local day that overlaps
a recomputed UTC day, in any site's zone, is recomputed from all of its readings.

The two gold tables are computed side by side (two threads of one Spark session; their
commits still take the process's write lock one at a time): a run of a few days is mostly
the fixed cost of small Spark jobs, which two cores overlap. The bookkeeping reads (the
cursor, the change feed, which days another run computed from a newer silver version) go
through `batch.lake_state` (delta-rs), not Spark queries.

Before a gold table is written, its rows are checked against the table's expectations
(`shared_schemas.expectations`, as Spark predicates, see `gridlake.quality.gate_rows`): rows
breaking a `drop`-level expectation are left out, days with a `fail`-level violation are not
published, and the run then raises `RollupQualityError` naming them (the other days are
written; the run is not logged, so a `changed` cursor does not move past them).

Example:
    >>> result = rollup_changed(spark, lake)                                 # doctest: +SKIP
    >>> print(result.line())                                                 # doctest: +SKIP
    rollups: 2 UTC days (2026-11-01..2026-11-02), 3 local days; silver v14 -> gold v6, v6
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar
from zoneinfo import ZoneInfo

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from batch import lake_state
from batch.delta_io import (
    commit_version,
    conform,
    read_at,
    replace_dates,
)
from gridlake.errors import BadArgumentError
from gridlake.lake import Lake, table_version
from gridlake.quality import (
    Gate,
    QualityFailure,
    failure_sentence,
    gate_result_rows,
    gate_rows,
    without_dropped,
    write_results,
)
from gridlake.quality import log as quality_log
from gridlake.retry import guarded_write, holds_write_lock
from shared_schemas import CURRENT, Contract
from shared_schemas.expectations import (
    DROP,
    FAIL,
    WARN,
    ExpectationDef,
    expectations_for,
    registered_sites,
)
from shared_schemas.tables import (
    gold_daily_device_rollups,
    gold_daily_site_rollups,
    reference_sites,
    rollup_log,
    silver_readings,
    site_energy_columns,
)

CHANGED = "changed"
T = TypeVar("T")
log = logging.getLogger("gridlake.rollups")


@dataclass
class RollupResult:
    """What one rollup run recomputed, from which silver version, into which gold versions."""

    run_id: str
    mode: str
    silver_version: int
    changes_from_version: int | None = None
    days: list[dt.date] = field(default_factory=list)
    local_days: list[dt.date] = field(default_factory=list)
    # Days another run had already computed from a newer silver version (left as they are):
    # UTC days of the device rollups, local days of the site rollups.
    skipped_newer: list[dt.date] = field(default_factory=list)
    skipped_newer_local_days: list[dt.date] = field(default_factory=list)
    device_rollups_version: int | None = None
    site_rollups_version: int | None = None
    # Per gold table: what its expectations said about the rows before they were written.
    quality: dict[str, Gate] = field(default_factory=dict)

    def line(self) -> str:
        if not self.days:
            return f"rollups: no day changed (silver v{self.silver_version})"
        versions = ", ".join(f"{name} v{v}" for name, v in (
            ("daily_device_rollups", self.device_rollups_version),
            ("daily_site_rollups", self.site_rollups_version)) if v is not None)
        skipped = (f"; {len(self.skipped_newer)} UTC and {len(self.skipped_newer_local_days)} "
                   f"site-local day(s) already newer, left alone"
                   if self.skipped_newer or self.skipped_newer_local_days else "")
        return (f"rollups: {len(self.days)} UTC day(s) ({_span(self.days)}), "
                f"{len(self.local_days)} site-local day(s) recomputed from silver "
                f"v{self.silver_version}{skipped}; gold {versions or 'unchanged'}")


def _span(days: list[dt.date]) -> str:
    first, last = min(days), max(days)
    return f"{first}" if first == last else f"{first}..{last}"


# -- pure: dates ------------------------------------------------------------------------------

def check_range(start: dt.date, end: dt.date) -> None:
    """Raise BadArgumentError for an empty range (`start` after `end`)."""
    if start > end:
        raise BadArgumentError(
            f"the date range {start}..{end} is empty: --from {start} is after --to {end}")


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every date from `start` to `end`, both included; an empty range is an error."""
    check_range(start, end)
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def local_days_overlapping(utc_days: Iterable[dt.date], timezones: Iterable[str]
                           ) -> list[dt.date]:
    """Local calendar days, in any of `timezones`, that share an instant with a UTC day."""
    zones = [ZoneInfo(name) for name in set(timezones)]
    days: set[dt.date] = set()
    for day in set(utc_days):
        first = dt.datetime.combine(day, dt.time(), dt.UTC)
        last = first + dt.timedelta(days=1, microseconds=-1)
        for zone in zones:
            # An offset is under 24 hours, so the two ends name every local day in between.
            days.update((first.astimezone(zone).date(), last.astimezone(zone).date()))
    return sorted(days)


def utc_dates_of(local_days: Iterable[dt.date]) -> list[dt.date]:
    """The UTC dates that readings of these local days can fall on (offsets are < 24 h)."""
    return sorted({d + dt.timedelta(days=k) for d in local_days for k in (-1, 0, 1)})


# -- pure: transforms -------------------------------------------------------------------------

def daily_device_rollups() -> Callable[[DataFrame], DataFrame]:
    """Silver readings → one row per device and UTC day (`event_date`), per DESIGN.md.

    site_id and device_type are those of the device's latest reading that day.
    """

    def transform(readings: DataFrame) -> DataFrame:
        return readings.groupBy("device_id", F.col("event_date").alias("day")).agg(
            F.max_by("site_id", "ts").alias("site_id"),
            F.max_by("device_type", "ts").alias("device_type"),
            F.count(F.lit(1)).alias("samples"),
            F.sum("energy_import_wh").alias("energy_import_wh"),
            F.sum("energy_export_wh").alias("energy_export_wh"),
            F.min("power_w").alias("min_power_w"),
            F.max("power_w").alias("max_power_w"),
            F.avg("power_w").alias("avg_power_w"),
            F.min("soc_pct").alias("min_soc_pct"),
            F.max("soc_pct").alias("max_soc_pct"),
        )

    return transform


def with_local_day(ts: str = "ts", timezone: str = "timezone"
                   ) -> Callable[[DataFrame], DataFrame]:
    """Add `local_day`: the calendar date of `ts` on the wall clock of `timezone`."""

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn("local_day",
                             F.to_date(F.from_utc_timestamp(F.col(ts), F.col(timezone))))

    return transform


def local_day_hours(day: str = "local_day", timezone: str = "timezone") -> F.Column:
    """How long a local day is, in hours: 24, or 23/25 on a daylight-saving change."""

    def utc_midnight(date_col):
        return F.unix_seconds(F.to_utc_timestamp(date_col.cast("timestamp"), F.col(timezone)))

    return ((utc_midnight(F.date_add(F.col(day), 1)) - utc_midnight(F.col(day))) / 3600.0)


def daily_site_rollups(contract: Contract = CURRENT) -> Callable[[DataFrame], DataFrame]:
    """Readings with `timezone` and `local_day` → one row per site and local day.

    Energy is summed over the site's devices, in total and per device type (null when the
    site has no device of that type reporting that day).
    """
    per_type = site_energy_columns(contract)

    def transform(readings: DataFrame) -> DataFrame:
        is_type = {t: F.col("device_type") == F.lit(t) for t, _, _ in per_type}
        return (readings
                .groupBy("site_id", "local_day", "timezone")
                .agg(F.count_distinct("device_id").alias("devices"),
                     F.count(F.lit(1)).alias("samples"),
                     F.sum("energy_import_wh").alias("energy_import_wh"),
                     F.sum("energy_export_wh").alias("energy_export_wh"),
                     *[F.sum(F.when(is_type[t], F.col(src))).alias(name)
                       for t, imp, exp in per_type
                       for name, src in ((imp, "energy_import_wh"), (exp, "energy_export_wh"))])
                .withColumn("local_day_hours", local_day_hours()))

    return transform


def stamped(silver_version: int, run_id: str, computed_at: dt.datetime
            ) -> Callable[[DataFrame], DataFrame]:
    """Add the lineage columns every gold row carries."""

    def transform(df: DataFrame) -> DataFrame:
        return (df.withColumn("silver_version", F.lit(silver_version).cast("long"))
                .withColumn("run_id", F.lit(run_id))
                .withColumn("computed_at", F.lit(computed_at).cast("timestamp")))

    return transform


# -- edges ------------------------------------------------------------------------------------

def silver_version(spark, lake: Lake, contract: Contract = CURRENT) -> int:
    return table_version(spark, lake.path(silver_readings(contract)))


def _site_zones(spark, lake: Lake) -> DataFrame:
    return spark.read.format("delta").load(lake.path(reference_sites())).select(
        "site_id", "timezone")


class RollupQualityError(QualityFailure):
    """Fail-level expectations failed on computed rollup rows: those days were not published.

    `result` is the run's RollupResult (the days that passed were published)."""

    def __init__(self, message: str, result: RollupResult):
        super().__init__(message)
        self.result = result


def _gated(spark, lake: Lake, result: RollupResult, spec, column: str, days: list[dt.date],
           rows: DataFrame, also: Sequence[ExpectationDef] = ()
           ) -> tuple[list[dt.date], Callable[[list[dt.date]], DataFrame]]:
    """Check `rows` (those of `days`) against the table's expectations (and `also`) before they
    are written: the days to publish (no fail-level violation) and the rows of given days
    without drop-level rows. Failures are stored in the quality results (a clean gate writes
    nothing)."""
    expectations = [*expectations_for(spec.path), *also]
    gate = gate_rows(rows, expectations, column, key=spec.key)
    result.quality[spec.path] = gate
    for outcome in gate.failed_at(WARN) + gate.failed_at(DROP):
        quality_log.warning("%s of %s (%s): %s, e.g. %s", outcome.name, result.run_id,
                            outcome.severity, outcome.observed, outcome.examples_text())
    write_results(spark, lake, gate_result_rows(gate, result.run_id, spec.path,
                                                dt.datetime.now(dt.UTC)))
    drop = without_dropped(expectations)
    # One task per day at the write: one file per day partition, where rows spread over the
    # shuffle partitions would write a small file per day from every task.
    return ([d for d in days if d not in gate.fail_days],
            lambda todo: (rows.where(F.col(column).isin(*todo)).transform(drop)
                          .repartition(F.col(column))))


def _replace_days(lake: Lake, spec, column: str, days: list[dt.date], version: int,
                  run_id: str, build: Callable[[list[dt.date]], DataFrame]
                  ) -> tuple[list[dt.date], list[dt.date]]:
    """Replace `days` of a gold table with `build(days)`, except days another run computed
    from a newer silver version; returns (written, skipped)."""

    def write() -> tuple[list[dt.date], list[dt.date]]:
        newer = lake_state.days_computed_after(lake.root, spec, column, days, version)
        todo = [d for d in days if d not in newer]
        if todo:
            replace_dates(build(todo), lake.path(spec), column, todo, run_id)
        return todo, [d for d in days if d not in todo]

    return guarded_write(write, f"{spec.path.rsplit('/', 1)[-1]} of {run_id}")


def _publish(spark, lake: Lake, result: RollupResult, spec, column: str, days: list[dt.date],
             version: int, run_id: str, build: Callable[[list[dt.date]], DataFrame],
             also: Sequence[ExpectationDef] = ()) -> tuple[list[dt.date], list[dt.date]]:
    """Gate the rows of `days` (with the expectations `also` besides the table's) and replace
    the days that passed; returns (written, skipped).

    The rows are computed once: kept (persisted) for the gate's pass and the write, which
    takes the published days' rows from them, and released after.
    """
    rows = build(days).persist()
    try:
        publish, rows_of = _gated(spark, lake, result, spec, column, days, rows, also)
        if not publish:
            return [], []
        return _replace_days(lake, spec, column, publish, version, run_id, rows_of)
    finally:
        rows.unpersist()


def _side_by_side(spark, *actions: Callable[[], T]) -> list[T]:
    """Run `actions` in threads of this process and return their results in order.

    Spark runs the jobs of several threads of one session at once; each thread gets its own
    copy of the caller's Spark properties and tags. Every action runs to its end, so when one
    fails the others may have written: the first error is raised once all have finished, and
    the other errors are logged.

    Called from inside a guarded write (an erasure's rollup run within another job's write),
    the actions run one after the other in this thread: their writes need the lock it holds.
    """
    if holds_write_lock():
        return [action() for action in actions]
    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        futures = [pool.submit(inheritable_thread_target(spark)(action)) for action in actions]
        wait(futures)
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    for error in errors[1:]:
        log.error("a rollup table failed besides the first error: %s", error, exc_info=error)
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


def recompute(spark, lake: Lake, days: Iterable[dt.date], run_id: str | None = None,
              mode: str = "range", version: int | None = None,
              changes_from_version: int | None = None,
              contract: Contract = CURRENT) -> RollupResult:
    """Recompute the device rollups of `days` and the site rollups of the local days they touch.

    Parameters:
        days: UTC dates to recompute (gold rows of a date with no silver reading are removed).
        run_id: recorded in every gold row and in the rollup log (default: a new one).
        mode: `range`, `changed` (advances the change-feed cursor) or the calling job's name.
        version: the silver version to read (default: the latest).
    """
    run_id = run_id or f"rollup-{uuid.uuid4().hex[:12]}"
    started = dt.datetime.now(dt.UTC)
    version = silver_version(spark, lake, contract) if version is None else version
    silver = read_at(spark, lake.path(silver_readings(contract)), version)
    days = sorted(set(days))
    result = RollupResult(run_id, mode, version, changes_from_version, days=days)
    device_spec, site_spec = gold_daily_device_rollups(), gold_daily_site_rollups(contract)
    # The registry is small: read once for the run and kept, so the zones of the local days,
    # the sites the device gate knows and the join of the site rollups all agree.
    registry = _site_zones(spark, lake).collect() if days else []
    sites = spark.createDataFrame(registry, "site_id string, timezone string")
    result.local_days = local_days_overlapping(days, {r["timezone"] for r in registry})
    # A site missing from the registry has no site rollups: the device gate says so.
    registered = [registered_sites(r["site_id"] for r in registry)] if days else []

    def device_rows(todo: list[dt.date]) -> DataFrame:
        return (silver.where(F.col("event_date").isin(*todo))
                .transform(daily_device_rollups())
                .transform(stamped(version, run_id, started))
                .transform(conform(device_spec)))

    def site_rows(todo: list[dt.date]) -> DataFrame:
        return (silver.where(F.col("event_date").isin(*utc_dates_of(todo)))
                .join(F.broadcast(sites), "site_id")
                .transform(with_local_day())
                .where(F.col("local_day").isin(*todo))
                .transform(daily_site_rollups(contract))
                .transform(stamped(version, run_id, started))
                .transform(conform(site_spec)))

    def publish(spec, column: str, todo: list[dt.date], build,
                also: Sequence[ExpectationDef] = ()) -> tuple[list[dt.date], int | None]:
        """(days left alone as newer, the gold version written or None)."""
        if not todo:
            return [], None
        written, skipped = _publish(spark, lake, result, spec, column, todo, version, run_id,
                                    build, also)
        return skipped, commit_version(spark, lake.path(spec), run_id) if written else None

    ((result.skipped_newer, result.device_rollups_version),
     (result.skipped_newer_local_days, result.site_rollups_version)) = _side_by_side(
        spark,
        lambda: publish(device_spec, "day", days, device_rows, registered),
        lambda: publish(site_spec, "local_day", result.local_days, site_rows))
    failed = [o for gate in result.quality.values() for o in gate.failed_at(FAIL)]
    if failed:
        # Not logged as a run: a `changed` cursor stays where it was, so the days come again.
        days_text = ", ".join(f"{table} {_span(gate.fail_days)}"
                              for table, gate in result.quality.items() if gate.fail_days)
        raise RollupQualityError(f"rollup {run_id} did not publish {days_text}: "
                                 + failure_sentence(failed), result)
    _log_run(spark, lake, result, started)
    return result


def _log_run(spark, lake: Lake, result: RollupResult, started: dt.datetime) -> None:
    spec = rollup_log()
    row = {
        "run_id": result.run_id, "mode": result.mode,
        "changes_from_version": result.changes_from_version,
        "silver_version": result.silver_version, "days": result.days,
        "local_days": result.local_days,
        "device_rollups_version": result.device_rollups_version,
        "site_rollups_version": result.site_rollups_version,
        "started_at": started, "finished_at": dt.datetime.now(dt.UTC),
    }
    frame = spark.createDataFrame([row], spec.schema)
    guarded_write(lambda: frame.write.format("delta").mode("append").save(lake.path(spec)),
                  f"rollup log of {result.run_id}")


def require_data(root: str, start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """The part of a range (`start` <= `end`) a rollup can change; refuse one that holds none.

    What a rollup of the range touches (`recompute`): the device rollups of its UTC days; the
    site rollups of the local days overlapping it in any site's zone, a day either side
    (`local_days_overlapping`); and silver's readings of those local days, one day further
    (`utc_dates_of`). A day further than that from every day the tables hold recomputes to
    nothing, so the range returned runs only from the first to the last day within reach of
    held data: `--to 9999-12-31` costs what the held days cost. Reads the Delta logs only
    (`lake_state.days_held`), so it costs no Spark job. Raises BadArgumentError naming the
    event dates silver does hold when nothing is within reach (most often a mistyped date).
    """
    silver = lake_state.days_held(root, silver_readings())
    touched = ((silver, 2),
               (lake_state.days_held(root, gold_daily_device_rollups()), 0),
               (lake_state.days_held(root, gold_daily_site_rollups()), 1))
    reach = [(day - dt.timedelta(days=days_out), day + dt.timedelta(days=days_out))
             for days, days_out in touched for day in days
             if (start - day).days <= days_out and (day - end).days <= days_out]
    if reach:
        return max(start, min(first for first, _ in reach)), min(end, max(last for _, last in reach))
    held = (f"silver's event dates run from {min(silver)} to {max(silver)}" if silver
            else "silver holds no readings yet")
    raise BadArgumentError(
        f"nothing to roll up from {start} to {end}: silver holds no reading of those days or "
        f"the two either side, and gold no rollup of them; {held}")


def rollup_range(spark, lake: Lake, start: dt.date, end: dt.date,
                 contract: Contract = CURRENT) -> RollupResult:
    """Recompute every UTC day from `start` to `end` (both included).

    Example:
        >>> rollup_range(spark, lake, dt.date(2026, 11, 1), dt.date(2026, 11, 3))  # doctest: +SKIP
    """
    return recompute(spark, lake, day_range(start, end), contract=contract)


def rollup_changed(spark, lake: Lake, run_id: str | None = None,
                   contract: Contract = CURRENT) -> RollupResult:
    """Recompute only the UTC days whose silver readings changed since the last such run.

    Example:
        >>> rollup_changed(spark, lake).days                                # doctest: +SKIP
        [datetime.date(2026, 11, 2)]
    """
    run_id = run_id or f"rollup-{uuid.uuid4().hex[:12]}"
    version = silver_version(spark, lake, contract)
    cursor = lake_state.rollup_cursor(lake.root, CHANGED)
    first = 0 if cursor is None else cursor + 1
    if cursor is not None and cursor >= version:  # nothing committed to silver since
        return RollupResult(run_id, CHANGED, version, first)
    days = lake_state.changed_days(lake.root, first, version)
    return recompute(spark, lake, days, run_id=run_id, mode=CHANGED, version=version,
                     changes_from_version=first, contract=contract)
