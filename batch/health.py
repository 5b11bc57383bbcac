"""Reconciliation of the lake the stream writes: is every bronze record accounted for?

Reconciliation proves DESIGN.md's "nothing lost" rule: every bronze record is accounted for,
either valid (its key is in silver: it is the silver row's record, or a duplicate/stale version
of it) or quarantined. Validity is decided again by the contract's own `parse_and_validate` on
the bronze row (whose ingest time it keeps, so the decision is the same as when it was written).

Example:
    >>> result = reconcile(spark, lake)                                      # doctest: +SKIP
    >>> result.counts
    {'bronze': 1184, 'in_silver': 1152, 'duplicate_or_stale': 20, 'quarantined': 12, 'unaccounted': 0}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.delta_io import read_at
from gridlake.lake import Lake, table_version
from shared_schemas import CURRENT, Contract
from shared_schemas.spark import parse_and_validate
from shared_schemas.tables import (
    RECORD_KEY,
    batch_log,
    bronze_telemetry,
    quarantine_telemetry,
    silver_readings,
)

IN_SILVER, DUPLICATE_OR_STALE = "in_silver", "duplicate_or_stale"
QUARANTINED, UNACCOUNTED = "quarantined", "unaccounted"
OUTCOMES = (IN_SILVER, DUPLICATE_OR_STALE, QUARANTINED, UNACCOUNTED)


def bronze_outcomes(quarantine: DataFrame, silver: DataFrame, contract: Contract = CURRENT
                    ) -> Callable[[DataFrame], DataFrame]:
    """Bronze rows → (record_id, run_id, batch_id, outcome): where each record ended up.

    `in_silver`: valid, and the silver row of its key is this record; `duplicate_or_stale`:
    valid, and its key is in silver from another record; `quarantined`: invalid (or valid but
    not in silver) with a quarantine entry of its own; `unaccounted`: none of these.
    """
    key = list(contract.key)

    def transform(bronze: DataFrame) -> DataFrame:
        validated = (bronze.transform(parse_and_validate(contract))
                     .select(*RECORD_KEY, *key, (F.size("reasons") == 0).alias("_valid")))
        in_silver = silver.select(*key, F.col("record_id").alias("_silver_record"))
        entries = (quarantine.select(*RECORD_KEY).distinct()
                   .withColumn("_quarantined", F.lit(True)))
        joined = (validated.join(in_silver, on=key, how="left")
                  .join(entries, on=list(RECORD_KEY), how="left"))
        valid_key = F.col("_valid") & F.col("_silver_record").isNotNull()
        outcome = (F.when(valid_key & (F.col("_silver_record") == F.col("record_id")),
                          F.lit(IN_SILVER))
                   .when(valid_key, F.lit(DUPLICATE_OR_STALE))
                   .when(F.col("_quarantined"), F.lit(QUARANTINED))
                   .otherwise(F.lit(UNACCOUNTED)))
        return joined.select(*RECORD_KEY, outcome.alias("outcome"))

    return transform


@dataclass
class ReconcileResult:
    """Counts of bronze records by outcome, the versions read, and some unaccounted records."""

    counts: dict[str, int]
    versions: dict[str, int | None]
    unaccounted_sample: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.counts.get(UNACCOUNTED, 0) == 0


def reconcile(spark, lake: Lake, contract: Contract = CURRENT, sample: int = 10
              ) -> ReconcileResult:
    """Account for every bronze record in silver or quarantine.

    Bronze is read at the newest version a *completed* batch recorded in the batch log, so a
    micro-batch still between its bronze append and its silver MERGE is not counted as lost;
    silver and quarantine are read afterwards, at their latest versions.
    """
    bronze_path = lake.path(bronze_telemetry())
    logged = (spark.read.format("delta").load(lake.path(batch_log()))
              .agg(F.max("bronze_version")).first()[0])
    silver_path = lake.path(silver_readings(contract))
    quarantine_path = lake.path(quarantine_telemetry())
    versions = {"bronze": logged, "silver": table_version(spark, silver_path),
                "quarantine": table_version(spark, quarantine_path)}
    if logged is None:
        return ReconcileResult({"bronze": 0, **{o: 0 for o in OUTCOMES}}, versions)
    outcomes = (read_at(spark, bronze_path, logged)
                .transform(bronze_outcomes(read_at(spark, quarantine_path, versions["quarantine"]),
                                           read_at(spark, silver_path, versions["silver"]),
                                           contract))
                .cache())
    try:
        by_outcome = {r["outcome"]: r["count"]
                      for r in outcomes.groupBy("outcome").count().collect()}
        counts = {"bronze": sum(by_outcome.values()),
                  **{o: int(by_outcome.get(o, 0)) for o in OUTCOMES}}
        missing = [r["record_id"] for r in (outcomes.where(F.col("outcome") == F.lit(UNACCOUNTED))
                                            .select("record_id").orderBy("record_id")
                                            .limit(sample).collect())]
    finally:
        outcomes.unpersist()
    return ReconcileResult(counts, versions, missing)
