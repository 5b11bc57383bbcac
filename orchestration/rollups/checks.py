"""Checks on the rollup rows a run just wrote: one list of named checks per gold table.

`checks_by_table()` is the seam where data-quality suites plug in: each entry is a `TableCheck`
(name, description, and a function from the rows of the days just written to an outcome). The
rollup asset declares one Dagster check per entry and evaluates them all on the rows it wrote,
so a check's result always refers to exactly the partitions of that run. Great Expectations
suites (derived from `shared_schemas`) are added by appending more entries.

Why inside the materialization and not as partitioned `@asset_check`s: runs of these assets
cover a *range* of partitions (single-run backfill policy), and Dagster 1.13's partitioned
checks (a preview) take one partition key per run, so they cannot report on a range run.

The table's expectation suite (`shared_schemas.expectations`) is one more entry,
`quality_suite`: its expectations evaluated on the rows of the days the run wrote (the rollup
gate's Spark predicates; fail-level rows never get that far, so what it can show is warn/drop
failures), with an ERROR severity for fail-level failures. The whole Great Expectations suite
on the table's latest version is the separate `great_expectations` check (`gx_checks`), run from
the UI or a job, not in every rollup run (a GE run on Spark costs tens of Spark jobs).

Example:
    >>> [c.name for c in device_rollup_checks()]
    ['samples_positive', 'power_min_avg_max_ordered', 'soc_within_0_100', 'keys_unique']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from gridlake.landing import few
from shared_schemas.tables import TableSpec, gold_daily_device_rollups, gold_daily_site_rollups

DEVICE_ROLLUPS, SITE_ROLLUPS = "daily_device_rollups", "daily_site_rollups"
MAX_DAYS_LISTED = 20


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    metadata: dict
    # "error" blocks downstream assets (blocking checks); "warn" is reported only.
    severity: str = "error"


@dataclass(frozen=True)
class TableCheck:
    """A named check of rows: `evaluate(rows)` tells whether they pass, with counts."""

    name: str
    description: str
    evaluate: Callable[[DataFrame], CheckOutcome]


def _days(rows: list, column: str) -> str:
    return few([str(r[column]) for r in rows], MAX_DAYS_LISTED) or "-"


def rows_must(name: str, description: str, holds: Callable[[], Column], day: str
              ) -> TableCheck:
    """Every row must satisfy `holds()` (a null verdict fails); failures are counted per day."""

    def evaluate(rows: DataFrame) -> CheckOutcome:
        failing = (rows.where(~F.coalesce(holds(), F.lit(False)))
                   .groupBy(day).count().orderBy(day).collect())
        bad = sum(r["count"] for r in failing)
        return CheckOutcome(bad == 0, {"failing_rows": bad, "failing_days": _days(failing, day)})

    return TableCheck(name, description, evaluate)


def unique_key(name: str, key: tuple[str, ...], day: str) -> TableCheck:
    """No two rows share `key`."""

    def evaluate(rows: DataFrame) -> CheckOutcome:
        dupes = rows.groupBy(*key).count().where(F.col("count") > 1)
        failing = dupes.groupBy(day).count().orderBy(day).collect()
        bad = sum(r["count"] for r in failing)
        return CheckOutcome(bad == 0, {"duplicate_keys": bad, "failing_days": _days(failing, day)})

    return TableCheck(name, f"one row per ({', '.join(key)})", evaluate)


def _at_most(low: str, high: str) -> Column:
    # Averages are sums divided by counts; allow the last bit of rounding.
    slack = F.lit(1e-9) * F.greatest(F.abs(F.col(high)), F.lit(1.0))
    return F.col(low) <= F.col(high) + slack


def device_rollup_checks() -> tuple[TableCheck, ...]:
    return (
        rows_must("samples_positive", "every row counts at least one reading",
                  lambda: F.col("samples") > 0, "day"),
        rows_must("power_min_avg_max_ordered", "min_power_w <= avg_power_w <= max_power_w",
                  lambda: _at_most("min_power_w", "avg_power_w")
                  & _at_most("avg_power_w", "max_power_w"), "day"),
        rows_must("soc_within_0_100",
                  "min_soc_pct and max_soc_pct within 0-100, min <= max (null when no reading "
                  "has a state of charge)",
                  lambda: (F.col("min_soc_pct").isNull() & F.col("max_soc_pct").isNull())
                  | (F.col("min_soc_pct").between(0, 100) & F.col("max_soc_pct").between(0, 100)
                     & (F.col("min_soc_pct") <= F.col("max_soc_pct"))), "day"),
        unique_key("keys_unique", ("device_id", "day"), "day"),
    )


def site_rollup_checks() -> tuple[TableCheck, ...]:
    return (
        rows_must("samples_positive", "every row counts at least one reading from a device",
                  lambda: (F.col("samples") > 0) & (F.col("devices") > 0), "local_day"),
        rows_must("local_day_hours_23_to_25",
                  "a local day lasts 23 to 25 hours (24, or 23/25 on a daylight-saving change)",
                  lambda: F.col("local_day_hours").between(23.0, 25.0), "local_day"),
        unique_key("keys_unique", ("site_id", "local_day"), "local_day"),
    )


QUALITY_SUITE = "quality_suite"


def gold_tables() -> dict[str, TableSpec]:
    """Asset name → table definition, for the two rollup tables."""
    return {DEVICE_ROLLUPS: gold_daily_device_rollups(), SITE_ROLLUPS: gold_daily_site_rollups()}


def quality_suite_check(spec: TableSpec) -> TableCheck:
    """The table's expectation suite on the rows of the run's days, failures named per day
    (the table's partition column)."""
    table, day = spec.path, spec.partition_by[0]

    def evaluate(rows: DataFrame) -> CheckOutcome:
        from gridlake.quality import gate_rows
        from shared_schemas.expectations import FAIL, expectations_for

        gate = gate_rows(rows, expectations_for(table), day, key=spec.key)
        failed = gate.failed
        metadata = {"expectations": len(gate.outcomes), "failed": len(failed),
                    "failing_days": _days([{day: d} for d in sorted(
                        {d for o in failed for d in o.days})], day)}
        if failed:
            metadata["failures"] = "; ".join(
                f"{o.name} [{o.severity}] {o.observed}: {o.examples_text()}" for o in failed)
        return CheckOutcome(not failed, metadata,
                            "error" if any(o.severity == FAIL for o in failed) else "warn")

    return TableCheck(QUALITY_SUITE, f"the expectation suite of {table} (shared_schemas."
                                     "expectations) on the rows of the days the run wrote",
                      evaluate)


def checks_by_table() -> dict[str, tuple[TableCheck, ...]]:
    """Asset name → its checks. The one place to add a check (or a suite of them)."""
    tables = gold_tables()
    return {DEVICE_ROLLUPS: (*device_rollup_checks(), quality_suite_check(tables[DEVICE_ROLLUPS])),
            SITE_ROLLUPS: (*site_rollup_checks(), quality_suite_check(tables[SITE_ROLLUPS]))}


def gx_checks() -> list:
    """The Great Expectations suite of each gold table, as a blocking Dagster asset check."""
    from orchestration.quality import great_expectations_check

    return [great_expectations_check(asset, spec.path) for asset, spec in gold_tables().items()]
