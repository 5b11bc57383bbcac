"""The one write path of the lake: raw records in, bronze + quarantine + silver out, exactly once.

The stream's foreachBatch handler, the late-report backfill, reprocessing and quarantine
replay all call `write_batch` (or `upsert_from_bronze` when the records are already in
bronze). Every Delta write carries a transaction identifier (run id + batch id), so a batch
replayed after a crash changes nothing that was already committed.

Silver's rule (DESIGN.md): key `(device_id, ts)`; the highest `seq` wins; a lower `seq` is
stale; an equal `seq` with the same CloudEvents id is a duplicate; an equal `seq` with a
different id is a producer conflict won by the greater id — in any arrival order.

Example:
    >>> ctx = WriteContext.now(run_id="backfill-3f2a", batch_id=0, kind="backfill", source=path)
    >>> result = write_batch(spark, lake, raw_records, ctx)                  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from gridlake.faults import crash_point
from gridlake.lake import (
    HISTORY_SEARCHED,
    Lake,
    is_data_gone,
    table_version,
    transaction_commit,
    unreadable,
)
from gridlake.retry import guarded_write
from shared_schemas import CURRENT, Contract
from shared_schemas.spark import parse_and_validate
from shared_schemas.tables import (
    batch_log,
    bronze_telemetry,
    decision_log,
    quarantine_telemetry,
    silver_readings,
)

# Delta reads these session settings for MERGE's idempotent transaction identifier; every
# write holds gridlake.retry.WRITE_LOCK so no other write of the session picks them up.
_TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"
log = logging.getLogger("gridlake.ingest")

# Columns giving the order records were delivered in, within one batch.
DELIVERY_ORDER = ("ingest_time", "source_file", "source_line", "kafka_partition", "kafka_offset")

# The decisions of a record that met another with its key and seq but another id: the winner's
# and the loser's (the others are inserted, higher_seq, stale and duplicate).
CONFLICT_WON, CONFLICT_LOST = "producer_conflict_won", "producer_conflict_lost"
CONFLICT_DECISIONS = (CONFLICT_WON, CONFLICT_LOST)

# `off` skips the decision log (`_gridlake/decisions`); any other value, or none, keeps it.
DECISION_LOG_SETTING = "GRIDLAKE_DECISION_LOG"


def decision_log_enabled() -> bool:
    """Whether silver writes log their upsert decisions (read at each write, so tests can flip it)."""
    value = os.environ.get(DECISION_LOG_SETTING, "on").strip().lower()
    return value not in ("off", "0", "false", "no")


@dataclass(frozen=True)
class WriteContext:
    """Who is writing: a run (stream app, backfill, reprocess), its batch and its clock."""

    run_id: str
    batch_id: int
    kind: str
    source: str
    ingest_time: dt.datetime

    @classmethod
    def now(cls, run_id: str, batch_id: int, kind: str, source: str) -> WriteContext:
        return cls(run_id, batch_id, kind, source, dt.datetime.now(dt.UTC).replace(microsecond=0))


@dataclass
class BatchResult:
    """What one batch did; one line of it per micro-batch on the stream's stdout."""

    run_id: str
    batch_id: int
    records_read: int = 0
    upserted: int = 0
    duplicates_or_stale: int = 0
    quarantined: int = 0
    event_dates: list[dt.date] = field(default_factory=list)
    # Files held whole as one record (no line): damaged, or (a batch file) not an array.
    whole_files: list[str] = field(default_factory=list)
    bronze_version: int | None = None
    silver_version: int | None = None
    quarantine_version: int | None = None
    seconds: float = 0.0
    replayed: bool = False
    # Valid records that met another with the same key and seq but another id (won or lost;
    # counted from the decision log, so 0 when it is off).
    conflicts: int = 0

    def line(self, label: str | None = None) -> str:
        """The batch's stdout line, headed `batch N` unless `label` is given."""
        if self.event_dates:
            first, last = min(self.event_dates), max(self.event_dates)
            dates = f"{first}" if first == last else f"{first}..{last}"
        else:
            dates = "-"
        head = label or f"batch {self.batch_id}"
        return (f"{head}: read {self.records_read}, upserted {self.upserted}, "
                f"duplicates/stale {self.duplicates_or_stale}, "
                f"quarantined {self.quarantined}, event dates {dates}, {self.seconds:.2f} s"
                + (" (replayed: already committed)" if self.replayed else ""))


