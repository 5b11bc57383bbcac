"""Sources of raw records: a landing directory of JSON-lines files, or a Kafka topic.

Each source yields the same raw columns (bronze's source columns): a record id built from the
record's source coordinates, the payload bytes exactly as received, and the coordinates
themselves (file and line, or topic/partition/offset with key, headers and timestamp).

Example:
    >>> source = parse_source("files:/data/landing")
    >>> raw = source.read_stream(spark)                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pyspark import cloudpickle
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from gridlake import gunzip
from gridlake.errors import BadArgumentError
from gridlake.lake import hadoop_fs
from gridlake.landing import (
    GLOB_CHARACTERS,
    HIDDEN,
    LANDING_GLOB,
    MAX_FILE_BYTES,
    RECORD_SUFFIXES,
    glob_escaped,
    landing_pattern,
)
from shared_schemas.tables import HEADER_TYPE
from streaming.defaults import MAX_FILES_PER_TRIGGER, MAX_OFFSETS_PER_TRIGGER
from streaming.kafka_uri import KafkaUri, parse_kafka_uri


def unread_names(names: Iterable[str]) -> list[str]:
    """The entries of a landing folder (folders named with a trailing `/`) that the stream
    never reads, sorted: those not named like a record file (`landing_pattern`), and those
    Spark passes over although they are (`_x.jsonl`; a name starting with `_`). Names starting
    with `.` (uploads in progress) and other `_` names (markers such as `_SUCCESS`) are not
    listed."""

    def unread(name: str) -> bool:
        record_like = name.rstrip("/").endswith(RECORD_SUFFIXES)
        if name.startswith("_"):
            return record_like
        return not name.startswith(".") and not record_like

    return sorted(filter(unread, names))


def _file_reader(reader):
    """A binaryFile reader (batch or stream) of landing files: only record files, and no
    partition columns inferred from folder names (`recursiveFileLookup`), which Spark would
    otherwise do for a folder the pattern matches, and fail on a mix of layouts."""
    return (reader.format("binaryFile").option("pathGlobFilter", LANDING_GLOB)
            .option("recursiveFileLookup", "true"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40]


def file_record_id(path: Column, line: Column) -> Column:
    """A file record's id: `file:PATH#LINE`, or `file:PATH` for a record without a line (a
    whole file)."""
    return F.concat(F.lit("file:"), path, F.when(line.isNotNull(), F.concat(
        F.lit("#"), line.cast("string"))).otherwise(F.lit("")))


def file_lines() -> Callable[[DataFrame], DataFrame]:
    """Whole files (`path`, `content`) → one raw record per non-blank line, numbered from 1.

    A file with a `damaged` value (the file as received, set when its content could not be
    read to the end) also gives that value as one more record, with no line number.
    """

    def transform(files: DataFrame) -> DataFrame:
        # Latin-1 maps every byte to one character, so splitting on newlines and encoding back
        # gives each line's bytes exactly as received, even where they are not UTF-8.
        def chars(column: str) -> Column:
            return F.decode(F.col(column).cast("binary"), "ISO-8859-1")

        whole = chars("damaged") if "damaged" in files.columns else F.lit(None).cast("string")
        staged = files.select(F.regexp_replace("path", "^file:(//)?", "").alias("path"),
                              F.split(chars("content"), "\n").alias("_lines"),
                              whole.alias("_whole"))
        pieces = F.when(F.col("_whole").isNull(), F.col("_lines")).otherwise(
            F.concat("_lines", F.array("_whole")))
        exploded = staged.select("path", F.size("_lines").alias("_n"),
                                 F.posexplode(pieces).alias("pos", "line"))
        is_whole = F.col("pos") >= F.col("_n")
        line = F.when(~is_whole, F.col("pos") + 1).cast("long")
        return (exploded
                .where(is_whole | (F.trim(F.col("line")) != ""))
                .select(
                    file_record_id(F.col("path"), line).alias("record_id"),
                    F.lit("file").alias("source_kind"),
                    F.col("path").alias("source_file"),
                    line.alias("source_line"),
                    F.lit(None).cast("string").alias("kafka_topic"),
                    F.lit(None).cast("int").alias("kafka_partition"),
                    F.lit(None).cast("long").alias("kafka_offset"),
                    F.encode(F.col("line"), "ISO-8859-1").alias("payload"),
                    F.lit(None).cast("binary").alias("kafka_key"),
                    F.lit(None).cast(HEADER_TYPE).alias("headers"),
                    F.lit(None).cast("timestamp").alias("kafka_timestamp"),
                ))

    return transform


def file_records() -> Callable[[DataFrame], DataFrame]:
    """Landing files as bytes (`path`, `content`) → raw records, as `file_lines` splits them.

    A `.gz` is decompressed by `gridlake.gunzip`, not by Hadoop's codec, whose failure on one
    damaged file fails its whole batch (and a stream on every restart). A `.gz` that does not
    decompress to its end gives the lines before the damage, and the whole file as received as
    one more record (no line), which the rules quarantine.
    """

    def transform(files: DataFrame) -> DataFrame:
        # By value: executors need no gridlake install to run it, only Python.
        cloudpickle.register_pickle_by_value(gunzip)
        unpack = F.udf(gunzip.unpack, "struct<data: binary, damage: string>", useArrow=False)
        is_gz = F.col("path").endswith(".gz")
        unpacked = files.select("path", "content",
                                unpack(F.when(is_gz, F.col("content"))).alias("_gz"))
        return (unpacked
                .select("path",
                        F.when(is_gz, F.col("_gz.data")).otherwise(F.col("content"))
                        .alias("content"),
                        F.when(F.col("_gz.damage").isNotNull(), F.col("content"))
                        .alias("damaged"))
                .transform(file_lines()))

    return transform


def _named(files: DataFrame) -> DataFrame:
    """binaryFile rows → (`path`, `content`), the path spelled as Spark's text source did.

    A file over MAX_FILE_BYTES is left out (the filter on `length` reaches the binaryFile
    source, which then does not open the file): read, it would fail its whole batch, and a
    stream on every restart. `FileSource.unread_files` and backfill name such files.
    """
    return (files.where(F.col("length") <= F.lit(MAX_FILE_BYTES))
            .select(F.col("_metadata.file_path").alias("path"), "content"))


def read_files(spark, paths: list[str]) -> DataFrame:
    """Raw records of JSON-lines files (these `.jsonl` and `.jsonl.gz` files, and those
    directly in these folders, which must hold one), read as the stream reads its landing
    folder."""

    def pattern(path: str) -> str:
        fs, hpath = hadoop_fs(spark, path)
        return landing_pattern(path) if fs.isDirectory(hpath) else glob_escaped(path)

    files = _file_reader(spark.read).load([pattern(p) for p in paths])
    return _named(files).transform(file_records())


def kafka_records() -> Callable[[DataFrame], DataFrame]:
    """Rows of Spark's Kafka source → raw records keyed by topic/partition/offset."""

    def transform(rows: DataFrame) -> DataFrame:
        return rows.select(
            F.concat(F.lit("kafka:"), F.concat_ws("/", F.col("topic"), F.col("partition"),
                                                  F.col("offset"))).alias("record_id"),
            F.lit("kafka").alias("source_kind"),
            F.lit(None).cast("string").alias("source_file"),
            F.lit(None).cast("long").alias("source_line"),
            F.col("topic").alias("kafka_topic"),
            F.col("partition").cast("int").alias("kafka_partition"),
            F.col("offset").cast("long").alias("kafka_offset"),
            F.col("value").alias("payload"),
            F.col("key").alias("kafka_key"),
            F.col("headers").cast(HEADER_TYPE).alias("headers"),
            F.col("timestamp").alias("kafka_timestamp"),
        )

    return transform


