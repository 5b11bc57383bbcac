"""Erasure (GDPR): remove one device from every table of the lake, provably.

Which tables can hold a device is read from their definitions (`shared_schemas.tables`), not
from a list kept here: a table with a `device_id` column loses that device's rows; a table
with raw payloads (bronze, quarantine) loses every record whose parsed `data.device_id` or
Kafka key is the device, or whose payload (or a header) names it as a whole token when it
has no well-formed device id of its own (records too broken to parse). In every other row,
values naming the device as a token in the columns built from file names or quoting other
rows (`MENTION_COLUMNS`: a late report's file name in `record_id`, `source_file`, the backfill
bookkeeping's `path`, a batch's `source`, a quality failure's examples) are redacted to
`[erased]` in place, so lineage still joins and a late report is still known as loaded.

Only a device the lake knows is erased: some record must have the id as its own (a
`device_id`, a raw payload's device id or a Kafka key). A value that only appears inside other
values (a site id, a status, part of a date) names no device, and erases and redacts nothing.

How nothing is left behind:
- Every write is a MERGE against a small source DataFrame (the device id or the matched
  keys are rows of it), so no commit's recorded predicate holds the id as a literal.
- Delta keeps min/max statistics in its log, where no delete reaches; tables are created
  with statistics on non-string columns only (`TableSpec.table_properties`), and an older
  table is switched over before the erasure writes to it.
- Rollups are recomputed through the change feed (`rollup_changed`) before any vacuum, so
  the site rollups the device was part of change too and the feed's cursor moves past the
  erasure (a vacuum with zero retention deletes the change data files).
- Deletion vectors are purged (REORG ... APPLY (PURGE)) and the tables vacuumed: with
  `now=True` at zero retention (time travel to earlier versions is lost); by default with
  each table's retention, so the old files go when it allows (`pending_vacuum_after`).
- With `now=True` on a local lake, every file under the lake (except the audit table) is
  scanned for the id's bytes and the result goes into the certificate.

The certificate (tables, versions written, rows and files removed, times) is appended to
`_gridlake/erasures`, which holds no copy of erased data beyond the device id itself.

Example:
    >>> certificate = forget(spark, lake, "D00042", now=True)                  # doctest: +SKIP
    >>> print(certificate.to_json())                                           # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import reduce
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.rollups import rollup_changed
from gridlake.errors import BadArgumentError
from gridlake.lake import Lake, hadoop_fs, table_version
from gridlake.retry import guarded_write
from shared_schemas import CURRENT, Contract
from shared_schemas.contract import ID_PATTERN
from shared_schemas.tables import (
    RECORD_KEY,
    TableSpec,
    bronze_telemetry,
    core_tables,
    decision_log,
    erasure_log,
    quarantine_telemetry,
    silver_readings,
    stats_properties,
)

REDACTED = "[erased]"
NOW, RETENTION = "now", "retention"
# The string columns where a row that is not the device's can still name it in passing: paths
# and record ids built from a late report's file name, and quality failures quoting rows.
# Every other string column (another device's id or source, statuses, types, times, run ids)
# is never rewritten: a token there is a coincidence, not a mention.
MENTION_COLUMNS = ("record_id", "winner_record_id", "source_file", "path", "source",
                   "observed_value", "unexpected_examples")
DEFAULT_RETENTION = dt.timedelta(days=7)  # Delta's delta.deletedFileRetentionDuration default
_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_UNITS = {"week": 7 * 86400, "day": 86400, "hour": 3600, "minute": 60, "second": 1,
          "millisecond": 0.001}


@dataclass
class TableErasure:
    """What the erasure did to one table."""

    rows_removed: int = 0
    rows_redacted: int = 0
    versions_written: list[int] = field(default_factory=list)
    files_removed: int = 0


@dataclass
class Certificate:
    """A deletion certificate: what was erased where, when, and what is still pending."""

    erasure_id: str
    device_id: str
    requested_at: dt.datetime
    mode: str
    finished_at: dt.datetime | None = None
    tables: dict[str, TableErasure] = field(default_factory=dict)
    pending_vacuum_after: dt.datetime | None = None
    rollup_days_recomputed: int = 0
    verification: dict | None = None
    # For an id no record has as its own: raw records that do not parse naming it as a word
    # (left alone: a device known only from such records is not told from a word in them).
    unparsed_mentions: int = 0

    @property
    def rows_removed(self) -> int:
        return sum(t.rows_removed for t in self.tables.values())

    @property
    def rows_redacted(self) -> int:
        return sum(t.rows_redacted for t in self.tables.values())

    @property
    def files_removed(self) -> int:
        return sum(t.files_removed for t in self.tables.values())

    @property
    def erased_anything(self) -> bool:
        return bool(self.rows_removed or self.rows_redacted)

    def to_dict(self) -> dict:
        def when(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat(timespec="seconds")

        return {
            "erasure_id": self.erasure_id, "device_id": self.device_id, "mode": self.mode,
            "requested_at": when(self.requested_at), "finished_at": when(self.finished_at),
            "rows_removed": self.rows_removed, "rows_redacted": self.rows_redacted,
            "files_removed": self.files_removed,
            "tables": {path: asdict(t) for path, t in self.tables.items()},
            "rollup_days_recomputed": self.rollup_days_recomputed,
            "vacuum": ("done: zero retention" if self.mode == NOW
                       else "pending: old files are removed when the retention period allows"),
            "pending_vacuum_after": when(self.pending_vacuum_after),
            "verification": self.verification,
            "unparsed_mentions": self.unparsed_mentions,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=True)

    def lines(self) -> list[str]:
        shown = json.dumps(self.device_id, ensure_ascii=True)
        if not (self.erased_anything or self.files_removed or self.verification):
            return [f"forget {self.erasure_id}: no record has {shown} as its device id (nor "
                    "a payload's device id or a Kafka key); nothing erased"
                    + (f"; {self.unparsed_mentions} bronze record(s) that do not parse name it "
                       "as a word and were left as they are" if self.unparsed_mentions else "")]
        out = [f"forget {self.erasure_id}: device {shown}: {self.rows_removed} row(s) removed, "
               f"{self.rows_redacted} redacted, {self.files_removed} file(s) vacuumed"]
        for path, t in self.tables.items():
            if t.rows_removed or t.rows_redacted or t.versions_written or t.files_removed:
                versions = ", ".join(f"v{v}" for v in t.versions_written) or "no new version"
                out.append(f"  {path}: {t.rows_removed} removed, {t.rows_redacted} redacted, "
                           f"{t.files_removed} file(s) vacuumed ({versions})")
        if self.mode == RETENTION:
            out.append("vacuum pending: files written before the erasure still hold the device "
                       "until the retention period ends; run `gridlake forget --now` or VACUUM "
                       f"after {self.pending_vacuum_after:%Y-%m-%d %H:%M:%S} UTC")
        if self.verification is not None:
            residue = self.verification.get("residual_files") or []
            out.append(f"byte scan: {self.verification['files_scanned']} file(s) scanned, "
                       + (f"{len(residue)} still hold the device id: {', '.join(residue)}"
                          if residue else "no file holds the device id's bytes as stored"))
        return out


# -- pure -------------------------------------------------------------------------------------

def check_device_id(text: str) -> str:
    """The device id as given, refusing only what cannot name anything (empty, control chars)."""
    if not text or not text.strip():
        raise BadArgumentError("the device id is empty; give the id of the device to erase")
    if any(ord(c) < 32 for c in text):
        raise BadArgumentError(
            f"the device id {json.dumps(text)} holds control characters; give the id as stored")
    return text


def java_quote(text: str) -> str:
    r"""`text` as a literal in a Java regular expression (what `Pattern.quote` returns)."""
    return "\\Q" + text.replace("\\E", "\\E\\\\E\\Q") + "\\E"


def token_pattern(device: str) -> str:
    """A regular expression matching `device` as a whole token, not inside a longer word.

    Letters and digits bound a token; `_`, `-`, `.` do not, so a late report named
    `D00042_20261110T0000Z.jsonl` names device D00042 but `D000421` does not.
    """
    return f"(?<![A-Za-z0-9]){java_quote(device)}(?![A-Za-z0-9])"


def raw_device_id() -> Column:
    """The `data.device_id` string of a raw payload (structured mode), or its `device_id`
    (binary mode); null when there is none or it is not a JSON string."""
    parsed = F.try_parse_json(F.col("payload").cast("string"))

    def string_at(path: str) -> Column:
        value = F.try_variant_get(parsed, path, "variant")
        return F.when(F.schema_of_variant(value) == F.lit("STRING"),
                      F.try_variant_get(value, "$", "string"))

    return F.coalesce(string_at("$.data.device_id"), string_at("$.device_id"))


def _any(checks: list[Column]) -> Column | None:
    """True where any of `checks` is (a null check counts as false); None for no checks."""
    if not checks:
        return None
    return reduce(lambda a, b: a | b, [F.coalesce(c, F.lit(False)) for c in checks])


def is_device(columns: Iterable[str], device: Column) -> Column | None:
    """Whether a row of a table with `columns` has `device` as its own id (its `device_id`,
    its raw payload's device id, or its Kafka key); None if the table has no such column."""
    columns = set(columns)
    checks: list[Column] = []
    if "device_id" in columns:
        checks.append(F.col("device_id") == device)
    if "payload" in columns:
        checks.append(raw_device_id() == device)
    if "kafka_key" in columns:
        checks.append(F.col("kafka_key").cast("string") == device)
    return _any(checks)


def holds_device(columns: Iterable[str], device: Column, pattern: Column) -> Column | None:
    """Whether a row of a table with `columns` belongs to the device; None if it cannot hold one:
    it has the device's id (`is_device`), or it is a raw record with no well-formed device id
    whose payload or a header names the device as a token.

    `device` and `pattern` (from `token_pattern`) are Columns so the values stay data.
    """
    columns = set(columns)
    checks = [c for c in (is_device(columns, device),) if c is not None]
    if "payload" in columns:
        well_formed = F.coalesce(raw_device_id().rlike(ID_PATTERN), F.lit(False))
        checks.append(~well_formed & F.regexp(F.col("payload").cast("string"), pattern))
    if "headers" in columns:
        checks.append(~F.coalesce(raw_device_id().rlike(ID_PATTERN), F.lit(False))
                      & F.exists("headers", lambda h: F.regexp(h["value"].cast("string"),
                                                               pattern)))
    return _any(checks)


def whole_file_keys(bronze: DataFrame, matched: DataFrame) -> list[Row]:
    """The `RECORD_KEY`s of the whole-file records of the damaged files that `matched` bronze
    records were read from, in the same batch.

    A file that could not be read to the end is kept as one more record (its content as
    received, no line number). That content holds the device's lines, compressed or cut where
    no token search reaches, so it goes with them; in quarantine too, where the whole-file
    record may be the file's only record (its readable lines went to silver).
    """
    coordinates = ["source_file", "run_id", "batch_id"]
    files = matched.where(F.col("source_file").isNotNull()).select(*coordinates).distinct()
    return (bronze.where(F.col("source_line").isNull()).join(files, coordinates, "left_semi")
            .select(*RECORD_KEY).collect())


def redactable_columns(schema: T.StructType) -> list[str]:
    """The table's `MENTION_COLUMNS`: where other rows may name the device in passing."""
    return [f.name for f in schema.fields
            if isinstance(f.dataType, T.StringType) and f.name in MENTION_COLUMNS]


def names_device(columns: Iterable[str], pattern: Column, prefix: str = "") -> Column | None:
    """Whether any of `columns` names the device as a token."""
    checks = [F.coalesce(F.regexp(F.col(f"{prefix}{c}"), pattern), F.lit(False))
              for c in columns]
    return reduce(lambda a, b: a | b, checks) if checks else None


def retention_of(value: str | None) -> dt.timedelta:
    """A Delta interval property (`interval 7 days`, `168 hours`) as a timedelta."""
    if not value:
        return DEFAULT_RETENTION
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*(week|day|hour|minute|second|millisecond)s?",
                                   value.lower()):
        total += int(number) * _UNITS[unit]
    return dt.timedelta(seconds=total) if total else DEFAULT_RETENTION