# -- pure transforms ----------------------------------------------------------------------------

def to_bronze(ctx: WriteContext) -> Callable[[DataFrame], DataFrame]:
    """Stamp raw records with their ingest time, run and batch, in bronze's column order."""
    spec = bronze_telemetry()

    def transform(raw: DataFrame) -> DataFrame:
        stamped = (raw
                   .withColumn("ingest_time", F.lit(ctx.ingest_time).cast("timestamp"))
                   .withColumn("ingest_date", F.to_date("ingest_time"))
                   .withColumn("run_id", F.lit(ctx.run_id))
                   .withColumn("batch_id", F.lit(ctx.batch_id).cast("long")))
        return stamped.select(*spec.column_names)

    return transform


def quarantine_rows(contract: Contract, quarantined_at: dt.datetime
                    ) -> Callable[[DataFrame], DataFrame]:
    """The invalid records of a validated frame, as quarantine rows."""
    spec = quarantine_telemetry()

    def transform(validated: DataFrame) -> DataFrame:
        return (validated
                .where(F.size("reasons") > 0)
                .withColumn("reason_codes", F.transform("reasons", lambda r: r["code"]))
                .withColumn("contract_version", F.lit(contract.version))
                .withColumn("quarantined_at", F.lit(quarantined_at).cast("timestamp"))
                .withColumn("status", F.lit("quarantined"))
                .withColumn("replayed_at", F.lit(None).cast("timestamp"))
                .withColumn("replay_run_id", F.lit(None).cast("string"))
                .select(*spec.column_names))

    return transform


def silver_rows(contract: Contract, written_at: dt.datetime) -> Callable[[DataFrame], DataFrame]:
    """The valid records of a validated frame, as silver rows (typed fields + lineage)."""
    spec = silver_readings(contract)

    def transform(validated: DataFrame) -> DataFrame:
        return (validated
                .where(F.size("reasons") == 0)
                .withColumn("event_date", F.to_date(contract.event_time_field))
                .withColumn("contract_version", F.lit(contract.version))
                .withColumn("written_at", F.lit(written_at).cast("timestamp"))
                .select(*spec.column_names))

    return transform


def latest_per_key(key: Iterable[str], order_by: str, tie_breaker: str = "event_id"
                   ) -> Callable[[DataFrame], DataFrame]:
    """Keep one row per key: the highest `order_by`, ties won by the greatest `tie_breaker`.

    Rows equal on both are duplicate deliveries: the first delivered (lowest source
    coordinates) is kept, so lineage points at the record that actually made the change.
    """
    key = list(key)

    def transform(df: DataFrame) -> DataFrame:
        window = Window.partitionBy(*key).orderBy(
            F.col(order_by).desc(), F.col(tie_breaker).desc(),
            *[F.col(c).asc_nulls_last() for c in DELIVERY_ORDER])
        return (df.withColumn("_rank", F.row_number().over(window))
                .where(F.col("_rank") == 1).drop("_rank"))

    return transform


def wins_over(new: str = "s", old: str = "t", order_by: str = "seq",
              tie_breaker: str = "event_id"):
    """The contract's rule as a Column: does row `new` replace the stored row `old`?"""
    n_seq, o_seq = F.col(f"{new}.{order_by}"), F.col(f"{old}.{order_by}")
    n_id, o_id = F.col(f"{new}.{tie_breaker}"), F.col(f"{old}.{tie_breaker}")
    return (n_seq > o_seq) | ((n_seq == o_seq) & (n_id > o_id))