@dataclass(frozen=True)
class FileSource:
    """A landing directory of `.jsonl` / `.jsonl.gz` files, read as they arrive."""

    directory: str
    max_files_per_trigger: int = MAX_FILES_PER_TRIGGER

    def __post_init__(self):
        if GLOB_CHARACTERS.search(self.directory):
            # Escaped or not: Spark's streaming file source then reads each file more than once
            # (as often as the folder has files), or another folder.
            raise BadArgumentError(
                f"source folder {self.directory!r} has one of the characters *?[]{{}}\\ in its "
                "path, with which Spark's streaming file source reads a file more than once: "
                "stream from a folder whose path has none of them")

    @property
    def name(self) -> str:
        return f"files:{self.directory}"

    @property
    def slug(self) -> str:
        digest = hashlib.sha256(self.directory.encode()).hexdigest()[:12]
        return f"files-{_slug(Path(self.directory).name)}-{digest}"

    def read_stream(self, spark) -> DataFrame:
        files = (_file_reader(spark.readStream)
                 .schema("path string, modificationTime timestamp, length long, content binary")
                 .option("maxFilesPerTrigger", self.max_files_per_trigger)
                 .load(landing_pattern(self.directory)))
        return _named(files).transform(file_records())

    def unread_files(self) -> tuple[list[str], dict[str, int]]:
        """What in the folder the stream will never read: the files and folders (`name/`)
        that are not record files (`unread_names`), the files other than record files inside
        a subfolder named like one (`x.jsonl/notes.txt`), and the record files larger than
        MAX_FILE_BYTES with their sizes. Nothing when the folder does not exist (yet).

        Listed by the operating system (a landing folder is local, see `parse_source`), not
        through the JVM, where every file of a large folder would cost Py4J round trips.
        """
        try:
            with os.scandir(self.directory) as scan:
                entries = {e.name + ("/" if e.is_dir() else ""): e for e in scan}
        except FileNotFoundError:
            return [], {}
        unread, too_large = unread_names(entries), {}
        for name, entry in sorted(entries.items()):
            if name.startswith(HIDDEN) or not name.rstrip("/").endswith(RECORD_SUFFIXES):
                continue  # not read by the stream, and named above when it should be
            if name.endswith("/"):
                nested_unread, nested_large = _inside_record_folder(entry.path, name)
                unread += nested_unread
                too_large.update(nested_large)
            elif (size := _over_limit(entry.path)) is not None:
                too_large[name] = size
        return sorted(unread), too_large