def quote_identifier(path: str) -> str:
    """`delta.`<path>`` with backticks doubled: the path as an identifier, never a value."""
    return "delta.`" + path.replace("`", "``") + "`"


# -- edges: per table -------------------------------------------------------------------------

def _device_frame(spark, device: str) -> DataFrame:
    return spark.createDataFrame([(device, token_pattern(device))],
                                 "_device string, _pattern string")


def _detail(spark, path: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """A table's properties and partition columns."""
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).detail().select("properties", "partitionColumns").first()
    return dict(row[0] or {}), tuple(row[1] or ())


def _limit_stats(spark, spec: TableSpec, path: str) -> dict[str, str]:
    """Switch an older table to statistics on non-string columns before writing to it.

    Returns the table's properties.
    """
    properties, partitions = _detail(spark, path)
    wanted = stats_properties(spark.read.format("delta").load(path).schema, partitions)
    if all(properties.get(k) == v for k, v in wanted.items()):
        return properties
    # Property names and values come from the table's own schema, not from the user.
    settings = ", ".join(f"'{k}' = '{v}'" for k, v in wanted.items())
    guarded_write(lambda: spark.sql(
        f"ALTER TABLE {quote_identifier(path)} SET TBLPROPERTIES ({settings})"),
        f"statistics settings of {spec.path}")
    return properties


