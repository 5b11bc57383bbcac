"""Reprocessing: rebuild silver for a range of event dates from bronze with the current rules.

After a bug fix or a rule change, silver and quarantine should read as if every record had
been ingested by today's code. Bronze keeps every record with its ingest time, so the same
`parse_and_validate` decides the same way (the "ts in the future" rule included) and the
records whose reading falls in the range are decided again:

- silver: the range's event dates are replaced in one commit (`replaceWhere` on event_date)
  by the latest version of each key among the valid records, using the write path's own
  transforms (`silver_rows`, `latest_per_key`). One atomic overwrite was chosen over
  delete + MERGE so that no reader (or rollup) ever sees the range half-empty; it also
  reproduces exactly what the incremental MERGEs give, because the upsert rule does not
  depend on arrival order. Records a concurrent writer appended to bronze after the snapshot
  was read are merged afterwards with the ordinary MERGE (the rule makes that order-safe).
- quarantine (never deleted from): an open entry of a record that now passes is marked
  `reprocessed`; a record that now fails for other reasons gets a new entry and its old one
  is marked `superseded`; a record that fails for the same reasons keeps its entry.
- gold: the range's rollups are recomputed from the new silver version.

A `forget` running meanwhile may erase records after they were read here; they are removed
again from what this run wrote (`batch.erasure.drop_erased`) before the rollups.

Records whose `ts` cannot be read have no event date and are left to quarantine replay.
Earlier versions of every table stay reachable by Delta time travel.

Example:
    >>> result = reprocess(spark, lake, dt.date(2026, 11, 1), dt.date(2026, 11, 2))  # doctest: +SKIP
    >>> print("\\n".join(result.lines()))                                              # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.delta_io import commit_version, read_at, replace_dates
from batch.erasure import drop_erased, erased_meanwhile_line
from batch.rollups import RollupResult, day_range, recompute
from gridlake.ingest import (
    BatchResult,
    WriteContext,
    latest_per_key,
    log_decisions,
    merge_into_silver,
    quarantine_rows,
    record_batch,
    silver_rows,
)
from gridlake.lake import Lake, table_version
from gridlake.retry import guarded_write
from shared_schemas import CURRENT, Contract
from shared_schemas.spark import parse_and_validate
from shared_schemas.tables import (
    RECORD_KEY,
    batch_log,
    bronze_telemetry,
    decision_log,
    quarantine_telemetry,
    silver_readings,
)

OPEN, REPROCESSED, SUPERSEDED = "quarantined", "reprocessed", "superseded"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


@dataclass
class ReprocessResult:
    run_id: str
    start: dt.date
    end: dt.date
    records: int = 0
    valid: int = 0
    silver_rows: int = 0
    caught_up: int = 0
    quarantine_added: int = 0
    quarantine_reprocessed: int = 0
    quarantine_superseded: int = 0
    erased_meanwhile: int = 0
    versions: dict[str, int | None] = field(default_factory=dict)
    rollup: RollupResult | None = None

    def nothing_sentence(self) -> str:
        """What a run that found no record in its range says (it wrote nothing)."""
        return (f"bronze holds no record with an event date from {self.start} to {self.end}: "
                "nothing to reprocess")

    def lines(self) -> list[str]:
        if not self.records:
            return [f"reprocess {self.run_id}: {self.nothing_sentence()}"]
        out = [f"reprocess {self.run_id}: event dates {self.start}..{self.end}: "
               f"{self.records} bronze record(s), {self.valid} valid, "
               f"{self.records - self.valid} invalid",
               f"silver: {self.silver_rows} row(s) in the range after the rebuild"
               + (f", {self.caught_up} newer record(s) merged on top" if self.caught_up else ""),
               f"quarantine: {self.quarantine_added} new entr(ies), "
               f"{self.quarantine_reprocessed} marked reprocessed, "
               f"{self.quarantine_superseded} superseded"]
        if self.erased_meanwhile:
            out.append(erased_meanwhile_line(self.erased_meanwhile))
        if self.rollup is not None:
            out.append(self.rollup.line())
        out.append("versions written: " + ", ".join(
            f"{table} v{v}" for table, v in self.versions.items() if v is not None))
        return out


# -- pure -------------------------------------------------------------------------------------

def in_event_dates(dates: list[dt.date], contract: Contract = CURRENT
                   ) -> Callable[[DataFrame], DataFrame]:
    """Validated records whose reading time (parsed, whether valid or not) is on `dates`."""

    def transform(validated: DataFrame) -> DataFrame:
        return validated.where(F.to_date(contract.event_time_field).isin(*dates))

    return transform


def quarantine_changes(validated: DataFrame, open_entries: DataFrame, contract: Contract,
                       at: dt.datetime, settled: DataFrame | None = None) -> DataFrame:
    """The MERGE source that brings quarantine up to date with re-validated records.

    One row per record keyed by `_k_*` (matched against its open entry: status changes), plus
    one row with null keys (never matching: inserted) for each record that now fails and
    has no open entry with the same reasons. `settled` (run_id, batch_id) limits those inserts
    to batches whose writer has finished: a batch still being written (its bronze committed,
    its quarantine append not yet) quarantines its own records, and an insert here would
    make them twice.
    """
    spec = quarantine_telemetry()
    codes = F.array_sort(F.transform("reasons", lambda r: r["code"]))
    outcomes = validated.select(
        *[F.col(c).alias(f"_k_{c}") for c in RECORD_KEY],
        (F.size("reasons") == 0).alias("_valid"), codes.alias("_codes"),
        F.lit(False).alias("_insert"),
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in spec.schema])
    same_reasons = open_entries.select(*RECORD_KEY,
                                       F.array_sort("reason_codes").alias("_open_codes"))
    failing = validated.where(F.size("reasons") > 0).withColumn("_codes", codes)
    if settled is not None:
        failing = failing.join(settled.select("run_id", "batch_id"), ["run_id", "batch_id"],
                               "left_semi")
    new = (failing
           .join(same_reasons, [*RECORD_KEY], "left")
           .where(F.col("_open_codes").isNull() | (F.col("_open_codes") != F.col("_codes")))
           .transform(quarantine_rows(contract, at))
           .select(*[F.lit(None).cast(t).alias(f"_k_{c}") for c, t in
                     (("record_id", "string"), ("run_id", "string"), ("batch_id", "long"))],
                   F.lit(False).alias("_valid"), F.lit(None).cast("array<string>").alias("_codes"),
                   F.lit(True).alias("_insert"), *spec.column_names))
    return outcomes.unionByName(new)


# -- edges ------------------------------------------------------------------------------------

def _merge_quarantine(spark, lake: Lake, source: DataFrame, run_id: str, at: dt.datetime
                      ) -> None:
    from delta.tables import DeltaTable

    spec = quarantine_telemetry()
    on = F.col("t.status") == F.lit(OPEN)
    for c in RECORD_KEY:
        on = on & (F.col(f"t.{c}") == F.col(f"s._k_{c}"))
    changed = F.col("s._valid") | ~F.array_sort(F.col("t.reason_codes")).eqNullSafe(
        F.col("s._codes"))

    def merge() -> None:
        # The run id as the commit's user metadata, so `commit_version` finds this commit
        # (a session setting: the write lock keeps other writes of the process out meanwhile;
        # a value set for the session is put back after).
        before = spark.conf.get(USER_METADATA, None)
        spark.conf.set(USER_METADATA, run_id)
        try:
            (DeltaTable.forPath(spark, lake.path(spec)).alias("t")
             .merge(source.alias("s"), on)
             .whenMatchedUpdate(condition=changed, set={
                 "status": F.when(F.col("s._valid"), F.lit(REPROCESSED))
                 .otherwise(F.lit(SUPERSEDED)),
                 "replayed_at": F.lit(at).cast("timestamp"),
                 "replay_run_id": F.lit(run_id)})
             .whenNotMatchedInsert(condition=F.col("s._insert"),
                                   values={c: F.col(f"s.{c}") for c in spec.column_names})
             .execute())
        finally:
            if before is None:
                spark.conf.unset(USER_METADATA)
            else:
                spark.conf.set(USER_METADATA, before)

    guarded_write(merge, f"quarantine update of {run_id}")


def _new_bronze(spark, path: str, since: int) -> DataFrame | None:
    """Bronze rows appended after version `since` (bronze is append-only), or None; read at
    one version, so every use of the result sees the same rows."""
    before = read_at(spark, path, since).select("run_id", "batch_id").distinct()
    now = read_at(spark, path, table_version(spark, path))
    batches = now.select("run_id", "batch_id").distinct().join(before, ["run_id", "batch_id"],
                                                              "left_anti")
    if not batches.limit(1).count():
        return None
    return now.join(batches, ["run_id", "batch_id"], "left_semi")


def reprocess(spark, lake: Lake, start: dt.date, end: dt.date,
              contract: Contract = CURRENT) -> ReprocessResult:
    """Rebuild silver, quarantine and rollups for event dates `start`..`end` from bronze.

    Parameters:
        start, end: the event dates (UTC) to rebuild, both included.
        contract: the rules to apply (default: the current contract).
    Raises BadArgumentError when `start` is after `end`. When bronze (as of the run's
    snapshot) holds no record of those dates, nothing is written and `records` is 0.
    """
    dates = day_range(start, end)
    run_id = f"reprocess-{uuid.uuid4().hex[:12]}"
    ctx = WriteContext.now(run_id=run_id, batch_id=0, kind="reprocess",
                           source=f"bronze, event dates {start}..{end}")
    at = dt.datetime.now(dt.UTC)
    result = ReprocessResult(run_id, start, end)
    bronze_path = lake.path(bronze_telemetry())
    silver_path = lake.path(silver_readings(contract))
    snapshot = table_version(spark, bronze_path)
    validated = (read_at(spark, bronze_path, snapshot)
                 .transform(parse_and_validate(contract))
                 .transform(in_event_dates(dates, contract))
                 .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        counts = validated.agg(F.count(F.lit(1)).alias("n"),
                               F.count(F.when(F.size("reasons") == 0, 1)).alias("valid")).first()
        result.records, result.valid = counts["n"], counts["valid"]
        if not result.records:
            # Nothing to rebuild from: silver's dates are left as they are, never emptied.
            return result
        candidates = validated.transform(silver_rows(contract, at))
        rows = candidates.transform(latest_per_key(contract.key, contract.order_by))
        guarded_write(lambda: replace_dates(rows, silver_path, "event_date", dates, run_id,
                                            merge_schema=True),
                      f"silver rebuild of {run_id}")
        result.versions["silver/readings"] = commit_version(spark, silver_path, run_id)
        # A rebuild replaces the dates: each key starts afresh (no stored row).
        conflicts = log_decisions(spark, lake, candidates, ctx, contract,
                                  silver_written=result.versions["silver/readings"])

        decided_from = [*RECORD_KEY, "ingest_date", "payload"]
        read = validated.select(*decided_from)
        newer = _new_bronze(spark, bronze_path, snapshot)
        if newer is not None:
            read = read.unionByName(newer.select(*decided_from))
            late = (newer.transform(parse_and_validate(contract))
                    .transform(in_event_dates(dates, contract))
                    .transform(silver_rows(contract, at)))
            result.caught_up = late.count()
            if result.caught_up:
                catch_up = WriteContext(run_id, 1, "reprocess", ctx.source, ctx.ingest_time)
                # Their conflicts are counted in the batches that brought them.
                merge_into_silver(spark, lake, late.transform(latest_per_key(
                    contract.key, contract.order_by)), dates, catch_up, contract,
                    candidates=late)
                result.versions["silver/readings"] = commit_version(spark, silver_path, run_id)

        # The batch log first, then quarantine: a batch logged by then has its quarantine
        # entries committed by then (a writer logs its batch last).
        batches_path = lake.path(batch_log())
        settled = read_at(spark, batches_path, table_version(spark, batches_path))
        quarantine_path = lake.path(quarantine_telemetry())
        quarantine = read_at(spark, quarantine_path, table_version(spark, quarantine_path))
        open_entries = quarantine.where(F.col("status") == F.lit(OPEN))
        now = validated.select(*RECORD_KEY, F.array_sort(F.transform(
            "reasons", lambda r: r["code"])).alias("_codes"))
        moves = (open_entries.join(now, [*RECORD_KEY])
                 .agg(F.count(F.when(F.size("_codes") == 0, 1)).alias("passed"),
                      F.count(F.when((F.size("_codes") > 0)
                                     & (F.array_sort("reason_codes") != F.col("_codes")), 1)
                              ).alias("superseded")).first())
        source = quarantine_changes(validated, open_entries, contract, at, settled).persist(
            StorageLevel.MEMORY_AND_DISK)
        try:
            result.quarantine_added = source.where(F.col("_insert")).count()
            if result.quarantine_added or moves["passed"] or moves["superseded"]:
                _merge_quarantine(spark, lake, source, run_id, at)
                result.versions["quarantine/telemetry"] = commit_version(
                    spark, lake.path(quarantine_telemetry()), run_id)
        finally:
            source.unpersist()
        result.quarantine_reprocessed = moves["passed"]
        result.quarantine_superseded = moves["superseded"]
        result.erased_meanwhile = drop_erased(spark, lake, read, run_id, dates, contract)
    finally:
        validated.unpersist()
    result.silver_rows = (read_at(spark, silver_path, result.versions["silver/readings"])
                          .where(F.col("event_date").isin(*dates)).count())

    result.rollup = recompute(spark, lake, dates, run_id=run_id, mode="reprocess",
                              contract=contract)
    result.versions["gold/daily_device_rollups"] = result.rollup.device_rollups_version
    result.versions["gold/daily_site_rollups"] = result.rollup.site_rollups_version
    batch = BatchResult(run_id, 0, records_read=result.records, upserted=result.silver_rows,
                        duplicates_or_stale=result.valid - result.silver_rows,
                        quarantined=result.records - result.valid, event_dates=dates,
                        conflicts=conflicts)
    record_batch(spark, lake, batch, ctx, contract)
    for spec in (decision_log(contract), batch_log()):
        result.versions[spec.path] = commit_version(spark, lake.path(spec), run_id)
    return result