def _over_limit(path: str) -> int | None:
    """The size of the file at `path` when it is over MAX_FILE_BYTES; None when it is not, or
    when it went away since it was listed."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return None
    return size if size > MAX_FILE_BYTES else None


def _inside_record_folder(folder: str, prefix: str) -> tuple[list[str], dict[str, int]]:
    """A subfolder named like a record file matches the pattern, and Spark reads the record
    files in it at any depth: what else it holds (files, as `prefix` + their path), and its
    record files over MAX_FILE_BYTES. Hidden names, which Spark skips, are left alone as in
    the folder itself (`unread_names`: a record file named `_x.jsonl` is listed), and hidden
    folders are not looked into."""
    unread: list[str] = []
    too_large: dict[str, int] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(HIDDEN))
        at = os.path.relpath(root, folder)
        for name in sorted(files):
            shown = prefix + (name if at == "." else os.path.join(at, name))
            if unread_names([name]):
                unread.append(shown)
            if name.startswith(HIDDEN) or not name.endswith(RECORD_SUFFIXES):
                continue
            if (size := _over_limit(os.path.join(root, name))) is not None:
                too_large[shown] = size
    return unread, too_large


@dataclass(frozen=True)
class KafkaSource:
    """A Kafka topic; structured- and binary-mode CloudEvents are both accepted."""

    uri: KafkaUri
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int = MAX_OFFSETS_PER_TRIGGER
    # Go on past offsets Kafka deleted before the stream read them (Spark's failOnDataLoss
    # off). Off by default: such a stream stops rather than lose records without a word.
    accept_data_loss: bool = False

    def __post_init__(self):
        cap = self.max_offsets_per_trigger
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise BadArgumentError(f"max_offsets_per_trigger is {cap!r}; it must be a whole "
                                   "number of records, 1 or more")

    @property
    def name(self) -> str:
        return f"kafka:{self.uri.bootstrap}/{self.uri.topic}"

    @property
    def slug(self) -> str:
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:12]
        return f"kafka-{_slug(self.uri.topic)}-{digest}"

    def read_stream(self, spark) -> DataFrame:
        reader = (spark.readStream.format("kafka")
                  .option("kafka.bootstrap.servers", self.uri.bootstrap)
                  .option("subscribe", self.uri.topic)
                  .option("startingOffsets", self.starting_offsets)
                  .option("includeHeaders", "true")
                  .option("failOnDataLoss", str(not self.accept_data_loss).lower()))
        return (reader.option("maxOffsetsPerTrigger", self.max_offsets_per_trigger)
                .load().transform(kafka_records()))


Source = FileSource | KafkaSource


def parse_source(text: str, max_files_per_trigger: int = MAX_FILES_PER_TRIGGER,
                 max_offsets_per_trigger: int = MAX_OFFSETS_PER_TRIGGER,
                 accept_data_loss: bool = False) -> Source:
    """`files:DIR` or `kafka:HOST:PORT/TOPIC` → a source; anything else is one clear error."""
    scheme, _, rest = text.partition(":")
    if accept_data_loss and scheme != "kafka":
        raise BadArgumentError("--accept-data-loss is for a kafka: source, whose broker may "
                               "delete records before the stream reads them")
    if scheme == "files" and rest:
        directory = Path(rest).resolve()
        if not directory.is_dir():
            raise BadArgumentError(f"source folder {rest!r} does not exist or is not a folder")
        return FileSource(str(directory), max_files_per_trigger)
    if scheme == "kafka" and rest:
        return KafkaSource(parse_kafka_uri(text),
                           max_offsets_per_trigger=max_offsets_per_trigger,
                           accept_data_loss=accept_data_loss)
    raise BadArgumentError(
        f"unknown source {text!r}; expected files:DIR or kafka:HOST:PORT/TOPIC")