def _merge_metrics(builder) -> dict:
    metrics = builder.execute()
    row = metrics.first() if metrics is not None else None
    return row.asDict() if row is not None else {}


def _keys_match(keys: Iterable[str]) -> Column:
    return reduce(lambda a, b: a & b, [F.col(f"t.{c}").eqNullSafe(F.col(f"s.{c}")) for c in keys])


def _delete_matching(spark, path: str, source: DataFrame, on: Column, what: str) -> int:
    """Delete the rows of the table at `path` that match a row of `source`; how many."""
    from delta.tables import DeltaTable

    def merge() -> int:
        target = DeltaTable.forPath(spark, path).alias("t")
        row = _merge_metrics(target.merge(source.alias("s"), on).whenMatchedDelete())
        return int(row.get("num_deleted_rows", 0) or 0)

    return guarded_write(merge, what)


def _delete_rows(spark, spec: TableSpec, path: str, device_frame: DataFrame,
                 matched: DataFrame) -> int:
    """Delete the device's rows with a MERGE whose condition joins a source: no literal."""
    columns = set(spec.column_names)
    if "device_id" in columns and "payload" not in columns:
        source, on = device_frame, F.col("t.device_id") == F.col("s._device")
    else:
        keys = [c for c in RECORD_KEY if c in columns] or list(spec.key)
        source, on = matched.select(*keys).distinct(), _keys_match(keys)
    return _delete_matching(spark, path, source, on, f"erasure delete in {spec.path}")