def decide(stored: DataFrame, contract: Contract = CURRENT) -> Callable[[DataFrame], DataFrame]:
    """Why each valid record of a batch won or lost: the upsert rule, applied as a log.

    The transform takes silver rows of *all* valid records of a batch (in-batch losers too);
    `stored` holds silver's rows before the write (any superset of the batch's keys). Each
    record is met by the batch's winner for its key (`latest_per_key`) and that winner by the
    stored row (`wins_over`), so the log follows the same rule functions as the MERGE.
    Decisions: `inserted` (new key), `higher_seq`, `producer_conflict_won` (beat an equal
    `seq` with a smaller id, stored or in the batch), and for losers `duplicate` (same seq,
    same id), `stale` (lower seq) or `producer_conflict_lost`. `winner_*` is the row silver
    holds for the key after the write.

    Example:
        >>> candidates.transform(decide(silver_before, contract))        # doctest: +SKIP
    """
    key, order = list(contract.key), contract.order_by

    def record(name: str) -> Column:
        return F.struct("record_id", "event_id", order).alias(name)

    def transform(candidates: DataFrame) -> DataFrame:
        in_batch = candidates.transform(latest_per_key(key, order)).select(*key, record("b"))
        held = stored.select(*key, record("t"))
        met = (candidates.select(*key, "event_date", record("c"))
               .join(in_batch, key).join(held, key, "left"))
        beats_stored = F.col("t").isNull() | wins_over("b", "t", order)
        won = beats_stored & (F.col("c.record_id") == F.col("b.record_id"))
        w = F.col("w")
        rival = ((F.col(f"c.{order}") == F.col(f"b.{order}"))
                 & (F.col("c.event_id") != F.col("b.event_id")))
        batch_conflict = F.max(rival).over(Window.partitionBy(*key))
        stored_conflict = ((F.col(f"t.{order}") == F.col(f"c.{order}"))
                           & (F.col("t.event_id") != F.col("c.event_id")))
        decision = (F.when(won & (batch_conflict | F.coalesce(stored_conflict, F.lit(False))),
                           CONFLICT_WON)
                    .when(won & F.col("t").isNull(), "inserted")
                    .when(won, "higher_seq")
                    .when(w[order] > F.col(f"c.{order}"), "stale")
                    .when(w["event_id"] == F.col("c.event_id"), "duplicate")
                    .otherwise(CONFLICT_LOST))
        return (met
                .withColumn("w", F.when(beats_stored, F.col("b")).otherwise(F.col("t")))
                .select(*key, "event_date", "c.record_id", "c.event_id", f"c.{order}",
                        decision.alias("decision"), won.alias("won"),
                        w["record_id"].alias("winner_record_id"),
                        w["event_id"].alias("winner_event_id"),
                        w[order].alias(f"winner_{order}")))

    return transform


def decision_rows(ctx: WriteContext, contract: Contract, silver_read: int | None,
                  silver_written: int | None, decided_at: dt.datetime
                  ) -> Callable[[DataFrame], DataFrame]:
    """Stamp decisions with the write that made them, in the decision log's column order."""
    spec = decision_log(contract)

    def transform(decisions: DataFrame) -> DataFrame:
        return (decisions
                .withColumn("run_id", F.lit(ctx.run_id))
                .withColumn("batch_id", F.lit(ctx.batch_id).cast("long"))
                .withColumn("contract_version", F.lit(contract.version))
                .withColumn("silver_version_read", F.lit(silver_read).cast("long"))
                .withColumn("silver_version_written", F.lit(silver_written).cast("long"))
                .withColumn("decided_at", F.lit(decided_at).cast("timestamp"))
                .select(*spec.column_names))

    return transform


# -- edge functions: Delta I/O -----------------------------------------------------------------

def _append(df: DataFrame, path: str, ctx: WriteContext, what: str,
            partition_by: tuple[str, ...] = ()) -> None:
    def write() -> None:
        (df.write.format("delta").mode("append").partitionBy(*partition_by)
         .option("txnAppId", ctx.run_id).option("txnVersion", ctx.batch_id)
         .save(path))
    guarded_write(write, f"{what} append of {ctx.run_id}/{ctx.batch_id}")


