"""Quarantine you can work with: see what failed and why, fix the rule, replay.

`quarantine_groups` summarises the open entries by reason code (a record with two broken
rules counts under both), with first/last seen and a few examples whose raw payload is made
safe to print. `replay` decides the selected open entries again with the current contract,
from their bronze rows (so "ts in the future" is judged against the original ingest time):

- records that now pass go through the one write path (`gridlake.ingest.upsert_from_bronze`)
  and their entries are marked `replayed` (status, replayed_at, replay_run_id), never deleted;
- records that still fail stay `quarantined`; when their reasons changed, the entry's reasons
  are updated in place (no second entry);
- the UTC days of the records that passed have their rollups recomputed.

The run id is derived from the entries selected and the contract version, and every write
carries it as a Delta transaction id: a replay that crashed half-way and is run again
commits nothing twice. A second replay finds nothing that changed and writes nothing.

Example:
    >>> for group in quarantine_groups(spark, lake, reason="power_w.range"):  # doctest: +SKIP
    ...     print(group.line())
    >>> print("\\n".join(replay(spark, lake, reason="power_w.range").lines()))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from batch.delta_io import read_at
from batch.erasure import drop_erased, erased_meanwhile_line
from batch.reprocess import OPEN
from batch.rollups import RollupResult, recompute
from gridlake.ingest import BatchResult, WriteContext, record_batch, upsert_from_bronze
from gridlake.lake import Lake, table_version
from gridlake.retry import guarded_write
from shared_schemas import CURRENT, Contract
from shared_schemas.rules import rules_for
from shared_schemas.spark import parse_and_validate
from shared_schemas.tables import (
    RECORD_KEY,
    bronze_telemetry,
    quarantine_telemetry,
    silver_readings,
)

REPLAYED = "replayed"
PAYLOAD_PREVIEW = 120


@dataclass(frozen=True)
class Example:
    """One quarantined record, as a person may safely see it in a terminal."""

    record_id: str
    source: str
    payload: str

    def line(self) -> str:
        return f"    {printable(self.record_id, 200)}  ({self.source})  {self.payload}"


@dataclass
class ReasonGroup:
    """The quarantined records that broke one rule."""

    code: str
    count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    examples: list[Example] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{printable(self.code, 80)}: {self.count} record(s), "
                f"first seen {self.first_seen:%Y-%m-%d %H:%M:%S}, "
                f"last seen {self.last_seen:%Y-%m-%d %H:%M:%S} (UTC)",
                *[e.line() for e in self.examples]]


@dataclass
class ReplayResult:
    """What one replay did: selected, passed now, still failing (reasons changed or not)."""

    run_id: str
    contract_version: int
    selected: int = 0
    passed: int = 0
    still_failing: int = 0
    reasons_updated: int = 0
    erased_meanwhile: int = 0
    batch: BatchResult | None = None
    rollup: RollupResult | None = None
    versions: dict[str, int | None] = field(default_factory=dict)

    def lines(self) -> list[str]:
        if not self.selected:
            return ["replay: no open quarantine entry matches; nothing to do"]
        out = [f"replay {self.run_id} (contract v{self.contract_version}): "
               f"{self.selected} quarantined record(s) re-validated, {self.passed} now pass, "
               f"{self.still_failing} still fail ({self.reasons_updated} with new reasons)"]
        if self.batch is not None:
            out.append(f"silver: {self.batch.upserted} row(s) inserted or updated, "
                       f"{self.batch.duplicates_or_stale} duplicate or stale")
        if self.erased_meanwhile:
            out.append(erased_meanwhile_line(self.erased_meanwhile))
        if self.rollup is not None:
            out.append(self.rollup.line())
        written = [f"{t} v{v}" for t, v in self.versions.items() if v is not None]
        out.append("versions written: " + (", ".join(written) if written else "none"))
        return out


# -- pure -------------------------------------------------------------------------------------

def printable(text: str | None, limit: int = PAYLOAD_PREVIEW) -> str:
    """Text safe for a terminal: control and non-ASCII characters escaped, cut at `limit`."""
    if text is None:
        return "-"
    escaped = json.dumps(text, ensure_ascii=True)[1:-1]
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


def payload_preview(payload: bytes | bytearray | None, limit: int = PAYLOAD_PREVIEW) -> str:
    """A raw payload as printable text: bytes that are not UTF-8 shown as \\xNN escapes."""
    if payload is None:
        return "(no payload)"
    raw = bytes(payload)
    text = raw[: limit * 4].decode("utf-8", errors="backslashreplace")
    cut = printable(text, limit)
    return cut + "..." if len(raw) > limit * 4 and not cut.endswith("...") else cut


def source_of(row) -> str:
    """Where a record came from: `file:LINE`, `kafka TOPIC/PARTITION@OFFSET` or the source kind."""
    if row["kafka_topic"] is not None:
        return (f"kafka {printable(row['kafka_topic'], 100)}/{row['kafka_partition']}"
                f"@{row['kafka_offset']}")
    if row["source_file"] is not None:
        line = f":{row['source_line']}" if row["source_line"] is not None else ""
        return f"{printable(row['source_file'], 160)}{line}"
    return printable(row["source_kind"], 40)


def selected(status: str | None = OPEN, reason: str | None = None,
             ids: Iterable[str] | None = None, since: dt.date | None = None
             ) -> Callable[[DataFrame], DataFrame]:
    """Quarantine entries by status, reason code, record ids and first quarantine date.

    Every value is compared as data (bound literals), so quotes or `OR 1=1` match nothing.
    """
    ids = list(ids) if ids is not None else None

    def transform(entries: DataFrame) -> DataFrame:
        condition: Column = F.lit(True)
        if status is not None:
            condition = condition & (F.col("status") == F.lit(status))
        if reason is not None:
            condition = condition & F.array_contains("reason_codes", F.lit(reason))
        if ids is not None:
            condition = condition & F.col("record_id").isin([F.lit(i) for i in ids])
        if since is not None:
            start = dt.datetime.combine(since, dt.time(), dt.UTC)
            condition = condition & (F.col("quarantined_at") >= F.lit(start).cast("timestamp"))
        return entries.where(condition)

    return transform


def reason_counts(examples: int) -> Callable[[DataFrame], DataFrame]:
    """Entries → one row per reason code: count, first/last seen and up to `examples` samples."""

    def transform(entries: DataFrame) -> DataFrame:
        exploded = entries.select(F.explode(F.array_distinct("reason_codes")).alias("code"),
                                  "*")
        order = Window.partitionBy("code").orderBy("quarantined_at", "ingest_time",
                                                   "record_id", "run_id", "batch_id")
        sample = F.struct("record_id", "source_kind", "source_file", "source_line",
                          "kafka_topic", "kafka_partition", "kafka_offset",
                          F.substring("payload", 1, PAYLOAD_PREVIEW * 4).alias("payload"))
        return (exploded
                .withColumn("_n", F.row_number().over(order))
                .groupBy("code")
                .agg(F.count(F.lit(1)).alias("count"),
                     F.min("quarantined_at").alias("first_seen"),
                     F.max("quarantined_at").alias("last_seen"),
                     F.sort_array(F.collect_list(F.when(F.col("_n") <= examples, F.struct(
                         F.col("_n"), sample.alias("s"))))).alias("examples"))
                .orderBy(F.col("count").desc(), "code"))

    return transform


def outcomes(validated: DataFrame) -> DataFrame:
    """Re-validated bronze rows → the MERGE source updating their open quarantine entries."""
    return validated.select(
        *[F.col(c).alias(f"_k_{c}") for c in RECORD_KEY],
        (F.size("reasons") == 0).alias("_valid"),
        "reasons",
        F.transform("reasons", lambda r: r["code"]).alias("reason_codes"))


# -- edges ------------------------------------------------------------------------------------

def quarantine_groups(spark, lake: Lake, reason: str | None = None, since: dt.date | None = None,
                      status: str | None = OPEN, examples: int = 3) -> list[ReasonGroup]:
    """The quarantine grouped by reason code, most frequent first.

    Parameters:
        reason: only records that broke this rule (a code such as `power_w.range`).
        since: only entries quarantined on or after this UTC date.
        status: `quarantined` (open, the default), `replayed`, ... or None for every entry.
        examples: how many example records to show per reason.
    """
    rows = (spark.read.format("delta").load(lake.path(quarantine_telemetry()))
            .transform(selected(status, reason, None, since))
            .transform(reason_counts(examples))
            .collect())
    if reason is not None:  # the other codes of those records are not what was asked for
        rows = [r for r in rows if r["code"] == reason]
    return [ReasonGroup(r["code"], r["count"], r["first_seen"], r["last_seen"],
                        [Example(e["s"]["record_id"], source_of(e["s"]),
                                 payload_preview(e["s"]["payload"])) for e in r["examples"]])
            for r in rows]


def known_codes(contract: Contract = CURRENT) -> list[str]:
    return sorted({r.code for r in rules_for(contract)})


def _selection_id(entries: DataFrame) -> tuple[int, str | None, list[dt.date]]:
    """How many entries are selected, a digest of their bronze keys (order-independent), and
    their ingest dates (the bronze partitions that hold their records)."""
    key = F.concat_ws("\t", *[F.col(c).cast("string") for c in RECORD_KEY])
    row = entries.agg(F.count(F.lit(1)).alias("n"),
                      F.sha2(F.concat_ws("\n", F.array_sort(F.collect_set(key))), 256)
                      .alias("digest"),
                      F.collect_set("ingest_date").alias("ingest_dates")).first()
    return row["n"], (row["digest"] if row["n"] else None), sorted(row["ingest_dates"])


def _update_quarantine(spark, lake: Lake, source: DataFrame, run_id: str, at: dt.datetime,
                       contract: Contract) -> None:
    from delta.tables import DeltaTable

    spec = quarantine_telemetry()
    on = F.col("t.status") == F.lit(OPEN)
    for c in RECORD_KEY:
        on = on & (F.col(f"t.{c}") == F.col(f"s._k_{c}"))
    new_reasons = ~F.col("s._valid") & ~F.array_sort("t.reason_codes").eqNullSafe(
        F.array_sort("s.reason_codes"))

    def merge() -> None:
        (DeltaTable.forPath(spark, lake.path(spec)).alias("t")
         .merge(source.alias("s"), on)
         .whenMatchedUpdate(condition=F.col("s._valid"), set={
             "status": F.lit(REPLAYED),
             "replayed_at": F.lit(at).cast("timestamp"),
             "replay_run_id": F.lit(run_id)})
         .whenMatchedUpdate(condition=new_reasons, set={
             "reasons": F.col("s.reasons"),
             "reason_codes": F.col("s.reason_codes"),
             "contract_version": F.lit(contract.version)})
         .execute())

    guarded_write(merge, f"quarantine update of {run_id}")


def replay(spark, lake: Lake, reason: str | None = None, ids: Iterable[str] | None = None,
           contract: Contract = CURRENT) -> ReplayResult:
    """Re-validate open quarantine entries with `contract`; upsert and mark those that pass.

    Parameters:
        reason: only entries that broke this rule (a code such as `power_w.range`).
        ids: only these record ids (unknown ids simply match nothing).
        contract: the rules to apply (default: the current contract).
    Replaying twice changes nothing the second time.
    """
    at = dt.datetime.now(dt.UTC)
    entries = (spark.read.format("delta").load(lake.path(quarantine_telemetry()))
               .transform(selected(OPEN, reason, ids)))
    count, digest, ingest_dates = _selection_id(entries)
    run_id = f"replay-{digest[:16] if digest else 'none'}-v{contract.version}"
    result = ReplayResult(run_id, contract.version, selected=count)
    if not count:
        return result

    spec = bronze_telemetry()
    keys = entries.select(*RECORD_KEY).distinct()
    bronze_version = table_version(spark, lake.path(spec))  # one version for every use
    validated = (read_at(spark, lake.path(spec), bronze_version)
                 .where(F.col("ingest_date").isin(*ingest_dates))  # only those partitions
                 .join(keys, list(RECORD_KEY), "left_semi")
                 .transform(parse_and_validate(contract))
                 .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        current = entries.select(*[F.col(c).alias(f"_k_{c}") for c in RECORD_KEY],
                                 F.array_sort("reason_codes").alias("_old"))
        source = outcomes(validated)  # a projection of the cached `validated`
        counts = (source.join(current, [f"_k_{c}" for c in RECORD_KEY], "left")
                  .agg(F.count(F.when(F.col("_valid"), 1)).alias("passed"),
                       F.count(F.when(~F.col("_valid"), 1)).alias("failing"),
                       F.count(F.when(~F.col("_valid") & ~F.col("_old").eqNullSafe(
                           F.array_sort("reason_codes")), 1)).alias("changed"))
                  .first())
        result.passed, result.still_failing = counts["passed"], counts["failing"]
        result.reasons_updated = counts["changed"]
        ctx = WriteContext.now(run_id=run_id, batch_id=0, kind="replay",
                               source=f"quarantine replay of {count} record(s)")
        if result.passed:
            passing = validated.where(F.size("reasons") == 0).select(*spec.column_names)
            result.batch = upsert_from_bronze(spark, lake, passing, ctx, contract)
            result.versions["silver/readings"] = table_version(
                spark, lake.path(silver_readings(contract)))
        if result.passed or result.reasons_updated:
            _update_quarantine(spark, lake, source, run_id, at, contract)
            result.versions["quarantine/telemetry"] = table_version(
                spark, lake.path(quarantine_telemetry()))
        if result.batch is not None:
            result.erased_meanwhile = drop_erased(
                spark, lake, validated.select(*RECORD_KEY, "ingest_date", "payload"), run_id,
                result.batch.event_dates, contract)
    finally:
        validated.unpersist()

    if result.batch is not None:
        result.rollup = recompute(spark, lake, result.batch.event_dates, run_id=run_id,
                                  mode="replay", contract=contract)
        result.versions["gold/daily_device_rollups"] = result.rollup.device_rollups_version
        result.versions["gold/daily_site_rollups"] = result.rollup.site_rollups_version
        record_batch(spark, lake, result.batch, ctx, contract)
    return result