def _redact_rows(spark, spec: TableSpec, path: str, device_frame: DataFrame,
                 columns: list[str]) -> int:
    """Replace the device's id by `[erased]` where other rows name it in passing."""
    from delta.tables import DeltaTable

    on = names_device(columns, F.col("s._pattern"), prefix="t.")
    redact = {c: F.regexp_replace(F.col(f"t.{c}"), F.col("s._pattern"), F.lit(REDACTED))
              for c in columns}

    def merge() -> int:
        target = DeltaTable.forPath(spark, path).alias("t")
        row = _merge_metrics(target.merge(device_frame.alias("s"), on)
                             .whenMatchedUpdate(set=redact))
        return int(row.get("num_updated_rows", 0) or 0)

    return guarded_write(merge, f"erasure redaction in {spec.path}")


def _files(spark, path: str) -> set[str]:
    """Every file of a table outside its log (data, deletion vectors, change data)."""
    fs, root = hadoop_fs(spark, path)
    if not fs.exists(root):
        return set()
    found = set()
    iterator = fs.listFiles(root, True)
    while iterator.hasNext():
        name = iterator.next().getPath().toString()
        if "/_delta_log/" not in name:
            found.add(name)
    return found


def purge_and_vacuum(spark, spec: TableSpec, path: str, now: bool, purge: bool) -> int:
    """REORG away deletion vectors, then VACUUM; returns how many files were removed.

    What `forget` does to each table it touched (each table with `now`): `now` vacuums at zero
    retention, `purge` first rewrites the files that hold deletion vectors.
    """
    from delta.tables import DeltaTable

    before = _files(spark, path)
    if purge:
        guarded_write(lambda: spark.sql(
            f"REORG TABLE {quote_identifier(path)} APPLY (PURGE)").collect(),
            f"deletion-vector purge of {spec.path}")

    def vacuum() -> None:
        table = DeltaTable.forPath(spark, path)
        if not now:
            table.vacuum()
            return
        previous = spark.conf.get(_RETENTION_CHECK, "true")
        spark.conf.set(_RETENTION_CHECK, "false")
        try:
            table.vacuum(0.0)
        finally:
            spark.conf.set(_RETENTION_CHECK, previous)

    guarded_write(vacuum, f"vacuum of {spec.path}")
    return len(before - _files(spark, path))