class Upserted(NamedTuple):
    """What a MERGE into silver did: rows inserted or updated, and the records that met a
    producer conflict (`BatchResult.conflicts`)."""

    rows: int
    conflicts: int = 0


def merge_into_silver(spark, lake: Lake, updates: DataFrame, event_dates: list[dt.date],
                      ctx: WriteContext, contract: Contract = CURRENT,
                      candidates: DataFrame | None = None) -> Upserted:
    """MERGE deduplicated updates into silver; returns the rows inserted or updated and the
    records that met a producer conflict.

    The condition carries the literal list of event dates in the batch, so Delta prunes
    silver to those partitions: the cost follows the batch, not the table.

    Unless `GRIDLAKE_DECISION_LOG=off`, the write's decisions go to `_gridlake/decisions`
    (once per run and batch): `candidates` are all valid records of the batch before
    `latest_per_key` (so in-batch losers are logged too); without it, `updates` are logged.
    """
    from delta.tables import DeltaTable

    if not event_dates:
        return Upserted(0)
    path = lake.path(silver_readings(contract))
    on = F.col("t.event_date").isin(*event_dates)
    for column in contract.key:
        on = on & (F.col(f"t.{column}") == F.col(f"s.{column}"))

    def merge() -> int | None:
        target = DeltaTable.forPath(spark, path)
        builder = (target.alias("t").merge(updates.alias("s"), on)
                   .whenMatchedUpdateAll(condition=wins_over(order_by=contract.order_by))
                   .whenNotMatchedInsertAll()
                   .withSchemaEvolution())
        spark.conf.set(_TXN_APP_ID, ctx.run_id)
        spark.conf.set(_TXN_VERSION, str(ctx.batch_id))
        try:
            metrics = builder.execute().first()
        finally:
            spark.conf.unset(_TXN_APP_ID)
            spark.conf.unset(_TXN_VERSION)
        if metrics is None:  # skipped: this transaction was already committed (a replay)
            return None
        row = metrics.asDict()
        return int(row.get("num_updated_rows", 0) or 0) + int(row.get("num_inserted_rows", 0) or 0)

    changed = guarded_write(merge, f"silver MERGE of {ctx.run_id}/{ctx.batch_id}")
    crash_point("after_silver", ctx.batch_id)
    # The MERGE's commit, found by its transaction id (for a replay, the first attempt's):
    # the version it read and the one it wrote, whoever else commits meanwhile. A replayed
    # batch is so classified against silver as its MERGE read it, and a crash between the
    # MERGE and the log append loses no decision (the log's own transaction id keeps a logged
    # batch from being logged twice).
    # The switch is checked here too, so a switched-off log costs no lookup or time travel.
    logged = decision_log_enabled()
    replayed = changed is None
    commit = (transaction_commit(spark, path, ctx.run_id, ctx.batch_id)
              if logged or replayed else None)
    if replayed:
        changed = _rows_changed(commit)
        if commit is None:
            log.warning("the silver MERGE of %s/%s committed before this replay, but its "
                        "commit is not among the table's last %d: its upserted rows are counted "
                        "as 0%s", ctx.run_id, ctx.batch_id, HISTORY_SEARCHED,
                        " and its upsert decisions are not logged" if logged else "")
    conflicts = 0
    if logged and commit is not None:
        written, info = commit
        read = info.get("readVersion", written - 1)

        def stored() -> DataFrame:  # silver as the MERGE read it (Delta resolves it at load)
            return (spark.read.format("delta").option("versionAsOf", read)
                    .load(path).where(F.col("event_date").isin(*event_dates)))

        try:
            conflicts = log_decisions(spark, lake, updates if candidates is None else candidates,
                                      ctx, contract, stored(), read, written)
        except Exception as error:
            if not (is_data_gone(error) and unreadable(stored)):
                raise
            # Silver holds the batch; only the record of why is lost. Failing instead would
            # stop a stream on every restart (the replay meets the same missing files).
            log.warning("the upsert decisions of %s/%s are not logged: silver/readings v%d, "
                        "which its MERGE read, is no longer readable (its files were vacuumed, "
                        "as `gridlake forget --now` does); silver holds the batch's records",
                        ctx.run_id, ctx.batch_id, read)
    return Upserted(changed, conflicts)


