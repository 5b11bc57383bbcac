"""The streaming query: a source, a checkpoint, and a foreachBatch handler calling the write path.

The checkpoint folder holds Spark's offsets and commits plus `gridlake.json`, which names the
run id (the Delta transaction app id) and the source. A fresh checkpoint always gets a fresh
run id, so it never collides with an old one's batch ids; a damaged checkpoint, or a missing
one for a source the lake has already streamed, stops the start-up with a sentence naming the
recovery (docs/operations.md, "Lost checkpoint").

Example:
    >>> run_stream(spark, lake, parse_source("files:/landing"), StreamOptions(available_now=True))
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.utils import StreamingQueryException

from gridlake.errors import BadArgumentError, CheckpointError, DataLossError
from gridlake.faults import crash_point
from gridlake.gunzip import file_damage
from gridlake.ingest import WriteContext, record_batch, resume_batch, write_batch
from gridlake.lake import Lake, hadoop_fs, read_text, write_text
from gridlake.landing import RECORD_SUFFIXES, few, too_large_sentence
from shared_schemas import CURRENT, Contract
from shared_schemas.tables import batch_log, bronze_telemetry
from streaming.sources import FileSource, KafkaSource, Source

log = logging.getLogger("gridlake.stream")
IDENTITY_FILE = "gridlake.json"
UNREAD_CHECK_VARIABLE = "GRIDLAKE_UNREAD_CHECK_SECONDS"
RECOVERY_DOC = "docs/operations.md#lost-checkpoint"
# The run ids of each source's checkpoints, one file per source: what a lost checkpoint forgets.
STREAM_RUNS = "_gridlake/streams"


@dataclass(frozen=True)
class StreamOptions:
    available_now: bool = False
    trigger_seconds: float = 5.0
    checkpoint: str | None = None
    recover: bool = False
    # How often a files: stream looks for landing files it will never read (`UnreadFiles`).
    unread_check_seconds: float = 60.0


def _runs_file(lake: Lake, source: Source) -> str:
    return lake.path(f"{STREAM_RUNS}/{source.slug}.json")


def _recorded_runs(spark, lake: Lake, source: Source) -> list[str]:
    text = read_text(_runs_file(lake, source), spark)
    return json.loads(text)["runs"] if text is not None else []


def stream_runs(spark, lake: Lake, source: Source) -> list[str]:
    """The run ids of every checkpoint the lake has had for `source`: recorded in the lake as
    each one starts, and (for lakes older than that record) those the batch log names."""
    recorded = _recorded_runs(spark, lake, source)
    logged = (spark.read.format("delta").load(lake.path(batch_log()))
              .where((F.col("kind") == "stream") & (F.col("source") == source.name))
              .select("run_id").distinct().collect())
    return sorted({*recorded, *(r[0] for r in logged)})


def _remember_run(spark, lake: Lake, source: Source, run_id: str) -> None:
    """Record `run_id` as a run of `source` in the lake, where a lost checkpoint leaves it."""
    runs = _recorded_runs(spark, lake, source)
    if run_id not in runs:
        write_text(_runs_file(lake, source),
                   json.dumps({"source": source.name, "runs": [*runs, run_id]}, indent=2), spark)


def existing_run_id(spark, lake: Lake, source: Source, checkpoint: str,
                    recover: bool = False) -> str | None:
    """The run id stored with a checkpoint; None for a new checkpoint that may start.

    Refuses a checkpoint that lost its `metadata` or identity, one that belongs to another
    source, and a new checkpoint for a source the lake has had one for (unless `recover`).
    """
    identity_text = read_text(f"{checkpoint}/{IDENTITY_FILE}", spark)
    metadata = read_text(f"{checkpoint}/metadata", spark)
    if identity_text is not None:
        identity = json.loads(identity_text)
        if identity.get("source") != source.name:
            raise CheckpointError(
                f"checkpoint {checkpoint} belongs to source {identity.get('source')!r}, "
                f"not {source.name!r}; give each stream its own --checkpoint")
        if metadata is None and last_planned_batch(spark, checkpoint) >= 0:
            raise CheckpointError(
                f"checkpoint {checkpoint} has lost its metadata file, so resuming could "
                f"duplicate or skip records; refusing to start (see {RECOVERY_DOC})")
        _remember_run(spark, lake, source, identity["run_id"])
        return identity["run_id"]
    if metadata is not None:
        raise CheckpointError(
            f"checkpoint {checkpoint} was not made by gridlake (no {IDENTITY_FILE}); "
            f"refusing to start (see {RECOVERY_DOC})")
    if stream_runs(spark, lake, source) and not recover:
        raise CheckpointError(
            f"the lake has streamed from {source.name} before but checkpoint {checkpoint} is "
            f"missing; restarting from scratch would re-read what it read. Rerun with "
            f"--recover to skip what bronze already holds (see {RECOVERY_DOC})")
    return None


def new_run_id(spark, lake: Lake, source: Source, checkpoint: str) -> str:
    """A fresh run id for a new checkpoint: recorded in the lake, then in the checkpoint."""
    run_id = f"stream-{uuid.uuid4().hex[:12]}"
    # Before the checkpoint's identity: a start killed in between is refused as one that
    # streamed, rather than a run the lake does not know of.
    _remember_run(spark, lake, source, run_id)
    write_text(f"{checkpoint}/{IDENTITY_FILE}",
               json.dumps({"run_id": run_id, "source": source.name}, indent=2), spark)
    return run_id


def interrupted_batches(spark, lake: Lake, runs: list[str]) -> list[tuple[str, int]]:
    """(run id, batch id) of the batches of `runs` that bronze holds and the batch log does
    not: killed after their bronze append and before their batch-log entry."""
    if not runs:
        return []
    held = (spark.read.format("delta").load(lake.path(bronze_telemetry()))
            .where(F.col("run_id").isin(*runs)).select("run_id", "batch_id").distinct())
    logged = (spark.read.format("delta").load(lake.path(batch_log()))
              .where(F.col("run_id").isin(*runs)).select("run_id", "batch_id"))
    return sorted((r[0], r[1]) for r in held.join(logged, ["run_id", "batch_id"], "left_anti")
                  .collect())


def finish_interrupted_batches(spark, lake: Lake, source: Source, contract: Contract = CURRENT,
                               report: Callable[[str], None] = print) -> None:
    """Lost-checkpoint recovery, before the new run reads anything: finish the batches of the
    source's earlier runs that were killed after their bronze append. The new run skips the
    records bronze holds, and the run that could have replayed them lost its checkpoint."""
    for run_id, batch_id in interrupted_batches(spark, lake, stream_runs(spark, lake, source)):
        ctx = WriteContext.now(run_id=run_id, batch_id=batch_id, kind="stream",
                               source=source.name)
        result = resume_batch(spark, lake, ctx, contract)
        if result is None:  # its records were erased from bronze since they were listed
            continue
        record_batch(spark, lake, result, ctx, contract)
        report(result.line(f"recovered batch {batch_id} of {run_id}"))


def skip_already_in_bronze(spark, lake: Lake) -> Callable[[DataFrame], DataFrame]:
    """Drop records whose source coordinates bronze already holds (lost-checkpoint recovery)."""

    def transform(raw: DataFrame) -> DataFrame:
        seen = spark.read.format("delta").load(lake.path(bronze_telemetry())).select("record_id")
        return raw.join(seen.distinct(), "record_id", "left_anti")

    return transform


def last_planned_batch(spark, checkpoint: str) -> int:
    """The highest batch id whose offsets the checkpoint holds (-1 for none).

    Spark writes a batch's offsets before running it, so on restart only batches up to this
    id can be replays of an attempt that may have committed part of its writes.
    """
    fs, offsets = hadoop_fs(spark, f"{checkpoint}/offsets")
    if not fs.exists(offsets):
        return -1
    ids = [int(name) for status in fs.listStatus(offsets)
           if (name := status.getPath().getName()).isdigit()]
    return max(ids, default=-1)


# Raised by a micro-batch that starts after a stop was requested, before it writes anything:
# the query ends, and the batch (planned, not committed) runs again on the next start.
STOP_REQUESTED = "gridlake: stop requested before this micro-batch wrote anything"


class StopRequested(Exception):
    pass


def _quiet_streaming_logs(spark) -> None:
    """Keep Spark from logging the query's end by `StopRequested` as an error with a stack
    trace: it is a clean stop (the process exits right after)."""
    jvm = spark._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.execution.streaming", jvm.org.apache.logging.log4j.Level.OFF)


def print_warning(text: str) -> None:
    print(f"gridlake stream: {text}", file=sys.stderr, flush=True)


def unread_sentence(directory: str, names: list[str], shown: int = 5) -> str:
    """The warning for entries of a landing folder the stream will never read."""
    hint = (" (a CloudEvents batch array, .json, loads with gridlake backfill)"
            if any(n.endswith(".json") for n in names) else "")
    return (f"{len(names)} file(s) or folder(s) in {directory} will not be read, because the "
            f"stream reads only the {' and '.join(RECORD_SUFFIXES)} files directly in it (or "
            f"in a subfolder named like one): "
            f"{few(names, shown)}{hint}")


def unread_check_seconds(env: Mapping[str, str]) -> float:
    """`StreamOptions.unread_check_seconds` from the environment (UNREAD_CHECK_VARIABLE)."""
    text = env.get(UNREAD_CHECK_VARIABLE)
    if text is None:
        return StreamOptions.unread_check_seconds
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise BadArgumentError(f"{UNREAD_CHECK_VARIABLE} is {text!r}; it must be a number of "
                               "seconds above 0")
    return seconds


class UnreadFiles:
    """Names, once each, the files and folders in a landing folder that the stream will never
    read (`FileSource.unread_files`): at start-up, then every `every` seconds while it runs
    (an entry removed and back is named again).

    Spark's file source passes over them without a word; a producer writing `.json`,
    `.jsonl.bz2` or into a subfolder would otherwise lose its data silently."""

    def __init__(self, source: FileSource, warn: Callable[[str], None],
                 every: float = StreamOptions.unread_check_seconds,
                 clock: Callable[[], float] = time.monotonic):
        self.source, self.warn, self.every, self.clock = source, warn, every, clock
        self.named: set[str] = set()
        self.looked_at: float | None = None

    def check(self) -> None:
        now = self.clock()
        if self.looked_at is not None and now - self.looked_at < self.every:
            return
        self.looked_at = now
        try:
            try:
                unread, too_large = self.source.unread_files()
            except OSError as exc:
                self.warn(f"could not look for unread files in {self.source.directory}: {exc}")
                return
            new = [n for n in unread if n not in self.named]
            if new:
                self.warn(unread_sentence(self.source.directory, new))
            for name, size in too_large.items():
                if name not in self.named:
                    self.warn(f"{os.path.join(self.source.directory, name)} will not be read: "
                              f"{too_large_sentence(size)}")
            self.named = {*unread, *too_large}
        except Exception:  # a look, or a warning, that fails never stops the stream
            log.warning("looking for unread landing files failed", exc_info=True)


def batch_handler(lake: Lake, run_id: str, source: Source, contract: Contract = CURRENT,
                  recover: bool = False, report: Callable[[str], None] = print,
                  replays_up_to: int = 10**18, stopping: threading.Event | None = None,
                  warn: Callable[[str], None] = print_warning
                  ) -> Callable[[DataFrame, int], None]:
    """The foreachBatch function: one micro-batch through the one write path.

    Batches after `replays_up_to` are known to be new, so they skip the replay check. Once
    `stopping` is set, a batch that starts raises `StopRequested` before writing anything.
    Each landing file that could not be read to its end gets a sentence through `warn`.
    """

    def handle(batch: DataFrame, batch_id: int) -> None:
        if stopping is not None and stopping.is_set():
            _quiet_streaming_logs(batch.sparkSession)
            raise StopRequested(STOP_REQUESTED)
        spark = batch.sparkSession
        ctx = WriteContext.now(run_id=run_id, batch_id=batch_id, kind="stream",
                               source=source.name)
        if recover:
            # Materialised first: recomputing it after bronze's append would drop this batch.
            batch = batch.transform(skip_already_in_bronze(spark, lake)).localCheckpoint()
        result = write_batch(spark, lake, batch, ctx, contract,
                             may_be_replay=batch_id <= replays_up_to)
        crash_point("after_write", batch_id)
        record_batch(spark, lake, result, ctx, contract)
        crash_point("after_batch_log", batch_id)
        report(result.line())
        for name in result.whole_files:
            path = unquote(name)
            damage = file_damage(path) or "it does not decompress to its end"
            warn(f"batch {batch_id}: {path} is a damaged .gz: {damage}; the whole file is kept "
                 "as one more record, without a line number")

    return handle


def explained(source: Source, error: Exception) -> Exception:
    """The error a stream stopped with, as one sentence where a person can act on it: Kafka
    deleted records (retention, or the topic deleted) before the stream read them."""
    text = str(error)
    if not isinstance(source, KafkaSource) or not any(
            mark in text for mark in ("KAFKA_DATA_LOSS", "failOnDataLoss")):
        return error
    detail = next((re.sub(r"^Reason:\s*", "", line.strip()).rstrip(".")
                   for line in text.splitlines()
                   if re.search(r"offset|partition", line, re.IGNORECASE)), "")
    return DataLossError(
        f"Kafka no longer holds records of topic {source.uri.topic!r} that the stream has not "
        f"read (deleted by retention, or with the topic){': ' + detail if detail else ''}. "
        "The stream stopped rather than skip them; to go on past them, which cannot be "
        "read again, run the same command once with --accept-data-loss")


def run_stream(spark, lake: Lake, source: Source, options: StreamOptions,
               contract: Contract = CURRENT, report: Callable[[str], None] = print,
               warn: Callable[[str], None] = print_warning) -> None:
    """Run the stream until stopped (SIGTERM/Ctrl-C end it after the current micro-batch),
    or, with `available_now`, until everything present at start is processed."""
    checkpoint = options.checkpoint or lake.default_checkpoint(source.slug)
    run_id = existing_run_id(spark, lake, source, checkpoint, options.recover)
    if options.recover:
        # Before a new checkpoint exists: a recovery killed meanwhile is refused at the next
        # start without --recover, rather than read everything again without the skip.
        finish_interrupted_batches(spark, lake, source, contract, report)
    run_id = run_id or new_run_id(spark, lake, source, checkpoint)
    stop_requested = threading.Event()
    unread = (UnreadFiles(source, warn, every=options.unread_check_seconds)
              if isinstance(source, FileSource) else None)
    writer = (source.read_stream(spark).writeStream
              .queryName(f"gridlake-{source.slug}")
              .option("checkpointLocation", checkpoint)
              .foreachBatch(batch_handler(lake, run_id, source, contract, options.recover,
                                          report, last_planned_batch(spark, checkpoint),
                                          stop_requested, warn)))
    if options.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{options.trigger_seconds} seconds")

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stop_requested.set()

    # Before the line and the start: from the line on, a stop is always a clean one.
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        report(f"streaming {source.name} into {lake.root} (run {run_id}, checkpoint {checkpoint})")
        look_for_unread = unread.check if unread is not None else lambda: None
        look_for_unread()
        query = writer.start()
        while query.isActive:
            look_for_unread()  # here, not in a batch: a stream with no new data looks too
            if stop_requested.is_set() and not query.status.get("isTriggerActive", False):
                query.stop()
                report("stopped after the last complete micro-batch")
                break
            try:
                query.awaitTermination(0.5)
            except StreamingQueryException:
                break  # examined below
        error = query.exception()
        if error is not None and stop_requested.is_set() and STOP_REQUESTED in str(error):
            # A batch that started after the stop request refused to write: a clean stop.
            report("stopped after the last complete micro-batch")
        elif error is not None:
            raise explained(source, error)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