def scan_for(root: str, needles: Iterable[bytes], skip: Iterable[str] = ()) -> tuple[int, list[str]]:
    """Read every file under a local folder; (files scanned, files holding any of `needles`)."""
    needles = [n for n in needles if n]
    skip = [Path(s).resolve() for s in skip]
    scanned, hits = 0, []
    for folder, _, names in os.walk(root):
        base = Path(folder).resolve()
        if any(base == s or s in base.parents for s in skip):
            continue
        for name in names:
            data = (base / name).read_bytes()
            scanned += 1
            if any(n in data for n in needles):
                hits.append(str((base / name).relative_to(Path(root).resolve())))
    return scanned, sorted(hits)


def _write_certificate(spark, lake: Lake, certificate: Certificate) -> None:
    spec = erasure_log()
    row = {
        "erasure_id": certificate.erasure_id, "device_id": certificate.device_id,
        "requested_at": certificate.requested_at, "finished_at": certificate.finished_at,
        "mode": certificate.mode, "rows_removed": certificate.rows_removed,
        "files_removed": certificate.files_removed,
        "pending_vacuum_after": certificate.pending_vacuum_after,
        "certificate": certificate.to_json(),
    }
    frame = spark.createDataFrame([row], spec.schema)
    guarded_write(lambda: (frame.write.format("delta").mode("append")
                           .option("txnAppId", certificate.erasure_id).option("txnVersion", 0)
                           .save(lake.path(spec))),
                  f"erasure certificate {certificate.erasure_id}")


# -- writers that decide from a bronze snapshot -----------------------------------------------

def erased_meanwhile_line(count: int) -> str:
    return (f"erasure: {count} record(s) that a concurrent forget erased after they were read "
            "were removed again")