def _rows_changed(commit: tuple[int, dict] | None) -> int:
    """Rows a committed MERGE inserted or updated, from its commit info (0 if not found)."""
    metrics = {} if commit is None else commit[1].get("operationMetrics", {})
    return int(metrics.get("numTargetRowsInserted", 0)) + int(
        metrics.get("numTargetRowsUpdated", 0))


def log_decisions(spark, lake: Lake, candidates: DataFrame, ctx: WriteContext,
                  contract: Contract = CURRENT, stored: DataFrame | None = None,
                  silver_read: int | None = None, silver_written: int | None = None) -> int:
    """Append the decisions of one write to the decision log, once per run and batch; returns
    how many of them are producer conflicts (won or lost).

    `stored` is silver as the write read it (time travel to `silver_read`); None for a write
    that replaced what was there (a reprocess rebuild), where every key's winner is inserted.
    Does nothing when `GRIDLAKE_DECISION_LOG=off` (and returns 0).
    """
    if not decision_log_enabled():
        return 0
    spec = decision_log(contract)
    if stored is None:
        stored = spark.createDataFrame([], silver_readings(contract).schema)
    rows = (candidates.transform(decide(stored, contract))
            .transform(decision_rows(ctx, contract, silver_read, silver_written,
                                     dt.datetime.now(dt.UTC)))
            .persist(StorageLevel.MEMORY_AND_DISK))
    conflicts = F.col("decision").isin(*CONFLICT_DECISIONS)
    try:
        # Rebalanced on the partition column: one file per event date for a batch of ordinary
        # size (more, of Spark's advisory size, for a large one), where the rows would come
        # out of the batch's last shuffle, a small file per shuffle partition and date.
        _append(rows.hint("rebalance", *spec.partition_by), lake.path(spec), ctx,
                "decision log", spec.partition_by)
        try:
            return rows.where(conflicts).count()
        except Exception as error:
            if not is_data_gone(error):
                raise
            # The append was skipped (logged before a crash) and silver as the write read it
            # has been vacuumed since: count the decisions the log holds.
            return (spark.read.format("delta").load(lake.path(spec))
                    .where((F.col("run_id") == ctx.run_id) & (F.col("batch_id") == ctx.batch_id)
                           & conflicts).count())
    finally:
        rows.unpersist()


def _committed_bronze(spark, lake: Lake, ctx: WriteContext) -> DataFrame | None:
    """Bronze rows of this run and batch if an earlier attempt already committed them."""
    rows = (spark.read.format("delta").load(lake.path(bronze_telemetry()))
            .where((F.col("run_id") == ctx.run_id) & (F.col("batch_id") == ctx.batch_id)))
    return rows if rows.limit(1).count() else None


def write_batch(spark, lake: Lake, raw: DataFrame, ctx: WriteContext,
                contract: Contract = CURRENT, may_be_replay: bool = True) -> BatchResult:
    """Append raw records to bronze, then quarantine the invalid and upsert the valid.

    `raw` has the source columns of bronze (record_id, source coordinates, payload, ...).
    Replaying a batch that was (partly) committed before a crash re-derives everything from
    the bronze rows already written, so decisions (e.g. "ts in the future") stay the same.
    Callers that know the batch is new (the stream, from its checkpoint) pass
    `may_be_replay=False` to skip looking for those rows.
    """
    started = time.monotonic()
    if may_be_replay and (resumed := resume_batch(spark, lake, ctx, contract, started)):
        return resumed
    bronze = raw.transform(to_bronze(ctx)).persist(StorageLevel.MEMORY_AND_DISK)
    _append(bronze, lake.path(bronze_telemetry()), ctx, "bronze")
    crash_point("after_bronze", ctx.batch_id)
    return _upsert_persisted(spark, lake, bronze, ctx, contract, started, replayed=False)