def drop_erased(spark, lake: Lake, records: DataFrame, run_id: str,
                event_dates: list[dt.date], contract: Contract = CURRENT) -> int:
    """Delete what a writer wrote from bronze records that were erased while it ran.

    `reprocess` and quarantine `replay` decide from bronze as they read it; a `forget` that
    runs meanwhile can erase a device after that read, and the writer's later commits would
    put its records back. Call this after the writer's last commit to silver, quarantine and
    the decision log, with `records` the bronze rows it decided from (`RECORD_KEY`,
    `ingest_date`, `payload`; read at a fixed version) and `event_dates` the silver dates it
    wrote. `forget` erases bronze before any other table, so either bronze no longer holds
    such a record here and its rows are deleted now, or every commit of the writer came before
    `forget` read the other tables, and `forget` erases them.

    A record still held is found by its run, batch and payload, never by `record_id`: `forget`
    rewrites names of the device inside other records' ids (`[erased]`) but never a payload.
    Returns how many of `records` bronze no longer holds.
    """
    from delta.tables import DeltaTable

    days = [r[0] for r in records.select("ingest_date").distinct().collect()]
    if not days:
        return 0
    digest = F.sha2(F.col("payload"), 256)
    held = (spark.read.format("delta").load(lake.path(bronze_telemetry()))
            .where(F.col("ingest_date").isin(*days))
            .select("run_id", "batch_id", digest.alias("_digest")).distinct().alias("h"))
    read = records.select(*RECORD_KEY, "ingest_date", digest.alias("_digest")).alias("r")
    same = ((F.col("r.run_id") == F.col("h.run_id")) & (F.col("r.batch_id") == F.col("h.batch_id"))
            & F.col("r._digest").eqNullSafe(F.col("h._digest")))
    gone = (read.join(held, same, "left_anti").select(*RECORD_KEY, "ingest_date").distinct()
            .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        erased = gone.count()
        if not erased:
            return 0
        # Each delete names its partitions, so it does not conflict with the stream's commits
        # to other days.
        silver = silver_readings(contract)
        _delete_matching(spark, lake.path(silver), gone, _keys_match(RECORD_KEY)
                         & F.col("t.event_date").isin(*event_dates),
                         f"removal of erased records from {silver.path}")
        quarantine = quarantine_telemetry()
        _delete_matching(spark, lake.path(quarantine), gone, _keys_match(RECORD_KEY)
                         & F.col("t.ingest_date").isin(*days),
                         f"removal of erased records from {quarantine.path}")
        decisions = lake.path(decision_log(contract))
        if DeltaTable.isDeltaTable(spark, decisions):
            # The log's run_id is the writer's; record_id names the bronze record.
            mine = ((F.col("t.run_id") == F.lit(run_id))
                    & (F.col("t.record_id") == F.col("s.record_id"))
                    & F.col("t.event_date").isin(*event_dates))
            _delete_matching(spark, decisions, gone.select("record_id").distinct(), mine,
                             "removal of erased records from the decision log")
    finally:
        gone.unpersist()
    return erased


# -- the erasure ------------------------------------------------------------------------------

def _known_device(spark, tables: list[tuple[TableSpec, str]], device: Column) -> bool:
    """Whether any record of `tables` has `device` as its own id (`is_device`); the tables
    with a `device_id` column are asked first, raw payloads (parsed per row) last."""
    for _, path in sorted(tables, key=lambda table: "payload" in table[0].column_names):
        current = spark.read.format("delta").load(path)
        own = is_device(current.columns, device)
        if own is not None and current.where(own).limit(1).count():
            return True
    return False


def _pending_erasure(spark, lake: Lake, device: str) -> bool:
    """Whether the latest erasure of `device` left its old files for the retention period."""
    from delta.tables import DeltaTable

    path = lake.path(erasure_log())
    if not DeltaTable.isDeltaTable(spark, path):
        return False
    # The latest erasure that left files or vacuumed decides: once a `now` run has vacuumed,
    # nothing is pending (a run that found nothing decides nothing).
    left_or_vacuumed = (F.col("pending_vacuum_after").isNotNull()
                        | ((F.col("mode") == NOW) & (F.col("files_removed") > 0)))
    latest = (spark.read.format("delta").load(path)
              .where((F.col("device_id") == F.lit(device)) & left_or_vacuumed)
              .orderBy(F.col("requested_at").desc(), F.col("finished_at").desc()).first())
    return latest is not None and latest["pending_vacuum_after"] is not None


def forget(spark, lake: Lake, device: str, now: bool = False,
           contract: Contract = CURRENT) -> Certificate:
    """Erase `device` from every table of the lake and return (and store) its certificate.

    Parameters:
        device: the device id, taken as a value (quotes or `OR 1=1` simply match nothing).
        now: vacuum at zero retention at once (loses time travel to earlier versions);
            by default old files are left for the tables' retention period.
    An id that no record has as its own (`is_device`) erases nothing; the certificate then
    says so. With `now`, a device erased earlier with the default retention has its old files
    vacuumed and scanned for, even though no table holds it any more: that is how a pending
    erasure is finished.
    """
    from delta.tables import DeltaTable

    device = check_device_id(device)
    certificate = Certificate(f"erasure-{uuid.uuid4().hex[:12]}", device,
                              dt.datetime.now(dt.UTC).replace(microsecond=0),
                              NOW if now else RETENTION)
    audit = erasure_log()
    device_frame = _device_frame(spark, device).cache()
    literal, pattern = F.lit(device), F.lit(token_pattern(device))
    # Bronze first: `drop_erased` relies on it to fence writers that read bronze before.
    tables = sorted([(spec, lake.path(spec)) for spec in core_tables(contract)
                     if spec.path != audit.path and DeltaTable.isDeltaTable(spark, lake.path(spec))],
                    key=lambda table: table[0].path != bronze_telemetry().path)
    written: list[tuple[TableSpec, str]] = []
    retention = dt.timedelta(0)
    with_vectors: set[str] = set()  # tables whose deletes leave deletion vectors to purge
    known = _known_device(spark, tables, literal)
    pending = now and _pending_erasure(spark, lake, device)
    whole: list[Row] = []  # bronze's whole-file records that go with the device's lines
    if not known and tables and tables[0][0].path == bronze_telemetry().path:
        raw = spark.read.format("delta").load(tables[0][1])
        certificate.unparsed_mentions = raw.where(
            holds_device(raw.columns, literal, pattern)).count()

    for spec, path in tables if known else []:
        current = spark.read.format("delta").load(path)
        belongs = holds_device(current.columns, literal, pattern)
        belongs = F.lit(False) if belongs is None else belongs
        matched = current.where(belongs)
        redactable = redactable_columns(current.schema)
        names = names_device(redactable, pattern)
        names = F.lit(False) if names is None else names
        found = current.agg(F.count(F.when(belongs, 1)).alias("delete"),
                            F.count(F.when(~belongs & names, 1)).alias("redact")).first()
        to_delete, to_redact = found["delete"], found["redact"]
        if spec.path == bronze_telemetry().path:
            whole = whole_file_keys(current, matched)
        if whole and "payload" in current.columns:
            keys = spark.createDataFrame(whole, current.select(*RECORD_KEY).schema)
            extra = current.where(~belongs).join(keys, list(RECORD_KEY), "left_semi")
            matched = matched.unionByName(extra)
            to_delete += extra.count()
        record = certificate.tables.setdefault(spec.path, TableErasure())
        if not (to_delete or to_redact):
            continue
        properties = _limit_stats(spark, spec, path)
        if properties.get("delta.enableDeletionVectors", "false").lower() == "true":
            with_vectors.add(spec.path)
        retention = max(retention, retention_of(
            properties.get("delta.deletedFileRetentionDuration")))
        if to_delete:
            record.rows_removed = _delete_rows(spark, spec, path, device_frame, matched)
            record.versions_written.append(table_version(spark, path))
        if to_redact:
            record.rows_redacted = _redact_rows(spark, spec, path, device_frame, redactable)
            record.versions_written.append(table_version(spark, path))
        written.append((spec, path))

    if certificate.erased_anything:
        silver = silver_readings(contract)
        if any(spec.path == silver.path for spec, _ in written):
            # Before any vacuum: the change feed still has the deleted rows' days.
            rollup = rollup_changed(spark, lake, run_id=certificate.erasure_id,
                                    contract=contract)
            certificate.rollup_days_recomputed = len(rollup.days)
            for spec_path, version in (
                    ("gold/daily_device_rollups", rollup.device_rollups_version),
                    ("gold/daily_site_rollups", rollup.site_rollups_version)):
                if version is not None:
                    certificate.tables.setdefault(spec_path, TableErasure()
                                                  ).versions_written.append(version)
    if certificate.erased_anything or pending:
        # With --now every table is vacuumed: old files of untouched tables (a gold day
        # recomputed last week) may still hold the device.
        for spec, path in (tables if now else written):
            purge = spec.path in with_vectors
            certificate.tables.setdefault(spec.path, TableErasure()).files_removed = (
                purge_and_vacuum(spark, spec, path, now, purge))
        if not now:
            certificate.pending_vacuum_after = certificate.requested_at + retention
    device_frame.unpersist()
    certificate.tables = {p: t for p, t in certificate.tables.items()
                          if t.rows_removed or t.rows_redacted or t.versions_written
                          or t.files_removed}

    if now and (certificate.erased_anything or pending) and "://" not in lake.root:
        scanned, residue = scan_for(lake.root, [device.encode("utf-8")],
                                    skip=[lake.path(audit)])
        certificate.verification = {"files_scanned": scanned, "residual_files": residue}
    certificate.finished_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    _write_certificate(spark, lake, certificate)
    return certificate