def resume_batch(spark, lake: Lake, ctx: WriteContext, contract: Contract = CURRENT,
                 started: float | None = None) -> BatchResult | None:
    """Quarantine and upsert a batch whose bronze append committed before a crash, from those
    bronze rows (the rest of its writes are idempotent); None when bronze holds none of it.
    `started` (time.monotonic) is when the batch's timing began, by default now."""
    started = time.monotonic() if started is None else started
    committed = _committed_bronze(spark, lake, ctx)
    if committed is None:
        return None
    return _upsert_persisted(spark, lake, committed.persist(StorageLevel.MEMORY_AND_DISK),
                             ctx, contract, started, replayed=True)


def _upsert_persisted(spark, lake: Lake, bronze: DataFrame, ctx: WriteContext,
                      contract: Contract, started: float, replayed: bool) -> BatchResult:
    try:
        result = upsert_from_bronze(spark, lake, bronze, ctx, contract)
    finally:
        bronze.unpersist()
    result.replayed = replayed
    result.seconds = time.monotonic() - started
    return result


def upsert_from_bronze(spark, lake: Lake, bronze: DataFrame, ctx: WriteContext,
                       contract: Contract = CURRENT) -> BatchResult:
    """Validate bronze rows, append the invalid to quarantine and MERGE the valid into silver."""
    written_at = dt.datetime.now(dt.UTC)
    validated = bronze.transform(parse_and_validate(contract)).persist(
        StorageLevel.MEMORY_AND_DISK)
    try:
        counts = validated.agg(
            F.count(F.lit(1)).alias("read"),
            F.count(F.when(F.size("reasons") > 0, 1)).alias("bad"),
            F.collect_set(F.when(F.size("reasons") == 0,
                                 F.to_date(contract.event_time_field))).alias("dates"),
            F.collect_set(F.when((F.col("source_kind") == "file") & F.col("source_line").isNull(),
                                 F.col("source_file"))).alias("whole_files"),
        ).first()
        result = BatchResult(ctx.run_id, ctx.batch_id, records_read=counts["read"],
                             quarantined=counts["bad"], event_dates=sorted(counts["dates"]),
                             whole_files=sorted(counts["whole_files"]))
        if counts["bad"]:
            _append(validated.transform(quarantine_rows(contract, written_at)),
                    lake.path(quarantine_telemetry()), ctx, "quarantine")
        crash_point("after_quarantine", ctx.batch_id)
        valid = counts["read"] - counts["bad"]
        if valid:
            candidates = validated.transform(silver_rows(contract, written_at))
            updates = candidates.transform(latest_per_key(contract.key, contract.order_by))
            result.upserted, result.conflicts = merge_into_silver(
                spark, lake, updates, result.event_dates, ctx, contract, candidates=candidates)
        # A replay after an erasure counts bronze as it is now and the MERGE as it was.
        result.duplicates_or_stale = max(0, valid - result.upserted)
    finally:
        validated.unpersist()
    return result


def record_batch(spark, lake: Lake, result: BatchResult, ctx: WriteContext,
                 contract: Contract = CURRENT) -> None:
    """Append the batch's summary to the batch log (the progress Dagster observes)."""
    spec = batch_log()
    row = {
        "run_id": ctx.run_id, "batch_id": ctx.batch_id, "kind": ctx.kind, "source": ctx.source,
        "started_at": ctx.ingest_time, "finished_at": dt.datetime.now(dt.UTC),
        "records_read": result.records_read, "upserted": result.upserted,
        "duplicates_or_stale": result.duplicates_or_stale, "conflicts": result.conflicts,
        "quarantined": result.quarantined, "event_dates": result.event_dates,
        "bronze_version": table_version(spark, lake.path(bronze_telemetry())),
        "silver_version": table_version(spark, lake.path(silver_readings(contract))),
        "quarantine_version": table_version(spark, lake.path(quarantine_telemetry())),
        "contract_version": contract.version,
    }
    result.bronze_version = row["bronze_version"]
    result.silver_version = row["silver_version"]
    result.quarantine_version = row["quarantine_version"]
    _append(spark.createDataFrame([row], spec.schema), lake.path(spec), ctx, "batch log")
